"""What the plan-setup form holds, read from text fields and checked (no Kivy here).

The form (:mod:`app.panels.plan_panel`) gives strings; :func:`parse_plan_setup` turns them into
a :class:`PlanSetup` or raises :class:`planning.errors.InputError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from planning import api
from planning.errors import InputError, PlanningError
from planning.optimization import OBJECTIVE_KINDS, Objective
from planning.plan_config import DEFAULT_RINGS
from planning.planner import PlanRequest
from planning.rbe import DEFAULT_TISSUES
from planning.rbe.lem import DEFAULT_RAPID_SCHEME, RAPID_SCHEMES
from planning.regions import ring_match

#: RBE model choices: (label shown, ``planning.api.rbe_model`` name).
RBE_MODELS: tuple[tuple[str, str], ...] = (
    ("mMKM (NIRS clinical dose)", "mkm"),
    ("LEM I", "lem1"),
    ("Constant RBE", "const"),
    ("Physical dose", "physical"),
)
#: Largest relative difference between the target's squared-deviation objective and the
#: prescription that the form accepts.
TARGET_OBJECTIVE_TOLERANCE = 0.02
#: How the form's objective rows name each type (:data:`planning.optimization.OBJECTIVE_KINDS`):
#: short enough to be read whole in the row ("squared_deviation" showed as
#: "square...viation"). The saved form, plan configuration files and report.json keep the keys.
OBJECTIVE_KIND_LABELS: dict[str, str] = {
    "squared_deviation": "uniform", "min_dose": "min", "max_dose": "max", "mean_dose": "mean",
    "max_dvh": "DVH max", "min_dvh": "DVH min"}
assert tuple(OBJECTIVE_KIND_LABELS) == OBJECTIVE_KINDS
DEVICES: tuple[tuple[str, str], ...] = (("Auto", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "gpu"))
#: The LEM I tissue choice that reads alpha_x, beta_x and D_t from three fields.
CUSTOM_TISSUE = "custom"
#: LEM I tissue choices: the tissue classes planning knows, then "custom".
TISSUE_CHOICES: tuple[str, ...] = (*(t.name for t in DEFAULT_TISSUES), CUSTOM_TISSUE)
#: The custom tissue's fields: (label naming the field in messages, lowest, highest).
CUSTOM_TISSUE_FIELDS: tuple[tuple[str, float, float], ...] = (
    ("LEM I custom tissue alpha_x (1/Gy)", 1e-4, 5.0),
    ("LEM I custom tissue beta_x (1/Gy^2)", 1e-4, 2.0),
    ("LEM I custom tissue D_t (Gy)", 0.5, 200.0),
)


@dataclass(frozen=True)
class BeamSetup:
    gantry_deg: float
    couch_deg: float = 0.0


@dataclass(frozen=True)
class PlanSetup:
    """A complete, checked plan request as entered in the form."""

    target: str
    total_dose_gy_rbe: float
    fractions: int
    beams: tuple[BeamSetup, ...]
    rbe: str
    rbe_value: float | None
    tissue: str | None
    spot_spacing_mm: float
    grid_mm: float
    device: str
    exchange: bool
    objectives: tuple[Objective, ...] = field(default=())

    @property
    def dose_per_fraction_gy_rbe(self) -> float:
        return self.total_dose_gy_rbe / self.fractions

    def summary(self) -> str:
        beams = ", ".join(f"G{b.gantry_deg:g}" + (f"/C{b.couch_deg:g}" if b.couch_deg else "")
                          for b in self.beams)
        model = dict((v, k) for k, v in RBE_MODELS)[self.rbe]
        return (f"{self.target} {self.total_dose_gy_rbe:g} {model_dose_unit(self.rbe)} in "
                f"{self.fractions} fx, {model}, beams {beams}, spots {self.spot_spacing_mm:g} mm, "
                f"grid {self.grid_mm:g} mm")


def objective_kind_label(kind: str) -> str:
    """The form's name of the objective type ``kind`` (:data:`OBJECTIVE_KIND_LABELS`; an
    unknown one as it is)."""
    return OBJECTIVE_KIND_LABELS.get(kind, kind)


def objective_kind_key(label: str) -> str:
    """The objective type the form's ``label`` names (a type key is taken as it is; an
    unknown text too, for :class:`Objective` to refuse)."""
    return next((k for k, v in OBJECTIVE_KIND_LABELS.items() if v == label), label)


#: What each default ring's maximum is for (:data:`planning.plan_config.DEFAULT_RINGS`, the
#: module docstring of :mod:`planning.plan_config`), by (inner, outer) mm.
RING_PURPOSES: dict[tuple[float, float], str] = {
    (0.0, 5.0): "no hot spot beside the target",
    (5.0, 15.0): "the dose fall-off",
    (15.0, 30.0): "a cap on hot spots outside the target (the body maximum), not a step of "
                  "the fall-off",
}


def default_rings_note(ring_names: Sequence[str]) -> str:
    """A hint under the objective rows when ``ring_names`` (the rows' structures) hold a ring
    around a structure (:mod:`planning.regions`): what the default rings' maxima are for; a
    far ring at 105 % next to a nearer one at 80 % read as a mistake. ``""`` without rings."""
    if not any(ring_match(name) for name in ring_names):
        return ""
    parts = []
    for inner, outer, share, _weight in DEFAULT_RINGS:
        purpose = RING_PURPOSES.get((inner, outer))
        parts.append(f"{inner:g}-{outer:g} mm max {100 * share:g} %"
                     + (f": {purpose}" if purpose else ""))
    return "Default rings around the target: " + "; ".join(parts) + "."


def model_dose_unit(model_key: str) -> str:
    """The prescription's unit under the model ``model_key`` (an :data:`RBE_MODELS` name): Gy
    under the physical model, Gy(RBE) under the RBE models."""
    return "Gy" if model_key == "physical" else "Gy(RBE)"


def _number(text: str, what: str, *, lo: float, hi: float) -> float:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a number") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InputError(f"{what} must lie between {lo:g} and {hi:g}, got {value:g}")
    return value


def parse_grid_mm(text: str) -> float:
    """The dose grid spacing field, mm."""
    return _number(text, "dose grid (mm)", lo=0.5, hi=20)


def parse_beam(gantry_text: str, couch_text: str, index: int) -> BeamSetup:
    g = _number(gantry_text, f"beam {index + 1} gantry angle (deg)", lo=-360, hi=360)
    c = _number(couch_text or "0", f"beam {index + 1} couch angle (deg)", lo=-360, hi=360)
    return BeamSetup(g % 360.0, c % 360.0)


def parse_prescription(dose_text: str, unit: str = "Gy(RBE)") -> float:
    """The prescribed dose field: the whole plan's dose, in ``unit`` (the chosen model's,
    :func:`model_dose_unit`)."""
    return _number(dose_text, f"prescribed dose ({unit}, whole plan)", lo=0.01, hi=200)


def parse_objective(structure: str, kind: str, dose_text: str, weight_text: str,
                    volume_text: str, index: int, unit: str = "Gy(RBE)") -> Objective:
    """One objective row; ``volume_text`` is a percentage, needed by the DVH objectives;
    ``unit`` is the chosen model's dose unit (:func:`model_dose_unit`), named in messages."""
    what = f"objective {index + 1} ({structure})"
    dose = _number(dose_text, f"{what} dose ({unit}, whole plan)", lo=0, hi=1000)
    weight = _number(weight_text, f"{what} weight", lo=1e-6, hi=1e6)
    volume = None
    if kind in ("max_dvh", "min_dvh"):
        volume = _number(volume_text, f"{what} volume (%)", lo=0.1, hi=99.9) / 100.0
    try:
        return Objective(structure, kind, dose, weight, volume)
    except PlanningError as exc:
        raise InputError(str(exc)) from None


