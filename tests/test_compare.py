"""The compare pipeline on doses with known answers: statistics, frames, grids, DVHs, report."""

from __future__ import annotations

import base64
import datetime
import html
import itertools
import json
import re

import imageio.v3 as iio
import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from planning import api
from planning.compare.comparison import CompareSettings, compare
from planning.compare.dose_diff import difference_stats
from planning.compare.html_report import write_comparison_report
from planning.compare.images import colour_map, png_bytes
from planning.compare.sources import DoseSide
from planning.dicom import load_demo_patient
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.planner import grid_of, structure_rows
from planning.progress import CancelToken, OperationCancelled

FRAME = "1.2.826.0.1.3680043.8.498.1"


def _side(label, dose, grid, frame=FRAME, dose_type="EFFECTIVE", **kw):
    return DoseSide(label=label, source=f"dose {label}", dose_gy=np.asarray(dose, np.float32),
                    grid=grid, dose_type=dose_type, frame_of_reference_uid=frame, **kw)


def _block(shape=(20, 24, 28), spacing=2.0, value=10.0):
    grid = DoseGrid(shape, (spacing,) * 3, (0.0, 0.0, 0.0))
    dose = np.zeros(shape, np.float32)
    dose[5:15, 6:18, 7:21] = value
    return grid, dose


def test_difference_stats_of_a_uniform_2_percent_scale():
    _, ref = _block()
    st = difference_stats(ref, 1.02 * ref, threshold_percent=10.0, prescription_gy=8.0)
    assert st.voxels == 10 * 12 * 14
    assert st.mean_gy == pytest.approx(0.2, rel=1e-5)
    assert st.sd_gy == pytest.approx(0.0, abs=1e-5)
    assert st.max_abs_gy == pytest.approx(0.2, rel=1e-5)
    assert st.integral_ratio == pytest.approx(1.02, rel=1e-6)
    d = st.as_dict()
    assert d["percent_of_reference_max"]["mean"] == pytest.approx(2.0, rel=1e-5)
    assert d["percent_of_prescription"]["max_abs"] == pytest.approx(2.5, rel=1e-5)
    assert dict(st.percentiles_gy)[50.0] == pytest.approx(0.2, rel=1e-5)


def test_difference_stats_locate_the_largest_difference():
    _, ref = _block()
    ev = ref.copy()
    ev[9, 10, 11] += 3.0
    ev[9, 10, 12] -= 1.0
    st = difference_stats(ref, ev)
    assert st.max_abs_index == (9, 10, 11) and st.max_abs_gy == pytest.approx(3.0)
    assert st.mean_gy == pytest.approx(2.0 / st.voxels, rel=1e-5)
    with pytest.raises(InputError, match="zero everywhere"):
        difference_stats(np.zeros((2, 2, 2)), np.ones((2, 2, 2)))
    with pytest.raises(InputError, match="shapes"):
        difference_stats(np.ones((2, 2, 2)), np.ones((2, 2, 3)))


def test_different_frames_of_reference_are_an_error_naming_both():
    grid, dose = _block()
    a = _side("A", dose, grid, frame="1.2.3.1")
    b = _side("B", dose, grid, frame="1.2.3.2")
    with pytest.raises(InputError, match=r"1\.2\.3\.1.*1\.2\.3\.2"):
        compare(a, b, settings=CompareSettings(cross_model=False))


def test_identical_doses_pass_everything():
    grid, dose = _block()
    result = compare(_side("A", dose, grid), _side("B", dose, grid),
                     settings=CompareSettings(gamma=((1.0, 1.0),), cross_model=False))
    assert result.gamma[0].pass_rate_percent == 100.0
    assert result.stats.max_abs_gy == 0.0
    assert result.resampled == ()
    assert result.unit == "Gy(RBE)"


def test_mismatched_grids_are_resampled_onto_a_common_grid():
    # A linear field is reproduced exactly by trilinear interpolation: after resampling the two
    # doses agree wherever both grids cover.
    def field(grid):
        c = grid.voxel_centers_lps()
        return (20.0 + 0.1 * c[:, 0] - 0.05 * c[:, 1] + 0.02 * c[:, 2]).reshape(grid.shape)

    ga = DoseGrid((20, 22, 24), (2.0, 2.0, 2.0), (-20.0, -20.0, -20.0))
    gb = DoseGrid((14, 15, 16), (3.0, 3.0, 3.0), (-17.0, -19.0, -16.0))
    result = compare(_side("A", field(ga), ga), _side("B", field(gb), gb),
                     settings=CompareSettings(gamma=((1.0, 1.0),), threshold_percent=0.0,
                                              cross_model=False))
    assert result.grid.spacing_mm == (2.0, 2.0, 2.0)
    assert "B" in result.resampled
    assert np.abs(result.difference_gy).max() < 1e-3
    assert result.gamma[0].pass_rate_percent == 100.0
    assert any("resampled" in w for w in result.warnings)


