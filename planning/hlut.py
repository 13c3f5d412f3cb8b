"""CT number (HU) to relative stopping power (RSP) calibration curves (HLUT).

A calibration curve maps Hounsfield units to the stopping power of a voxel relative to water
(dimensionless), the quantity the ray tracer integrates into water-equivalent path length.
Curves are piecewise linear between tabulated points and **clamped** outside the table: below the
first point the first RSP is used, above the last point the last RSP. Clamping is deliberate: a
linear extrapolation of the bone segment would give metal-like RSPs to streak artefacts and
saturated pixels, whereas metal implants need a contour with an explicit RSP override anyway.

The shipped default curve (``assets/hlut/default.csv``) is a generic stoichiometric-style curve
(Schneider, Pedroni and Lomax 1996, PMB 41:111; Schneider, Bortfeld and Schlegel 2000, PMB 45:459).
It is **not** a calibration of any scanner: every clinic must replace it with the curve of its own
CT scanner and protocol (load it with :func:`load_hlut_csv`).

CSV format
----------
Text, UTF-8. ``#`` starts a comment (whole line or end of line); blank lines are ignored.
The first data line may be a header naming the two columns ``hu`` and ``rsp`` (either order,
case-insensitive); without a header the columns are HU then RSP. Fields are separated by a comma,
a semicolon or whitespace; the decimal separator is a point. A comment line ``# name: ...`` sets
the curve's display name. Requirements: at least two points, all values finite, HU strictly
increasing, RSP > 0 and non-decreasing with HU.

Which curve converted a CT, and what it clamped
-----------------------------------------------
:func:`ct_stopping_power` converts a CT and returns, with the RSP, an :class:`HlutUse`: the
curve's file (None for the shipped default), name and SHA-256, its HU range, and how many CT
voxels lie above its last point (clamped to its last RSP). Plans and recalculations record it as
``report.json``'s ``hlut`` entry; where voxels were clamped, :meth:`HlutUse.warning` is a
warning of the report (printed by the CLI), stronger when the curve ends below bone
(:data:`BONE_HU`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from planning.atomic import atomic_write_text
from planning.errors import CalibrationError, InputError

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

DEFAULT_HLUT_RESOURCE = "default.csv"
#: ``HlutCurve.source`` of the shipped default curve.
DEFAULT_HLUT_SOURCE = f"assets/hlut/{DEFAULT_HLUT_RESOURCE}"

#: CT number (HU) from which voxels are dense bone (cortical bone lies about +1000 to +2000
#: HU): a curve ending below it gives bone the stopping power of its last point.
BONE_HU = 1000.0

#: Elements accepted by :func:`stoichiometric_rsp`: symbol -> (Z, standard atomic weight in
#: g/mol (IUPAC), mean excitation energy I in eV). I for H, C, N, O are the values recommended for
#: these elements bound in condensed compounds, the others the elemental values (ICRU Report 37,
#: 1984, as used in stoichiometric calibrations, e.g. Yang et al. 2010, PMB 55:1343).
ELEMENTS: Mapping[str, tuple[int, float, float]] = {
    "H": (1, 1.008, 19.2),
    "C": (6, 12.011, 81.0),
    "N": (7, 14.007, 82.0),
    "O": (8, 15.999, 106.0),
    "Na": (11, 22.990, 149.0),
    "Mg": (12, 24.305, 156.0),
    "P": (15, 30.974, 173.0),
    "S": (16, 32.06, 180.0),
    "Cl": (17, 35.45, 174.0),
    "Ar": (18, 39.948, 188.0),
    "K": (19, 39.098, 190.0),
    "Ca": (20, 40.078, 191.0),
}

#: Mass fractions of water (H2O).
WATER_MASS_FRACTIONS: Mapping[str, float] = {"H": 0.111907, "O": 0.888093}

_ELECTRON_REST_ENERGY_EV = 0.51099895e6
_ATOMIC_MASS_UNIT_MEV = 931.49410242
_CHUNK_VOXELS = 1 << 22


@dataclass(frozen=True)
class HlutCurve:
    """A piecewise-linear HU -> relative stopping power calibration curve.

    Attributes
    ----------
    hu : (N,) float64 array
        CT numbers of the points, strictly increasing, N >= 2.
    rsp : (N,) float64 array
        Stopping power relative to water at each point, > 0 and non-decreasing.
    name : str
        Display name.
    source : str
        Where the curve comes from (file path or resource); used in error messages.
    sha256 : str
        SHA-256 (hex) of the file the curve was read from; empty for a curve made in memory.

    Raises
    ------
    CalibrationError
        If the points violate the requirements above (the message names ``source``).

    Notes
    -----
    The arrays are stored as read-only float64 copies. Calling the curve is the same as
    :meth:`hu_to_rsp`.
    """

    hu: FloatArray
    rsp: FloatArray
    name: str
    source: str
    sha256: str = ""

    def __post_init__(self) -> None:
        where = self.source or self.name
        hu = _as_points(self.hu, "hu", where)
        rsp = _as_points(self.rsp, "rsp", where)
        if hu.shape != rsp.shape:
            raise CalibrationError(
                where, f"hu has {hu.size} points but rsp has {rsp.size}; they must match"
            )
        if hu.size < 2:
            raise CalibrationError(where, f"a curve needs at least 2 points, got {hu.size}")
        for i in range(1, hu.size):
            if not hu[i] > hu[i - 1]:
                raise CalibrationError(
                    where,
                    f"point {i + 1}: HU {hu[i]:g} is not greater than the previous HU "
                    f"{hu[i - 1]:g} (HU must increase strictly)",
                )
        for i in range(hu.size):
            if not rsp[i] > 0:
                raise CalibrationError(where, f"point {i + 1}: RSP {rsp[i]:g} is not positive")
            if i and rsp[i] < rsp[i - 1]:
                raise CalibrationError(
                    where,
                    f"point {i + 1}: RSP {rsp[i]:g} at HU {hu[i]:g} is lower than the previous "
                    f"RSP {rsp[i - 1]:g} (the curve must not decrease with HU)",
                )
        hu.flags.writeable = False
        rsp.flags.writeable = False
        object.__setattr__(self, "hu", hu)
        object.__setattr__(self, "rsp", rsp)

    @property
    def hu_range(self) -> tuple[float, float]:
        """First and last tabulated HU; outside this range the curve is clamped."""
        return float(self.hu[0]), float(self.hu[-1])

    def hu_to_rsp(self, hu: Any) -> Any:
        """Convert CT numbers to relative stopping power.

        Parameters
        ----------
        hu : array_like, any shape
            CT numbers in HU: a NumPy array (any real dtype), a scalar or nested sequence, or an
            array of another Array API library (e.g. CuPy), which is processed in that library.

        Returns
        -------
        rsp : array, same shape and array type as ``hu``
            Relative stopping power, piecewise linear between the curve's points and clamped
            outside them. dtype: float32 for float32 input, float64 for float64 input, float32 for
            integer, boolean and float16 input (CT volumes stored as int16 stay half the size of
            float64). NaN HU gives NaN.
        """
        if _is_foreign_array(hu):
            return self._hu_to_rsp_xp(hu)
        arr = np.asarray(hu)
        if arr.dtype.kind not in "biuf":
            raise InputError(f"HU values must be real numbers, got dtype {arr.dtype}")
        out_dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        out = np.empty(arr.shape, dtype=out_dtype)
        flat_in = arr.reshape(-1)
        flat_out = out.reshape(-1)
        # Chunks bound the float64 temporaries np.interp creates for large float32/int16 volumes.
        for start in range(0, flat_in.size, _CHUNK_VOXELS):
            stop = start + _CHUNK_VOXELS
            flat_out[start:stop] = np.interp(flat_in[start:stop], self.hu, self.rsp)
        return out

    __call__ = hu_to_rsp

    def _hu_to_rsp_xp(self, hu: Any) -> Any:
        xp = hu.__array_namespace__()
        if xp.isdtype(hu.dtype, "real floating") and hu.dtype in (xp.float32, xp.float64):
            dtype = hu.dtype
        else:
            dtype = xp.float32
        x = xp.astype(hu, dtype)
        knots = xp.asarray(self.hu, dtype=dtype)
        values = xp.asarray(self.rsp, dtype=dtype)
        slopes = xp.asarray(np.diff(self.rsp) / np.diff(self.hu), dtype=dtype)
        x = xp.clip(x, self.hu_range[0], self.hu_range[1])
        flat = xp.reshape(x, (-1,))
        idx = xp.searchsorted(knots, flat, side="right") - 1
        idx = xp.clip(idx, 0, int(self.hu.size) - 2)
        out = xp.take(values, idx) + xp.take(slopes, idx) * (flat - xp.take(knots, idx))
        return xp.reshape(out, hu.shape)


def _is_foreign_array(x: Any) -> bool:
    return hasattr(x, "__array_namespace__") and not isinstance(x, np.ndarray | np.generic)


def _as_points(values: Any, name: str, where: str) -> FloatArray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CalibrationError(where, f"{name} must be a 1-D array of numbers") from None
    if arr.ndim != 1:
        raise CalibrationError(where, f"{name} must be 1-D, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise CalibrationError(where, f"point {i + 1}: {name} value {arr[i]} is not finite")
    return arr


# --------------------------------------------------------------------------- CSV I/O

_SPLIT = re.compile(r"[,;\s]+")
_NAME_COMMENT = re.compile(r"^\s*#\s*name\s*:\s*(?P<name>.+?)\s*$", re.IGNORECASE)


def load_hlut_csv(path: str | os.PathLike[str]) -> HlutCurve:
    """Load a user calibration curve from a CSV file (format in the module docstring).

    Parameters
    ----------
    path : path-like
        The CSV file.

    Returns
    -------
    HlutCurve
        The curve; ``name`` from a ``# name:`` comment or the file name, ``source`` the path.

    Raises
    ------
    CalibrationError
        If the file is missing or unreadable, or a row is malformed or violates the curve
        requirements; the message names the file and the offending line.
    """
    p = Path(path)
    if not p.exists():
        raise CalibrationError(p, "file not found")
    if p.is_dir():
        raise CalibrationError(p, "is a folder, not a CSV file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CalibrationError(p, f"cannot be read ({exc.strerror or exc})") from None
    return _parse_csv(_decode(raw, str(p)), str(p), default_name=p.stem,
                      sha256=hashlib.sha256(raw).hexdigest())


def load_hlut(path: str | os.PathLike[str] | None) -> HlutCurve:
    """The curve of a CSV file (:func:`load_hlut_csv`), or with None the shipped default."""
    return load_hlut_csv(path) if path is not None else default_hlut()


def default_hlut() -> HlutCurve:
    """The generic curve shipped with IonPlan (``assets/hlut/default.csv``).

    Read through :mod:`importlib.resources`, so it is found in a PyInstaller build. It stands in
    for a scanner calibration only until the clinic loads its own with :func:`load_hlut_csv`.
    """
    ref = resources.files("assets") / "hlut" / DEFAULT_HLUT_RESOURCE
    where = DEFAULT_HLUT_SOURCE
    try:
        raw = ref.read_bytes()
    except OSError as exc:
        raise CalibrationError(
            where, f"shipped curve missing from the installation ({exc})"
        ) from None
    return _parse_csv(_decode(raw, where), where, default_name="generic",
                      sha256=hashlib.sha256(raw).hexdigest())


def save_hlut_csv(curve: HlutCurve, path: str | os.PathLike[str]) -> None:
    """Write ``curve`` as a CSV file that :func:`load_hlut_csv` reads back exactly.

    Values are written with 17 significant digits (float64 round trip). The write is atomic
    (:mod:`planning.atomic`); the folder must exist.
    """
    lines = [
        f"# name: {curve.name}",
        f"# source: {curve.source}",
        "hu,rsp",
        *(f"{h!r},{r!r}" for h, r in zip(curve.hu.tolist(), curve.rsp.tolist(), strict=True)),
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _decode(raw: bytes, where: str) -> str:
    if b"\x00" in raw:
        raise CalibrationError(where, "is a binary file, not a CSV text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            where, f"is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV"
        ) from None


def _parse_csv(text: str, where: str, *, default_name: str, sha256: str = "") -> HlutCurve:
    name = default_name
    hu: list[float] = []
    rsp: list[float] = []
    order: tuple[int, int] | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        m = _NAME_COMMENT.match(line)
        if m and name == default_name:
            name = m.group("name")
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        fields = [f for f in _SPLIT.split(content) if f]
        if len(fields) != 2:
            raise CalibrationError(
                where,
                f"line {line_no}: expected 2 columns (hu, rsp), found {len(fields)}: {content!r}",
            )
        if order is None:
            header = [f.lower() for f in fields]
            if sorted(header) == ["hu", "rsp"]:
                order = (header.index("hu"), header.index("rsp"))
                continue
            if not any(_is_number(f) for f in fields):
                raise CalibrationError(
                    where, f"line {line_no}: header {content!r} must name the columns 'hu,rsp'"
                )
            order = (0, 1)
        row = len(hu) + 1
        values: list[float] = []
        for col, label in zip(order, ("HU", "RSP"), strict=True):
            text_value = fields[col]
            try:
                value = float(text_value)
            except ValueError:
                raise CalibrationError(
                    where, f"line {line_no} (row {row}): {label} {text_value!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise CalibrationError(
                    where, f"line {line_no} (row {row}): {label} {text_value!r} is not finite"
                )
            values.append(value)
        h, r = values
        if hu and not h > hu[-1]:
            raise CalibrationError(
                where,
                f"line {line_no} (row {row}): HU {h:g} is not greater than the previous HU "
                f"{hu[-1]:g} (HU must increase strictly)",
            )
        if not r > 0:
            raise CalibrationError(where, f"line {line_no} (row {row}): RSP {r:g} is not positive")
        if rsp and r < rsp[-1]:
            raise CalibrationError(
                where,
                f"line {line_no} (row {row}): RSP {r:g} at HU {h:g} is lower than the previous "
                f"RSP {rsp[-1]:g} (stopping-power calibrations must not decrease with HU)",
            )
        hu.append(h)
        rsp.append(r)
    if len(hu) < 2:
        raise CalibrationError(
            where, f"a calibration curve needs at least 2 data rows, found {len(hu)}"
        )
    logger.debug("loaded HLUT %r from %s: %d points", name, where, len(hu))
    return HlutCurve(hu=np.array(hu), rsp=np.array(rsp), name=name, source=where, sha256=sha256)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- use on a CT


@dataclass(frozen=True)
class HlutUse:
    """Which calibration curve converted a CT, and what it clamped (see the module docstring).

    Attributes
    ----------
    name : str
        The curve's display name.
    file : str or None
        The CSV file it was read from; None for the shipped default curve.
    sha256 : str
        SHA-256 of that file (of the shipped file for the default); empty for a curve made in
        memory.
    hu_range : (float, float)
        First and last tabulated HU.
    last_rsp : float
        RSP of the last point: what every voxel above ``hu_range[1]`` gets.
    n_points : int
        Points of the curve.
    ct_voxels : int
        Voxels of the CT.
    ct_voxels_above_last_hu : int
        CT voxels above the last tabulated HU (clamped to ``last_rsp``).
    ct_max_hu : float
        Highest CT number of the CT.
    """

    name: str
    file: str | None
    sha256: str
    hu_range: tuple[float, float]
    last_rsp: float
    n_points: int
    ct_voxels: int
    ct_voxels_above_last_hu: int
    ct_max_hu: float

    @property
    def is_default(self) -> bool:
        return self.file is None

    def record(self) -> dict[str, Any]:
        """``report.json``'s ``hlut`` entry (JSON-ready)."""
        return {"default": self.is_default, "file": self.file, "name": self.name,
                "sha256": self.sha256, "hu_range": list(self.hu_range),
                "n_points": self.n_points,
                "ct_voxels_above_last_hu": self.ct_voxels_above_last_hu}

    def describe(self) -> str:
        """One line naming the curve: ``name (file)`` or ``name (shipped default)``."""
        return f"{self.name} ({self.file or 'shipped default ' + DEFAULT_HLUT_SOURCE})"

    def warning(self) -> str | None:
        """The report's warning when CT voxels lie above the curve's last point, else None."""
        n = self.ct_voxels_above_last_hu
        if n == 0:
            return None
        last_hu = self.hu_range[1]
        bone = (f", below bone (+{BONE_HU:g} HU and above)" if last_hu < BONE_HU else "")
        share = 100.0 * n / max(self.ct_voxels, 1)
        return (f"the HLUT {self.describe()} ends at {last_hu:g} HU{bone}: {n:,} CT voxels "
                f"({share:.2g} % of the CT, up to {self.ct_max_hu:g} HU) lie above it and get "
                f"its last RSP {self.last_rsp:g}; use a calibration curve that covers the CT's "
                "HU range")


