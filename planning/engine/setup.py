"""What a planning engine prepares once: each beam's voxels and its energy layers.

:func:`beam_geometry` computes, per beam, the water-equivalent depth and the spot-lattice
coordinates of the calculation voxels (:class:`kernels.influence.BeamVoxels`); it depends on the
CT, the beam and the spot lattice, not on the RBE model. :func:`beam_layers` tabulates each
energy layer of a beam (:class:`kernels.influence.LayerSetup`) for one set of RBE-model depth
tables. Both run on the engine's device (NumPy or CuPy arrays).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kernels import backend
from kernels.influence import (
    BeamVoxels,
    LayerSetup,
    PencilBeamTables,
    beam_voxels,
    layer_cutoff_radii_mm,
    prepare_layer,
)
from kernels.wepl import sample_volume
from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.engine.dose_engine import DOSE_SCALE_GY, SpotTable
from planning.engine.wepl_cubes import WeplCubes
from planning.errors import MachineError, PlanningError
from planning.geometry import lps_to_bev
from planning.machine import Machine, pencil_beam_data, per_depth_at_energy
from planning.progress import CancelToken, ProgressCallback
from planning.rbe.tables import DepthTables


@dataclass(frozen=True)
class BeamLayers:
    """A beam's layer set-ups in increasing order of their spots' columns.

    Attributes
    ----------
    layers : tuple of LayerSetup
    first_column : tuple of int
        Smallest column (spot identifier) of each layer.
    row_major : tuple of bool
        Whether each layer's columns are consecutive and in row-major lattice order.
    """

    layers: tuple[LayerSetup, ...]
    first_column: tuple[int, ...]
    row_major: tuple[bool, ...]


def check_energies(machine: Machine, beam: Beam, spots: SpotMap) -> None:
    """Every spot energy lies in the machine's range."""
    lo, hi = machine.energy_range_mev_u
    e = np.asarray(spots.energy_mev_u)
    bad = (e < lo - 1e-9) | (e > hi + 1e-9)
    if np.any(bad):
        raise PlanningError(
            f"{beam.label}: {int(bad.sum())} spots have energies outside the range "
            f"{lo:g}-{hi:g} MeV/u of machine '{machine.name}' (e.g. {e[bad][0]:g} MeV/u)")


def calculation_mask(xp: Any, rsp_x: Any, ct_grid: DoseGrid, dose_grid: DoseGrid,
                     calc_mask: ArrayLike | None, min_rsp: float) -> NDArray[np.bool_]:
    """The dose-grid voxels to compute: ``calc_mask`` checked, or where the RSP is >= min_rsp."""
    if calc_mask is not None:
        mask = np.asarray(calc_mask, dtype=bool)
        if mask.shape != tuple(dose_grid.shape):
            raise PlanningError(f"calculation mask has shape {mask.shape}, expected the dose "
                                f"grid {tuple(dose_grid.shape)}")
        return mask
    centres = xp.asarray(dose_grid.voxel_centers_lps())
    rsp_at = backend.to_numpy(sample_volume(rsp_x, ct_grid.spacing_mm, ct_grid.origin_mm,
                                            centres))
    return (rsp_at >= min_rsp).reshape(dose_grid.shape)


def spot_table(spot_maps: Sequence[SpotMap]) -> SpotTable:
    """The columns of all beams' spots, concatenated in beam order."""
    return SpotTable(
        beam=np.concatenate([np.full(s.n_spots, b, dtype=np.int64)
                             for b, s in enumerate(spot_maps)]),
        layer=np.concatenate([np.asarray(s.layer, dtype=np.int64) for s in spot_maps]),
        energy_mev_u=np.concatenate([np.asarray(s.energy_mev_u, dtype=np.float64)
                                     for s in spot_maps]),
        u_mm=np.concatenate([np.asarray(s.u_mm, dtype=np.float64) for s in spot_maps]),
        v_mm=np.concatenate([np.asarray(s.v_mm, dtype=np.float64) for s in spot_maps]),
    )


