"""The cross-model view of a plan: its physical dose under mMKM and under LEM I side by side.

A Japanese centre prescribes in mMKM clinical dose, a European one in LEM I RBE-weighted dose;
the same spots give different Gy(RBE) numbers under the two. :func:`cross_model_view`
recalculates a plan's spots on its CT (:mod:`planning.compare.recalc`) and evaluates them under
both models (:func:`planning.exchange.exchange_view`), with per-structure metrics of each model
and the LEM I / mMKM ratio in the target.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from planning.compare.recalc import plan_model, plan_structure_tissues, prepare_recalc
from planning.dose_grid import DoseGrid
from planning.exchange import ExchangeView, exchange_report, exchange_view
from planning.machine import Machine
from planning.patient import Patient
from planning.plan import Plan
from planning.progress import CancelToken, ProgressCallback
from planning.rbe import LemModel, MkmModel, Tissue
from planning.structure_dose import sampled_structures


@dataclass(frozen=True, eq=False)
class CrossModelView:
    """One plan under mMKM and LEM I.

    Attributes
    ----------
    label : str
        The comparison side it belongs to (``"A"``, ``"B"``), or both (``"A and B (the same
        plan)"``: one plan on one grid).
    plan_label : str
        The plan's name (of a received plan: RT Plan Name, else RT Plan Label).
    plan_rbe_model : str or None
        The model the plan names (what it was optimized with); None when it names none.
    view : ExchangeView
        Total dose cubes (nz, ny, nx) float32 on the plan's dose grid: physical (Gy), mMKM and
        LEM I RBE-weighted (Gy(RBE)), and the voxel-wise ratio LEM I / mMKM.
    target : str or None
        The plan's target, when it is a structure of the CT.
    prescription_gy_rbe : float
        The plan's total prescription (in its own model).
    structures : dict
        Per structure (:func:`planning.exchange.exchange_metrics`): D95, D50 and mean under each
        model and the ratio's mean and median, Gy(RBE).
    seconds : float
        Time taken.
    """

    label: str
    plan_label: str
    plan_rbe_model: str | None
    view: ExchangeView
    target: str | None
    prescription_gy_rbe: float
    structures: dict[str, dict[str, float | None]]
    seconds: float

    @property
    def target_ratio_mean(self) -> float | None:
        """Mean LEM I / mMKM ratio in the target (None without a target)."""
        if self.target is None or self.target not in self.structures:
            return None
        return self.structures[self.target]["ratio_mean"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no cubes)."""
        return {"label": self.label, "plan_label": self.plan_label,
                "plan_rbe_model": self.plan_rbe_model, "mkm_model": self.view.mkm_model,
                "lem_model": self.view.lem_model, "target": self.target,
                "prescription_gy_rbe": self.prescription_gy_rbe,
                "target_ratio_lem_over_mkm_mean": self.target_ratio_mean,
                "structures": self.structures, "seconds": self.seconds}


def cross_model_view(patient: Patient, plan: Plan, *, label: str = "",
                     dose_grid: DoseGrid | float = 3.0, machine: Machine | None = None,
                     hlut_path: str | os.PathLike[str] | None = None, device: str = "auto",
                     lem_tissue: str | None = None, progress: ProgressCallback | None = None,
                     cancel: CancelToken | None = None) -> CrossModelView:
    """Evaluate ``plan``'s spots on ``patient``'s CT under mMKM and LEM I.

    Parameters
    ----------
    patient : Patient
        The plan's CT with its structures (the caller checks that they belong together).
    plan : Plan
        Spot weights per fraction and the number of fractions.
    label : str
        Name of the view in reports.
    dose_grid : DoseGrid or float
        The grid (e.g. the plan's RT Dose grid) or a spacing in mm covering the CT.
    machine, hlut_path, device :
        See :func:`planning.compare.recalc.prepare_recalc`.
    lem_tissue : str, optional
        LEM I tissue (name or ``alpha_x,beta_x,D_t``) everywhere; default: the plan's own LEM I
        model when it names one (with its recorded tissues per structure), else the default
        class.
    progress, cancel : optional
        Progress callback and cancel token.
    """
    from planning.rbe import parse_tissue

    t0 = time.perf_counter()
    setup = prepare_recalc(patient, plan, machine=machine, grid_mm=dose_grid,
                           hlut_path=hlut_path, device=device)
    own = plan_model(plan)
    lem_tissues: tuple[tuple[str, Tissue], ...] = ()
    if lem_tissue is not None:
        lem = LemModel(parse_tissue(lem_tissue))
    elif isinstance(own, LemModel):  # the plan's own LEM I, with its tissues per structure
        lem, lem_tissues = own, plan_structure_tissues(plan, own)
    else:
        lem = LemModel()
    mkm = own if isinstance(own, MkmModel) else MkmModel()
    view = exchange_view(setup.engine(cancel=cancel), setup.weights_per_fraction,
                         plan.prescription.n_fractions, mkm=mkm, lem=lem,
                         lem_structure_tissues=lem_tissues, patient=patient, progress=progress,
                         cancel=cancel)
    samples = {s.name: d for s, d in sampled_structures(patient, setup.dose_grid)}
    target = None
    if patient.structure_set is not None:
        try:
            target = patient.structure_set.get(plan.prescription.target).name
        except KeyError:
            target = None
    structures = exchange_report(view, samples)["structures"]
    return CrossModelView(label=label, plan_label=plan.label, plan_rbe_model=plan.rbe_label,
                          view=view, target=target,
                          prescription_gy_rbe=plan.prescription.total_dose_gy_rbe,
                          structures=structures, seconds=time.perf_counter() - t0)
