"""The allocator setting that gives the engine's freed chunk arrays back to the system
(planning.engine.memory.return_large_blocks_when_freed), checked in fresh processes."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, sys
import numpy as np
from planning.engine.memory import return_large_blocks_when_freed

if sys.argv[1] == "apply":
    assert return_large_blocks_when_freed()
big = np.ones(24 << 20, np.uint8)
del big  # glibc raises its mmap threshold to this size (blocks up to 32 MiB) unless fixed


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]


libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblks
chunk = np.ones(8 << 20, np.uint8)  # an 8 MiB work array, as the engine's chunks
print(libc.mallinfo2().hblks - before)
"""


def _glibc_with_mallinfo2() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc 2.33 or later (Linux)")
def test_large_blocks_are_mapped_on_their_own_once_applied() -> None:
    """An 8 MiB array after a 24 MiB one was freed: from the heap by default (where it would stay
    once freed), mapped on its own (given back when freed) with the setting."""
    def mapped_blocks(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True,
                             text=True, check=True, timeout=120)
        return int(out.stdout.split()[-1])

    assert mapped_blocks("default") == 0
    assert mapped_blocks("apply") == 1


def test_other_platforms_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from planning.engine import memory

    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.return_large_blocks_when_freed() is False