def test_dvh_metric_differences_per_structure():
    patient = load_demo_patient()
    grid = DoseGrid.covering(grid_of(patient.ct), 4.0)
    ptv = patient.structure_set.get("PTV")
    rows = structure_rows(ptv.mask.to_dense(), grid_of(patient.ct), grid)
    a = np.zeros(grid.n_voxels, bool)
    a[rows] = True
    # 60 Gy two voxels beyond the PTV: its interpolated DVH samples all read 60 Gy
    a = np.where(binary_dilation(a.reshape(grid.shape), np.ones((3, 3, 3)), 2), 60.0, 0.0).astype(
        np.float32)
    frame = patient.ct.frame_of_reference_uid
    result = compare(_side("A", a, grid, frame), _side("B", 1.05 * a, grid, frame),
                     patient=patient,
                     settings=CompareSettings(prescription_gy=60.0, cross_model=False))
    by_name = {s.name: s for s in result.structures}
    p = by_name["PTV"]
    # the contours' volume is the mask's (isolines of it) to well within 1 %
    assert p.volume_cm3 == pytest.approx(ptv.volume_cm3(patient.ct.spacing_mm), rel=0.01)
    for k in ("d98", "d95", "d50", "d2", "mean", "max"):
        assert p.metrics_a[k] == pytest.approx(60.0)
        assert p.difference[k] == pytest.approx(3.0, rel=1e-5)
    assert p.metrics_a["v95"] == 1.0 and p.metrics_b["v95"] == 1.0
    assert p.colour_rgb == ptv.colour_rgb
    # DVHs share the bins: A drops to 0 above 60, B above 63.
    edges = p.dvh_a.dose_gy
    assert np.array_equal(edges, p.dvh_b.dose_gy)
    assert p.dvh_a.volume_fraction[np.searchsorted(edges, 61.0)] == 0.0
    assert p.dvh_b.volume_fraction[np.searchsorted(edges, 62.0)] == 1.0
    assert result.focus_name == "PTV centre"
    assert result.ct_hu is not None and result.ct_hu.shape == grid.shape
    # A 5 % increase against a global 3 % criterion fails in the flat interior of the PTV.
    assert result.gamma[0].pass_rate_percent < 100.0


def test_report_files_are_self_contained(tmp_path):
    patient = load_demo_patient()
    grid = DoseGrid.covering(grid_of(patient.ct), 6.0)
    centres = grid.voxel_centers_lps()
    dose = (60.0 * np.exp(-np.sum((centres - [27.0, 12.0, 10.0]) ** 2, axis=1) / 800.0)
            ).reshape(grid.shape).astype(np.float32)
    frame = patient.ct.frame_of_reference_uid
    result = compare(_side("A", dose, grid, frame), _side("B", 1.03 * dose, grid, frame),
                     patient=patient, settings=CompareSettings(cross_model=False))
    files = write_comparison_report(result, tmp_path / "out")
    assert [f.name for f in files] == ["report.json", "report.html"]
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [g["criteria"] for g in data["gamma"]] == ["3%/3mm", "2%/2mm"]
    assert [g["gamma_p95_capped"] for g in data["gamma"]] == [False, False]
    # B - A is at most 3 % of A's maximum: gamma at most 1.5 for 2 %, never the cap of 2.
    assert [(g["mean_gamma_capped"], g["voxels_at_cap"]) for g in data["gamma"]] == [
        (False, 0), (False, 0)]
    assert data["dose_difference"]["percent_of_reference_max"]["max_abs"] == pytest.approx(
        3.0, rel=1e-3)
    assert set(data["structures"]) == set(data["dvh"])
    html = (tmp_path / "out" / "report.html").read_text()
    # The identification block: patient name and ID, what each side is, the date.
    ident = html[html.index("<h1>"):html.index("<h2>")]
    assert "IonPlan, Demo Head (ID IONPLAN-DEMO-001)" in ident
    assert "A (reference)" in ident and "B (evaluated)" in ident
    assert f"{datetime.date.today():%Y-%m-%d}" in ident
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    images = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', html)
    captions = [alt for _, alt in images]
    for plane in ("axial", "coronal", "sagittal"):
        for column in ("A (Gy(RBE))", "B (Gy(RBE))", "B - A (Gy(RBE))", "gamma 3%/3mm",
                       "gamma 2%/2mm"):
            assert any(c.startswith(column) and plane in c for c in captions), (column, plane)
    for data64, _ in images:  # an independent decoder reads every image
        assert iio.imread(base64.b64decode(data64)).ndim == 3
    polylines = re.findall(r"<polyline [^>]*>", html)
    assert len(polylines) == 2 * len(result.structures)  # A solid and B dashed per structure
    assert sum("stroke-dasharray" in p for p in polylines) == len(result.structures)


