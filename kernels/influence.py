"""Sparse dose-influence entries of one energy layer of scanned pencil beams.

Model
-----
A spot of unit weight (``dose_scale`` sets the unit, e.g. 10^6 primaries) deposits at a voxel of
water-equivalent depth ``w`` and lateral distance ``r`` from the spot axis (in the voxel's plane)

    dose = dose_scale * idd(w) * [(1 - h) N(r; s_c) + h N(r; s_h)],
    N(r; s) = exp(-r^2 / 2 s^2) / (2 pi s^2),

with ``s_c^2 = sigma_air^2 + sigma_core(w)^2``, ``s_h^2 = sigma_air^2 + sigma_halo(w)^2`` and
``h = halo_weight(w)``: the double Gaussian integrates to ``idd(w)`` over the plane. The LET x dose
entry is ``dose * letd(w)``; likewise each extra per-depth quantity ``q_k(w)`` of the layer (e.g.
the dose-averaged quantities of an RBE model) gives an entry ``dose * q_k(w)`` at the same place.
The spot axis diverges from virtual sources at the scanning magnets:
a spot at ``(u_s, v_s)`` on the isocentre plane lies at ``u_s (SAD_u + t) / SAD_u`` (same for v)
at geometric depth ``t`` from the isocentre. Pairs beyond the cut-off radius ``R(w)``, which keeps
the fraction ``cutoff_fraction`` of the double Gaussian's 2-D integral, are dropped.

Algorithm
---------
Spots of a layer lie on a regular lateral lattice (spacing ``du, dv``, index ``(iu, iv)``).
Per voxel, all depth-dependent quantities are interpolated once; the cut-off disc becomes an
ellipse in lattice-index space. Its rows (clipped to the layer's spot bounding box) are the
voxel's *segments*: for each, index arithmetic alone (no KD-tree) gives the interval of lattice
columns inside the ellipse. A lookup table holds, for every lattice node, ``Q``: the number of
the layer's spots before it in row-major order. The spots of a segment are then exactly those of
row-major rank ``Q[lo] .. Q[hi + 1] - 1``, so

- the first pass (:func:`count_pairs`) counts the entries of every voxel from two table
  lookups per segment, without touching individual pairs, and
- the second pass (:func:`chunk_pairs`) expands the segments into their pairs (a ragged
  ``repeat``), never visiting an empty lattice node, and knows the position of each pair in its
  voxel's CSR row: segments are taken voxel by voxel and row by row, and ranks increase along a
  row, so a voxel's entries follow the row-major spot order.

A layer is set up once (:func:`prepare_layer`: depth tables resampled on a uniform WEPL grid,
spot lookup table) and planned per block of voxels (:func:`plan_layer`: selection, cut-off
radius and window per voxel), so the caller can run all layers over one block of voxels while
the block's output rows are still in cache.

The lateral Gaussians are separable, ``exp(-(du^2 + dv^2) a) = exp(-du^2 a) exp(-dv^2 a)``: the
``du`` factors are tabulated per (voxel, window column) and the ``dv`` factors per segment, so a
pair costs table lookups and three arithmetic operations, no exponential.

All operations are in the array API standard (``take``, ``exp``, ``repeat``,
``cumulative_sum``, ``searchsorted``...), so the kernel runs under NumPy, CuPy and
array_api_strict; data are float32, indices int64 in the work arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kernels.backend import array_namespace, to_numpy

#: Default bound on the lattice nodes inside the windows of a chunk's voxels. It bounds the
#: pairs of a chunk; the work arrays take about 60 bytes per pair.
DEFAULT_CHUNK_CANDIDATES = 1 << 19


@dataclass(frozen=True)
class PencilBeamTables:
    """Pencil-beam data of one energy layer on its depth nodes (host NumPy, float64).

    Attributes
    ----------
    depth_mm : (D,) float array
        Water-equivalent depth nodes, strictly increasing; dose is 0 beyond the last node.
    idd : (D,) float array
        Laterally integrated dose per primary, MeV cm^2 / g.
    sigma_core_mm, sigma_halo_mm : (D,) float arrays
        Lateral sigmas added by the medium, mm.
    halo_weight : (D,) float array
        Fraction of the integrated dose in the halo Gaussian.
    letd_kev_um : (D,) float array
        Dose-averaged LET, keV/um.
    sigma_air_mm : float
        In-air spot sigma at the isocentre, added in quadrature to both sigmas.
    model_quantities : tuple of (D,) float arrays
        Extra dose-averaged quantities ``q_k`` (any unit) whose dose-weighted entries
        ``dose * q_k`` are evaluated along with the dose; empty by default.
    """

    depth_mm: NDArray[np.float64]
    idd: NDArray[np.float64]
    sigma_core_mm: NDArray[np.float64]
    sigma_halo_mm: NDArray[np.float64]
    halo_weight: NDArray[np.float64]
    letd_kev_um: NDArray[np.float64]
    sigma_air_mm: float
    model_quantities: tuple[NDArray[np.float64], ...] = ()


def cutoff_radius_mm(
    sigma_core_mm: ArrayLike, sigma_halo_mm: ArrayLike, halo_weight: ArrayLike, fraction: float
) -> NDArray[np.float64]:
    """Radius keeping ``fraction`` of the 2-D integral of a double Gaussian.

    Solves ``1 - (1-h) exp(-R^2/2 s_c^2) - h exp(-R^2/2 s_h^2) = fraction`` elementwise by
    bisection between the single-Gaussian radii of the two sigmas (which bracket the root).

    Parameters
    ----------
    sigma_core_mm, sigma_halo_mm : array_like
        Total (in-air and medium) sigmas, mm, > 0.
    halo_weight : array_like
        Halo fraction ``h`` in [0, 1].
    fraction : float
        Kept fraction, in (0, 1).

    Returns
    -------
    float array
        ``R`` in mm, broadcast shape of the inputs.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"cutoff fraction must lie in (0, 1), got {fraction}")
    sc, sh, h = np.broadcast_arrays(
        np.asarray(sigma_core_mm, dtype=np.float64),
        np.asarray(sigma_halo_mm, dtype=np.float64),
        np.asarray(halo_weight, dtype=np.float64),
    )
    if np.any(sc <= 0) or np.any(sh <= 0):
        raise ValueError("sigmas must be positive")
    k = math.sqrt(-2.0 * math.log1p(-fraction))
    lo = np.minimum(sc, sh) * k
    hi = np.maximum(sc, sh) * k
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        r2 = mid * mid
        kept = 1.0 - (1.0 - h) * np.exp(-r2 / (2 * sc * sc)) - h * np.exp(-r2 / (2 * sh * sh))
        below = kept < fraction
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


#: Newton steps of the cut-off radius for one density threshold. From the inner single-Gaussian
#: bound the iterates rise monotonically; with a halo far wider than the core the first steps are
#: short, and 20 steps reach the bisection's answer within 1e-7 mm on every layer of the generic
#: machine (10 left 0.07 mm at a kept fraction of 0.999).
NEWTON_STEPS = 20

#: Step of the uniform WEPL grid on which each layer's depth tables are resampled, mm.
#: Linear interpolation on it departs from that on the depth nodes only near a node, by at most
#: a quarter of the slope change times the step: below 0.1 % of the Bragg peak for 1-mm peaks.
WEPL_TABLE_STEP_MM = 0.025


