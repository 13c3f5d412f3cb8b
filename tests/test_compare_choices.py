"""Which doses the compare screen offers and which pair it proposes (no window needed)."""

from __future__ import annotations

from dataclasses import dataclass

from app.compare_choices import CompareChoice, choices_for, default_pair


@dataclass
class _Layer:
    key: str


@dataclass
class _Entry:
    name: str
    keys: tuple[str, ...]

    def layers(self) -> list[_Layer]:
        return [_Layer(k) for k in self.keys]


PLAIN = ("rbe", "physical", "letd", "rbe_factor", "beam0")
EXCHANGE = (*PLAIN, "mkm", "lem1", "ratio")


def test_only_dose_cubes_are_offered():
    choices = choices_for([_Entry("Plan 1", PLAIN), _Entry("Plan 2", EXCHANGE)])
    assert [c.text for c in choices] == [
        "Plan 1: RBE-weighted", "Plan 1: physical", "Plan 2: RBE-weighted", "Plan 2: physical",
        "Plan 2: mMKM", "Plan 2: LEM I"]


def test_default_pair_prefers_the_same_plan_under_both_models():
    pair = default_pair([_Entry("Plan 1", PLAIN), _Entry("Plan 2", EXCHANGE)])
    assert pair == (CompareChoice("Plan 2", "mkm"), CompareChoice("Plan 2", "lem1"))


def test_default_pair_without_exchange_compares_the_two_newest_plans():
    plans = [_Entry("Plan 1", PLAIN), _Entry("Plan 2", PLAIN), _Entry("Plan 3", PLAIN)]
    assert default_pair(plans) == (CompareChoice("Plan 2", "rbe"), CompareChoice("Plan 3", "rbe"))
    assert default_pair(plans[:1]) is None
    assert default_pair([]) is None
