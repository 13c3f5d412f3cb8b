"""Checked access to DICOM attribute values.

pydicom converts element values lazily, so a corrupt or wrongly typed value raises (any of several
exception types) only when it is read. These helpers read one attribute, check its type, count and
range, and turn every failure into a :class:`DicomImportError` naming the file and the attribute.
:func:`read_dicom_file` reads a whole file and refuses one that ends inside an element.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from planning.dicom.errors import DicomImportError
from planning.dicom.file_context import reading_file
from planning.errors import os_error_reason

PathLike = str | os.PathLike[str]

#: The value length of an element whose end is marked by a delimiter instead.
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: What a file without the DICOM preamble and "DICM" prefix is called (pydicom's own message
#: tells the developer to pass ``force=True``).
NOT_DICOM = "not a DICOM file (no DICOM preamble and 'DICM' header)"


@contextmanager
def reading(path: PathLike, what: str) -> Iterator[None]:
    """Turn any exception raised inside the block into a DicomImportError about ``what``.

    Used around pydicom calls at the I/O boundary, where malformed input can surface as
    ValueError, KeyError, EOFError, struct.error, OverflowError, ... depending on where the
    bytes are broken. What pydicom warns of in the block is about ``path``
    (:func:`planning.dicom.file_context.reading_file`).
    """
    try:
        with reading_file(path):
            yield
    except DicomImportError:
        raise
    except MemoryError as exc:
        raise DicomImportError(path, f"{what}: the file declares sizes too large to read") from exc
    except OSError as exc:
        # Its text repeats the path the message begins with ("[Errno 2] No such file or
        # directory: '/x/y.dcm'"): say what is wrong only.
        raise DicomImportError(path, f"{what}: {os_error_reason(exc)}") from exc
    except InvalidDicomError as exc:
        # pydicom says "... 'DICM' prefix is missing from the header. Use force=True to force
        # reading.": a file that is no DICOM file at all (another file chosen by mistake).
        if "DICM" not in str(exc):
            raise DicomImportError(path, f"{what}: {describe_exception(exc)}") from exc
        raise DicomImportError(path, f"{what}: {NOT_DICOM}") from exc
    except Exception as exc:
        raise DicomImportError(path, f"{what}: {describe_exception(exc)}") from exc


def read_dicom_file(path: PathLike, what: str) -> Dataset:
    """Read a whole DICOM file, refusing one that is cut short.

    pydicom reads what a truncated file holds without complaint: an element whose declared
    length runs past the end of the file keeps the bytes that are there, so a sequence loses
    its last items (an ROI its type, a plan its last beam) silently. Because a file is cut at
    its end, the element the file ends in is one of the top-level elements: each one that
    declares its length must hold that many bytes. (A cut inside an element of undefined
    length, a sequence closed by a delimiter, already makes pydicom raise.)

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str
        Start of the message if the file cannot be parsed (``"cannot read the RT Dose"``).

    Returns
    -------
    pydicom.dataset.Dataset
        The dataset, pixel data included.

    Raises
    ------
    DicomImportError
        If the file cannot be parsed, or ends inside one of its elements.
    """
    with reading(path, what):
        ds = pydicom.dcmread(path)
    for tag in list(ds.keys()):
        element = ds.get_item(tag)
        if not isinstance(element, RawDataElement) or element.length == _UNDEFINED_LENGTH:
            continue
        if isinstance(element.value, bytes) and len(element.value) < element.length:
            name = keyword_for_tag(tag) or str(element.tag)
            raise DicomImportError(
                path,
                f"the file is truncated: it ends inside {name}, after {len(element.value)} "
                f"of its {element.length} bytes (an incomplete copy or transfer?); copy it "
                "again from its source",
            )
    return ds


def describe_exception(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception's message, whitespace collapsed, at most ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else ""
    text = text or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _raw(ds: Dataset, keyword: str, path: PathLike) -> Any:
    with reading(path, f"cannot read {keyword}"):
        if keyword not in ds:
            return None
        return ds[keyword].value


def get_str(ds: Dataset, keyword: str, path: PathLike, *, required: bool = False) -> str:
    """A string attribute (first value if multi-valued), stripped; ``""`` when absent/empty.

    Raises
    ------
    DicomImportError
        If the value cannot be decoded, or ``required`` and it is absent or empty.
    """
    value = _raw(ds, keyword, path)
    if value is None or value == "":
        text = ""
    else:
        with reading(path, f"cannot read {keyword}"):
            if isinstance(value, (list, tuple, MultiValue)):
                value = value[0] if len(value) else ""
            text = str(value).strip().replace("\x00", "")
    if required and not text:
        raise DicomImportError(path, f"{keyword} is missing or empty")
    return text


def get_floats(ds: Dataset, keyword: str, path: PathLike, count: int) -> tuple[float, ...]:
    """Exactly ``count`` finite numbers from a DS/FD/IS attribute.

    Raises
    ------
    DicomImportError
        If the attribute is absent, not numeric, has another number of values, or holds a
        NaN or infinity.
    """
    value = _raw(ds, keyword, path)
    if value is None or value == "":
        raise DicomImportError(path, f"{keyword} is missing or empty")
    with reading(path, f"{keyword} is not numeric ({value!r:.60})"):
        items = list(value) if not isinstance(value, (str, bytes, int, float)) else [value]
        numbers = tuple(float(v) for v in items)
    if len(numbers) != count:
        raise DicomImportError(
            path, f"{keyword} must have {count} values, found {len(numbers)}: {numbers!r:.80}"
        )
    if not all(math.isfinite(v) for v in numbers):
        raise DicomImportError(path, f"{keyword} holds a non-finite value: {numbers!r:.80}")
    return numbers


def get_float(ds: Dataset, keyword: str, path: PathLike) -> float:
    """One finite number (see :func:`get_floats`)."""
    return get_floats(ds, keyword, path, 1)[0]


def get_int(
    ds: Dataset,
    keyword: str,
    path: PathLike,
    *,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """An integer attribute (US, IS, ...), optionally range-checked.

    Returns ``default`` when the attribute is absent or empty and a default is given.

    Raises
    ------
    DicomImportError
        If absent without default, not an integer, or out of ``[minimum, maximum]``.
    """
    value = _raw(ds, keyword, path)
    if value is None or value == "":
        if default is not None:
            return default
        raise DicomImportError(path, f"{keyword} is missing or empty")
    with reading(path, f"{keyword} is not an integer ({value!r:.60})"):
        if not isinstance(value, (str, bytes, int, float)):
            value = value[0]
        number = float(value)
        if not number.is_integer():
            raise ValueError(str(value))
        result = int(number)
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        lo = "" if minimum is None else f" >= {minimum}"
        hi = "" if maximum is None else f" <= {maximum}"
        raise DicomImportError(path, f"{keyword} = {result} is out of range (must be{lo}{hi})")
    return result


def get_sequence(ds: Dataset, keyword: str, path: PathLike) -> list[Dataset]:
    """The items of a sequence attribute; an empty list when it is absent or empty.

    Raises
    ------
    DicomImportError
        If the element cannot be parsed as a sequence.
    """
    value = _raw(ds, keyword, path)
    if value is None or value == "":
        return []
    with reading(path, f"cannot read {keyword}"):
        items = list(value)
    for item in items:
        if not isinstance(item, Dataset):
            raise DicomImportError(path, f"{keyword} is not a sequence of items")
    return items