def test_gamma_statistics_at_the_search_cap_are_reported_as_lower_bounds(tmp_path):
    """report.html reads "≥ 2.00" for the 95th percentile and "≥" before the mean, and says
    how many voxels reached the cap; report.json keeps the numbers and flags them (both read
    as plain values, the mean as the mean)."""
    grid, dose = _block(value=10.0)
    result = compare(_side("A", dose, grid), _side("B", 1.5 * dose, grid),
                     settings=CompareSettings(cross_model=False))
    write_comparison_report(result, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [(g["gamma_p95"], g["gamma_p95_capped"]) for g in data["gamma"]] == [(2.0, True)] * 2
    assert all(g["mean_gamma_capped"] and 0 < g["voxels_at_cap"] <= g["evaluated_voxels"]
               for g in data["gamma"])
    html = (tmp_path / "out" / "report.html").read_text()
    table = html[html.index("gamma 95th pct"):]
    note = table[table.index("</table>"):]
    table = table[:table.index("</table>")]
    assert table.count(">≥ 2.00</td>") == 2
    for g in data["gamma"]:
        assert f">≥ {g['mean_gamma']:.3g}</td>" in table
        assert f"{g['voxels_at_cap']} of {g['evaluated_voxels']} for {g['criteria']}" in note
    assert note.startswith("</table><p>≥: a lower bound. The search for gamma stops at 2 ")


def test_png_writer_round_trips_through_an_independent_decoder():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(7, 13, 3), dtype=np.uint8)
    assert np.array_equal(iio.imread(png_bytes(image)), image)
    with pytest.raises(InputError, match="PNG"):
        png_bytes(np.zeros((4, 4), np.uint8))


def test_colour_scales_end_points():
    rgb = colour_map(np.array([-5.0, 0.0, 5.0, 99.0]), -5.0, 5.0, "diff")
    assert tuple(rgb[1]) == (247, 247, 247)  # no difference is white
    assert rgb[0][2] > rgb[0][0] and rgb[2][0] > rgb[2][2]  # B < A blue, B > A red
    assert np.array_equal(rgb[3], rgb[2])  # clipped


def test_progress_and_cancel():
    grid, dose = _block()
    seen = []
    compare(_side("A", dose, grid), _side("B", dose * 1.01, grid),
            settings=CompareSettings(cross_model=False),
            progress=lambda f, stage: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(seen))
    token = CancelToken()
    token.cancel()
    with pytest.raises(OperationCancelled):
        compare(_side("A", dose, grid), _side("B", dose, grid),
                settings=CompareSettings(cross_model=False), cancel=token)


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": ((0.0, 3.0),)}, "dose criterion"), ({"gamma": ((3.0, -1.0),)}, "distance"),
    ({"gamma": ()}, "at least one"), ({"threshold_percent": 100.0}, "threshold"),
    ({"prescription_gy": -1.0}, "prescription")])
def test_bad_settings(kwargs, message):
    with pytest.raises(InputError, match=message):
        CompareSettings(**kwargs)


def test_api_compare_doses_takes_in_memory_sides():
    grid, dose = _block()
    result = api.compare_doses(_side("A", dose, grid), _side("B", dose, grid),
                               criteria=[(2.0, 2.0)], cross_model=False)
    assert [g.criteria.label for g in result.gamma] == ["2%/2mm"]


def _volume(summation: str, value: float = 3.0):
    from planning.dicom import DoseVolume

    grid, dose = _block(value=value)
    return DoseVolume(dose_gy=dose, grid=grid, dose_type="EFFECTIVE", units="GY",
                      comment="mMKM", summation_type=summation, frame_of_reference_uid=FRAME,
                      referenced_plan_uid="")


def test_every_side_is_a_whole_plan_dose():
    """Dose Summation Type: PLAN as it is; FRACTION times the fraction count of its plan (and
    says so), refused without one; a beam's dose is never compared as a plan's."""
    from planning.compare.sources import _side_of_volume, load_side
    from planning.plan import Prescription

    plan = load_side(_volume("PLAN", 60.0), label="A")
    assert float(plan.dose_gy.max()) == 60.0
    rx = Prescription(target="PTV", total_dose_gy_rbe=60.0, n_fractions=20)
    fraction = _side_of_volume(_volume("FRACTION"), "B", prescription=rx)
    assert float(fraction.dose_gy.max()) == pytest.approx(60.0)
    assert "x 20 fractions" in fraction.description
    with pytest.raises(InputError, match=r"FRACTION .* number of fractions"):
        load_side(_volume("FRACTION"), label="B")
    with pytest.raises(InputError, match="Summation Type BEAM: only whole-plan"):
        load_side(_volume("BEAM"), label="B")


def test_a_plan_under_the_physical_model_is_a_physical_side():
    from types import SimpleNamespace

    from planning.compare.sources import _side_of_result
    from planning.rbe import MkmModel, PhysicalDose

    patient = load_demo_patient()
    grid, dose = _block()
    for model, kind in ((PhysicalDose(), "PHYSICAL"), (MkmModel(), "EFFECTIVE")):
        result = SimpleNamespace(
            model=model, rbe_dose_gy_rbe=dose, physical_dose_gy=dose, dose_grid=grid,
            report={"rbe_model": model.describe()}, patient=patient,
            plan=SimpleNamespace(label="P", rbe_model=model.describe(),
                                 rbe_label=model.describe(), prescription=None),
            structure_tissues=(), exchange=None)
        assert _side_of_result(result, "A", "rbe").dose_type == kind  # type: ignore[arg-type]