def names_a_structure(name: str, structures: Sequence[str]) -> bool:
    """Whether an objective's ``name`` is one of ``structures`` or a region generated around
    one (``"PTV ring 0-5 mm"``, :mod:`planning.regions`); names match case-insensitively."""
    known = {s.lower() for s in structures}
    ring = ring_match(name)
    return name.lower() in known or (ring is not None and ring["roi"].lower() in known)


def parse_tissue_choice(choice: str, custom_texts: Sequence[str],
                        rapid_scheme: str = DEFAULT_RAPID_SCHEME) -> str:
    """The LEM I tissue as :func:`planning.api.rbe_model` takes it: a class name from
    :data:`TISSUE_CHOICES`, or ``"alpha_x,beta_x,D_t"`` from the three custom fields, with
    ``":central"`` for that rapid scheme (:data:`planning.rbe.lem.RAPID_SCHEMES`; none for the
    default)."""
    if rapid_scheme not in RAPID_SCHEMES:
        raise InputError(f"LEM I rapid scheme: {rapid_scheme!r} is not one of "
                         f"{', '.join(RAPID_SCHEMES)}")
    suffix = "" if rapid_scheme == DEFAULT_RAPID_SCHEME else f":{rapid_scheme}"
    if choice != CUSTOM_TISSUE:
        if choice not in TISSUE_CHOICES:
            raise InputError(f"LEM I tissue: {choice!r} is not one of "
                             f"{', '.join(TISSUE_CHOICES)}")
        return choice + suffix
    if len(custom_texts) != len(CUSTOM_TISSUE_FIELDS):
        raise InputError("LEM I custom tissue: give alpha_x, beta_x and D_t")
    values = [_number(text, what, lo=lo, hi=hi)
              for text, (what, lo, hi) in zip(custom_texts, CUSTOM_TISSUE_FIELDS, strict=True)]
    return ",".join(repr(v) for v in values) + suffix


