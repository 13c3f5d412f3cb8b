"""Trilinear interpolation of dose cubes at fixed points, prepared once for many cubes.

A point's dose is interpolated between the centres of the eight dose-grid voxels around it.
Points within half a voxel of the grid's outer faces (beyond the outermost centres) take the
value at the nearest point of the box of centres (the interpolation is clamped, not
extrapolated); points further out are not on the grid. The weights depend on the points and the
grid only, so a :class:`TrilinearStencil` is built once and reads any number of cubes on that
grid (the dose changes, the geometry does not).

A quantity that jumps between regions of the grid (the RBE-weighted dose of a plan with a LEM I
tissue per structure: the same physical dose is a different RBE-weighted dose in each tissue) is
read with :class:`VoxelLabels`: a point of a structure is interpolated between the voxels of its
structure's region only (the weights of the other corners dropped and the rest renormalised),
so that the tissue next door does not leak into the structure's DVH.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.dose_grid import DoseGrid
from planning.errors import InputError


@dataclass(frozen=True, eq=False)
class TrilinearStencil:
    """Where and with which weights to read a cube on ``grid`` at N points.

    Attributes
    ----------
    grid : DoseGrid
        The grid of the cubes it reads.
    corner : (N,) int32 or int64 array
        C-order flat index of each point's lower corner voxel (smallest k, j, i).
    fraction : (N, 3) float32 array
        Position of each point between the lower and upper centres, ``(fz, fy, fx)`` in [0, 1].
    step : (3,) int
        Flat-index step to the upper neighbour along z, y, x (0 along an axis of one voxel).
    """

    grid: DoseGrid
    corner: NDArray[np.integer]
    fraction: NDArray[np.float32]
    step: tuple[int, int, int]

    @property
    def n_points(self) -> int:
        return int(self.corner.size)

    @property
    def nbytes(self) -> int:
        return int(self.corner.nbytes + self.fraction.nbytes)

    def values(self, cube: ArrayLike, within: tuple[NDArray[np.integer], int] | None = None
               ) -> NDArray[np.float64]:
        """The cube interpolated at the points.

        Parameters
        ----------
        cube : (nz, ny, nx) array on ``grid``
        within : (labels, label), optional
            ``labels`` (nz * ny * nx,) integer region of each voxel (C order): only the corners
            of region ``label`` take part, their weights renormalised; a point without such a
            corner is interpolated from all eight.

        Returns
        -------
        (N,) float64 array, in the unit of ``cube`` (computed in float32 for a float32 cube).
        """
        c = np.asarray(cube)
        if c.shape != tuple(self.grid.shape):
            raise InputError(f"a cube of shape {c.shape} does not match its grid "
                             f"{tuple(self.grid.shape)}")
        flat = c.reshape(-1)
        # float32 cubes (the engine's) are interpolated in float32: about a third faster than
        # float64, and 1e-7 relative is far below any dose statistic's resolution
        dtype = np.result_type(flat.dtype, np.float32)
        fz, fy, fx = (self.fraction[:, a].astype(dtype, copy=False) for a in range(3))
        sz, sy, sx = self.step
        out = np.zeros(self.n_points, dtype=dtype)
        # Within a region: the sum over its corners and their weight, beside the plain sum.
        own_sum = np.zeros_like(out)
        own_weight = np.zeros_like(out)
        for dz, wz in ((0, 1 - fz), (sz, fz)):
            for dy, wy in ((0, 1 - fy), (sy, fy)):
                wzy = wz * wy
                for dx, wx in ((0, 1 - fx), (sx, fx)):
                    at = self.corner + (dz + dy + dx)
                    w = wzy * wx
                    term = w * flat[at]
                    out += term
                    if within is not None:
                        in_region = within[0][at] == within[1]
                        own_sum += np.where(in_region, term, 0)
                        own_weight += np.where(in_region, w, 0)
        if within is not None:
            has = own_weight > 0
            out = np.where(has, own_sum / np.where(has, own_weight, 1), out)
        return out.astype(np.float64, copy=False)


@dataclass(frozen=True, eq=False)
class VoxelLabels:
    """The region of every voxel of a grid and the region each structure belongs to.

    Attributes
    ----------
    labels : (nz, ny, nx) int8 array
        Region index of each voxel (e.g. the LEM I tissue group that computed its
        RBE-weighted dose).
    by_structure : mapping of str to int
        ROI name -> its region; structures not listed are interpolated from every voxel.
    """

    labels: NDArray[np.int8]
    by_structure: Mapping[str, int]

    def within(self, structure: str) -> tuple[NDArray[np.int8], int] | None:
        """The ``within`` argument of :meth:`TrilinearStencil.values` for ``structure``."""
        label = self.by_structure.get(structure)
        return None if label is None else (self.labels.reshape(-1), label)


def trilinear_stencil(points_mm: ArrayLike, grid: DoseGrid
                      ) -> tuple[TrilinearStencil, NDArray[np.bool_]]:
    """The stencil of the points that lie on ``grid``.

    Parameters
    ----------
    points_mm : (N, 3) array_like
        LPS positions ``(x, y, z)``, mm.
    grid : DoseGrid

    Returns
    -------
    stencil : TrilinearStencil
        For the points on the grid (inside its voxels' outer box), in their order.
    on_grid : (N,) bool array
        Which of ``points_mm`` those are.
    """
    p = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    shape = np.asarray(grid.shape)
    u = (p[:, ::-1] - np.asarray(grid.origin_mm)[::-1]) / np.asarray(grid.spacing_mm)
    on_grid = np.all((u >= -0.5) & (u <= shape - 0.5), axis=1)
    u = np.clip(u[on_grid], 0.0, shape - 1)
    lower = np.minimum(np.floor(u), np.maximum(shape - 2, 0)).astype(np.int64)
    fraction = (u - lower).astype(np.float32)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    corner = lower @ strides
    index_type = np.int32 if grid.n_voxels < 2**31 else np.int64
    step = tuple(int(s) if n > 1 else 0 for s, n in zip(strides, shape, strict=True))
    return (TrilinearStencil(grid, corner.astype(index_type), fraction,
                             (step[0], step[1], step[2])), on_grid)
