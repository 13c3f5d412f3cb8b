"""The WEPL cube of each beam through a plan's stopping power, made once and shared.

A plan samples the water-equivalent depth of the same beams through the same RSP volume four
times: to place the spots, for the optimizer's points, for the refinement's check grid and for
the dose grid (and once more per re-optimization). Each time the beam's WEPL cube
(:func:`kernels.wepl.wepl_cube`, the RSP resampled along the beam and integrated) is most of
the work: 1 s per beam on the TG-119 phantom on this 2-core machine, for 41 MiB of float32.
:class:`WeplCubes` makes each beam's cube on first use and keeps it, so the plan's engines
sample one cube per beam (:func:`planning.engine.setup.beam_geometry`).

A cube costs 4 bytes per sample: a clinical CT of 512 x 512 x 200 voxels of 0.98 x 0.98 x
2 mm gives about 0.9 GB per beam (0.98 mm rays, 0.49 mm steps). The cubes are kept only
while they stay within :data:`KEPT_BYTES` together; beyond it a cube is made for each use, as
if there were no cache (slower, never more memory than before).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kernels.wepl import WeplCube, sample_wepl, wepl_cube, wepl_cube_shape
from planning.dose_grid import DoseGrid
from planning.geometry import BeamFrame
from planning.progress import CancelToken, ProgressCallback, report

#: Most bytes of cubes kept at once (the TG-119 phantom's two beams: 83 MiB).
KEPT_BYTES = 256 * 2**20


class WeplCubes:
    """The WEPL cubes of beams through one RSP volume, each made on first use and kept.

    Parameters
    ----------
    rsp : (nz, ny, nx) float32 array
        Relative stopping power on ``ct_grid`` (checked by the caller), kept by reference.
    ct_grid : DoseGrid
        Geometry of ``rsp``.
    depth_step_mm : float or None
        Sampling step along the rays (:func:`kernels.wepl.wepl_cube`'s default where None).
    lateral_step_mm : float or None
        Spacing of the rays (:func:`kernels.wepl.wepl_cube`'s default, the smallest CT
        spacing, where None); a coarser one makes coarser cubes faster (a plan's work
        estimate, :mod:`planning.plan_work`).
    keep : bool
        Keep cubes (within :data:`KEPT_BYTES`); False: make each on every use (for a caller
        that uses each cube once).
    threads : int
        Threads that make a host cube (:func:`kernels.wepl.wepl_cube`).
    """

    def __init__(self, rsp: NDArray[np.float32], ct_grid: DoseGrid,
                 depth_step_mm: float | None, *, lateral_step_mm: float | None = None,
                 keep: bool = True, threads: int = 1) -> None:
        self.rsp, self.ct_grid, self.depth_step_mm = rsp, ct_grid, depth_step_mm
        self.lateral_step_mm = lateral_step_mm
        self._keep, self._threads = keep, threads
        # Keyed by (array namespace, beam axes): a cube lives on the device that made it.
        self._cubes: dict[tuple[str, tuple[float, ...]], WeplCube] = {}

    def serves(self, rsp: Any, ct_grid: DoseGrid, depth_step_mm: float | None, *,
               lateral_step_mm: float | None = None) -> bool:
        """Whether these cubes are those of ``rsp`` (the same array) on ``ct_grid``, with
        these steps."""
        return (rsp is self.rsp and ct_grid == self.ct_grid
                and depth_step_mm == self.depth_step_mm
                and lateral_step_mm == self.lateral_step_mm)

    def kept_bytes(self, frames: Sequence[BeamFrame]) -> int:
        """Bytes the cubes of beams with axes ``frames`` will keep once made (within
        :data:`KEPT_BYTES`), known before any is made: for a memory estimate up front."""
        total = 0
        for frame in frames:
            size = 4 * math.prod(wepl_cube_shape(
                self.rsp.shape, self.ct_grid.spacing_mm, self.ct_grid.origin_mm,
                frame.direction, frame.u_axis, frame.v_axis, depth_step_mm=self.depth_step_mm,
                lateral_step_mm=self.lateral_step_mm))
            if total + size <= self._limit():
                total += size
        return total

    def _limit(self) -> int:
        return KEPT_BYTES if self._keep else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the cubes made so far."""
        return sum(int(c.wepl_mm.nbytes) for c in self._cubes.values())

    def cube(self, xp: Any, frame: BeamFrame, *, progress: ProgressCallback | None = None,
             cancel: CancelToken | None = None, stage: str = "water-equivalent depth"
             ) -> WeplCube:
        """The cube of the beam with axes ``frame`` in namespace ``xp``; ``progress`` and the
        cancel check run after each chunk while it is made (a fraction of a second each)."""
        key = (str(xp.__name__), tuple(float(v) for v in (*frame.direction, *frame.u_axis,
                                                           *frame.v_axis)))
        made = self._cubes.get(key)
        if made is not None:
            report(progress, 1.0, stage)
            return made

        def on_chunk(fraction: float) -> None:
            if cancel is not None:
                cancel.raise_if_cancelled(stage)
            report(progress, fraction, stage)

        made = wepl_cube(xp.asarray(self.rsp), self.ct_grid.spacing_mm, self.ct_grid.origin_mm,
                         frame.direction, frame.u_axis, frame.v_axis,
                         depth_step_mm=self.depth_step_mm,
                         lateral_step_mm=self.lateral_step_mm, on_chunk=on_chunk,
                         threads=self._threads)
        if self.nbytes + int(made.wepl_mm.nbytes) <= self._limit():
            self._cubes[key] = made
        return made

    def at_points(self, xp: Any, frame: BeamFrame, points: Any, *,
                  progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> Any:
        """WEPL (mm, float32, namespace ``xp``) of LPS ``points`` ((N, 3), namespace ``xp``)
        along the beam with axes ``frame``."""
        return sample_wepl(self.cube(xp, frame, progress=progress, cancel=cancel), points)
