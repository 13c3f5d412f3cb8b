"""Dose display choices -> viewer overlay (no window needed)."""

from __future__ import annotations

import numpy as np
import pytest

from app.dose_display import (
    DoseDisplay,
    difference_overlay,
    overlay_for,
    parse_levels,
    ratio_overlay,
)
from app.session import DoseLayer
from planning.dose_grid import DoseGrid
from planning.errors import InputError

GRID = DoseGrid((2, 3, 4), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))


def _layer(rx=60.0, top=66.0):
    cube = np.zeros(GRID.shape, np.float32)
    cube[1, 1, 1] = top
    cube[0, 0, 0] = rx
    return DoseLayer("rbe", "RBE-weighted dose (mMKM)", cube, GRID, "Gy(RBE)", rx, True)


def test_absolute_overlay_levels_and_threshold_follow_the_prescription():
    o = overlay_for(_layer(), DoseDisplay(isodose_percent=(95.0, 50.0), threshold_percent=10))
    assert o.unit == "Gy(RBE)"
    assert o.isodose_levels == pytest.approx((57.0, 30.0))
    assert o.threshold == pytest.approx(6.0)
    assert o.vmin == 0.0 and o.vmax == pytest.approx(66.0)  # max(66, 1.1 x 60)


def test_percent_overlay_puts_the_prescription_at_100():
    o = overlay_for(_layer(), DoseDisplay(percent=True, isodose_percent=(100.0,)))
    assert o.unit == "%"
    assert o.dose[0, 0, 0] == pytest.approx(100.0)
    assert o.dose[1, 1, 1] == pytest.approx(110.0)
    assert o.isodose_levels == pytest.approx((100.0,))


def test_wash_and_isodoses_can_be_switched_off():
    o = overlay_for(_layer(), DoseDisplay(wash=False, isodoses=False))
    assert o.opacity == 0.0 and o.isodose_levels == ()


def test_scale_never_below_110_percent_of_prescription():
    o = overlay_for(_layer(top=30.0), DoseDisplay())
    assert o.vmax == pytest.approx(66.0)


def test_difference_overlay_is_symmetric():
    diff = np.zeros(GRID.shape, np.float32)
    diff[0, 0, 0], diff[1, 2, 3] = -2.0, 5.0
    o = difference_overlay(diff, GRID, "Gy", label="B - A")
    assert (o.vmin, o.vmax, o.colormap) == (-5.0, 5.0, "diverging")


def test_a_rounding_level_difference_is_not_spread_over_the_whole_scale():
    """Two equal doses differ by float rounding (1e-6 Gy): the scale spanned +-1e-6 Gy and
    its ticks read "-0.0000"; it spans at least the least peak asked for."""
    diff = np.zeros(GRID.shape, np.float32)
    diff[0, 0, 0] = -1e-6
    o = difference_overlay(diff, GRID, "Gy", label="B - A", least_peak=0.6)
    assert (o.vmin, o.vmax) == (-0.6, 0.6)
    diff[1, 1, 1] = 2.0
    assert difference_overlay(diff, GRID, "Gy", label="B - A", least_peak=0.6).vmax == 2.0


def test_ratio_overlay_shows_the_ratio_where_it_was_taken():
    ratio = np.full(GRID.shape, np.nan, np.float32)
    ratio[0] = np.linspace(2.0, 3.0, 12).reshape(3, 4)
    o = ratio_overlay(ratio, GRID, label="effective RBE B / A", scale_name="RBE B/A",
                      where="where A ≥ 10% of its max")
    assert o.unit == "" and o.scale_name == "RBE B/A" and o.colormap == "dose"
    assert o.vmin == pytest.approx(np.percentile(ratio[0], 1.0))
    assert o.vmax == pytest.approx(np.percentile(ratio[0], 99.0))
    assert (o.shown_min, o.shown_max) == pytest.approx((2.0, 3.0))
    assert np.all(o.dose[1] == 0.0) and 0.0 < o.threshold <= 2.0  # not washed where NaN
    assert o.note == "where A ≥ 10% of its max; scale 1st-99th percentile"


def test_isodose_level_text():
    assert parse_levels("95, 107,50%; 95") == (107.0, 95.0, 50.0)
    with pytest.raises(InputError, match="not a number"):
        parse_levels("95, abc")
    with pytest.raises(InputError, match="must lie"):
        parse_levels("-5")


def test_a_quantitys_colours_span_the_voxels_where_it_is_shown():
    """The ratio's scale ran 1.04-1.09 (the target's values), so the entrance channel's 2
    took the top colour with no sign of it: the scale spans the 1st to 99th percentile where
    the quantity is shown, and the overlay gives the values beyond it for the legend."""
    from tests.test_app_viewmodel import _field_with_an_entrance_channel

    layer = _field_with_an_entrance_channel().layer("ratio")
    o = overlay_for(layer, DoseDisplay())
    shown = layer.cube[layer.mask_dose >= layer.mask_dose_min]
    assert o.vmin == pytest.approx(float(np.percentile(shown, 1)))
    assert o.vmax == pytest.approx(float(np.percentile(shown, 99)))
    assert o.vmin < 1.035 and o.vmax == pytest.approx(2.0)  # the target and the channel
    assert (o.shown_min, o.shown_max) == pytest.approx((1.03, 2.0))
    assert o.isodose_levels == () and "percentile" in o.note and "≥10% Rx" in o.note
    assert np.all(o.dose[layer.mask_dose < layer.mask_dose_min] == 0.0)  # not the 4.139
    percent = overlay_for(layer, DoseDisplay(percent=True, isodoses=True))
    assert percent.unit == "%" and percent.vmax == pytest.approx(100.0)
    assert percent.isodose_levels == ()
