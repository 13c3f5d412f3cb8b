"""DVH and dose metrics on hand-made dose arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from planning.errors import PlanningError
from planning.evaluation import conformity_index, cumulative_dvh, dose_at_volume, dose_metrics


def test_metrics_of_a_uniform_ramp() -> None:
    # 101 voxels at 0, 1, ..., 100 Gy, each standing for the dose interval of 1 Gy around its
    # own: the volume is uniform over -0.5 .. 100.5 Gy, so D_x = 100.5 - 1.01 x.
    d = np.arange(101.0)
    assert dose_at_volume(d, 95) == pytest.approx(4.55)
    assert dose_at_volume(d, 5) == pytest.approx(95.45)
    m = dose_metrics(d, prescription=50.0)
    assert (m.d98, m.d95, m.d50, m.d5, m.d2) == pytest.approx(
        (1.52, 4.55, 50.0, 95.45, 98.48))
    assert m.mean == pytest.approx(50.0) and m.max == 100.0 and m.min == 0.0
    # V95: voxels >= 47.5 Gy -> 48..100 = 53 of 101; V107: >= 53.5 -> 54..100 = 47.
    assert m.v95 == pytest.approx(53 / 101) and m.v107 == pytest.approx(47 / 101)
    assert m.homogeneity_index == pytest.approx((98.48 - 1.52) / 50.0)


def test_uniform_dose_and_conformity() -> None:
    dose = np.zeros((4, 4, 4))
    target = np.zeros_like(dose, dtype=bool)
    target[1:3, 1:3, 1:3] = True
    dose[target] = 60.0
    dose[0, 0, 0] = 59.0  # outside the target, above 95 %
    m = dose_metrics(dose[target], 60.0)
    assert m.d95 == m.d5 == m.mean == 60.0 and m.homogeneity_index == 0.0 and m.v95 == 1.0
    assert conformity_index(dose, target, 60.0) == pytest.approx(9 / 8)


def test_cumulative_dvh_steps() -> None:
    dvh = cumulative_dvh("T", [10.0, 10.0, 20.0, 30.0], volume_mm3=1000.0,
                         max_dose=40.0, n_bins=4)
    # bins of 10.01 Gy: voxels >= edge 0, 10.01, 20.02, 30.03, 40.04
    np.testing.assert_allclose(dvh.volume_fraction, [1.0, 0.5, 0.25, 0.0, 0.0])
    assert dvh.volume_cm3 == pytest.approx(4.0)


def test_empty_structure_is_an_error() -> None:
    with pytest.raises(PlanningError):
        dose_metrics([], 60.0)


def test_a_dense_spread_of_doses_keeps_its_levels() -> None:
    """100,000 doses evenly over 57-63 Gy (a well-sampled structure in a gradient): D_x of the
    uniform distribution, 63 - 0.06 x. Neighbours closer than a tolerance must not chain into
    one level (they did: every D_x was 63 Gy)."""
    d = np.linspace(57.0, 63.0, 100_000)
    m = dose_metrics(d, prescription=60.0)
    assert (m.d98, m.d95, m.d50, m.d5, m.d2) == pytest.approx(
        (57.12, 57.30, 60.0, 62.70, 62.88), abs=1e-3)
    # Samples of one float32 dose a few float64 ulps apart are still one level: four at 60.1
    # and four at 50 Gy are two levels with their middles at 25 and 75 % of the volume.
    top = float(np.float32(60.1))
    tied = top + np.array([0.0, 1e-14, -1e-14, 2e-14])
    d40 = dose_at_volume(np.concatenate([tied, [50.0] * 4]), 40)
    assert d40 == pytest.approx(top + (0.40 - 0.25) / 0.5 * (50.0 - top))


def test_doses_that_are_not_numbers_are_an_error() -> None:
    with pytest.raises(PlanningError, match="1 of 3 doses are not finite"):
        dose_metrics([60.0, float("nan"), 59.0], prescription=60.0)
