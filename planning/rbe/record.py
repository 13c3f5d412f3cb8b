"""Machine-readable records of RBE models, and labels that fit DICOM text fields.

A record names a model and *all* its parameters, so that the model can be rebuilt exactly
(:func:`model_from_record`) from an exported file. It is a JSON-serialisable dict
(docs/dicom.md):

``{"format": "ionplan-rbe-model/1", "model": "mMKM", "variant": "...", "description": "...",
"parameters": {...}, "ionplan_version": "..."}``

``parameters`` holds every field of the model's dataclass under its own name, units in the
names (``alpha0_gy``, ``domain_radius_um``; LEM I: ``{"tissue": {"name", "alpha_x_gy",
"beta_x_gy2", "d_t_gy", "nucleus_radius_um", "rapid_scheme"}}``; constant RBE: ``{"rbe"}``;
physical dose: ``{}``). A LEM I tissue recorded before ``rapid_scheme`` existed was evaluated with
the impact-parameter averaged scheme and is read back as ``"averaged"``.
Floats are written by :mod:`json` with Python's shortest round-trip repr, so they come back
bit-identical.

A LEM I dose computed with a tissue per structure (a plan configuration's ``tissues``) adds
``"tissues_by_structure": [{"structure": "PTV", "tissue": {...}}, ...]`` in the configuration's
order (the first listed structure wins where structures overlap; voxels in none take the
model's own tissue): :func:`structure_tissues_from_record` reads it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from planning import __version__
from planning.errors import InputError
from planning.rbe.lem import SCHEME_BEFORE_NAMED, LemModel, Tissue
from planning.rbe.mkm import MkmModel
from planning.rbe.models import ConstantRbe, PhysicalDose, RbeModel

RECORD_FORMAT = "ionplan-rbe-model/1"
#: Marker that ends a label from which whole items were dropped.
ELLIPSIS = "..."

#: What each model name means beyond its parameters (which formulation IonPlan implements).
VARIANTS: dict[str, str] = {
    MkmModel.name: "NIRS/QST clinical dose: F_clin x HSG-equivalent dose of the reference "
                   "radiation (Inaniwa et al. 2010, 2015)",
    LemModel.name: "LEM I with the rapid beta of Kraemer and Scholz 2006, central-traversal or "
                   "impact-parameter averaged alpha (rapid_scheme); mixed fields by "
                   "dose-averaged alpha and sqrt(beta)",
    ConstantRbe.name: "RBE-weighted dose = rbe x physical dose",
    PhysicalDose.name: "no RBE weighting (RBE = 1)",
}

#: The model classes a record can name, by ``RbeModel.name``.
_CLASSES: dict[str, type[RbeModel]] = {
    cls.name: cls for cls in (MkmModel, LemModel, ConstantRbe, PhysicalDose)}


#: LEM I tissues per structure: (ROI name, tissue) in the plan configuration's order.
StructureTissues = tuple[tuple[str, Tissue], ...]


def model_record(model: RbeModel, structure_tissues: StructureTissues = ()
                 ) -> dict[str, Any]:
    """The record of ``model`` (see the module docstring); JSON-serialisable. With
    ``structure_tissues`` (LEM I only) it names the tissue of each listed structure.

    Raises
    ------
    InputError
        For a model class IonPlan cannot rebuild from a record, or structure tissues with a
        model other than LEM I.
    """
    if _CLASSES.get(model.name) is not type(model):
        raise InputError(f"no record format for the RBE model {type(model).__name__}")
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "model": model.name,
        "variant": VARIANTS[model.name],
        "description": model.describe(),
        "parameters": dataclasses.asdict(model),  # type: ignore[call-overload]
        "ionplan_version": __version__,
    }
    if structure_tissues:
        if not isinstance(model, LemModel):
            raise InputError(f"tissues per structure apply to LEM I only, not to {model.name}")
        record["tissues_by_structure"] = [
            {"structure": name, "tissue": dataclasses.asdict(tissue)}
            for name, tissue in structure_tissues]
    return record


def structure_tissues_from_record(record: Mapping[str, Any]) -> StructureTissues:
    """The LEM I tissues per structure a record names (empty when it names none).

    Raises
    ------
    InputError
        A malformed list, an entry without a structure name or with invalid tissue
        parameters, or tissues recorded for a model other than LEM I.
    """
    entries = record.get("tissues_by_structure", [])
    if not isinstance(entries, list):
        raise InputError(f"RBE model record: tissues_by_structure must be a list, got "
                         f"{entries!r}")
    if entries and record.get("model") != LemModel.name:
        raise InputError(f"RBE model record: tissues per structure with the model "
                         f"{record.get('model')!r}; they apply to LEM I only")
    out = []
    for entry in entries:
        name = entry.get("structure") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not name:
            raise InputError(f"RBE model record: a tissues_by_structure entry needs a "
                             f"structure name, got {entry!r}")
        out.append((name, _build(Tissue, entry.get("tissue"), f"LEM I {name!r}")))
    return tuple(out)


def model_label(model: RbeModel, structure_tissues: StructureTissues = ()) -> str:
    """What a dose's labels say of its model: the model's description, or with LEM I tissues
    per structure, the tissue of each listed structure first (labels are cut from the end)
    and then the model's own tissue for the other voxels."""
    if not structure_tissues:
        return model.describe()
    rest = model.describe().removeprefix(f"{LemModel.name} ")
    return f"{LemModel.name} {describe_structure_tissues(structure_tissues)} elsewhere {rest}"