@dataclass(frozen=True)
class BeamVoxels:
    """Voxels seen by one beam, in processing order, with their spot-lattice coordinates.

    Voxels are sorted by WEPL bins (so that a layer reaching a given depth uses a prefix, and
    voxels of a chunk have similar cut-off radii) and, within a bin, by ``index`` (so that the
    writes of a chunk into a CSR matrix stay local).

    Attributes
    ----------
    index : (n,) int64 array
        Caller's identifier of each voxel (e.g. its flat dose-grid index, the CSR row).
    cu, cv : (n,) float32 arrays
        Fractional lattice indices of the voxel projected to the isocentre plane along the
        diverging spot rays: ``(u * SAD_u / (SAD_u + t) - origin_u) / du``.
    step_u_mm, step_v_mm : (n,) float32 arrays
        Distance between neighbouring spot axes at the voxel's depth, ``du (SAD_u + t) / SAD_u``.
    wepl_mm : (n,) float32 array
        Water-equivalent depth of the voxel.
    wepl_index : (n,) int64 array
        ``floor(wepl / WEPL_TABLE_STEP_MM)``.
    wepl_frac : (n,) float32 array
        ``wepl / WEPL_TABLE_STEP_MM - wepl_index``.
    bin_mm : float
        Width of the WEPL bins.
    bin_end : (B,) int64 host array
        ``bin_end[b]``: number of voxels in bins ``0 .. b``.
    """

    index: Any
    cu: Any
    cv: Any
    step_u_mm: Any
    step_v_mm: Any
    wepl_mm: Any
    wepl_index: Any
    wepl_frac: Any
    bin_mm: float
    bin_end: NDArray[np.int64]

    @property
    def n(self) -> int:
        return int(self.index.shape[0])

    def prefix_reaching(self, depth_mm: float) -> int:
        """Number of leading voxels that includes every voxel with WEPL <= ``depth_mm``."""
        b = math.floor(depth_mm / self.bin_mm)
        if b < 0:
            return 0
        return int(self.bin_end[min(b, self.bin_end.size - 1)])


def beam_voxels(
    index: Any,
    u_mm: Any,
    v_mm: Any,
    t_mm: Any,
    wepl_mm: Any,
    *,
    lattice_spacing_mm: tuple[float, float],
    lattice_origin_mm: tuple[float, float] = (0.0, 0.0),
    sad_mm: tuple[float, float],
    wepl_bin_mm: float = 4.0,
) -> BeamVoxels:
    """Prepare the voxels of one beam for :func:`plan_layer`.

    Parameters
    ----------
    index : (n,) int array
        Caller's voxel identifiers, unique and >= 0.
    u_mm, v_mm, t_mm : (n,) float arrays
        Beam's-eye-view coordinates of the voxel centres relative to the isocentre; ``t`` is
        the geometric depth along the beam, positive downstream.
    wepl_mm : (n,) float array
        Water-equivalent depth of the voxel centres, >= 0.
    lattice_spacing_mm : (du, dv)
        Spot lattice spacing at the isocentre plane.
    lattice_origin_mm : (u0, v0)
        Position of lattice node (0, 0) at the isocentre plane.
    sad_mm : (SAD_u, SAD_v)
        Virtual source-axis distances of the u and v scanning directions.
    wepl_bin_mm : float
        Width of the WEPL bins of the processing order.

    Returns
    -------
    BeamVoxels
        Arrays in the namespace of the inputs.
    """
    xp = array_namespace(index, u_mm, v_mm, t_mm, wepl_mm)
    du, dv = (float(s) for s in lattice_spacing_mm)
    su, sv = (float(s) for s in sad_mm)
    if du <= 0 or dv <= 0 or su <= 0 or sv <= 0 or wepl_bin_mm <= 0:
        raise ValueError("lattice spacing, SADs and the WEPL bin width must be positive")
    n = int(index.shape[0])
    t = xp.astype(t_mm, xp.float64)
    if n and float(xp.min(t)) <= -min(su, sv):
        raise ValueError("voxels lie behind the virtual source (t <= -SAD)")
    wepl64 = xp.clip(xp.astype(wepl_mm, xp.float64), 0.0, None)
    ku = (su + t) / su
    kv = (sv + t) / sv
    cu = (xp.astype(u_mm, xp.float64) / ku - lattice_origin_mm[0]) / du
    cv = (xp.astype(v_mm, xp.float64) / kv - lattice_origin_mm[1]) / dv
    return _ordered_voxels(xp, xp.astype(index, xp.int64), cu, cv, ku * du, kv * dv, wepl64,
                           float(wepl_bin_mm))


def _ordered_voxels(xp: Any, idx: Any, cu: Any, cv: Any, step_u: Any, step_v: Any,
                    wepl64: Any, wepl_bin_mm: float) -> BeamVoxels:
    """A :class:`BeamVoxels` of per-voxel arrays (n,) in the caller's order, sorted here."""
    n = int(idx.shape[0])
    n_max = (int(xp.max(idx)) + 1) if n else 1
    wbin = xp.astype(xp.floor(wepl64 / wepl_bin_mm), xp.int64)
    order = xp.argsort(wbin * n_max + idx)
    wepl_sorted = xp.take(wepl64, order)
    scaled = wepl_sorted / WEPL_TABLE_STEP_MM
    wepl_index = xp.floor(scaled)
    n_bins = (int(xp.max(wbin)) + 1) if n else 1
    bins_sorted = to_numpy(xp.take(wbin, order))
    bin_end = np.searchsorted(bins_sorted, np.arange(n_bins), side="right").astype(np.int64)
    return BeamVoxels(
        index=xp.take(idx, order),
        cu=xp.astype(xp.take(cu, order), xp.float32),
        cv=xp.astype(xp.take(cv, order), xp.float32),
        step_u_mm=xp.astype(xp.take(step_u, order), xp.float32),
        step_v_mm=xp.astype(xp.take(step_v, order), xp.float32),
        wepl_mm=xp.astype(wepl_sorted, xp.float32),
        wepl_index=xp.astype(wepl_index, xp.int64),
        wepl_frac=xp.astype(scaled - wepl_index, xp.float32),
        bin_mm=wepl_bin_mm,
        bin_end=bin_end,
    )


def scale_wepl(voxels: BeamVoxels, factor: float) -> BeamVoxels:
    """The same voxels with every WEPL multiplied by ``factor`` (> 0), re-sorted.

    WEPL is linear in the stopping power, so this is the geometry of the stopping power
    scaled by ``factor`` (a range-uncertainty scenario) without tracing the rays again.
    """
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"WEPL scale factor must be positive, got {factor}")
    xp = array_namespace(voxels.wepl_mm)
    return _ordered_voxels(xp, voxels.index, voxels.cu, voxels.cv, voxels.step_u_mm,
                           voxels.step_v_mm, xp.astype(voxels.wepl_mm, xp.float64) * factor,
                           voxels.bin_mm)


