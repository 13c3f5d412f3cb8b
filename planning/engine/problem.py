"""Glue between the planning engine and the optimizer: the rows, groups and tables of a problem.

:func:`tissue_models` and :func:`concatenated_tables` give the models (the plan's, plus LEM I per
further tissue of the configuration) and one set of depth tables holding all their quantities;
:func:`voxel_groups` assigns the dose-grid voxels to those models (:func:`tissue_labels` the same
as a label cube, for reading the RBE-weighted dose within one tissue); :func:`dose_model_setup`
bundles them for a forward dose (recalculation, robustness); :func:`optimization_problem`
makes the optimizer's problem from the engine's matrices on a set of rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from kernels.sparse_device import SpotMatrix
from planning.dose_grid import DoseGrid
from planning.dose_interpolation import VoxelLabels
from planning.errors import PlanningError
from planning.machine import Machine
from planning.optimization import OptimizationProblem, RbeGroup, initial_weights
from planning.patient import Patient
from planning.plan_config import PlanConfig
from planning.rbe import DepthTables, LemModel, RbeModel, Tissue, depth_tables
from planning.structure_dose import grid_of, structure_rows


def tissue_models(model: RbeModel, config: PlanConfig) -> list[RbeModel]:
    """The plan's model first, then LEM I for each further distinct tissue of the config."""
    models: list[RbeModel] = [model]
    if isinstance(model, LemModel):
        seen = [model.tissue]
        for _, tissue in config.tissues:
            if tissue not in seen:
                seen.append(tissue)
                models.append(LemModel(tissue))
    return models


def concatenated_tables(tables: Sequence[DepthTables]) -> DepthTables:
    """One DepthTables whose values are those of ``tables`` in order (the influence then has
    the model sums of every table, concatenated)."""
    if len(tables) == 1:
        return tables[0]
    return DepthTables(
        " + ".join(t.model_description for t in tables),
        tuple(q for t in tables for q in t.quantity_names),
        tuple(v for t in tables for v in t.values),
        tuple(v for t in tables for v in t.spectrum_values),
        tables[0].particles)


def voxel_groups(patient: Patient, config: PlanConfig, models: Sequence[RbeModel],
                  ct_grid: DoseGrid, dose_grid: DoseGrid) -> tuple[RbeGroup, ...]:
    """Dose-grid voxels of each tissue model (rows: flat dose-grid indices); empty when the
    configuration lists no tissues. The first listed structure wins where structures overlap."""
    if not config.tissues:
        return ()
    assert patient.structure_set is not None
    label = np.full(dose_grid.n_voxels, -1, dtype=np.int64)
    tissues = [m.tissue if isinstance(m, LemModel) else None for m in models]
    for name, tissue in config.tissues:
        try:
            s = patient.structure_set.get(name)
        except KeyError as exc:
            raise PlanningError(f"tissues: {exc.args[0]}") from None
        rows = structure_rows(s.mask.to_dense(), ct_grid, dose_grid)
        rows = rows[label[rows] < 0]
        label[rows] = tissues.index(tissue)
    label[label < 0] = 0
    n_q = len(models[0].quantity_names)
    return tuple(RbeGroup(m, np.flatnonzero(label == i).astype(np.int64),
                          tuple(range(n_q * i, n_q * (i + 1))))
                 for i, m in enumerate(models))


def tissue_labels(patient: Patient, config: PlanConfig, groups: Sequence[RbeGroup],
                  dose_grid: DoseGrid) -> VoxelLabels | None:
    """The tissue group of every dose-grid voxel (``groups`` of :func:`voxel_groups`, one per
    model of :func:`tissue_models`) and of every structure the configuration gives a tissue;
    None without tissues."""
    if not groups or not config.tissues:
        return None
    assert patient.structure_set is not None
    labels = np.zeros(dose_grid.n_voxels, dtype=np.int8)
    for i, g in enumerate(groups):
        labels[g.rows] = i
    tissues = [g.model.tissue if isinstance(g.model, LemModel) else None for g in groups]
    by_structure = {patient.structure_set.get(name).name: tissues.index(tissue)
                    for name, tissue in config.tissues}
    return VoxelLabels(labels.reshape(dose_grid.shape), by_structure)


@dataclass(frozen=True)
class DoseModelSetup:
    """What a forward dose under a model, with or without LEM I tissues per structure, needs.

    Attributes
    ----------
    tables : DepthTables or None
        Depth tables of the model and of each further tissue (concatenated); None for a
        model without sums.
    groups : tuple of RbeGroup
        Dose-grid voxels of each tissue model (empty: the model everywhere).
    labels : VoxelLabels or None
        The tissue of every voxel and listed structure, for DVHs within a structure's own
        tissue; None without tissues per structure.
    """

    tables: DepthTables | None
    groups: tuple[RbeGroup, ...]
    labels: VoxelLabels | None


