"""The GUI's view-model pieces that need no window: plan-setup parsing, recent folders,
the session, and per-structure dose statistics (planning.structure_dose)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from app.plan_setup import BeamSetup, parse_beam, parse_objective, parse_plan_setup
from app.recent import RecentFolders
from app.session import PER_STRUCTURE_NAME, PlanEntry, Session, short_model_name
from planning.dicom import load_demo_patient
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.exchange import ExchangeView
from planning.optimization import Objective
from planning.planner import grid_of
from planning.rbe import LemModel, MkmModel, PhysicalDose, Tissue, tissue_by_name
from planning.rbe.record import model_label
from planning.structure_dose import structure_dose_statistics


def _setup(**over):
    values = dict(target="PTV", dose_text="57.6", fractions_text="16",
                  beams=[BeamSetup(90.0), BeamSetup(270.0)], rbe_label="LEM I",
                  rbe_value_text="", tissue_choice="chordoma", spot_spacing_text="5",
                  grid_text="4", device_label="CPU", exchange=True,
                  objectives=[Objective("PTV", "squared_deviation", 57.6, 100.0)])
    values.update(over)
    return parse_plan_setup(**values)


def test_plan_setup_reads_a_valid_form():
    s = _setup()
    assert (s.rbe, s.tissue, s.device, s.fractions) == ("lem1", "chordoma", "cpu", 16)
    assert s.dose_per_fraction_gy_rbe == pytest.approx(3.6)
    assert "LEM I" in s.summary() and "G90" in s.summary()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("dose_text", "abc", "prescribed dose"),
    ("dose_text", "-3", "prescribed dose"),
    ("fractions_text", "2.5", "whole number"),
    ("fractions_text", "0", "number of fractions"),
    ("spot_spacing_text", "0.1", "spot spacing"),
    ("grid_text", "nan", "dose grid"),
    ("beams", [], "at least one beam"),
    ("target", "", "target"),
    ("rbe_label", "LEM II", "unknown RBE model"),
])
def test_plan_setup_names_the_bad_field(field, value, message):
    with pytest.raises(InputError, match=message):
        _setup(**{field: value})


@pytest.mark.parametrize(("over", "message"), [
    ({"tissue_choice": "xyz"}, "LEM I tissue: 'xyz' is not one of chordoma, hsg, v79, custom"),
    ({"tissue_choice": "custom", "tissue_custom_texts": ("0.2", "abc", "10")},
     r"custom tissue beta_x \(1/Gy\^2\): 'abc' is not a number"),
    ({"tissue_choice": "custom", "tissue_custom_texts": ("0.2", "0.05", "0")},
     r"custom tissue D_t \(Gy\) must lie between 0.5 and 200"),
    ({"tissue_choice": "custom", "tissue_custom_texts": ("-1", "0.05", "10")},
     "alpha_x"),
    ({"structures": ["CTV", "Brainstem"]}, "target: the patient has no structure named 'PTV'"),
    ({"structures": ["PTV"], "objectives": [Objective("PTV", "squared_deviation", 57.6),
                                            Objective("Lens", "max_dose", 5.0)]},
     "objective 2: the patient has no structure named 'Lens'"),
    ({"structures": ["PTV"], "objectives": [Objective("PTV", "squared_deviation", 57.6),
                                            Objective("CTV ring 0-5 mm", "max_dose", 5.0)]},
     "objective 2: the patient has no structure named 'CTV ring 0-5 mm'"),
    ({"device_label": "TPU"}, "device: 'TPU'"),
])
def test_every_field_is_checked_before_any_work(over, message):
    """The issue's case: a tissue typed as "xyz" with the exchange view on was found only
    after 50 s of computing. Every value is now checked when Compute is pressed."""
    with pytest.raises(InputError, match=message):
        _setup(**over)


def test_tissue_is_checked_for_the_exchange_view_under_mkm_too():
    with pytest.raises(InputError, match="LEM I tissue"):
        _setup(rbe_label="mMKM (NIRS clinical dose)", tissue_choice="xyz")
    assert _setup(rbe_label="mMKM (NIRS clinical dose)", tissue_choice="xyz",
                  exchange=False).tissue is None


def test_objectives_may_name_a_ring_around_a_structure():
    s = _setup(structures=["PTV", "Brainstem"],
               objectives=[Objective("PTV", "squared_deviation", 57.6),
                           Objective("ptv ring 0-5 mm", "max_dose", 50.0)])
    assert [o.structure for o in s.objectives] == ["PTV", "ptv ring 0-5 mm"]


def test_rapid_scheme_is_a_choice_too():
    from planning.rbe import parse_tissue

    s = _setup(tissue_choice="hsg", rapid_scheme="central")
    assert s.tissue == "hsg:central" and parse_tissue(s.tissue).rapid_scheme == "central"
    assert _setup(tissue_choice="custom", tissue_custom_texts=("0.1", "0.05", "30"),
                  rapid_scheme="central").tissue == "0.1,0.05,30.0:central"
    assert _setup(tissue_choice="hsg", rapid_scheme="averaged").tissue == "hsg"  # the default
    with pytest.raises(InputError, match="LEM I rapid scheme: 'fast'"):
        _setup(rapid_scheme="fast")


def test_custom_tissue_gives_its_three_numbers_exactly():
    s = _setup(tissue_choice="custom", tissue_custom_texts=("0.1", "0.05", "30"))
    assert s.tissue == "0.1,0.05,30.0"
    from planning.rbe import parse_tissue

    t = parse_tissue(s.tissue)
    assert (t.alpha_x_gy, t.beta_x_gy2, t.d_t_gy) == (0.1, 0.05, 30.0)
    assert _setup(tissue_choice="hsg").tissue == "hsg"


def test_constant_rbe_needs_its_value_and_the_target_an_objective():
    with pytest.raises(InputError, match="constant RBE"):
        _setup(rbe_label="Constant RBE", rbe_value_text="")
    assert _setup(rbe_label="Constant RBE", rbe_value_text="3").rbe_value == 3.0
    with pytest.raises(InputError, match="has no objective"):
        _setup(objectives=[Objective("Brainstem", "max_dose", 50.0)])


def test_beam_and_objective_rows():
    assert parse_beam("-90", "", 0) == BeamSetup(270.0, 0.0)
    with pytest.raises(InputError, match="beam 2 gantry"):
        parse_beam("x", "0", 1)
    o = parse_objective("Brainstem", "max_dvh", "50", "10", "5", 0)
    assert o.volume_fraction == pytest.approx(0.05)
    with pytest.raises(InputError, match="volume"):
        parse_objective("Brainstem", "max_dvh", "50", "10", "", 0)
    with pytest.raises(InputError, match="weight"):
        parse_objective("Brainstem", "max_dose", "50", "0", "", 0)


def test_form_messages_give_the_unit_of_the_chosen_model():
    """Under the physical model the doses of the form are in Gy: its messages said Gy(RBE)
    (GUI review)."""
    with pytest.raises(InputError, match=r"^prescribed dose \(Gy, whole plan\) must lie "
                                         r"between 0.01 and 200, got -1$"):
        _setup(rbe_label="Physical dose", dose_text="-1")
    with pytest.raises(InputError, match=r"^prescribed dose \(Gy\(RBE\), whole plan\)"):
        _setup(dose_text="-1")
    with pytest.raises(InputError, match=r"asks for 50 Gy but the prescription is 57.6 Gy: "):
        _setup(rbe_label="Physical dose",
               objectives=[Objective("PTV", "squared_deviation", 50.0, 100.0)])
    with pytest.raises(InputError, match=r"asks for 50 Gy\(RBE\) but the prescription is "
                                         r"57.6 Gy\(RBE\): "):
        _setup(objectives=[Objective("PTV", "squared_deviation", 50.0, 100.0)])
    with pytest.raises(InputError, match=r"^objective 2 \(Brainstem\) dose \(Gy, whole "
                                         r"plan\) must lie between 0 and 1000, got 2000$"):
        parse_objective("Brainstem", "max_dose", "2000", "1", "", 1, "Gy")
    with pytest.raises(InputError, match=r"dose \(Gy\(RBE\), whole plan\)"):
        parse_objective("Brainstem", "max_dose", "2000", "1", "", 1)


def test_the_ring_note_says_what_each_default_ring_is_for():
    from app.plan_setup import default_rings_note

    assert default_rings_note(["PTV", "Brainstem"]) == ""
    note = default_rings_note(["PTV", "ptv ring 15-30 mm"])
    assert note.startswith("Default rings around the target: 0-5 mm max 100 %: no hot spot")
    assert ("15-30 mm max 105 %: a cap on hot spots outside the target (the body maximum), "
            "not a step of the fall-off.") in note


def test_recent_folders_most_recent_first_without_duplicates(tmp_path):
    recent = RecentFolders(tmp_path / "data", max_entries=3)
    assert recent.load() == []
    for name in ("a", "b", "c", "a", "d"):
        (tmp_path / name).mkdir(exist_ok=True)
        recent.add(tmp_path / name)
    assert recent.load() == [str((tmp_path / n).resolve()) for n in ("d", "a", "c")]
    # a damaged file is ignored, not fatal
    recent.path.write_text("{not json")
    assert recent.load() == []
    recent.path.write_text(json.dumps({"a": 1}))
    assert recent.load() == []


def test_session_drops_plans_of_the_previous_patient():
    session = Session()
    events: list[str] = []
    session.subscribe(events.append)
    patient = load_demo_patient()
    session.set_patient(patient, "demo patient")
    assert events == ["patient", "plans"] and session.plans == []
    with pytest.raises(KeyError):
        session.plan("Plan 1")
    assert session.latest_plan is None


def test_short_model_names():
    assert short_model_name("mMKM HSG a0=0.172 b=0.0615 rd=0.32um") == "mMKM"
    assert short_model_name("LEM I chordoma ax=0.1 bx=0.05") == "LEM I chordoma, averaged"
    assert short_model_name(LemModel(tissue_by_name("hsg", "central")).describe()) == (
        "LEM I hsg, central")
    assert short_model_name(LemModel().describe()) == "LEM I chordoma, averaged"
    assert short_model_name("constant RBE 3") == "constant RBE 3"
    # LEM I with tissues per structure: every tissue stays in the short name.
    assert short_model_name(
        "LEM I PTV=chordoma Brainstem=user(0.313,0.0615,8) elsewhere hsg rapid=central "
        "ax=0.313 bx=0.0615 Dt=7.5Gy Rn=5um") == (
        "LEM I PTV=chordoma Brainstem=user(0.313,0.0615,8), elsewhere hsg, central")


def test_the_dose_layer_names_tissues_per_structure_from_the_result():
    """The layer's model name comes from the plan's tissues per structure, not from the words
    of its description."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    plan = SimpleNamespace(prescription=SimpleNamespace(total_dose_gy_rbe=60.0), beams=(),
                           rbe_model="LEM I chordoma ax=0.1 bx=0.05")
    for tissues, expected in (((("PTV", Tissue("chordoma", 0.1, 0.05, 30.0)),), PER_STRUCTURE_NAME),
                              ((), "LEM I chordoma, averaged")):
        result = SimpleNamespace(
            plan=plan, report={"rbe_model": "LEM I chordoma ax=0.1 bx=0.05"}, dose_grid=grid,
            rbe_dose_gy_rbe=cube, physical_dose_gy=cube, letd_kev_um=cube, rbe=cube,
            tissue_labels=None, beam_physical_dose_gy=(), exchange=None,
            structure_tissues=tissues, model=LemModel(Tissue("chordoma", 0.1, 0.05, 30.0)))
        layer = PlanEntry("Plan 1", result, "").layers()[0]  # type: ignore[arg-type]
        assert layer.label == f"RBE-weighted dose ({expected})"


