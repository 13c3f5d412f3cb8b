"""One set of isodose levels and colours for the screen and the plan document
(planning.isodose; the document's display, planning.document.views.dose_display)."""

from __future__ import annotations

import pytest

from app.dose_display import DoseDisplay
from planning.document.views import dose_display
from planning.errors import InputError
from planning.isodose import ISODOSE_COLOURS, STANDARD_ISODOSE_PERCENT, isodose_colours


def test_the_document_draws_the_screens_standard_levels_in_the_screens_colours():
    display = dose_display(60.0, 64.0, "Gy(RBE)")
    assert display.isodose_percent == STANDARD_ISODOSE_PERCENT == DoseDisplay().isodose_percent
    assert display.isodose_rgb == tuple(isodose_colours(STANDARD_ISODOSE_PERCENT))
    assert display.isodose_rgb[0] == ISODOSE_COLOURS[0] == (255, 0, 0)


def test_the_document_draws_the_levels_it_is_given():
    display = dose_display(60.0, 64.0, "Gy(RBE)", (50.0, 103.0, 90.0))
    assert display.isodose_percent == (103.0, 90.0, 50.0)
    assert display.isodose_rgb == ISODOSE_COLOURS[:3]
    with pytest.raises(InputError, match="isodose levels"):
        dose_display(60.0, 64.0, "Gy(RBE)", (95.0, -5.0))
