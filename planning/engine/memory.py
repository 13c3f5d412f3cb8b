"""Memory the engine is about to spend, checked against what the machine has.

The engine estimates what a step needs before it allocates it (the per-beam voxel arrays and
forward accumulators when it is made, the matrices once their entries are counted) and refuses
with a message that says what it would need and what is available, instead of growing until
the operating system kills the program with the user's unsaved work.
"""

from __future__ import annotations

import ctypes
import os
import sys

from planning.errors import PlanningError

#: Share of the available memory one step may take (the rest: the GUI, the cubes on display,
#: the operating system's caches).
HOST_MEMORY_FRACTION = 0.8

#: Bytes per voxel and beam of the engine's geometry (kernels.influence.BeamVoxels: row, WEPL
#: index int64; lattice coordinates, steps, WEPL, fraction float32).
VOXEL_BYTES_PER_BEAM = 40


#: Blocks at least this large are mapped on their own and given back when freed (see
#: :func:`return_large_blocks_when_freed`).
HEAP_MMAP_THRESHOLD_BYTES = 1 << 20


def return_large_blocks_when_freed(threshold_bytes: int = HEAP_MMAP_THRESHOLD_BYTES) -> bool:
    """Make glibc's malloc give memory blocks of ``threshold_bytes`` or more back to the system
    as soon as they are freed; True where it applied (Linux with glibc), False elsewhere.

    By default glibc raises its mmap threshold up to 32 MiB after freeing a large block, so the
    engine's chunk arrays (tens of MB, allocated and freed by each worker thread) come from the
    per-thread heaps and stay there once freed: the 2 mm TG-119 plan from the command line
    peaked at 2.51 GB of resident memory, about 0.5 GB of it freed chunk arrays held by those
    heaps while the optimizer's matrices were built; with a fixed 1 MiB threshold (and the
    same trim threshold) it peaked at 1.99 GiB (2,083,620 KiB; 2026-12-05, docs/benchmarks.md).
    Called once by the command line (and so the GUI) at start; it changes the process's
    allocator, so the library functions do not call it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # another C library (musl): leave it as it is
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, threshold_bytes)) and bool(
        mallopt(m_trim_threshold, threshold_bytes))


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
            f"{what} would need {need_bytes / 2**30:.1f} GiB of memory, but "
            f"{available / 2**30:.1f} GiB are available ({HOST_MEMORY_FRACTION:.0%} of it may "
            f"be used): {advice}")


def engine_bytes(n_rows: int, n_beams: int, n_model: int) -> int:
    """Estimated host bytes of an engine's geometry and of one forward pass's sums."""
    return n_rows * (VOXEL_BYTES_PER_BEAM * n_beams + 8 * (n_beams + 1 + n_model))