def describe_structure_tissues(structure_tissues: StructureTissues) -> str:
    """One line naming each structure's tissue and its rapid scheme, e.g.
    ``"PTV=chordoma:central Brainstem=hsg:averaged"`` (the ``tissue:scheme`` of ``--tissue``;
    empty without tissues); labels put it after the model's name.

    Every item names its scheme, even where it is that of the tissue elsewhere: a label cut
    short by whole items (:func:`fit_label`, DICOM's 64 characters) often loses the tissue
    elsewhere, and each item kept must still say what its structure was computed with."""
    return " ".join(f"{name.replace(' ', '_')}={t.name.replace(' ', '_')}:{t.rapid_scheme}"
                    for name, t in structure_tissues)


def _build(cls: type, params: Any, what: str) -> Any:
    """``cls(**params)`` with exactly the fields of the dataclass ``cls``, each of its
    annotated type (str, float, or a nested :class:`Tissue`); InputError otherwise."""
    if not isinstance(params, Mapping):
        raise InputError(f"RBE model record: {what} parameters must be an object, got "
                         f"{params!r}")
    fields = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    if cls is Tissue and "rapid_scheme" not in params:
        params = {**params, "rapid_scheme": SCHEME_BEFORE_NAMED}
    if set(params) != set(fields):
        missing, extra = sorted(set(fields) - set(params)), sorted(set(params) - set(fields))
        raise InputError(f"RBE model record: {what} parameters missing {missing}, "
                         f"unknown {extra}")
    values: dict[str, Any] = {}
    for key, kind in fields.items():
        value = params[key]
        if kind == "Tissue":
            value = _build(Tissue, value, f"{what} tissue")
        elif kind == "str" and not isinstance(value, str):
            raise InputError(f"RBE model record: {what} {key} must be text, got {value!r}")
        elif kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InputError(f"RBE model record: {what} {key} must be a number, got {value!r}")
        values[key] = value
    return cls(**values)


