"""Exchange view: one physical plan under mMKM and under LEM I, side by side.

Centres that prescribe in mMKM (NIRS/QST and the Japanese facilities) and in LEM I (European
facilities) cannot compare Gy(RBE) directly. :func:`exchange_view` evaluates one set of spot
weights under both models: one forward pass carries the depth tables of both models
(mMKM: ``z1d_star_gy``; LEM I: ``alpha_gy``, ``sqrt_beta_gy``), the RBE-weighted dose of each
model is computed per fraction (where the models apply) and scaled to the whole plan, and the
voxel-wise ratio LEM I / mMKM is given.

The LEM I side may carry LEM I tissues per structure (``lem_structure_tissues``: a LEM I plan's
``[tissues]``), voxels in a listed structure then take their structure's tissue exactly as the
plan's own RBE-weighted dose does (:func:`planning.engine.problem.recorded_tissue_groups`), so
that the exchange's LEM I dose of a LEM I plan is that plan's dose; each structure's metrics
read the LEM I dose within its own tissue, as the plan's report does.

The expected magnitude (Zhang et al. 2020, Radiat Oncol 15, doi 10.1186/s13014-020-01723-z:
20 recurrent nasopharynx patients planned with LEM I and recalculated with MKM): in the
target, LEM/MKM = 1.37 at 3.00 Gy(RBE) per fraction (LEM), 1.46 at 2.70 Gy(RBE), rising
steeply towards low doses per fraction (3.09 at 0.24 Gy(RBE)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels
from planning.engine import PlanningEngine
from planning.engine.problem import concatenated_tables, recorded_tissue_groups
from planning.errors import PlanningError
from planning.evaluation import doses_at_volumes
from planning.optimization import RbeGroup
from planning.patient import Patient
from planning.progress import CancelToken, ProgressCallback, report
from planning.rbe import LemModel, MkmModel, RbeModel, depth_tables
from planning.rbe.record import StructureTissues, model_label
from planning.structure_sampling import DoseSamples

#: The ratio cube is 0 where the mMKM dose is below this fraction of its maximum.
RATIO_THRESHOLD_FRACTION = 0.01

Cube = NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class ExchangeView:
    """Whole-plan dose cubes of one plan under mMKM and LEM I (all on ``dose_grid``).

    Attributes
    ----------
    dose_grid : DoseGrid
        Grid of the cubes.
    dose_gy : (nz, ny, nx) float32 array
        Total physical dose, Gy.
    mkm_dose_gy_rbe, lem_dose_gy_rbe : (nz, ny, nx) float32 arrays
        Total RBE-weighted dose under mMKM and under LEM I (evaluated per fraction), Gy(RBE).
    ratio_lem_over_mkm : (nz, ny, nx) float32 array
        ``lem_dose_gy_rbe / mkm_dose_gy_rbe``; 0 where the mMKM dose is below
        :data:`RATIO_THRESHOLD_FRACTION` (1 %) of its maximum.
    mkm, lem : MkmModel, LemModel
        The two models that computed the doses (``mkm_model`` and ``lem_model`` describe
        them).
    n_fractions : int
        Number of fractions of the totals.
    lem_structure_tissues : tuple of (str, Tissue)
        LEM I tissues per structure of the LEM I side (ROI names; empty: ``lem``'s tissue
        everywhere); voxels in none of them take ``lem``'s tissue.
    lem_labels : VoxelLabels or None
        The LEM I tissue of every voxel and listed structure (None without tissues per
        structure), for reading the LEM I dose within a structure's own tissue.
    """

    dose_grid: DoseGrid
    dose_gy: Cube
    mkm_dose_gy_rbe: Cube
    lem_dose_gy_rbe: Cube
    ratio_lem_over_mkm: Cube
    mkm: MkmModel
    lem: LemModel
    n_fractions: int
    lem_structure_tissues: StructureTissues = ()
    lem_labels: VoxelLabels | None = None

    @property
    def mkm_model(self) -> str:
        """One-line description of the mMKM model."""
        return self.mkm.describe()

    @property
    def lem_model(self) -> str:
        """One-line description of the LEM I side: the model, with its tissues per structure
        first where it has some (:func:`planning.rbe.record.model_label`)."""
        return model_label(self.lem, self.lem_structure_tissues)


def paired_models(model: RbeModel, lem_default: LemModel | None = None
                  ) -> tuple[MkmModel, LemModel]:
    """The (mMKM, LEM I) pair of an exchange: ``model`` where it is one of them, else the
    default mMKM and ``lem_default`` (default :class:`LemModel`)."""
    mkm = model if isinstance(model, MkmModel) else MkmModel()
    lem = model if isinstance(model, LemModel) else (lem_default or LemModel())
    return mkm, lem


def exchange_view(engine: PlanningEngine, weights_per_fraction: ArrayLike, n_fractions: int, *,
                  mkm: MkmModel | None = None, lem: LemModel | None = None,
                  lem_structure_tissues: StructureTissues = (), patient: Patient | None = None,
                  progress: ProgressCallback | None = None, cancel: CancelToken | None = None
                  ) -> ExchangeView:
    """RBE-weighted dose of one plan under mMKM and LEM I and their voxel-wise ratio.

    Parameters
    ----------
    engine : PlanningEngine
        The plan's engine (machine with particle spectra, beams, spots, dose grid, region).
    weights_per_fraction : (n_spots,) float array
        Spot weights per fraction, 10^6 primaries, in the engine's column order.
    n_fractions : int
        Number of fractions (totals are per-fraction doses x ``n_fractions``).
    mkm, lem : MkmModel, LemModel, optional
        The models (defaults: ``MkmModel()``, ``LemModel()``).
    lem_structure_tissues : tuple of (str, Tissue), optional
        LEM I tissues per structure of the LEM I side (a LEM I plan's); ``lem``'s tissue
        elsewhere. Needs ``patient``.
    patient : Patient, optional
        The CT and structures of the plan (for ``lem_structure_tissues``).
    progress, cancel : optional
        Progress callback and cancel token of the forward pass.

    Returns
    -------
    ExchangeView

    Raises
    ------
    PlanningError
        Bad weights or fraction count, tissues per structure without the patient or naming a
        structure it lacks, or the dose engine's errors.
    """
    mkm, lem = mkm or MkmModel(), lem or LemModel()
    if n_fractions < 1:
        raise PlanningError(f"n_fractions must be >= 1, got {n_fractions}")
    w = np.asarray(weights_per_fraction, dtype=np.float64)
    if w.shape != (engine.n_spots,):
        raise PlanningError(f"{w.size} weights for {engine.n_spots} spots")
    labels = None
    lem_models: list[RbeModel] = [lem]
    groups: tuple[RbeGroup, ...] = ()
    if lem_structure_tissues:
        if patient is None:
            raise PlanningError("LEM I tissues per structure need the patient's structures")
        lem_models, groups, labels = recorded_tissue_groups(patient, lem, lem_structure_tissues,
                                                            engine.dose_grid)
    # mMKM's sums first, then those of each LEM I tissue (the groups' sum indices count from
    # the first LEM I sum); the engine uses only the values, the particles are mMKM's
    tables = concatenated_tables([depth_tables(engine.machine, m) for m in (mkm, *lem_models)])
    fwd = engine.forward(w, model_tables=tables, with_let=False, progress=progress,
                         cancel=cancel)
    d, sums = fwd.dose_gy, fwd.model_sums
    n_mkm = len(mkm.quantity_names)
    mkm_d = np.asarray(mkm.rbe_weighted_dose_from_sums(d, sums[:n_mkm]), dtype=np.float64)
    lem_sums = sums[n_mkm:]
    if groups:  # each tissue's voxels under its own LEM I model (as forward_cubes)
        lem_d = np.zeros_like(d, dtype=np.float64)
        for g in groups:
            lem_d[g.rows] = g.model.rbe_weighted_dose_from_sums(
                d[g.rows], tuple(lem_sums[k][g.rows] for k in g.sum_indices))
    else:
        lem_d = np.asarray(lem.rbe_weighted_dose_from_sums(d, lem_sums), dtype=np.float64)
    ratio = np.zeros_like(d)
    top = float(mkm_d.max()) if mkm_d.size else 0.0
    np.divide(lem_d, mkm_d, out=ratio,
              where=(mkm_d >= RATIO_THRESHOLD_FRACTION * top) & (mkm_d > 0))
    report(progress, 1.0, "exchange view done")

    def cube(a: NDArray[np.float64], scale: float = 1.0) -> Cube:
        return (a * scale).reshape(engine.dose_grid.shape).astype(np.float32)

    return ExchangeView(engine.dose_grid, cube(d, n_fractions), cube(mkm_d, n_fractions),
                        cube(lem_d, n_fractions), cube(ratio), mkm, lem,
                        int(n_fractions), tuple(lem_structure_tissues), labels)


def exchange_metrics(view: ExchangeView, structure_samples: Mapping[str, DoseSamples]
                     ) -> dict[str, dict[str, float | None]]:
    """Per-structure D95, D50 and mean of both models and the ratio statistics.

    Parameters
    ----------
    view : ExchangeView
    structure_samples : mapping of str to DoseSamples
        Clinical DVH samples of each structure on ``view.dose_grid``
        (:func:`planning.structure_dose.sampled_structures`), as the report's other metrics.

    Returns
    -------
    dict
        ``{name: {"mkm_d95_gy_rbe", "lem_d95_gy_rbe", "mkm_d50_gy_rbe", "lem_d50_gy_rbe",
        "mkm_mean_gy_rbe", "lem_mean_gy_rbe", "ratio_mean", "ratio_median"}}``, total doses in
        Gy(RBE), volume-weighted. The ratio LEM I / mMKM is taken at the samples whose mMKM dose
        is at least 1 % of the cube's maximum (as the ratio cube); its statistics are None when
        there are none. With LEM I tissues per structure each structure's LEM I dose is read
        within its own tissue (``view.lem_labels``), as the plan's report reads it.
    """
    floor = 0.01 * float(view.mkm_dose_gy_rbe.max())
    out: dict[str, dict[str, float | None]] = {}
    for name, samples in structure_samples.items():
        if samples.stencil.grid != view.dose_grid:
            raise PlanningError(f"{name}: its samples are on another grid than the view's")
        w = samples.volume_mm3
        within = None if view.lem_labels is None else view.lem_labels.within(name)
        mkm = samples.dose(view.mkm_dose_gy_rbe)
        lem = samples.dose(view.lem_dose_gy_rbe, within)
        dosed = mkm >= floor if floor > 0 else np.zeros(mkm.shape, bool)
        ratio, w_ratio = lem[dosed] / mkm[dosed], w[dosed]
        mkm95, mkm50 = doses_at_volumes(mkm, (95, 50), w)
        lem95, lem50 = doses_at_volumes(lem, (95, 50), w)
        out[name] = {
            "mkm_d95_gy_rbe": float(mkm95), "lem_d95_gy_rbe": float(lem95),
            "mkm_d50_gy_rbe": float(mkm50), "lem_d50_gy_rbe": float(lem50),
            "mkm_mean_gy_rbe": float(np.average(mkm, weights=w)),
            "lem_mean_gy_rbe": float(np.average(lem, weights=w)),
            "ratio_mean": float(np.average(ratio, weights=w_ratio)) if ratio.size else None,
            "ratio_median": (float(doses_at_volumes(ratio, (50,), w_ratio)[0])
                             if ratio.size else None)}
    return out


def exchange_report(view: ExchangeView, structure_samples: Mapping[str, DoseSamples]
                    ) -> dict[str, Any]:
    """The ``report["exchange"]`` entry of a plan: model descriptions and per-structure
    metrics (:func:`exchange_metrics`) on the structures' clinical DVH samples."""
    return {"mkm_model": view.mkm_model, "lem_model": view.lem_model,
            "structures": exchange_metrics(view, structure_samples)}


def write_exchange_doses(view: ExchangeView, patient: Patient, out_dir: Path,
                         referenced_plan_uid: str) -> list[str]:
    """Write ``RTDOSE_RBE_MKM.dcm`` and ``RTDOSE_RBE_LEM1.dcm`` (EFFECTIVE, total plan dose,
    each labelled with the model that computed it: Dose Comment, Series Description and
    IonPlan's RBE model record, with the LEM I side's tissues per structure); return the file
    names."""
    from planning.dicom import export_rt_dose

    names = []
    for name, cube, model, tissues in (
            ("RTDOSE_RBE_MKM.dcm", view.mkm_dose_gy_rbe, view.mkm, ()),
            ("RTDOSE_RBE_LEM1.dcm", view.lem_dose_gy_rbe, view.lem, view.lem_structure_tissues)):
        export_rt_dose(cube, view.dose_grid, patient, out_dir / name, dose_type="EFFECTIVE",
                       model=model, structure_tissues=tissues,
                       referenced_plan_uid=referenced_plan_uid)
        names.append(name)
    return names
