"""What the plan document shows, as plain data: text tables, DVH lines, views, warnings.

:func:`planning.document.from_plan.plan_document` fills it from a computed plan;
:func:`planning.document.pdf.write_plan_pdf` lays it out. Table cells are already formatted
text, so the layout decides nothing about numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planning.document.identity import Identification
from planning.document.views import DoseDisplay, SliceView


@dataclass(frozen=True)
class TextTable:
    """A table of formatted cells.

    Attributes
    ----------
    header : tuple of str
        Column titles (empty for a two-column label/value table).
    rows : tuple of tuple of str
        One tuple of cells per row, as many as ``header`` has (when it has any).
    widths : tuple of float
        Share of the page width of each column (summing to 1); empty: the layout's choice.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    widths: tuple[float, ...] = ()


@dataclass(frozen=True)
class DvhLine:
    """One cumulative DVH curve.

    Attributes
    ----------
    structure : str
    colour_rgb : (r, g, b) ints 0-255
    dose : (n,) float array
        Dose axis, units of the document's DVH.
    volume_fraction : (n,) float array
        Fraction of the structure receiving at least ``dose``, 1 down to 0.
    dashed : bool
        Dashed for a model other than the plan's.
    """

    structure: str
    colour_rgb: tuple[int, int, int]
    dose: NDArray[np.float64]
    volume_fraction: NDArray[np.float64]
    dashed: bool


@dataclass(frozen=True)
class DoseSection:
    """The metrics of one dose of the plan (the plan's model, another model, physical).

    Attributes
    ----------
    title : str
        "RBE-weighted dose, mMKM ... (plan's model)".
    metrics : TextTable
        One row per structure.
    dashed : bool
        Whether its DVH lines are dashed (solid: the plan's model; no lines: physical dose).
    """

    title: str
    metrics: TextTable
    dashed: bool


@dataclass(frozen=True)
class PlanDocument:
    """Everything the plan document shows.

    Attributes
    ----------
    ident : Identification
        Patient, plan, model, date (also on every page's header).
    plan_facts : TextTable
        Label/value rows: prescription, fractions, target, machine, ion, dose grid.
    model_name, model_variant : str
        The RBE model's description and what formulation it is.
    model_parameters : TextTable
        Label/value rows of every parameter of the model (its record).
    beams, objectives, optimizer : TextTable
    sections : tuple of DoseSection
    dvh_lines : tuple of DvhLine
    dvh_unit : str
    dvh_labels : (str, str or None)
        Legend of the solid lines (the plan's model) and of the dashed ones (the other
        model; None without an exchange view).
    views : tuple of SliceView
        Axial, coronal, sagittal through the target.
    display : DoseDisplay
        Wash range and isodose levels of ``views``.
    warnings : tuple of str
    """

    ident: Identification
    plan_facts: TextTable
    model_name: str
    model_variant: str
    model_parameters: TextTable
    beams: TextTable
    objectives: TextTable
    optimizer: TextTable
    sections: tuple[DoseSection, ...]
    dvh_lines: tuple[DvhLine, ...]
    dvh_unit: str
    dvh_labels: tuple[str, str | None]
    views: tuple[SliceView, ...]
    display: DoseDisplay
    warnings: tuple[str, ...]
