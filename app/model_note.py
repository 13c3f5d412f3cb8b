"""The warning shown when the user switches the RBE model but keeps the prescription (no Kivy).

A prescription in Gy(RBE) is a number of one model: mMKM "clinical dose" and LEM I
RBE-weighted dose give the same physical dose different numbers (LEM I's are higher in a
carbon target, about 5-10 % for chordoma-like tissue), so keeping 57.6 Gy(RBE) when switching
from mMKM to LEM I asks for less physical dose.
"""

from __future__ import annotations

#: Short names of the models whose Gy(RBE) numbers are compared.
_BIOLOGICAL = {"mkm": "mMKM", "lem1": "LEM I", "const": "constant RBE"}


def model_switch_note(old_model: str, new_model: str, prescription_text: str) -> str:
    """The note for a switch from ``old_model`` to ``new_model`` (CLI names: ``"mkm"``,
    ``"lem1"``, ``"const"``, ``"physical"``) with the prescription field's text; ``""`` when
    nothing needs saying (no change, or no number kept across two biological models)."""
    if old_model == new_model or old_model not in _BIOLOGICAL or new_model not in _BIOLOGICAL:
        return ""
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
