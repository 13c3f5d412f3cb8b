"""Whole-plan dose cubes from spot weights by a forward pass of the planning engine.

:func:`forward_cubes` asks a :class:`planning.engine.PlanningEngine` for the per-beam dose, LET x
dose and model sums of the weights (no influence matrix is built: a fused kernel on a GPU,
chunked pencil beams on the CPU) and turns them into cubes. The planner
(:mod:`planning.planner`) and the recalculation of imported plans
(:mod:`planning.compare.recalc`) make their final cubes with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planning.engine import DoseSums, PlanningEngine
from planning.optimization import RbeGroup
from planning.progress import CancelToken, ProgressCallback
from planning.rbe import DepthTables, RbeModel


@dataclass(frozen=True, eq=False)
class DoseCubes:
    """Whole-plan cubes (nz, ny, nx) float32 of a forward pass (see :func:`forward_cubes`)."""

    physical_dose_gy: NDArray[np.float32]
    rbe_dose_gy_rbe: NDArray[np.float32]
    letd_kev_um: NDArray[np.float32]
    rbe: NDArray[np.float32]
    beam_physical_dose_gy: tuple[NDArray[np.float32], ...]


def forward_cubes(
    engine: PlanningEngine, weights: NDArray[np.float64], model: RbeModel,
    tables: DepthTables | None, n_fractions: int, *, groups: Sequence[RbeGroup] = (),
    progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
) -> DoseCubes:
    """Whole-plan cubes of spot weights per fraction, by a forward pass of ``engine``.

    ``tables`` are the RBE model's depth tables (None for models without quantities). With
    ``groups`` (rows: flat dose-grid indices; ``tables`` holding the sums of every group's
    model, concatenated) each group's voxels get the RBE-weighted dose of its own model and
    sums; voxels in no group get 0.

    Returns
    -------
    DoseCubes
        Total physical and RBE-weighted dose (per-fraction dose x ``n_fractions``; the
        RBE-weighted dose is computed per fraction, where the model applies), LETd, RBE and the
        total physical dose of each beam, on ``engine.dose_grid``.
    """
    sums = engine.forward(weights, model_tables=tables, with_let=True, progress=progress,
                          cancel=cancel)
    return cubes_from_sums(sums, model, n_fractions, engine.dose_grid.shape, groups)


def cubes_from_sums(sums: DoseSums, model: RbeModel, n_fractions: int,
                    shape: tuple[int, int, int], groups: Sequence[RbeGroup] = ()) -> DoseCubes:
    """Cubes of per-fraction forward sums (see :func:`forward_cubes`)."""
    d = sums.dose_gy
    if groups:
        rbe_d = np.zeros_like(d)
        for g in groups:
            rbe_d[g.rows] = g.model.rbe_weighted_dose_from_sums(
                d[g.rows], tuple(sums.model_sums[k][g.rows] for k in g.sum_indices))
    else:
        rbe_d = np.asarray(model.rbe_weighted_dose_from_sums(d, sums.model_sums))
    positive = d > 0
    let_d = sums.let_dose if sums.let_dose is not None else np.zeros_like(d)
    letd = np.divide(let_d, d, out=np.zeros_like(d), where=positive)
    rbe = np.divide(rbe_d, d, out=np.zeros_like(d), where=positive)

    def cube(a: NDArray[np.float64]) -> NDArray[np.float32]:
        return a.reshape(shape).astype(np.float32)

    return DoseCubes(cube(d * n_fractions), cube(rbe_d * n_fractions), cube(letd), cube(rbe),
                     tuple(cube(db * n_fractions) for db in sums.beam_dose_gy))
