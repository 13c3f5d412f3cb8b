"""The note shown when the RBE model changes under a kept prescription."""

from app.model_note import (
    PrescriptionBasis,
    confirmed_note,
    kept_prescription_note,
    model_switch_note,
    scheme_switch_note,
    unconfirmed_prescription_error,
    unit_changes,
)


def test_switch_between_biological_models_says_the_physical_dose_differs():
    note = model_switch_note("mkm", "lem1", "57.6")
    assert "57.6 Gy(RBE)" in note and "mMKM" in note and "LEM I" in note
    assert "delivers less" in note
    assert "delivers more" in model_switch_note("lem1", "mkm", "57.6")


def test_no_note_without_a_change():
    assert model_switch_note("mkm", "mkm", "57.6") == ""
    assert model_switch_note("physical", "physical", "20") == ""


def test_only_a_switch_to_or_from_physical_dose_changes_the_prescriptions_unit():
    assert unit_changes("mkm", "physical") and unit_changes("physical", "const")
    assert not unit_changes("mkm", "lem1") and not unit_changes("const", "mkm")
    assert not unit_changes("physical", "physical")


def test_a_switch_to_physical_dose_says_the_kept_number_is_now_gy_about_2_3_times_too_much():
    """57.6 Gy(RBE) under mMKM kept as 57.6 Gy physical: with a carbon RBE of 2-3 in the
    target, 57.6 Gy(RBE) is 57.6 / 3 = 19.2 to 57.6 / 2 = 28.8 Gy of physical dose."""
    note = model_switch_note("mkm", "physical", "57.6")
    assert "from mMKM to physical dose" in note
    assert "57.6 was entered in Gy(RBE)" in note and "57.6 Gy of physical dose" in note
    assert "about 19-29 Gy physical" in note and "2-3 times the dose meant" in note
    assert "press Enter in its field to keep 57.6 Gy;" in note
    assert "constant RBE to physical dose" in model_switch_note("const", "physical", "57.6")


def test_a_switch_from_physical_dose_says_the_kept_number_is_now_gy_rbe_and_too_little():
    note = model_switch_note("physical", "lem1", "20")
    assert "from physical dose to LEM I" in note and "entered in Gy and" in note
    assert "20 Gy(RBE) under LEM I" in note
    assert "about 7-10 Gy physical" in note  # 20 / 3 = 6.7, 20 / 2 = 10
    assert "a half to a third of the dose meant" in note
    assert "keep 20 Gy(RBE);" in note


def test_a_unit_switch_without_a_number_names_the_new_unit_only():
    assert model_switch_note("mkm", "physical", " ") == (
        "Model changed from mMKM to physical dose: the prescription is now in Gy.")


def test_the_refusal_and_the_confirmation_name_the_number_unit_and_models():
    assert unconfirmed_prescription_error("mkm", "physical", "57.6") == (
        "prescribed dose: 57.6 was entered in Gy(RBE) under mMKM; under physical dose it "
        "means 57.6 Gy. Type the prescription in Gy, or press Enter in its field to keep "
        "57.6 Gy")
    assert confirmed_note("physical", "57.6") == (
        "Prescription confirmed: 57.6 Gy of physical dose (no RBE).")
    assert confirmed_note("lem1", "20") == "Prescription confirmed: 20 Gy(RBE) under LEM I."


def test_a_switch_of_the_lem_rapid_scheme_says_which_way_the_numbers_move():
    note = scheme_switch_note("averaged", "central", "57.6")
    assert "57.6 Gy(RBE)" in note and "from averaged to central" in note
    assert "delivers more" in note  # central: lower alpha, lower numbers
    assert "delivers less" in scheme_switch_note("central", "averaged", "57.6")
    assert scheme_switch_note("central", "central", "57.6") == ""


def test_a_tissue_change_under_lem_i_says_the_kept_number_is_another_physical_dose():
    from app.model_note import tissue_switch_note

    assert tissue_switch_note("chordoma", "chordoma", "57.6") == ""
    note = tissue_switch_note("chordoma", "HSG", "57.6")
    assert note.startswith("LEM I tissue changed from chordoma to HSG; the prescription stays "
                           "57.6 Gy(RBE), a different physical dose")


def test_a_constant_rbe_change_gives_the_physical_dose_now_and_before():
    """57.6 Gy(RBE) with RBE 3 asks for 57.6 / 3 = 19.2 Gy; with RBE 2.5, 23.04 Gy."""
    from app.model_note import rbe_value_switch_note

    assert rbe_value_switch_note("3", "2.5", "57.6") == (
        "Constant RBE changed from 3 to 2.5; the prescription stays 57.6 Gy(RBE), which now "
        "asks for 23.0 Gy of physical dose (was 19.2 Gy). Check the prescription.")
    assert rbe_value_switch_note("3", "3.0", "57.6") == ""
    assert rbe_value_switch_note("", "3", "57.6") == ""  # no value before: nothing changed
    assert "a different physical dose (Gy(RBE) / RBE)" in rbe_value_switch_note("3", "2", "")


def test_the_kept_prescription_note_compares_with_what_the_number_was_entered_under():
    """Review: 66 Gy(RBE) entered under LEM I, then mMKM, then LEM I again still warned "Model
    changed from mMKM to LEM I"; chordoma -> hsg -> chordoma still warned of the tissue."""
    entered = PrescriptionBasis("lem1", "chordoma", "averaged", "")
    # Back where it was entered (the constant RBE field does not matter under LEM I).
    assert kept_prescription_note(entered, PrescriptionBasis("lem1", "chordoma", "averaged",
                                                             "3"), "66") == ""
    # Another model: the note names the model the number was entered under, whatever came
    # between.
    note = kept_prescription_note(entered, PrescriptionBasis("const", "hsg", "central", "3"),
                                  "66")
    assert note.startswith("Model changed from LEM I to constant RBE; the prescription stays 66")
    note = kept_prescription_note(entered, PrescriptionBasis("lem1", "hsg", "averaged"), "66")
    assert note.startswith("LEM I tissue changed from chordoma to hsg; the prescription stays "
                           "66 Gy(RBE)")
    both = kept_prescription_note(entered, PrescriptionBasis("lem1", "hsg", "central"), "66")
    assert "tissue changed from chordoma to hsg" in both
    assert "rapid scheme changed from averaged to central" in both
    # Under mMKM (or physical dose) the tissue is only the exchange view's: no note.
    mkm = PrescriptionBasis("mkm", "chordoma", "averaged")
    assert kept_prescription_note(mkm, PrescriptionBasis("mkm", "hsg", "central"), "66") == ""
    const = PrescriptionBasis("const", rbe_value="3")
    assert kept_prescription_note(const, PrescriptionBasis("const", rbe_value="3"), "66") == ""
    assert kept_prescription_note(const, PrescriptionBasis("const", rbe_value="2"),
                                  "66").startswith("Constant RBE changed from 3 to 2;")
