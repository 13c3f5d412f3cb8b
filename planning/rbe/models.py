"""The common interface of IonPlan's RBE models, and the physical-dose and constant-RBE models.

Every model is a frozen dataclass holding its parameters. The planning engine uses it in three
steps:

1. ``particle_tables(species_z, energies_mev_u)``: per-particle model quantities on a grid of
   species and kinetic energies per nucleon (mMKM: z1D*; LEM I: alpha and sqrt(beta)).
2. Influence matrices accumulate, per voxel, the physical dose D = sum_i d_i and the
   *dose-weighted sums* S_k = sum_i d_i q_k,i of the quantities; ``mix(dose_gy, sums)`` returns
   the dose-averaged quantities q_k = S_k / D (PHYSICS.md, "RBE models": dose-averaged alpha
   and sqrt(beta) for LEM, dose-averaged z1D* for mMKM).
3. ``rbe_weighted_dose_from_sums(dose_gy, sums)`` (or ``rbe_weighted_dose(dose_gy, mixed)``
   with the averages) gives the RBE-weighted dose in Gy(RBE) per fraction, and
   ``rbe_weighted_dose_gradient(dose_gy, sums)`` its analytic partial derivatives with respect to
   D (sums fixed) and to each S_k, which is what an optimizer needs for the chain rule through
   the influence matrices.

The per-voxel functions work on NumPy, CuPy and array_api_strict arrays alike (array type in
equals array type out); zero dose gives zero RBE-weighted dose and finite derivatives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kernels.backend import array_namespace
from planning.errors import InputError
from planning.physics.stopping import STOPPING_SOURCES, load_stopping_table

FloatArray = NDArray[np.float64]

#: Species with stopping-power tables (planning.physics.stopping).
SUPPORTED_SPECIES_Z = (1, 2, 3, 4, 5, 6)


@dataclass(frozen=True)
class ParticleTable:
    """Per-particle model quantities on a (species, energy) grid.

    Attributes
    ----------
    model_name : str
        Name of the model that computed the table.
    quantity_names : tuple of str
        Names of the quantities, in the order of ``quantities`` (e.g. ``("z1d_star_gy",)``).
    species_z : (P,) int array
        Charge numbers.
    energies_mev_u : (N,) float array
        Kinetic energies per nucleon, MeV/u.
    let_kev_um : (P, N) float array
        Unrestricted LET in water from the stopping-power tables, keV/um.
    quantities : tuple of (P, N) float arrays
        One array per quantity name.
    """

    model_name: str
    quantity_names: tuple[str, ...]
    species_z: NDArray[np.int64]
    energies_mev_u: FloatArray
    let_kev_um: FloatArray
    quantities: tuple[FloatArray, ...]


@dataclass(frozen=True)
class RbeGradient:
    """RBE-weighted dose and its partial derivatives at one set of per-voxel inputs.

    Attributes
    ----------
    dose_gy_rbe : array
        RBE-weighted dose per fraction, Gy(RBE).
    d_dose : array
        Partial derivative with respect to the physical dose D (sums held fixed),
        Gy(RBE)/Gy.
    d_sums : tuple of arrays
        Partial derivatives with respect to each dose-weighted sum S_k (D held fixed),
        in Gy(RBE) per unit of S_k.
    """

    dose_gy_rbe: Any
    d_dose: Any
    d_sums: tuple[Any, ...]


def validate_particle_grid(species_z: ArrayLike, energies_mev_u: ArrayLike
                           ) -> tuple[NDArray[np.int64], FloatArray]:
    """Check and convert a (species, energy) grid; raise :class:`InputError` if invalid."""
    z = np.atleast_1d(np.asarray(species_z))
    e = np.atleast_1d(np.asarray(energies_mev_u, dtype=np.float64))
    if z.ndim != 1 or e.ndim != 1 or z.size == 0 or e.size == 0:
        raise InputError("species_z and energies_mev_u must be non-empty 1-D sequences")
    if not np.all(np.isin(z, SUPPORTED_SPECIES_Z)) or not np.all(z == np.round(z)):
        raise InputError(f"species charge numbers must be among {SUPPORTED_SPECIES_Z}; got "
                         f"{z.tolist()}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise InputError("energies_mev_u must be finite and > 0 MeV/u")
    return z.astype(np.int64), e


def let_table_kev_um(species_z: NDArray[np.int64], energies_mev_u: FloatArray,
                     stopping_source: str = "mstar_3_12") -> FloatArray:
    """Unrestricted LET in water (keV/um) of each species at each energy, shape (P, N)."""
    if stopping_source not in STOPPING_SOURCES:
        raise InputError(f"unknown stopping-power source {stopping_source!r}; choose one of "
                         f"{', '.join(STOPPING_SOURCES)}")
    return np.stack([load_stopping_table(int(z), stopping_source).let_kev_um(energies_mev_u)
                     for z in species_z])


def _safe_ratio(num: Any, den: Any, xp: Any) -> Any:
    """num / den where den > 0, else 0 (no warnings, no NaN)."""
    positive = den > 0
    return xp.where(positive, num / xp.where(positive, den, xp.ones_like(den)),
                    xp.zeros_like(num))


class RbeModel(ABC):
    """Base class of the RBE models (see the module docstring for the protocol)."""

    #: Short model name ("mMKM", "LEM I", ...).
    name: ClassVar[str]
    #: Names of the per-particle quantities that are dose-averaged in mixed fields.
    quantity_names: ClassVar[tuple[str, ...]]

    @abstractmethod
    def particle_tables(self, species_z: ArrayLike, energies_mev_u: ArrayLike, *,
                        stopping_source: str = "mstar_3_12") -> ParticleTable:
        """Per-particle quantities on the grid ``species_z`` x ``energies_mev_u``."""

    @abstractmethod
    def rbe_weighted_dose_from_sums(self, dose_gy: Any, sums: tuple[Any, ...]) -> Any:
        """RBE-weighted dose (Gy(RBE)) from the dose and the dose-weighted sums S_k."""

    @abstractmethod
    def rbe_weighted_dose_gradient(self, dose_gy: Any, sums: tuple[Any, ...]) -> RbeGradient:
        """RBE-weighted dose and its partial derivatives with respect to D and each S_k."""

    @abstractmethod
    def describe(self) -> str:
        """One-line description with parameters (e.g. for the DICOM RT Dose Comment)."""

    def lq_parameters(self, table: ParticleTable) -> tuple[FloatArray, FloatArray]:
        """Linear-quadratic (alpha 1/Gy, beta 1/Gy^2) of each particle of ``table``.

        Raises
        ------
        InputError
            For models without per-particle LQ parameters (physical dose, constant RBE).
        """
        raise InputError(f"the {self.name} model has no per-particle linear-quadratic "
                         "parameters; choose mMKM or LEM I")

    def mix(self, dose_gy: Any, sums: tuple[Any, ...]) -> tuple[Any, ...]:
        """Dose-averaged quantities q_k = S_k / D (0 where D = 0), one array per quantity."""
        self._check_sums(sums)
        if not sums:
            return ()
        xp = array_namespace(dose_gy, *sums)
        return tuple(_safe_ratio(s, dose_gy, xp) for s in sums)

    def rbe_weighted_dose(self, dose_gy: Any, mixed: tuple[Any, ...]) -> Any:
        """RBE-weighted dose (Gy(RBE)) from the dose and the dose-averaged quantities."""
        self._check_sums(mixed)
        return self.rbe_weighted_dose_from_sums(dose_gy, tuple(m * dose_gy for m in mixed))

    def _check_sums(self, sums: tuple[Any, ...]) -> None:
        if len(sums) != len(self.quantity_names):
            raise InputError(f"the {self.name} model needs {len(self.quantity_names)} "
                             f"quantities {self.quantity_names}, got {len(sums)}")


@dataclass(frozen=True)
class PhysicalDose(RbeModel):
    """No RBE weighting: the "RBE-weighted" dose is the physical dose (RBE = 1)."""

    name: ClassVar[str] = "physical"
    quantity_names: ClassVar[tuple[str, ...]] = ()

    def particle_tables(self, species_z: ArrayLike, energies_mev_u: ArrayLike, *,
                        stopping_source: str = "mstar_3_12") -> ParticleTable:
        z, e = validate_particle_grid(species_z, energies_mev_u)
        return ParticleTable(self.name, (), z, e, let_table_kev_um(z, e, stopping_source), ())

    def rbe_weighted_dose_from_sums(self, dose_gy: Any, sums: tuple[Any, ...]) -> Any:
        self._check_sums(sums)
        return dose_gy * 1.0

    def rbe_weighted_dose_gradient(self, dose_gy: Any, sums: tuple[Any, ...]) -> RbeGradient:
        self._check_sums(sums)
        xp = array_namespace(dose_gy)
        return RbeGradient(dose_gy * 1.0, xp.ones_like(dose_gy), ())

    def describe(self) -> str:
        return "physical dose"


def dose_unit_of(model: RbeModel | str) -> str:
    """The unit of a dose computed under ``model`` (a model, or its description as a report's
    ``rbe_model`` holds it): ``"Gy"`` under the physical model, whose dose is not RBE-weighted,
    else ``"Gy(RBE)"``."""
    physical = (model == PhysicalDose().describe() if isinstance(model, str)
                else isinstance(model, PhysicalDose))
    return "Gy" if physical else "Gy(RBE)"


def prescription_unit_of(plan_rbe_model: str | None) -> str:
    """The unit of a plan's prescription: that of the dose of the model the plan was made
    under (``Plan.rbe_model``), ``"Gy"`` for a physical-dose plan and ``"Gy(RBE)"`` for any
    other, a plan that names no model included (carbon plans are prescribed RBE-weighted).

    A dose of another unit (a recalculation of the plan under another kind of model) is not
    read against the prescription: no V95, V107, conformity index or isodoses in % of it; its
    100 % is its own maximum, as the app's physical-dose layer has it. A dose under another
    model of the same unit is read against it, with the prescription's model named (its
    Gy(RBE) are another model's: docs/physics.md)."""
    return "Gy(RBE)" if plan_rbe_model is None else dose_unit_of(plan_rbe_model)


