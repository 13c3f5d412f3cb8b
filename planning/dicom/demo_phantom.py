"""A procedurally generated head phantom: CT numbers, structure masks and their contours.

Deterministic: the same arrays on every call (fixed geometry, noise from a seeded generator).
The phantom is built from ellipsoids and cylinders in patient coordinates (LPS, mm; +x patient
left, +y posterior, +z superior), evaluated at the voxel centres of a 256 x 256 x 88 grid
(1 mm in-plane, 2.5 mm slices, head first supine orientation):

========================  ===========  =====================================================
tissue                    HU (mean)    shape
========================  ===========  =====================================================
air around the head       -1000
scalp, face, neck         +40          ellipsoid head (144 x 184 x 176 mm) + neck cylinder
skull                     +1500/+1000  7 mm shell (tables / diploe) under 5 mm of scalp,
                                       skull base (+1300), orbit walls (+1200)
brain                     +35          inside the skull
ventricles                +8           two small ellipsoids
brainstem                 +32          ellipsoid through the foramen magnum
GTV (tumour)              +55          ellipsoid 4 mm to the left of the brainstem
eyes (in orbital fat)     +12 (-85)    spheres, 3 mm bony orbit walls
sinus (air cavity)        -1000        ellipsoid with a 2 mm bony wall (+800)
cervical spine            +700         cylinder with a canal (+30)
========================  ===========  =====================================================

Gaussian noise of 6 HU is added everywhere. Structures: External, Skull, Brain, Sinus, GTV,
PTV (GTV + 3 mm, anisotropic ellipsoid), Brainstem, Eye_L, Eye_R. Their contours are the
0.5-level isolines of the masks (so rasterizing them at voxel centres gives the masks back
exactly), with collinear vertices removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from skimage.measure import find_contours

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]

SHAPE_ZYX = (88, 256, 256)
SPACING_MM = (2.5, 1.0, 1.0)  # (z, y, x)
ORIGIN_MM = (-127.5, -127.5, -100.0)  # (x, y, z) of voxel (0, 0, 0)
NOISE_HU = 6.0
NOISE_SEED = 20240101


@dataclass(frozen=True)
class DemoRoi:
    """Name, ROI Interpreted Type and display colour of one phantom structure."""

    name: str
    interpreted_type: str
    colour_rgb: tuple[int, int, int]


#: The phantom's structures, in structure-set order (ROI numbers 1, 2, ...).
DEMO_ROIS: tuple[DemoRoi, ...] = (
    DemoRoi("External", "EXTERNAL", (0, 255, 0)),
    DemoRoi("Skull", "ORGAN", (255, 255, 200)),
    DemoRoi("Brain", "ORGAN", (255, 170, 170)),
    DemoRoi("Sinus", "CAVITY", (120, 200, 255)),
    DemoRoi("GTV", "GTV", (255, 0, 0)),
    DemoRoi("PTV", "PTV", (255, 128, 0)),
    DemoRoi("Brainstem", "ORGAN", (0, 128, 255)),
    DemoRoi("Eye_L", "ORGAN", (255, 0, 255)),
    DemoRoi("Eye_R", "ORGAN", (160, 0, 255)),
)


@dataclass(frozen=True, eq=False)
class DemoPhantom:
    """The phantom on its grid.

    Attributes
    ----------
    hu : (88, 256, 256) int16 array
        CT numbers, axes along +z, +y, +x LPS.
    masks : dict of str to (88, 256, 256) bool array
        Structure masks keyed by ROI name (order of :data:`DEMO_ROIS`).
    """

    hu: NDArray[np.int16]
    masks: dict[str, BoolArray]


def axis_positions_mm() -> tuple[FloatArray, FloatArray, FloatArray]:
    """Voxel-centre coordinates ``z_mm (nz,), y_mm (ny,), x_mm (nx,)`` of the phantom grid."""
    nz, ny, nx = SHAPE_ZYX
    ox, oy, oz = ORIGIN_MM
    sz, sy, sx = SPACING_MM
    return (
        oz + sz * np.arange(nz, dtype=np.float64),
        oy + sy * np.arange(ny, dtype=np.float64),
        ox + sx * np.arange(nx, dtype=np.float64),
    )


class _Grid:
    """Shape tests on the phantom grid, each evaluated only inside its bounding box."""

    def __init__(self) -> None:
        self.z, self.y, self.x = axis_positions_mm()

    @staticmethod
    def _range(coords: FloatArray, lo: float, hi: float) -> slice:
        idx = np.flatnonzero((coords >= lo) & (coords <= hi))
        return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)

    def ellipsoid(
        self, centre: tuple[float, float, float], semi: tuple[float, float, float]
    ) -> BoolArray:
        """Voxels with centres inside an axis-aligned ellipsoid (centre x, y, z; semi-axes)."""
        (cx, cy, cz), (a, b, c) = centre, semi
        out = np.zeros(SHAPE_ZYX, dtype=bool)
        sz = self._range(self.z, cz - c, cz + c)
        sy = self._range(self.y, cy - b, cy + b)
        sx = self._range(self.x, cx - a, cx + a)
        dz = ((self.z[sz] - cz) / c) ** 2
        dy = ((self.y[sy] - cy) / b) ** 2
        dx = ((self.x[sx] - cx) / a) ** 2
        out[sz, sy, sx] = dz[:, None, None] + dy[None, :, None] + dx[None, None, :] <= 1.0
        return out

    def cylinder(
        self,
        centre_xy: tuple[float, float],
        semi_xy: tuple[float, float],
        z_range: tuple[float, float],
    ) -> BoolArray:
        """Voxels inside an elliptic cylinder along z between ``z_range`` (mm)."""
        (cx, cy), (a, b) = centre_xy, semi_xy
        out = np.zeros(SHAPE_ZYX, dtype=bool)
        sz = self._range(self.z, *z_range)
        sy = self._range(self.y, cy - b, cy + b)
        sx = self._range(self.x, cx - a, cx + a)
        disc = ((self.y[sy] - cy) / b)[:, None] ** 2 + ((self.x[sx] - cx) / a)[None, :] ** 2 <= 1
        out[sz, sy, sx] = disc[None, :, :]
        return out

    def below(self, z_mm: float) -> BoolArray:
        """Voxels with centre z below ``z_mm``, as a (nz, 1, 1) broadcastable mask."""
        return (self.z < z_mm)[:, None, None]


def _shrunk(semi: tuple[float, float, float], by_mm: float) -> tuple[float, float, float]:
    return (semi[0] - by_mm, semi[1] - by_mm, semi[2] - by_mm)


def build_phantom() -> DemoPhantom:
    """Build the phantom (about 0.3 s).

    Returns
    -------
    DemoPhantom
        HU volume and structure masks; identical on every call.
    """
    g = _Grid()
    head_c, head_s = (0.0, 5.0, 30.0), (72.0, 92.0, 88.0)
    head = g.ellipsoid(head_c, head_s)
    neck = g.cylinder((0.0, 20.0), (52.0, 55.0), (-200.0, 0.0))
    external = head | neck
    skull_outer = g.ellipsoid(head_c, _shrunk(head_s, 5.0))
    skull_inner = g.ellipsoid(head_c, _shrunk(head_s, 12.0))
    diploe = g.ellipsoid(head_c, _shrunk(head_s, 7.0)) & ~g.ellipsoid(head_c, _shrunk(head_s, 10.0))
    base_low, base_high = -12.0, -5.0
    eyes = {
        "Eye_L": g.ellipsoid((32.0, -58.0, 8.0), (11.0, 11.0, 11.0)),
        "Eye_R": g.ellipsoid((-32.0, -58.0, 8.0), (11.0, 11.0, 11.0)),
    }
    orbits = g.ellipsoid((32.0, -58.0, 8.0), (15.0, 15.0, 15.0)) | g.ellipsoid(
        (-32.0, -58.0, 8.0), (15.0, 15.0, 15.0)
    )
    orbit_walls = (
        (
            g.ellipsoid((32.0, -58.0, 8.0), (18.0, 18.0, 18.0))
            | g.ellipsoid((-32.0, -58.0, 8.0), (18.0, 18.0, 18.0))
        )
        & ~orbits
        & external
    )
    brainstem = g.ellipsoid((0.0, 20.0, 0.0), (11.0, 11.0, 22.0))
    foramen = g.cylinder((0.0, 20.0), (15.0, 15.0), (-40.0, 0.0))
    cranial = skull_outer & ~g.below(base_low)
    intracranial = skull_inner & ~g.below(base_high)
    brain = intracranial & ~orbits & ~orbit_walls
    sinus = g.ellipsoid((0.0, -40.0, -24.0), (22.0, 13.0, 13.0))
    sinus_wall = g.ellipsoid((0.0, -40.0, -24.0), (24.0, 15.0, 15.0)) & ~sinus
    skull = ((cranial & ~intracranial & ~foramen) | orbit_walls | sinus_wall) & ~orbits & external
    spine = g.cylinder((0.0, 35.0), (13.0, 13.0), (-200.0, base_low)) & ~g.cylinder(
        (0.0, 35.0), (6.0, 6.0), (-200.0, base_low)
    )
    gtv_c, gtv_s = (27.0, 12.0, 10.0), (12.0, 10.0, 13.0)
    gtv = g.ellipsoid(gtv_c, gtv_s)
    ptv = g.ellipsoid(gtv_c, (gtv_s[0] + 3.0, gtv_s[1] + 3.0, gtv_s[2] + 3.0))
    ventricles = g.ellipsoid((8.0, 5.0, 40.0), (5.0, 18.0, 10.0)) | g.ellipsoid(
        (-8.0, 5.0, 40.0), (5.0, 18.0, 10.0)
    )

    hu = np.full(SHAPE_ZYX, -1000.0, dtype=np.float32)
    hu[external] = 40.0
    hu[orbits & external] = -85.0
    hu[brain] = 35.0
    hu[ventricles & brain] = 8.0
    hu[spine] = 700.0
    hu[skull] = 1300.0
    hu[skull & cranial & ~intracranial & ~g.below(base_high)] = 1500.0
    hu[skull & diploe & ~g.below(base_high)] = 1000.0
    hu[orbit_walls & ~sinus_wall] = 1200.0
    hu[sinus_wall & ~skull] = 800.0
    hu[sinus] = -1000.0
    hu[brainstem] = 32.0
    hu[gtv] = 55.0
    for eye in eyes.values():
        hu[eye] = 12.0
    rng = np.random.default_rng(NOISE_SEED)
    hu += rng.normal(0.0, NOISE_HU, size=SHAPE_ZYX).astype(np.float32)
    hu_int = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    masks = {
        "External": external,
        "Skull": skull,
        "Brain": brain,
        "Sinus": sinus,
        "GTV": gtv,
        "PTV": ptv & external,
        "Brainstem": brainstem,
        "Eye_L": eyes["Eye_L"],
        "Eye_R": eyes["Eye_R"],
    }
    return DemoPhantom(hu=hu_int, masks={roi.name: masks[roi.name] for roi in DEMO_ROIS})


def _drop_collinear(poly: FloatArray) -> FloatArray:
    prev = np.roll(poly, 1, axis=0)
    nxt = np.roll(poly, -1, axis=0)
    d1 = poly - prev
    d2 = nxt - poly
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    return poly[cross != 0]


def slice_contours(mask_yx: BoolArray) -> Iterator[FloatArray]:
    """Closed isolines (level 0.5) of a 2-D mask, in pixel indices.

    Parameters
    ----------
    mask_yx : (ny, nx) bool array

    Yields
    ------
    (N, 2) float array
        Vertices ``(i, j)`` = (column, row) of one closed contour (not repeating the first).
    """
    rows = np.flatnonzero(mask_yx.any(axis=1))
    cols = np.flatnonzero(mask_yx.any(axis=0))
    if rows.size == 0:
        return
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    padded = np.pad(mask_yx[r0:r1, c0:c1].astype(np.float64), 1)
    for line in find_contours(padded, 0.5):
        ji = line[:-1] if np.array_equal(line[0], line[-1]) else line
        ij = np.column_stack((ji[:, 1] - 1 + c0, ji[:, 0] - 1 + r0))
        ij = _drop_collinear(ij)
        if ij.shape[0] >= 3:
            yield ij


def mask_contours_mm(mask: BoolArray) -> list[FloatArray]:
    """All closed contours of a phantom mask as ``(N, 3)`` LPS mm arrays, slice by slice."""
    z_mm, _, _ = axis_positions_mm()
    ox, oy, _ = ORIGIN_MM
    _, sy, sx = SPACING_MM
    out: list[FloatArray] = []
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        for ij in slice_contours(mask[k]):
            pts = np.empty((ij.shape[0], 3), dtype=np.float64)
            pts[:, 0] = ox + sx * ij[:, 0]
            pts[:, 1] = oy + sy * ij[:, 1]
            pts[:, 2] = z_mm[k]
            out.append(pts)
    return out