def describe_hlut_record(entry: Mapping[str, Any] | None) -> str:
    """One line from a report's ``hlut`` entry (:meth:`HlutUse.record`) for the pages that
    list a plan's inputs: name, file (or shipped default) and the start of its SHA-256."""
    if not entry:
        return "not recorded"
    where = "shipped default" if entry.get("default") else str(entry.get("file"))
    digest = str(entry.get("sha256") or "")
    lo, hi = entry.get("hu_range", (float("nan"), float("nan")))
    return (f"{entry.get('name', '?')} ({where}{', SHA-256 ' + digest[:12] if digest else ''}; "
            f"{lo:g} to {hi:g} HU)")


def ct_stopping_power(hu: Any, curve: HlutCurve) -> tuple[NDArray[np.float32], HlutUse]:
    """Relative stopping power of a CT (``hu``, any real dtype; float32 result) through
    ``curve``, and the :class:`HlutUse` that records the curve and counts the CT voxels it
    clamped above its last point."""
    arr = np.asarray(hu)
    rsp = curve.hu_to_rsp(np.asarray(arr, dtype=np.float32))
    last_hu = float(curve.hu[-1])
    use = HlutUse(
        name=curve.name,
        file=None if curve.source == DEFAULT_HLUT_SOURCE else curve.source,
        sha256=curve.sha256,
        hu_range=curve.hu_range,
        last_rsp=float(curve.rsp[-1]),
        n_points=int(curve.hu.size),
        ct_voxels=int(arr.size),
        ct_voxels_above_last_hu=int(np.count_nonzero(arr > last_hu)),
        ct_max_hu=float(arr.max()) if arr.size else float("nan"),
    )
    return rsp, use


