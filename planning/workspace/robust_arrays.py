"""A plan's robust evaluation as plain JSON and named arrays, and back (``robust.json`` and the
``robust-<id>/`` folder of a workspace's plan folder, docs/workspace.md).

What is kept is what the application shows of an evaluation: the entries it added to the
plan's report (:data:`planning.robust.ROBUST_REPORT_KEYS`: settings, the scenarios with their
metrics, the worst case, the DVH bands) and the four voxel-wise envelope cubes. The scenario
doses themselves are not kept (the evaluation never keeps them either).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.planner import PlanResult
from planning.robust import RobustResult, scenarios_of_report
from planning.robust_tables import ROBUST_REPORT_KEYS
from planning.workspace.plan_arrays import PlanRecordError

#: Envelope cubes of an evaluation, by array name and RobustResult attribute.
ROBUST_CUBES = ("rbe_min_gy_rbe", "rbe_max_gy_rbe", "physical_min_gy", "physical_max_gy")


def robust_to_record(robust: RobustResult) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """The JSON description and the named arrays of ``robust`` (its nominal plan is kept
    apart, as the plan it belongs to).

    Returns
    -------
    meta : dict
        JSON-serialisable: ``report``, the evaluation's entries of the plan's report
        (``robust``, ``scenarios``, ``worst_case``, ``dvh_bands_gy_rbe``).
    arrays : dict of str to ndarray
        ``rbe_min_gy_rbe``, ``rbe_max_gy_rbe`` (Gy(RBE); Gy under the physical model),
        ``physical_min_gy``, ``physical_max_gy`` (Gy): (nz, ny, nx) float32 on the plan's
        dose grid, voxel-wise minimum and maximum over the scenarios.

    Raises
    ------
    PlanRecordError
        The plan's report lacks the evaluation's entries (not a finished evaluation).
    """
    report = robust.report
    missing = [key for key in ROBUST_REPORT_KEYS if key not in report]
    if missing:
        raise PlanRecordError(f"the plan's report has no {', '.join(missing)} of a robust "
                              "evaluation")
    meta = {"report": {key: report[key] for key in ROBUST_REPORT_KEYS}}
    arrays = {name: np.asarray(getattr(robust, name), np.float32) for name in ROBUST_CUBES}
    return meta, arrays


def robust_from_record(meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]],
                       nominal: PlanResult) -> tuple[RobustResult, dict[str, Any]]:
    """Rebuild the evaluation of :func:`robust_to_record` on its plan ``nominal``.

    ``nominal`` is not changed: the caller adds the returned report entries to
    ``nominal.report`` (as :func:`planning.api.robust_evaluation_of_result` does) once the
    rest of the plan is restored too.

    Returns
    -------
    robust : RobustResult
        Its ``nominal`` is ``nominal``.
    entries : dict
        The report entries of :data:`planning.robust.ROBUST_REPORT_KEYS`.

    Raises
    ------
    PlanRecordError
        A field or cube is missing, of the wrong type, or does not fit the plan's dose grid.
    """
    try:
        entries = meta["report"]
        if not isinstance(entries, dict):
            raise TypeError("report must be an object")
        entries = {key: entries[key] for key in ROBUST_REPORT_KEYS}
        for key in ("robust", "worst_case", "dvh_bands_gy_rbe"):
            if not isinstance(entries[key], dict):
                raise TypeError(f"{key} must be an object")
        for sc in entries["scenarios"]:
            if not isinstance(sc["structures"], dict):
                raise TypeError(f"scenario {sc['name']!r}: structures must be an object")
        scenarios = scenarios_of_report(entries)
        n = int(entries["robust"]["n_scenarios"])
    except (KeyError, IndexError, TypeError, ValueError, OverflowError) as exc:
        raise PlanRecordError(f"missing or malformed robust evaluation {exc!s}") from None
    if not scenarios or len(scenarios) != n:
        raise PlanRecordError(f"the robust evaluation lists {len(scenarios)} scenarios, its "
                              f"settings {n}")
    shape = nominal.dose_grid.shape
    cubes = {}
    for name in ROBUST_CUBES:
        cube = arrays.get(name)
        if cube is None:
            raise PlanRecordError(f"the robust evaluation has no cube {name}")
        if cube.shape != shape or cube.dtype != np.float32:
            raise PlanRecordError(f"robust cube {name} is {cube.dtype} {cube.shape}, the "
                                  f"plan's dose grid float32 {shape}")
        cubes[name] = cube
    return RobustResult(nominal=nominal, scenarios=scenarios, **cubes), entries