def beam_geometry(xp: Any, machine: Machine, cubes: WeplCubes, dose_grid: DoseGrid,
                  rows: NDArray[np.int64], beam: Beam, spot_map: SpotMap, *,
                  progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> BeamVoxels:
    """WEPL (from the beam's cube in ``cubes``) and spot-lattice coordinates of the dose-grid
    voxels ``rows`` (flat indices); ``progress`` and ``cancel`` are served while the WEPL
    cube is built, and ``cancel`` is checked between the steps over all voxels (each takes
    seconds on a fine grid)."""
    def check() -> None:
        if cancel is not None:
            cancel.raise_if_cancelled("water-equivalent depth")

    centres = dose_grid.voxel_centers_lps(rows)
    check()
    frame = beam.frame
    wepl = cubes.at_points(xp, frame, xp.asarray(centres), progress=progress, cancel=cancel)
    check()
    bev = xp.asarray(lps_to_bev(centres, beam.isocenter_mm, frame))
    del centres
    check()
    return beam_voxels(xp.asarray(rows.astype(np.int64)), bev[:, 0], bev[:, 1], bev[:, 2], wepl,
                       lattice_spacing_mm=spot_map.spacing_mm,
                       lattice_origin_mm=spot_map.lattice_origin_mm, sad_mm=machine.sad_mm)


def _layer_tables(machine: Machine, energy: float, where: str,
                  model_tables: DepthTables | None) -> PencilBeamTables:
    try:
        pb = pencil_beam_data(machine, energy)
        quantities = () if model_tables is None else tuple(
            per_depth_at_energy(machine, v, energy) for v in model_tables.values)
    except MachineError as exc:
        raise PlanningError(f"{where}: {exc.reason}") from None
    return PencilBeamTables(
        depth_mm=pb.depth_mm, idd=pb.idd_mev_cm2_per_g, sigma_core_mm=pb.sigma_core_mm,
        sigma_halo_mm=pb.sigma_halo_mm, halo_weight=pb.halo_weight,
        letd_kev_um=pb.letd_kev_um, sigma_air_mm=pb.spot_sigma_air_mm,
        model_quantities=quantities,
    )


def beam_layers(xp: Any, machine: Machine, beam: Beam, spot_map: SpotMap, first_spot: int,
                model_tables: DepthTables | None, cutoff_fraction: float) -> BeamLayers:
    """Tabulate each energy layer of a beam; spot identifiers start at ``first_spot``."""
    iu, iv = spot_map.lattice_indices()
    layer = np.asarray(spot_map.layer)
    selections, tables = [], []
    for lay in np.unique(layer):
        sel = np.flatnonzero(layer == lay)
        width = int(iu[sel].max() - iu[sel].min()) + 2
        key = (iv[sel] - iv[sel].min()) * width + (iu[sel] - iu[sel].min())
        if np.unique(key).size != sel.size:
            raise PlanningError(f"{beam.label}: layer {lay} has two spots at the same position")
        energy = float(np.asarray(spot_map.energy_mev_u)[sel[0]])
        tables.append(_layer_tables(machine, energy, f"{beam.label}, layer {lay}", model_tables))
        selections.append((sel, bool(np.all(np.diff(key) > 0) and np.all(np.diff(sel) == 1))))
    radii = layer_cutoff_radii_mm(tables, cutoff_fraction)
    setups = []
    for (sel, row_major), tab, radius in zip(selections, tables, radii, strict=True):
        setup = prepare_layer(iu[sel], iv[sel], tab, spot_ids=sel + first_spot,
                              cutoff_fraction=cutoff_fraction, dose_scale=DOSE_SCALE_GY,
                              node_radius_mm=radius, xp=xp)
        setups.append((int(sel[0] + first_spot), setup, row_major))
    setups.sort(key=lambda t: t[0])
    return BeamLayers(tuple(t[1] for t in setups), tuple(t[0] for t in setups),
                      tuple(t[2] for t in setups))


def with_radii_of(base: BeamLayers, other: BeamLayers) -> BeamLayers:
    """``base``'s layer set-ups with the cut-off radii of ``other`` (the same beam's set-ups for
    another cut-off fraction; everything else of a set-up is independent of the fraction), so
    that the two share their depth tables."""
    if base.first_column != other.first_column:
        raise PlanningError("layer set-ups of different beams or spots")
    return dataclasses.replace(base, layers=tuple(
        dataclasses.replace(b, radius_mm=o.radius_mm)
        for b, o in zip(base.layers, other.layers, strict=True)))