def select_voxels(voxels: BeamVoxels, keep: Any, index: Any = None) -> BeamVoxels:
    """The voxels with ``keep`` set, in the same (processing) order, optionally renamed.

    Parameters
    ----------
    voxels : BeamVoxels
    keep : (n,) bool array
        Voxels to keep, in the order of ``voxels``.
    index : (n,) int array, optional
        New identifiers for all voxels (e.g. compact row numbers); the kept ones are used.

    Returns
    -------
    BeamVoxels
        With ``bin_end`` recounted for the kept voxels.
    """
    xp = array_namespace(voxels.cu)
    pos = xp.nonzero(keep)[0]
    ids = voxels.index if index is None else xp.astype(index, xp.int64)
    kept_np = to_numpy(pos)
    bin_end = np.searchsorted(kept_np, voxels.bin_end, side="left").astype(np.int64)
    return BeamVoxels(
        index=xp.take(ids, pos), cu=xp.take(voxels.cu, pos), cv=xp.take(voxels.cv, pos),
        step_u_mm=xp.take(voxels.step_u_mm, pos), step_v_mm=xp.take(voxels.step_v_mm, pos),
        wepl_mm=xp.take(voxels.wepl_mm, pos), wepl_index=xp.take(voxels.wepl_index, pos),
        wepl_frac=xp.take(voxels.wepl_frac, pos), bin_mm=voxels.bin_mm, bin_end=bin_end)


@dataclass(frozen=True)
class Chunk:
    """A contiguous range ``[start, stop)`` of a plan's voxels and its window size."""

    start: int
    stop: int
    rows: int  # window rows (v): segments per voxel
    cols: int  # window columns (u)


@dataclass(frozen=True)
class LayerSetup:
    """Per-layer data independent of the voxels (see :func:`prepare_layer`).

    Attributes
    ----------
    depth_max_mm : float
        Deepest WEPL with dose (last depth node with a positive IDD); -1 when there is none.
    radius_mm : (L,) float32 array
        Cut-off radius on the uniform WEPL grid of step ``WEPL_TABLE_STEP_MM``.
    dose_tables : ((5 + K) * L,) float32 array
        On the same grid, one after the other: ``dose_scale * idd``, halo weight, ``s_c^2``,
        ``s_h^2`` (mm^2), LETd and the ``K`` model quantities.
    table_nodes : int
        ``L``.
    rank_table : (H * W,) int64 array
        ``Q``: spots before each lattice node in row-major order, on the spots' bounding box
        plus one column (rows = v, ``W = iu_max - iu_min + 2``).
    table_width : int
        ``W``.
    iu_min, iu_max, iv_min, iv_max : int
        Spots' bounding box (lattice indices).
    spot_iu : (n_spots,) int64 array
        Lattice column of the spot of each row-major rank.
    rank_to_spot : (n_spots,) int32 (int64 if needed) array or None
        Spot identifier of each row-major rank, None when it is the rank itself.
    n_model : int
        ``K``: number of model quantities in ``dose_tables``.
    """

    depth_max_mm: float
    radius_mm: Any
    dose_tables: Any
    table_nodes: int
    rank_table: Any
    table_width: int
    iu_min: int
    iu_max: int
    iv_min: int
    iv_max: int
    spot_iu: Any
    rank_to_spot: Any
    n_model: int = 0


@dataclass(frozen=True)
class LayerPlan:
    """The voxels of a block of a beam that a layer reaches, and their windows of spots.

    Per-voxel arrays are for the selected voxels, in beam order.

    Attributes
    ----------
    layer : LayerSetup
        The layer.
    voxel : (m,) int64 array
        Positions of the selected voxels in the :class:`BeamVoxels` arrays, increasing.
    cu, cv, step_u_mm, step_v_mm, wepl_index, wepl_frac : (m,) arrays
        Copied from :class:`BeamVoxels`.
    rho_u, rho_v : (m,) float32 arrays
        Cut-off radius in lattice-index units along u and v.
    iu0, iv0 : (m,) int32 arrays
        Lattice indices of the first column and row of each voxel's window.
    n_u, n_v : (m,) int32 arrays
        Window columns and rows (cut-off ellipse's bounding box clipped to the spots').
    chunks : tuple of Chunk
        Voxel ranges processed together.
    """

    layer: LayerSetup
    voxel: Any
    cu: Any
    cv: Any
    step_u_mm: Any
    step_v_mm: Any
    wepl_index: Any
    wepl_frac: Any
    rho_u: Any
    rho_v: Any
    iu0: Any
    iv0: Any
    n_u: Any
    n_v: Any
    chunks: tuple[Chunk, ...]

    @property
    def n_voxels(self) -> int:
        return int(self.voxel.shape[0])


