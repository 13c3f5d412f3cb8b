"""Memory the engine is about to spend, checked against what the machine has.

The engine estimates what a step needs before it allocates it (the per-beam voxel arrays and
forward accumulators when it is made, the matrices once their entries are counted) and refuses
with a message that says what it would need and what is available, instead of growing until
the operating system kills the program with the user's unsaved work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Callable

from planning.errors import PlanningError

#: Share of the available memory one step may take (the rest: the GUI, the cubes on display,
#: the operating system's caches).
HOST_MEMORY_FRACTION = 0.8

#: Bytes per voxel and beam of the engine's geometry (kernels.influence.BeamVoxels: row, WEPL
#: index int64; lattice coordinates, steps, WEPL, fraction float32).
VOXEL_BYTES_PER_BEAM = 40


def available_host_bytes() -> int | None:
    """Memory available to this process without swapping (Linux MemAvailable, else the free
    physical pages), or None where neither can be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> None:
    """Give the heap memory that freed arrays left behind back to the operating system.

    glibc keeps freed blocks below its mmap threshold (up to 32 MiB once large blocks were
    freed) in its heaps for reuse; after the engine's set-up (WEPL cubes, voxel sorting) that
    is about 0.45 GB on the 2 mm TG-119 plan, which would otherwise stay resident under the
    optimizer's matrices (their arrays are fresh mappings and do not reuse it). A no-op where
    the C library has no ``malloc_trim``.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def check_host_memory(need_bytes: float, what: str, advice: str) -> None:
    """Raise PlanningError when ``need_bytes`` exceeds the share of available memory.

    Parameters
    ----------
    need_bytes : float
        What the step would allocate.
    what : str
        The step, for the message (e.g. "the influence matrices (53,152,608 entries)").
    advice : str
        What the user can change (e.g. "use a coarser dose grid").
    """
    available = available_host_bytes()
    if available is None:
        return
    if need_bytes > HOST_MEMORY_FRACTION * available:
        raise PlanningError(
            f"{what} would need {size_text(need_bytes)} of memory, but "
            f"{size_text(available)} are available ({HOST_MEMORY_FRACTION:.0%} of it may "
            f"be used): {advice}")


def size_text(n_bytes: float) -> str:
    """Bytes as a person reads them: ``"2.5 GiB"`` from 1 GiB, else ``"340 MiB"`` (a step
    of a small grid refused on a machine short of memory read "0.0 GiB")."""
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.1f} GiB"
    return f"{max(n_bytes / 2**20, 1):.0f} MiB"


def engine_bytes(n_rows: int, n_beams: int, n_model: int) -> int:
    """Estimated host bytes of an engine's geometry and of one forward pass's sums."""
    return n_rows * (VOXEL_BYTES_PER_BEAM * n_beams + 8 * (n_beams + 1 + n_model))