def test_a_grid_that_covers_part_of_the_other_is_reported():
    """B's grid covers the half x >= 28 mm of A's dose: half of A's dose is not compared, and
    the warning says how much (it said only that A was resampled)."""
    grid_a, dose_a = _block()  # dose in x 14-40 mm (voxels 7..20 of 2 mm)
    grid_b = DoseGrid((20, 24, 14), (2.0, 2.0, 2.0), (27.0, 0.0, 0.0))  # x 27-53 mm
    dose_b = np.full(grid_b.shape, 10.0, np.float32)
    result = compare(_side("A", dose_a, grid_a), _side("B", dose_b, grid_b),
                     settings=CompareSettings(cross_model=False))
    (note,) = [w for w in result.warnings if "outside B's grid" in w]
    hot = int(np.count_nonzero(dose_a))
    outside = int(np.count_nonzero(dose_a[:, :, :14]))  # x <= 26 mm: beyond 27 - 1 mm
    assert f"({outside} of {hot})" in note and outside == hot // 2
    assert not any("outside A's grid" in w for w in result.warnings)  # B's dose is all inside


def test_doses_of_two_rbe_models_are_named_in_a_warning():
    grid, dose = _block()
    result = compare(_side("A", dose, grid, description="mMKM HSG a0=0.172"),
                     _side("B", dose * 1.1, grid, description="LEM I chordoma ax=0.1"),
                     settings=CompareSettings(cross_model=False))
    assert any("A's RBE-weighted dose is mMKM and B's LEM I" in w for w in result.warnings)
    same = compare(_side("A", dose, grid, description="mMKM HSG"),
                   _side("B", dose, grid, description="mMKM HSG"),
                   settings=CompareSettings(cross_model=False))
    assert not any("RBE-weighted dose is" in w for w in same.warnings)
    # One plan under both models (the exchange view, a recalculation under the other model)
    # is compared on purpose, but its gamma read as a delivery failure (review): the warning
    # says what the comparison measures.
    from types import SimpleNamespace

    plan = SimpleNamespace(label="P", prescription=None)
    exchange = compare(_side("A", dose, grid, description="mMKM HSG", plan=plan),
                       _side("B", dose * 1.1, grid, description="LEM I chordoma", plan=plan),
                       settings=CompareSettings(cross_model=False))
    assert not any("RBE-weighted dose is" in w for w in exchange.warnings)
    assert ("A and B are one plan's RBE-weighted dose under two models (A mMKM, B LEM I): "
            "gamma and B - A measure the difference between the models, not between "
            "deliveries") in exchange.warnings


