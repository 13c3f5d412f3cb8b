"""Errors found while applying a plan configuration file name the file and the key.

Before, "objective: no structure named 'Chiasm'" came after the spots were placed and named no
file; the tissues and delivery limits of a file were refused without its name, and a
re-optimization's changed tissues only after the first plan.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planning import planner
from planning.cli import main
from planning.dicom import write_demo_patient
from planning.errors import PlanningError
from planning.patient import Patient
from planning.plan_config import PlanConfig, check_config_structures, load_plan_config
from planning.planner import PlanRequest, make_plan
from planning.rbe import tissue_by_name

STRUCTURES = "External, Skull, Brain, Sinus, GTV, PTV, Brainstem, Eye_L, Eye_R"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_patient(folder)
    return folder


def _objective(structure: str) -> dict[str, object]:
    return {"structure": structure, "type": "max_dose", "dose_gy_rbe": 50.0, "weight": 5.0}


def _write(path: Path, data: dict[str, object]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_loaded_configuration_knows_its_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "plan.json", {"objectives": [_objective("PTV")]})
    assert load_plan_config(path).path == str(path)
    assert PlanConfig().path == ""


@pytest.mark.parametrize(("data", "message"), [
    ({"objectives": [_objective("PTV"), _objective("Chiasm")]},
     f"objective 2 (max_dose on 'Chiasm'): no structure named 'Chiasm'; structures: "
     f"{STRUCTURES}"),
    ({"objectives": [_objective("PTV ring 5-3 mm")]},
     "objective 1 (max_dose on 'PTV ring 5-3 mm'): ring 'PTV ring 5-3 mm': the inner "
     "distance must be less than the outer one, got 5-3 mm"),
    ({"objectives": [_objective("CTV ring 0-5 mm")]},
     "objective 1 (max_dose on 'CTV ring 0-5 mm'): ring 'CTV ring 0-5 mm': no structure "
     "'CTV' to put a ring around"),
    ({"tissues": {"PTV": "hsg", "Brainstem_x": "chordoma"}},
     f"tissues: no structure named 'Brainstem_x'; structures: {STRUCTURES}"),
])
def test_unknown_structures_name_the_file_and_the_key(
    patient: Patient, tmp_path: Path, data: dict[str, object], message: str
) -> None:
    path = _write(tmp_path / "plan.json", data)
    with pytest.raises(PlanningError) as caught:
        check_config_structures(load_plan_config(path), patient)
    assert str(caught.value) == f"{path}: {message}"


def test_a_configuration_made_in_code_is_named_by_its_key_alone(patient: Patient) -> None:
    config = PlanConfig(tissues=(("Nope", tissue_by_name("hsg")),))
    with pytest.raises(PlanningError, match=r"^tissues: no structure named 'Nope'"):
        check_config_structures(config, patient)


@pytest.mark.parametrize(("data", "rbe", "message"), [
    ({"objectives": [_objective("Chiasm")]}, "mkm",
     r"objective 1 \(max_dose on 'Chiasm'\): no structure named 'Chiasm'"),
    ({"tissues": {"PTV": "hsg"}}, "mkm", "tissues: tissues per structure apply to LEM I only"),
    ({"tissues": {"Chiasm": "hsg"}}, "lem1", "tissues: no structure named 'Chiasm'"),
    ({"delivery": {"min_particles_per_spot": 1e12}}, "mkm",
     r"the most particles per spot \(.*\) must exceed the fewest \(1e\+12\)"),
    ({"optimizer": {"max_spot_weight": 0.001}}, "mkm",
     r"the maximum spot weight 0\.001 \(10\^6 ions\) does not exceed the minimum"),
])
def test_the_planner_names_the_file_before_any_spot_is_placed(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    data: dict[str, object], rbe: str, message: str
) -> None:
    def no_spots(*args: object, **kwargs: object) -> None:
        raise AssertionError("the configuration was checked after the long work began")

    monkeypatch.setattr(planner, "place_spots", no_spots)
    path = _write(tmp_path / "plan.json", data)
    request = PlanRequest(target="PTV", total_dose_gy_rbe=60.0, n_fractions=20,
                          gantry_deg=(90.0,), ct_dir=str(demo_dir), rbe_model=rbe,
                          config_path=str(path))
    with pytest.raises(PlanningError, match=f"^{path}: {message}"):
        make_plan(request)


def test_a_reoptimization_changing_the_tissues_is_refused_before_the_plan(
    demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "tissues.json", {"tissues": {"PTV": "hsg"}})
    out = tmp_path / "out"
    assert main(["plan", str(demo_dir), "--target", "PTV", "--dose", "60", "--fractions", "20",
                 "--gantry", "90", "--rbe", "lem1", "--out", str(out),
                 "--reoptimize", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: tissues: the LEM I tissues differ from the plan's" in err
    assert "Traceback" not in err and not out.exists()


def test_a_minimum_per_spot_that_empties_every_beam_is_named_before_the_dose(
        demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A [delivery] minimum so high that the optimizer removed every spot failed only at the
    export, "G90: the beam has no spot with particles to export", naming neither the limit
    nor its file; now right after the optimization, naming both."""
    config = tmp_path / "limits.toml"
    config.write_text("[delivery]\nmin_particles_per_spot = 1e9\nmax_particles_per_spot = 1e10\n")
    out = tmp_path / "out"
    assert main(["plan", str(demo_dir), "--target", "PTV", "--dose", "3", "--fractions", "1",
                 "--gantry", "90,270", "--grid", "6", "--spot-spacing", "8", "--config",
                 str(config), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "no spot with particles in beams G90, G270" in err
    assert f"[delivery] min_particles_per_spot of {config}" in err and "1e+09" in err
    assert "Traceback" not in err and not out.exists()


def test_a_beam_left_without_spots_is_warned_about_with_the_limit_and_its_file() -> None:
    """One beam emptied by the optimizer: a warning in the report (the plan is kept, its
    export would refuse the beam); every beam emptied: refused."""
    import numpy as np

    from planning.beams import Beam, SpotMap

    beams = [Beam((0.0, 0.0, 0.0), g, 0.0, f"G{g:g}", "HFS") for g in (90.0, 270.0)]
    spots = [SpotMap(np.full(3, 200.0), np.zeros(3, np.int64), np.arange(3) * 5.0,
                     np.zeros(3), (5.0, 5.0)) for _ in beams]
    config = PlanConfig(min_particles_per_spot=2e5, path="site.toml")
    text = planner.empty_beams_problem(np.array([0.0, 0.0, 0.0, 1.0, 0.0, 2.0]), beams, spots,
                                       2e5, config)
    assert text is not None and "no spot with particles in beam G90:" in text
    assert "[delivery] min_particles_per_spot of site.toml" in text and "G270" not in text
    assert planner.empty_beams_problem(np.ones(6), beams, spots, 2e5, config) is None
    machine_limit = planner.empty_beams_problem(np.array([1.0, 0, 0, 0, 0, 0]), beams, spots,
                                                5e4, PlanConfig())
    assert machine_limit is not None and "the machine's minimum" in machine_limit
    with pytest.raises(PlanningError, match="beams G90, G270"):
        planner.empty_beams_problem(np.zeros(6), beams, spots, 2e5, config)


@pytest.mark.parametrize(("dose", "objective_dose", "expected"), [
    ("300", 50.0, "prescribed dose must lie in (0, 200] (whole plan, in the plan's dose unit), "
                  "got 300.0"),
    ("3", -1.0, "objective on 'PTV': dose must be >= 0 (whole plan, in the plan's dose unit), "
                "got -1.0"),
])
def test_a_physical_model_plans_dose_errors_name_no_gy_rbe(
        demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], dose: str,
        objective_dose: float, expected: str) -> None:
    """Under ``--rbe physical`` the doses are in Gy, yet the prescription's and an objective's
    own checks said "Gy(RBE)": they do not know the plan's model, so they name no unit."""
    path = _write(tmp_path / "plan.json", {"objectives": [
        {**_objective("PTV"), "dose_gy_rbe": objective_dose}]})
    out = tmp_path / "out"
    assert main(["plan", str(demo_dir), "--target", "PTV", "--dose", dose, "--fractions", "1",
                 "--gantry", "90", "--rbe", "physical", "--config", str(path),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert expected in err and "Gy(RBE)" not in err, err
    assert "Traceback" not in err and not out.exists()
