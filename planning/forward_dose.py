"""Whole-plan dose cubes from spot weights by a forward pass through the dose engine.

:func:`forward_cubes` builds the influence of a few energy layers at a time, applies their
spot weights and drops it, so that the memory is that of one pass whatever the plan's size.
The planner (:mod:`planning.planner`) and the recalculation of imported plans
(:mod:`planning.compare.recalc`) make their final cubes with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planning.dose_engine import Beam, DoseEngineSettings, DoseGrid, SpotMap, build_influence
from planning.machine import Machine
from planning.optimization import RbeGroup
from planning.progress import CancelToken, ProgressCallback, report
from planning.rbe import DepthTables, RbeModel

#: Spots whose influence the forward pass of the final cubes builds at a time (whole layers):
#: about 10-30 thousand nonzeros per spot, so a few hundred MB per pass.
FORWARD_SPOTS_PER_PASS = 1000


@dataclass(frozen=True, eq=False)
class DoseCubes:
    """Whole-plan cubes (nz, ny, nx) float32 of a forward pass (see :func:`forward_cubes`)."""

    physical_dose_gy: NDArray[np.float32]
    rbe_dose_gy_rbe: NDArray[np.float32]
    letd_kev_um: NDArray[np.float32]
    rbe: NDArray[np.float32]
    beam_physical_dose_gy: tuple[NDArray[np.float32], ...]



def forward_cubes(
    machine: Machine, rsp: NDArray[np.float32], ct_grid: DoseGrid, dose_grid: DoseGrid,
    beams: Sequence[Beam], spot_maps: Sequence[SpotMap], weights: NDArray[np.float64],
    model: RbeModel, tables: DepthTables | None, n_fractions: int,
    settings: DoseEngineSettings, *, calc_mask: NDArray[np.bool_] | None = None,
    spots_per_pass: int = FORWARD_SPOTS_PER_PASS,
    progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
    groups: Sequence[RbeGroup] = (),
) -> DoseCubes:
    """Whole-plan cubes of spot weights per fraction, by a forward pass.

    The influence of at most ``spots_per_pass`` spots (whole energy layers of one beam) is built
    at a time, multiplied by their weights and dropped, so memory stays that of one pass.

    With ``groups`` (rows: flat dose-grid indices; ``tables`` holding the sums of every group's
    model, concatenated) each group's voxels get the RBE-weighted dose of its own model and
    sums; voxels in no group get 0.

    Returns
    -------
    DoseCubes
        Total physical and RBE-weighted dose (per-fraction dose x ``n_fractions``; the
        RBE-weighted dose is computed per fraction, where the model applies), LETd, RBE and the
        total physical dose of each beam.
    """
    w_all = np.asarray(weights, dtype=np.float64)
    n_q = len(tables.values) if tables is not None else len(model.quantity_names)
    d_beam = [np.zeros(dose_grid.n_voxels) for _ in spot_maps]
    let_d = np.zeros(dose_grid.n_voxels)
    sums = [np.zeros(dose_grid.n_voxels) for _ in range(n_q)]
    passes = [(b, sel) for b, sm in enumerate(spot_maps) for sel in _layer_groups(sm,
                                                                                  spots_per_pass)]
    offsets = np.cumsum([0] + [sm.n_spots for sm in spot_maps])
    with_let = dataclasses.replace(settings, store_let_dose=True)
    for k, (b, sel) in enumerate(passes):
        sm = spot_maps[b]
        sub = SpotMap(sm.energy_mev_u[sel], sm.layer[sel], sm.u_mm[sel], sm.v_mm[sel],
                      sm.spacing_mm, sm.lattice_origin_mm)
        w = w_all[offsets[b]:offsets[b + 1]][sel]
        if not np.any(w > 0):
            continue
        part = build_influence(machine, rsp, ct_grid, dose_grid, [beams[b]], [sub], with_let,
                               calc_mask=calc_mask, model_tables=tables, cancel=cancel)
        d_beam[b] += part.dose @ w
        assert part.let_dose is not None
        let_d += part.let_dose @ w
        for acc, m in zip(sums, part.model_sums, strict=True):
            acc += m @ w
        del part
        report(progress, (k + 1) / len(passes), "dose cubes")
    d = np.sum(d_beam, axis=0) if d_beam else np.zeros(dose_grid.n_voxels)
    if groups:
        rbe_d = np.zeros_like(d)
        for g in groups:
            rbe_d[g.rows] = g.model.rbe_weighted_dose_from_sums(
                d[g.rows], tuple(sums[k][g.rows] for k in g.sum_indices))
    else:
        rbe_d = np.asarray(model.rbe_weighted_dose_from_sums(d, tuple(sums)))
    positive = d > 0
    letd = np.divide(let_d, d, out=np.zeros_like(d), where=positive)
    rbe = np.divide(rbe_d, d, out=np.zeros_like(d), where=positive)

    def cube(a: NDArray[np.float64]) -> NDArray[np.float32]:
        return a.reshape(dose_grid.shape).astype(np.float32)

    return DoseCubes(cube(d * n_fractions), cube(rbe_d * n_fractions), cube(letd), cube(rbe),
                     tuple(cube(db * n_fractions) for db in d_beam))


def _layer_groups(spot_map: SpotMap, max_spots: int) -> list[NDArray[np.int64]]:
    """Spot indices of ``spot_map`` in groups of whole energy layers, each of at most
    ``max_spots`` spots (or one layer, if a layer alone is larger)."""
    groups: list[NDArray[np.int64]] = []
    current: list[NDArray[np.int64]] = []
    count = 0
    for layer in np.unique(spot_map.layer):
        idx = np.flatnonzero(spot_map.layer == layer)
        if current and count + idx.size > max_spots:
            groups.append(np.concatenate(current))
            current, count = [], 0
        current.append(idx)
        count += idx.size
    if current:
        groups.append(np.concatenate(current))
    return groups