def test_global_gamma_is_normalised_to_the_reference_maximum_on_its_own_grid():
    # A's peak (12 Gy) sits at a 3 mm voxel centre between the points of the common 2 mm grid,
    # where trilinear resampling lowers it; the global criterion is a percentage of 12 Gy.
    ga = DoseGrid((10, 10, 10), (3.0, 3.0, 3.0), (0.0, 0.0, 0.0))
    a = np.full(ga.shape, 10.0, np.float32)
    a[5, 5, 5] = 12.0
    gb = DoseGrid((15, 15, 15), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    b = np.full(gb.shape, 10.0, np.float32)
    result = compare(_side("A", a, ga), _side("B", b, gb),
                     settings=CompareSettings(gamma=((3.0, 3.0),), threshold_percent=10.0,
                                              cross_model=False))
    assert "A" in result.resampled
    assert result.gamma[0].normalization_dose_gy == pytest.approx(12.0)
    assert float(np.max(result.reference_gy)) < 12.0  # the resampled peak


def test_a_side_summary_names_the_kind_model_plan_and_source():
    """The line report.json and report.html give each side (it was the Dose Comment alone)."""
    from types import SimpleNamespace

    grid, dose = _block()
    plan = SimpleNamespace(label="Plan 1", rbe_model="mMKM HSG Fclin=2.41",
                           rbe_label="mMKM HSG Fclin=2.41", prescription=None)
    assert _side("A", dose, grid, description="LEM I chordoma ax=0.1", plan=plan).summary() == (
        "RBE-weighted dose, LEM I chordoma ax=0.1; plan 'Plan 1'; dose A")
    assert _side("A", dose, grid, dose_type="PHYSICAL", description="physical dose",
                 plan=plan).summary() == (
        "physical dose; plan 'Plan 1' (its RBE model: mMKM HSG Fclin=2.41); dose A")
    assert _side("B", dose, grid).summary() == ("RBE-weighted dose, model not named; plan "
                                                "unknown; dose B")


def test_effective_rbe_is_the_rbe_weighted_over_the_physical_dose_where_there_is_dose():
    from planning.compare.dose_ratio import effective_rbe

    physical = np.array([0.0, 0.3, 0.5, 1.0, 2.0, 4.0]).reshape(1, 1, 6)
    rbe = np.array([0.0, 1.5, 1.5, 2.5, 4.0, 6.0]).reshape(1, 1, 6)
    ratio, st = effective_rbe(physical, rbe, threshold_percent=10.0)  # 10 % of 4 Gy: 0.4 Gy
    kept = [3.0, 2.5, 2.0, 1.5]  # 1.5/0.5, 2.5/1, 4/2, 6/4
    np.testing.assert_allclose(ratio[0, 0, 2:], kept, rtol=1e-6)
    assert np.all(np.isnan(ratio[0, 0, :2]))
    assert st.voxels == 4 and st.physical_max_gy == 4.0
    assert st.mean == pytest.approx(2.25) and st.minimum == 1.5 and st.maximum == 3.0
    assert st.sd == pytest.approx(np.sqrt(np.mean((np.array(kept) - 2.25) ** 2)))
    assert st.percentile(50.0) == pytest.approx(2.25)
    assert st.dose_weighted_mean == pytest.approx(14.0 / 7.5)
    with pytest.raises(InputError, match="physical dose is zero everywhere"):
        effective_rbe(np.zeros((1, 1, 2)), np.ones((1, 1, 2)))


def _mixed_doses():
    """The demo patient, a physical dose of 4 Gy in the grid's middle half (each axis) and 10
    Gy(RBE) there (RBE 2.5)."""
    patient = load_demo_patient()
    grid = DoseGrid.covering(grid_of(patient.ct), 8.0)
    physical = np.zeros(grid.shape, np.float32)
    middle = tuple(slice(n // 4, n - n // 4) for n in grid.shape)
    physical[middle] = 4.0
    return patient, grid, physical, 2.5 * physical


def test_a_physical_and_an_rbe_weighted_dose_have_no_gamma_and_no_difference_but_a_ratio():
    """A physical dose (Gy) against an RBE-weighted one (Gy(RBE)): gamma was computed (about
    0 % pass) and B - A reported as a dose difference. Neither is computed now; the report
    says why, the ratio B / A is the effective RBE, and the DVH metrics stay, each side in
    its unit, with B / A for B - A and V95 of the RBE-weighted side only."""
    from planning.compare.html_report import render_html

    patient, grid, physical, weighted = _mixed_doses()
    frame = patient.ct.frame_of_reference_uid
    result = compare(_side("A", physical, grid, frame, dose_type="PHYSICAL"),
                     _side("B", weighted, grid, frame), patient=patient,
                     settings=CompareSettings(gamma=((3.0, 3.0),), prescription_gy=10.0,
                                              cross_model=False))
    assert (result.unit_a, result.unit_b, result.unit) == ("Gy", "Gy(RBE)", "Gy vs Gy(RBE)")
    reason = "A is physical dose (Gy), B is RBE-weighted dose (Gy(RBE))"
    assert result.gamma == () and result.gamma_skipped_reason == reason
    assert result.difference_gy is None and result.stats is None
    assert result.rbe_ratio_text == "B / A"
    shown = physical >= 0.4
    np.testing.assert_allclose(result.rbe_ratio[shown], 2.5, rtol=1e-6)
    assert np.all(np.isnan(result.rbe_ratio[~shown]))
    r = result.rbe_ratio_stats
    assert r.voxels == int(np.count_nonzero(shown))
    assert (r.percentile(50.0), r.dose_weighted_mean) == pytest.approx((2.5, 2.5))
    assert ("a dose difference or gamma index between a physical (A) and an RBE-weighted dose "
            "(B) has no clinical meaning: neither is computed; B / A is reported, their "
            "effective RBE if both are doses of one plan (not known here)") in result.warnings
    assert "gamma" not in result.timings_s

    report = result.to_report()
    assert report["gamma"] == [] and report["gamma_skipped_reason"] == reason
    assert report["dose_difference"] is None
    assert report["dose_difference_skipped_reason"] == reason
    rbe = report["effective_rbe"]
    assert rbe["ratio"] == "B / A" and rbe["p50"] == pytest.approx(2.5)
    assert rbe["voxels"] == r.voxels and rbe["physical_max_gy"] == 4.0
    dosed = [s for s in report["structures"].values() if s["a"]["d50"] > 0]
    assert dosed
    for s in report["structures"].values():
        assert all(v is None for v in s["b_minus_a"].values())
        assert s["a"]["v95"] is None  # a Gy(RBE) prescription is not the physical dose's
        assert s["b"]["v95"] is not None
    for s in dosed:
        for k in ("d98", "d95", "d50", "d2", "mean", "max"):
            if s["a"][k] > 0:
                assert s["b_over_a"][k] == pytest.approx(2.5, rel=1e-5), k
        assert s["b_over_a"]["v95"] is None

    html = render_html(result)
    for text in (f"<b>Gamma not evaluated</b>: {reason}", f"Gamma not evaluated: {reason}. "
                 "A gamma index between two quantities has no clinical meaning",
                 "A (Gy), axial", "B (Gy(RBE)), axial", "effective RBE B / A, axial",
                 "A (Gy), shown above 10 % of its max", "B (Gy(RBE)), shown above 10 % of "
                 "its max", "<h2>Effective RBE (B / A)</h2>", ">10 Gy(RBE)</td>", ">4 Gy</td>",
                 "D95 B/A",
                 "dose (A solid: Gy, B dashed: Gy(RBE))"):
        assert text in html, text
    for text in ("pass rate", "B - A (", "gamma 3%/3mm", "D95 B-A"):
        assert text not in html, text


def test_the_effective_rbe_of_an_rbe_weighted_a_and_a_physical_b_is_a_over_b():
    """The ratio is always RBE-weighted over physical dose (an RBE, not its inverse)."""
    patient, grid, physical, weighted = _mixed_doses()
    frame = patient.ct.frame_of_reference_uid
    result = compare(_side("A", weighted, grid, frame), _side("B", physical, grid, frame,
                                                                 dose_type="PHYSICAL"),
                     settings=CompareSettings(cross_model=False))
    assert result.rbe_ratio_text == "A / B" and result.gamma == ()
    assert result.gamma_skipped_reason == ("A is RBE-weighted dose (Gy(RBE)), B is physical "
                                           "dose (Gy)")
    assert result.rbe_ratio_stats.percentile(50.0) == pytest.approx(2.5)


def test_a_side_prescription_is_read_only_against_a_dose_of_its_unit():
    """A plan made under the physical-dose model (prescribed 4 Gy) against its recalculation
    under an RBE model: the 4 Gy was read as 4 Gy(RBE), the RBE-weighted side's V95 and
    isodoses measured against it (compare/sources.py ignored report.json's unit). Two physical
    doses of such a plan got no V95 at all; now they are read against its 4 Gy."""
    from planning.plan import Prescription

    patient, grid, physical, weighted = _mixed_doses()  # 4 Gy; 10 Gy(RBE) where dosed
    frame = patient.ct.frame_of_reference_uid
    rx = Prescription("PTV", 4.0, 1)
    plain = CompareSettings(cross_model=False)
    mixed = compare(_side("A", physical, grid, frame, dose_type="PHYSICAL", prescription=rx,
                          prescription_unit="Gy"),
                    _side("B", weighted, grid, frame, prescription=rx, prescription_unit="Gy"),
                    patient=patient, settings=plain).to_report()
    assert mixed["b"]["prescription"]["unit"] == "Gy"
    assert all(s["b"]["v95"] is None for s in mixed["structures"].values())
    physical_pair = compare(
        _side("A", physical, grid, frame, dose_type="PHYSICAL", prescription=rx,
              prescription_unit="Gy"),
        _side("B", 0.9 * physical, grid, frame, dose_type="PHYSICAL"),
        patient=patient, settings=plain).to_report()
    assert physical_pair["dose_difference"]["prescription_gy"] == 4.0
    dosed = [s for s in physical_pair["structures"].values() if s["a"]["d50"] >= 4.0]
    assert dosed and all(s["a"]["v95"] == 1.0 and s["b"]["v95"] == 0.0 for s in dosed)
    # A prescription of no recorded unit is a carbon plan's: Gy(RBE).
    legacy = compare(_side("A", weighted, grid, frame, prescription=Prescription("PTV", 10.0, 1)),
                     _side("B", weighted, grid, frame), patient=patient,
                     settings=plain).to_report()
    assert legacy["dose_difference"]["prescription_gy"] == 10.0


def test_a_side_prescription_is_read_only_against_a_dose_of_its_model():
    """An mMKM plan (57.6 Gy(RBE)) against its recalculation under LEM I: B's V95 was the
    share of B's LEM I dose above 95 % of the mMKM prescription (review: 0.99 for the PTV).
    The same Gy(RBE) number is another physical dose under another model: B has no V95, and
    the report says why. Two doses under the plan's model keep V95 on both sides."""
    from planning.compare.html_report import render_html
    from planning.plan import Prescription
    from planning.rbe import LemModel, MkmModel, tissue_by_name

    patient, grid, _, weighted = _mixed_doses()  # 10 Gy(RBE) where dosed
    frame = patient.ct.frame_of_reference_uid
    rx = Prescription("PTV", 10.0, 1)
    mkm, lem = MkmModel().describe(), LemModel(tissue_by_name("chordoma")).describe()
    plain = CompareSettings(cross_model=False)

    def side(label, dose, model):
        return _side(label, dose, grid, frame, description=model, prescription=rx,
                     prescription_model=mkm)

    other = compare(side("A", weighted, mkm), side("B", weighted, lem), patient=patient,
                    settings=plain)
    report = other.to_report()
    dosed = [s for s in report["structures"].values() if s["a"]["d50"] >= 10.0]
    assert dosed and all(s["a"]["v95"] == 1.0 for s in dosed)
    assert all(s["b"]["v95"] is None for s in report["structures"].values())
    assert report["v95_note"] == (
        "No V95 of B: it is relative to the prescription, 10 Gy(RBE) under mMKM, and B's dose "
        "is under LEM I chordoma, averaged: the same Gy(RBE) number is a different physical "
        "dose under another model.")
    assert report["dose_difference"]["prescription_gy"] == 10.0
    assert report["v95_note"] in html.unescape(render_html(other))
    # Swapped: A is the other model's dose, B the plan's.
    swapped = compare(side("A", weighted, lem), side("B", weighted, mkm), patient=patient,
                      settings=plain).to_report()
    assert all(s["a"]["v95"] is None for s in swapped["structures"].values())
    assert all(swapped["structures"][name]["b"]["v95"] == 1.0
               for name, s in report["structures"].items() if s["a"]["d50"] >= 10.0)
    assert swapped["v95_note"].startswith("No V95 of A: ")
    # Both under the plan's model: V95 of both, no note.
    same = compare(side("A", weighted, mkm), side("B", 0.9 * weighted, mkm), patient=patient,
                   settings=plain).to_report()
    assert all(s["a"]["v95"] == 1.0 and s["b"]["v95"] == 0.0
               for s in same["structures"].values() if s["a"]["d50"] >= 10.0)
    assert "v95_note" not in same


def test_doses_of_one_quantity_report_no_skipped_gamma_and_metric_ratios():
    grid, dose = _block()
    same = compare(_side("A", dose, grid, dose_type="PHYSICAL"),
                   _side("B", 1.1 * dose, grid, dose_type="PHYSICAL"),
                   settings=CompareSettings(gamma=((3.0, 3.0),), cross_model=False))
    assert (same.unit_a, same.unit_b, same.unit) == ("Gy", "Gy", "Gy")
    assert not same.mixed_units and same.rbe_ratio is None and len(same.gamma) == 1
    report = same.to_report()
    assert report["gamma_skipped_reason"] is None and report["effective_rbe"] is None
    assert report["dose_difference"]["gy"]["max_abs"] == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("given", ["file", "folder"])
def test_a_plan_beside_the_dose_that_is_no_dicom_file_is_named_not_ignored(tmp_path, given):
    """The RTPLAN.dcm beside a dose was read with pydicom directly and, being no DICOM file,
    silently ignored: the comparison said "neither side is a plan (RTPLAN.dcm) with a CT".
    It is read as the importers read files and their message is the side's plan problem (a
    side with a plan problem and no report.json takes no prescription from a plan it lacks)."""
    from planning.compare.sources import load_side
    from planning.dicom import export_rt_dose
    from planning.rbe import MkmModel

    patient = load_demo_patient()
    grid = DoseGrid.covering(grid_of(patient.ct), 8.0)
    export_rt_dose(np.full(grid.shape, 2.0, np.float32), grid, patient,
                   tmp_path / "RTDOSE_RBE.dcm", dose_type="EFFECTIVE", model=MkmModel(),
                   referenced_plan_uid="1.2.826.0.1.3680043.8.498.7")
    plan = tmp_path / "RTPLAN.dcm"
    plan.write_text("plan notes, not a plan\n")
    spec = tmp_path / "RTDOSE_RBE.dcm" if given == "file" else tmp_path
    side = load_side(spec, label="A")
    assert side.plan is None
    assert side.plan_problem == (f"{plan}: cannot read the RT Ion Plan: not a DICOM file (no "
                                 "DICOM preamble and 'DICM' header)")
    result = compare(side, side, settings=CompareSettings(gamma=((3.0, 3.0),)))
    assert f"cross-model view of A not computed: {side.plan_problem}" in result.warnings


def test_a_folder_side_takes_its_prescription_unit_from_report_json(tmp_path):
    """An RBE-weighted dose in the folder of a plan prescribed in Gy (physical-dose model,
    report.json's prescription unit) does not take that prescription; one of a report written
    before the unit was recorded is read as Gy(RBE)."""
    from planning.compare.sources import load_side
    from planning.dicom import export_rt_dose
    from planning.rbe import MkmModel

    patient = load_demo_patient()
    grid = DoseGrid.covering(grid_of(patient.ct), 8.0)
    export_rt_dose(np.full(grid.shape, 2.0, np.float32), grid, patient,
                   tmp_path / "RTDOSE_RBE.dcm", dose_type="EFFECTIVE", model=MkmModel(),
                   referenced_plan_uid="1.2.826.0.1.3680043.8.498.7")
    rx = {"target": "PTV", "total_dose_gy_rbe": 4.0, "n_fractions": 1}
    for unit, taken in (("Gy", False), ("Gy(RBE)", True), (None, True)):
        record = rx if unit is None else {**rx, "unit": unit}
        (tmp_path / "report.json").write_text(json.dumps({"prescription": record}))
        side = load_side(tmp_path, label="A")
        assert side.prescription is not None and side.prescription.total_dose_gy_rbe == 4.0
        assert (side.dose_prescription() is not None) is taken, unit
    # An mMKM dose in the folder of a LEM I plan's recalculation: not of that prescription.
    for model, taken in (("LEM I chordoma, averaged", False), ("mMKM", True), (None, True)):
        record = {**rx, "unit": "Gy(RBE)", **({} if model is None else {"model": model})}
        (tmp_path / "report.json").write_text(json.dumps({"prescription": record}))
        side = load_side(tmp_path, label="A")
        assert (side.dose_prescription() is not None) is taken, model


def test_the_structures_table_shows_float_noise_as_zero():
    """report.html gave the body's D50 as "1.02e-08" and its difference as "5.00e-08"
    (review): float noise of the dose engine, shown as data; the table reads 0 there, and
    keeps the digits of real doses."""
    from types import SimpleNamespace

    from planning.compare.dvh_compare import METRICS, StructureComparison
    from planning.compare.html_report import _structures_table
    from planning.evaluation import cumulative_dvh

    a = dict.fromkeys(METRICS, 0.0) | {"d50": 1.0248e-08, "d2": 19.00823, "v95": None}
    b = dict.fromkeys(METRICS, 0.0) | {"d50": 6.0208e-08, "d2": 31.49302, "d98": -3e-9,
                                       "v95": None}
    dvh = cumulative_dvh("External", [0.0, 1.0], 1.0)
    body = StructureComparison("External", "EXTERNAL", (0, 255, 0), 2939.465, 100, a, b, dvh,
                               dvh)
    html = _structures_table(SimpleNamespace(structures=[body], unit="Gy(RBE)",
                                             unit_a="Gy(RBE)", unit_b="Gy(RBE)",
                                             mixed_units=False, v95_note=""))
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells[0] == "External" and cells[1] == "2939.5"  # was "2.94e+03"
    d98, d50, d2 = (cells[2 + 3 * k:5 + 3 * k] for k in (0, 2, 3))
    assert d98 == ["0", "0", "0"] and d50 == ["0", "0", "0"]  # not "1.02e-08", "-3.00e-09"
    assert d2 == ["19", "31.5", "12.5"]
    assert "e-0" not in html


def test_each_sides_prescription_names_its_model_as_a_plans_report_does():
    """A compare job's summary rows had no prescription_model: the sides' prescriptions in
    report.json named no model (review). Each names it as a plan's report.json does, its
    short name, and the batch reads side A's."""
    from planning.batch import _context
    from planning.plan import Prescription
    from planning.rbe import MkmModel

    grid, dose = _block()
    a = _side("A", dose, grid, prescription=Prescription("PTV", 10.0, 5),
              prescription_unit="Gy(RBE)", prescription_model=MkmModel().describe())
    # A side whose plan could not be read has the short name its report.json recorded.
    b = _side("B", dose, grid, prescription=Prescription("PTV", 10.0, 5),
              prescription_unit="Gy(RBE)", prescription_model="LEM I chordoma, averaged")
    report = compare(a, b, settings=CompareSettings(gamma=((3.0, 3.0),),
                                                    cross_model=False)).to_report()
    assert report["a"]["prescription"]["model"] == "mMKM"
    assert report["b"]["prescription"]["model"] == "LEM I chordoma, averaged"
    assert _context(report)["prescription_model"] == "mMKM"
    unnamed = compare(_side("A", dose, grid, prescription=Prescription("PTV", 10.0, 5)), b,
                      settings=CompareSettings(gamma=((3.0, 3.0),), cross_model=False))
    assert unnamed.to_report()["a"]["prescription"]["model"] is None


def test_a_cross_model_view_not_asked_for_says_so(tmp_path):
    """With --no-cross-model, report.html said "Not computed: neither side is a plan
    (RTPLAN.dcm) with its CT" of two plans with their CT (review). It says it was not asked
    for, and report.json gives why there is no view, as it does for gamma."""
    from planning.compare.comparison import CROSS_MODEL_NO_PLAN, CROSS_MODEL_NOT_ASKED

    grid, dose = _block()
    a, b = _side("A", dose, grid), _side("B", dose, grid)
    for asked, reason in ((False, CROSS_MODEL_NOT_ASKED), (True, CROSS_MODEL_NO_PLAN)):
        result = compare(a, b, settings=CompareSettings(gamma=((3.0, 3.0),),
                                                        cross_model=asked))
        write_comparison_report(result, tmp_path / str(asked))
        report = json.loads((tmp_path / str(asked) / "report.json").read_text())
        assert report["cross_model"] == [] and report["cross_model_skipped_reason"] == reason
        page = html.unescape((tmp_path / str(asked) / "report.html").read_text())
        assert f"<p>Not computed: {reason}.</p>" in page
    assert "--no-cross-model" in CROSS_MODEL_NOT_ASKED