#: The constant RBEs accepted: an ion's RBE is not below that of photons, and no tissue's
#: carbon RBE reaches 10 (a value outside was a typing slip: 0.01 gave a plan with every spot
#: at its delivery limit and D95 of 34 %, 1e9 no deliverable spot; CLI review, 2026-12-07).
CONSTANT_RBE_RANGE = (1.0, 10.0)


@dataclass(frozen=True)
class ConstantRbe(RbeModel):
    """RBE-weighted dose = ``rbe`` x physical dose, for any particle and dose level.

    There is no accepted constant RBE for carbon ions (it varies from about 1.5 in the entrance
    channel to 3-4 in the Bragg peak), so ``rbe`` has no default: the user states the value
    (1.1 is the proton convention, ICRU Report 78).

    Parameters
    ----------
    rbe : float
        Constant relative biological effectiveness, in [:data:`CONSTANT_RBE_RANGE`].
    """

    rbe: float
    name: ClassVar[str] = "constant RBE"
    quantity_names: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        low, high = CONSTANT_RBE_RANGE
        if not (np.isfinite(self.rbe) and low <= self.rbe <= high):
            raise InputError(f"constant RBE must be a finite number in [{low:g}, {high:g}]; got "
                             f"{self.rbe!r} (an ion's RBE is not below 1; carbon's ranges "
                             "from about 1.5 to 3-4)")

    def particle_tables(self, species_z: ArrayLike, energies_mev_u: ArrayLike, *,
                        stopping_source: str = "mstar_3_12") -> ParticleTable:
        z, e = validate_particle_grid(species_z, energies_mev_u)
        return ParticleTable(self.name, (), z, e, let_table_kev_um(z, e, stopping_source), ())

    def rbe_weighted_dose_from_sums(self, dose_gy: Any, sums: tuple[Any, ...]) -> Any:
        self._check_sums(sums)
        return dose_gy * float(self.rbe)

    def rbe_weighted_dose_gradient(self, dose_gy: Any, sums: tuple[Any, ...]) -> RbeGradient:
        self._check_sums(sums)
        xp = array_namespace(dose_gy)
        return RbeGradient(dose_gy * float(self.rbe), xp.ones_like(dose_gy) * float(self.rbe),
                           ())

    def describe(self) -> str:
        return f"constant RBE {self.rbe:g}"


def lq_effect_to_dose(effect: Any, alpha_gy: float, beta_gy2: float, xp: Any) -> tuple[Any, Any]:
    """Dose of the reference radiation with effect ``effect`` = -ln S, and d(dose)/d(effect).

    Solves alpha D + beta D^2 = effect in the cancellation-free form
    D = 2 effect / (alpha + sqrt(alpha^2 + 4 beta effect)); the derivative is
    1 / sqrt(alpha^2 + 4 beta effect). Requires alpha > 0 (finite at effect = 0).
    """
    eff = xp.maximum(effect, xp.zeros_like(effect))
    root = xp.sqrt(alpha_gy * alpha_gy + (4.0 * beta_gy2) * eff)
    return 2.0 * eff / (alpha_gy + root), 1.0 / root
