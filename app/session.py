"""The GUI's view-model: the loaded patient, the plans computed on it, and what each can show.

Plain Python (no Kivy) so it is tested without a window. Widgets subscribe with
:meth:`Session.subscribe` and are told ``"patient"`` or ``"plans"`` when either changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels
from planning.errors import InputError
from planning.patient import Patient
from planning.plan import MAX_PLAN_NAME, checked_plan_name
from planning.planner import PlanResult
from planning.rbe import dose_unit_of
from planning.rbe.lem import LemModel, Tissue
from planning.rbe.record import StructureTissues, same_prescription_model, short_model_name
from planning.robust import RobustResult
from planning.workspace import new_plan_id


@dataclass(frozen=True, eq=False)
class DoseLayer:
    """One cube a plan can display.

    Attributes
    ----------
    key : str
        Stable identifier (``"rbe"``, ``"physical"``, ``"letd"``, ``"rbe_factor"``,
        ``"beam0"``, ``"mkm"``, ``"lem1"``, ``"ratio"``).
    label : str
        What the user reads in the quantity chooser.
    cube : (nz, ny, nx) float32 array
        Values on ``grid``.
    grid : DoseGrid
        The cube's grid.
    unit : str
        ``"Gy(RBE)"``, ``"Gy"``, ``"keV/µm"`` or ``""`` (dimensionless).
    reference : float
        The value 100 % stands for (the prescription, for doses), or the cube's maximum; for a
        quantity shown only where there is dose (``mask_dose``), its maximum there.
    is_dose : bool
        True for dose cubes (DVHs, metrics, % of prescription and isodoses make sense).
    reference_name : str
        What ``reference`` is: ``"prescription"``, ``"maximum"`` (of this cube) or, for a
        masked quantity, ``"maximum where the plan's dose ≥ 10 % Rx"``.
    mask_dose : (nz, ny, nx) float32 array, optional
        For a quantity that means little where there is hardly any dose (LETd, RBE, the
        model ratio): the RBE-weighted dose on ``grid``; the quantity is shown only where it
        reaches ``mask_dose_min``.
    mask_dose_min : float
        That dose, Gy(RBE) (:data:`QUANTITY_MASK_FRACTION` of the prescription).
    labels : VoxelLabels, optional
        For a cube that jumps between LEM I tissues (a plan with a tissue per structure):
        the DVHs read each listed structure within its own tissue.
    scale_name : str
        What the colour scale's values are when they have no unit (``"RBE"``,
        ``"LEM/mMKM"``); the legend shows it in place of a unit.
    tissues : str
        For a dose computed with LEM I tissues per structure (``label`` says only
        :data:`PER_STRUCTURE_NAME`): each structure's tissue and rapid scheme and the tissue
        elsewhere (:func:`describe_tissues`); "" otherwise.
    v95_note : str
        Why the metrics table gives no V95 of the cube: an RBE-weighted dose under another
        model than the prescription's, whose 100 % is that prescription; "" otherwise.
    """

    key: str
    label: str
    cube: NDArray[np.float32]
    grid: DoseGrid
    unit: str
    reference: float
    is_dose: bool
    reference_name: str = "maximum"
    mask_dose: NDArray[np.float32] | None = None
    mask_dose_min: float = 0.0
    labels: VoxelLabels | None = None
    scale_name: str = ""
    tissues: str = ""
    v95_note: str = ""

    @property
    def reference_text(self) -> str:
        """``"100 % = 57.6 Gy(RBE) (prescription)"``."""
        unit = f" {self.unit}" if self.unit else ""
        return f"100 % = {self.reference:.4g}{unit} ({self.reference_name})"

    @property
    def description(self) -> str:
        """What the Dose tab says of the cube under its chooser: :attr:`reference_text`, and
        on the next lines its LEM I tissues per structure (:attr:`tissues`) and why it has no
        V95 (:attr:`v95_note`), if any."""
        return "\n".join(t for t in (self.reference_text, self.tissues, self.v95_note) if t)


@dataclass(eq=False)
class PlanEntry:
    """A plan of the open patient and the settings it was computed with.

    Only ``name`` changes in place (:meth:`Session.rename_plan`); a robust evaluation gives a
    new entry with the same ``plan_id`` (:meth:`Session.set_robust`). Entries compare by
    identity.

    Attributes
    ----------
    name : str
        What the user calls it (plan list, exports, reports, workspace).
    result : PlanResult
        The plan and its cubes.
    summary : str
        One line on how it was made.
    setup : dict
        The plan-setup form it was computed with (JSON object; empty when unknown).
    plan_id : str
        Its folder in the patient's workspace, fixed for its life.
    robust : RobustResult or None
        Its robust evaluation, once asked for (kept in the workspace with the plan).
    robust_id : str
        Names that evaluation in the workspace (a new one for each evaluation; "" without).
    """

    name: str
    result: PlanResult
    summary: str
    setup: Mapping[str, Any] = field(default_factory=dict)
    plan_id: str = field(default_factory=new_plan_id)
    robust: RobustResult | None = None
    robust_id: str = ""

    @property
    def prescription_gy_rbe(self) -> float:
        return self.result.plan.prescription.total_dose_gy_rbe

    @property
    def keeps_no_influence(self) -> bool:
        """Whether the plan has no influence to re-optimize from (its ``result.prepared`` is
        None): it was restored from a saved session or recalculated from a received plan."""
        return self.result.prepared is None

    @cached_property
    def model_name(self) -> str:
        """Short name of the model the plan's dose was computed with (:func:`short_model_name`;
        a recalculated plan's report names it), :data:`PER_STRUCTURE_NAME` with LEM I tissues
        per structure."""
        r = self.result
        return (PER_STRUCTURE_NAME if r.structure_tissues
                else short_model_name(str(r.report.get("rbe_model", r.plan.rbe_model))))

    @property
    def dose_unit(self) -> str:
        """Unit of the plan's dose and prescription: ``"Gy"`` under the physical model (its
        dose is not RBE-weighted), else ``"Gy(RBE)"``."""
        return dose_unit_of(self.model_name)

    def layers(self) -> list[DoseLayer]:
        """Every cube of the plan the user can display, RBE-weighted dose first."""
        return list(self._layers)

    @cached_property
    def _layers(self) -> tuple[DoseLayer, ...]:
        # Built once: each layer's reference scans its cube.
        r = self.result
        p = self.prescription_gy_rbe
        grid = r.dose_grid
        model = self.model_name
        rx = "prescription"
        low = QUANTITY_MASK_FRACTION * p  # quantities are shown where the dose reaches this
        # ... and 100 % is their maximum there, not where there is hardly any dose.
        where = f"≥ {100 * QUANTITY_MASK_FRACTION:g} % Rx"
        shown_max = f"maximum where the plan's dose {where}"
        # Under the physical model the plan's dose is in Gy: never call it RBE-weighted.
        unit = self.dose_unit
        title = ("Dose of the plan (physical model, no RBE)" if unit == "Gy"
                 else f"RBE-weighted dose ({model})")
        tissues = (describe_tissues(r.structure_tissues, r.model.tissue)
                   if r.structure_tissues and isinstance(r.model, LemModel) else "")
        out = [DoseLayer("rbe", title, r.rbe_dose_gy_rbe, grid, unit, p, True, rx,
                         labels=r.tissue_labels, tissues=tissues)]
        if self.own_physical_key is None:
            out.append(DoseLayer("physical", "Physical dose", r.physical_dose_gy, grid, "Gy",
                                 _max_or_one(r.physical_dose_gy), True))
        out += [DoseLayer("letd", "Dose-averaged LET", r.letd_kev_um, grid, "keV/µm",
                          _max_where(r.letd_kev_um, r.rbe_dose_gy_rbe, low), False, shown_max,
                          mask_dose=r.rbe_dose_gy_rbe, mask_dose_min=low),
                DoseLayer("rbe_factor", "RBE", r.rbe, grid, "",
                          _max_where(r.rbe, r.rbe_dose_gy_rbe, low), False, shown_max,
                          mask_dose=r.rbe_dose_gy_rbe, mask_dose_min=low,
                          labels=r.tissue_labels, scale_name="RBE")]
        for i, (beam, cube) in enumerate(zip(r.plan.beams, r.beam_physical_dose_gy,
                                             strict=True)):
            out.append(DoseLayer(f"beam{i}", f"Physical dose of beam {beam.beam.label}", cube,
                                 grid, "Gy", _max_or_one(cube), True))
        rob = self.robust
        if rob is not None:
            n = len(rob.scenarios)
            out += [DoseLayer("rbe_min", f"Worst case: voxel-wise minimum of {n} scenarios "
                              f"({model})", rob.rbe_min_gy_rbe, grid, unit, p, True, rx,
                              labels=r.tissue_labels, tissues=tissues),
                    DoseLayer("rbe_max", f"Worst case: voxel-wise maximum of {n} scenarios "
                              f"({model})", rob.rbe_max_gy_rbe, grid, unit, p, True, rx,
                              labels=r.tissue_labels, tissues=tissues)]
        x = r.exchange
        if x is not None:
            def side(key: str, label: str, described: str, cube: NDArray[np.float32],
                     labels: VoxelLabels | None = None, tissues: str = "") -> DoseLayer:
                # Read against a prescription of its unit only: a physical plan's 66 Gy made
                # the mMKM dose's 62.7 Gy(RBE) its 95 % line (review); 100 % is then its max.
                if unit != "Gy(RBE)":
                    return DoseLayer(key, label, cube, x.dose_grid, "Gy(RBE)",
                                     _max_or_one(cube), True, labels=labels, tissues=tissues)
                # Its isodoses are of the plan's prescription (named), but not its V95: the
                # same Gy(RBE) number is another physical dose under another model.
                rx_model = r.plan.rbe_label
                note = ("" if same_prescription_model(rx_model, described) else
                        f"No V95: the prescription is {p:g} Gy(RBE) under "
                        f"{short_model_name(str(rx_model))}; under another model the same "
                        "Gy(RBE) is another physical dose")
                return DoseLayer(key, label, cube, x.dose_grid, "Gy(RBE)", p, True,
                                 f"prescription, {model}", labels=labels, tissues=tissues,
                                 v95_note=note)

            # LEM I tissues per structure: named short in the chooser, listed below it.
            lem_tissues = x.lem_structure_tissues
            lem_name = (PER_STRUCTURE_NAME if lem_tissues
                        else short_model_name(x.lem_model))
            sides = [side("mkm", "mMKM clinical dose", x.mkm_model, x.mkm_dose_gy_rbe),
                     side("lem1", f"RBE-weighted dose ({lem_name})", x.lem_model,
                          x.lem_dose_gy_rbe, x.lem_labels,
                          describe_tissues(lem_tissues, x.lem.tissue) if lem_tissues else "")]
            # The side computed with the plan's own model is the plan's dose: shown once.
            out += [s for s in sides if s.key != self.own_exchange_key]
            out.append(DoseLayer("ratio", "LEM I / mMKM ratio", x.ratio_lem_over_mkm,
                                 x.dose_grid, "",
                                 _max_where(x.ratio_lem_over_mkm, x.mkm_dose_gy_rbe, low),
                                 False, f"maximum where the mMKM dose {where}",
                                 mask_dose=x.mkm_dose_gy_rbe, mask_dose_min=low,
                                 scale_name="LEM/mMKM"))
        return tuple(out)

    @cached_property
    def own_exchange_key(self) -> str | None:
        """``"mkm"`` or ``"lem1"`` when that side of the plan's exchange view is the plan's own
        dose (same model, parameters, LEM I tissues per structure and grid: an mMKM or LEM I
        plan), else None. That side is not a layer of its own; :meth:`layer` gives the plan's
        dose (``"rbe"``) for it.

        The models themselves are compared, not their labels: a plan saved before the labels
        of LEM I tissues per structure named each structure's rapid scheme keeps its report's
        older label, while its exchange view's LEM I label is made anew (the side was listed
        twice)."""
        r = self.result
        x = r.exchange
        if x is None or x.dose_grid != r.dose_grid:
            return None
        if r.model == x.mkm and not r.structure_tissues:
            return "mkm"
        if r.model == x.lem and tuple(r.structure_tissues) == tuple(x.lem_structure_tissues):
            return "lem1"
        return None

    @property
    def own_physical_key(self) -> str | None:
        """``"physical"`` when the plan's dose is its physical dose (the physical model: the
        same cube, in Gy), else None. That cube is then not a layer of its own (it was listed
        twice, with the prescription and with its maximum as 100 %); :meth:`layer` gives the
        plan's dose (``"rbe"``, 100 % = the prescription) for it."""
        return "physical" if self.dose_unit == "Gy" else None

    def layer(self, key: str) -> DoseLayer:
        """The cube ``key`` (:attr:`DoseLayer.key`); the exchange side that is the plan's own
        dose (:attr:`own_exchange_key`) and, under the physical model, its physical dose
        (:attr:`own_physical_key`) give the plan's dose."""
        if key in (self.own_exchange_key, self.own_physical_key):
            key = "rbe"
        for candidate in self.layers():
            if candidate.key == key:
                return candidate
        raise KeyError(f"plan {self.name!r} has no {key!r} cube")


