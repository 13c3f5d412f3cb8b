"""The plan document: a PDF for the patient record, and names that never overwrite.

:func:`write_plan_document` is what the command line (``ionplan plan``) and the desktop
application ("Plan report...") both call: identification, prescription, RBE model with its
parameters, beams, objectives, optimizer result, views through the target, DVHs, metrics,
warnings and an approval block (:mod:`planning.document.pdf`).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from planning.document.from_plan import plan_document
from planning.document.pdf import write_plan_pdf
from planning.isodose import STANDARD_ISODOSE_PERCENT

if TYPE_CHECKING:
    from planning.planner import PlanResult

__all__ = ["write_plan_document"]


def write_plan_document(result: PlanResult, folder: str | Path, plan_name: str, *,
                        created: datetime.datetime | None = None,
                        isodose_percent: Sequence[float] = STANDARD_ISODOSE_PERCENT,
                        restored: bool = False) -> Path:
    """Write the plan document of ``result`` (isodose lines ``isodose_percent``; ``restored``
    as for :func:`planning.document.from_plan.plan_document`) into ``folder`` under a new name
    (:func:`planning.document.pdf.write_plan_pdf`); return its path."""
    return write_plan_pdf(plan_document(result, plan_name, created=created,
                                        isodose_percent=isodose_percent, restored=restored),
                          folder)
