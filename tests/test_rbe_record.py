"""RBE model records (every parameter, exact round trip through JSON) and labels that fit
DICOM text fields without cutting a value."""

from __future__ import annotations

import copy
import json

import pytest

from planning.errors import InputError
from planning.rbe import (
    DEFAULT_TISSUES,
    ConstantRbe,
    LemModel,
    MkmModel,
    PhysicalDose,
    Tissue,
    parse_tissue,
    tissue_by_name,
)
from planning.rbe.record import (
    ELLIPSIS,
    RECORD_FORMAT,
    fit_label,
    model_from_record,
    model_label,
    model_record,
    short_model_name,
    structure_tissues_from_record,
)

MODELS = [
    MkmModel(),
    MkmModel(cell_line="HSG-2", alpha0_gy=0.1721, beta_gy2=0.06151, domain_radius_um=0.321,
             nucleus_radius_um=3.91, f_clin=2.4, alpha_ref_gy=0.7641, beta_ref_gy2=0.06152),
    *(LemModel(t) for t in DEFAULT_TISSUES),
    LemModel(parse_tissue("0.1,0.05,30")),
    LemModel(Tissue("brainstem", 0.123456789, 0.0456, 27.5, nucleus_radius_um=4.5)),
    ConstantRbe(2.5),
    ConstantRbe(1.1),
    PhysicalDose(),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.describe())
def test_record_round_trips_through_json(model):
    record = model_record(model)
    assert record["format"] == RECORD_FORMAT
    assert record["model"] == model.name and record["description"] == model.describe()
    assert record["variant"] and record["ionplan_version"]
    back = model_from_record(json.loads(json.dumps(record)))
    assert type(back) is type(model) and back == model


def test_record_holds_every_parameter_with_units():
    mkm = model_record(MODELS[1])["parameters"]
    assert mkm == {"cell_line": "HSG-2", "alpha0_gy": 0.1721, "beta_gy2": 0.06151,
                   "domain_radius_um": 0.321, "nucleus_radius_um": 3.91, "f_clin": 2.4,
                   "alpha_ref_gy": 0.7641, "beta_ref_gy2": 0.06152}
    lem = model_record(LemModel(Tissue("brainstem", 0.1, 0.05, 30.0, 4.5)))["parameters"]
    assert lem == {"tissue": {"name": "brainstem", "alpha_x_gy": 0.1, "beta_x_gy2": 0.05,
                              "d_t_gy": 30.0, "nucleus_radius_um": 4.5,
                              "rapid_scheme": "averaged"}}
    assert model_record(ConstantRbe(2.5))["parameters"] == {"rbe": 2.5}
    assert model_record(PhysicalDose())["parameters"] == {}


def test_lem_record_without_a_scheme_is_the_averaged_scheme_it_was_computed_with():
    # Records written before the tissue named its rapid scheme were evaluated with the
    # impact-parameter averaged scheme, IonPlan's only one then.
    record = copy.deepcopy(model_record(LemModel()))
    del record["parameters"]["tissue"]["rapid_scheme"]
    model = model_from_record(record)
    assert isinstance(model, LemModel) and model.tissue.rapid_scheme == "averaged"


def _broken(change):
    record = copy.deepcopy(model_record(LemModel()))
    change(record)
    return record


@pytest.mark.parametrize(("record", "message"), [
    ({"model": "mMKM", "parameters": {}}, "not an IonPlan RBE model record"),
    ([1, 2], "not an IonPlan RBE model record"),
    (_broken(lambda r: r.update(model="LEM IV")), "unknown model 'LEM IV'"),
    (_broken(lambda r: r["parameters"]["tissue"].pop("d_t_gy")), r"missing \['d_t_gy'\]"),
    (_broken(lambda r: r["parameters"]["tissue"].update(extra=1)), r"unknown \['extra'\]"),
    (_broken(lambda r: r["parameters"]["tissue"].update(alpha_x_gy="0.1")), "must be a number"),
    (_broken(lambda r: r["parameters"]["tissue"].update(alpha_x_gy=True)), "must be a number"),
    (_broken(lambda r: r["parameters"]["tissue"].update(name=3)), "must be text"),
    (_broken(lambda r: r["parameters"]["tissue"].update(d_t_gy=-1.0)), "d_t_gy must be"),
    (_broken(lambda r: r.update(parameters=None)), "must be an object"),
    ({**model_record(MkmModel()), "parameters": {**model_record(MkmModel())["parameters"],
                                                 "f_clin": 0}}, "f_clin must be"),
])
def test_bad_records_are_refused(record, message):
    with pytest.raises(InputError, match=message):
        model_from_record(record)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.describe())
@pytest.mark.parametrize("limit", [64, 40, 24, 18])
def test_fit_label_drops_whole_items_only(model, limit):
    text = f"IonPlan dose effective {model.describe()}"
    label = fit_label(text, limit)
    assert len(label) <= limit
    items = text.split(" ")
    if label == text:
        return
    kept = label.split(" ")
    assert kept[-1] == ELLIPSIS
    assert kept[:-1] == items[:len(kept) - 1]  # leading items, each complete


def test_fit_label_keeps_short_text_and_refuses_an_uncuttable_item():
    assert fit_label("mMKM  HSG", 64) == "mMKM HSG"
    assert fit_label("a=1 b=2 c=3", 9) == "a=1 ..."
    with pytest.raises(InputError, match="whole items"):
        fit_label("alpha0_gy=0.172 b=1", 8)