def pencil_beam_cutoff_radius_mm(
    depth_mm: ArrayLike,
    idd: ArrayLike,
    sigma_core_mm: ArrayLike,
    sigma_halo_mm: ArrayLike,
    halo_weight: ArrayLike,
    fraction: float,
) -> NDArray[np.float64]:
    """Cut-off radius per depth node keeping ``fraction`` of the pencil beam's whole dose.

    The dose density of the pencil beam is
    ``idd(z) [(1-h) exp(-r^2/2 s_c^2)/(2 pi s_c^2) + h exp(-r^2/2 s_h^2)/(2 pi s_h^2)]``.
    Dropping everything below one density threshold ``tau`` drops the least dose per stored
    value; ``tau`` is set (a bracketing root search, :func:`_log_threshold`) so that the dropped
    dose integrated over the plane and all depths is ``1 - fraction`` of the integral of the
    IDD (at most that: the threshold is approached from below). Where even the axis density is
    below ``tau`` (e.g. in the wide, faint fragment halo behind the Bragg peak) the radius is 0.
    With the same IDD and sigmas at every depth this is :func:`cutoff_radius_mm`.

    Several pencil beams (e.g. all energy layers of a beam) are solved at once when the inputs
    have leading axes: each row along the last axis is one pencil beam with its own threshold.

    Parameters
    ----------
    depth_mm : (..., D) array_like
        Depth nodes, increasing along the last axis.
    idd : (..., D) array_like
        Laterally integrated dose at the nodes, >= 0 (any unit).
    sigma_core_mm, sigma_halo_mm, halo_weight : (..., D) array_like
        Total sigmas (> 0) and halo fraction at the nodes.
    fraction : float
        Kept fraction of the whole pencil beam's dose, in (0, 1).

    Returns
    -------
    (..., D) float array
        Radius in mm at each node.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"cutoff fraction must lie in (0, 1), got {fraction}")
    z, d, sc, sh, h = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (
        depth_mm, idd, sigma_core_mm, sigma_halo_mm, halo_weight)))
    if np.any(sc <= 0) or np.any(sh <= 0):
        raise ValueError("sigmas must be positive")
    shape = z.shape
    z, d, sc, sh, h = (a.reshape(-1, shape[-1]) for a in (z, d, sc, sh, h))
    # Trapezoid weights of the depth nodes.
    dz = np.diff(z, axis=1)
    w = np.zeros_like(z)
    w[:, :-1] += 0.5 * dz
    w[:, 1:] += 0.5 * dz
    total = np.sum(w * d, axis=1, keepdims=True)
    live = total[:, 0] > 0
    a_c = d * (1 - h) / (2 * np.pi * sc * sc)
    a_h = d * h / (2 * np.pi * sh * sh)
    axis_density = a_c + a_h

    inv_c, inv_h = 0.5 / (sc * sc), 0.5 / (sh * sh)
    s_min2 = np.minimum(sc, sh) ** 2

    def radius(tau: NDArray[np.float64]) -> NDArray[np.float64]:
        # Newton's method on x = r^2 for f(x) = a_c exp(-x/2s_c^2) + a_h exp(-x/2s_h^2) - tau,
        # convex and decreasing, from x0 = 2 s_min^2 ln(axis/tau) where f(x0) >= 0 (each term
        # is at least its share of tau there): the iterates rise monotonically to the root.
        ratio = np.maximum(axis_density / tau, 1.0)
        x = 2.0 * s_min2 * np.log(ratio)
        for _ in range(NEWTON_STEPS):
            ec, eh = a_c * np.exp(-x * inv_c), a_h * np.exp(-x * inv_h)
            slope = ec * inv_c + eh * inv_h
            step = np.divide(ec + eh - tau, slope, out=np.zeros_like(x), where=slope > 0)
            x = np.maximum(x + step, 0.0)  # below the axis density no radius: stays at 0
        return np.sqrt(x)

    def dropped(r: NDArray[np.float64]) -> NDArray[np.float64]:
        r2 = r * r
        outside = (1 - h) * np.exp(-r2 / (2 * sc * sc)) + h * np.exp(-r2 / (2 * sh * sh))
        return np.sum(w * d * outside, axis=1, keepdims=True) / np.where(live, total[:, 0],
                                                                          1.0)[:, None]

    positive = np.where(axis_density > 0, axis_density, np.inf).min(axis=1, keepdims=True)
    positive = np.where(np.isfinite(positive), positive, 1.0)
    log_lo = np.log(positive * 1e-12)
    log_hi = np.log(np.maximum(axis_density.max(axis=1, keepdims=True), 1e-300))
    out = radius(np.exp(_log_threshold(
        lambda log_tau: np.log(np.maximum(dropped(radius(np.exp(log_tau))), 1e-300)),
        math.log(1.0 - fraction), log_lo, log_hi)))
    out[~live] = 0.0
    return out.reshape(shape)


def _log_threshold(log_dropped: Callable[[NDArray[np.float64]], NDArray[np.float64]],
                   target: float, lo: NDArray[np.float64], hi: NDArray[np.float64]
                   ) -> NDArray[np.float64]:
    """Each row's log-threshold where ``log_dropped`` (increasing) reaches ``target``, from
    below (the returned end drops at most ``target``) and to 1e-10 in ln units: the bracket
    that narrow, or the lower end's ``log_dropped`` that close to ``target``.

    The Illinois variant of regula falsi on the bracket ``[lo, hi]`` (``log_dropped(lo) <=
    target < log_dropped(hi)``): the dropped dose is close to proportional to the threshold
    (exactly so for one Gaussian: the dose outside the radius where the density is tau is
    tau / axis density of it), so in log-log the secant lands near the root at once; the side
    that does not move has its value halved, so both ends converge. 11-12 evaluations on
    TG-119's layers where a bisection of the 30-decade bracket to the same width took 40.
    """
    f_lo, f_hi = log_dropped(lo) - target, log_dropped(hi) - target
    # Rows outside the bracket's assumption end where a bisection would: at lo when even lo
    # drops too much, at hi when even hi drops too little (no dose at all, for instance).
    hi = np.where(f_lo > 0, lo, hi)
    lo = np.where(f_hi <= 0, hi, lo)
    side = np.zeros_like(lo)  # +1: hi moved last, -1: lo moved last
    for _ in range(100):
        # Done where the bracket is narrow or its lower end drops the target to 1e-10.
        if bool(np.all((hi - lo <= 1e-10) | (np.abs(f_lo) <= 1e-10))):
            break
        secant = hi - f_hi * (hi - lo) / np.where(f_hi != f_lo, f_hi - f_lo, 1.0)
        inside = (secant > lo) & (secant < hi) & np.isfinite(secant)
        mid = np.where(inside, secant, 0.5 * (lo + hi))
        f_mid = log_dropped(mid) - target
        above = f_mid > 0
        # Illinois: the end that stays put twice in a row has its value halved.
        f_lo = np.where(above & (side > 0), 0.5 * f_lo, f_lo)
        f_hi = np.where(~above & (side < 0), 0.5 * f_hi, f_hi)
        hi, f_hi = np.where(above, mid, hi), np.where(above, f_mid, f_hi)
        lo, f_lo = np.where(above, lo, mid), np.where(above, f_lo, f_mid)
        side = np.where(above, 1.0, -1.0)
    return lo


def layer_cutoff_radii_mm(tables: Sequence[PencilBeamTables], fraction: float
                          ) -> list[NDArray[np.float64]]:
    """Cut-off radii on the depth nodes of many layers, solved together.

    Layers with the same number of depth nodes are stacked and solved in one vectorized call of
    :func:`pencil_beam_cutoff_radius_mm` (the same numbers as one call per layer).

    Returns
    -------
    list of (D,) float arrays
        One per layer, in order.
    """
    out: list[NDArray[np.float64]] = [np.zeros(0)] * len(tables)
    by_size: dict[int, list[int]] = {}
    for i, t in enumerate(tables):
        by_size.setdefault(int(np.shape(t.depth_mm)[0]), []).append(i)
    for idx in by_size.values():
        group = [tables[i] for i in idx]
        sa2 = np.array([[float(t.sigma_air_mm) ** 2] for t in group])

        def stack(name: str, g: list[PencilBeamTables] = group) -> NDArray[np.float64]:
            return np.stack([np.asarray(getattr(t, name), dtype=np.float64) for t in g])

        radii = pencil_beam_cutoff_radius_mm(
            stack("depth_mm"), stack("idd"), np.sqrt(sa2 + stack("sigma_core_mm") ** 2),
            np.sqrt(sa2 + stack("sigma_halo_mm") ** 2), stack("halo_weight"), fraction)
        for row, i in enumerate(idx):
            out[i] = radii[row]
    return out


def _validate_tables(tables: PencilBeamTables) -> None:
    d = np.asarray(tables.depth_mm)
    if d.ndim != 1 or d.size < 2 or not np.all(np.diff(d) > 0) or d[0] < 0:
        raise ValueError("depth_mm must be a strictly increasing 1-D array of >= 2 nodes >= 0")
    for name in ("idd", "sigma_core_mm", "sigma_halo_mm", "halo_weight", "letd_kev_um"):
        if np.shape(getattr(tables, name)) != d.shape:
            raise ValueError(f"{name} must have the shape of depth_mm {d.shape}")
    for k, q in enumerate(tables.model_quantities):
        if np.shape(q) != d.shape:
            raise ValueError(f"model quantity {k} must have the shape of depth_mm {d.shape}")
    if not tables.sigma_air_mm > 0:
        raise ValueError("sigma_air_mm must be positive")


def _uniform_tables(
    tables: PencilBeamTables, cutoff_fraction: float, dose_scale: float,
    node_radius_mm: NDArray[np.float64] | None = None,
) -> tuple[float, NDArray[np.float32], NDArray[np.float32]]:
    """Depth reached, cut-off radius and dose tables on the uniform WEPL grid.

    Returns ``(depth_max, radius (L,), dosimetric (5 + K, L))``; beyond ``depth_max`` (the
    last node with a positive IDD) the layer deposits nothing.
    """
    n_rows = 5 + len(tables.model_quantities)
    depth = np.asarray(tables.depth_mm, dtype=np.float64)
    idd = np.asarray(tables.idd, dtype=np.float64)
    positive = np.flatnonzero(idd > 0)
    if positive.size == 0:
        return -1.0, np.zeros(2, np.float32), np.zeros((n_rows, 2), np.float32)
    depth_max = float(depth[positive[-1]])
    sa2 = float(tables.sigma_air_mm) ** 2
    sc2 = sa2 + np.asarray(tables.sigma_core_mm, dtype=np.float64) ** 2
    sh2 = sa2 + np.asarray(tables.sigma_halo_mm, dtype=np.float64) ** 2
    h = np.asarray(tables.halo_weight, dtype=np.float64)
    radius = (node_radius_mm if node_radius_mm is not None else
              pencil_beam_cutoff_radius_mm(depth, idd, np.sqrt(sc2), np.sqrt(sh2), h,
                                           cutoff_fraction))
    n_nodes = math.floor(depth_max / WEPL_TABLE_STEP_MM) + 2
    grid = np.arange(n_nodes) * WEPL_TABLE_STEP_MM
    rows = [idd * dose_scale, h, sc2, sh2, np.asarray(tables.letd_kev_um, dtype=np.float64),
            *(np.asarray(q, dtype=np.float64) for q in tables.model_quantities)]
    dosimetric = np.stack([np.interp(grid, depth, r) for r in rows]).astype(np.float32)
    return depth_max, np.interp(grid, depth, radius).astype(np.float32), dosimetric


def _lerp(xp: Any, table: Any, index: Any, frac: Any, offset: int = 0) -> Any:
    lo = xp.take(table, index + offset)
    return lo + (xp.take(table, index + (offset + 1)) - lo) * frac


def prepare_layer(
    spot_iu: ArrayLike,
    spot_iv: ArrayLike,
    tables: PencilBeamTables,
    *,
    cutoff_fraction: float,
    dose_scale: float,
    spot_ids: ArrayLike | None = None,
    node_radius_mm: NDArray[np.float64] | None = None,
    xp: Any = np,
) -> LayerSetup:
    """Tabulate a layer's depth dependence and index its spots, once per layer.

    Parameters
    ----------
    spot_iu, spot_iv : (n_spots,) int array_like
        Lattice indices of the layer's spots (host arrays; no two at the same node).
    tables : PencilBeamTables
        The layer's pencil-beam data.
    cutoff_fraction : float
        Fraction of each spot's whole dose integral kept, in (0, 1)
        (see :func:`pencil_beam_cutoff_radius_mm`).
    dose_scale : float
        Dose per spot weight unit, per (MeV cm^2/g), per (1/mm^2): e.g. for weights in 10^6
        primaries and dose in Gy, ``1e6 * 100 * 1.602176634e-10``.
    spot_ids : (n_spots,) int array_like, optional
        Identifier reported for each spot (e.g. its matrix column); by default its position in
        ``spot_iu``.
    node_radius_mm : (D,) float array, optional
        The cut-off radius on the depth nodes when already computed (see
        :func:`layer_cutoff_radii_mm`, which solves many layers at once); by default it is
        computed here.
    xp : namespace
        Array namespace of the voxels the layer will be evaluated on.

    Returns
    -------
    LayerSetup
    """
    _validate_tables(tables)
    iu = np.asarray(spot_iu, dtype=np.int64).reshape(-1)
    iv = np.asarray(spot_iv, dtype=np.int64).reshape(-1)
    if iu.shape != iv.shape or iu.size == 0:
        raise ValueError("spot_iu and spot_iv must be non-empty and of equal length")
    ids = np.arange(iu.size) if spot_ids is None else np.asarray(spot_ids).reshape(-1)
    if ids.shape != iu.shape:
        raise ValueError("spot_ids must have one entry per spot")
    depth_max, radius, dosimetric = _uniform_tables(tables, cutoff_fraction, dose_scale,
                                                    node_radius_mm)
    return LayerSetup(
        depth_max_mm=depth_max, radius_mm=xp.asarray(radius),
        dose_tables=xp.asarray(dosimetric.reshape(-1)), table_nodes=int(radius.size),
        n_model=len(tables.model_quantities),
        **_spot_index(xp, iu, iv, ids, identity_ids=spot_ids is None),
    )


def _spot_index(xp: Any, iu: NDArray[np.int64], iv: NDArray[np.int64], ids: NDArray[Any], *,
                identity_ids: bool) -> dict[str, Any]:
    """The :class:`LayerSetup` fields that index a layer's spots (lattice ``iu``, ``iv`` and
    identifier ``ids`` of each, host arrays): the row-major rank table on the spots' bounding
    box with one spare column (for the exclusive upper bound), and per rank its column and
    identifier (None when the identifiers are the ranks and ``identity_ids``)."""
    iu_min, iu_max = int(iu.min()), int(iu.max())
    iv_min, iv_max = int(iv.min()), int(iv.max())
    width = iu_max - iu_min + 2
    pos = (iv - iv_min) * width + (iu - iu_min)
    exists = np.zeros((iv_max - iv_min + 1) * width, dtype=np.int64)
    np.add.at(exists, pos, 1)
    if np.any(exists > 1):
        raise ValueError("the layer has two spots at the same lattice position")
    q_excl = np.cumsum(exists) - exists
    rank = q_excl[pos]
    # int32 when the identifiers fit: callers store them as CSR column indices.
    fits = ids.size == 0 or (int(ids.min()) >= -(2**31) and int(ids.max()) < 2**31)
    rank_ids = np.empty(ids.shape, dtype=np.int32 if fits else np.int64)
    rank_ids[rank] = ids
    spot_iu_by_rank = np.empty(iu.size, dtype=np.int64)
    spot_iu_by_rank[rank] = iu
    identity = identity_ids and bool(np.all(rank == np.arange(iu.size)))
    return {"rank_table": xp.asarray(q_excl), "table_width": int(width), "iu_min": iu_min,
            "iu_max": iu_max, "iv_min": iv_min, "iv_max": iv_max,
            "spot_iu": xp.asarray(spot_iu_by_rank),
            "rank_to_spot": None if identity else xp.asarray(rank_ids)}


def subset_layer(layer: LayerSetup, keep: NDArray[np.bool_]) -> LayerSetup | None:
    """The layer with only the spots of row-major ranks where ``keep`` (host bool, one per
    spot) is True, same depth tables and spot identifiers; None when none is kept.

    A forward pass gives spots of zero weight nothing to do: on the layer of the spots that
    are left, :func:`plan_layer` selects only the voxels their cut-offs reach and
    :func:`chunk_dose` expands only their pairs, with the same sums (the dropped terms are
    zeros, and each window row keeps its spots in the same order). Weights for the subset are
    ``layer_weights_by_rank(layer, w)[keep]``.
    """
    keep = np.asarray(keep, dtype=bool)
    n = int(layer.spot_iu.shape[0])
    if keep.shape != (n,):
        raise ValueError(f"keep must have one entry per spot of the layer ({n}), "
                         f"got shape {keep.shape}")
    if not keep.any():
        return None
    if keep.all():
        return layer
    xp = array_namespace(layer.spot_iu)
    q_excl = to_numpy(layer.rank_table)
    # Node of each rank: the last node whose exclusive rank count is at most the rank (the
    # next node counts one more), in row-major order.
    node = np.searchsorted(q_excl, np.arange(n), side="right") - 1
    rows, cols = np.divmod(node, layer.table_width)
    ranks = np.flatnonzero(keep)
    ids = (ranks if layer.rank_to_spot is None
           else to_numpy(layer.rank_to_spot)[ranks].astype(np.int64))
    return replace(layer, **_spot_index(xp, (cols[ranks] + layer.iu_min).astype(np.int64),
                                        (rows[ranks] + layer.iv_min).astype(np.int64), ids,
                                        identity_ids=False))


def weighted_layers(layers: Sequence[LayerSetup], weights: Any
                    ) -> list[tuple[LayerSetup, Any]]:
    """Each layer reduced to its spots of non-zero weight (:func:`subset_layer`), with those
    spots' weights in row-major rank order; layers without weight are left out.

    ``weights`` (n_spots,) is indexed by spot identifier and lives where the layers' arrays
    live (NumPy or a device namespace); which spots are kept is decided on the host. An
    optimized plan leaves a fifth to a third of its spots at zero: a forward pass then skips
    their pairs.
    """
    out = []
    for layer in layers:
        w_rank = layer_weights_by_rank(layer, weights)
        keep = to_numpy(w_rank != 0)
        sub = subset_layer(layer, keep)
        if sub is not None:
            xp = array_namespace(w_rank)
            out.append((sub, w_rank if sub is layer else w_rank[xp.asarray(keep)]))
    return out


def plan_layer(
    voxels: BeamVoxels,
    layer: LayerSetup,
    *,
    start: int = 0,
    stop: int | None = None,
    chunk_candidates: int = DEFAULT_CHUNK_CANDIDATES,
) -> LayerPlan | None:
    """Select the voxels of ``voxels[start:stop]`` that a layer reaches, with their windows.

    Parameters
    ----------
    voxels : BeamVoxels
        The beam's voxels.
    layer : LayerSetup
        From :func:`prepare_layer`.
    start, stop : int
        Block of voxel positions to consider (all by default).
    chunk_candidates : int
        Bound on the window nodes (hence pairs) of a chunk.

    Returns
    -------
    LayerPlan or None
        None when the layer reaches no voxel of the block.
    """
    xp = array_namespace(voxels.cu)
    stop = voxels.n if stop is None else min(stop, voxels.n)
    stop = min(stop, voxels.prefix_reaching(layer.depth_max_mm))
    if stop <= start:
        return None
    n_nodes = layer.table_nodes

    # Voxels whose cut-off disc reaches the spots' bounding box.
    cu, cv = voxels.cu[start:stop], voxels.cv[start:stop]
    stu, stv = voxels.step_u_mm[start:stop], voxels.step_v_mm[start:stop]
    w_idx = xp.clip(voxels.wepl_index[start:stop], 0, n_nodes - 2)
    w_frac = voxels.wepl_frac[start:stop]
    radius = _lerp(xp, layer.radius_mm, w_idx, w_frac)
    gap_u = (xp.clip(cu, float(layer.iu_min), float(layer.iu_max)) - cu) * stu
    gap_v = (xp.clip(cv, float(layer.iv_min), float(layer.iv_max)) - cv) * stv
    near = ((gap_u * gap_u + gap_v * gap_v <= radius * radius)
            & (voxels.wepl_mm[start:stop] <= layer.depth_max_mm))
    sel = xp.nonzero(near)[0]
    if sel.shape[0] == 0:
        return None
    cu, cv, stu, stv, radius = (xp.take(x, sel) for x in (cu, cv, stu, stv, radius))
    rho_u = radius / stu
    rho_v = radius / stv
    # Window: bounding box of the cut-off ellipse, clipped to the spots' bounding box.
    iu0 = xp.maximum(xp.astype(xp.ceil(cu - rho_u), xp.int32), layer.iu_min)
    iv0 = xp.maximum(xp.astype(xp.ceil(cv - rho_v), xp.int32), layer.iv_min)
    n_u = xp.minimum(xp.astype(xp.floor(cu + rho_u), xp.int32), layer.iu_max) - iu0 + 1
    n_v = xp.minimum(xp.astype(xp.floor(cv + rho_v), xp.int32), layer.iv_max) - iv0 + 1
    k = xp.nonzero((n_u > 0) & (n_v > 0))[0]
    if k.shape[0] == 0:
        return None
    if k.shape[0] < sel.shape[0]:
        sel, cu, cv, stu, stv, rho_u, rho_v, iu0, iv0, n_u, n_v = (
            xp.take(x, k) for x in (sel, cu, cv, stu, stv, rho_u, rho_v, iu0, iv0, n_u, n_v))
    return LayerPlan(
        layer=layer, voxel=sel + start, cu=cu, cv=cv, step_u_mm=stu, step_v_mm=stv,
        wepl_index=xp.take(w_idx, sel), wepl_frac=xp.take(w_frac, sel),
        rho_u=rho_u, rho_v=rho_v, iu0=iu0, iv0=iv0, n_u=n_u, n_v=n_v,
        chunks=tuple(_make_chunks(to_numpy(n_u).astype(np.int64),
                                  to_numpy(n_v).astype(np.int64), chunk_candidates)),
    )


def _make_chunks(n_u: NDArray[np.int64], n_v: NDArray[np.int64], budget: int) -> list[Chunk]:
    """Split voxels into contiguous ranges of at most about ``budget`` window nodes each."""
    cost = np.cumsum(n_u * n_v)
    total = int(cost[-1])
    n_chunks = max(1, -(-total // max(budget, 1)))
    cuts = np.searchsorted(cost, np.arange(1, n_chunks) * (total / n_chunks), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [n_u.size]]))
    rows = np.maximum.reduceat(n_v, bounds[:-1])
    cols = np.maximum.reduceat(n_u, bounds[:-1])
    return [Chunk(int(a), int(b), int(r), int(c))
            for a, b, r, c in zip(bounds[:-1], bounds[1:], rows, cols, strict=True)]


@dataclass(frozen=True)
class _Segments:
    """Window rows of a chunk's voxels, arrays of shape (rows, n)."""

    count: Any  # int64 spots inside the cut-off in this row
    q_lo: Any  # int64 row-major rank of the first of them
    dv_idx: Any  # float32 lattice-index offset of the row from the voxel


