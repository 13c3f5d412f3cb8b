"""What the compare screen can put on either side: each plan's doses and imported RT Doses,
and the pair it proposes first (no Kivy here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.session import PlanEntry, short_model_name

#: The quantities a plan offers for comparison: (layer key, text).
QUANTITIES = (("rbe", "RBE-weighted"), ("physical", "physical"), ("mkm", "mMKM"),
              ("lem1", "LEM I"))
#: The text of a plan's own dose (``"rbe"``) under the physical model: in Gy, not RBE-weighted.
PHYSICAL_MODEL_TEXT = "dose (physical model)"
#: The quantity of an imported RT Dose file (the dose as stored).
EXTERNAL = "file"


@dataclass(frozen=True)
class CompareChoice:
    """One selectable dose: a plan and one of its cubes.

    ``quantity_text`` replaces the quantity's usual text (:data:`QUANTITIES`) when set; it
    takes no part in comparing choices.
    """

    plan_name: str
    quantity: str
    quantity_text: str = field(default="", compare=False)

    @property
    def text(self) -> str:
        if self.quantity == EXTERNAL:
            return f"RT Dose: {self.plan_name}"
        return f"{self.plan_name}: {self.quantity_text or dict(QUANTITIES)[self.quantity]}"


def _choice(entry: PlanEntry, quantity: str) -> CompareChoice:
    """``entry``'s dose ``quantity``; its own dose under the physical model is not called
    RBE-weighted (an entry without a dose unit counts as RBE-weighted). The exchange side that
    is the plan's own dose (:attr:`PlanEntry.own_exchange_key`) is the plan's dose, key
    ``"rbe"``, named by its model (``"mMKM"``, the LEM I variant)."""
    own = getattr(entry, "own_exchange_key", None)
    key = "rbe" if quantity == own else quantity
    side = own if key == "rbe" and own is not None else quantity  # the model named
    if key == "rbe" and getattr(entry, "dose_unit", "Gy(RBE)") == "Gy":
        return CompareChoice(entry.name, key, PHYSICAL_MODEL_TEXT)
    exchange = getattr(getattr(entry, "result", None), "exchange", None)
    if side == "lem1" and exchange is not None:  # its tissue and rapid scheme, as the
        # Dose tab names it: two LEM I variants differ by several percent
        return CompareChoice(entry.name, key, short_model_name(exchange.lem_model))
    return CompareChoice(entry.name, key, dict(QUANTITIES)[side] if side != key else "")


def choices_for(plans: list[PlanEntry], external: tuple[str, ...] = ()) -> list[CompareChoice]:
    """Every dose the session's plans can put on either side, then the imported RT Doses.

    Each cube is offered once, as the plan's layers list it: the plan's own exchange side is
    not a layer (its dose is offered as ``"rbe"``), nor, under the physical model, its
    physical dose (the plan's dose: offered as ``"rbe"``, :data:`PHYSICAL_MODEL_TEXT`)."""
    out = []
    for entry in plans:
        keys = {layer.key for layer in entry.layers()}
        out += [_choice(entry, q) for q, _ in QUANTITIES if q in keys]
    return out + [CompareChoice(name, EXTERNAL) for name in external]


def default_pair(plans: list[PlanEntry]) -> tuple[CompareChoice, CompareChoice] | None:
    """The newest plan under mMKM vs LEM I when it has both; else the two newest plans."""
    if not plans:
        return None
    latest = plans[-1]
    keys = {layer.key for layer in latest.layers()}
    own = getattr(latest, "own_exchange_key", None)
    if own is not None:
        keys.add(own)
    if {"mkm", "lem1"} <= keys:
        return _choice(latest, "mkm"), _choice(latest, "lem1")
    if len(plans) >= 2:
        return _choice(plans[-2], "rbe"), _choice(latest, "rbe")
    return None
