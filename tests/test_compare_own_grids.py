"""A comparison of two doses on different grids reads each dose on its own grid.

CLI review: ``ionplan compare`` of a 5 mm plan and its 4 mm recalculation gave A's PTV D95
53.31 Gy(RBE) where A's own report said 54.22 (and its maximum 59.31 beside 60.26 in the same
report.json), so B - A read +0.32 Gy(RBE) where the two reports gave -0.59: the structures
were read on the doses resampled (trilinear) onto the common grid, which loses the peaks
between its points. Now each side's structure metrics are those its own report gives (the
same clinical DVH samples on its own grid,
:func:`planning.structure_dose.structure_dose_statistics`).
"""

from __future__ import annotations

import numpy as np
import pytest

from planning.compare.comparison import CompareSettings, compare
from planning.compare.sources import DoseSide
from planning.dose_grid import DoseGrid
from planning.structure_dose import grid_of, structure_dose_statistics

RX_GY = 50.0


def _peaky_dose(grid: DoseGrid) -> np.ndarray:
    """50 Gy(RBE) with independent +/- 4 Gy(RBE) (1 sd) noise from voxel to voxel: trilinear
    resampling onto another grid averages neighbours, so it lowers D2 and the maximum and
    raises D98."""
    rng = np.random.default_rng(7)
    return (RX_GY + 4.0 * rng.standard_normal(grid.shape)).astype(np.float32)


def _side(label: str, dose: np.ndarray, grid: DoseGrid, frame: str) -> DoseSide:
    return DoseSide(label=label, source=f"dose of {label}", dose_gy=dose, grid=grid,
                    dose_type="EFFECTIVE", frame_of_reference_uid=frame)


def test_each_side_is_read_on_its_own_grid(patient) -> None:
    ct_grid = grid_of(patient.ct)
    grid_a, grid_b = DoseGrid.covering(ct_grid, 5.0), DoseGrid.covering(ct_grid, 4.0)
    dose_a = _peaky_dose(grid_a)
    dose_b = np.full(grid_b.shape, RX_GY, np.float32)
    frame = patient.ct.frame_of_reference_uid
    result = compare(_side("A", dose_a, grid_a, frame), _side("B", dose_b, grid_b, frame),
                     patient=patient,
                     settings=CompareSettings(cross_model=False, gamma=((3.0, 3.0),),
                                              prescription_gy=RX_GY))
    assert result.resampled  # the grids differ
    own_a = {s.name: s for s in structure_dose_statistics(patient, dose_a, grid_a, RX_GY)}
    compared = {s.name: s for s in result.structures}
    assert set(compared) <= set(own_a)
    # Structures inside both grids (a structure at the edge of one is read where both reach)
    inside = [n for n, s in compared.items() if s.samples == own_a[n].samples]
    assert "PTV" in inside and len(inside) >= 4
    for name in inside:
        s, mine = compared[name], own_a[name].metrics
        for key in ("d98", "d95", "d50", "d2", "mean", "max"):
            assert s.metrics_a[key] == pytest.approx(getattr(mine, key), abs=1e-4), (name, key)
        assert s.metrics_a["v95"] == pytest.approx(mine.v95, abs=1e-4), name
        # B is uniform: every metric is the prescription, on any grid.
        for key in ("d98", "d95", "d50", "d2", "mean", "max"):
            assert s.metrics_b[key] == pytest.approx(RX_GY, abs=1e-3), (name, key)
    ptv = compared["PTV"]
    # The structure at the edge: as many samples as lie on both grids, no more.
    assert all(compared[n].samples <= own_a[n].samples for n in compared)
    assert ptv.metrics_a["d2"] > RX_GY + 3.5  # not averaged away