def test_tissues_per_structure_round_trip_and_lead_the_label():
    lem = LemModel(tissue_by_name("chordoma"))
    tissues = (("PTV", tissue_by_name("hsg")),
               ("Brain stem", Tissue("user(0.2, 0.04, 12)", 0.2, 0.04, 12.0)))
    record = json.loads(json.dumps(model_record(lem, tissues)))
    assert model_from_record(record) == lem
    assert structure_tissues_from_record(record) == tissues
    assert structure_tissues_from_record(model_record(lem)) == ()
    label = model_label(lem, tissues)
    assert label.startswith("LEM I PTV=hsg:averaged Brain_stem=user(0.2,_0.04,_12):averaged "
                            "elsewhere chordoma rapid=averaged")
    assert model_label(lem) == lem.describe()


def test_short_name_of_tissues_per_structure_keeps_every_tissue():
    """The short name of a LEM I label with tissues per structure names each structure's
    tissue and the tissue elsewhere with its rapid scheme (it gave "LEM I PTV=hsg, central":
    the Brain stem's tissue and the tissue elsewhere dropped, the scheme read off chordoma)."""
    lem = LemModel(tissue_by_name("chordoma", "central"))
    tissues = (("PTV", tissue_by_name("hsg")),
               ("Brain stem", Tissue("user(0.2,0.04,12)", 0.2, 0.04, 12.0)))
    assert short_model_name(model_label(lem, tissues)) == (
        "LEM I PTV=hsg:averaged Brain_stem=user(0.2,0.04,12):averaged, elsewhere chordoma, "
        "central")
    assert short_model_name(model_label(lem)) == "LEM I chordoma, central"
    # A label cut short (a DICOM field) no longer says the tissue elsewhere: shown whole.
    cut = fit_label(model_label(lem, tissues), 45)
    assert "elsewhere" not in cut and short_model_name(cut) == cut


def test_each_structure_names_its_rapid_scheme_in_full_and_64_character_labels():
    """Two doses whose structures have the same tissues in other LEM I rapid schemes read
    differently (both read "LEM I PTV=hsg Brainstem=hsg elsewhere chordoma rapid=averaged
    ..."), also cut to a 64-character DICOM field, where the tissue elsewhere and its scheme
    no longer fit: each structure kept names its own scheme, and the cut is marked."""
    lem = LemModel(tissue_by_name("chordoma"))
    central_ptv = (("PTV", tissue_by_name("hsg", "central")), ("Brainstem", tissue_by_name("hsg")))
    central_brainstem = (("PTV", tissue_by_name("hsg")),
                         ("Brainstem", tissue_by_name("hsg", "central")))
    assert model_label(lem, central_ptv).startswith(
        "LEM I PTV=hsg:central Brainstem=hsg:averaged elsewhere chordoma rapid=averaged ax=")
    assert model_label(lem, central_brainstem).startswith(
        "LEM I PTV=hsg:averaged Brainstem=hsg:central elsewhere chordoma rapid=averaged ax=")
    assert fit_label(model_label(lem, central_ptv), 64) == (
        "LEM I PTV=hsg:central Brainstem=hsg:averaged elsewhere ...")
    assert fit_label(model_label(lem, central_brainstem), 64) == (
        "LEM I PTV=hsg:averaged Brainstem=hsg:central elsewhere ...")
    # Every tissue in one scheme, the same as elsewhere: each structure still says which.
    all_central = LemModel(tissue_by_name("chordoma", "central"))
    cut = fit_label(model_label(all_central, tuple(
        (name, tissue_by_name("hsg", "central")) for name, _ in central_ptv)), 64)
    assert cut == "LEM I PTV=hsg:central Brainstem=hsg:central elsewhere ..."
    assert short_model_name(model_label(lem, central_ptv)) == (
        "LEM I PTV=hsg:central Brainstem=hsg:averaged, elsewhere chordoma, averaged")


def test_tissues_per_structure_are_refused_with_another_model_or_malformed():
    with pytest.raises(InputError, match="LEM I only"):
        model_record(MkmModel(), (("PTV", tissue_by_name("hsg")),))
    good = model_record(LemModel(tissue_by_name("chordoma")), (("PTV", tissue_by_name("hsg")),))
    for change, message in [
            (lambda r: r.update(model="mMKM"), "LEM I only"),
            (lambda r: r.update(tissues_by_structure={"PTV": "hsg"}), "must be a list"),
            (lambda r: r["tissues_by_structure"][0].pop("structure"), "structure name"),
            (lambda r: r["tissues_by_structure"][0]["tissue"].pop("d_t_gy"), "missing")]:
        bad = copy.deepcopy(good)
        change(bad)
        with pytest.raises(InputError, match=message):
            structure_tissues_from_record(bad)


def test_dose_unit_of_a_model_or_its_description():
    from planning.rbe import dose_unit_of

    assert dose_unit_of(PhysicalDose()) == dose_unit_of(PhysicalDose().describe()) == "Gy"
    for model in (MkmModel(), LemModel(), ConstantRbe(1.1)):
        assert dose_unit_of(model) == dose_unit_of(model.describe()) == "Gy(RBE)"
    assert dose_unit_of("") == "Gy(RBE)"  # a report without its model: RBE-weighted, as before


def test_a_short_name_is_its_own_short_name():
    """A comparison side's prescription model may be the short name a report.json recorded:
    it gave "LEM I chordoma,, averaged" (its "chordoma," read as the tissue's name)."""
    for model in (LemModel(tissue_by_name("chordoma", "central")), MkmModel()):
        short = short_model_name(model.describe())
        assert short_model_name(short) == short
    lem = LemModel(tissue_by_name("chordoma"))
    short = short_model_name(model_label(lem, (("PTV", tissue_by_name("hsg")),)))
    assert short_model_name(short) == short