def _segments(plan: LayerPlan, chunk: Chunk) -> _Segments:
    """Column interval inside the cut-off of every window row, and its spots.

    :func:`count_pairs` and :func:`chunk_pairs` both call this on the same chunks, so the
    counts of the first pass equal the entries of the second exactly.
    """
    xp = array_namespace(plan.cu)
    lay = plan.layer
    a, b = chunk.start, chunk.stop
    cu, cv = plan.cu[a:b][None, :], plan.cv[a:b][None, :]
    rho_u, rho_v = plan.rho_u[a:b][None, :], plan.rho_v[a:b][None, :]
    iu0, iv0 = plan.iu0[a:b][None, :], plan.iv0[a:b][None, :]
    n_u = plan.n_u[a:b][None, :]
    kv = xp.reshape(xp.arange(chunk.rows, dtype=xp.int32), (-1, 1))
    row = iv0 + kv
    dv_idx = xp.astype(row, xp.float32) - cv
    ratio = dv_idx / rho_v
    half = rho_u * xp.sqrt(xp.clip(1.0 - ratio * ratio, 0.0, 1.0))
    lo = xp.clip(xp.astype(xp.ceil(cu - half), xp.int32) - iu0, 0, n_u)
    hi = xp.minimum(xp.astype(xp.floor(cu + half), xp.int32) - iu0, n_u - 1)
    hi = xp.where(kv < plan.n_v[a:b][None, :], xp.maximum(hi, lo - 1), lo - 1)
    row = xp.minimum(row, lay.iv_max)  # rows past a voxel's own window are empty anyway
    base = xp.astype((row - lay.iv_min) * lay.table_width + (iu0 - lay.iu_min), xp.int64)
    q_lo = xp.reshape(xp.take(lay.rank_table, xp.reshape(base + lo, (-1,))), lo.shape)
    q_hi = xp.reshape(xp.take(lay.rank_table, xp.reshape(base + hi + 1, (-1,))), lo.shape)
    return _Segments(count=q_hi - q_lo, q_lo=q_lo, dv_idx=dv_idx)


