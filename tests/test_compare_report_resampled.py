"""report.html's "resampled" column names the side that was resampled, whatever its label.

compare() resamples only a side whose grid differs from the common grid. Here A has the finer
grid and lies inside B, so the common grid is A's own and only B is resampled: the answer is
known from the grids alone (planning.compare.resample.common_grid's docstring).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from planning.compare.comparison import CompareSettings, compare
from planning.compare.html_report import render_html
from planning.compare.sources import DoseSide
from planning.dose_grid import DoseGrid

FRAME = "1.2.826.0.1.3680043.8.498.1"

#: A: 2 mm voxels, centres 0..18 mm; B: 3 mm voxels, centres -6..51 mm, covering A.
GRID_A = DoseGrid((10, 10, 10), (2.0,) * 3, (0.0, 0.0, 0.0))
GRID_B = DoseGrid((20, 20, 20), (3.0,) * 3, (-6.0, -6.0, -6.0))


def _side(label: str, grid: DoseGrid) -> DoseSide:
    return DoseSide(label=label, source=f"dose of {label}",
                    dose_gy=np.full(grid.shape, 10.0, np.float32), grid=grid,
                    dose_type="EFFECTIVE", frame_of_reference_uid=FRAME)


def _resampled_column(html: str) -> dict[str, str]:
    """{side label: resampled cell} from the Doses table of report.html."""
    table = html.split("<h2>Doses</h2>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    header = re.findall(r"<th[^>]*>(.*?)</th>", rows[0])
    column = header.index("resampled")
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows[1:]]
    return {c[0]: c[column] for c in cells}


@pytest.mark.parametrize("labels", [("A", "B"), ("our plan", "partner RT Dose"), ("B", "A")],
                         ids=["roles", "own-labels", "swapped-labels"])
def test_resampled_column_marks_the_resampled_side_for_any_labels(labels):
    label_a, label_b = labels
    result = compare(_side(label_a, GRID_A), _side(label_b, GRID_B),
                     settings=CompareSettings(cross_model=False, gamma=((3.0, 3.0),)))
    assert result.grid.shape == GRID_A.shape  # A's grid is the common one: only B resampled
    assert _resampled_column(render_html(result)) == {label_a: "no", label_b: "yes"}
