"""Maximum-dose objectives on organs at risk are held on both sides of the organ's surface
(planning.optimization_grid.boundary_rows, max_point_rows; planning.planner.on_max_points)."""

from __future__ import annotations

import numpy as np

from planning.optimization import Objective
from planning.optimization_grid import (
    boundary_rows,
    max_points_name,
    structure_of_max_points,
)
from planning.planner import on_max_points


def _demo():
    from planning.dicom import load_demo_patient

    return load_demo_patient()


def _block(shape, lo, hi):
    k, j, i = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)),
                          indexing="ij")
    return np.sort(np.ravel_multi_index((k.ravel(), j.ravel(), i.ravel()), shape))


def test_boundary_of_a_cube_is_its_outer_layer_and_the_face_neighbours_outside():
    shape = (7, 8, 9)
    rows = _block(shape, (2, 2, 2), (5, 5, 5))  # 3 x 3 x 3 points
    got = boundary_rows(rows, shape)
    centre = np.ravel_multi_index((3, 3, 3), shape)
    assert got.size == 26 + 6 * 9  # all but the centre, and 9 outside each face
    assert centre not in got and np.all(np.diff(got) > 0)
    assert np.isin(np.setdiff1d(rows, [centre]), got).all()
    outside = np.setdiff1d(got, rows)
    k, j, i = np.unravel_index(outside, shape)
    # Each outside point touches the cube through one face: one index off by one.
    off = (np.abs(k - 3) == 2).astype(int) + (np.abs(j - 3) == 2) + (np.abs(i - 3) == 2)
    assert np.all(off == 1) and np.all(np.maximum.reduce([np.abs(k - 3), np.abs(j - 3),
                                                           np.abs(i - 3)]) == 2)


def test_boundary_stops_at_the_grid_edge():
    shape = (4, 4, 4)
    rows = _block(shape, (0, 0, 0), (2, 2, 2))  # a corner block of 8 points
    got = boundary_rows(rows, shape)
    assert got.size == 8 + 3 * 4  # every point is on the surface; 3 faces inside the grid
    assert got.max() < np.prod(shape)
    assert boundary_rows(np.zeros(0, np.int64), shape).size == 0


def test_max_dose_objectives_on_organs_go_to_their_max_points():
    demo_patient = _demo()
    objectives = [Objective("PTV", "max_dose", 59.0, 500.0),
                  Objective("Brainstem", "max_dose", 54.0, 5.0),
                  Objective("Brainstem", "mean_dose", 17.0, 1.0),
                  Objective("External", "max_dose", 60.0, 1.0),
                  Objective("PTV ring 0-15 mm", "max_dose", 50.0, 10.0)]
    got = on_max_points(objectives, demo_patient, "PTV")
    assert [o.structure for o in got] == ["PTV", max_points_name("Brainstem"), "Brainstem",
                                          "External", "PTV ring 0-15 mm"]
    assert [(o.kind, o.dose_gy_rbe, o.weight) for o in got] == [
        (o.kind, o.dose_gy_rbe, o.weight) for o in objectives]
    assert structure_of_max_points(got[1].structure) == "Brainstem"
    assert structure_of_max_points("Brainstem") is None
