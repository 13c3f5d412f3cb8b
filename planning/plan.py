"""A treatment plan: prescription, beams with their spots and weights, and the model used.

Spot weights are numbers of primary ions per fraction, in units of
:data:`planning.beams.PRIMARIES_PER_WEIGHT_UNIT` (10^6), the unit of the influence matrices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from planning.beams import Beam, SpotMap
from planning.errors import InputError, PlanningError
from planning.rbe import LemModel, RbeModel, Tissue
from planning.rbe.record import model_label

#: The name of a plan that was given none.
DEFAULT_PLAN_LABEL = "IonPlan"
#: Longest plan name (the RT Plan Name, DICOM LO; the RT Plan Label keeps its first 16).
MAX_PLAN_NAME = 64


def checked_plan_name(text: str, what: str = "plan name") -> str:
    """``text`` as a plan's name: runs of white space made one space; InputError naming
    ``what`` for an empty name, one over :data:`MAX_PLAN_NAME` characters, or one with a
    character DICOM text cannot hold (a backslash, a control character)."""
    name = " ".join(str(text).split())
    if not name:
        raise InputError(f"{what}: give a name")
    if len(name) > MAX_PLAN_NAME:
        raise InputError(f"{what}: at most {MAX_PLAN_NAME} characters, got {len(name)}")
    bad = sorted({ch for ch in name if ch == "\\" or not ch.isprintable()})
    if bad:
        raise InputError(f"{what}: {name!r} holds {', '.join(repr(ch) for ch in bad)}, "
                            "which DICOM text cannot hold")
    return name


def fractions_text(n_fractions: int | None) -> str:
    """``"1 fraction"``, ``"16 fractions"``, ``"? fractions"`` (unknown)."""
    if n_fractions is None:
        return "? fractions"
    return f"{n_fractions} fraction{'' if n_fractions == 1 else 's'}"

@dataclass(frozen=True)
class Prescription:
    """RBE-weighted prescription to a target structure.

    Attributes
    ----------
    target : str
        Name of the target ROI.
    total_dose_gy_rbe : float
        Total prescribed dose, Gy(RBE) (Gy for physical-dose plans).
    n_fractions : int
        Number of fractions.
    """

    target: str
    total_dose_gy_rbe: float
    n_fractions: int

    def __post_init__(self) -> None:
        if not self.target.strip():
            raise PlanningError("the prescription needs a target structure name")
        if not (math.isfinite(self.total_dose_gy_rbe) and 0 < self.total_dose_gy_rbe <= 200):
            # No unit: the prescription does not know its plan's model (Gy under physical).
            raise PlanningError(f"prescribed dose must lie in (0, 200] (whole plan, in the "
                                f"plan's dose unit), got {self.total_dose_gy_rbe}")
        if not 1 <= self.n_fractions <= 100:
            raise PlanningError(f"number of fractions must lie in 1..100, got {self.n_fractions}")

    @property
    def dose_per_fraction_gy_rbe(self) -> float:
        return self.total_dose_gy_rbe / self.n_fractions


@dataclass(frozen=True, eq=False)
class BeamPlan:
    """One beam of a plan.

    Attributes
    ----------
    beam : Beam
        Geometry (isocentre, gantry and couch angles) and name.
    spots : SpotMap
        Spot energies and positions at the isocentre plane.
    weights : (n_spots,) float array
        Primary ions per fraction, in units of 10^6, >= 0.
    range_shifter_wet_mm : float
        Water-equivalent thickness of a range shifter in the beam (0 = none).
    """

    beam: Beam
    spots: SpotMap
    weights: NDArray[np.float64]
    range_shifter_wet_mm: float = 0.0

    def __post_init__(self) -> None:
        w = np.asarray(self.weights)
        if w.shape != (self.spots.n_spots,):
            raise PlanningError(f"{self.beam.label}: {w.size} weights for "
                                f"{self.spots.n_spots} spots")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise PlanningError(f"{self.beam.label}: spot weights must be finite and >= 0")
        if not (math.isfinite(self.range_shifter_wet_mm) and self.range_shifter_wet_mm >= 0):
            raise PlanningError(f"{self.beam.label}: range shifter WET must be >= 0 mm")


@dataclass(frozen=True)
class BeamDoses:
    """Each beam's dose per fraction at the plan's dose specification point.

    Written to the RT Ion Plan as the Beam Doses of the fraction group (docs/dicom.md).

    Attributes
    ----------
    point_mm : (x, y, z)
        The dose specification point, DICOM patient coordinates (LPS), mm.
    physical_gy : tuple of float
        Physical dose of each beam per fraction at the point, Gy, in the order of the beams.
    rbe_weighted_gy_rbe : tuple of float
        Each beam's share of the RBE-weighted dose per fraction at the point, Gy(RBE): the
        plan's RBE at the point times the beam's physical dose (the RBE of a mixed field is
        not a sum over beams; these shares sum to the plan's RBE-weighted dose there).
    """

    point_mm: tuple[float, float, float]
    physical_gy: tuple[float, ...]
    rbe_weighted_gy_rbe: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.point_mm) != 3 or not all(math.isfinite(v) for v in self.point_mm):
            raise PlanningError(f"dose specification point must be 3 finite mm, "
                                f"got {self.point_mm}")
        if len(self.physical_gy) != len(self.rbe_weighted_gy_rbe):
            raise PlanningError("one physical and one RBE-weighted dose per beam")
        for v in (*self.physical_gy, *self.rbe_weighted_gy_rbe):
            if not (math.isfinite(v) and v >= 0):
                raise PlanningError(f"beam doses must be finite and >= 0, got {v}")


@dataclass(frozen=True, eq=False)
class Plan:
    """A carbon-ion spot-scanning plan.

    Attributes
    ----------
    label : str
        The plan's name: exported as RT Plan Name (at most 64 characters) and, cut to 16, RT
        Plan Label; read back from RT Plan Name, else RT Plan Label.
    machine_name : str
        Name of the machine whose beam data the plan was made with.
    beams : tuple of BeamPlan
        The beams.
    prescription : Prescription
        Target, total dose and fractions.
    rbe_model : str or None
        One-line description of the RBE model the plan was optimized with
        (``RbeModel.describe()``), e.g. "mMKM HSG Fclin=2.41", or the words a received plan
        names its model in; None when the plan names no model (another system's plan
        without IonPlan's RBE model record or description).
    ion_z, ion_a : int
        The ion species (12C: 6, 12).
    rbe : RbeModel or None
        That model itself, with all its parameters, when known (planned by IonPlan, or read
        from IonPlan's RBE model record of an RT Ion Plan); then ``rbe_model`` is its
        ``describe()``. None for a plan that names its model only in words (or not at all).
    rbe_tissues : tuple of (str, Tissue)
        LEM I tissues per structure the plan was optimized with (a plan configuration's
        ``tissues``, in its order; the first listed structure wins where structures overlap,
        the other voxels take ``rbe``'s tissue); empty for one model everywhere.
    beam_doses : BeamDoses or None
        Each beam's dose per fraction at the dose specification point (planned by IonPlan, or
        read from an RT Ion Plan's fraction group); None when unknown, and dropped (None) when
        their number is not the number of beams. They describe the plan as planned: a plan
        whose weights are changed afterwards keeps them.
    """

    label: str
    machine_name: str
    beams: tuple[BeamPlan, ...]
    prescription: Prescription
    rbe_model: str | None
    ion_z: int = 6
    ion_a: int = 12
    notes: tuple[str, ...] = field(default=())
    rbe: RbeModel | None = None
    beam_doses: BeamDoses | None = None
    rbe_tissues: tuple[tuple[str, Tissue], ...] = ()

    def __post_init__(self) -> None:
        if not self.beams:
            raise PlanningError("a plan needs at least one beam")
        if self.beam_doses is not None and len(self.beam_doses.physical_gy) != len(self.beams):
            # a plan made from another with beams added or removed: its beam doses are unknown
            object.__setattr__(self, "beam_doses", None)
        if self.rbe_tissues and not isinstance(self.rbe, LemModel):
            raise PlanningError("LEM I tissues per structure need the plan's LEM I model")
        if self.rbe is not None and self.rbe_model != self.rbe.describe():
            raise PlanningError(f"the plan's RBE model text {self.rbe_model!r} is not its "
                                f"model's description {self.rbe.describe()!r}")

    @property
    def rbe_label(self) -> str | None:
        """The plan's RBE model as its labels and reports name it: with LEM I tissues per
        structure, each structure's tissue first and then the model elsewhere
        (:func:`planning.rbe.record.model_label`, the words of the plan's own report.json);
        else :attr:`rbe_model` (None when the plan names no model)."""
        if self.rbe is None or not self.rbe_tissues:
            return self.rbe_model
        return model_label(self.rbe, self.rbe_tissues)

    @property
    def n_spots(self) -> int:
        return sum(b.spots.n_spots for b in self.beams)

    def all_weights(self) -> NDArray[np.float64]:
        """Weights of all beams concatenated, in the column order of an influence matrix."""
        return np.concatenate([np.asarray(b.weights, dtype=np.float64) for b in self.beams])
