"""Import of matRad particle machine files (``*.mat``) as IonPlan :class:`Machine` objects.

matRad (github.com/e0404/matRad) stores the pencil-beam base data of a particle machine in a
MAT-file holding a struct ``machine`` with two fields (matRad documentation, "Particle Base Data
File"):

``machine.meta``
    ``radiationMode`` ('protons', 'helium' or 'carbon'), ``machine`` (name), ``SAD`` or
    ``SAD_x``/``SAD_y`` (virtual source-axis distance, mm), ``BAMStoIsoDist`` (nozzle to isocentre,
    mm; not a source distance and not used here), ``LUT_bxWidthminFWHM`` (focus selection, unused).
``machine.data``
    1 x E struct array, one element per energy:

    - ``energy``: MeV/u; ``depths``: (D_i,) mm, irregular, dense around the peak;
      ``offset``: mm, added to ``depths`` (matRad evaluates the data at ``depths + offset``);
      ``peakPos``: Bragg peak position, mm, on the ``depths`` scale;
    - ``Z``: (D_i,) laterally integrated depth dose, MeV cm^2/g per primary; in some matRad versions
      a struct whose ``profileORG`` field holds that profile (its other fields, e.g. ``mean``,
      ``width``, ``weight``, parametrise it as a sum of Gaussians);
    - lateral model: ``sigma`` (D_i,) mm for a single Gaussian, or ``sigma1``, ``sigma2`` (mm) and
      ``weight`` (called ``w`` in the documentation) for a double Gaussian, where ``weight`` is the
      fraction of the broad ``sigma2`` component: matRad's lateral profile is
      (1 - weight) G(sigma1) + weight G(sigma2). These sigmas describe the broadening **in the
      medium only**: matRad adds the initial beam width from ``initFocus`` in quadrature
      (documentation: "the initial beam width at the patient surface is modeled via
      machine.data.initFocus"), which is exactly IonPlan's convention for ``sigma_core_mm``,
      ``sigma_halo_mm`` and ``spot_sigma_air_mm``;
    - ``initFocus``: ``dist`` and ``sigma`` (numFoci x N, mm): in-air sigma versus distance from the
      virtual source (matRad interpolates it at the source-to-surface distance);
      ``SisFWHMAtIso`` (numFoci,): FWHM at the isocentre, mm;
    - optional ``LET`` (D_i,) keV/um, ``alpha`` and ``beta`` (D_i x T) 1/Gy and 1/Gy^2 per tissue
      class, ``alphaX`` and ``betaX`` (T,) photon LQ parameters of the tissue classes.

Conversion to :class:`Machine`
------------------------------
- Depths become ``depths + offset``. Nodes at negative depth are dropped and the curves are cut
  at depth 0 (interpolated there); when the shifted nodes start deeper than 0 (positive offset), a
  node at depth 0 repeats the first values (constant entrance extrapolation, which is what linear
  interpolation clamped at the table ends gives anyway).
- Energies with different numbers of depth nodes are brought to a common count D (the largest) by
  keeping every original node and splitting the widest intervals with linearly interpolated nodes.
  The piecewise-linear curves are therefore unchanged: the Bragg peak keeps matRad's sampling.
- ``spot_sigma_air_mm``: ``initFocus.sigma`` of the first focus interpolated at the SAD (the
  isocentre), or ``SisFWHMAtIso / 2.3548`` when no sigma table is given.
- ``letd_kev_um``: ``LET`` when present. Without it the LETd table is filled with zeros and
  ``provenance["letd_available"]`` is False: LET-based outputs (LETd cubes, LET-driven RBE models)
  are unavailable for such a machine and the engine will report LETd as 0. No LET is estimated.
- ``lq_tables`` from ``alpha``, ``beta``, ``alphaX``, ``betaX`` when present.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from numpy.typing import NDArray

from planning.errors import MachineError
from planning.machine import LqTables, Machine

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

#: matRad ``radiationMode`` -> (Z, A) of the primary ion.
ION_SPECIES: dict[str, tuple[int, int]] = {"protons": (1, 1), "helium": (2, 4), "carbon": (6, 12)}

#: Builds the error for a reason; bound to the file being read.
_Fail = Callable[[str], MachineError]

#: FWHM = 2 sqrt(2 ln 2) sigma for a Gaussian.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class _EnergyRow:
    """One energy of the machine on its own depth nodes (before the common resampling)."""

    energy_mev_u: float
    peak_depth_mm: float
    depth_mm: FloatArray  # (D_i,)
    per_depth: dict[str, FloatArray]  # name -> (D_i,) or (D_i, T)
    spot_sigma_air_mm: float
    alpha_x_gy: FloatArray | None
    beta_x_gy2: FloatArray | None


class _Fields:
    """Ordered record of the matRad fields used (for the provenance)."""

    def __init__(self) -> None:
        self._names: dict[str, None] = {}

    def add(self, name: str) -> None:
        self._names.setdefault(name, None)

    def as_list(self) -> list[str]:
        return list(self._names)


def load_matrad_machine(path: str | os.PathLike[str]) -> Machine:
    """Read a matRad particle machine MAT-file and convert it to a :class:`Machine`.

    Parameters
    ----------
    path : path-like
        A MAT-file (version 5/7, as written by MATLAB's ``save -v7`` or by scipy) with a variable
        ``machine`` in matRad's format (module docstring).

    Returns
    -------
    Machine
        Energies sorted increasing; per-depth tables of shape (E, D) with D the largest number of
        depth nodes of any energy (module docstring). ``provenance`` holds ``source`` ("matRad"),
        ``source_file``, ``machine_name``, ``radiation_mode``, ``fields_used``,
        ``letd_available`` and notes on the conversion.

    Raises
    ------
    MachineError
        When the file is missing, not a MAT-file, has no ``machine`` variable, is not a proton,
        helium or carbon machine, lacks a required field or has inconsistent lengths. The message
        names the file and, for per-energy problems, the element ``machine.data(i)`` (1-based, as in
        MATLAB) and the field.
    """
    p = Path(path)
    if not p.is_file():
        raise MachineError(p, "machine file not found")

    def fail(reason: str) -> MachineError:
        return MachineError(p, reason)

    contents = _read_mat(p)
    if "machine" not in contents:
        names = ", ".join(sorted(k for k in contents if not k.startswith("__"))) or "none"
        raise fail(
            f"no variable 'machine' in the MAT-file (variables: {names}); not a matRad machine"
        )
    machine = contents["machine"]
    if not isinstance(machine, dict) or "meta" not in machine or "data" not in machine:
        raise fail("'machine' must be a struct with fields 'meta' and 'data'")
    meta = machine["meta"]
    if not isinstance(meta, dict):
        raise fail("machine.meta must be a struct")
    fields = _Fields()

    mode = _text(meta.get("radiationMode"))
    if mode is None:
        raise fail("machine.meta.radiationMode is missing")
    fields.add("meta.radiationMode")
    species = ION_SPECIES.get(mode.lower())
    if species is None:
        raise fail(
            f"radiationMode is {mode!r}; IonPlan imports only ion machines "
            f"({', '.join(repr(m) for m in ION_SPECIES)})"
        )
    machine_name = _text(meta.get("machine"))
    if machine_name is not None:
        fields.add("meta.machine")
    else:
        machine_name = p.stem
    sad_mm = _sad(meta, fail, fields)

    elements = machine["data"]
    if isinstance(elements, dict):
        elements = [elements]
    if not isinstance(elements, list | np.ndarray) or len(elements) == 0:
        raise fail("machine.data must be a non-empty struct array (one element per energy)")
    notes: set[str] = set()
    rows = [
        _read_energy(i, el, fail, fields, notes, sad_mm) for i, el in enumerate(elements, start=1)
    ]
    _check_consistency(rows, fail)

    rows.sort(key=lambda r: r.energy_mev_u)
    energies = np.array([r.energy_mev_u for r in rows])
    dup = np.flatnonzero(np.diff(energies) <= 0)
    if dup.size:
        raise fail(f"energy {energies[dup[0]]:g} MeV/u appears more than once in machine.data")

    n_depths = max(r.depth_mm.size for r in rows)
    depth = np.empty((len(rows), n_depths))
    stacked: dict[str, list[FloatArray]] = {name: [] for name in rows[0].per_depth}
    for i, r in enumerate(rows):
        depth[i] = _refine_nodes(r.depth_mm, n_depths)
        for name, values in r.per_depth.items():
            stacked[name].append(_interp_rows(depth[i], r.depth_mm, values))
    if any(r.depth_mm.size != n_depths for r in rows):
        notes.add(
            f"depth nodes padded to {n_depths} per energy by splitting the widest intervals "
            "(original nodes kept; piecewise-linear curves unchanged)"
        )

    letd_available = "LET" in stacked
    letd = np.stack(stacked["LET"]) if letd_available else np.zeros_like(depth)
    if not letd_available:
        logger.warning(
            "%s: no LET in the matRad machine; LETd is reported as 0 and LET-based outputs are "
            "unavailable",
            p,
        )
    lq = None
    if "alpha" in stacked:
        alpha_x, beta_x = rows[0].alpha_x_gy, rows[0].beta_x_gy2
        assert alpha_x is not None and beta_x is not None  # guaranteed by _check_consistency
        lq = LqTables(
            alpha_x_gy=alpha_x,
            beta_x_gy2=beta_x,
            alpha_gy=np.stack(stacked["alpha"]),
            beta_gy2=np.stack(stacked["beta"]),
        )

    sigma_core = np.stack(stacked["sigma_core"])
    provenance: dict[str, Any] = {
        "source": "matRad",
        "source_file": str(p),
        "machine_name": machine_name,
        "radiation_mode": mode.lower(),
        "fields_used": fields.as_list(),
        "letd_available": letd_available,
        "focus_index": 1,
        "conversion_notes": sorted(notes),
    }
    return Machine(
        name=machine_name,
        ion_z=species[0],
        ion_a=species[1],
        energies_mev_u=energies,
        peak_depth_mm=np.array([r.peak_depth_mm for r in rows]),
        depth_mm=depth,
        idd_mev_cm2_per_g=np.stack(stacked["idd"]),
        sigma_core_mm=sigma_core,
        sigma_halo_mm=np.stack(stacked["sigma_halo"]),
        halo_weight=np.stack(stacked["halo_weight"]),
        letd_kev_um=letd,
        spot_sigma_air_mm=np.array([r.spot_sigma_air_mm for r in rows]),
        sad_mm=sad_mm,
        lq_tables=lq,
        provenance=provenance,
    )


# --------------------------------------------------------------------------- file and meta


def _read_mat(path: Path) -> dict[str, Any]:
    try:
        contents = scipy.io.loadmat(str(path), simplify_cells=True)
    except NotImplementedError:
        raise MachineError(
            path,
            "MATLAB v7.3 (HDF5) MAT-files are not supported; in MATLAB re-save it with "
            "save(file, 'machine', '-v7')",
        ) from None
    # scipy raises many exception types for corrupt input (ValueError, OSError, MatReadError,
    # zlib.error, struct errors, ...); every one of them means "not a readable MAT-file".
    except Exception as exc:
        raise MachineError(path, f"not a readable MAT-file ({type(exc).__name__}: {exc})") from None
    return dict(contents)


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _positive_scalar(value: Any) -> float | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.size != 1 or not np.isfinite(arr).all() or float(arr.reshape(-1)[0]) <= 0:
        return None
    return float(arr.reshape(-1)[0])


def _sad(meta: dict[str, Any], fail: _Fail, fields: _Fields) -> tuple[float, float]:
    sad_x, sad_y = _positive_scalar(meta.get("SAD_x")), _positive_scalar(meta.get("SAD_y"))
    if sad_x is not None and sad_y is not None:
        fields.add("meta.SAD_x")
        fields.add("meta.SAD_y")
        return sad_x, sad_y
    sad = _positive_scalar(meta.get("SAD"))
    if sad is not None:
        fields.add("meta.SAD")
        return sad, sad
    if "SAD" in meta or "SAD_x" in meta:
        raise fail("machine.meta.SAD must be one positive distance in mm")
    raise fail(
        "machine.meta has no SAD (virtual source-axis distance, mm); BAMStoIsoDist is the "
        "nozzle-isocentre distance and cannot replace it. Add machine.meta.SAD"
    )


# --------------------------------------------------------------------------- per energy


def _read_energy(
    index: int,
    el: Any,
    fail: _Fail,
    fields: _Fields,
    notes: set[str],
    sad_mm: tuple[float, float],
) -> _EnergyRow:
    """Parse ``machine.data(index)`` (1-based) onto its own depth nodes, offset applied."""
    where = f"machine.data({index})"
    if not isinstance(el, dict):
        raise fail(f"{where} is not a struct")

    def present(name: str) -> bool:
        value = el.get(name)
        return value is not None and not (isinstance(value, np.ndarray) and value.size == 0)

    def require(name: str) -> Any:
        if not present(name):
            raise fail(f"{where}: missing field '{name}'")
        fields.add(f"data.{name}")
        return el[name]

    energy = _positive_scalar(require("energy"))
    if energy is None:
        raise fail(f"{where}: 'energy' must be one positive number (MeV/u)")
    where = f"machine.data({index}) ({energy:g} MeV/u)"

    def vector(value: Any, name: str, n: int | None) -> FloatArray:
        return _vector(value, name, n, where, fail)

    depths = vector(require("depths"), "depths", None)
    n = depths.size
    if n < 2 or not np.all(np.diff(depths) > 0):
        raise fail(f"{where}: 'depths' must hold at least 2 strictly increasing values")

    if not present("Z"):
        raise fail(f"{where}: missing field 'Z'")
    per_depth: dict[str, FloatArray] = {"idd": _idd(el["Z"], n, where, fail, fields)}

    if present("sigma"):
        fields.add("data.sigma")
        sigma = vector(el["sigma"], "sigma", n)
        per_depth.update(sigma_core=sigma, sigma_halo=sigma.copy(), halo_weight=np.zeros(n))
    elif present("sigma1") or present("sigma2"):
        weight_name = "weight" if present("weight") else "w"
        for name in ("sigma1", "sigma2", weight_name):
            require(name)
        per_depth.update(
            sigma_core=vector(el["sigma1"], "sigma1", n),
            sigma_halo=vector(el["sigma2"], "sigma2", n),
            halo_weight=vector(el[weight_name], weight_name, n),
        )
        w = per_depth["halo_weight"]
        if np.any(w < 0) or np.any(w >= 1):
            raise fail(f"{where}: '{weight_name}' (weight of sigma2) must lie in [0, 1)")
    else:
        raise fail(f"{where}: missing field 'sigma' (or 'sigma1', 'sigma2', 'weight')")
    if np.any(per_depth["sigma_core"] < 0) or np.any(per_depth["sigma_halo"] < 0):
        raise fail(f"{where}: lateral sigmas must be >= 0 mm")

    if present("LET"):
        fields.add("data.LET")
        per_depth["LET"] = vector(el["LET"], "LET", n)

    alpha_x = beta_x = None
    if present("alpha") or present("beta"):
        alpha = _tissue_table(require("alpha"), "alpha", n, where, fail)
        beta = _tissue_table(require("beta"), "beta", n, where, fail)
        if alpha.shape != beta.shape:
            raise fail(f"{where}: 'alpha' {alpha.shape} and 'beta' {beta.shape} differ in shape")
        n_tissue = alpha.shape[1]
        alpha_x = vector(require("alphaX"), "alphaX", None)
        beta_x = vector(require("betaX"), "betaX", None)
        if alpha_x.size != n_tissue or beta_x.size != n_tissue:
            raise fail(
                f"{where}: 'alphaX'/'betaX' have {alpha_x.size}/{beta_x.size} values but "
                f"'alpha' has {n_tissue} tissue classes"
            )
        if np.any(beta < 0):
            raise fail(f"{where}: 'beta' has negative values")
        per_depth.update(alpha=alpha, beta=beta)

    offset_mm = 0.0
    if present("offset"):
        fields.add("data.offset")
        offset = np.asarray(el["offset"], dtype=np.float64).reshape(-1)
        if offset.size != 1 or not np.isfinite(offset[0]):
            raise fail(f"{where}: 'offset' must be one finite number (mm)")
        offset_mm = float(offset[0])

    if present("peakPos"):
        fields.add("data.peakPos")
        peak = vector(el["peakPos"], "peakPos", 1)[0]
    else:
        peak = float(depths[int(np.argmax(per_depth["idd"]))])
        notes.add("peakPos missing for some energies: peak depth taken at the IDD maximum")
    peak_depth_mm = peak + offset_mm
    if not peak_depth_mm > 0:
        raise fail(f"{where}: peak depth peakPos + offset = {peak_depth_mm:g} mm is not positive")

    depth_mm, per_depth = _shift_to_surface(depths + offset_mm, per_depth, where, fail, notes)
    spot_sigma = _spot_sigma_air(require("initFocus"), where, fail, fields, sad_mm)
    return _EnergyRow(
        energy_mev_u=energy,
        peak_depth_mm=peak_depth_mm,
        depth_mm=depth_mm,
        per_depth=per_depth,
        spot_sigma_air_mm=spot_sigma,
        alpha_x_gy=alpha_x,
        beta_x_gy2=beta_x,
    )


def _vector(value: Any, name: str, n: int | None, where: str, fail: _Fail) -> FloatArray:
    """A finite float64 vector (a MATLAB row or column vector), of length ``n`` if given."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(f"{where}: field '{name}' is not numeric") from None
    if arr.ndim <= 1 or 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise fail(f"{where}: field '{name}' must be a vector, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise fail(f"{where}: field '{name}' has {arr.size} values but 'depths' has {n}")
    if not np.all(np.isfinite(arr)):
        raise fail(f"{where}: field '{name}' contains non-finite values")
    return arr


def _idd(value: Any, n: int, where: str, fail: _Fail, fields: _Fields) -> FloatArray:
    """The IDD profile from ``Z``: a vector, or a struct (``profileORG`` preferred)."""
    if isinstance(value, dict):
        names = ["profileORG", *sorted(k for k in value if k != "profileORG")]
        for name in names:
            candidate = value.get(name)
            if candidate is None:
                continue
            arr = np.asarray(candidate)
            if arr.dtype.kind in "fiu" and arr.size == n:
                fields.add(f"data.Z.{name}")
                idd = _vector(candidate, f"Z.{name}", n, where, fail)
                break
        else:
            raise fail(
                f"{where}: struct 'Z' has no numeric field with one value per depth "
                f"(fields: {', '.join(sorted(value))})"
            )
    else:
        fields.add("data.Z")
        idd = _vector(value, "Z", n, where, fail)
    if np.any(idd < 0):
        raise fail(f"{where}: 'Z' (integrated depth dose) has negative values")
    return idd


def _tissue_table(value: Any, name: str, n: int, where: str, fail: _Fail) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail(f"{where}: field '{name}' is not numeric") from None
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise fail(
            f"{where}: field '{name}' must have shape (n_depths={n}, n_tissues), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise fail(f"{where}: field '{name}' contains non-finite values")
    return arr


def _shift_to_surface(
    depth_mm: FloatArray,
    per_depth: dict[str, FloatArray],
    where: str,
    fail: _Fail,
    notes: set[str],
) -> tuple[FloatArray, dict[str, FloatArray]]:
    """Make the nodes start at depth 0: cut negative depths, or extend the entrance to 0."""
    if depth_mm[0] < 0:
        if depth_mm[-1] <= 0:
            raise fail(f"{where}: all depths + offset are <= 0 mm")
        keep = depth_mm > 0
        new_depth = np.concatenate([[0.0], depth_mm[keep]])
        per_depth = {k: _interp_rows(new_depth, depth_mm, v) for k, v in per_depth.items()}
        notes.add("nodes at negative depth (depths + offset < 0) dropped; curves cut at depth 0")
        return new_depth, per_depth
    if depth_mm[0] > 0:
        new_depth = np.concatenate([[0.0], depth_mm])
        per_depth = {k: np.concatenate([v[:1], v]) for k, v in per_depth.items()}
        notes.add("data starting below the surface extended to depth 0 with their first values")
        return new_depth, per_depth
    return depth_mm, per_depth


def _spot_sigma_air(
    focus: Any, where: str, fail: _Fail, fields: _Fields, sad_mm: tuple[float, float]
) -> float:
    """In-air spot sigma at the isocentre (mm) of the first focus."""
    if isinstance(focus, list | np.ndarray) and len(focus) > 0 and isinstance(focus[0], dict):
        focus = focus[0]
    if not isinstance(focus, dict):
        raise fail(f"{where}: 'initFocus' must be a struct")
    dist, sigma = focus.get("dist"), focus.get("sigma")
    if dist is not None and sigma is not None and np.size(sigma) > 0:
        try:
            d = np.atleast_2d(np.asarray(dist, dtype=np.float64))[0]
            s = np.atleast_2d(np.asarray(sigma, dtype=np.float64))[0]
        except (TypeError, ValueError):
            raise fail(f"{where}: 'initFocus.dist'/'initFocus.sigma' are not numeric") from None
        if d.size != s.size or not (np.all(np.isfinite(d)) and np.all(np.isfinite(s))):
            raise fail(
                f"{where}: 'initFocus.dist' ({d.size}) and 'initFocus.sigma' ({s.size}) must be "
                "finite and of equal length"
            )
        fields.add("data.initFocus.dist")
        fields.add("data.initFocus.sigma")
        if s.size == 1:
            value = float(s[0])
        else:
            order = np.argsort(d)
            d, s = d[order], s[order]
            if np.any(np.diff(d) <= 0):
                raise fail(f"{where}: 'initFocus.dist' has repeated distances")
            iso = 0.5 * (sad_mm[0] + sad_mm[1])
            if not d[0] <= iso <= d[-1]:
                logger.warning(
                    "%s: SAD %.1f mm outside initFocus.dist [%g, %g] mm; nearest sigma used",
                    where,
                    iso,
                    d[0],
                    d[-1],
                )
            value = float(np.interp(iso, d, s))
    elif focus.get("SisFWHMAtIso") is not None and np.size(focus["SisFWHMAtIso"]) > 0:
        fields.add("data.initFocus.SisFWHMAtIso")
        try:
            fwhm = np.asarray(focus["SisFWHMAtIso"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise fail(f"{where}: 'initFocus.SisFWHMAtIso' is not numeric") from None
        value = float(fwhm[0]) / _FWHM_PER_SIGMA
    else:
        raise fail(f"{where}: 'initFocus' has neither 'dist'/'sigma' nor 'SisFWHMAtIso'")
    if not (math.isfinite(value) and value > 0):
        raise fail(f"{where}: in-air spot sigma at the isocentre is {value:g} mm, must be > 0")
    return value


def _check_consistency(rows: list[_EnergyRow], fail: _Fail) -> None:
    """All energies must carry the same optional tables (LET, LQ) with the same tissue classes."""
    keys = set(rows[0].per_depth)
    for i, r in enumerate(rows[1:], start=2):
        diff = keys.symmetric_difference(r.per_depth)
        if diff:
            label = {"LET": "LET", "alpha": "alpha/beta", "beta": "alpha/beta"}
            what = ", ".join(sorted({label.get(k, k) for k in diff}))
            raise fail(
                f"machine.data({i}) ({r.energy_mev_u:g} MeV/u) and machine.data(1) differ in "
                f"which optional fields they have ({what}); all energies must have the same"
            )
    if rows[0].alpha_x_gy is None:
        return
    first_ax, first_bx = rows[0].alpha_x_gy, rows[0].beta_x_gy2
    for i, r in enumerate(rows[1:], start=2):
        assert r.alpha_x_gy is not None and r.beta_x_gy2 is not None and first_bx is not None
        if r.alpha_x_gy.shape != first_ax.shape or not (
            np.allclose(r.alpha_x_gy, first_ax) and np.allclose(r.beta_x_gy2, first_bx)
        ):
            raise fail(
                f"machine.data({i}) ({r.energy_mev_u:g} MeV/u): 'alphaX'/'betaX' differ from "
                "machine.data(1); the tissue classes must be the same for all energies"
            )


# --------------------------------------------------------------------------- resampling


def _refine_nodes(depth_mm: FloatArray, n_nodes: int) -> FloatArray:
    """``depth_mm`` plus nodes splitting its widest intervals, ``n_nodes`` in total.

    Parameters
    ----------
    depth_mm : (n,) float array
        Strictly increasing nodes, n <= n_nodes.
    n_nodes : int
        Number of nodes wanted.

    Returns
    -------
    (n_nodes,) float array
        Strictly increasing, containing every original node. Each interval is split into equal
        parts; extra nodes go, one at a time, to the interval whose parts are currently widest.
    """
    extra = n_nodes - depth_mm.size
    if extra <= 0:
        return depth_mm.copy()
    widths = np.diff(depth_mm)
    parts = np.ones(widths.size, dtype=np.int64)
    heap = [(-float(w), i) for i, w in enumerate(widths)]
    heapq.heapify(heap)
    for _ in range(extra):
        _, i = heapq.heappop(heap)
        parts[i] += 1
        heapq.heappush(heap, (-float(widths[i]) / float(parts[i]), i))
    pieces = [depth_mm[i] + widths[i] * np.arange(parts[i]) / parts[i] for i in range(widths.size)]
    return np.concatenate([*pieces, depth_mm[-1:]])


def _interp_rows(x_new: FloatArray, x: FloatArray, values: FloatArray) -> FloatArray:
    """Linear interpolation of a (n,) or (n, T) table from nodes ``x`` to ``x_new``."""
    if values.ndim == 1:
        return np.interp(x_new, x, values)
    return np.stack([np.interp(x_new, x, values[:, t]) for t in range(values.shape[1])], axis=1)