def dose_model_setup(patient: Patient, machine: Machine, model: RbeModel,
                     structure_tissues: Sequence[tuple[str, Tissue]], dose_grid: DoseGrid
                     ) -> DoseModelSetup:
    """Tables, voxel groups and labels of ``model`` with the LEM I ``structure_tissues`` (a
    recorded plan's; empty for the model everywhere) on ``dose_grid``.

    Raises
    ------
    PlanningError
        A listed structure missing from the patient's structure set.
    """
    models, groups, labels = recorded_tissue_groups(patient, model, structure_tissues,
                                                    dose_grid)
    tables = (concatenated_tables([depth_tables(machine, m) for m in models])
              if model.quantity_names else None)
    return DoseModelSetup(tables, groups, labels)


def recorded_tissue_groups(patient: Patient, model: RbeModel,
                           structure_tissues: Sequence[tuple[str, Tissue]],
                           dose_grid: DoseGrid
                           ) -> tuple[list[RbeModel], tuple[RbeGroup, ...], VoxelLabels | None]:
    """The models (:func:`tissue_models`), voxel groups (:func:`voxel_groups`) and labels
    (:func:`tissue_labels`) of ``model`` with a recorded plan's LEM I ``structure_tissues``
    (empty: ``model`` everywhere, no groups, no labels) on ``dose_grid``.

    Raises
    ------
    PlanningError
        A listed structure missing from the patient's structure set.
    """
    config = PlanConfig(tissues=tuple(structure_tissues))
    models = tissue_models(model, config)
    groups = voxel_groups(patient, config, models, grid_of(patient.ct), dose_grid)
    return models, groups, tissue_labels(patient, config, groups, dose_grid)


def surrounding_tissue_ratio(problem: OptimizationProblem, target: str,
                             dose_per_fraction_gy_rbe: float) -> float:
    """How much more RBE-weighted dose the tissue around the target gets than the target's own
    tissue from the same dose, near the prescription.

    With a LEM I tissue per structure the voxels outside every listed structure (the first
    group, the plan's tissue) may respond more strongly than the target's tissue: then a
    fall-off ring's maximum "at the prescription" cannot be met next to a covered target. The
    ratio is that of the target's mean RBE-weighted dose under the surrounding tissue and
    under its own, for uniform spot weights that give the prescription in its own tissue
    (:func:`planning.optimization.initial_weights`). 1.0 without groups or where the target
    is the plan's tissue.
    """
    if not problem.groups:
        return 1.0
    rows = problem.rows_of(target)
    if rows.size == 0:
        return 1.0
    own = max(problem.groups, key=lambda g: int(np.isin(rows, g.rows).sum()))
    around = problem.groups[0]
    if own is around or own.model == around.model:
        return 1.0
    w = initial_weights(problem, target, dose_per_fraction_gy_rbe)
    as_own = problem.rbe_dose(w)[problem.device_rows_of(target)]
    swapped = dataclasses.replace(problem, groups=(
        RbeGroup(around.model, rows, around.sum_indices),))
    as_around = swapped.rbe_dose(w)[problem.device_rows_of(target)]
    xp = problem.xp
    return float(xp.mean(as_around)) / max(float(xp.mean(as_own)), 1e-12)


def optimization_problem(dose: SpotMatrix, model_sums: Sequence[SpotMatrix],
                         union: NDArray[np.int64], rows_by_name: dict[str, NDArray[np.int64]],
                         model: RbeModel, n_fractions: int,
                         voxel_groups: Sequence[RbeGroup] = (), *, device: str = "cpu"
                         ) -> OptimizationProblem:
    """The optimization problem on the rows ``union`` (unique flat dose-grid indices, in the
    matrices' row order) of the matrices; ``voxel_groups`` (rows on the dose grid) become
    groups of the problem's rows."""
    order = np.argsort(union, kind="stable")
    ordered = union[order]

    def positions(rows: NDArray[np.int64]) -> NDArray[np.int64]:
        return order[np.searchsorted(ordered, rows[np.isin(rows, union)])].astype(np.int64)

    return OptimizationProblem(
        dose=dose, model_sums=tuple(model_sums),
        structure_rows=tuple((name, positions(rows)) for name, rows in rows_by_name.items()),
        model=model, n_fractions=n_fractions, groups=groups_on_rows(voxel_groups, union),
        device=device)


def groups_on_rows(voxel_groups: Sequence[RbeGroup], rows: NDArray[np.int64]
                   ) -> tuple[RbeGroup, ...]:
    """``voxel_groups`` (rows: flat grid indices) as groups of positions in ``rows``, the
    groups without any of ``rows`` left out."""
    out = []
    for g in voxel_groups:
        inside = np.isin(rows, g.rows)
        if inside.any():
            out.append(RbeGroup(g.model, np.flatnonzero(inside).astype(np.int64),
                                g.sum_indices))
    return tuple(out)
