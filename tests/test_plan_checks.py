"""Warnings (never refusals) for an implausible dose per fraction and a plan that misses its
target: in report.json, on the CLI's standard error, in the notes of the app and the PDF."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from planning.cli import main
from planning.dicom import load_demo_patient, write_demo_patient
from planning.document.from_plan import plan_document
from planning.errors import PlanningError
from planning.optimization import Objective
from planning.plan import Prescription
from planning.plan_checks import coverage_warning, fractionation_warning
from planning.plan_config import PlanConfig
from planning.plan_notes import as_sentence, plan_notes
from planning.planner import PlanRequest, make_plan

#: Published carbon-ion schedules (total Gy(RBE), fractions), mMKM unless marked: none may warn.
CLINICAL = [
    (46.2, 24),  # diffuse astrocytoma, NIRS (Hasegawa et al. 2012): 1.9 per fraction
    (57.6, 16), (70.4, 16),  # head and neck, bone and soft tissue sarcoma, NIRS
    (60.0, 20), (66.0, 22),  # chordoma, HIT (LEM I)
    (55.2, 12), (69.6, 12), (58.0, 8),  # pancreas; liver (Kasuya et al. 2017)
    (79.2, 9), (72.0, 9),  # lung (Miyamoto et al. 2003)
    (52.8, 4), (60.0, 4), (40.0, 4),  # liver (Shibuya et al. 2022), HIT 4 x 10 (LEM I)
    (50.0, 1), (28.0, 1),  # single-fraction lung (Yamamoto et al. 2017)
]


@pytest.mark.parametrize(("total", "fractions"), CLINICAL)
def test_clinical_schedules_are_not_warned_about(total: float, fractions: int) -> None:
    assert fractionation_warning(total, fractions) is None
    assert fractionation_warning(total, fractions, lem=True) is None


@pytest.mark.parametrize(("total", "fractions", "lem", "words"), [
    (3.6, 16, False, "(0.225 Gy(RBE) per fraction) is below the 1 Gy(RBE) per fraction"),
    (3.6, 16, True, "below the 1 Gy(RBE)"),  # a dose per fraction given as the total
    (57.6, 1, False, "above the 50 Gy(RBE) per fraction of clinical carbon-ion schedules "
                     "(the largest: 50 Gy(RBE) mMKM in one fraction"),
    (57.6, 1, True, None),  # within LEM I's larger numbers for the same plan
    (80.0, 1, True, "above the 70 Gy(RBE) per fraction of clinical carbon-ion schedules "
                    "under LEM I"),
    (60.0, 5, False, "above the 10 Gy(RBE) per fraction of clinical carbon-ion schedules "
                     "(the largest: about 9 Gy(RBE) mMKM per fraction in more than 4"),
    (60.0, 5, True, None),
    (72.0, 5, True, "above the 14 Gy(RBE) per fraction"),
    # 13 fractions or more: the published schedules give at most 4.4 Gy(RBE) per fraction.
    (150.0, 22, False, "above the 5.5 Gy(RBE) per fraction of clinical carbon-ion schedules "
                       "(the largest: 4.4 Gy(RBE) mMKM per fraction in 13 fractions or more)"),
    (150.0, 22, True, None),  # 6.8 within LEM I's 7.7
    (200.0, 22, True, "above the 7.7 Gy(RBE) per fraction"),
])
def test_implausible_doses_per_fraction_are_warned_about(
    total: float, fractions: int, lem: bool, words: str | None
) -> None:
    warning = fractionation_warning(total, fractions, lem=lem)
    if words is None:
        assert warning is None
    else:
        assert warning is not None and words in warning
        assert warning.startswith(f"the prescription of {total:g} Gy(RBE) in {fractions} ")
        assert warning.endswith("check the dose (the total, not per fraction) and the number "
                                "of fractions")


def test_impossible_prescriptions_are_still_refused() -> None:
    for total, fractions in ((0.0, 1), (250.0, 30), (60.0, 0), (60.0, 101)):
        with pytest.raises(PlanningError):
            Prescription("PTV", total, fractions)


@pytest.mark.parametrize(("d95", "d2", "words"), [
    (57.6, 60.0, None),
    (54.72, 61.632, None),  # exactly 95 % and 107 %
    (50.0, 60.0, "D95 is 86.8 % of the prescription, below 95 % (under-dosed)"),
    (57.6, 63.0, "D2 is 109.4 % of the prescription, above 107 % (hot spots)"),
    (50.0, 63.0, "under-dosed); D2 is 109.4 %"),
])
def test_coverage_outside_95_to_107_percent_is_warned_about(
    d95: float, d2: float, words: str | None
) -> None:
    warning = coverage_warning("PTV", {"d95_gy_rbe": d95, "d2_gy_rbe": d2}, 57.6, "Gy(RBE)")
    if words is None:
        assert warning is None
    else:
        assert warning is not None and words in warning
        assert warning.startswith("the target 'PTV' is not covered as prescribed "
                                  "(57.6 Gy(RBE)): ")


def _under_dosing_config() -> PlanConfig:
    """The target's only objective asks for 80 % of the 0.5 Gy(RBE) prescription."""
    return PlanConfig(objectives=(Objective("PTV", "squared_deviation", 0.4, 100.0),),
                      replace_defaults=True)


