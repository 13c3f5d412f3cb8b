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


@dataclass
class _ExchangeEntry(_Entry):
    """A plan whose exchange side ``own_exchange_key`` is its own dose (no layer of its own)."""

    own_exchange_key: str | None = None


def test_the_exchange_side_that_is_the_plans_own_dose_is_offered_once_by_its_model_name():
    own_mkm = _ExchangeEntry("Plan 2", (*PLAIN, "lem1", "ratio"), own_exchange_key="mkm")
    texts = [c.text for c in choices_for([own_mkm])]
    assert texts == ["Plan 2: mMKM", "Plan 2: physical", "Plan 2: LEM I"]
    assert default_pair([own_mkm]) == (CompareChoice("Plan 2", "rbe"),
                                       CompareChoice("Plan 2", "lem1"))
    own_lem = _ExchangeEntry("Plan 3", (*PLAIN, "mkm", "ratio"), own_exchange_key="lem1")
    assert [c.text for c in choices_for([own_lem])] == [
        "Plan 3: LEM I", "Plan 3: physical", "Plan 3: mMKM"]
    assert default_pair([own_lem]) == (CompareChoice("Plan 3", "mkm"),
                                       CompareChoice("Plan 3", "rbe"))


@dataclass
class _PhysicalModelEntry(_Entry):
    """A plan computed under the physical model: its dose is in Gy, the same cube as its
    physical dose."""

    dose_unit: str = "Gy"


def test_a_physical_model_plans_dose_is_offered_once():
    """"Plan 1: dose (physical model)" and "Plan 1: physical" were offered, one cube: the
    plan's layers no longer list its physical dose apart (test_app_viewmodel)."""
    no_physical = tuple(k for k in EXCHANGE if k != "physical")
    texts = [c.text for c in choices_for([_PhysicalModelEntry("Plan 1", no_physical)])]
    assert texts == ["Plan 1: dose (physical model)", "Plan 1: mMKM", "Plan 1: LEM I"]
    assert [c.text for c in choices_for([_PhysicalModelEntry("Plan 1", PLAIN,
                                                             dose_unit="Gy(RBE)")])] == [
        "Plan 1: RBE-weighted", "Plan 1: physical"]
