"""The planning engine: dose influence, forward dose and the optimizer's matrices of one plan
geometry on one device (see :mod:`planning.engine.engine`)."""

from planning.engine.engine import DoseSums, PlanningEngine, build_influence

__all__ = ["DoseSums", "PlanningEngine", "build_influence"]