def test_a_dose_with_tissues_per_structure_lists_them_below_its_short_name():
    """The chooser's short name (LEM I, tissues per structure) says not which tissue each
    structure has: the layer's description (the Dose tab's line under the chooser) lists
    them with their rapid schemes, for the plan's dose, its worst cases and an exchange
    view's LEM I side; a dose with one tissue has no such line."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    tissues = (("PTV", tissue_by_name("hsg", "central")), ("Brain stem", tissue_by_name("hsg")))
    model = LemModel(tissue_by_name("chordoma"))
    expected = ("LEM I tissues: PTV hsg (central), Brain stem hsg (averaged); elsewhere "
                "chordoma (averaged)")
    exchange = SimpleNamespace(mkm_dose_gy_rbe=cube, lem_dose_gy_rbe=cube,
                               ratio_lem_over_mkm=cube, mkm_model="mMKM HSG",
                               # Another grid: the LEM I side is a layer of its own.
                               dose_grid=DoseGrid((2, 2, 2), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0)),
                               lem_model="LEM I PTV=hsg:central ...", lem_labels=None,
                               lem=model, lem_structure_tissues=tissues)
    result = _fake_result("LEM I PTV=hsg:central ...", exchange=exchange)
    result.structure_tissues, result.model = tissues, model
    robust = SimpleNamespace(scenarios=("nominal", "SPR +3.5% (short)"), rbe_min_gy_rbe=cube,
                             rbe_max_gy_rbe=cube)
    entry = PlanEntry("Plan 1", result, "", robust=robust)  # type: ignore[arg-type]
    layers = {layer.key: layer for layer in entry.layers()}
    assert layers["lem1"].label == f"RBE-weighted dose ({PER_STRUCTURE_NAME})"
    for key in ("rbe", "rbe_min", "rbe_max", "lem1"):
        assert PER_STRUCTURE_NAME in layers[key].label
        assert layers[key].tissues == expected
        assert layers[key].description == f"{layers[key].reference_text}\n{expected}"
    for key in ("physical", "letd", "ratio"):
        assert layers[key].tissues == "" and layers[key].description == (
            layers[key].reference_text)
    # The mMKM side: no tissues; no V95 of the LEM I prescription, and why.
    mkm = layers["mkm"]
    assert mkm.tissues == "" and mkm.v95_note.startswith("No V95: ")
    assert mkm.description == f"{mkm.reference_text}\n{mkm.v95_note}"


def test_structure_statistics_of_a_dose_linear_in_z():
    """Dose = z (mm) on a 5 mm grid: each structure's mean dose is the mean z of its CT
    voxels (to within the grid's half-spacing), its minimum at least its lowest z - 5 mm."""
    patient = load_demo_patient()
    ct = patient.ct
    grid = DoseGrid.covering(grid_of(ct), 5.0)
    z_mm = grid.origin_mm[2] + grid.spacing_mm[0] * np.arange(grid.shape[0])
    dose = np.broadcast_to(z_mm[:, None, None], grid.shape).astype(np.float32) + 200.0
    stats = {s.name: s for s in structure_dose_statistics(patient, dose, grid, 200.0)}
    assert set(stats) <= set(patient.structure_set.names)
    for name in ("PTV", "Brainstem", "Brain"):
        mask = patient.structure_set.get(name).mask.to_dense()
        k = np.nonzero(mask)[0]
        z_ct = ct.origin_mm[2] + ct.spacing_mm[0] * k + 200.0
        s = stats[name]
        assert s.metrics.mean == pytest.approx(z_ct.mean(), abs=2.5)
        assert s.metrics.min >= z_ct.min() - 5.0
        assert s.metrics.max <= z_ct.max() + 5.0
        assert s.dvh.volume_fraction[0] == 1.0 and s.dvh.volume_fraction[-1] == 0.0
        # D95 of a linear dose: the 5th percentile of z
        assert s.metrics.d95 == pytest.approx(np.percentile(z_ct, 5), abs=5.0)
    assert stats["PTV"].colour_rgb == patient.structure_set.get("PTV").colour_rgb


def test_structure_statistics_reject_bad_input():
    patient = load_demo_patient()
    grid = DoseGrid.covering(grid_of(patient.ct), 5.0)
    with pytest.raises(InputError, match="does not match"):
        structure_dose_statistics(patient, np.zeros((2, 2, 2)), grid, 1.0)
    with pytest.raises(InputError, match="reference"):
        structure_dose_statistics(patient, np.zeros(grid.shape), grid, 0.0)


def test_user_data_dir_is_created_with_its_parents(tmp_path, monkeypatch):
    from app.recent import user_data_dir

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no" / "such" / "config"))
    monkeypatch.setattr("sys.platform", "linux")
    folder = user_data_dir()
    assert folder == tmp_path / "no" / "such" / "config" / "ionplan"
    RecentFolders(folder).add(tmp_path)
    assert RecentFolders(folder).load() == [str(tmp_path.resolve())]


def test_the_app_turns_kivys_multitouch_simulation_off(tmp_path) -> None:
    """Right-drag and Ctrl+wheel must not leave simulated touch points (red circles): the
    mouse provider is configured without multitouch simulation before the window exists."""
    import subprocess
    import sys

    code = ("import os; os.environ['KIVY_HOME'] = os.environ['TMP_KIVY_HOME']; "
            "os.environ['KIVY_NO_ARGS'] = '1'; os.environ['KIVY_USE_DEFAULTCONFIG'] = '1'; "
            "from app.main import configure_kivy; configure_kivy(); "
            "from kivy.config import Config; print(Config.get('input', 'mouse'))")
    env = {**os.environ, "TMP_KIVY_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "mouse,disable_multitouch"


def test_a_plan_under_the_physical_model_is_never_called_rbe_weighted():
    """Its first layer holds Gy: the label and the unit say so (a wrong label is worse than
    none)."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    plan = SimpleNamespace(prescription=SimpleNamespace(total_dose_gy_rbe=60.0), beams=(),
                           rbe_model="physical dose")
    result = SimpleNamespace(
        plan=plan, report={"rbe_model": "physical dose"}, dose_grid=grid,
        rbe_dose_gy_rbe=cube, physical_dose_gy=cube, letd_kev_um=cube, rbe=cube,
        tissue_labels=None, beam_physical_dose_gy=(), exchange=None, structure_tissues=())
    layer = PlanEntry("Plan 1", result, "").layers()[0]  # type: ignore[arg-type]
    assert "RBE-weighted" not in layer.label and "physical model" in layer.label
    assert layer.unit == "Gy" and layer.reference_text == "100 % = 60 Gy (prescription)"


def test_a_physical_model_plans_dose_is_one_layer_with_the_prescription_as_100_percent():
    """The Dose tab listed "Dose of the plan (physical model, no RBE)" (100 % = the
    prescription) and "Physical dose" (100 % = its maximum): one cube twice, under two
    references. The plan's dose stays; asking for its physical dose gives it."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    plan = SimpleNamespace(prescription=SimpleNamespace(total_dose_gy_rbe=60.0), beams=(),
                           rbe_model="physical dose")
    dose = np.full(grid.shape, 63.0, np.float32)
    result = SimpleNamespace(
        plan=plan, report={"rbe_model": "physical dose"}, dose_grid=grid,
        rbe_dose_gy_rbe=dose, physical_dose_gy=dose.copy(), letd_kev_um=np.ones_like(dose),
        rbe=np.ones_like(dose), tissue_labels=None, beam_physical_dose_gy=(), exchange=None,
        structure_tissues=())
    entry = PlanEntry("Plan 1", result, "")  # type: ignore[arg-type]
    doses = [layer for layer in entry.layers() if layer.is_dose]
    assert [layer.label for layer in doses] == ["Dose of the plan (physical model, no RBE)"]
    assert entry.layer("physical") is entry.layer("rbe")
    assert entry.layer("physical").reference_text == "100 % = 60 Gy (prescription)"
    lem = PlanEntry("Plan 2", _fake_result("LEM I chordoma ax=0.1 bx=0.05"), "")
    assert [layer.key for layer in lem.layers() if layer.is_dose] == ["rbe", "physical"]


def test_the_robustness_view_gives_the_unit_of_the_plans_model():
    from app.robust_review import dose_unit, scenario_columns, summary_text

    report = {"rbe_model": "physical dose", "robust": {"n_scenarios": 3},
              "worst_case": {"structures": {"PTV": {"d95_gy_rbe_min": 1.9}}}}
    assert dose_unit(report) == "Gy"
    assert "D95 Gy" in scenario_columns(dose_unit(report))
    assert "PTV lowest over the scenarios: D95 1.90 Gy = 95.0 %" in summary_text(
        report, "PTV", 2.0)
    mkm = {**report, "rbe_model": "mMKM HSG a0=0.172 b=0.0615 rd=0.32um"}
    assert "D95 1.90 Gy(RBE) = 95.0 %" in summary_text(mkm, "PTV", 2.0)


def test_the_robustness_view_names_the_plans_model_on_its_dose_axis():
    from app.robust_review import band_axis_label

    assert (band_axis_label("Gy(RBE)", "LEM I chordoma, averaged")
            == "RBE-weighted dose (LEM I chordoma, averaged) (Gy(RBE))")
    assert band_axis_label("Gy", "physical dose") == "Physical dose (Gy)"
    assert band_axis_label("Gy(RBE)") == "RBE-weighted dose (Gy(RBE))"


def test_the_robustness_summary_tells_the_two_worst_d95_apart():
    """The view gave "worst D95" of the scenarios and, in the metrics table, a lower D95 of
    the voxel-wise minimum dose, without saying which is which (GUI review)."""
    from app.robust_review import summary_text

    report = {"rbe_model": "mMKM", "robust": {"n_scenarios": 9},
              "worst_case": {"structures": {"PTV": {"d95_gy_rbe_min": 48.18,
                                                    "d98_gy_rbe_min": 46.18}},
                             "voxelwise_min": {"PTV": {"d95_gy_rbe": 44.0}}}}
    text = summary_text(report, "PTV", 57.6)
    assert ("PTV lowest over the scenarios: D95 48.18 Gy(RBE) = 83.6 %, D98 46.18 Gy(RBE) = "
            "80.2 %") in text
    assert ("D95 of the voxel-wise minimum dose (every voxel at its lowest in any scenario): "
            "44.00 Gy(RBE) = 76.4 %") in text
    # No setup scenarios (user review: "setup 0 mm, 6 directions").
    report["robust"] = {"n_scenarios": 3, "range_error_pct": 3.5, "setup_error_mm": 0.0,
                        "setup_directions": 6}
    assert summary_text(report, "PTV", 57.6).startswith(
        "3 scenarios (stopping power +/-3.5 %, no setup scenarios); ")


def _fake_result(model: str, *, tissue_labels=None, exchange=None, rbe_model=None):
    """A plan result with 2x2x2 cubes of ones under ``model`` (its description; ``rbe_model``
    the model itself, where a test needs it), 60 Gy(RBE) or 60 Gy prescribed."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    plan = SimpleNamespace(prescription=SimpleNamespace(total_dose_gy_rbe=60.0), beams=(),
                           rbe_model=model, rbe_label=model)
    return SimpleNamespace(
        plan=plan, report={"rbe_model": model}, dose_grid=grid, rbe_dose_gy_rbe=cube,
        physical_dose_gy=cube, letd_kev_um=cube, rbe=cube, tissue_labels=tissue_labels,
        beam_physical_dose_gy=(), exchange=exchange, structure_tissues=(), model=rbe_model)


def test_the_worst_case_layers_read_each_structure_within_its_lem_tissue():
    """Like the nominal dose (and report.json's voxelwise_min/max), the worst-case cubes of a
    plan with LEM I tissues per structure are read with its tissue labels."""
    labels = object()  # stands for the plan's VoxelLabels
    result = _fake_result("LEM I chordoma ax=0.1 bx=0.05", tissue_labels=labels)
    cube = result.rbe_dose_gy_rbe
    robust = SimpleNamespace(scenarios=("nominal", "SPR +3.5% (short)"), rbe_min_gy_rbe=0.9 * cube,
                             rbe_max_gy_rbe=1.1 * cube)
    entry = PlanEntry("Plan 1", result, "", robust=robust)  # type: ignore[arg-type]
    assert entry.layer("rbe").labels is labels
    assert entry.layer("rbe_min").labels is labels and entry.layer("rbe_max").labels is labels


def test_a_physical_model_plan_is_in_gy_in_its_summary_compare_choices_and_references():
    from app.compare_choices import choices_for, default_pair

    setup = _setup(rbe_label="Physical dose", exchange=False)
    assert "PTV 57.6 Gy in 16 fx" in setup.summary() and "Gy(RBE)" not in setup.summary()
    assert "PTV 57.6 Gy(RBE) in 16 fx" in _setup().summary()

    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    exchange = SimpleNamespace(mkm_dose_gy_rbe=cube, lem_dose_gy_rbe=cube,
                               ratio_lem_over_mkm=cube, dose_grid=grid, mkm_model="mMKM HSG",
                               lem_model="LEM I chordoma ax=0.1 bx=0.05", lem_labels=None,
                               mkm=MkmModel(), lem=LemModel(), lem_structure_tissues=())
    plans = [PlanEntry(f"Plan {k}", _fake_result("physical dose", exchange=exchange,
                                                 rbe_model=PhysicalDose()), "")
             for k in (1, 2)]  # type: ignore[arg-type]
    assert plans[0].dose_unit == "Gy"
    # The prescription is 60 Gy, physical: the exchange view's cubes (Gy(RBE)) are not read
    # against it (their 95 % line was at 57 Gy(RBE), V95 and the Rx line too; review): 100 %
    # is their maximum.
    for key in ("mkm", "lem1"):
        layer = plans[0].layer(key)
        assert layer.unit == "Gy(RBE)"
        assert layer.reference_text == "100 % = 1 Gy(RBE) (maximum)"
        assert layer.reference_name == "maximum"
    texts = [c.text for c in choices_for(plans)]
    assert not any("RBE-weighted" in t for t in texts), texts
    assert "Plan 1: dose (physical model)" in texts and "Plan 1: physical" not in texts
    # The pair proposed first is among the choices offered.
    plain = [PlanEntry(p.name, _fake_result("physical dose"), "") for p in plans]
    pair = default_pair(plain)  # type: ignore[arg-type]
    assert pair is not None and {c.text for c in pair} <= {c.text for c in choices_for(plain)}
    assert pair[0].text == "Plan 1: dose (physical model)"
    mkm = PlanEntry("Plan 3", _fake_result("mMKM HSG a0=0.172 b=0.0615 rd=0.32um"), "")
    assert mkm.dose_unit == "Gy(RBE)"
    assert choices_for([mkm])[0].text == "Plan 3: RBE-weighted"


def test_the_exchange_view_and_its_tissue_may_change_for_a_re_optimization() -> None:
    """Turning the exchange view on for an mMKM plan sets the form's LEM I tissue (the view's
    LEM I side): that is no change of the plan's model (it was refused as 'the RBE model
    changed'); the tissue of a LEM I plan is its model."""
    from app.plan_setup import PlanSetup, reoptimization_conflicts
    from planning.planner import PlanRequest

    request = PlanRequest(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1, gantry_deg=(90.0,),
                          rbe_model="mkm", spot_spacing_mm=3.0, dose_grid_mm=2.5, device="cpu",
                          ct_dir="ct")

    def setup(rbe: str, tissue: str | None, exchange: bool) -> PlanSetup:
        return PlanSetup(target="PTV", total_dose_gy_rbe=3.0, fractions=1,
                         beams=(BeamSetup(90.0, 0.0),), rbe=rbe, rbe_value=None, tissue=tissue,
                         spot_spacing_mm=3.0, grid_mm=2.5, device="cpu", exchange=exchange)

    assert reoptimization_conflicts(request, setup("mkm", "chordoma", True)) == []
    assert reoptimization_conflicts(request, setup("lem1", "chordoma", False)) == [
        "the RBE model"]
    lem = PlanRequest(target="PTV", total_dose_gy_rbe=3.0, n_fractions=1, gantry_deg=(90.0,),
                      rbe_model="lem1", tissue="chordoma", spot_spacing_mm=3.0,
                      dose_grid_mm=2.5, device="cpu", ct_dir="ct")
    assert reoptimization_conflicts(lem, setup("lem1", "hsg", True)) == ["the RBE model"]
    assert reoptimization_conflicts(lem, setup("lem1", "chordoma", True)) == []


def test_the_exchange_side_computed_with_the_plans_own_model_is_not_a_second_layer() -> None:
    """An mMKM plan with the exchange view listed its dose twice ("RBE-weighted dose (mMKM)"
    and "mMKM clinical dose", one cube): the side of the plan's own model is the plan's dose."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    mkm, lem = MkmModel(), LemModel(tissue_by_name("chordoma"))

    def exchange(exchange_grid: DoseGrid = grid, tissues=()) -> ExchangeView:
        return ExchangeView(exchange_grid, cube, 2 * cube, 3 * cube, cube, mkm, lem, 1,
                            lem_structure_tissues=tissues)

    def entry(model, x: ExchangeView, tissues=()) -> PlanEntry:
        result = _fake_result(model_label(model, tissues), exchange=x)
        result.model, result.structure_tissues = model, tissues
        return PlanEntry("Plan 1", result, "")  # type: ignore[arg-type]

    def keys(e: PlanEntry) -> list[str]:
        return [layer.key for layer in e.layers()]

    plan = entry(mkm, exchange())
    assert plan.own_exchange_key == "mkm"
    assert "mkm" not in keys(plan) and {"rbe", "lem1", "ratio"} <= set(keys(plan))
    assert plan.layer("mkm") is plan.layer("rbe")
    assert [layer.label for layer in plan.layers()].count("RBE-weighted dose (mMKM)") == 1
    plan = entry(lem, exchange())
    assert plan.own_exchange_key == "lem1" and "lem1" not in keys(plan)
    assert plan.layer("lem1").cube is plan.result.rbe_dose_gy_rbe
    # A LEM I plan with tissues per structure: its exchange's LEM I side (the same model and
    # tissues) is its own dose too; with other tissues per structure it is not.
    per_structure = (("PTV", tissue_by_name("hsg")),)
    plan = entry(lem, exchange(tissues=per_structure), per_structure)
    assert plan.own_exchange_key == "lem1" and "lem1" not in keys(plan)
    other_tissues = (("PTV", replace(tissue_by_name("hsg"), rapid_scheme="central")),)
    assert entry(lem, exchange(tissues=other_tissues), per_structure).own_exchange_key is None
    # Another model (another rapid scheme), or another grid: both sides are cubes of their own.
    central = LemModel(replace(tissue_by_name("chordoma"), rapid_scheme="central"))
    for other in (entry(central, exchange()),
                  entry(mkm, exchange(DoseGrid((2, 2, 2), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))))):
        assert other.own_exchange_key is None and {"mkm", "lem1"} <= set(keys(other))


def test_an_exchange_side_of_another_model_has_no_v95() -> None:
    """The Dose tab's metrics of an mMKM plan's LEM I side gave V95 against the mMKM
    prescription (as the PDF's table did, review): the same Gy(RBE) number is another
    physical dose under another model. Its V95 is "-" and the line under the chooser says
    why; its isodoses stay those of the named prescription, and the plan's own dose keeps
    V95."""
    from app.review import metrics_rows

    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    mkm, lem = MkmModel(), LemModel(tissue_by_name("chordoma"))
    x = ExchangeView(grid, cube, 2 * cube, 3 * cube, cube, mkm, lem, 1)
    result = _fake_result(mkm.describe(), exchange=x)
    result.model = mkm
    entry = PlanEntry("Plan 1", result, "")  # type: ignore[arg-type]
    side = entry.layer("lem1")
    assert side.reference == 60.0 and side.reference_name == "prescription, mMKM"
    assert side.v95_note == ("No V95: the prescription is 60 Gy(RBE) under mMKM; under "
                             "another model the same Gy(RBE) is another physical dose")
    assert side.description.endswith("\n" + side.v95_note)
    assert entry.layer("rbe").v95_note == ""
    patient = load_demo_patient()
    stats = structure_dose_statistics(patient, np.full(grid_of(patient.ct).shape, 60.0,
                                                      np.float32), grid_of(patient.ct), 60.0)
    assert [r.values[-1] for r in metrics_rows(stats, v95=False)] == ["-"] * len(stats)
    assert all(r.values[-1] == "100.0 %" for r in metrics_rows(stats))


def test_a_lem_plan_saved_with_an_older_label_lists_its_exchange_side_once() -> None:
    """A LEM I plan with tissues per structure saved before today's labels (which name each
    structure's rapid scheme): its report's label is in the older form, its exchange view's
    LEM I label is made anew in the new one; the plan's own side was listed a second time
    when the two labels were compared."""
    grid = DoseGrid((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    cube = np.ones(grid.shape, np.float32)
    lem = LemModel(tissue_by_name("hsg"))
    tissues = (("PTV", tissue_by_name("chordoma")),)
    x = ExchangeView(grid, cube, 2 * cube, cube, cube, MkmModel(), lem, 1,
                     lem_structure_tissues=tissues)
    older = ("LEM I PTV=chordoma elsewhere hsg rapid=averaged ax=0.313 bx=0.0615 Dt=7.5Gy "
             "Rn=5um")
    assert x.lem_model != older  # the label as written today differs
    result = _fake_result(older, exchange=x)
    result.model, result.structure_tissues = lem, tissues
    plan = PlanEntry("Plan 1", result, "")  # type: ignore[arg-type]
    assert plan.own_exchange_key == "lem1"
    assert [layer.key for layer in plan.layers()].count("lem1") == 0
    assert plan.layer("lem1").cube is result.rbe_dose_gy_rbe


def _field_with_an_entrance_channel():
    """A plan on a 1 x 1 x 40 grid: target (z 30-39) at the prescription (60 Gy(RBE)) where
    the LEM I / mMKM ratio is 1.03-1.06 and the RBE 2.5-3.0, an entrance channel (z 10-29) at
    20 % where the ratio is 2.0 and the RBE 1.6, and hardly any dose (0.5 %) at z < 10 where
    they run to 4.139 and 10.72."""
    grid = DoseGrid((40, 1, 1), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    z = np.arange(40)
    dose = np.where(z >= 30, 60.0, np.where(z >= 10, 12.0, 0.3)).astype(np.float32)
    ratio = np.where(z >= 30, 1.03 + 0.003 * (z - 30), np.where(z >= 10, 2.0, 4.139))
    rbe = np.where(z >= 30, 2.5 + 0.05 * (z - 30), np.where(z >= 10, 1.6, 10.72))
    ratio, rbe = (a.astype(np.float32).reshape(grid.shape) for a in (ratio, rbe))
    dose = dose.reshape(grid.shape)
    exchange = SimpleNamespace(mkm_dose_gy_rbe=dose, lem_dose_gy_rbe=dose * ratio,
                               ratio_lem_over_mkm=ratio, dose_grid=grid,
                               mkm_model="mMKM HSG a0=0.172 b=0.0615 rd=0.32um",
                               lem_model="LEM I chordoma ax=0.1 bx=0.05", lem_labels=None,
                               mkm=MkmModel(), lem=LemModel(), lem_structure_tissues=())
    result = _fake_result("mMKM HSG a0=0.172 b=0.0615 rd=0.32um", exchange=exchange,
                          rbe_model=MkmModel())
    result.dose_grid = grid
    result.rbe_dose_gy_rbe = result.physical_dose_gy = result.letd_kev_um = dose
    result.rbe = rbe
    return PlanEntry("Plan 1", result, "")  # type: ignore[arg-type]


def test_a_quantitys_100_percent_is_its_maximum_where_there_is_dose():
    """The ratio's and the RBE's 100 % were their maxima over the whole cube (4.139 and 10.72,
    where there is hardly any dose): now over the voxels where they are shown."""
    from app.session import QUANTITY_MASK_FRACTION

    entry = _field_with_an_entrance_channel()
    assert QUANTITY_MASK_FRACTION == 0.1
    ratio, rbe = entry.layer("ratio"), entry.layer("rbe_factor")
    assert ratio.reference == pytest.approx(2.0) and rbe.reference == pytest.approx(2.95)
    assert ratio.reference_text == "100 % = 2 (maximum where the mMKM dose ≥ 10 % Rx)"
    assert rbe.reference_text == "100 % = 2.95 (maximum where the plan's dose ≥ 10 % Rx)"
    assert entry.layer("rbe").reference_text == "100 % = 60 Gy(RBE) (prescription)"