# --------------------------------------------------------------------------- stoichiometry


def stoichiometric_rsp(
    density_g_cm3: float,
    mass_fractions: Mapping[str, float],
    *,
    energy_mev_u: float = 200.0,
) -> float:
    """Stopping power of a material relative to water from its density and composition.

    This is the stopping-power half of the stoichiometric calibration (Schneider et al. 1996):
    RSP = (rho_e / rho_e,water) * L(I_m) / L(I_water) with the Bethe stopping number
    L(I) = ln(2 m_e c^2 beta^2 gamma^2 / I) - beta^2 (shell and density corrections neglected,
    they nearly cancel in the ratio). The mean excitation energy of the material follows Bragg
    additivity, ln I_m = sum_i w_i (Z_i/A_i) ln I_i / sum_i w_i (Z_i/A_i), with the element
    I-values of :data:`ELEMENTS`; water is treated the same way (I_water = 75.3 eV), so water of
    1 g/cm^3 gives exactly 1.

    Parameters
    ----------
    density_g_cm3 : float
        Mass density of the material, g/cm^3 (> 0).
    mass_fractions : mapping of str to float
        Element symbol (keys of :data:`ELEMENTS`) -> mass fraction; the fractions must sum to
        1 within 0.01 and are renormalised to 1 exactly.
    energy_mev_u : float, optional
        Kinetic energy per nucleon of the ion (sets beta); RSP varies by < 1 % between
        50 and 400 MeV/u for human tissues.

    Returns
    -------
    float
        Relative stopping power (dimensionless), relative to water of density 1 g/cm^3.

    Raises
    ------
    InputError
        For an unknown element, a negative fraction, fractions not summing to 1, or a
        non-positive density or energy.
    """
    if not (math.isfinite(density_g_cm3) and density_g_cm3 > 0):
        raise InputError(f"density must be > 0 g/cm^3, got {density_g_cm3}")
    if not (math.isfinite(energy_mev_u) and energy_mev_u > 0):
        raise InputError(f"energy must be > 0 MeV/u, got {energy_mev_u}")
    gamma = 1.0 + energy_mev_u / _ATOMIC_MASS_UNIT_MEV
    beta2 = 1.0 - 1.0 / gamma**2
    two_mc2_b2g2 = 2.0 * _ELECTRON_REST_ENERGY_EV * beta2 * gamma**2
    zoa, ln_i = _electron_density_and_ln_i(mass_fractions)
    zoa_w, ln_i_w = _electron_density_and_ln_i(WATER_MASS_FRACTIONS)
    stopping_number = math.log(two_mc2_b2g2) - ln_i - beta2
    stopping_number_w = math.log(two_mc2_b2g2) - ln_i_w - beta2
    return density_g_cm3 * (zoa / zoa_w) * (stopping_number / stopping_number_w)


def _electron_density_and_ln_i(mass_fractions: Mapping[str, float]) -> tuple[float, float]:
    """Electrons per unit mass (mol/g, sum w Z/A) and Bragg-additive ln I (I in eV)."""
    unknown = sorted(set(mass_fractions) - set(ELEMENTS))
    if unknown:
        raise InputError(f"unknown element(s) {', '.join(unknown)}; known: {', '.join(ELEMENTS)}")
    if any(not (math.isfinite(w) and w >= 0) for w in mass_fractions.values()):
        raise InputError("mass fractions must be finite and >= 0")
    total = sum(mass_fractions.values())
    if abs(total - 1.0) > 0.01:
        raise InputError(f"mass fractions sum to {total:g}, expected 1")
    zoa = 0.0
    weighted_ln_i = 0.0
    for symbol, w in mass_fractions.items():
        z, a, i_ev = ELEMENTS[symbol]
        electrons = (w / total) * z / a
        zoa += electrons
        weighted_ln_i += electrons * math.log(i_ev)
    return zoa, weighted_ln_i / zoa