#: LETd, RBE and the model ratio are shown, their 100 % and colour scale taken, where the
#: plan's dose (for the ratio, the mMKM dose) reaches this fraction of the prescription: where
#: there is hardly any dose they mean little (the ratio reaches 4.1, the RBE 10.7 there),
#: while 10 % keeps the entrance channels (a ratio near 2) and the field edges.
QUANTITY_MASK_FRACTION = 0.1


#: The short model name of a dose computed with LEM I tissues per structure (the tissues are in
#: the plan report, the DICOM comment, the model record and the Dose tab's line under the
#: chooser, :attr:`DoseLayer.tissues`).
PER_STRUCTURE_NAME = "LEM I, tissues per structure"


def describe_tissues(structure_tissues: StructureTissues, elsewhere: Tissue) -> str:
    """The LEM I tissues of a dose computed with a tissue per structure, as the Dose tab
    shows them: ``"LEM I tissues: PTV hsg (central), Brainstem chordoma (averaged);
    elsewhere chordoma (averaged)"`` (the first listed structure wins where they overlap)."""
    listed = ", ".join(f"{name} {t.name} ({t.rapid_scheme})" for name, t in structure_tissues)
    return (f"LEM I tissues: {listed}; elsewhere {elsewhere.name} "
            f"({elsewhere.rapid_scheme})")


