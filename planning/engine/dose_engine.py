"""Plan state of the pencil-beam dose engine, water-equivalent depth and spot placement.

Frames and units follow :mod:`planning.geometry`: positions in LPS mm, volumes indexed
``(z, y, x)``; spot positions ``(u, v)`` in mm on the isocentre plane of the beam's-eye view;
spot weights in units of 10^6 primary ions.

Influence matrices
------------------
:class:`DoseInfluence` (made by :class:`planning.engine.PlanningEngine`) holds a SciPy CSR matrix
of float32 doses (Gy per 10^6 primaries) with one row per dose-grid voxel, in C order of the
``(z, y, x)`` grid (row = flat index), and one column per spot: the spots of ``spot_maps[0]`` in
their order, then those of ``spot_maps[1]``, and so on. Further CSR matrices share the same
``indices`` and ``indptr`` arrays: LET x dose (keV/um x Gy; optional), so LETd of a plan is
``(L @ w) / (D @ w)``, and, when the depth tables of an RBE model are given, one matrix per model
quantity ``q_k`` holding ``dose x q_k`` (the dose-weighted sums S_k of
:mod:`planning.rbe.models`). Rows of voxels outside the calculation region are empty. Within a
row, entries come beam by beam, layer by layer, and within a layer in row-major lattice order.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from kernels import backend
from kernels.influence import (
    DEFAULT_CHUNK_CANDIDATES,
)
from planning.beams import PRIMARIES_PER_WEIGHT_UNIT, Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.engine.wepl_cubes import WeplCubes
from planning.errors import DeviceError, PlanningError
from planning.geometry import lps_to_bev
from planning.machine import MEV_PER_G_TO_GY, Machine
from planning.progress import CancelToken, ProgressCallback

log = logging.getLogger(__name__)

#: Gy per weight unit, per IDD unit (MeV cm^2/g), per lateral density unit (1/mm^2):
#: 10^6 primaries x 100 mm^2/cm^2 x MeV/g -> Gy.
DOSE_SCALE_GY = PRIMARIES_PER_WEIGHT_UNIT * 100.0 * MEV_PER_G_TO_GY

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------- plan state


#: Environment variables that set the engine's CPU threads when ``n_threads`` is None, the
#: first one set wins. A Dask worker gets its share of the cores this way
#: (:func:`planning.distributed.local_cluster`; Dask's nanny sets ``OMP_NUM_THREADS=1`` for
#: workers of any cluster), so that worker processes do not oversubscribe the cores.
THREADS_ENV = ("IONPLAN_THREADS", "OMP_NUM_THREADS")


def cpu_threads(n_threads: int | None) -> int:
    """Threads for the CPU engine: ``n_threads``, else the environment (:data:`THREADS_ENV`),
    else every core."""
    if n_threads:
        return n_threads
    for name in THREADS_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                n = 0
            if n < 1:
                raise PlanningError(f"environment variable {name}={value!r}: expected a "
                                    "positive whole number of threads")
            return n
    return os.cpu_count() or 1

@dataclass(frozen=True)
class DoseEngineSettings:
    """Settings of the pencil-beam dose engine.

    Attributes
    ----------
    lateral_cutoff_fraction : float
        Fraction of each pencil beam's whole dose integral (over depth and the lateral plane)
        kept in the influence matrix; the lowest dose densities are dropped first
        (:func:`kernels.influence.pencil_beam_cutoff_radius_mm`), which is mostly the faint,
        wide fragment halo behind the Bragg peak. 0.99 drops 1 % of every spot's dose as a
        low-dose bath; in a broad field the truncated tails add up to about 1 % of the local
        dose, which the optimizer absorbs into the weights; for final dose reporting recompute
        with 0.999.
    matrix_cutoff_fraction : float
        The same fraction for the optimizer's matrices (:meth:`planning.engine.
        PlanningEngine.optimization_matrices` as the planner calls it): the halo beyond it,
        up to ``lateral_cutoff_fraction``, enters the optimizer as a per-point correction
        (:mod:`planning.engine.dose_correction`). Used as the smaller of the two.
    device : {"auto", "cpu", "gpu"}
        Compute device; "auto" uses a CUDA GPU through CuPy when there is one.
    wepl_step_mm : float or None
        Sampling step along the rays of the WEPL calculation; None uses half the smallest CT
        voxel spacing.
    wepl_lateral_step_mm : float or None
        Spacing of those rays; None uses the smallest CT voxel spacing (a plan's work
        estimate takes coarser rays, :mod:`planning.plan_work`).
    n_threads : int or None
        Worker threads on the CPU; None takes :func:`cpu_threads`'s default (the
        ``IONPLAN_THREADS`` or ``OMP_NUM_THREADS`` environment variable, else all cores).
    chunk_candidates : int
        Bound on the (voxel, spot) pairs evaluated at once (about 60 bytes each, per thread).
    block_voxels : int
        Voxels per work item: all layers of a beam are evaluated on a block before the next,
        so that the entries written to a block's rows stay in the processor cache.
    min_rsp_for_dose : float
        Without an explicit calculation region, dose is computed in dose-grid voxels whose
        interpolated RSP is at least this (0.05 excludes air, keeps lung).
    store_let_dose : bool
        Keep the LET x dose matrix (4 bytes per entry). Without it
        :attr:`DoseInfluence.let_dose` is None and :func:`forward_dose` cannot give LETd.
    compiled_kernels : bool
        On the CPU, use the compiled pencil-beam kernel (:mod:`kernels.pencil_beam_cpu`)
        where it was built with the installation; False (or no build) uses the NumPy
        kernels, its twins.
    """

    lateral_cutoff_fraction: float = 0.99
    matrix_cutoff_fraction: float = 0.8
    device: str = "auto"
    wepl_step_mm: float | None = None
    wepl_lateral_step_mm: float | None = None
    n_threads: int | None = None
    chunk_candidates: int = DEFAULT_CHUNK_CANDIDATES
    block_voxels: int = 1 << 17
    min_rsp_for_dose: float = 0.05
    store_let_dose: bool = True
    compiled_kernels: bool = True

    @property
    def optimizer_cutoff_fraction(self) -> float:
        """The cut-off fraction of the optimizer's matrices (at most the plan's)."""
        return min(self.matrix_cutoff_fraction, self.lateral_cutoff_fraction)

    def __post_init__(self) -> None:
        if not 0.5 <= self.lateral_cutoff_fraction < 1.0:
            raise PlanningError(f"lateral_cutoff_fraction must lie in [0.5, 1), got "
                                f"{self.lateral_cutoff_fraction}")
        if not 0.5 <= self.matrix_cutoff_fraction < 1.0:
            raise PlanningError(f"matrix_cutoff_fraction must lie in [0.5, 1), got "
                                f"{self.matrix_cutoff_fraction}")
        if self.device not in backend.DEVICES:
            raise PlanningError(f"device must be one of {', '.join(backend.DEVICES)}, "
                                f"got {self.device!r}")
        for name in ("wepl_step_mm", "wepl_lateral_step_mm"):
            step = getattr(self, name)
            if step is not None and not (0 < step <= 10):
                raise PlanningError(f"{name} must lie in (0, 10] mm, got {step}")
        if self.n_threads is not None and self.n_threads < 1:
            raise PlanningError(f"n_threads must be >= 1, got {self.n_threads}")
        if self.chunk_candidates < 1024:
            raise PlanningError(f"chunk_candidates must be >= 1024, got {self.chunk_candidates}")
        if self.block_voxels < 64:
            raise PlanningError(f"block_voxels must be >= 64, got {self.block_voxels}")


@dataclass(frozen=True, eq=False)
class SpotTable:
    """The columns of an influence matrix: one entry per spot, all beams concatenated.

    Attributes
    ----------
    beam, layer : (n,) int arrays
        Beam index (into the ``beams`` given) and layer index (of that beam's spot map).
    energy_mev_u, u_mm, v_mm : (n,) float arrays
        As in :class:`SpotMap`.
    """

    beam: IntArray
    layer: IntArray
    energy_mev_u: FloatArray
    u_mm: FloatArray
    v_mm: FloatArray

    @property
    def n_spots(self) -> int:
        return int(self.beam.shape[0])


@dataclass(frozen=True, eq=False)
class DoseInfluence:
    """Dose and LET x dose influence matrices of a set of beams on a dose grid.

    Attributes
    ----------
    dose : scipy.sparse.csr_array, float32, (n_voxels, n_spots)
        Dose in Gy per 10^6 primaries. Row = C-order flat index of the ``(z, y, x)`` dose grid.
    let_dose : scipy.sparse.csr_array, float32, (n_voxels, n_spots), or None
        LETd x dose (keV/um x Gy per 10^6 primaries); None when the settings asked not to keep
        it. It shares the memory of ``indices`` and ``indptr`` with ``dose``; those arrays are
        read-only: copy a matrix before modifying its structure.
    grid : DoseGrid
        The dose grid.
    spots : SpotTable
        The columns.
    calc_mask : (nz, ny, nx) bool array
        Voxels in which dose was computed.
    device : str
        Where it was computed ("cpu" or "gpu").
    model_sums : tuple of scipy.sparse.csr_array, float32, (n_voxels, n_spots)
        Dose x model quantity ``q_k`` per 10^6 primaries (Gy x unit of ``q_k``), one matrix per
        name of ``model_quantity_names``, sharing ``indices`` and ``indptr`` with ``dose``.
    model_quantity_names : tuple of str
        Names of the model quantities (``RbeModel.quantity_names``); empty without a model.
    model_description : str
        ``RbeModel.describe()`` of the model whose depth tables made ``model_sums``.
    """

    dose: sp.csr_array
    let_dose: sp.csr_array | None
    grid: DoseGrid
    spots: SpotTable
    calc_mask: NDArray[np.bool_]
    device: str = field(default="cpu")
    model_sums: tuple[sp.csr_array, ...] = ()
    model_quantity_names: tuple[str, ...] = ()
    model_description: str = ""

    @property
    def nnz(self) -> int:
        return int(self.dose.nnz)

    @property
    def n_quantities(self) -> int:
        """Number of stored data arrays (dose, LET x dose if kept, the model sums)."""
        return 1 + (self.let_dose is not None) + len(self.model_sums)

    @property
    def nbytes(self) -> int:
        """Bytes held by all matrices (shared index arrays counted once)."""
        d = self.dose
        data = d.data.nbytes + sum(m.data.nbytes for m in self.model_sums)
        if self.let_dose is not None:
            data += self.let_dose.data.nbytes
        return int(data + d.indices.nbytes + d.indptr.nbytes)


# --------------------------------------------------------------------------- helpers


def resolve_device(device: str) -> str:
    """Resolve "auto" / "cpu" / "gpu" to "cpu" or "gpu".

    Raises
    ------
    DeviceError
        When "gpu" is asked for and no CUDA device is usable.
    PlanningError
        For an unknown device name.
    """
    try:
        return backend.resolve_device(device)
    except backend.DeviceUnavailableError as exc:
        raise DeviceError(str(exc)) from None
    except ValueError as exc:
        raise PlanningError(str(exc)) from None


def warm_up_device(device: str = "auto") -> float:
    """Compile (or load from CuPy's on-disk kernel cache) the GPU kernels and initialise
    cuSPARSE, so that the first plan does not pay for it; returns the seconds it took, 0 on the
    CPU. CuPy keeps compiled kernels in ``CUPY_CACHE_DIR`` (default ``~/.cupy/kernel_cache``):
    the compilation is paid once per machine and CuPy version."""
    if resolve_device(device) != "gpu":
        return 0.0
    from kernels import pencil_beam_gpu, sparse_device

    t0 = time.perf_counter()
    pencil_beam_gpu.warm_up()
    sparse_device.warm_up()
    seconds = time.perf_counter() - t0
    log.info("GPU kernels ready in %.2f s", seconds)
    return seconds


def check_volume(rsp_volume: ArrayLike, ct_grid: DoseGrid) -> NDArray[np.float32]:
    rsp = np.asarray(rsp_volume, dtype=np.float32)
    if rsp.shape != tuple(ct_grid.shape):
        raise PlanningError(f"the RSP volume has shape {rsp.shape} but its grid says "
                            f"{tuple(ct_grid.shape)}")
    if not np.all(np.isfinite(rsp)) or rsp.min() < 0:
        raise PlanningError("the RSP volume must be finite and >= 0 (pass RSP, not HU)")
    if rsp.max() <= 0:
        raise PlanningError("the RSP volume is zero everywhere: was the HU-to-RSP calibration "
                            "applied?")
    return rsp


def compute_wepl(
    rsp_volume: ArrayLike,
    ct_grid: DoseGrid,
    beam: Beam,
    points: ArrayLike,
    *,
    settings: DoseEngineSettings | None = None,
    cubes: WeplCubes | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> NDArray[np.float32]:
    """Water-equivalent depth of LPS points along the (parallel) rays of a beam.

    Parameters
    ----------
    rsp_volume : (nz, ny, nx) float array
        Relative stopping power on ``ct_grid``.
    ct_grid : DoseGrid
        Geometry of the RSP volume.
    beam : Beam
        Gives the beam direction.
    points : (N, 3) float array
        LPS points, mm.
    settings : DoseEngineSettings, optional
        Device and WEPL step.
    cubes : WeplCubes, optional
        The plan's WEPL cubes of ``rsp_volume`` (the beam's cube is made there, or taken from
        there); a cube of its own otherwise.
    progress, cancel : optional
        Progress callback and cancel token, served while the beam's WEPL cube is built.

    Returns
    -------
    (N,) float32 array
        WEPL in mm from the entry into the RSP volume's bounding box.
    """
    settings = settings or DoseEngineSettings()
    rsp = check_volume(rsp_volume, ct_grid)
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise PlanningError(f"points must have shape (N, 3), got {pts.shape}")
    xp = backend.namespace_for(resolve_device(settings.device))
    if cubes is None or not cubes.serves(rsp_volume, ct_grid, settings.wepl_step_mm,
                                         lateral_step_mm=settings.wepl_lateral_step_mm):
        cubes = WeplCubes(rsp, ct_grid, settings.wepl_step_mm,
                          lateral_step_mm=settings.wepl_lateral_step_mm, keep=False,
                          threads=cpu_threads(settings.n_threads))
    w = cubes.at_points(xp, beam.frame, xp.asarray(pts), progress=progress, cancel=cancel)
    return backend.to_numpy(w).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- spot placement


def place_spots(
    machine: Machine,
    rsp_volume: ArrayLike,
    ct_grid: DoseGrid,
    beam: Beam,
    target_mask: ArrayLike,
    *,
    spot_spacing_mm: float = 5.0,
    lateral_margin_mm: float = 3.0,
    energy_margin_mm: float = 3.0,
    layer_spacing_mm: float = 2.0,
    settings: DoseEngineSettings | None = None,
    cubes: WeplCubes | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SpotMap:
    """Spots covering a target: a lateral lattice and, per lattice ray, its energies.

    The target voxel centres are projected onto the isocentre plane along the diverging rays.
    A lattice ray (spacing ``spot_spacing_mm``, node (0, 0) at the isocentre) is used when its
    square lattice cell lies within ``lateral_margin_mm`` of a projected target voxel. Its WEPL
    interval is that of those voxels; it gets every machine energy whose Bragg peak depth lies
    in the interval widened by ``energy_margin_mm`` on both sides (the nearest one when the
    interval is thinner than the layer spacing).

    The candidate energies are thinned first (:func:`select_layer_energies`): from the deepest
    needed Bragg peak down, each next layer peaks at least ``layer_spacing_mm`` shallower, and
    the shallowest needed one is always kept. A carbon beam with a 3 mm ripple filter has a
    Bragg peak a few mm wide, so 2 mm layers lose nothing against the machine's 1 mm steps and
    halve the spots and the influence matrix. ``layer_spacing_mm = 0`` keeps every energy.

    Parameters
    ----------
    machine : Machine
        Beam data; its tabulated energies are the candidate layers.
    rsp_volume : (nz, ny, nx) float array
        Relative stopping power on ``ct_grid``.
    ct_grid : DoseGrid
        Grid of ``rsp_volume`` and ``target_mask``.
    beam : Beam
        The beam.
    target_mask : (nz, ny, nx) bool array
        Target voxels.
    spot_spacing_mm, lateral_margin_mm, energy_margin_mm : float
        Lattice spacing and margins, mm.
    layer_spacing_mm : float
        Smallest water-equivalent distance between the Bragg peaks of consecutive layers, mm
        (0 to 30).
    settings : DoseEngineSettings, optional
        Device and WEPL step for the depth calculation.
    cubes : WeplCubes, optional
        The plan's WEPL cubes of ``rsp_volume`` (see :func:`compute_wepl`).
    progress, cancel : optional
        Progress callback and cancel token of the depth calculation (most of the time).

    Returns
    -------
    SpotMap
        Layers ordered by decreasing energy (layer 0 = highest); within a layer, spots in
        row-major lattice order (v, then u).

    Raises
    ------
    PlanningError
        For an empty or misshapen target, bad spacing, or a target outside the machine's ranges.
    """
    if not (0.5 <= spot_spacing_mm <= 50):
        raise PlanningError(f"spot spacing must lie in [0.5, 50] mm, got {spot_spacing_mm}")
    if lateral_margin_mm < 0 or energy_margin_mm < 0:
        raise PlanningError("margins must be >= 0 mm")
    if not (0 <= layer_spacing_mm <= 30):
        raise PlanningError(f"layer spacing must lie in [0, 30] mm, got {layer_spacing_mm}")
    mask = np.asarray(target_mask)
    if mask.shape != tuple(ct_grid.shape):
        raise PlanningError(f"target mask has shape {mask.shape}, expected the CT grid "
                            f"{tuple(ct_grid.shape)}")
    flat = np.flatnonzero(mask.astype(bool, copy=False))
    if flat.size == 0:
        raise PlanningError(f"{beam.label}: the target mask is empty")
    centres = ct_grid.voxel_centers_lps(flat)
    wepl = compute_wepl(rsp_volume, ct_grid, beam, centres, settings=settings, cubes=cubes,
                        progress=progress, cancel=cancel).astype(np.float64)
    bev = lps_to_bev(centres, beam.isocenter_mm, beam.frame)
    sad_u, sad_v = machine.sad_mm
    a = bev[:, 0] * sad_u / (sad_u + bev[:, 2]) / spot_spacing_mm
    b = bev[:, 1] * sad_v / (sad_v + bev[:, 2]) / spot_spacing_mm
    m = lateral_margin_mm / spot_spacing_mm
    reach = math.ceil(m + 0.5)
    ia, ib = np.rint(a).astype(np.int64), np.rint(b).astype(np.int64)
    keys, depths = [], []
    for di in range(-reach, reach + 1):
        for dj in range(-reach, reach + 1):
            ci, cj = ia + di, ib + dj
            gx = np.maximum(np.abs(a - ci) - 0.5, 0.0)
            gy = np.maximum(np.abs(b - cj) - 0.5, 0.0)
            ok = gx * gx + gy * gy <= m * m + 1e-12
            keys.append(np.stack([cj[ok], ci[ok]], axis=1))
            depths.append(wepl[ok])
    ray, inverse = np.unique(np.concatenate(keys), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    all_depth = np.concatenate(depths)
    w_lo = np.full(ray.shape[0], np.inf)
    w_hi = np.full(ray.shape[0], -np.inf)
    np.minimum.at(w_lo, inverse, all_depth)
    np.maximum.at(w_hi, inverse, all_depth)

    peaks = np.asarray(machine.peak_depth_mm, dtype=np.float64)
    order = np.argsort(peaks)
    peaks_sorted = peaks[order]
    deepest, shallowest = float(w_hi.max()), float(w_lo.min())
    if deepest > peaks_sorted[-1] + energy_margin_mm:
        raise PlanningError(
            f"{beam.label}: the target reaches a water-equivalent depth of {deepest:.1f} mm but "
            f"the highest energy of machine '{machine.name}' peaks at {peaks_sorted[-1]:.1f} mm; "
            "choose another beam direction or a machine with higher energies")
    if shallowest < peaks_sorted[0] - energy_margin_mm:
        raise PlanningError(
            f"{beam.label}: the target starts at a water-equivalent depth of {shallowest:.1f} mm,"
            f" shallower than the lowest energy's Bragg peak ({peaks_sorted[0]:.1f} mm) of "
            f"machine '{machine.name}'; a range shifter would be needed (not supported)")
    i_lo = np.searchsorted(peaks_sorted, w_lo - energy_margin_mm, side="left")
    i_hi = np.searchsorted(peaks_sorted, w_hi + energy_margin_mm, side="right")
    mid = 0.5 * (w_lo + w_hi)
    nearest = np.argmin(np.abs(peaks_sorted[None, :] - mid[:, None]), axis=1)
    thin = i_hi <= i_lo
    i_lo = np.where(thin, nearest, i_lo)
    i_hi = np.where(thin, nearest + 1, i_hi)
    # The energies kept (indices into peaks_sorted, increasing), then each ray's share of them.
    kept = select_layer_energies(peaks_sorted, int(i_lo.min()), int(i_hi.max()) - 1,
                                 layer_spacing_mm)
    k_lo = np.searchsorted(kept, i_lo, side="left")
    k_hi = np.searchsorted(kept, i_hi, side="left")
    nearest_kept = np.argmin(np.abs(peaks_sorted[kept][None, :] - mid[:, None]), axis=1)
    none = k_hi <= k_lo
    k_lo = np.where(none, nearest_kept, k_lo)
    k_hi = np.where(none, nearest_kept + 1, k_hi)
    n_per_ray = k_hi - k_lo
    ray_of_spot = np.repeat(np.arange(ray.shape[0]), n_per_ray)
    first = np.repeat(k_lo - np.concatenate([[0], np.cumsum(n_per_ray)[:-1]]), n_per_ray)
    energy_idx = order[kept[first + np.arange(ray_of_spot.size)]]
    # Sort: energy descending, then v, then u (row-major lattice order).
    iv, iu = ray[ray_of_spot, 0], ray[ray_of_spot, 1]
    e = machine.energies_mev_u[energy_idx]
    srt = np.lexsort((iu, iv, -e))
    e, iu, iv = e[srt], iu[srt], iv[srt]
    _, layer = np.unique(-e, return_inverse=True)
    log.info("%s: %d spots in %d layers on %d rays", beam.label, e.size, layer.max() + 1,
             ray.shape[0])
    return SpotMap(
        energy_mev_u=e,
        layer=layer.reshape(-1).astype(np.int64),
        u_mm=iu * float(spot_spacing_mm),
        v_mm=iv * float(spot_spacing_mm),
        spacing_mm=(float(spot_spacing_mm), float(spot_spacing_mm)),
    )


def select_layer_energies(peak_depth_mm: ArrayLike, first: int, last: int,
                          spacing_mm: float) -> IntArray:
    """Energies ``first .. last`` thinned to Bragg peaks at least ``spacing_mm`` apart.

    Parameters
    ----------
    peak_depth_mm : (E,) float array
        Bragg peak depths of the machine energies, increasing, mm.
    first, last : int
        Shallowest and deepest needed energy (indices), ``first <= last``.
    spacing_mm : float
        Smallest peak distance of consecutive kept energies, mm; 0 keeps all.

    Returns
    -------
    (n,) int array
        Kept indices, increasing; always holds ``first`` and ``last``. Going from ``last``
        down, each next index is the deepest one at least ``spacing_mm`` shallower; when the
        last pick would lie closer than ``spacing_mm`` to ``first``, ``first`` replaces it
        (so only that one gap may be up to twice the spacing). Gaps are never below the
        spacing, except when ``first`` and ``last`` themselves lie closer than it.
    """
    peaks = np.asarray(peak_depth_mm, dtype=np.float64)
    if spacing_mm <= 0 or last <= first:
        return np.arange(first, last + 1, dtype=np.int64)
    picked = [last]
    while True:
        j = int(np.searchsorted(peaks, peaks[picked[-1]] - spacing_mm + 1e-9, side="right")) - 1
        if j < first:
            break
        picked.append(j)
    if picked[-1] != first:
        if len(picked) > 1 and peaks[picked[-1]] - peaks[first] < spacing_mm:
            picked[-1] = first
        else:
            picked.append(first)
    return np.asarray(picked[::-1], dtype=np.int64)


# --------------------------------------------------------------------------- forward dose


def forward_dose(
    influence: DoseInfluence, weights: ArrayLike
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Dose and LETd cubes of spot weights.

    Parameters
    ----------
    influence : DoseInfluence
        The matrices.
    weights : (n_spots,) float array
        Spot weights in 10^6 primaries, >= 0.

    Returns
    -------
    dose_gy : (nz, ny, nx) float32 array
        Physical dose, Gy.
    letd_kev_um : (nz, ny, nx) float32 array
        Dose-averaged LET, keV/um (0 where the dose is 0).
    """
    if influence.let_dose is None:
        raise PlanningError("the influence matrices were built without LET x dose "
                            "(DoseEngineSettings.store_let_dose=False), so LETd is unavailable")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    n = influence.spots.n_spots
    if w.size != n:
        raise PlanningError(f"got {w.size} spot weights for {n} spots")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise PlanningError("spot weights must be finite and >= 0")
    dose = influence.dose @ w
    let_dose = influence.let_dose @ w
    letd = np.divide(let_dose, dose, out=np.zeros_like(dose), where=dose > 0)
    shape = influence.grid.shape
    return dose.reshape(shape).astype(np.float32), letd.reshape(shape).astype(np.float32)
