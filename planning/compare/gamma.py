"""Three-dimensional gamma index of an evaluated dose against a reference dose.

Definition (Low et al. 1998, Med. Phys. 25:656; Low and Dempsey 2003, Med. Phys. 30:2455): for
every reference voxel centre ``r`` with reference dose ``Dr(r)``,

    gamma(r) = min over r' of sqrt(|r' - r|^2 / dta^2 + (De(r') - Dr(r))^2 / dD^2),

where ``De`` is the evaluated dose, interpolated trilinearly between its voxel centres, ``dta`` the
distance-to-agreement criterion and ``dD`` the dose-difference criterion: ``dose_percent`` of the
normalisation dose (global gamma) or of ``Dr(r)`` (local gamma). The minimum is taken over the
ball ``|r' - r| <= max_gamma * dta`` inside the evaluated grid; ``gamma`` is capped at ``max_gamma``
(a voxel with no point below the cap in the ball gets ``max_gamma``). A voxel passes when
``gamma <= 1``.

Algorithm
---------
1. ``gamma`` at ``r' = r`` and a few Gauss-Newton steps on the continuous trilinear interpolant
   from there: the dose is linearised at the current point, the closed-form minimum of the
   linearised problem, ``d = -c g dta^2 / (dD^2 + |g|^2 dta^2)``, is tried and kept only if it
   lowers gamma (damped otherwise). On a locally linear dose this finds the exact minimum in one
   step, which the point search below could only approach with a very fine step in steep
   gradients (the dose term of a sample ``h`` mm away from the optimum is ``|grad D| h / dD``).
2. A search over a lattice of offsets (step ``search_step_mm``, by default ``dta / 5``, chosen per
   axis as the voxel spacing divided by a whole number so that lattice points hit the voxel
   centres and each needs at most 8 voxels), in order of increasing distance, vectorised over all
   voxels still searching (Wendling et al. 2007, Med. Phys. 34:1647). A voxel stops when no
   remaining offset can beat its current best. The bound is rigorous: with ``L`` an upper bound of
   ``|grad De|`` of the trilinear interpolant in the voxel's search ball (from the largest voxel
   differences there, per axis) and ``a = |De(r) - Dr(r)|``, every ``r'`` at distance ``t`` has
   ``gamma^2 >= t^2/dta^2 + max(0, a - L t)^2 / dD^2``. In regions of low gradient this ends the
   search after a few shells without visiting the distance ``gamma * dta``.
3. Gauss-Newton refinement again, from the best lattice point.

Every reported value is attained by an actual point ``r'`` of the interpolated evaluated dose, so
the computed gamma is never below the exact gamma of the trilinear interpolant; it exceeds it
only where the lattice search missed the basin of the true minimum, by a bounded amount that
shrinks with the search step (see docs/physics.md, "Gamma index").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
from numpy.typing import ArrayLike, NDArray

from planning.errors import InputError
from planning.progress import CancelToken, ProgressCallback, report

F32 = NDArray[np.float32]

#: Largest number of Gauss-Newton iterations before and after the lattice search.
_REFINE_MAX_ITERATIONS = 16

#: An iteration that lowers gamma^2 by less than this fraction of (gamma^2 + 0.001) ends the
#: local minimisation of a voxel (about 0.0005 in gamma near gamma = 1).
_REFINE_TOLERANCE = 1e-3

#: Voxels per chunk of the local minimisation (its temporaries are ~100 arrays of this size).
_CHUNK_VOXELS = 1 << 15

#: Voxels per chunk of the lattice search (its work arrays take ~60 bytes per voxel).
_SEARCH_CHUNK_VOXELS = 1 << 18

#: Voxels whose search has ended are dropped from the work arrays once they are this fraction.
_COMPRESS_FRACTION = 0.1


@dataclass(frozen=True)
class GammaCriteria:
    """Acceptance criteria of a gamma comparison.

    Attributes
    ----------
    dose_percent : float
        Dose-difference criterion, percent of the normalisation dose (global) or of the local
        reference dose (local), e.g. 3.0.
    dta_mm : float
        Distance-to-agreement criterion, mm, e.g. 3.0.
    low_dose_threshold_percent : float
        Reference voxels below this percent of the normalisation dose are not evaluated.
    global_normalization : bool
        True: global gamma (``dD`` = ``dose_percent`` of the normalisation dose). False: local
        gamma (``dD`` = ``dose_percent`` of the reference dose in the voxel; voxels with zero
        reference dose are then not evaluated).
    normalization_dose_gy : float or None
        Normalisation dose, Gy; None: the maximum of the reference dose.
    max_gamma : float
        The search radius is ``max_gamma * dta_mm``; gamma values are capped at ``max_gamma``.
        At least 1 (so that every failing voxel is recognised as failing).
    """

    dose_percent: float
    dta_mm: float
    low_dose_threshold_percent: float = 10.0
    global_normalization: bool = True
    normalization_dose_gy: float | None = None
    max_gamma: float = 2.0

    def __post_init__(self) -> None:
        def positive(name: str, value: float | None) -> None:
            if value is None or not (math.isfinite(value) and value > 0):
                raise InputError(f"gamma criteria: {name} must be a positive number, got {value!r}")

        positive("dose_percent", self.dose_percent)
        positive("dta_mm", self.dta_mm)
        t = self.low_dose_threshold_percent
        if not (math.isfinite(t) and 0.0 <= t < 100.0):
            raise InputError("gamma criteria: low_dose_threshold_percent must be in [0, 100), "
                             f"got {t!r}")
        if self.normalization_dose_gy is not None:
            positive("normalization_dose_gy", self.normalization_dose_gy)
        if not (math.isfinite(self.max_gamma) and self.max_gamma >= 1.0):
            raise InputError(
                f"gamma criteria: max_gamma must be at least 1, got {self.max_gamma!r}")

    @property
    def label(self) -> str:
        """Short text such as ``"3%/3mm"`` (``"3%/3mm local"`` for local gamma)."""
        text = f"{self.dose_percent:g}%/{self.dta_mm:g}mm"
        return text if self.global_normalization else f"{text} local"


@dataclass(frozen=True, eq=False)
class GammaResult:
    """Result of :func:`gamma_index`.

    Attributes
    ----------
    gamma : (nz, ny, nx) ndarray of float32
        Gamma on the reference grid, capped at ``criteria.max_gamma``; NaN where not evaluated
        (reference dose below the low-dose threshold).
    criteria : GammaCriteria
        The criteria used.
    pass_rate_percent : float
        Percent of evaluated voxels with ``gamma <= 1``.
    evaluated_voxels : int
        Number of evaluated voxels.
    mean_gamma : float
        Mean gamma over the evaluated voxels (capped values): a lower bound of the mean when
        any of them reached the cap (:attr:`mean_capped`, :meth:`mean_text`).
    gamma_p95 : float
        95th percentile of gamma over the evaluated voxels (linear interpolation); equal to
        ``criteria.max_gamma`` when at least 5 % of them reach the cap, where the true
        percentile is at least that (:attr:`p95_capped`, :meth:`p95_text`).
    voxels_at_cap : int
        Number of evaluated voxels whose gamma is the cap ``criteria.max_gamma`` (their true
        gamma is at least that).
    normalization_dose_gy : float
        The normalisation dose used, Gy.
    """

    gamma: F32
    criteria: GammaCriteria
    pass_rate_percent: float
    evaluated_voxels: int
    mean_gamma: float
    gamma_p95: float
    voxels_at_cap: int
    normalization_dose_gy: float

    @property
    def p95_capped(self) -> bool:
        """Whether the 95th percentile is the search cap ``criteria.max_gamma``: the search
        stopped there, so the percentile is only known to be at least the cap."""
        return self.gamma_p95 >= at_cap_gamma(self.criteria.max_gamma)

    @property
    def mean_capped(self) -> bool:
        """Whether any evaluated voxel's gamma is the cap: the mean of the capped values is
        then only known to be a lower bound of the mean."""
        return self.voxels_at_cap > 0

    def mean_text(self) -> str:
        """The mean for a table: ``"0.432"``, or ``"≥ 0.432"`` when voxels reached the cap
        (:attr:`mean_capped`)."""
        return f"≥ {self.mean_gamma:.3g}" if self.mean_capped else f"{self.mean_gamma:.3g}"

    def p95_text(self) -> str:
        """The 95th percentile for a table: ``"0.87"``, or ``"≥ 2.00"`` when it reached the
        cap (:attr:`p95_capped`)."""
        if self.p95_capped:
            return f"≥ {self.criteria.max_gamma:.2f}"
        return f"{self.gamma_p95:.2f}"


def at_cap_gamma(max_gamma: float) -> float:
    """The least gamma value that is the cap ``max_gamma``: gamma is float32, and
    sqrt(float32(cap**2)) may differ from the cap in the 7th digit."""
    return max_gamma * (1.0 - 1e-6)


# --------------------------------------------------------------------------- input checks


def _as_dose(name: str, values: ArrayLike) -> F32:
    arr = np.asarray(values)
    if arr.ndim != 3:
        raise InputError(f"gamma: the {name} dose must be a (nz, ny, nx) array, got shape "
                         f"{arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"gamma: the {name} dose must be real numbers, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InputError(f"gamma: the {name} dose contains NaN or infinite values")
    low = float(out.min()) if out.size else 0.0
    if low < 0.0:
        raise InputError(f"gamma: the {name} dose contains negative values (minimum {low:g} Gy)")
    return out


def _as_spacing(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    sp = tuple(float(s) for s in spacing_mm)
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"gamma: spacing_mm must be three positive mm (sz, sy, sx), got "
                         f"{tuple(spacing_mm)}")
    return (sp[0], sp[1], sp[2])


# --------------------------------------------------------------------------- building blocks


def _gradient_bound(dose: F32, spacing: tuple[float, float, float],
                    reach: tuple[int, int, int]) -> F32:
    """Upper bound of ``|grad|`` of the trilinear interpolant of ``dose`` near every voxel.

    Within one cell the derivative along axis ``i`` is a convex combination of the cell's four
    voxel differences along ``i``, divided by the spacing; the largest of those over a box of
    ``reach[i] + 1`` voxels around a voxel bounds it in every cell the box touches, and the norm
    of the three per-axis bounds bounds ``|grad|`` (Gy/mm). Shape ``dose.shape``.
    """
    total = np.zeros(dose.shape, dtype=np.float32)
    size = tuple(2 * r + 3 for r in reach)
    for axis in range(3):
        if dose.shape[axis] < 2:
            continue
        diff = np.abs(np.diff(dose, axis=axis))
        diff *= np.float32(1.0 / spacing[axis])
        pad = [(0, 0)] * 3
        pad[axis] = (0, 1)
        diff = np.pad(diff, pad)
        # the box is centred, so it also covers the differences that end at the voxel
        bound = ndi.maximum_filter(diff, size=size, mode="nearest")
        del diff
        bound *= bound
        total += bound
        del bound
    np.sqrt(total, out=total)
    return total


def _trilinear(dose: F32, pos: list[F32], with_gradient: bool,
               spacing: tuple[float, float, float]) -> tuple[F32, list[F32]]:
    """Trilinear value (and gradient, Gy/mm) of ``dose`` at index positions ``pos`` = [z, y, x].

    Positions must lie inside ``[0, n - 1]`` per axis. Returns ``(value, [dz, dy, dx])``; the
    gradient list is empty unless ``with_gradient``.
    """
    shape = dose.shape
    i0: list[NDArray[np.intp]] = []
    w: list[F32] = []
    step: list[int] = []
    strides = (shape[1] * shape[2], shape[2], 1)
    for axis in range(3):
        n = shape[axis]
        if n == 1:
            i0.append(np.zeros(pos[axis].shape, dtype=np.intp))
            w.append(np.zeros(pos[axis].shape, dtype=np.float32))
            step.append(0)
            continue
        lo = np.minimum(np.floor(pos[axis]).astype(np.intp), n - 2)
        i0.append(lo)
        w.append((pos[axis] - lo).astype(np.float32))
        step.append(strides[axis])
    base = (i0[0] * strides[0] + i0[1] * strides[1] + i0[2]).astype(np.intp)
    flat = dose.reshape(-1)
    c = {}
    for bz in (0, 1):
        for by in (0, 1):
            for bx in (0, 1):
                c[bz, by, bx] = flat.take(base + (bz * step[0] + by * step[1] + bx * step[2]))
    wz, wy, wx = w

    def lerp(lo: F32, hi: F32, t: F32) -> F32:
        return lo + t * (hi - lo)

    # x first, then y, then z
    cx = {(bz, by): lerp(c[bz, by, 0], c[bz, by, 1], wx) for bz in (0, 1) for by in (0, 1)}
    cy = {bz: lerp(cx[bz, 0], cx[bz, 1], wy) for bz in (0, 1)}
    value = lerp(cy[0], cy[1], wz)
    if not with_gradient:
        return value, []
    gz = (cy[1] - cy[0]) * np.float32(1.0 / spacing[0] if step[0] else 0.0)
    gy = (lerp(cx[0, 1], cx[1, 1], wz) - lerp(cx[0, 0], cx[1, 0], wz)) * np.float32(
        1.0 / spacing[1] if step[1] else 0.0)
    ex = {bx: lerp(lerp(c[0, 0, bx], c[0, 1, bx], wy), lerp(c[1, 0, bx], c[1, 1, bx], wy), wz)
          for bx in (0, 1)}
    gx = (ex[1] - ex[0]) * np.float32(1.0 / spacing[2] if step[2] else 0.0)
    return value, [gz, gy, gx]


@dataclass
class _Voxels:
    """The evaluated voxels: index, reference dose and dose criterion (compressed arrays)."""

    flat: NDArray[np.intp]  # flat index into the (nz, ny, nx) grid
    dr: F32  # reference dose, Gy
    inv_dd2: F32 | float  # 1 / dD^2, 1/Gy^2 (array for local gamma)

    def select(self, keep: NDArray[np.bool_] | NDArray[np.intp]) -> _Voxels:
        inv = self.inv_dd2 if isinstance(self.inv_dd2, float) else self.inv_dd2[keep]
        return _Voxels(self.flat[keep], self.dr[keep], inv)


def _refine(
    dose: F32,
    vox: _Voxels,
    spacing: tuple[float, float, float],
    dta_mm: float,
    radius_mm: float,
    d_mm: list[F32],
    best: F32,
    axis_sweeps: bool,
) -> None:
    """Damped Gauss-Newton minimisation of gamma^2 from offsets ``d_mm`` (updated in place).

    ``best`` holds gamma^2 at ``d_mm`` on entry and the (never larger) value at the returned
    offsets on exit: a trial offset is kept only where it lowers gamma^2, otherwise the next step
    is halved. A voxel stops when an iteration gains less than ``_REFINE_TOLERANCE`` relative to
    gamma^2, after two rejected steps in a row, or after ``_REFINE_MAX_ITERATIONS``. Offsets stay
    inside the grid and inside the search ball.
    """
    shape = dose.shape
    centre_all = np.unravel_index(vox.flat, shape)
    inv_sp = [np.float32(1.0 / s) for s in spacing]
    inv_dta2 = np.float32(1.0 / dta_mm**2)
    dta2 = np.float32(dta_mm**2)
    damping = np.ones(vox.dr.shape, dtype=np.float32)
    act = np.flatnonzero(best > 0)
    for _ in range(_REFINE_MAX_ITERATIONS):
        if act.size == 0:
            break
        centre = [centre_all[a][act] for a in range(3)]
        lo_mm = [(-centre[a] * spacing[a]).astype(np.float32) for a in range(3)]
        hi_mm = [((shape[a] - 1 - centre[a]) * spacing[a]).astype(np.float32) for a in range(3)]
        d = [d_mm[a][act] for a in range(3)]
        b = best[act]
        b_start = b.copy()
        dr = vox.dr[act]
        inv_dd2 = vox.inv_dd2 if isinstance(vox.inv_dd2, float) else vox.inv_dd2[act]
        damp = damping[act]
        pos = [centre[a] + d[a] * inv_sp[a] for a in range(3)]
        value, grad = _trilinear(dose, pos, True, spacing)
        g2 = grad[0] * grad[0] + grad[1] * grad[1] + grad[2] * grad[2]
        # the dose linearised at d: De ~ c + g.d' with c = De(d) - g.d, minus Dr
        c = value - dr - (grad[0] * d[0] + grad[1] * d[1] + grad[2] * d[2])
        # minimiser of |d'|^2/dta^2 + (c + g.d')^2/dD^2, with dD^2 = 1 / inv_dd2
        dd2 = np.float32(1.0) / inv_dd2
        factor = -c * dta2 / (dd2 + g2 * dta2)
        target = [factor * grad[a] for a in range(3)]
        # where it leaves the grid along an axis, fix that component on the grid face and
        # solve again for the others (one projection pass)
        clipped = [(target[a] < lo_mm[a]) | (target[a] > hi_mm[a]) for a in range(3)]
        if any(bool(m.any()) for m in clipped):
            fixed = [np.clip(target[a], lo_mm[a], hi_mm[a]) for a in range(3)]
            c_fix = c + sum(np.where(clipped[a], grad[a] * fixed[a], 0) for a in range(3))
            free_g = [np.where(clipped[a], np.float32(0.0), grad[a]) for a in range(3)]
            g2_free = free_g[0] ** 2 + free_g[1] ** 2 + free_g[2] ** 2
            factor = -c_fix * dta2 / (dd2 + g2_free * dta2)
            target = [np.where(clipped[a], fixed[a], factor * free_g[a]) for a in range(3)]
        trial = [d[a] + damp * (target[a] - d[a]) for a in range(3)]
        norm = np.sqrt(trial[0] ** 2 + trial[1] ** 2 + trial[2] ** 2)
        shrink = np.minimum(np.float32(1.0), np.float32(radius_mm) / np.maximum(norm, 1e-30))
        trial = [np.clip(t * shrink, lo_mm[a], hi_mm[a]) for a, t in enumerate(trial)]
        pos = [centre[a] + trial[a] * inv_sp[a] for a in range(3)]
        value, _ = _trilinear(dose, pos, False, spacing)
        diff = value - dr
        gamma2 = (trial[0] ** 2 + trial[1] ** 2 + trial[2] ** 2) * inv_dta2 \
            + diff * diff * inv_dd2
        better = gamma2 < b
        rows = act[better]
        best[rows] = gamma2[better]
        for a in range(3):
            d_mm[a][rows] = trial[a][better]
        damp = np.where(better, np.float32(1.0), damp * np.float32(0.5))
        damping[act] = damp
        gain = np.where(better, b - gamma2, np.float32(0.0))
        if axis_sweeps:
            b = best[act]
            d = [d_mm[a][act] for a in range(3)]
            for axis in range(3):
                _axis_line_search(dose, spacing, dta_mm, centre, d, b, dr, inv_dd2, axis)
            gain += best[act] - b
            best[act] = b
            for a in range(3):
                d_mm[a][act] = d[a]
        # continue after a real gain, or after at most two rejected (halved) steps in a row
        going = np.where(gain > 0, gain > _REFINE_TOLERANCE * (b_start + np.float32(1e-3)),
                         damp >= np.float32(0.25))
        going &= best[act] > 0
        act = act[going]


def _refine_in_chunks(
    dose: F32,
    vox: _Voxels,
    spacing: tuple[float, float, float],
    dta_mm: float,
    radius_mm: float,
    d_mm: list[F32],
    best: F32,
    rows: NDArray[np.intp],
    *,
    axis_sweeps: bool,
) -> None:
    """:func:`_refine` of the voxels ``rows``, in chunks that bound its temporary arrays."""
    for start in range(0, rows.size, _CHUNK_VOXELS):
        part = rows[start:start + _CHUNK_VOXELS]
        d = [d_mm[a][part] for a in range(3)]
        b = best[part]
        _refine(dose, vox.select(part), spacing, dta_mm, radius_mm, d, b, axis_sweeps)
        best[part] = b
        for a in range(3):
            d_mm[a][part] = d[a]


def _axis_line_search(
    dose: F32,
    spacing: tuple[float, float, float],
    dta_mm: float,
    centre: list[NDArray[np.intp]],
    d_mm: list[F32],
    best: F32,
    dr: F32,
    inv_dd2: F32 | float,
    axis: int,
) -> None:
    """Exact minimisation of gamma^2 along ``axis`` over the two cells around each offset.

    With the other two coordinates fixed, the trilinear interpolant is linear along ``axis``
    within a cell, so gamma^2 is a quadratic on each cell's segment and its minimum is closed
    form. This finds minima on the kinks at cell faces (e.g. at the evaluated dose's maximum),
    where the Gauss-Newton step, which needs a gradient, stalls. ``d_mm`` and ``best`` are
    updated in place where gamma^2 decreases.
    """
    n = dose.shape[axis]
    if n < 2:
        return
    sp = spacing[axis]
    pos = [centre[a] + d_mm[a] / np.float32(spacing[a]) for a in range(3)]
    f = np.clip(np.floor(pos[axis]), 0, n - 2).astype(np.intp)
    nodes = (np.maximum(f - 1, 0), f, f + 1)
    values = []
    for u in nodes:
        at = list(pos)
        at[axis] = u.astype(np.float32)
        values.append(_trilinear(dose, at, False, spacing)[0])
    inv_dta2 = np.float32(1.0 / dta_mm**2)
    others2 = sum(d_mm[a] * d_mm[a] for a in range(3) if a != axis)
    for (u0, v0), (u1, v1) in ((nodes[0], values[0]), (nodes[1], values[1])), \
            ((nodes[1], values[1]), (nodes[2], values[2])):
        x0 = ((u0 - centre[axis]) * sp).astype(np.float32)
        dx = ((u1 - u0) * sp).astype(np.float32)
        r0 = v0 - dr
        dv = v1 - v0
        curvature = dx * dx * inv_dta2 + dv * dv * inv_dd2
        slope = dx * x0 * inv_dta2 + dv * r0 * inv_dd2
        t = np.clip(-slope / np.maximum(curvature, np.float32(1e-30)), 0.0, 1.0)
        x = x0 + t * dx
        r = r0 + t * dv
        gamma2 = (others2 + x * x) * inv_dta2 + r * r * inv_dd2
        better = gamma2 < best
        best[better] = gamma2[better]
        d_mm[axis][better] = x[better]


@dataclass(frozen=True)
class _Lattice:
    """Search offsets in order of distance, with their trilinear corners in the padded volume."""

    offsets_mm: NDArray[np.float64]  # (K, 3) z, y, x
    dist2_mm2: NDArray[np.float64]  # (K,)
    corners: list[tuple[NDArray[np.intp], NDArray[np.float32]]]  # per offset: flat offsets, weights
    group_starts: list[int]  # first offset of each shell of equal distance, then K
    pad: tuple[int, int, int]


def _lattice(spacing: tuple[float, float, float], step_mm: float, radius_mm: float,
             padded_shape_of: tuple[int, int, int]) -> _Lattice:
    """Lattice offsets within ``radius_mm`` (origin excluded), step ``spacing / k`` per axis."""
    k = [max(1, math.ceil(s / step_mm - 1e-9)) for s in spacing]
    steps = [s / kk for s, kk in zip(spacing, k, strict=True)]
    m = [math.floor(radius_mm / st + 1e-9) for st in steps]
    pad = (m[0] // k[0] + 2, m[1] // k[1] + 2, m[2] // k[2] + 2)
    padded = tuple(n + 2 * p for n, p in zip(padded_shape_of, pad, strict=True))
    strides = (padded[1] * padded[2], padded[2], 1)
    jz, jy, jx = np.meshgrid(*(np.arange(-mm, mm + 1) for mm in m), indexing="ij")
    j = np.stack([jz.ravel(), jy.ravel(), jx.ravel()], axis=1)
    off = j * np.asarray(steps)
    d2 = (off**2).sum(axis=1)
    keep = (d2 <= radius_mm**2 * (1 + 1e-9)) & (d2 > 0)
    j, off, d2 = j[keep], off[keep], d2[keep]
    order = np.lexsort((j[:, 2], j[:, 1], j[:, 0], np.round(d2, 9)))
    j, off, d2 = j[order], off[order], d2[order]
    corners = []
    for row in j:
        axis_terms = []
        for a in range(3):
            cell, rem = divmod(int(row[a]), k[a])
            if rem == 0:
                axis_terms.append([(cell, 1.0)])
            else:
                q = rem / k[a]
                axis_terms.append([(cell, 1.0 - q), (cell + 1, q)])
        flats, weights = [], []
        for cz, wz in axis_terms[0]:
            for cy, wy in axis_terms[1]:
                for cx, wx in axis_terms[2]:
                    flats.append(cz * strides[0] + cy * strides[1] + cx)
                    weights.append(wz * wy * wx)
        corners.append((np.asarray(flats, dtype=np.intp), np.asarray(weights, dtype=np.float32)))
    rounded = np.round(d2, 9)
    starts = [0, *[int(i) for i in np.flatnonzero(np.diff(rounded) > 0) + 1], len(d2)]
    return _Lattice(off, d2, corners, starts, pad)


def _lattice_search(
    padded: F32,
    pshape: tuple[int, int, int],
    lattice: _Lattice,
    shape: tuple[int, ...],
    vox: _Voxels,
    a: F32,
    lip: F32,
    best_in: F32,
    dta: float,
    cap2: float,
    cancel: CancelToken | None,
    on_group: Callable[[float], None],
) -> tuple[F32, NDArray[np.int32]]:
    """Search the lattice offsets, nearest shells first, for the voxels ``vox``.

    ``padded`` is the flattened evaluated dose with a NaN border of ``lattice.pad`` voxels (so a
    lattice point outside the grid gives NaN and is never taken). ``a`` = ``|De(r) - Dr(r)|`` and
    ``lip`` (gradient bound, Gy/mm) give the stop bound; ``best_in`` is gamma^2 found so far.
    Returns gamma^2 and the index of the lattice offset that gave it (-1: none was better).
    """
    inv_dta2 = 1.0 / dta**2
    cz, cy, cx = np.unravel_index(vox.flat, shape)
    pidx = (((cz + lattice.pad[0]) * pshape[1] + cy + lattice.pad[1]) * pshape[2]
            + cx + lattice.pad[2]).astype(np.intp)
    del cz, cy, cx
    best = best_in.copy()
    best_k = np.full(best.shape, -1, dtype=np.int32)
    # work arrays over the voxels still searching; `rows` maps them to `vox`
    rows = np.arange(best.size, dtype=np.intp)
    w_pidx, w_dr, w_inv, w_a, w_lip = pidx, vox.dr, vox.inv_dd2, a, lip
    w_best, w_k = best.copy(), best_k.copy()
    ibuf = np.empty(best.shape, dtype=np.intp)
    vbuf = np.empty(best.shape, dtype=np.float32)
    acc = np.empty(best.shape, dtype=np.float32)
    better = np.empty(best.shape, dtype=bool)
    dta2 = dta**2
    n_groups = len(lattice.group_starts) - 1
    for g in range(n_groups):
        if rows.size == 0:
            break
        if cancel is not None:
            cancel.raise_if_cancelled("gamma index")
        start, stop = lattice.group_starts[g], lattice.group_starts[g + 1]
        t2 = float(lattice.dist2_mm2[start])
        if t2 * inv_dta2 >= cap2:
            break
        # lower bound of gamma^2 over all offsets at distance >= t: h(max(t, t*))
        t = math.sqrt(t2)
        dd2 = np.float32(1.0) / w_inv
        t_star = w_a * w_lip * np.float32(dta2) / (dd2 + w_lip * w_lip * np.float32(dta2))
        u = np.maximum(np.float32(t), t_star)
        rest = np.maximum(w_a - w_lip * u, np.float32(0.0))
        bound = u * u * np.float32(inv_dta2) + rest * rest * w_inv
        done = (w_best <= bound) | (bound >= cap2)
        n_done = int(np.count_nonzero(done))
        if n_done and n_done >= _COMPRESS_FRACTION * rows.size:
            best[rows[done]] = w_best[done]
            best_k[rows[done]] = w_k[done]
            keep = ~done
            rows = rows[keep]
            w_pidx, w_dr, w_a, w_lip = w_pidx[keep], w_dr[keep], w_a[keep], w_lip[keep]
            w_best, w_k = w_best[keep], w_k[keep]
            if not isinstance(w_inv, float):
                w_inv = w_inv[keep]
            if rows.size == 0:
                break
        n = rows.size
        ib, vb, ac, bt = ibuf[:n], vbuf[:n], acc[:n], better[:n]
        for kk in range(start, stop):
            offs, weights = lattice.corners[kk]
            for c in range(offs.size):
                np.add(w_pidx, offs[c], out=ib)
                np.take(padded, ib, out=vb, mode="clip")
                if c == 0:
                    if weights[0] == 1.0:
                        ac[...] = vb
                    else:
                        np.multiply(vb, weights[0], out=ac)
                else:
                    vb *= weights[c]
                    ac += vb
            ac -= w_dr
            ac *= ac
            ac *= w_inv
            ac += np.float32(t2 * inv_dta2)
            np.less(ac, w_best, out=bt)
            np.copyto(w_best, ac, where=bt)
            np.copyto(w_k, kk, where=bt)
        on_group((g + 1) / n_groups)
    best[rows] = w_best
    best_k[rows] = w_k
    return best, best_k


# --------------------------------------------------------------------------- gamma


def gamma_index(
    reference: ArrayLike,
    evaluated: ArrayLike,
    spacing_mm: Sequence[float],
    criteria: GammaCriteria,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    search_step_mm: float | None = None,
) -> GammaResult:
    """Gamma index of ``evaluated`` against ``reference`` on one grid.

    Parameters
    ----------
    reference, evaluated : (nz, ny, nx) array_like
        Doses on the same grid, Gy (any consistent unit), finite and non-negative. Resample
        first (:func:`planning.compare.resample.resample_to_grid`) if they come on two grids.
    spacing_mm : (sz, sy, sx)
        Voxel spacing of the grid, array order, mm.
    criteria : GammaCriteria
        Dose and distance criteria, threshold, normalisation, cap.
    progress : callable, optional, keyword-only
        ``progress(fraction, stage)``.
    cancel : CancelToken, optional, keyword-only
        Checked between search shells; raises :class:`planning.progress.OperationCancelled`.
    search_step_mm : float, optional, keyword-only
        Largest step of the offset lattice, mm; default ``dta_mm / 5``. The step used per axis
        is the voxel spacing divided by the smallest whole number that meets it.

    Returns
    -------
    GammaResult
        Gamma on the reference grid and its statistics.

    Raises
    ------
    InputError
        Shapes differ or are not 3D, doses negative, NaN or infinite, the reference is all zero,
        no voxel reaches the low-dose threshold, or the spacing or search step is not positive.
    """
    ref = _as_dose("reference", reference)
    ev = _as_dose("evaluated", evaluated)
    if ref.shape != ev.shape:
        raise InputError(f"gamma: reference {ref.shape} and evaluated {ev.shape} doses differ in "
                         "shape; resample them onto one grid first")
    spacing = _as_spacing(spacing_mm)
    dta = float(criteria.dta_mm)
    step_mm = dta / 5.0 if search_step_mm is None else float(search_step_mm)
    if not (math.isfinite(step_mm) and step_mm > 0):
        raise InputError(f"gamma: search_step_mm must be positive, got {search_step_mm!r}")
    ref_max = float(ref.max()) if ref.size else 0.0
    if ref_max <= 0.0:
        raise InputError("gamma: the reference dose is zero everywhere; nothing to compare")
    norm = (ref_max if criteria.normalization_dose_gy is None
            else float(criteria.normalization_dose_gy))
    threshold_gy = criteria.low_dose_threshold_percent / 100.0 * norm
    mask = ref >= threshold_gy
    if not criteria.global_normalization:
        mask &= ref > 0.0
    flat = np.flatnonzero(mask).astype(np.intp)
    del mask
    if flat.size == 0:
        raise InputError(
            f"gamma: no reference voxel reaches the low-dose threshold of "
            f"{criteria.low_dose_threshold_percent:g} % of {norm:g} Gy (reference maximum "
            f"{ref_max:g} Gy)")
    dr = ref.reshape(-1)[flat]
    frac = criteria.dose_percent / 100.0
    inv_dd2: F32 | float
    if criteria.global_normalization:
        inv_dd2 = 1.0 / (frac * norm) ** 2
    else:
        inv_dd2 = (np.float32(1.0) / (np.float32(frac) * dr) ** 2).astype(np.float32)
    vox = _Voxels(flat, dr, inv_dd2)
    radius = criteria.max_gamma * dta
    cap2 = np.float32(criteria.max_gamma**2)
    report(progress, 0.0, "gamma: gradient bound")

    lattice = _lattice(spacing, step_mm, radius, ref.shape)
    reach = (lattice.pad[0] - 1, lattice.pad[1] - 1, lattice.pad[2] - 1)
    lip = _gradient_bound(ev, spacing, reach).reshape(-1)[flat]
    de0 = ev.reshape(-1)[flat]
    a = np.abs(de0 - dr)
    del de0
    best = (a * a * vox.inv_dd2).astype(np.float32)

    # 1. Gauss-Newton from r' = r
    if cancel is not None:
        cancel.raise_if_cancelled("gamma index")
    report(progress, 0.05, "gamma: local minimisation")
    d0 = [np.zeros(flat.shape, dtype=np.float32) for _ in range(3)]
    _refine_in_chunks(ev, vox, spacing, dta, radius, d0, best, np.arange(flat.size),
                      axis_sweeps=False)

    # 2. lattice search, nearest shells first
    padded = np.pad(ev, [(p, p) for p in lattice.pad], mode="constant",
                    constant_values=np.nan).reshape(-1)
    pshape = (ref.shape[0] + 2 * lattice.pad[0], ref.shape[1] + 2 * lattice.pad[1],
              ref.shape[2] + 2 * lattice.pad[2])
    best_k = np.full(flat.shape, -1, dtype=np.int32)
    n_chunks = -(-flat.size // _SEARCH_CHUNK_VOXELS)
    for ci in range(n_chunks):
        part = slice(ci * _SEARCH_CHUNK_VOXELS, (ci + 1) * _SEARCH_CHUNK_VOXELS)
        sub = _Voxels(flat[part], vox.dr[part],
                      vox.inv_dd2 if isinstance(vox.inv_dd2, float) else vox.inv_dd2[part])

        def on_group(fraction: float, ci: int = ci) -> None:
            report(progress, 0.1 + 0.8 * (ci + fraction) / n_chunks, "gamma: search")

        best[part], best_k[part] = _lattice_search(
            padded, pshape, lattice, ref.shape, sub, a[part], lip[part], best[part], dta,
            float(cap2), cancel, on_group)
    del padded, lip, a

    # 3. Gauss-Newton and axis line searches from the best point found
    report(progress, 0.9, "gamma: local minimisation")
    from_lattice = best_k >= 0
    rows_k = np.flatnonzero(from_lattice)
    off = lattice.offsets_mm[best_k[rows_k]].astype(np.float32)
    for axis in range(3):
        d0[axis][rows_k] = off[:, axis]
    del off, rows_k, from_lattice, best_k
    _refine_in_chunks(ev, vox, spacing, dta, radius, d0, best,
                      np.flatnonzero((best > 0) & (best < cap2)), axis_sweeps=True)

    gamma_ev = np.sqrt(np.minimum(best, cap2))
    gamma = np.full(ref.shape, np.nan, dtype=np.float32)
    gamma.reshape(-1)[flat] = gamma_ev
    report(progress, 1.0, "gamma: done")
    return GammaResult(
        gamma=gamma,
        criteria=criteria,
        pass_rate_percent=100.0 * float(np.count_nonzero(gamma_ev <= 1.0)) / flat.size,
        evaluated_voxels=int(flat.size),
        mean_gamma=float(np.mean(gamma_ev, dtype=np.float64)),
        gamma_p95=float(np.percentile(gamma_ev, 95.0)),
        voxels_at_cap=int(np.count_nonzero(gamma_ev >= at_cap_gamma(criteria.max_gamma))),
        normalization_dose_gy=norm,
    )
