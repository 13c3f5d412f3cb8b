"""Tick values, labels, the data <-> pixel mapping and dash geometry of app/plot_axes.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.plot_axes import (
    AxisMapping,
    dash_segments,
    nice_ticks,
    nice_upper_limit,
    tick_labels,
    tick_step,
    ticks_and_labels,
    wrap_words,
)
from planning.errors import InputError

NICE_MANTISSAS = (1.0, 2.0, 2.5, 5.0)


def _is_nice(step: float) -> bool:
    exponent = math.floor(math.log10(step))
    mantissa = step / 10.0**exponent
    return any(math.isclose(mantissa, m, rel_tol=1e-9) for m in NICE_MANTISSAS)


@pytest.mark.parametrize(
    ("lo", "hi", "max_ticks", "expected"),
    [
        (0.0, 1.0, 8, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.0, 57.6, 8, [0, 10, 20, 30, 40, 50]),
        (0.0, 0.3, 8, [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]),
        (12.0, 13.0, 8, [12, 12.2, 12.4, 12.6, 12.8, 13]),
        (0.0, 100.0, 6, [0, 20, 40, 60, 80, 100]),
        (0.0, 100.0, 11, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
        (-3.7, 12.1, 8, [-2, 0, 2, 4, 6, 8, 10, 12]),
        (0.0, 10.0, 5, [0, 2.5, 5, 7.5, 10]),
    ],
)
def test_ticks_of_known_ranges(lo: float, hi: float, max_ticks: int, expected: list[float]) -> None:
    np.testing.assert_allclose(nice_ticks(lo, hi, max_ticks), expected, rtol=0, atol=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    lo=st.floats(-1e6, 1e6, allow_nan=False),
    span=st.floats(1e-6, 1e6, allow_nan=False),
    max_ticks=st.integers(2, 12),
)
def test_ticks_are_nice_monotonic_inside_and_few(lo: float, span: float, max_ticks: int) -> None:
    hi = lo + span
    if hi == lo:  # span below the float resolution at lo
        return
    ticks = nice_ticks(lo, hi, max_ticks)
    step, _ = tick_step(lo, hi, max_ticks)
    assert 1 <= ticks.size <= max_ticks
    assert np.all(ticks >= lo) and np.all(ticks <= hi)
    assert np.all(np.diff(ticks) > 0)
    assert _is_nice(step)
    # Every tick is an integer multiple of the step.
    k = ticks / step
    np.testing.assert_allclose(k, np.round(k), rtol=0, atol=1e-6 * max(1.0, np.abs(k).max()))
    # The next smaller nice step would put more than max_ticks ticks in the range.
    if ticks.size < max_ticks:
        smaller = [m * 10.0**e for e in range(math.floor(math.log10(step)) - 1,
                                               math.floor(math.log10(step)) + 1)
                   for m in NICE_MANTISSAS if m * 10.0**e < step * (1 - 1e-9)]
        s = max(smaller)
        # A multiple within a billionth of the span of an end counts as inside (rounding).
        tol = 1e-9 * (hi - lo) + 8 * np.finfo(float).eps * max(abs(lo), abs(hi))
        count = math.floor((hi + tol) / s) - math.ceil((lo - tol) / s) + 1
        assert count > max_ticks


def test_labels_print_each_tick_exactly() -> None:
    values, texts = ticks_and_labels(0.0, 0.3, 8)
    assert texts == ["0.00", "0.05", "0.10", "0.15", "0.20", "0.25", "0.30"]
    values, texts = ticks_and_labels(0.0, 57.6, 8)
    assert texts == ["0", "10", "20", "30", "40", "50"]
    values, texts = ticks_and_labels(-1.0, 1.0, 5)
    assert texts == ["-1.0", "-0.5", "0.0", "0.5", "1.0"]
    assert tick_labels([-0.0001], 2) == ["0.00"]
    for v, t in zip(values, texts, strict=True):
        assert float(t) == pytest.approx(v, abs=1e-12)


def test_upper_limit_is_the_next_tick() -> None:
    assert nice_upper_limit(57.6) == 60.0
    assert nice_upper_limit(60.0) == 60.0
    assert nice_upper_limit(0.27) == pytest.approx(0.3)
    assert nice_upper_limit(0.0) == 1.0
    assert nice_upper_limit(-5.0) == 1.0
    assert nice_upper_limit(101.0) == 120.0


def test_degenerate_and_bad_ranges() -> None:
    np.testing.assert_array_equal(nice_ticks(5.0, 5.0), [5.0])
    with pytest.raises(InputError, match="below its lower end"):
        nice_ticks(2.0, 1.0)
    with pytest.raises(InputError, match="finite"):
        nice_ticks(0.0, float("inf"))
    with pytest.raises(InputError, match="at least 2 ticks"):
        nice_ticks(0.0, 1.0, 1)
    with pytest.raises(InputError, match="finite"):
        nice_upper_limit(float("nan"))


def test_mapping_ends_and_round_trip() -> None:
    m = AxisMapping(0.0, 80.0, 60.0, 460.0)
    assert m.scale == pytest.approx(5.0)
    np.testing.assert_allclose(m.to_pixel([0.0, 40.0, 80.0]), [60.0, 260.0, 460.0])
    d = np.linspace(-10, 90, 101)
    np.testing.assert_allclose(m.to_data(m.to_pixel(d)), d, rtol=0, atol=1e-12)
    # A reversed pixel axis (y down) maps the other way round.
    r = AxisMapping(0.0, 100.0, 500.0, 100.0)
    assert float(r.to_pixel(100.0)) == pytest.approx(100.0)
    assert float(r.to_data(300.0)) == pytest.approx(50.0)
    with pytest.raises(InputError, match="data range"):
        AxisMapping(1.0, 1.0, 0.0, 10.0)
    with pytest.raises(InputError, match="pixel range"):
        AxisMapping(0.0, 1.0, 3.0, 3.0)


def test_dashes_of_a_straight_line() -> None:
    # 0..100 px along x with 10 px dashes and 5 px gaps: dashes start every 15 px.
    segs = dash_segments([[0.0, 0.0], [100.0, 0.0]], 10.0, 5.0)
    starts = [0, 15, 30, 45, 60, 75, 90]
    np.testing.assert_allclose(segs[:, 0, 0], starts)
    np.testing.assert_allclose(segs[:, 1, 0], [10, 25, 40, 55, 70, 85, 100])
    np.testing.assert_allclose(segs[:, :, 1], 0.0)


def test_dashes_turn_corners_and_keep_their_length() -> None:
    # An L: 6 px right then 20 px up; 8 px dashes, 4 px gaps.
    pts = [[0.0, 0.0], [6.0, 0.0], [6.0, 20.0]]
    segs = dash_segments(pts, 8.0, 4.0)
    lengths = np.hypot(*(segs[:, 1] - segs[:, 0]).T)
    # The first dash is split at the corner: 6 px along x, then 2 px up.
    np.testing.assert_allclose(segs[0], [[0, 0], [6, 0]])
    np.testing.assert_allclose(segs[1], [[6, 0], [6, 2]])
    # Dashes along the arc: [0, 8], [12, 20], [24, 26]: total "on" length 8 + 8 + 2.
    assert lengths.sum() == pytest.approx(18.0)
    with pytest.raises(InputError, match="> 0 px"):
        dash_segments(pts, 0.0, 4.0)
    with pytest.raises(InputError, match="N >= 2"):
        dash_segments([[0.0, 0.0]], 8.0, 4.0)


def test_wrap_words_fills_each_line_and_keeps_every_word() -> None:
    title = "Worst case: voxel-wise minimum of 9 scenarios (LEM I chordoma, averaged) (Gy(RBE))"
    lines = wrap_words(title, 40, len)
    assert " ".join(lines) == title
    assert all(len(line) <= 40 for line in lines)
    assert lines == ["Worst case: voxel-wise minimum of 9", "scenarios (LEM I chordoma, averaged)",
                     "(Gy(RBE))"]
    assert wrap_words("Dose (Gy(RBE))", 40, len) == ["Dose (Gy(RBE))"]
    assert wrap_words("RBE-weighted dose", 5, len) == ["RBE-weighted", "dose"]  # a long word
    assert wrap_words("", 10, len) == [""]