def count_pairs(plan: LayerPlan) -> Any:
    """Number of (voxel, spot) entries of each selected voxel of a layer.

    Returns
    -------
    (m,) int64 array
        In the order of ``plan.voxel``.
    """
    xp = array_namespace(plan.cu)
    parts = [xp.sum(_segments(plan, c).count, axis=0) for c in plan.chunks]
    return xp.concat(parts) if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class ChunkPairs:
    """Influence entries of one chunk of a layer.

    Attributes
    ----------
    voxel : (n,) int64 array
        Positions in the :class:`BeamVoxels` arrays of the chunk's voxels.
    counts : (n,) int64 array
        Entries per voxel.
    dest : (nnz,) int64 array
        Position of each entry: ``row_start[j] + rank`` for the chunk's voxel ``j``, where the
        entries of a voxel have ranks ``0 .. counts[j] - 1`` in row-major spot order. With
        ``row_start`` from CSR row pointers, this is the entry's place in the CSR arrays.
    spot : (nnz,) int array
        Spot identifier (see :func:`prepare_layer`).
    dose : (nnz,) float32 array
        Dose per spot weight unit.
    let_dose : (nnz,) float32 array or None
        ``dose * LETd`` in keV/um times the dose unit; None when not asked for.
    model_dose : tuple of (nnz,) float32 arrays
        ``dose * q_k`` for each model quantity of the layer.
    """

    voxel: Any
    counts: Any
    dest: Any
    spot: Any
    dose: Any
    let_dose: Any
    model_dose: tuple[Any, ...] = ()


