"""The plan configuration file: objectives, optimizer settings and LEM I tissues per structure.

Objectives
----------
Without a configuration file the objectives are, with ``p`` the prescription:

- target: ``squared_deviation`` to ``p`` (weight 100), ``min_dose`` at ``p`` (weight
  300: coverage holds against the rings below, also between the optimizer's points) and
  ``max_dose`` at 1.025 ``p`` (weight 500: each is a mean over the target's points, so a
  hot spot of a few points needs a strong weight);
- the dose fall-off around the target, on generated shells (:mod:`planning.regions`):
  ``"<target> ring 0-5 mm"`` ``max_dose`` at ``p`` (weight 100: no hot spot next to the
  target),
  ``"<target> ring 5-15 mm"`` ``max_dose`` at 0.8 ``p`` (weight 20: the gradient) and
  ``"<target> ring 15-30 mm"`` ``max_dose`` at 1.05 ``p`` (weight 10: the body maximum where
  a plan's hot spots outside the target arise; beyond 30 mm the entrance dose of a carbon field
  stays far below it, and the report gives the body's maximum);
- every ROI of interpreted type ORGAN or AVOIDANCE: ``max_dose`` at ``p`` (weight 5) and
  ``mean_dose`` at 0.3 ``p`` (weight 1): guards that spare what the target leaves to spare
  without competing with its coverage (give real organ limits in a configuration file).

A configuration file (TOML or JSON) holds ``objectives``, a list of tables with ``structure``,
``type``, ``dose_gy_rbe`` (total plan dose), ``weight`` and, for DVH types,
``volume_fraction``; an objective on the same structure and type as a default replaces it, the
others are added. ``replace_defaults = true`` drops all defaults. An optional ``[optimizer]``
table sets :class:`planning.optimization.OptimizerSettings` fields (``max_iterations``,
``min_spot_weight``, ``tolerance``, ``max_spot_weight``); the planner's default is 100
iterations.

Delivery limits
---------------
An optional ``[delivery]`` table overrides the machine's ``min_particles_per_spot`` and
``max_particles_per_spot`` (primary ions per spot and fraction, see :mod:`planning.machine`).
The planner bounds every spot weight by them: spots the optimizer drives below half the minimum
are removed and the plan is re-optimized without them, the others lie between the minimum and
the maximum. Where ``[optimizer]`` also sets ``min_spot_weight`` / ``max_spot_weight``
(10^6 ions), the stricter limit wins.

Tissues (LEM I only)
--------------------
An optional ``tissues`` table maps structure names to LEM I tissues, each a class name
(``chordoma``, ``hsg``, ``v79``) or ``"alpha_x,beta_x,D_t"`` (1/Gy, 1/Gy^2, Gy), optionally
followed by ``:averaged`` (the default) or ``:central``, the LEM I rapid scheme. The dose-grid
voxels of a listed structure are evaluated (in the optimization and in the dose cubes) with
LEM I for its tissue; voxels in no listed structure use the plan's tissue (``--tissue`` or the
default class). Where listed structures overlap, the first listed wins. With any other RBE
model a ``tissues`` table is an error.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from planning.errors import InputError, PlanningError
from planning.optimization import Objective, OptimizerSettings
from planning.patient import Patient
from planning.rbe import Tissue, parse_tissue
from planning.regions import region_name, ring_name

#: The default shells around the target: (inner mm, outer mm, maximum as a share of the
#: prescription, weight); see the module docstring.
DEFAULT_RINGS = ((0.0, 5.0, 1.0, 100.0), (5.0, 15.0, 0.8, 20.0), (15.0, 30.0, 1.05, 10.0))

#: ROI interpreted types that get the default organ-at-risk objective.
OAR_TYPES = ("ORGAN", "AVOIDANCE")
#: Optimizer settings without an ``[optimizer]`` table: 100 iterations reach D95/D5 within
#: 1 % of the prescription on the demo patient; more mostly polish the objective value. No
#: minimum spot weight of its own: the planner's comes from the delivery limits.
PLANNER_OPTIMIZER = OptimizerSettings(max_iterations=100, min_spot_weight=0.0)


@dataclass(frozen=True)
class PlanConfig:
    """Objectives, optimizer settings and LEM I tissues per structure (in the file's order)
    read from a configuration file.

    ``path`` is the file it was read from (``""`` for a configuration made in code): every
    error found while applying the configuration names it (:func:`config_key`).
    """

    objectives: tuple[Objective, ...] = ()
    replace_defaults: bool = False
    optimizer: OptimizerSettings = field(default_factory=lambda: PLANNER_OPTIMIZER)
    tissues: tuple[tuple[str, Tissue], ...] = ()
    min_particles_per_spot: float | None = None
    max_particles_per_spot: float | None = None
    path: str = ""

    def __post_init__(self) -> None:
        low, top = self.min_particles_per_spot, self.max_particles_per_spot
        if low is not None and not (math.isfinite(low) and low >= 0):
            raise InputError(f"[delivery] min_particles_per_spot must be >= 0, got {low}")
        if top is not None and not (math.isfinite(top) and top > (low or 0.0)):
            raise InputError(f"[delivery] max_particles_per_spot must be finite and above the "
                             f"minimum, got {top}")


#: The keys of one objective in a plan configuration file.
OBJECTIVE_KEYS = frozenset({"structure", "type", "dose_gy_rbe", "weight", "volume_fraction"})


def _number(value: object, what: str) -> float:
    """A number of the file (true and false are not numbers, nor are infinities)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def load_plan_config(path: str | os.PathLike[str]) -> PlanConfig:
    """Read a TOML (``.toml``) or JSON objectives file (see the module docstring).

    Raises
    ------
    InputError
        Unreadable or malformed file, unknown keys, bad values.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except OSError as exc:
        raise InputError(f"{p}: cannot read the plan configuration ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} "
                         f"({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{p}: the configuration must be a table/object")
    unknown = set(data) - {"objectives", "optimizer", "replace_defaults", "tissues", "delivery"}
    if unknown:
        raise InputError(f"{p}: unknown keys {sorted(unknown)}; expected objectives, "
                         "optimizer, replace_defaults, tissues, delivery")
    objectives = []
    for i, item in enumerate(data.get("objectives", [])):
        if not isinstance(item, dict):
            raise InputError(f"{p}: objective {i + 1} must be a table/object")
        misspelt = set(item) - OBJECTIVE_KEYS
        if misspelt:  # a misspelt "weight" fell back to 1 without a word
            raise InputError(f"{p}: objective {i + 1}: unknown keys {sorted(misspelt)}; "
                             f"expected {', '.join(sorted(OBJECTIVE_KEYS))}")
        try:
            vf = item.get("volume_fraction")
            if vf is not None and str(item.get("type")) not in ("max_dvh", "min_dvh"):
                raise InputError(f"{p}: objective {i + 1}: volume_fraction belongs to the "
                                 f"max_dvh and min_dvh types, not {item.get('type')!r}")
            objectives.append(Objective(
                structure=str(item["structure"]), kind=str(item["type"]),
                dose_gy_rbe=_number(item["dose_gy_rbe"], "dose_gy_rbe"),
                weight=_number(item.get("weight", 1.0), "weight"),
                volume_fraction=None if vf is None else _number(vf, "volume_fraction")))
        except KeyError as exc:
            raise InputError(f"{p}: objective {i + 1} lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"{p}: objective {i + 1}: {exc}") from None
        except PlanningError as exc:
            raise InputError(f"{p}: {exc}") from None
    opt = data.get("optimizer", {})
    allowed = {f.name for f in fields(OptimizerSettings)}
    if not isinstance(opt, dict) or set(opt) - allowed:
        raise InputError(f"{p}: [optimizer] may hold only {', '.join(sorted(allowed))}")
    try:
        settings = OptimizerSettings(**{"max_iterations": PLANNER_OPTIMIZER.max_iterations,
                                        "min_spot_weight": PLANNER_OPTIMIZER.min_spot_weight,
                                        **opt})
    except (TypeError, PlanningError) as exc:
        raise InputError(f"{p}: [optimizer]: {exc}") from None
    tissue_table = data.get("tissues", {})
    if not isinstance(tissue_table, dict) or not all(
            isinstance(v, str) for v in tissue_table.values()):
        raise InputError(f"{p}: tissues must map structure names to a tissue class name or "
                         "\"alpha_x,beta_x,D_t\"")
    try:
        tissues = tuple((str(k), parse_tissue(v)) for k, v in tissue_table.items())
    except InputError as exc:
        raise InputError(f"{p}: tissues: {exc}") from None
    delivery = data.get("delivery", {})
    limits = ("min_particles_per_spot", "max_particles_per_spot")
    if not isinstance(delivery, dict) or set(delivery) - set(limits):
        raise InputError(f"{p}: [delivery] may hold only {', '.join(limits)}")
    replace = data.get("replace_defaults", False)
    if not isinstance(replace, bool):  # bool("false") is True: only true or false
        raise InputError(f"{p}: replace_defaults must be true or false, got {replace!r}")
    try:
        values = {k: float(v) for k, v in delivery.items()}
        return PlanConfig(tuple(objectives), replace, settings, tissues, **values, path=str(p))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{p}: [delivery]: {exc}") from None
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None


def config_key(config: PlanConfig, key: str) -> str:
    """Where a value of ``config`` comes from, to begin a message: ``"plan.toml: tissues"``,
    or ``key`` alone for a configuration made in code."""
    return f"{config.path}: {key}" if config.path else key


def check_config_structures(config: PlanConfig, patient: Patient) -> None:
    """Check that every structure a configuration names is one of the patient's, before any
    long work: each objective's (a ROI, or a generated ring around one,
    :mod:`planning.regions`) and each tissue's (a ROI).

    Raises
    ------
    PlanningError
        Naming the configuration's file (when it was read from one), the objective (1-based,
        in the file's order) or tissue, and what is missing.
    """
    for i, o in enumerate(config.objectives, 1):
        try:
            region_name(patient, o.structure)
        except PlanningError as exc:
            raise PlanningError(f"{config_key(config, f'objective {i}')} ({o.kind} on "
                                f"{o.structure!r}): {exc}") from None
    ss = patient.structure_set
    for name, _ in config.tissues:
        try:
            if ss is None:
                raise KeyError(f"the CT has no structure set, so no structure {name!r}")
            ss.get(name)
        except KeyError as exc:
            raise PlanningError(f"{config_key(config, 'tissues')}: {exc.args[0]}") from None


def default_objectives(patient: Patient, target: str, total_dose_gy_rbe: float,
                       ring_scale: float = 1.0) -> list[Objective]:
    """The default objectives of the module docstring; the rings' maxima multiplied by
    ``ring_scale`` (>= 1: where the tissue around the target responds more strongly than
    the target's own, :func:`planning.engine.problem.surrounding_tissue_ratio`)."""
    p = total_dose_gy_rbe
    out = [Objective(target, "squared_deviation", p, 100.0),
           Objective(target, "min_dose", p, 300.0),
           Objective(target, "max_dose", 1.025 * p, 500.0),
           *(Objective(ring_name(target, inner, outer), "max_dose",
                       share * p * max(ring_scale, 1.0), weight)
             for inner, outer, share, weight in DEFAULT_RINGS)]
    assert patient.structure_set is not None
    for s in patient.structure_set.structures:
        if s.interpreted_type.upper() in OAR_TYPES and s.name != target:
            out.append(Objective(s.name, "max_dose", p, 5.0))
            out.append(Objective(s.name, "mean_dose", 0.3 * p, 1.0))
    return out


def merge_objectives(defaults: Sequence[Objective], config: PlanConfig) -> list[Objective]:
    """Defaults, with those of the same (structure, type) as a configured one replaced.
    Structure names match without regard to case, as everywhere downstream (a configured
    "gtv" replaces the default on "GTV")."""
    if config.replace_defaults:
        return list(config.objectives)
    given = {(o.structure.casefold(), o.kind) for o in config.objectives}
    return [o for o in defaults
            if (o.structure.casefold(), o.kind) not in given] + list(config.objectives)

