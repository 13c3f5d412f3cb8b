"""The standard isodose levels and their colours, one set for the app's views and the plan
document, so that the printed plan shows the lines the physicist reviewed on screen."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Isodose levels, % of the prescription, highest first: ICRU 50's 107 % and 95 %, then the
#: fall-off.
STANDARD_ISODOSE_PERCENT: tuple[float, ...] = (107.0, 95.0, 80.0, 50.0, 30.0)

#: Isodose colours (RGB 0..255), from the highest level down.
ISODOSE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 128, 0), (255, 255, 0), (0, 255, 0), (0, 255, 255), (0, 128, 255),
    (160, 0, 255), (255, 0, 255),
)


def isodose_colours(levels: Sequence[float]) -> list[tuple[int, int, int]]:
    """A colour per isodose level (any order): red for the highest, then orange, yellow, ...
    (:data:`ISODOSE_COLOURS`, repeated after the eighth)."""
    order = np.argsort(-np.asarray(levels, dtype=np.float64), kind="stable")
    colours: list[tuple[int, int, int]] = [(0, 0, 0)] * len(levels)
    for rank, i in enumerate(order):
        colours[int(i)] = ISODOSE_COLOURS[rank % len(ISODOSE_COLOURS)]
    return colours
