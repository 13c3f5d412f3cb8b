"""The dose grid: an axis-aligned voxel grid in DICOM patient coordinates (LPS, mm).

Volumes on it are indexed ``(z, y, x)`` with ``spacing_mm`` in the same order; a voxel's flat
index is its C-order position (the row of an influence matrix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from planning.errors import PlanningError
from planning.geometry import voxel_centers_lps

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class DoseGrid:
    """An axis-aligned voxel grid (the dose grid, or the CT grid of an RSP volume).

    Attributes
    ----------
    shape : (nz, ny, nx)
        Number of voxels per axis, array order.
    spacing_mm : (sz, sy, sx)
        Voxel spacing, array order, mm.
    origin_mm : (x, y, z)
        LPS position of the centre of voxel ``(0, 0, 0)``, mm.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise PlanningError(f"grid shape must be three positive sizes, got {self.shape}")
        if len(self.spacing_mm) != 3 or not all(
            math.isfinite(s) and s > 0 for s in self.spacing_mm
        ):
            raise PlanningError(f"grid spacing must be three positive mm, got {self.spacing_mm}")
        if len(self.origin_mm) != 3 or not all(math.isfinite(o) for o in self.origin_mm):
            raise PlanningError(f"grid origin must be three finite mm, got {self.origin_mm}")

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def voxel_centers_lps(self, flat_indices: ArrayLike | None = None) -> FloatArray:
        """(N, 3) LPS centres of all voxels (C order) or of the given flat indices."""
        return voxel_centers_lps(self.shape, self.spacing_mm, self.origin_mm, flat_indices)

    @classmethod
    def covering(cls, grid: DoseGrid, spacing_mm: float | Sequence[float]) -> DoseGrid:
        """A grid of another spacing covering the extent of ``grid``, centred on it.

        Parameters
        ----------
        grid : DoseGrid
            The grid to cover (e.g. the CT grid).
        spacing_mm : float or (sz, sy, sx)
            The new spacing, mm.
        """
        new_sp = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
        old_sp = np.asarray(grid.spacing_mm, dtype=np.float64)
        extent = np.asarray(grid.shape) * old_sp  # outer boundaries, array order
        shape = np.maximum(np.ceil(extent / new_sp - 1e-9).astype(int), 1)
        centre_zyx = (np.asarray(grid.origin_mm)[::-1]
                      + 0.5 * (np.asarray(grid.shape) - 1) * old_sp)
        origin_zyx = centre_zyx - 0.5 * (shape - 1) * new_sp
        return cls(
            shape=(int(shape[0]), int(shape[1]), int(shape[2])),
            spacing_mm=(float(new_sp[0]), float(new_sp[1]), float(new_sp[2])),
            origin_mm=(float(origin_zyx[2]), float(origin_zyx[1]), float(origin_zyx[0])),
        )
