"""The document's three slice views through the target: CT, dose colour wash, contours.

Each view is a square window centred on the target's centre (the mean position of its CT
voxels), as wide as the target's largest extent plus a margin, sampled on square pixels in
DICOM patient coordinates (LPS). The view is independent of what the screen shows (zoom, pan,
slice). The CT (soft-tissue window) and the dose colour wash are pixels; structure outlines
and isodose lines are polylines in pixel coordinates, drawn as vectors by the PDF.

Orientation (radiological): axial with anterior up and the patient's left on the right;
coronal with superior up and the patient's left on the right; sagittal with superior up and
anterior on the left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates
from skimage.measure import find_contours

from planning.compare.images import colour_map, grey_ct, overlay
from planning.dose_grid import DoseGrid
from planning.errors import InputError
from planning.isodose import STANDARD_ISODOSE_PERCENT, isodose_colours
from planning.patient import Patient

#: Pixels along each side of a view.
VIEW_PIXELS = 300
#: Opacity of the dose colour wash over the CT.
WASH_ALPHA = 0.5
#: Colour of a DVH line of a structure the structure set does not hold (the structures' own:
#: :meth:`planning.patient.StructureSet.display_colours`).
DEFAULT_OUTLINE_RGB = (255, 255, 0)

# Row and column directions (LPS unit vectors), the letters at the top, bottom, left and
# right edge, and the LPS axis (0 = x, 1 = y, 2 = z) normal to each view.
_AXES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int], str, int]] = {
    "axial": ((0, 1, 0), (1, 0, 0), "APRL", 2),
    "coronal": ((0, 0, -1), (1, 0, 0), "SIRL", 1),
    "sagittal": ((0, 0, -1), (0, 1, 0), "SIAP", 0),
}


@dataclass(frozen=True)
class OutlineSet:
    """Closed or open polylines of one structure or isodose level on a view.

    Attributes
    ----------
    label : str
        Structure name, or the isodose level ("95 %").
    colour_rgb : (r, g, b) ints 0-255
    lines : tuple of (n, 2) float arrays
        Points as (column, row) pixel coordinates of the view, row 0 at the top.
    """

    label: str
    colour_rgb: tuple[int, int, int]
    lines: tuple[NDArray[np.float64], ...]


@dataclass(frozen=True)
class SliceView:
    """One view of the document.

    Attributes
    ----------
    name : {"axial", "coronal", "sagittal"}
    rgb : (VIEW_PIXELS, VIEW_PIXELS, 3) uint8 array
        CT with the dose wash, row 0 at the top.
    pixel_mm : float
        Side of a pixel, mm.
    plane_mm : float
        Position of the plane along its normal (z, y or x), mm.
    edge_letters : str
        Patient directions at the top, bottom, left and right edge ("APRL").
    structures, isodoses : tuple of OutlineSet
        Outlines of the structures crossing the plane; isodose lines, highest level first.
    focus : str
        What the planes go through ("the centre of PTV", or the dose maximum).
    """

    name: str
    rgb: NDArray[np.uint8]
    pixel_mm: float
    plane_mm: float
    edge_letters: str
    structures: tuple[OutlineSet, ...]
    isodoses: tuple[OutlineSet, ...]
    focus: str


@dataclass(frozen=True)
class DoseDisplay:
    """How the dose is shown: wash range and isodose levels.

    Attributes
    ----------
    reference_dose : float
        The 100 % of the isodose levels, dose units: the prescription, or the dose's maximum
        for a dose of another kind than the prescription's (``reference_name``).
    wash_min, wash_max : float
        Dose where the wash starts (none below) and where its colour scale ends.
    isodose_percent : tuple of float
        Isodose levels, % of ``reference_dose``, highest first.
    isodose_rgb : tuple of (r, g, b)
        Colour of each level.
    unit : str
        "Gy(RBE)" or "Gy".
    reference_name : str
        What ``reference_dose`` is: ``"prescription"`` or ``"maximum"``.
    """

    reference_dose: float
    wash_min: float
    wash_max: float
    isodose_percent: tuple[float, ...]
    isodose_rgb: tuple[tuple[int, int, int], ...]
    unit: str
    reference_name: str = "prescription"

    @property
    def reference_text(self) -> str:
        """``"100 % = 57.6 Gy(RBE) (prescription)"``, as the app's Dose tab says it."""
        return f"100 % = {self.reference_dose:.4g} {self.unit} ({self.reference_name})"


def dose_display(reference_dose: float, dose_max: float, unit: str,
                 isodose_percent: Sequence[float] = STANDARD_ISODOSE_PERCENT,
                 reference_name: str = "prescription") -> DoseDisplay:
    """The document's display: wash from 10 % of the reference (``reference_name`` says what
    it is) to the larger of the dose maximum and 110 % of the reference; ``isodose_percent``
    (the app's on screen, else the standard levels) in the app's colours
    (:mod:`planning.isodose`)."""
    if not (np.isfinite(reference_dose) and reference_dose > 0):
        raise InputError(f"the reference dose must be > 0, got {reference_dose}")
    levels = tuple(sorted((float(v) for v in isodose_percent), reverse=True))
    if not all(np.isfinite(v) and v > 0 for v in levels):
        raise InputError(f"isodose levels must be percentages > 0, got {list(isodose_percent)}")
    return DoseDisplay(reference_dose, 0.1 * reference_dose,
                       max(float(dose_max), 1.1 * reference_dose), levels,
                       tuple(isodose_colours(levels)), unit, reference_name)