def model_from_record(record: Mapping[str, Any]) -> RbeModel:
    """Rebuild the model a record (from :func:`model_record`) names, with all its parameters.

    Raises
    ------
    InputError
        Unknown format or model, missing, unknown or invalid parameters.
    """
    if not isinstance(record, Mapping) or record.get("format") != RECORD_FORMAT:
        got = record.get("format") if isinstance(record, Mapping) else record
        raise InputError(f"not an IonPlan RBE model record (format {got!r}, expected "
                         f"{RECORD_FORMAT!r})")
    name = record.get("model")
    cls = _CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InputError(f"RBE model record names an unknown model {name!r}; IonPlan knows "
                         f"{', '.join(_CLASSES)}")
    model: RbeModel = _build(cls, record.get("parameters"), cls.name)
    return model


def fit_label(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its leading space-separated items
    followed by :data:`ELLIPSIS`, as many as fit: no item (``key=value``) is ever cut.

    Raises
    ------
    InputError
        If not even the first item and the marker fit.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    items = text.split(" ")
    while items and len(" ".join([*items, ELLIPSIS])) > limit:
        items.pop()
    if not items:
        raise InputError(f"{text!r} cannot be shortened to {limit} characters by whole items")
    return " ".join([*items, ELLIPSIS])


def short_model_name(description: str) -> str:
    """``"mMKM"``, ``"LEM I chordoma, averaged"`` (tissue and rapid scheme), ``"constant RBE
    3"``, ``"physical dose"`` from a model's full description (its parameters are in the plan
    report and the DICOM comment). A LEM I description without ``rapid=`` (written before
    December 2026) was computed with the averaged scheme.

    A LEM I label with tissues per structure (:func:`model_label`) keeps every one of them
    with its scheme: ``"LEM I PTV=chordoma:central Brainstem=hsg:averaged, elsewhere hsg,
    averaged"`` (the last scheme is that of the tissue elsewhere); one cut short (``...``, no
    ``elsewhere``) is returned whole.

    A short name (a LEM I one joins its tissue and scheme with ``", "``, which no description
    holds) is returned as it is: a prescription's model may be the short name a report.json
    recorded."""
    if ", " in description:
        return description
    words = description.split()
    if description.startswith("LEM I") and len(words) >= 3:
        rest = words[2:]
        if "=" in words[2]:  # tissues per structure first, then "elsewhere <tissue> ..."
            if "elsewhere" not in rest or rest.index("elsewhere") + 1 >= len(rest):
                return " ".join(words)
            k = rest.index("elsewhere")
            by_structure, rest = rest[:k], rest[k + 1:]
            return f"LEM I {' '.join(by_structure)}, elsewhere {_tissue_and_scheme(rest)}"
        return f"LEM I {_tissue_and_scheme(rest)}"
    if description.startswith("mMKM"):
        return "mMKM"
    return description


#: The starts of the descriptions of the models IonPlan knows (:func:`short_model_name`).
_KNOWN_STARTS = (MkmModel.name, LemModel.name, ConstantRbe.name, PhysicalDose.name)


def same_prescription_model(prescription_model: str | None, dose_model: str | None) -> bool:
    """Whether a dose under ``dose_model`` is in the Gy(RBE) of a prescription made under
    ``prescription_model`` (each a model's description or label, in full or short), so that
    its V95 and V107 of that prescription mean something: False only when both name models
    IonPlan knows and their short names (:func:`short_model_name`) differ. The same Gy(RBE)
    number is another physical dose, another effect, under another RBE model. A model that is
    unknown (None, ``""``, another system's words) is taken to be the prescription's."""
    if not prescription_model or not dose_model:
        return True
    if not (prescription_model.startswith(_KNOWN_STARTS)
            and dose_model.startswith(_KNOWN_STARTS)):
        return True
    return short_model_name(prescription_model) == short_model_name(dose_model)


def _tissue_and_scheme(words: list[str]) -> str:
    """``"chordoma, averaged"`` from the words of a LEM I description after ``"LEM I"``."""
    scheme = next((w.removeprefix("rapid=") for w in words if w.startswith("rapid=")),
                  SCHEME_BEFORE_NAMED)
    return f"{words[0]}, {scheme}"