def _segment_ids(xp: Any, counts: Any, total: int) -> Any:
    """``[0]*counts[0] + [1]*counts[1] + ...`` as an int64 array of length ``total``."""
    n = int(counts.shape[0])
    if xp.__name__.startswith("cupy"):
        # CuPy's repeat does not take a device array of counts; a sorted search stays on device.
        ends = xp.cumulative_sum(counts)
        return xp.searchsorted(ends, xp.arange(total, dtype=xp.int64), side="right")
    return xp.repeat(xp.arange(n, dtype=xp.int64), counts)


@dataclass(frozen=True)
class _Expansion:
    """The pairs of one chunk, expanded from its segments (see :func:`_expand`).

    Attributes
    ----------
    seg : int64 array (nnz,)
        Segment of each pair (voxel-major: segment ``j * rows + r`` is window row ``r`` of the
        chunk's voxel ``j``).
    rank : int64 array (nnz,)
        Row-major spot rank of each pair.
    running : int64 array (nnz,)
        Position of each pair in the chunk (0 .. nnz - 1).
    col : int64 array (nnz,)
        Index of the pair's (voxel, window column) in ``core_u`` and ``halo_u``.
    core_u, halo_u : float32 arrays (n * cols,)
        Per (voxel, window column): the u factor of the core and halo Gaussians, with the
        voxel's IDD and normalisation.
    core_v, halo_v : float32 arrays (n * rows,)
        Per segment: the v factor of the core and halo Gaussians.
    seg_start : int64 array (n * rows + 1,)
        First pair of each segment; the last entry is nnz.
    """

    seg: Any
    rank: Any
    running: Any
    col: Any
    core_u: Any
    halo_u: Any
    core_v: Any
    halo_v: Any
    seg_start: Any


def _expand(plan: LayerPlan, chunk: Chunk) -> _Expansion:
    """Lateral factors and pair indices of one chunk (shared by the matrix and forward paths)."""
    xp = array_namespace(plan.cu)
    a, b = chunk.start, chunk.stop
    n, n_rows, n_cols = b - a, chunk.rows, chunk.cols
    seg = _segments(plan, chunk)
    # Depth-dependent quantities of the chunk's voxels.
    w_idx, w_frac = plan.wepl_index[a:b], plan.wepl_frac[a:b]
    tab, n_nodes = plan.layer.dose_tables, plan.layer.table_nodes
    idd, halo, sc2, sh2 = (_lerp(xp, tab, w_idx, w_frac, q * n_nodes) for q in range(4))
    two_pi = 2.0 * math.pi
    coef_core = (idd * (1.0 - halo) / (two_pi * sc2))[None, :]
    coef_halo = (idd * halo / (two_pi * sh2))[None, :]
    ac, ah = (0.5 / sc2)[None, :], (0.5 / sh2)[None, :]

    # Per (window column, voxel): the du factors of the core and halo Gaussians.
    ku = xp.reshape(xp.arange(n_cols, dtype=xp.int32), (-1, 1))
    du = (xp.astype(plan.iu0[a:b][None, :] + ku, xp.float32) - plan.cu[a:b][None, :]) \
        * plan.step_u_mm[a:b][None, :]
    du2 = du * du
    core_u = coef_core * xp.exp(-ac * du2)
    halo_u = coef_halo * xp.exp(-ah * du2)
    # Per segment (window row, voxel): the dv factors.
    dv = seg.dv_idx * plan.step_v_mm[a:b][None, :]
    dv2 = dv * dv
    core_v = xp.exp(-ac * dv2)
    halo_v = xp.exp(-ah * dv2)

    def voxel_major(x: Any) -> Any:  # (rows|cols, n) -> flat, voxel by voxel
        return xp.reshape(xp.permute_dims(x, (1, 0)), (-1,))

    count = voxel_major(seg.count)
    seg_start = xp.cumulative_sum(count, include_initial=True)
    total = int(seg_start[-1])
    # Per-segment offsets turn the running pair number into a spot rank and a window column.
    rank_off = voxel_major(seg.q_lo) - seg_start[:-1]
    voxel = xp.reshape(xp.arange(n, dtype=xp.int64), (-1, 1))
    col_off = xp.reshape(
        xp.broadcast_to(voxel * n_cols - xp.astype(plan.iu0[a:b][:, None], xp.int64),
                        (n, n_rows)), (-1,))
    s = _segment_ids(xp, count, total)
    running = xp.arange(total, dtype=xp.int64)
    q = running + xp.take(rank_off, s)
    k = xp.take(plan.layer.spot_iu, q) + xp.take(col_off, s)
    return _Expansion(seg=s, rank=q, running=running, col=k,
                      core_u=voxel_major(core_u), halo_u=voxel_major(halo_u),
                      core_v=voxel_major(core_v), halo_v=voxel_major(halo_v),
                      seg_start=seg_start)


