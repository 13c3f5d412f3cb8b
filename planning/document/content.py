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
    dash : tuple of float
        Dash pattern (on, off lengths, points): empty (solid) for the plan's model, one
        pattern per other model.
    """

    structure: str
    colour_rgb: tuple[int, int, int]
    dose: NDArray[np.float64]
    volume_fraction: NDArray[np.float64]
    dash: tuple[float, ...] = ()

    @property
    def dashed(self) -> bool:
        """Whether the line is another model's (not solid)."""
        return bool(self.dash)


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
        Whether its DVH lines are drawn dashed (another model's); False for the plan's model
        (solid) and for doses without lines (the physical dose beside an RBE-weighted plan,
        and the other models of a physical-dose plan, whose DVH axis is Gy).
    note : str
        What the reader must know of the table below it, e.g. why it has no V95 and V107 (a
        dose of another kind than the prescription's); "" for none.
    """

    title: str
    metrics: TextTable
    dashed: bool
    note: str = ""


@dataclass(frozen=True)
class RobustnessSection:
    """The plan's robust evaluation (:mod:`planning.robust`), as the Robustness view and
    ``ionplan robust``'s report.html show it.

    Attributes
    ----------
    settings : TextTable
        Label/value rows: stopping-power error (%), setup error (mm) and directions, the
        combinations, the number of scenarios.
    band_lines : tuple of DvhLine
        Per structure of ``tables``: the nominal DVH (solid) and the lowest and highest DVH
        over the scenarios (the band's edges, dashed); dose in ``unit``.
    band_legend : tuple of (str, tuple of float)
        What the two line styles of ``band_lines`` show.
    unit : str
        Unit of every dose of the section (the plan's: Gy(RBE), or Gy under the physical
        model).
    tables : tuple of (str, TextTable)
        Per structure (the target first, then the organs): its title and one row per
        scenario (named as the evaluation names them, e.g. ``"SPR +3.5% (short)"``) with
        D98, D95, D50, D2, Dmean, Dmax, then the lowest and the highest over the scenarios.
    """

    settings: TextTable
    band_lines: tuple[DvhLine, ...]
    band_legend: tuple[tuple[str, tuple[float, ...]], ...]
    unit: str
    tables: tuple[tuple[str, TextTable], ...]


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
        Unit of every DVH line's dose (the plan's model's: Gy or Gy(RBE)).
    dvh_legend : tuple of (str, tuple of float)
        The line styles and what they show: the plan's model (solid, first), then each other
        model drawn with its dash pattern (none without an exchange view, or for a plan of
        physical dose, whose axis is Gy).
    views : tuple of SliceView
        Axial, coronal, sagittal through the target.
    display : DoseDisplay
        Wash range and isodose levels of ``views``.
    warnings : tuple of str
    robustness : RobustnessSection or None
        The plan's robust evaluation, when it has one.
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
    dvh_legend: tuple[tuple[str, tuple[float, ...]], ...]
    views: tuple[SliceView, ...]
    display: DoseDisplay
    warnings: tuple[str, ...]
    robustness: RobustnessSection | None = None
