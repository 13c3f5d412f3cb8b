"""Local effect model, version I (LEM I; the GSI/HIT clinical model) with the rapid beta.

Photon response of the tissue (Scholz and Kraft 1996, Adv Space Res 18:5; Scholz et al. 1997,
Radiat Environ Biophys 36:59): -ln S_x(D) = alpha_x D + beta_x D^2 up to the threshold dose D_t,
linear with slope s_max = alpha_x + 2 beta_x D_t above it.

Ion effect: the expected number of lethal events after one ion traverses a cylindrical cell
nucleus (radius R_n) at impact parameter b is the local photon effect averaged over the nucleus
cross-section, N(b) = <-ln S_x(D_local)>_nucleus(b), with the LEM I radial dose
(:func:`planning.rbe.track.scholz_kraft`: lambda LET / r^2, core r_min = 0.01 um,
r_max = 0.062 E^1.7 um). At low dose the ion survival is exp(-alpha_z D) with

    alpha_z = (1 - <S_1>) / <z_1> = [integral (1 - exp(-N(b))) 2 pi b db] / (0.1602 LET),

i.e. the inactivation cross-section over the LET, which is the low-dose limit of the compound-
Poisson traversal statistics used in the rapid scheme of Kraemer and Scholz (2006, PMB 51:1959,
"alpha_z = (1 - S_1)/d_1").

Two rapid variants, chosen per tissue by name (:data:`RAPID_SCHEMES`; both reproduce the
independent "Survival" code of Attili, Russo et al. within 1.1 %, tests/test_rbe_lem.py):

- ``averaged`` (default): N(b) averaged over all impact parameters, including tracks that pass
  outside the nucleus and reach it with their penumbra (Survival: rapidLEM_Russo2011, which
  adds the penumbra-only traversals to the central one); alpha_z -> alpha_x at low LET exactly.
  It is the exact low-dose limit of LEM I itself (the formula above), i.e. of the "classic" LEM I
  calculation that is the default algorithm of GSI's planning code TRiP98, from which the
  clinical LEM I systems descend (docs/physics.md, "LEM I: which rapid scheme").
- ``central``: Kraemer and Scholz 2006, TRiP98's faster "low dose" option. One traversal
  through the nucleus centre: N_0 = N(b = 0), d_1 = 0.1602 LET / (pi R_n^2) (the whole LET
  spread over the nucleus cross-section), alpha_z = (1 - exp(-N_0)) / d_1 and
  alpha_P = N_0 / d_1 (Survival: rapidLEM_Scholz2006). Penumbra energy deposited outside the
  nucleus is lost, so at low LET alpha_z tends to alpha_x times the fraction of the track
  energy inside R_n, not to alpha_x. IonPlan's default from 2026-12-05 to 2026-12-07.

beta (rapid scheme of Kraemer and Scholz 2006): with alpha_P = <N> / <z_1> the mean number of
lethal events per unit dose without saturation (Poisson) and beta_P = (s_max - alpha_P)/(2 D_t)
the beta of a photon-like response with that initial slope,

    beta_z = (alpha_z / alpha_P)^2 * (s_max - alpha_P) / (2 D_t),

so beta_z = beta_x when alpha_z = alpha_P = alpha_x, beta_z = (s_max - alpha_z)/(2 D_t) while
single traversals are far from saturation, and beta_z -> 0 when they saturate (overkill). The
form is taken from the documentation of an independent implementation of the paper (the
"Survival" code of Attili, Russo et al., Calculus::rapidLEM_Scholz2006); the paper's full text
was not available here. Both variants use it with their own alpha_z and alpha_P.

Mixed fields (Zaider and Rossi 1980; PHYSICS.md): alpha_mix = sum alpha_i d_i / D,
sqrt(beta_mix) = sum sqrt(beta_i) d_i / D; effect eps = alpha_mix D + beta_mix D^2 and the
RBE-weighted dose is the photon dose of equal effect,
(sqrt(alpha_x^2 + 4 beta_x eps) - alpha_x) / (2 beta_x). With A = sum alpha_i d_i and
B = sum sqrt(beta_i) d_i, eps = A + B^2 does not depend on D separately.

High doses per fraction: LEM I's photon response is linear above D_t, so the RBE-weighted dose
of an effect above eps_t = alpha_x D_t + beta_x D_t^2 is D_t + (eps - eps_t)/s_max (inverting
the quadratic alone would give less). The mixed ion field's curve is continued above the same
threshold dose with the slope alpha_mix + 2 beta_mix D_t it has there (the threshold-dose
convention of the GSI planning code, Kraemer and Scholz 2000, PMB 45:3319; its D_cut is D_t).
Both matter only above D_t per fraction: never in the chordoma class (30 Gy) at clinical doses
per fraction, but from 7.5 Gy in the HSG class and for user tissues with a low D_t.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from kernels.backend import array_namespace
from planning.errors import InputError
from planning.rbe.models import (
    FloatArray,
    ParticleTable,
    RbeGradient,
    RbeModel,
    let_table_kev_um,
    lq_effect_to_dose,
    validate_particle_grid,
)
from planning.rbe.track import (
    GY_UM2_PER_KEV_UM,
    ImpactGrid,
    impact_grid,
    scholz_kraft,
    target_average,
)

#: Rapid LEM I variants by name, the default first: ``averaged`` (impact-parameter averaged, the
#: low-dose limit of LEM I) and ``central`` (Kraemer and Scholz 2006). See the module docstring.
RAPID_SCHEMES = ("averaged", "central")

#: The rapid scheme of a tissue that names none.
DEFAULT_RAPID_SCHEME = RAPID_SCHEMES[0]

#: The rapid scheme of a LEM I description or record written before they named it (IonPlan's
#: only scheme until December 2026): not the default, which may change, but what was computed.
SCHEME_BEFORE_NAMED = "averaged"


@dataclass(frozen=True)
class Tissue:
    """Photon response parameters of a tissue or cell line for LEM I.

    Parameters
    ----------
    name : str
        Identifier (e.g. ``"chordoma"``).
    alpha_x_gy : float
        Photon alpha, 1/Gy (> 0).
    beta_x_gy2 : float
        Photon beta, 1/Gy^2 (> 0).
    d_t_gy : float
        Threshold dose above which the photon log-survival is linear, Gy (> 0).
    nucleus_radius_um : float
        Radius of the cylindrical cell nucleus, um (5 um in the LEM I clinical set; alpha of
        12C at 10 MeV/u in chordoma moves by about 12 % per um, tests/test_rbe_lem.py).
    rapid_scheme : str
        Rapid LEM I variant, one of :data:`RAPID_SCHEMES` (see the module docstring).
    """

    name: str
    alpha_x_gy: float
    beta_x_gy2: float
    d_t_gy: float
    nucleus_radius_um: float = 5.0
    rapid_scheme: str = DEFAULT_RAPID_SCHEME

    def __post_init__(self) -> None:
        if self.rapid_scheme not in RAPID_SCHEMES:
            raise InputError(f"tissue {self.name!r}: unknown LEM I rapid scheme "
                             f"{self.rapid_scheme!r}; choose {' or '.join(RAPID_SCHEMES)}")
        for field_name in ("alpha_x_gy", "beta_x_gy2", "d_t_gy", "nucleus_radius_um"):
            value = getattr(self, field_name)
            try:
                ok = bool(np.isfinite(float(value)) and float(value) > 0)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError(f"tissue {self.name!r}: {field_name} must be a finite number "
                                 f"> 0; got {value!r}")

    @property
    def s_max_gy(self) -> float:
        """Limiting slope s_max = alpha_x + 2 beta_x D_t of the photon response, 1/Gy."""
        return self.alpha_x_gy + 2.0 * self.beta_x_gy2 * self.d_t_gy

    @property
    def alpha_beta_ratio_gy(self) -> float:
        return self.alpha_x_gy / self.beta_x_gy2

    def photon_effect(self, dose_gy: FloatArray) -> FloatArray:
        """-ln S_x of the photon response (linear-quadratic-linear), elementwise."""
        d = np.asarray(dose_gy, dtype=np.float64)
        d_t = self.d_t_gy
        lq = self.alpha_x_gy * d + self.beta_x_gy2 * d * d
        lin = (self.alpha_x_gy * d_t + self.beta_x_gy2 * d_t * d_t
               + self.s_max_gy * (d - d_t))
        return np.where(d <= d_t, lq, lin)


#: Published tissue classes. HSG and V79: photon parameters and threshold doses used for the
#: LEM calculations of Friedrich et al. 2013 (J Radiat Res 54:494, caption of Fig. 8).
#: Chordoma-like clinical class of GSI/HIT (alpha_x = 0.1 /Gy, beta_x = 0.05 /Gy^2, so
#: alpha_x/beta_x = 2 Gy, D_t = 30 Gy, R_n = 5 um): widely quoted for the GSI pilot project
#: and HIT; the primary source was not re-checked here (unverified; PHYSICS.md).
DEFAULT_TISSUES: tuple[Tissue, ...] = (
    Tissue("chordoma", 0.1, 0.05, 30.0),
    Tissue("hsg", 0.313, 0.0615, 7.5),
    Tissue("v79", 0.184, 0.020, 17.0),
)


def tissue_by_name(name: str, rapid_scheme: str = DEFAULT_RAPID_SCHEME) -> Tissue:
    """One of :data:`DEFAULT_TISSUES` by (case-insensitive) name, with the given rapid scheme;
    raise :class:`InputError`."""
    for tissue in DEFAULT_TISSUES:
        if tissue.name == name.strip().lower():
            return replace(tissue, rapid_scheme=rapid_scheme)
    known = ", ".join(t.name for t in DEFAULT_TISSUES)
    raise InputError(f"unknown tissue {name!r}; choose one of {known} or give alpha_x, beta_x "
                     "and D_t explicitly")


def parse_tissue(text: str) -> Tissue:
    """A LEM I tissue from a class name (:data:`DEFAULT_TISSUES`) or from ``alpha_x,beta_x,D_t``
    (1/Gy, 1/Gy^2, Gy), optionally followed by ``:scheme`` naming the rapid variant
    (:data:`RAPID_SCHEMES`, e.g. ``chordoma:central``; default ``averaged``); raise
    :class:`InputError`."""
    body, colon, scheme = str(text).partition(":")
    if colon and not scheme.strip():
        raise InputError(f"tissue {text!r}: no rapid scheme after ':'; choose "
                         f"{' or '.join(RAPID_SCHEMES)} (or leave out ':' for "
                         f"{DEFAULT_RAPID_SCHEME})")
    scheme = scheme.strip().lower() or DEFAULT_RAPID_SCHEME
    if scheme not in RAPID_SCHEMES:
        raise InputError(f"tissue {text!r}: unknown LEM I rapid scheme {scheme!r}; choose "
                         f"{' or '.join(RAPID_SCHEMES)}")
    parts = [p.strip() for p in body.split(",")]
    if len(parts) == 1:
        return tissue_by_name(parts[0], scheme)
    if len(parts) != 3:
        raise InputError(f"tissue {text!r}: give a name or alpha_x,beta_x,D_t")
    try:
        ax, bx, dt = (float(p) for p in parts)
    except ValueError:
        raise InputError(f"tissue {text!r}: alpha_x, beta_x and D_t must be numbers") from None
    return Tissue(name=f"user({body.strip()})", alpha_x_gy=ax, beta_x_gy2=bx, d_t_gy=dt,
                  rapid_scheme=scheme)


def lem1_alpha_beta(energies_mev_u: ArrayLike, let_kev_um: ArrayLike, tissue: Tissue
                    ) -> tuple[FloatArray, FloatArray]:
    """LEM I low-dose alpha_z (1/Gy) and rapid-scheme beta_z (1/Gy^2) of single ions, with the
    tissue's rapid scheme (``averaged`` or ``central``, see the module docstring).

    Parameters
    ----------
    energies_mev_u, let_kev_um : array_like, same shape
        Kinetic energy per nucleon (MeV/u; sets the track radius) and LET in water (keV/um).
    tissue : Tissue
        Photon parameters, nucleus radius and rapid scheme.

    Returns
    -------
    alpha_gy, beta_gy2 : ndarray
        Arrays of the input shape.
    """
    e, let = np.broadcast_arrays(np.asarray(energies_mev_u, dtype=np.float64),
                                 np.asarray(let_kev_um, dtype=np.float64))
    shape = e.shape
    track = scholz_kraft(e.ravel(), let.ravel())
    r_n = tissue.nucleus_radius_um
    energy = GY_UM2_PER_KEV_UM * let.ravel()
    if tissue.rapid_scheme == "central":
        centre = ImpactGrid(b_um=np.zeros((track.size, 1)), weight_um2=np.ones((track.size, 1)))
        lethal_0 = target_average(track, r_n, centre, tissue.photon_effect)[:, 0]
        d_1 = energy / (np.pi * r_n**2)  # mean nucleus dose of one traversal, Gy
        alpha = -np.expm1(-lethal_0) / d_1
        alpha_poisson = lethal_0 / d_1
    else:
        grid = impact_grid(track, r_n)
        lethal = target_average(track, r_n, grid, tissue.photon_effect)
        alpha = np.sum(-np.expm1(-lethal) * grid.weight_um2, axis=1) / energy
        alpha_poisson = np.sum(lethal * grid.weight_um2, axis=1) / energy
    beta = rapid_beta_gy2(alpha, alpha_poisson, tissue)
    return alpha.reshape(shape), beta.reshape(shape)


def rapid_beta_gy2(alpha_gy: ArrayLike, alpha_poisson_gy: ArrayLike, tissue: Tissue
                   ) -> FloatArray:
    """Kraemer–Scholz (2006) beta_z = (alpha_z/alpha_P)^2 (s_max - alpha_P) / (2 D_t), 1/Gy^2.

    Parameters
    ----------
    alpha_gy : array_like
        Low-dose alpha_z = <1 - exp(-N)> / <z_1>, 1/Gy.
    alpha_poisson_gy : array_like
        Unsaturated alpha_P = <N> / <z_1> (>= alpha_z, < s_max), 1/Gy.
    tissue : Tissue
    """
    a = np.asarray(alpha_gy, dtype=np.float64)
    a_p = np.asarray(alpha_poisson_gy, dtype=np.float64)
    ratio = np.divide(a, a_p, out=np.ones_like(a * a_p), where=a_p > 0)
    return ratio**2 * np.maximum(tissue.s_max_gy - a_p, 0.0) / (2.0 * tissue.d_t_gy)


def rbe_weighted_dose_gradient(dose_gy: Any, alpha_dose_sum: Any, sqrt_beta_dose_sum: Any, *,
                               tissue: Tissue) -> RbeGradient:
    """LEM RBE-weighted dose and derivatives from D, A = sum alpha_i d_i, B = sum sqrt(beta_i) d_i.

    All arrays per voxel and per fraction (Gy, 1/Gy x Gy, 1/Gy x Gy), any shape, one namespace.

    Ion effect of the mixed field, linear-quadratic-linear with the tissue's threshold D_t
    (module docstring, "High doses"): eps = A + B^2 up to D = D_t; above it
    eps = A + B^2 (2 t - t^2) with t = D_t / D (the curve continues with the slope
    alpha_mix + 2 beta_mix D_t it has at D_t), so dEps/dD = 2 B^2 D_t (D_t - D) / D^3 there.

    RBE-weighted dose: the photon dose of equal effect on the tissue's photon response,
    linear-quadratic up to eps_t = alpha_x D_t + beta_x D_t^2, D_RBE = D_t + (eps - eps_t)/s_max
    above; dD_RBE/dEps = 1 / sqrt(alpha_x^2 + 4 beta_x eps) below, 1 / s_max above (equal at
    eps_t). dD_RBE/dA = dD_RBE/dEps, dD_RBE/dB = 2 B g dD_RBE/dEps (g = 1 or 2 t - t^2),
    dD_RBE/dD = dEps/dD dD_RBE/dEps (0 up to D_t).
    """
    xp = array_namespace(dose_gy, alpha_dose_sum, sqrt_beta_dose_sum)
    d_t = tissue.d_t_gy
    b2 = sqrt_beta_dose_sum * sqrt_beta_dose_sum
    dose_above_t = xp.where(dose_gy > d_t, dose_gy, xp.full_like(dose_gy, d_t))
    t = d_t / dose_above_t  # 1 where D <= D_t
    g = t * (2.0 - t)
    eps = alpha_dose_sum + b2 * g
    d_eps_d_dose = 2.0 * b2 * t * (t - 1.0) / dose_above_t
    eps_t = tissue.alpha_x_gy * d_t + tissue.beta_x_gy2 * d_t * d_t
    linear = eps > eps_t
    d_lq, d_lq_d_eps = lq_effect_to_dose(xp.where(linear, xp.full_like(eps, eps_t), eps),
                                         tissue.alpha_x_gy, tissue.beta_x_gy2, xp)
    d_rbe = xp.where(linear, d_t + (eps - eps_t) / tissue.s_max_gy, d_lq)
    d_d_eps = xp.where(linear, xp.full_like(eps, 1.0 / tissue.s_max_gy), d_lq_d_eps)
    return RbeGradient(dose_gy_rbe=d_rbe, d_dose=d_eps_d_dose * d_d_eps,
                       d_sums=(d_d_eps, 2.0 * sqrt_beta_dose_sum * g * d_d_eps))


@dataclass(frozen=True)
class LemModel(RbeModel):
    """LEM I with the Kraemer–Scholz rapid beta for one tissue, in the tissue's rapid scheme
    (see the module docstring).

    Parameters
    ----------
    tissue : Tissue
        Photon response and nucleus size; default the chordoma-like clinical class.
    """

    tissue: Tissue = DEFAULT_TISSUES[0]

    name: ClassVar[str] = "LEM I"
    quantity_names: ClassVar[tuple[str, ...]] = ("alpha_gy", "sqrt_beta_gy")

    def particle_tables(self, species_z: ArrayLike, energies_mev_u: ArrayLike, *,
                        stopping_source: str = "mstar_3_12") -> ParticleTable:
        """alpha_z (1/Gy) and sqrt(beta_z) (1/Gy) of each species at each energy."""
        z, e = validate_particle_grid(species_z, energies_mev_u)
        let = let_table_kev_um(z, e, stopping_source)
        alpha, beta = lem1_alpha_beta(np.broadcast_to(e[None, :], let.shape), let, self.tissue)
        return ParticleTable(self.name, self.quantity_names, z, e, let, (alpha, np.sqrt(beta)))

    def lq_parameters(self, table: ParticleTable) -> tuple[FloatArray, FloatArray]:
        alpha, sqrt_beta = table.quantities
        return alpha, sqrt_beta**2

    def rbe_weighted_dose_from_sums(self, dose_gy: Any, sums: tuple[Any, ...]) -> Any:
        """RBE-weighted dose (Gy(RBE)) from D and (sum alpha_i d_i, sum sqrt(beta_i) d_i)."""
        return self.rbe_weighted_dose_gradient(dose_gy, sums).dose_gy_rbe

    def rbe_weighted_dose_gradient(self, dose_gy: Any, sums: tuple[Any, ...]) -> RbeGradient:
        self._check_sums(sums)
        return rbe_weighted_dose_gradient(dose_gy, sums[0], sums[1], tissue=self.tissue)

    def describe(self) -> str:
        t = self.tissue
        # The scheme right after the tissue and no derived items (alpha_x/beta_x): a chordoma
        # description (60 characters) fits whole in a 64-character DICOM label, so two doses
        # of different schemes never read alike there (dicom docs).
        return (f"LEM I {t.name} rapid={t.rapid_scheme} ax={t.alpha_x_gy:g} bx={t.beta_x_gy2:g} "
                f"Dt={t.d_t_gy:g}Gy Rn={t.nucleus_radius_um:g}um")
