"""IonPlan's optional compiled extensions (built by ``setup.py``), loaded for ctypes.

Each extension is a Python module with an empty init whose shared library exports plain C
functions (:mod:`kernels.pencil_beam_cpu`, :mod:`kernels.spot_products`): importing the module
finds the library where the installation put it (source tree, wheel, PyInstaller folder), and
ctypes calls its functions without the GIL.
"""

from __future__ import annotations

import ctypes
import importlib
from functools import cache


@cache
def load(module_name: str) -> ctypes.CDLL | None:
    """The shared library of the extension ``module_name`` (e.g. ``kernels._spot_products``),
    or None where it was not built."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = getattr(module, "__file__", None)
    return None if path is None else ctypes.CDLL(path)


def require(module_name: str, what: str) -> ctypes.CDLL:
    """The shared library of ``module_name``; RuntimeError naming ``what`` where it was not
    built (the callers check :func:`load` first and take their NumPy or SciPy path)."""
    lib = load(module_name)
    if lib is None:
        raise RuntimeError(f"the compiled {what} is not built")
    return lib
