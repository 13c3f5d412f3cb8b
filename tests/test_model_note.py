"""The note shown when the RBE model changes under a kept prescription."""

from app.model_note import model_switch_note, scheme_switch_note


def test_switch_between_biological_models_says_the_physical_dose_differs():
    note = model_switch_note("mkm", "lem1", "57.6")
    assert "57.6 Gy(RBE)" in note and "mMKM" in note and "LEM I" in note
    assert "delivers less" in note
    assert "delivers more" in model_switch_note("lem1", "mkm", "57.6")


def test_no_note_without_a_change_between_biological_models():
    assert model_switch_note("mkm", "mkm", "57.6") == ""
    assert model_switch_note("mkm", "physical", "57.6") == ""
    assert model_switch_note("physical", "lem1", "57.6") == ""


def test_a_switch_of_the_lem_rapid_scheme_says_which_way_the_numbers_move():
    note = scheme_switch_note("averaged", "central", "57.6")
    assert "57.6 Gy(RBE)" in note and "from averaged to central" in note
    assert "delivers more" in note  # central: lower alpha, lower numbers
    assert "delivers less" in scheme_switch_note("central", "averaged", "57.6")
    assert scheme_switch_note("central", "central", "57.6") == ""
