"""Progress of a plan moves forward through every stage, and Cancel stops it within a second
wherever it is pressed (set-up WEPL, optimizer, forward dose)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from kernels.wepl import wepl_cube
from planning.dicom import load_demo_patient
from planning.planner import PREPARE_SHARE, PlanRequest, make_plan
from planning.progress import CancelToken, OperationCancelled


def _request() -> PlanRequest:
    return PlanRequest(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1, gantry_deg=(90.0,),
                       patient=load_demo_patient(), rbe_model="mkm", spot_spacing_mm=6.0,
                       dose_grid_mm=5.0, device="cpu", exchange=True)


def test_progress_never_goes_back_and_the_set_up_reports_as_it_goes():
    seen: list[tuple[float, str]] = []
    make_plan(_request(), progress=lambda f, s: seen.append((f, s)))
    fractions = np.array([f for f, _ in seen])
    assert np.all(np.diff(fractions) >= 0), [s for s in seen if s[0] < fractions.max()][:5]
    assert fractions[-1] == 1.0
    # The set-up (most of all a WEPL cube per beam, twice) is no longer one silent step.
    setup = {round(f, 3) for f in fractions if f < PREPARE_SHARE}
    assert len(setup) >= 10
    assert any(s == "water-equivalent depth" for _, s in seen)


@pytest.mark.parametrize("stage", ["water-equivalent depth", "optimizing", "dose cubes"])
def test_cancel_stops_within_a_second(stage):
    token = CancelToken()
    asked: list[float] = []

    def progress(fraction: float, text: str) -> None:
        if not asked and text.startswith(stage) and fraction > 0:
            token.cancel()
            asked.append(time.perf_counter())

    with pytest.raises(OperationCancelled):
        make_plan(_request(), progress=progress, cancel=token)
    assert asked, f"the plan never reported {stage!r}"
    assert time.perf_counter() - asked[0] < 1.0


def test_wepl_cube_reports_each_chunk_and_stops_when_the_callback_raises():
    rsp = np.ones((20, 30, 40), np.float32)
    axes = dict(direction=(0.0, 1.0, 0.0), u_axis=(1.0, 0.0, 0.0), v_axis=(0.0, 0.0, 1.0))
    done: list[float] = []
    wepl_cube(rsp, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), **axes, chunk_samples=5000,
              on_chunk=done.append)
    assert len(done) > 3 and done[-1] == 1.0 and done == sorted(done)

    class Stop(Exception):
        pass

    calls: list[float] = []

    def stop(fraction: float) -> None:
        calls.append(fraction)
        raise Stop

    with pytest.raises(Stop):
        wepl_cube(rsp, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), **axes, chunk_samples=5000,
                  on_chunk=stop)
    assert len(calls) == 1


class _RecordingToken(CancelToken):
    """A token that is never set and records where it was checked."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[str] = []

    def raise_if_cancelled(self, operation: str) -> None:
        self.checked.append(operation)
        super().raise_if_cancelled(operation)


def test_cancel_is_checked_between_the_long_steps_over_all_voxels():
    """On a fine grid each step over all the dose grid's voxels (their centres, WEPL, beam's-eye
    coordinates, spot lattice) takes seconds, and so do sampling a structure's points and
    sorting the optimizer's rows: Cancel is checked between them (a 0.5 mm demo plan ran on for
    minutes after Cancel)."""
    token = _RecordingToken()
    make_plan(_request(), cancel=token)
    # One beam: at least the voxel centres, WEPL and beam's-eye steps of the dose engine.
    assert token.checked.count("water-equivalent depth") >= 4
    assert "sampling the structures" in token.checked
    assert "the optimizer's matrices" in token.checked


def test_sorted_contains_finds_each_value():
    from planning.engine.engine import sorted_contains

    haystack = np.array([2, 5, 9, 40], np.int64)
    got = sorted_contains(haystack, np.array([40, 1, 5, 41, 9, 3, 2], np.int64))
    assert got.tolist() == [True, False, True, False, True, False, True]
    assert sorted_contains(np.array([], np.int64), np.array([1], np.int64)).tolist() == [False]