def _sample(volume: NDArray[np.generic], grid: DoseGrid, points_lps: NDArray[np.float64],
            order: int, outside: float) -> NDArray[np.float64]:
    """Values of ``volume`` on ``grid`` at (..., 3) LPS points (linear or nearest)."""
    origin = np.asarray(grid.origin_mm, dtype=np.float64)
    spacing_xyz = np.asarray(grid.spacing_mm, dtype=np.float64)[::-1]
    index_xyz = (points_lps - origin) / spacing_xyz
    coords = np.moveaxis(index_xyz[..., ::-1], -1, 0)  # (3, ...) in z, y, x order
    return map_coordinates(np.asarray(volume, dtype=np.float32), coords, order=order,
                           mode="constant", cval=outside)


def _plane_points(centre_mm: NDArray[np.float64], name: str, half_width_mm: float
                  ) -> tuple[NDArray[np.float64], float]:
    rows, cols, _, _ = _AXES[name]
    pixel_mm = 2.0 * half_width_mm / VIEW_PIXELS
    steps = (np.arange(VIEW_PIXELS) - (VIEW_PIXELS - 1) / 2.0) * pixel_mm
    r, c = np.asarray(rows, np.float64), np.asarray(cols, np.float64)
    points = (np.asarray(centre_mm, np.float64) + steps[:, None, None] * r
              + steps[None, :, None] * c)
    return points, pixel_mm


def _outlines(plane: NDArray[np.float64], level: float) -> tuple[NDArray[np.float64], ...]:
    """Lines of ``plane == level`` as (column, row) pixel points; edges closed by padding."""
    padded = np.pad(plane, 1, constant_values=min(float(plane.min()), level) - 1.0)
    return tuple(np.ascontiguousarray(rc[:, ::-1] - 1.0)
                 for rc in find_contours(padded, level) if len(rc) >= 3)


def view_focus(patient: Patient, target: str, dose_grid: DoseGrid,
               dose: NDArray[np.floating]) -> tuple[NDArray[np.float64], float, str]:
    """Centre (LPS, mm), half width (mm) and description of the views: the centre of the
    target's CT voxels and its largest extent plus a margin, else (no such structure, or no
    voxels) the dose maximum with a 75 mm half width."""
    ct = patient.ct
    ct_grid = DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm)
    voxels = np.zeros(0, dtype=np.int64)
    if patient.structure_set is not None:
        try:
            voxels = np.flatnonzero(patient.structure_set.get(target).mask.to_dense())
        except KeyError:
            pass
    if voxels.size:
        points = ct_grid.voxel_centers_lps(voxels)
        extent = float((points.max(axis=0) - points.min(axis=0)).max())
        return points.mean(axis=0), max(extent + 30.0, 75.0), f"the centre of {target}"
    peak = int(np.argmax(np.asarray(dose)))
    return (dose_grid.voxel_centers_lps([peak])[0], 75.0,
            f"the dose maximum (no structure {target!r} with voxels)")


def target_views(patient: Patient, target: str, dose_grid: DoseGrid,
                 dose: NDArray[np.floating], display: DoseDisplay
                 ) -> tuple[SliceView, SliceView, SliceView]:
    """Axial, coronal and sagittal views through the centre of ``target``.

    Parameters
    ----------
    patient : Patient
        CT and structure set.
    target : str
        Target structure name.
    dose_grid : DoseGrid
        Grid of ``dose``, in the CT's frame.
    dose : (nz, ny, nx) float array on ``dose_grid``
        The dose to wash and outline (units of ``display``).
    display : DoseDisplay

    Without the target in the structure set (a received plan may name another), the views
    go through the dose maximum (:func:`view_focus`).
    """
    ct = patient.ct
    ct_grid = DoseGrid(ct.shape, ct.spacing_mm, ct.origin_mm)
    centre, half_width, focus = view_focus(patient, target, dose_grid, dose)
    structure_set = patient.structure_set
    masks = [] if structure_set is None else [  # in the colours the app draws them in
        (s.name, colour, s.mask.to_dense())
        for s, colour in zip(structure_set.structures, structure_set.display_colours(),
                             strict=True)]
    views = []
    for name, (_, _, letters, normal) in _AXES.items():
        lps, pixel_mm = _plane_points(centre, name, half_width)
        hu = _sample(ct.hu, ct_grid, lps, 1, -1000.0)
        values = _sample(dose, dose_grid, lps, 1, 0.0)
        wash = colour_map(values, display.wash_min, display.wash_max, "dose")
        rgb = overlay(grey_ct(hu), wash, values >= display.wash_min, WASH_ALPHA)
        outlines = []
        for label, colour, mask in masks:
            inside = _sample(mask.astype(np.float32), ct_grid, lps, 0, 0.0)
            if inside.any():
                outlines.append(OutlineSet(label, colour, _outlines(inside, 0.5)))
        isodoses = tuple(
            OutlineSet(f"{p:g} %", c, _outlines(values, p / 100.0 * display.reference_dose))
            for p, c in zip(display.isodose_percent, display.isodose_rgb, strict=True))
        views.append(SliceView(name, rgb, pixel_mm, float(centre[normal]), letters,
                               tuple(outlines), isodoses, focus))
    return views[0], views[1], views[2]