def chunk_quantities(plan: LayerPlan, chunk: Chunk, *, let: bool = True) -> list[Any]:
    """Per-voxel LETd (if ``let``) and model quantities of a chunk's voxels, (n,) float32 each.

    Every pair of a voxel in one layer shares the voxel's depth, so its ``dose * q`` entry is
    the pair's dose times these values.
    """
    xp = array_namespace(plan.cu)
    a, b = chunk.start, chunk.stop
    w_idx, w_frac = plan.wepl_index[a:b], plan.wepl_frac[a:b]
    tab, n_nodes = plan.layer.dose_tables, plan.layer.table_nodes
    return [_lerp(xp, tab, w_idx, w_frac, q * n_nodes)
            for q in ([4] if let else []) + list(range(5, 5 + plan.layer.n_model))]


def chunk_pairs(plan: LayerPlan, chunk: Chunk, row_start: Any = None, *,
                let: bool = True) -> ChunkPairs:
    """Evaluate the dose, LET x dose and model quantity x dose of all pairs of one chunk.

    Parameters
    ----------
    plan : LayerPlan
        From :func:`plan_layer`.
    chunk : Chunk
        One of ``plan.chunks``.
    row_start : (n,) int64 array, optional
        Offset added to the ranks of each of the chunk's voxels (0 by default).
    let : bool
        Evaluate LET x dose (else ``let_dose`` is None).
    """
    xp = array_namespace(plan.cu)
    n, n_rows = chunk.stop - chunk.start, chunk.rows
    e = _expand(plan, chunk)
    voxel_first = e.seg_start[0:n * n_rows:n_rows]  # first entry of each voxel
    counts = e.seg_start[n_rows::n_rows] - voxel_first
    start = voxel_first if row_start is None else voxel_first - xp.astype(row_start, xp.int64)
    dest_off = -xp.reshape(xp.broadcast_to(start[:, None], (n, n_rows)), (-1,))
    dest = e.running + xp.take(dest_off, e.seg)
    dose = (xp.take(e.core_u, e.col) * xp.take(e.core_v, e.seg)
            + xp.take(e.halo_u, e.col) * xp.take(e.halo_v, e.seg))
    per_seg = [xp.reshape(xp.broadcast_to(v[:, None], (n, n_rows)), (-1,))
               for v in chunk_quantities(plan, chunk, let=let)]
    weighted = [dose * xp.take(v, e.seg) for v in per_seg]
    let_dose = weighted.pop(0) if let else None
    spot = e.rank if plan.layer.rank_to_spot is None else xp.take(plan.layer.rank_to_spot, e.rank)
    return ChunkPairs(voxel=plan.voxel[chunk.start:chunk.stop], counts=counts, dest=dest,
                      spot=spot, dose=dose, let_dose=let_dose, model_dose=tuple(weighted))


def layer_weights_by_rank(layer: LayerSetup, weights: Any) -> Any:
    """The weights of a layer's spots in row-major rank order, (n_layer_spots,).

    ``weights`` is indexed by spot identifier (see :func:`prepare_layer`).
    """
    xp = array_namespace(layer.spot_iu)
    if layer.rank_to_spot is None:
        return weights[:int(layer.spot_iu.shape[0])]
    return xp.take(weights, xp.astype(layer.rank_to_spot, xp.int64))


def chunk_dose(plan: LayerPlan, chunk: Chunk, weight_by_rank: Any) -> Any:
    """Dose of a chunk's voxels summed over the layer's spots, ``sum_s w_s dose_s``.

    The forward pass without a matrix: each segment's pairs are summed per Gaussian (core and
    halo) before the segment's ``dv`` factor is applied, so no per-pair dose array is kept.

    Parameters
    ----------
    plan : LayerPlan
        From :func:`plan_layer`.
    chunk : Chunk
        One of ``plan.chunks``.
    weight_by_rank : (n_layer_spots,) float array
        Spot weights in row-major rank order (:func:`layer_weights_by_rank`).

    Returns
    -------
    (n,) float64 array
        Dose (``dose_scale`` units per weight unit times weight) of the chunk's voxels, in the
        order of ``plan.voxel[chunk.start:chunk.stop]``.
    """
    xp = array_namespace(plan.cu)
    n, n_rows = chunk.stop - chunk.start, chunk.rows
    e = _expand(plan, chunk)
    w = xp.take(weight_by_rank, e.rank)
    n_seg = n * n_rows
    if xp is np:
        core = np.bincount(e.seg, weights=w * np.take(e.core_u, e.col), minlength=n_seg)
        halo = np.bincount(e.seg, weights=w * np.take(e.halo_u, e.col), minlength=n_seg)
    else:  # the array API has no bincount: per-segment sums from the running sum
        def seg_sum(x: Any) -> Any:
            c = xp.cumulative_sum(xp.astype(x, xp.float64), include_initial=True)
            return xp.take(c, e.seg_start[1:]) - xp.take(c, e.seg_start[:-1])
        core = seg_sum(w * xp.take(e.core_u, e.col))
        halo = seg_sum(w * xp.take(e.halo_u, e.col))
    per_seg = core * e.core_v + halo * e.halo_v
    return xp.sum(xp.reshape(per_seg, (n, n_rows)), axis=1)


def iter_chunk_pairs(plan: LayerPlan) -> Iterator[ChunkPairs]:
    """All chunks of a layer, in order, with ranks relative to each voxel."""
    for c in plan.chunks:
        yield chunk_pairs(plan, c)


@dataclass(frozen=True)
class LayerCSR:
    """The influence entries of one layer as CSR pieces over the layer's selected voxels.

    Attributes
    ----------
    voxel : (m,) int64 array
        Positions in the :class:`BeamVoxels` arrays of the rows.
    indptr : (m + 1,) int64 array
        Row pointers.
    spot : (nnz,) int array
        Spot identifier of each entry, increasing in row-major lattice order within a row.
    dose, let_dose : (nnz,) float32 arrays
        Dose and LET x dose per spot weight unit.
    model_dose : tuple of (nnz,) float32 arrays
        Model quantity x dose, one array per quantity of the layer.
    """

    voxel: Any
    indptr: Any
    spot: Any
    dose: Any
    let_dose: Any
    model_dose: tuple[Any, ...] = ()


def layer_csr(plan: LayerPlan) -> LayerCSR:
    """Evaluate a whole layer as CSR pieces (for tests and small problems).

    The entries come out voxel by voxel with increasing ranks, which is CSR order: the chunks are
    simply concatenated.
    """
    xp = array_namespace(plan.cu)
    pieces = list(iter_chunk_pairs(plan))
    counts = xp.concat([p.counts for p in pieces])

    def cat(name: str) -> Any:
        return xp.concat([getattr(p, name) for p in pieces])

    indptr = xp.cumulative_sum(xp.astype(counts, xp.int64), include_initial=True)
    model_dose = tuple(xp.concat([p.model_dose[k] for p in pieces])
                       for k in range(plan.layer.n_model))
    return LayerCSR(voxel=plan.voxel, indptr=indptr, spot=cat("spot"), dose=cat("dose"),
                    let_dose=cat("let_dose"), model_dose=model_dose)
