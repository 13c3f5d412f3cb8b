"""Beam's-eye view geometry: a box target projected at gantry 0 and 90 (HFS) and a beam's
energy-layer table, against outlines and sums worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from planning.beam_eye_view import layer_spots, layer_table, target_projection
from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.errors import PlanningError
from planning.plan import BeamPlan

# 1 mm voxels, voxel (0, 0, 0) at LPS (-30, -30, -30): voxel centres at integer mm.
GRID = DoseGrid(shape=(61, 61, 61), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(-30.0, -30.0, -30.0))


def _box_mask(x: tuple[int, int], y: tuple[int, int], z: tuple[int, int]) -> np.ndarray:
    """Voxels whose centres lie in the closed mm ranges (LPS)."""
    zz, yy, xx = np.meshgrid(*(np.arange(n) - 30 for n in GRID.shape), indexing="ij")
    return ((xx >= x[0]) & (xx <= x[1]) & (yy >= y[0]) & (yy <= y[1])
            & (zz >= z[0]) & (zz <= z[1]))


def _extent(outlines: list[np.ndarray]) -> tuple[float, float, float, float]:
    pts = np.vstack(outlines)
    return (pts[:, 0].min(), pts[:, 0].max(), pts[:, 1].min(), pts[:, 1].max())


def _area(poly: np.ndarray) -> float:
    u, v = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(u[:-1], v[1:]) - np.dot(u[1:], v[:-1])))


# Box: centres x 0..20, y -5..5, z -20..0 mm; with the voxels' half-mm the box spans
# x -0.5..20.5, y -5.5..5.5, z -20.5..0.5. Isocentre at the LPS origin.
BOX = _box_mask((0, 20), (-5, 5), (-20, 0))


def test_gantry_0_projects_onto_left_right_and_head_feet():
    # HFS, gantry 0: the beam comes from above (anterior) going posterior; u = IEC X = the
    # patient's left (+x LPS), v = IEC Y = towards the gantry = superior (+z LPS).
    beam = Beam((0.0, 0.0, 0.0), 0.0)
    outlines = target_projection(BOX, GRID, beam)
    assert len(outlines) == 1
    u0, u1, v0, v1 = _extent(outlines)
    assert u0 == pytest.approx(-0.5, abs=0.5) and u1 == pytest.approx(20.5, abs=0.5)
    assert v0 == pytest.approx(-20.5, abs=0.5) and v1 == pytest.approx(0.5, abs=0.5)
    assert _area(outlines[0]) == pytest.approx(21.0 * 21.0, rel=0.05)


def test_gantry_90_projects_onto_anterior_posterior_and_head_feet():
    # HFS, gantry 90: the beam comes from the patient's left going right (-x); u = IEC X
    # turned with the gantry = down = posterior (+y LPS), v = superior (+z LPS).
    beam = Beam((0.0, 0.0, 0.0), 90.0)
    outlines = target_projection(BOX, GRID, beam)
    u0, u1, v0, v1 = _extent(outlines)
    assert u0 == pytest.approx(-5.5, abs=0.5) and u1 == pytest.approx(5.5, abs=0.5)
    assert v0 == pytest.approx(-20.5, abs=0.5) and v1 == pytest.approx(0.5, abs=0.5)
    assert _area(outlines[0]) == pytest.approx(11.0 * 21.0, rel=0.05)


def test_diverging_projection_shrinks_what_lies_downstream():
    # A slab 10 mm downstream of the isocentre (posterior at gantry 0) seen from sources
    # 1000 mm upstream: its lateral size scales by 1000 / 1010.
    slab = _box_mask((-10, 10), (10, 10), (-10, 10))
    beam = Beam((0.0, 0.0, 0.0), 0.0)
    u0, u1, _v0, _v1 = _extent(target_projection(slab, GRID, beam, sad_mm=(1000.0, 1000.0)))
    assert u1 - u0 == pytest.approx(21.0 * 1000.0 / 1010.0, abs=0.6)


def test_empty_or_misplaced_mask_is_refused():
    beam = Beam((0.0, 0.0, 0.0), 0.0)
    with pytest.raises(PlanningError, match="empty"):
        target_projection(np.zeros(GRID.shape, bool), GRID, beam)
    with pytest.raises(PlanningError, match="not on the CT grid"):
        target_projection(np.ones((2, 2, 2), bool), GRID, beam)


def _beam_plan() -> BeamPlan:
    # Layer 0: 200 MeV/u, three spots; layer 1: 150 MeV/u, two spots (one not delivered).
    spots = SpotMap(energy_mev_u=np.array([200.0, 200.0, 200.0, 150.0, 150.0]),
                    layer=np.array([0, 0, 0, 1, 1]),
                    u_mm=np.array([-3.0, 0.0, 3.0, 0.0, 3.0]),
                    v_mm=np.array([0.0, 0.0, 0.0, 3.0, 3.0]), spacing_mm=(3.0, 3.0))
    weights = np.array([1.0, 2.0, 3.0, 0.5, 0.0])  # 10^6 ions per fraction
    return BeamPlan(Beam((0.0, 0.0, 0.0), 0.0), spots, weights)


def test_layer_table_energies_spots_and_particles():
    rows = layer_table(_beam_plan())
    assert [r.energy_mev_u for r in rows] == [200.0, 150.0]
    assert [(r.n_spots, r.n_spots_delivered) for r in rows] == [(3, 3), (2, 1)]
    assert rows[0].particles == pytest.approx(6.0e6) and rows[1].particles == pytest.approx(5e5)


def test_layer_spots_and_unknown_layer():
    spots = layer_spots(_beam_plan(), 1)
    assert list(spots.u_mm) == [0.0, 3.0] and list(spots.particles) == [5e5, 0.0]
    with pytest.raises(PlanningError, match="no energy layer 7"):
        layer_spots(_beam_plan(), 7)
