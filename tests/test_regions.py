"""Generated optimization regions (rings around a structure) and the resolution warnings.

The ring is checked against a brute-force nearest-neighbour distance (a KD-tree over the
structure's voxel centres, in mm), not against the distance transform the code uses; the
lateral ripple of a spot lattice against a direct numerical sum of Gaussians.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from planning.beams import SpotMap
from planning.dose_grid import DoseGrid
from planning.errors import PlanningError
from planning.machine import load_machine
from planning.optimization_grid import (
    default_optimization_spacing_mm,
    sample_stride,
    thinned_rows,
)
from planning.patient import CtVolume, Patient, PatientStudy, RoiMask, Structure, StructureSet
from planning.regions import is_generated, region_mask, region_name, ring_name
from planning.resolution import (
    MAX_SPOT_SPACING_SIGMAS,
    grid_warning,
    spot_spacing_warning,
)

SHAPE = (20, 40, 36)          # (z, y, x)
SPACING = (3.0, 1.5, 2.0)     # anisotropic on purpose


def _patient(with_body: bool = True) -> Patient:
    grid = DoseGrid(SHAPE, SPACING, (-35.0, -29.25, -28.5))
    c = grid.voxel_centers_lps()
    r = np.sqrt(c[:, 0] ** 2 + c[:, 1] ** 2 + c[:, 2] ** 2).reshape(SHAPE)
    target = r <= 9.0
    body = c[:, 0].reshape(SHAPE) <= 12.0  # cuts the ring on one side
    study = PatientStudy("Ring^Test", "R1", "", "O", "1.2.3", "1", "", "", "", "")
    ct = CtVolume(np.zeros(SHAPE, np.int16), SPACING, grid.origin_mm, "HFS", (1, 0, 0, 0, 1, 0),
                  "1.2.4", "1.2.5", tuple(f"1.2.6.{k}" for k in range(SHAPE[0])), study)
    rois = [("PTV", "PTV", target)] + ([("Body", "EXTERNAL", body)] if with_body else [])
    structures = tuple(Structure(n, i + 1, t, None, RoiMask.from_dense(m))
                       for i, (n, t, m) in enumerate(rois))
    return Patient(ct, StructureSet(structures, "1.2.4", "1.2.7", "1.2.8"))


def _distance_to_target_mm(patient: Patient) -> np.ndarray:
    grid = DoseGrid(SHAPE, SPACING, patient.ct.origin_mm)
    centres = grid.voxel_centers_lps()
    target = patient.structure_set.get("PTV").mask.to_dense().reshape(-1)
    distance, _ = cKDTree(centres[target]).query(centres)
    return distance.reshape(SHAPE)


@pytest.mark.parametrize("inner, outer", [(0.0, 5.0), (5.0, 15.0)])
def test_ring_is_the_shell_at_that_distance_inside_the_body(inner, outer):
    patient = _patient()
    ring = region_mask(patient, ring_name("PTV", inner, outer))
    d = _distance_to_target_mm(patient)
    body = patient.structure_set.get("Body").mask.to_dense()
    target = patient.structure_set.get("PTV").mask.to_dense()
    expected = (d > inner) & (d <= outer) & body & ~target
    assert ring.sum() > 100
    np.testing.assert_array_equal(ring, expected)


def test_ring_without_a_body_is_not_clipped():
    patient = _patient(with_body=False)
    ring = region_mask(patient, "PTV ring 5-15 mm")
    d = _distance_to_target_mm(patient)
    np.testing.assert_array_equal(ring, (d > 5.0) & (d <= 15.0))


def test_region_names():
    patient = _patient()
    assert ring_name("PTV", 0, 5) == "PTV ring 0-5 mm" and is_generated("PTV ring 0-5 mm")
    assert not is_generated("PTV")
    assert region_name(patient, "ptv") == "PTV"  # a real ROI: its own spelling
    assert region_name(patient, "PTV ring 2.5-7 mm") == "PTV ring 2.5-7 mm"
    np.testing.assert_array_equal(region_mask(patient, "body"),
                                  patient.structure_set.get("Body").mask.to_dense())
    with pytest.raises(PlanningError, match="Tumour"):
        region_mask(patient, "Tumour")
    with pytest.raises(PlanningError, match="no structure 'GTV' to put a ring around"):
        region_mask(patient, "GTV ring 0-5 mm")
    with pytest.raises(PlanningError, match="inner distance must be less"):
        region_mask(patient, "PTV ring 5-5 mm")


def test_grid_warning_from_2_5_mm_up():
    assert grid_warning((2.5, 2.5, 2.5)) is None
    assert grid_warning((2.0, 1.0, 1.0)) is None
    message = grid_warning((3.0, 2.5, 2.5))
    assert message is not None and "3 mm is coarser than 2.5 mm" in message
    assert "optimizer" in message
    # A recalculation optimizes nothing: its warning says what its grid does (CLI review).
    recalc = grid_warning((3.0, 2.5, 2.5), optimized=False)
    assert recalc is not None and "3 mm is coarser than 2.5 mm" in recalc
    assert "optimizer" not in recalc and "this recalculation" in recalc
    assert grid_warning((2.5, 2.5, 2.5), optimized=False) is None


def test_lattice_ripple_matches_a_direct_sum_of_gaussians():
    """The docstring's ripple, +/- 2 exp(-2 pi^2 s^2 / a^2) about the mean (1.4 % at a = 2 s),
    holds for a numerical sum of Gaussians on a lattice."""
    sigma = 1.0
    for ratio, expected in ((2.0, 0.0144), (2.5, 0.085)):
        a = ratio * sigma
        x = np.linspace(0.0, a, 201)
        centres = np.arange(-40, 41) * a
        dose = np.exp(-((x[:, None] - centres[None, :]) ** 2) / (2 * sigma**2)).sum(axis=1)
        ripple = 0.5 * (dose.max() - dose.min()) / dose.mean()
        assert ripple == pytest.approx(expected, rel=0.1)
        assert ripple == pytest.approx(2 * np.exp(-2 * np.pi**2 / ratio**2), rel=0.05)


def test_spot_spacing_warning_follows_the_machine_sigma():
    machine = load_machine()
    energy = float(machine.energies_mev_u[-1])  # the narrowest in-air spot
    sigma = float(machine.spot_sigma_air_mm[-1])

    def spots(spacing: float) -> SpotMap:
        return SpotMap(np.full(4, energy), np.zeros(4, int), np.array([0.0, spacing, 0, spacing]),
                       np.array([0.0, 0, spacing, spacing]), (spacing, spacing))

    assert spot_spacing_warning(machine, [spots(0.99 * MAX_SPOT_SPACING_SIGMAS * sigma)]) is None
    message = spot_spacing_warning(machine, [spots(2.5 * sigma)])
    assert message is not None and f"{sigma:.2f} mm" in message and "ripple" in message


def test_the_optimizer_samples_the_target_finer_than_far_regions():
    assert default_optimization_spacing_mm(2.5) == 1.25
    assert default_optimization_spacing_mm(1.5) == 1.0
    assert default_optimization_spacing_mm(0.8) == 0.8
    opt = DoseGrid((10, 10, 10), (1.25, 1.25, 1.25), (0.0, 0.0, 0.0))
    dose = DoseGrid((5, 5, 5), (2.5, 2.5, 2.5), (0.0, 0.0, 0.0))
    assert sample_stride("PTV", "PTV", opt, dose) == 1
    assert sample_stride("PTV ring 0-5 mm", "PTV", opt, dose) == 1
    assert sample_stride("Brainstem", "PTV", opt, dose) == 2       # the dose grid's 2.5 mm
    assert sample_stride("PTV ring 5-15 mm", "PTV", opt, dose) == 4  # 5 mm
    assert sample_stride("PTV ring 15-30 mm", "PTV", dose, dose) == 2
    shape = (4, 5, 6)
    rows = np.arange(4 * 5 * 6)
    kept = thinned_rows(rows, shape, 2)
    k, j, i = np.unravel_index(kept, shape)
    assert kept.size == 2 * 3 * 3
    assert not (k % 2).any() and not (j % 2).any() and not (i % 2).any()
    np.testing.assert_array_equal(thinned_rows(rows, shape, 1), rows)


def test_jittered_points_take_two_of_every_block_at_every_position():
    from planning.optimization_grid import jittered_rows

    shape = (8, 10, 12)
    rows = np.arange(8 * 10 * 12)
    kept = jittered_rows(rows, shape, 2)
    k, j, i = np.unravel_index(kept, shape)
    blocks = (k // 2) * 100 + (j // 2) * 10 + i // 2
    assert set(np.bincount(blocks)[np.unique(blocks)]) == {2}   # two per 2x2x2 block
    assert np.unique(blocks).size == 4 * 5 * 6                   # in every block
    sub = (k % 2) * 4 + (j % 2) * 2 + i % 2
    assert set(sub.tolist()) == set(range(8))                    # every sub-voxel position
    np.testing.assert_array_equal(jittered_rows(rows, shape, 2), kept)  # the same every time
    np.testing.assert_array_equal(jittered_rows(rows, shape, 8), rows)


def test_fine_points_per_block_give_a_mean_spacing_of_at_most_2_4_mm():
    from planning.optimization_grid import FINE_MEAN_SPACING_MM, fine_points_per_block

    for spacing, keep in [(1.5, 2), (1.25, 2), (1.0, 1), (0.75, 1)]:
        assert fine_points_per_block(spacing) == keep
        assert spacing * (8 / keep) ** (1 / 3) <= FINE_MEAN_SPACING_MM + 1e-9
        if keep > 1:  # one fewer would be coarser than that
            assert spacing * (8 / (keep - 1)) ** (1 / 3) > FINE_MEAN_SPACING_MM


def test_check_grid_holds_the_dose_grid_centres_and_the_midpoints():
    """The refinement's check grid: every dose-grid voxel centre is one of its points (found
    by position, independently of the index mapping), the others are the midpoints, and
    grids whose half spacing is under 1 mm are checked on themselves."""
    from planning.optimization_grid import rows_on_check_grid, target_check_grid

    dose = DoseGrid(shape=(4, 5, 6), spacing_mm=(3.0, 2.5, 2.0), origin_mm=(-7.0, 3.5, 11.0))
    check = target_check_grid(dose)
    assert check.shape == (7, 9, 11) and check.spacing_mm == (1.5, 1.25, 1.0)
    rows = np.array([0, 7, 33, dose.n_voxels - 1])
    mapped = rows_on_check_grid(rows, dose, check)
    np.testing.assert_allclose(check.voxel_centers_lps(mapped), dose.voxel_centers_lps(rows))
    centres = dose.voxel_centers_lps()
    distance, _ = cKDTree(centres).query(check.voxel_centers_lps())
    assert np.count_nonzero(distance < 1e-9) == dose.n_voxels  # the rest lie between them
    np.testing.assert_array_equal(rows_on_check_grid(rows, check, check), rows)
    fine = DoseGrid(shape=(4, 4, 4), spacing_mm=(1.5, 1.5, 1.5), origin_mm=(0.0, 0.0, 0.0))
    assert target_check_grid(fine) is fine
    other = DoseGrid.covering(dose, 1.5)
    assert rows_on_check_grid(rows, other, check).size == 0
