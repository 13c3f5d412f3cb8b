"""report.json text: strict JSON of a report dict (the one format every report file uses).

A report holds NumPy scalars and NaN where a quantity is undefined (the homogeneity index of a
structure without dose); JSON has neither, and a parser in strict mode (or another language)
refuses ``NaN``. Both become plain numbers and ``null`` here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def finite_json(value: Any) -> Any:
    """``value`` with NumPy scalars made Python numbers and NaN/inf made None (nested dicts,
    lists and tuples walked)."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_json_text(report: Any) -> str:
    """The text of a report.json: strict JSON (no NaN), indented, ending in a newline."""
    return json.dumps(finite_json(report), indent=1, allow_nan=False) + "\n"