def _max_or_one(cube: NDArray[np.float32]) -> float:
    top = float(np.max(cube)) if cube.size else 0.0
    return top if top > 0 else 1.0


def _max_where(cube: NDArray[np.float32], dose: NDArray[np.float32], low: float) -> float:
    """The largest value of ``cube`` where ``dose`` reaches ``low`` (1 when there is none)."""
    return _max_or_one(cube[dose >= low])


Listener = Callable[[str], None]


class Session:
    """The patient on screen and the plans made on it (newest last).

    Loading another patient drops the plans (they belong to the previous CT).
    """

    def __init__(self) -> None:
        self.patient: Patient | None = None
        self.source: str = ""
        self.plans: list[PlanEntry] = []
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener("patient")`` or ``listener("plans")`` after each change."""
        self._listeners.append(listener)

    def _emit(self, what: str) -> None:
        for listener in list(self._listeners):
            listener(what)

    def set_patient(self, patient: Patient, source: str,
                    plans: Iterable[PlanEntry] = ()) -> None:
        """Show ``patient`` (read from ``source``: a folder, or "demo patient") with the
        ``plans`` kept in its workspace (none: a patient seen the first time)."""
        self.patient = patient
        self.source = source
        self.plans = list(plans)
        self._emit("patient")
        self._emit("plans")

    def free_name(self, wanted: str = "") -> str:
        """``wanted`` (whitespace runs made one space), or ``wanted (2)``, ``wanted (3)``, ...
        when another plan is called so; without ``wanted`` the first free "Plan N" from the
        plan count on."""
        taken = {p.name for p in self.plans}
        wanted = " ".join(wanted.split())[:MAX_PLAN_NAME - len(" (99)")]
        if not wanted:
            n = len(self.plans) + 1
            while f"Plan {n}" in taken:
                n += 1
            return f"Plan {n}"
        name, n = wanted, 1
        while name in taken:
            n += 1
            name = f"{wanted} ({n})"
        return name

    def add_plan(self, result: PlanResult, summary: str,
                 setup: Mapping[str, Any] | None = None, *, name: str = "") -> PlanEntry:
        """Keep a newly computed plan under :meth:`free_name` of ``name`` (a received plan:
        its RT Plan Name, else RT Plan Label; none: "Plan 1", "Plan 2", ...)."""
        entry = PlanEntry(self.free_name(name), result, summary, dict(setup or {}))
        # Only the newest plan is re-optimized from its kept influence: the older ones free
        # their optimizer matrices (they come back, rebuilt, if ever needed).
        for older in self.plans:
            if older.result.prepared is not None and older.result.prepared is not (
                    result.prepared):
                older.result.prepared.release()
        self.plans.append(entry)
        self._emit("plans")
        return entry

    def rename_plan(self, entry: PlanEntry, new_name: str) -> None:
        """Call ``entry`` ``new_name`` (stripped); InputError for an empty, over-long or
        already used name."""
        name = checked_plan_name(new_name)
        if any(p.name == name for p in self.plans if p is not entry):
            raise InputError(f"plan name: another plan is already called {name!r}")
        if entry not in self.plans:
            raise InputError(f"plan {entry.name!r} is not a plan of the open patient")
        entry.name = name
        self._emit("plans")

    def set_robust(self, name: str, robust: RobustResult) -> PlanEntry:
        """Keep the robust evaluation of plan ``name`` (its worst-case cubes become layers)."""
        for i, entry in enumerate(self.plans):
            if entry.name == name:
                self.plans[i] = replace(entry, robust=robust, robust_id=new_plan_id())
                self._emit("plans")
                return self.plans[i]
        raise KeyError(f"no plan named {name!r}")

    def plan(self, name: str) -> PlanEntry:
        for entry in self.plans:
            if entry.name == name:
                return entry
        raise KeyError(f"no plan named {name!r}")

    @property
    def latest_plan(self) -> PlanEntry | None:
        return self.plans[-1] if self.plans else None


def received_plan_note(entry: PlanEntry, file_name: str) -> str:
    """The import dialog's line on what a received plan is called: its RT Plan Name, else its
    RT Plan Label (read into ``entry.result.plan.label``; which of them its report's
    ``source_plan.name_source`` says) and the name the session keeps it under, with why they
    differ where they do."""
    label = entry.result.plan.label
    source = (entry.result.report.get("source_plan") or {}).get("name_source", "RT Plan Name")
    note = f"{file_name}: {source} {label!r}, kept as plan {entry.name!r}"
    if entry.name != label:
        note += f" (another plan of this patient is called {label!r})"
    return note
