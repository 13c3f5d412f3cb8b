"""Beam's-eye view of a plan's beam: the target projected along the beam and the spots of each
energy layer, as the GUI's beam view and a report draw them (no Kivy).

All positions are in the beam's-eye-view plane through the isocentre, perpendicular to the
beam (:func:`planning.geometry.lps_to_bev` axes ``u``, ``v``, mm from the isocentre): the
plane the spot positions of a :class:`~planning.beams.SpotMap` are given in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skimage.measure import find_contours

from planning.beams import PRIMARIES_PER_WEIGHT_UNIT, Beam
from planning.dose_grid import DoseGrid
from planning.errors import PlanningError
from planning.geometry import lps_to_bev
from planning.plan import BeamPlan

#: Raster pixel of the projection relative to the smallest CT voxel spacing.
PIXEL_PER_SPACING = 0.5


@dataclass(frozen=True)
class LayerRow:
    """One energy layer of a beam.

    Attributes
    ----------
    index : int
        Layer number (0 = highest energy), as in the spot map.
    energy_mev_u : float
        Beam energy, MeV per nucleon.
    n_spots : int
        Spots of the layer.
    n_spots_delivered : int
        Spots with a weight above zero.
    particles : float
        Primary ions of the layer per fraction (sum of its spot weights).
    """

    index: int
    energy_mev_u: float
    n_spots: int
    n_spots_delivered: int
    particles: float


@dataclass(frozen=True)
class LayerSpots:
    """The spots of one layer: positions in the isocentre plane and primary ions per fraction.

    Attributes
    ----------
    u_mm, v_mm : (n,) float arrays
        Spot positions, mm from the isocentre.
    particles : (n,) float array
        Primary ions per fraction of each spot.
    """

    u_mm: NDArray[np.float64]
    v_mm: NDArray[np.float64]
    particles: NDArray[np.float64]


def target_projection(mask: ArrayLike, ct_grid: DoseGrid, beam: Beam, *,
                      sad_mm: tuple[float, float] | None = None
                      ) -> list[NDArray[np.float64]]:
    """Outline of a structure projected along the beam onto the isocentre plane.

    Every voxel of ``mask`` is projected with its extent (its centre and its eight corners);
    the covered area of the plane is rasterised at :data:`PIXEL_PER_SPACING` times the
    smallest voxel spacing and outlined.

    Parameters
    ----------
    mask : (nz, ny, nx) bool array
        The structure on ``ct_grid``.
    ct_grid : DoseGrid
        The CT grid (LPS).
    beam : Beam
        Isocentre and beam axes.
    sad_mm : (sad_u, sad_v), optional
        Virtual source-axis distances, mm: points are projected along the diverging rays
        from the sources (as spots are placed). Default: parallel projection.

    Returns
    -------
    list of (n, 2) float arrays
        Closed polylines ``(u, v)`` in mm (first point repeated at the end), outer outlines
        and holes alike.

    Raises
    ------
    PlanningError
        If the mask is not on the grid or is empty.
    """
    m = np.asarray(mask, dtype=bool)
    if m.shape != tuple(ct_grid.shape):
        raise PlanningError(f"{beam.label}: structure mask {m.shape} is not on the CT grid "
                            f"{tuple(ct_grid.shape)}")
    flat = np.flatnonzero(m)
    if flat.size == 0:
        raise PlanningError(f"{beam.label}: the structure to project is empty")
    centres = ct_grid.voxel_centers_lps(flat)
    sz, sy, sx = (float(s) for s in ct_grid.spacing_mm)
    offsets = np.array([[0.0, 0.0, 0.0]] + [[a * sx / 2, b * sy / 2, c * sz / 2]
                                              for a in (-1, 1) for b in (-1, 1)
                                              for c in (-1, 1)])
    points = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
    bev = lps_to_bev(points, beam.isocenter_mm, beam.frame)
    u, v = bev[:, 0], bev[:, 1]
    if sad_mm is not None:
        u = u * sad_mm[0] / (sad_mm[0] + bev[:, 2])
        v = v * sad_mm[1] / (sad_mm[1] + bev[:, 2])
    pixel = PIXEL_PER_SPACING * min(sx, sy, sz)
    # Each voxel's projected box (corners' extent) is filled, so no gaps at oblique angles.
    u_box = u.reshape(-1, 9)
    v_box = v.reshape(-1, 9)
    u0, v0 = float(u.min()) - 2 * pixel, float(v.min()) - 2 * pixel
    nu = int(np.ceil((u.max() - u0) / pixel)) + 3
    nv = int(np.ceil((v.max() - v0) / pixel)) + 3
    image = np.zeros((nu, nv), dtype=np.int32)
    lo_u = np.rint((u_box.min(axis=1) - u0) / pixel).astype(int)
    hi_u = np.rint((u_box.max(axis=1) - u0) / pixel).astype(int)
    lo_v = np.rint((v_box.min(axis=1) - v0) / pixel).astype(int)
    hi_v = np.rint((v_box.max(axis=1) - v0) / pixel).astype(int)
    # Summed-area marking: +1/-1 at the box corners, then two cumulative sums.
    np.add.at(image, (lo_u, lo_v), 1)
    np.add.at(image, (hi_u, lo_v), -1)
    np.add.at(image, (lo_u, hi_v), -1)
    np.add.at(image, (hi_u, hi_v), 1)
    covered = np.cumsum(np.cumsum(image, axis=0), axis=1) > 0
    # Pixel (i, j) covers [u0 + i*p, u0 + (i+1)*p): its edge sits half a pixel from its
    # centre, which is where the 0.5 contour of the pixel-centre samples runs.
    outlines = []
    for line in find_contours(covered.astype(np.float32), 0.5):
        uv = np.column_stack([u0 + (line[:, 0] + 0.5) * pixel, v0 + (line[:, 1] + 0.5) * pixel])
        if not np.array_equal(uv[0], uv[-1]):
            uv = np.vstack([uv, uv[:1]])
        outlines.append(uv)
    return outlines


def layer_table(beam_plan: BeamPlan) -> list[LayerRow]:
    """Energy layers of a beam, highest energy first, with their spots and particles."""
    spots = beam_plan.spots
    particles = np.asarray(beam_plan.weights, dtype=np.float64) * PRIMARIES_PER_WEIGHT_UNIT
    rows = []
    for index in np.unique(spots.layer):
        sel = spots.layer == index
        rows.append(LayerRow(int(index), float(spots.energy_mev_u[sel][0]),
                             int(np.count_nonzero(sel)),
                             int(np.count_nonzero(particles[sel] > 0)),
                             float(particles[sel].sum())))
    return sorted(rows, key=lambda r: -r.energy_mev_u)


def layer_spots(beam_plan: BeamPlan, index: int) -> LayerSpots:
    """Positions and primary ions per fraction of the spots of layer ``index``.

    Raises
    ------
    PlanningError
        If the beam has no such layer.
    """
    spots = beam_plan.spots
    sel = spots.layer == index
    if not np.any(sel):
        raise PlanningError(f"{beam_plan.beam.label}: no energy layer {index}")
    particles = np.asarray(beam_plan.weights, dtype=np.float64)[sel] * PRIMARIES_PER_WEIGHT_UNIT
    return LayerSpots(np.asarray(spots.u_mm, dtype=np.float64)[sel],
                      np.asarray(spots.v_mm, dtype=np.float64)[sel], particles)
