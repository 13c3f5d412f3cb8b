"""Checked reading of the multi-valued numbers of RT objects (spot maps, weights, offsets).

Complements :mod:`planning.dicom._values` (fixed-count numbers) with lists of any length and
optional numbers; every failure is a :class:`DicomImportError` naming the file and attribute.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from planning.dicom._values import PathLike, get_float, reading
from planning.dicom.errors import DicomImportError

#: Most values accepted in one numeric list (a corrupt length would otherwise allocate a lot).
MAX_VALUES = 1 << 26


def get_float_list(ds: Dataset, keyword: str, path: PathLike, what: str) -> NDArray[np.float64]:
    """All values of a numeric (FL, FD, DS, IS) attribute as a float64 array (finite).

    Parameters
    ----------
    ds : Dataset
        The item holding the attribute.
    keyword : str
        The attribute.
    path : str or os.PathLike
        File name for messages.
    what : str
        Where the attribute is (e.g. ``"beam 1, control point 3"``), for messages.

    Returns
    -------
    (n,) float64 array
        Empty when the attribute is present but empty.

    Raises
    ------
    DicomImportError
        If the attribute is missing, not numeric, or holds NaN or infinity.
    """
    with reading(path, f"{what}: cannot read {keyword}"):
        if keyword not in ds:
            raise DicomImportError(path, f"{what}: {keyword} is missing")
        value = ds[keyword].value
        if value is None or value == "":
            return np.zeros(0)
        if isinstance(value, (bytes, bytearray, str)):
            raise ValueError(f"{keyword} holds text or bytes, not numbers ({value!r:.40})")
        items = [value] if isinstance(value, (int, float)) else list(value)
        if len(items) > MAX_VALUES:
            raise ValueError(f"{keyword} has {len(items)} values, too many")
        numbers = np.array([float(v) for v in items], dtype=np.float64)
    if not np.all(np.isfinite(numbers)):
        raise DicomImportError(path, f"{what}: {keyword} holds a non-finite value")
    return numbers


def is_present(ds: Dataset, keyword: str, path: PathLike) -> bool:
    """Whether the attribute is present with a non-empty value (DicomImportError if unreadable)."""
    with reading(path, f"cannot read {keyword}"):
        if keyword not in ds:
            return False
        value = ds[keyword].value
        return not (value is None or value == "" or (isinstance(value, list) and not value))


def get_optional_float(ds: Dataset, keyword: str, path: PathLike) -> float | None:
    """One finite number, or None when the attribute is absent or empty."""
    if not is_present(ds, keyword, path):
        return None
    return get_float(ds, keyword, path)
