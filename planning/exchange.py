"""Exchange view: one physical plan under mMKM and under LEM I, side by side.

Centres that prescribe in mMKM (NIRS/QST and the Japanese facilities) and in LEM I (European
facilities) cannot compare Gy(RBE) directly. :func:`exchange_view` evaluates one set of spot
weights under both models: one forward pass carries the depth tables of both models
(mMKM: ``z1d_star_gy``; LEM I: ``alpha_gy``, ``sqrt_beta_gy``), the RBE-weighted dose of each
model is computed per fraction (where the models apply) and scaled to the whole plan, and the
voxel-wise ratio LEM I / mMKM is given.

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
from planning.engine import PlanningEngine
from planning.errors import PlanningError
from planning.evaluation import doses_at_volumes
from planning.patient import Patient
from planning.progress import CancelToken, ProgressCallback, report
from planning.rbe import DepthTables, LemModel, MkmModel, RbeModel, depth_tables
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
        The two models that computed the doses (``mkm_model`` and ``lem_model`` are their
        ``describe()``).
    n_fractions : int
        Number of fractions of the totals.
    """

    dose_grid: DoseGrid
    dose_gy: Cube
    mkm_dose_gy_rbe: Cube
    lem_dose_gy_rbe: Cube
    ratio_lem_over_mkm: Cube
    mkm: MkmModel
    lem: LemModel
    n_fractions: int

    @property
    def mkm_model(self) -> str:
        """One-line description of the mMKM model."""
        return self.mkm.describe()

    @property
    def lem_model(self) -> str:
        """One-line description of the LEM I model."""
        return self.lem.describe()


def paired_models(model: RbeModel, lem_default: LemModel | None = None
                  ) -> tuple[MkmModel, LemModel]:
    """The (mMKM, LEM I) pair of an exchange: ``model`` where it is one of them, else the
    default mMKM and ``lem_default`` (default :class:`LemModel`)."""
    mkm = model if isinstance(model, MkmModel) else MkmModel()
    lem = model if isinstance(model, LemModel) else (lem_default or LemModel())
    return mkm, lem


def exchange_view(engine: PlanningEngine, weights_per_fraction: ArrayLike, n_fractions: int, *,
                  mkm: MkmModel | None = None, lem: LemModel | None = None,
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
    progress, cancel : optional
        Progress callback and cancel token of the forward pass.

    Returns
    -------
    ExchangeView

    Raises
    ------
    PlanningError
        Bad weights or fraction count, or the dose engine's errors.
    """
    mkm, lem = mkm or MkmModel(), lem or LemModel()
    if n_fractions < 1:
        raise PlanningError(f"n_fractions must be >= 1, got {n_fractions}")
    w = np.asarray(weights_per_fraction, dtype=np.float64)
    if w.shape != (engine.n_spots,):
        raise PlanningError(f"{w.size} weights for {engine.n_spots} spots")
    t_mkm, t_lem = depth_tables(engine.machine, mkm), depth_tables(engine.machine, lem)
    tables = DepthTables(  # the engine uses only the values; particles are mMKM's
        f"{t_mkm.model_description} + {t_lem.model_description}",
        t_mkm.quantity_names + t_lem.quantity_names, t_mkm.values + t_lem.values,
        t_mkm.spectrum_values + t_lem.spectrum_values, t_mkm.particles)
    fwd = engine.forward(w, model_tables=tables, with_let=False, progress=progress,
                         cancel=cancel)
    d, sums = fwd.dose_gy, fwd.model_sums
    n_mkm = len(mkm.quantity_names)
    mkm_d = np.asarray(mkm.rbe_weighted_dose_from_sums(d, sums[:n_mkm]), dtype=np.float64)
    lem_d = np.asarray(lem.rbe_weighted_dose_from_sums(d, sums[n_mkm:]), dtype=np.float64)
    ratio = np.zeros_like(d)
    top = float(mkm_d.max()) if mkm_d.size else 0.0
    np.divide(lem_d, mkm_d, out=ratio,
              where=(mkm_d >= RATIO_THRESHOLD_FRACTION * top) & (mkm_d > 0))
    report(progress, 1.0, "exchange view done")

    def cube(a: NDArray[np.float64], scale: float = 1.0) -> Cube:
        return (a * scale).reshape(engine.dose_grid.shape).astype(np.float32)

    return ExchangeView(engine.dose_grid, cube(d, n_fractions), cube(mkm_d, n_fractions),
                        cube(lem_d, n_fractions), cube(ratio), mkm, lem,
                        int(n_fractions))


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
        there are none.
    """
    floor = 0.01 * float(view.mkm_dose_gy_rbe.max())
    out: dict[str, dict[str, float | None]] = {}
    for name, samples in structure_samples.items():
        if samples.stencil.grid != view.dose_grid:
            raise PlanningError(f"{name}: its samples are on another grid than the view's")
        w = samples.volume_mm3
        mkm, lem = samples.dose(view.mkm_dose_gy_rbe), samples.dose(view.lem_dose_gy_rbe)
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
    IonPlan's RBE model record); return the file names."""
    from planning.dicom import export_rt_dose

    names = []
    for name, cube, model in (("RTDOSE_RBE_MKM.dcm", view.mkm_dose_gy_rbe, view.mkm),
                              ("RTDOSE_RBE_LEM1.dcm", view.lem_dose_gy_rbe, view.lem)):
        export_rt_dose(cube, view.dose_grid, patient, out_dir / name, dose_type="EFFECTIVE",
                       model=model, referenced_plan_uid=referenced_plan_uid)
        names.append(name)
    return names
