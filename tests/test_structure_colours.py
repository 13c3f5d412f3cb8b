"""Structure colours: a structure set without ROI Display Colors drew every structure in one
grey (outlines, DVH curves, table swatches: GUI review). Each structure gets a stable colour
by its index in the structure set, the same on every screen and in every document."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from planning.compare.dvh_compare import compare_structures
from planning.dose_grid import DoseGrid
from planning.patient import FALLBACK_COLOURS, Patient
from planning.structure_dose import structure_dose_statistics


def _without_colours(patient: Patient, keep: tuple[str, ...] = ()) -> Patient:
    """``patient`` with no ROI Display Color but on the structures named in ``keep``."""
    ss = patient.structure_set
    assert ss is not None
    structures = tuple(s if s.name in keep else replace(s, colour_rgb=None)
                       for s in ss.structures)
    return replace(patient, structure_set=replace(ss, structures=structures))


def test_structures_without_a_colour_get_distinct_ones_by_their_index(patient) -> None:
    bare = _without_colours(patient, keep=("PTV",))
    ss = bare.structure_set
    colours = ss.display_colours()
    assert len(colours) == len(ss.structures) >= 5
    ptv = ss.names.index("PTV")
    assert colours[ptv] == patient.structure_set.get("PTV").colour_rgb  # its own, kept
    others = [c for i, c in enumerate(colours) if i != ptv]
    assert others == [FALLBACK_COLOURS[i % len(FALLBACK_COLOURS)]
                      for i in range(len(colours)) if i != ptv]
    assert len(set(colours[:len(FALLBACK_COLOURS)])) == min(len(colours),
                                                            len(FALLBACK_COLOURS))
    assert ss.display_colours() == colours  # stable
    assert [ss.display_colour(s) for s in ss.structures] == list(colours)
    with pytest.raises(KeyError, match="not one of"):
        ss.display_colour(patient.structure_set.structures[0])  # another set's


def test_dvhs_and_comparisons_draw_each_structure_in_its_colour(patient) -> None:
    """The DVHs of the Dose tab (structure_dose_statistics) and of the Compare screen
    (compare_structures) give a structure the colour its outline has."""
    bare = _without_colours(patient)
    ss = bare.structure_set
    grid = DoseGrid.covering(DoseGrid(bare.ct.shape, bare.ct.spacing_mm, bare.ct.origin_mm),
                             8.0)
    dose = np.ones(grid.shape, np.float32)
    expected = dict(zip(ss.names, ss.display_colours(), strict=True))
    stats = structure_dose_statistics(bare, dose, grid, 1.0)
    assert len(stats) >= 5
    assert {s.name: s.colour_rgb for s in stats} == {s.name: expected[s.name] for s in stats}
    assert len({s.colour_rgb for s in stats}) == len(stats)
    compared = compare_structures(dose, dose, grid, bare)
    assert {s.name: s.colour_rgb for s in compared} == {s.name: expected[s.name]
                                                        for s in compared}
