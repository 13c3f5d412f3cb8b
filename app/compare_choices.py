"""What the compare screen can put on either side: each plan's doses and imported RT Doses,
and the pair it proposes first (no Kivy here)."""

from __future__ import annotations

from dataclasses import dataclass

from app.session import PlanEntry

#: The quantities a plan offers for comparison: (layer key, text).
QUANTITIES = (("rbe", "RBE-weighted"), ("physical", "physical"), ("mkm", "mMKM"),
              ("lem1", "LEM I"))
#: The quantity of an imported RT Dose file (the dose as stored).
EXTERNAL = "file"


@dataclass(frozen=True)
class CompareChoice:
    """One selectable dose: a plan and one of its cubes."""

    plan_name: str
    quantity: str

    @property
    def text(self) -> str:
        if self.quantity == EXTERNAL:
            return f"RT Dose: {self.plan_name}"
        return f"{self.plan_name}: {dict(QUANTITIES)[self.quantity]}"


def choices_for(plans: list[PlanEntry], external: tuple[str, ...] = ()) -> list[CompareChoice]:
    """Every dose the session's plans can put on either side, then the imported RT Doses."""
    out = []
    for entry in plans:
        keys = {layer.key for layer in entry.layers()}
        out += [CompareChoice(entry.name, q) for q, _ in QUANTITIES if q in keys]
    return out + [CompareChoice(name, EXTERNAL) for name in external]


def default_pair(plans: list[PlanEntry]) -> tuple[CompareChoice, CompareChoice] | None:
    """The newest plan under mMKM vs LEM I when it has both; else the two newest plans."""
    if not plans:
        return None
    latest = plans[-1]
    keys = {layer.key for layer in latest.layers()}
    if {"mkm", "lem1"} <= keys:
        return CompareChoice(latest.name, "mkm"), CompareChoice(latest.name, "lem1")
    if len(plans) >= 2:
        return CompareChoice(plans[-2].name, "rbe"), CompareChoice(latest.name, "rbe")
    return None
