"""The warning shown when the user switches the RBE model but keeps the prescription (no Kivy).

A prescription in Gy(RBE) is a number of one model: mMKM "clinical dose" and LEM I
RBE-weighted dose give the same physical dose different numbers (LEM I's are higher in a
carbon target, about 5-10 % for chordoma-like tissue), so keeping 57.6 Gy(RBE) when switching
from mMKM to LEM I asks for less physical dose. Between an RBE-weighted model and the physical
one the number changes quantity: 57.6 Gy(RBE) is roughly 20-30 Gy of carbon-ion physical dose,
so a kept 57.6 read as Gy asks for about 2-3 times the dose meant (and the other way, a half to
a third of it); the form holds such a number until the user confirms it
(:func:`unit_changes`, :func:`unconfirmed_prescription_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.plan_setup import model_dose_unit as dose_unit
from planning.plan_checks import CARBON_TARGET_RBE

#: Short names of the models whose Gy(RBE) numbers are compared.
_BIOLOGICAL = {"mkm": "mMKM", "lem1": "LEM I", "const": "constant RBE"}
#: ... and of every model, as the notes name them.
_NAMES = {**_BIOLOGICAL, "physical": "physical dose"}


def unit_changes(old_model: str, new_model: str) -> bool:
    """Whether a prescription written under ``old_model`` means another quantity under
    ``new_model``: physical dose (Gy) on one side, RBE-weighted dose (Gy(RBE)) on the other."""
    return dose_unit(old_model) != dose_unit(new_model)


def _physical_range(prescription_text: str) -> str:
    """``"about 19-29 Gy"``: the physical dose a number of Gy(RBE) stands for with
    :data:`CARBON_TARGET_RBE`, whole Gy; ``""`` when the field holds no number."""
    try:
        value = float(prescription_text.strip().replace(",", "."))
    except ValueError:
        return ""
    low, high = CARBON_TARGET_RBE
    return f"about {value / high:.0f}-{value / low:.0f} Gy"


def _unit_switch_note(old_model: str, new_model: str, prescription_text: str) -> str:
    """The note for a switch across :func:`unit_changes`."""
    rx = prescription_text.strip()
    low, high = (f"{v:g}" for v in CARBON_TARGET_RBE)
    physical = _physical_range(rx)
    old, new = _NAMES[old_model], _NAMES[new_model]
    unit = dose_unit(new_model)
    if not physical:  # no number kept
        return f"Model changed from {old} to {new}: the prescription is now in {unit}."
    if new_model == "physical":
        meaning = (f"now asks for {rx} Gy of physical dose (no RBE). With a carbon RBE of "
                   f"roughly {low}-{high} in the target, {rx} Gy(RBE) is {physical} physical, "
                   f"so keeping {rx} delivers {low}-{high} times the dose meant.")
    else:
        meaning = (f"now asks for {rx} Gy(RBE) under {new}. With a carbon RBE of roughly "
                   f"{low}-{high} in the target, that is {physical} physical, so keeping {rx} "
                   "delivers a half to a third of the dose meant.")
    return (f"Model changed from {old} to {new}: the prescription {rx} was entered in "
            f"{dose_unit(old_model)} and {meaning} Type the prescription in {unit} (the "
            f"objectives follow it), or press Enter in its field to keep {rx} {unit}; no plan "
            "is computed until then.")


def confirmed_note(model: str, prescription_text: str) -> str:
    """The line that replaces a :func:`unit_changes` note once the user kept the number."""
    quantity = "of physical dose (no RBE)" if model == "physical" else f"under {_NAMES[model]}"
    return (f"Prescription confirmed: {prescription_text.strip()} {dose_unit(model)} "
            f"{quantity}.")


def unconfirmed_prescription_error(old_model: str, new_model: str,
                                   prescription_text: str) -> str:
    """Why Compute refuses a prescription entered under ``old_model`` and kept, unconfirmed,
    across :func:`unit_changes` to ``new_model``."""
    rx = prescription_text.strip()
    unit = dose_unit(new_model)
    return (f"prescribed dose: {rx} was entered in {dose_unit(old_model)} under "
            f"{_NAMES[old_model]}; under {_NAMES[new_model]} it means {rx} {unit}. Type the "
            f"prescription in {unit}, or press Enter in its field to keep {rx} {unit}")


def model_switch_note(old_model: str, new_model: str, prescription_text: str) -> str:
    """The note for a switch from ``old_model`` to ``new_model`` (CLI names: ``"mkm"``,
    ``"lem1"``, ``"const"``, ``"physical"``) with the prescription field's text; ``""`` only
    without a change."""
    if old_model == new_model:
        return ""
    if unit_changes(old_model, new_model):
        return _unit_switch_note(old_model, new_model, prescription_text)
    old, new = _BIOLOGICAL[old_model], _BIOLOGICAL[new_model]
    rx = prescription_text.strip() or "the prescription"
    direction = ""
    if (old_model, new_model) == ("mkm", "lem1"):
        direction = " LEM I gives a carbon target higher numbers, so this plan delivers less."
    elif (old_model, new_model) == ("lem1", "mkm"):
        direction = " mMKM gives a carbon target lower numbers, so this plan delivers more."
    return (f"Model changed from {old} to {new}; the prescription stays {rx} Gy(RBE), which "
            f"under {new} is a different physical dose than under {old}.{direction} "
            "Check the prescription (the exchange view shows both models' numbers).")


def scheme_switch_note(old_scheme: str, new_scheme: str, prescription_text: str) -> str:
    """The note for a switch of the LEM I rapid scheme (``"averaged"``, ``"central"``; see
    :mod:`planning.rbe.lem`) under a LEM I prescription; ``""`` without a change. The central
    traversal gives a carbon field a lower alpha (4-10 %), so lower Gy(RBE) numbers."""
    if old_scheme == new_scheme:
        return ""
    rx = prescription_text.strip() or "the prescription"
    direction = (" It gives a carbon target lower numbers, so this plan delivers more."
                 if new_scheme == "central" else
                 " It gives a carbon target higher numbers, so this plan delivers less.")
    return (f"LEM I rapid scheme changed from {old_scheme} to {new_scheme}; the prescription "
            f"stays {rx} Gy(RBE), a different physical dose under the {new_scheme} scheme."
            f"{direction} Check the prescription.")


def tissue_switch_note(old_tissue: str, new_tissue: str, prescription_text: str) -> str:
    """The note for a change of the LEM I tissue (its name, or a custom tissue's parameters)
    under a LEM I prescription; ``""`` without a change. A tissue's alpha_x, beta_x and
    threshold dose set LEM I's RBE, so one number of Gy(RBE) is another physical dose."""
    if old_tissue == new_tissue:
        return ""
    rx = prescription_text.strip() or "the prescription"
    return (f"LEM I tissue changed from {old_tissue} to {new_tissue}; the prescription stays "
            f"{rx} Gy(RBE), a different physical dose for this tissue's alpha, beta and "
            "threshold dose. Check the prescription (the plan is optimized to it under the "
            "new tissue).")


def _number(text: str) -> float | None:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        return None
    return value if value > 0 else None


def rbe_value_switch_note(old_text: str, new_text: str, prescription_text: str) -> str:
    """The note for a change of the constant RBE under a constant-RBE prescription; ``""``
    unless both are positive numbers that differ. Physical dose = Gy(RBE) / RBE, so the note
    gives the physical dose the kept number asks for now and before."""
    old, new = _number(old_text), _number(new_text)
    if old is None or new is None or old == new:
        return ""
    rx = _number(prescription_text)
    if rx is None:
        meaning = "a different physical dose (Gy(RBE) / RBE)"
    else:
        meaning = (f"which now asks for {rx / new:.1f} Gy of physical dose (was "
                   f"{rx / old:.1f} Gy)")
    shown = prescription_text.strip() or "the prescription"
    return (f"Constant RBE changed from {old:g} to {new:g}; the prescription stays {shown} "
            f"Gy(RBE), {meaning}. Check the prescription.")


@dataclass(frozen=True)
class PrescriptionBasis:
    """What gives a prescription's number its meaning: the model (CLI name) and, under LEM I,
    the tissue (as the notes name it) and rapid scheme, under a constant RBE the RBE field's
    text. The form keeps the one the number was typed or confirmed under."""

    model: str
    tissue: str = ""
    scheme: str = ""
    rbe_value: str = ""


def kept_prescription_note(entered: PrescriptionBasis, now: PrescriptionBasis,
                           prescription_text: str) -> str:
    """The note on a prescription entered under ``entered`` and kept to ``now``: the model's
    change first; under the same model LEM I's tissue and scheme, or the constant RBE;
    ``""`` when nothing that sets the number's meaning differs (back where it was entered)."""
    if entered.model != now.model:
        return model_switch_note(entered.model, now.model, prescription_text)
    if now.model == "lem1":
        notes = (tissue_switch_note(entered.tissue, now.tissue, prescription_text),
                 scheme_switch_note(entered.scheme, now.scheme, prescription_text))
        return " ".join(n for n in notes if n)
    if now.model == "const":
        return rbe_value_switch_note(entered.rbe_value, now.rbe_value, prescription_text)
    return ""