def test_a_plan_warns_in_its_report_and_its_notes_for_the_app_and_the_pdf() -> None:
    request = PlanRequest(target="PTV", total_dose_gy_rbe=0.5, n_fractions=1, gantry_deg=(90.0,),
                          patient=load_demo_patient(), rbe_model="mkm", spot_spacing_mm=6.0,
                          dose_grid_mm=5.0, device="cpu", config=_under_dosing_config())
    result = make_plan(request, keep_influence=False)
    warnings = result.report["warnings"]
    low = [w for w in warnings if w.startswith("the prescription of 0.5 Gy(RBE) in 1 fraction")]
    missed = [w for w in warnings if w.startswith("the target 'PTV' is not covered")]
    assert len(low) == 1 and len(missed) == 1 and "(under-dosed)" in missed[0]
    # The app and the PDF list them as sentences (plan_notes.as_sentence).
    expected = [as_sentence(low[0]), as_sentence(missed[0])]
    assert expected[0].startswith("The prescription of 0.5")
    notes = plan_notes(result)
    assert all(e in notes for e in expected)
    document = plan_document(result, "warned plan")
    assert all(e in document.warnings for e in expected)


@pytest.mark.parametrize(("total", "fractions", "words"), [
    (66.0, 22, "(3 Gy per fraction) is physical dose: with a carbon-ion RBE of 2-3 in a target "
               "it is about 6-9 Gy(RBE) per fraction, above the 5.5 Gy(RBE) per fraction of "
               "clinical carbon-ion schedules"),  # a Gy(RBE) number typed for a physical plan
    (57.6, 16, "about 7.2-10.8 Gy(RBE) per fraction, above the 5.5"),
    (22.0, 22, None), (20.0, 16, None),  # 1-1.25 Gy: 2-3.75 Gy(RBE) per fraction
    (2.0, 1, None), (10.0, 1, None),  # QA and single-fraction plans
    (30.0, 1, "about 60-90 Gy(RBE) per fraction, above the 50 Gy(RBE)"),
    (0.2, 1, "about 0.4-0.6 Gy(RBE) per fraction, below the 1 Gy(RBE) per fraction"),
])
def test_a_physical_dose_per_fraction_is_read_through_the_carbon_rbe(
        total: float, fractions: int, words: str | None) -> None:
    """`plan --rbe physical --dose 66 --fractions 22` (66 meant in Gy(RBE)) was accepted
    without a word: 3 Gy of carbon-ion physical dose per fraction is 6-9 Gy(RBE) (review)."""
    from planning.plan_checks import physical_fractionation_warning

    warning = physical_fractionation_warning(total, fractions)
    if words is None:
        assert warning is None
    else:
        assert warning is not None and words in warning, warning
        assert warning.startswith(f"the prescription of {total:g} Gy in {fractions} ")


def test_a_physical_dose_plan_is_warned_of_through_the_carbon_rbe() -> None:
    request = PlanRequest(target="PTV", total_dose_gy_rbe=0.5, n_fractions=1, gantry_deg=(90.0,),
                          patient=load_demo_patient(), rbe_model="physical", spot_spacing_mm=6.0,
                          dose_grid_mm=5.0, device="cpu")
    warnings = make_plan(request, keep_influence=False).report["warnings"]
    assert not any("per fraction" in w for w in warnings)  # 0.5 Gy: 1-1.5 Gy(RBE)
    request = dataclasses.replace(request, total_dose_gy_rbe=48.0, n_fractions=16)
    warnings = make_plan(request, keep_influence=False).report["warnings"]
    assert any(w.startswith("the prescription of 48 Gy in 16 fractions (3 Gy per fraction) is "
                            "physical dose") for w in warnings), warnings


def test_the_cli_prints_the_warnings_and_writes_them_to_report_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    write_demo_patient(demo)
    config = tmp_path / "under.json"
    config.write_text(json.dumps({"replace_defaults": True, "objectives": [
        {"structure": "PTV", "type": "squared_deviation", "dose_gy_rbe": 0.4, "weight": 100}]}))
    out = tmp_path / "out"
    assert main(["plan", str(demo), "--target", "PTV", "--dose", "0.5", "--fractions", "1",
                 "--gantry", "90", "--grid", "5", "--spot-spacing", "6", "--device", "cpu",
                 "--config", str(config), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warnings = json.loads((out / "report.json").read_text())["warnings"]
    for start in ("the prescription of 0.5 Gy(RBE) in 1 fraction",
                  "the target 'PTV' is not covered as prescribed"):
        (warning,) = [w for w in warnings if w.startswith(start)]
        assert f"ionplan: warning: {warning}\n" in err