def parse_plan_setup(*, target: str, dose_text: str, fractions_text: str,
                     beams: list[BeamSetup], rbe_label: str, rbe_value_text: str,
                     tissue_choice: str, spot_spacing_text: str, grid_text: str,
                     device_label: str, exchange: bool, objectives: list[Objective],
                     tissue_custom_texts: Sequence[str] = (),
                     rapid_scheme: str = DEFAULT_RAPID_SCHEME,
                     structures: Sequence[str] | None = None) -> PlanSetup:
    """Check every value of the form before any work; raise InputError naming the first bad
    field and what is wrong with it.

    ``structures``, when given, are the patient's: the target must be one of them, every
    objective one of them or a ring generated around one.
    """
    if not target:
        raise InputError("choose a target structure")
    if structures is not None:
        if target not in structures:
            raise InputError(f"target: the patient has no structure named {target!r}")
        for i, o in enumerate(objectives):
            if not names_a_structure(o.structure, structures):
                raise InputError(f"objective {i + 1}: the patient has no structure named "
                                 f"{o.structure!r} (nor is it a ring around one)")
    # The unit of the chosen model names the doses in messages (Gy under the physical model).
    unit = model_dose_unit(dict(RBE_MODELS).get(rbe_label, ""))
    dose = parse_prescription(dose_text, unit)
    fractions_value = _number(fractions_text, "number of fractions", lo=1, hi=100)
    if fractions_value != int(fractions_value):
        raise InputError(f"number of fractions must be a whole number, got {fractions_text!r}")
    if not beams:
        raise InputError("add at least one beam")
    models = dict(RBE_MODELS)
    if rbe_label not in models:
        raise InputError(f"unknown RBE model {rbe_label!r}")
    rbe = models[rbe_label]
    rbe_value = (_number(rbe_value_text, "constant RBE", lo=0.5, hi=10) if rbe == "const"
                 else None)
    # The LEM I tissue applies to a LEM I plan and to the LEM I side of the exchange view.
    tissue = (parse_tissue_choice(tissue_choice, tissue_custom_texts, rapid_scheme)
              if rbe == "lem1" or exchange else None)
    try:  # the models themselves, as the worker will build them
        api.rbe_model(rbe, tissue, rbe_value)
        if tissue is not None:
            api.parse_tissue(tissue)
    except InputError as exc:
        raise InputError(f"RBE model: {exc}") from None
    if not any(o.structure == target for o in objectives):
        raise InputError(f"the target {target!r} has no objective: add one (e.g. "
                         "'uniform' at the prescribed dose)")
    for o in objectives:
        if (o.structure == target and o.kind == "squared_deviation"
                and abs(o.dose_gy_rbe - dose) > TARGET_OBJECTIVE_TOLERANCE * dose):
            raise InputError(
                f"the target objective asks for {o.dose_gy_rbe:g} {unit} but the prescription "
                f"is {dose:g} {unit}: the plan would be optimized to another dose than it is "
                "labelled with; press 'Default objectives' or correct the objective")
    spot_spacing_mm = _number(spot_spacing_text, "spot spacing (mm)", lo=0.5, hi=20)
    grid_mm = parse_grid_mm(grid_text)
    devices = dict(DEVICES)
    if device_label not in devices:
        raise InputError(f"device: {device_label!r} is not one of {', '.join(devices)}")
    return PlanSetup(
        target=target, total_dose_gy_rbe=dose, fractions=int(fractions_value),
        beams=tuple(beams), rbe=rbe, rbe_value=rbe_value, tissue=tissue,
        spot_spacing_mm=spot_spacing_mm, grid_mm=grid_mm, device=devices[device_label],
        exchange=exchange, objectives=tuple(objectives))


def reoptimization_conflicts(request: PlanRequest, setup: PlanSetup) -> list[str]:
    """What in the form differs from a prepared plan's request in a way the kept influence
    cannot absorb (empty: re-optimization applies). Prescription, fractions, objectives and
    the exchange view may change."""
    changed = []
    beams = tuple((b.gantry_deg, b.couch_deg) for b in setup.beams)
    couch = request.couch_deg or (0.0,) * len(request.gantry_deg)
    if beams != tuple(zip(request.gantry_deg, couch, strict=True)):
        changed.append("the beams")
    if setup.target != request.target:
        changed.append("the target")
    # The tissue is the plan's model only under LEM I; otherwise it is the exchange view's
    # LEM I side, computed after the optimization (it may change, as the view may).
    tissue_of_plan = (setup.tissue if setup.rbe == "lem1" else None,
                      request.tissue if request.rbe_model == "lem1" else None)
    if ((setup.rbe, setup.rbe_value) != (request.rbe_model, request.rbe_value)
            or tissue_of_plan[0] != tissue_of_plan[1]):
        changed.append("the RBE model")
    if setup.spot_spacing_mm != request.spot_spacing_mm:
        changed.append("the spot spacing")
    if setup.grid_mm != request.dose_grid_mm:
        changed.append("the dose grid")
    if setup.device != request.device:
        changed.append("the device")
    return changed
