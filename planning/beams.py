"""Beams and spot maps of a scanned carbon plan, and the unit of spot weights.

Spot positions ``(u, v)`` are in mm on the isocentre plane of the beam's-eye view
(:mod:`planning.geometry`); spot weights are in units of ``PRIMARIES_PER_WEIGHT_UNIT`` primary
ions (10^6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from planning.errors import PlanningError
from planning.geometry import BeamFrame, beam_frame

#: Spot weights are in units of this many primary ions.
PRIMARIES_PER_WEIGHT_UNIT = 1.0e6

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Beam:
    """One treatment beam.

    Attributes
    ----------
    isocenter_mm : (x, y, z)
        Isocentre in LPS, mm.
    gantry_deg, couch_deg : float
        IEC 61217 gantry and patient-support angles (see :mod:`planning.geometry`).
    name : str
        Label for messages.
    patient_position : str
        DICOM patient position of the CT the beam is planned on (HFS, HFP, FFS, FFP); it sets
        how the IEC room axes lie in patient coordinates.
    """

    isocenter_mm: tuple[float, float, float]
    gantry_deg: float = 0.0
    couch_deg: float = 0.0
    name: str = ""
    patient_position: str = "HFS"

    @property
    def frame(self) -> BeamFrame:
        try:
            return beam_frame(self.gantry_deg, self.couch_deg, self.patient_position)
        except ValueError as exc:
            raise PlanningError(f"{self.label}: {exc}") from None

    @property
    def label(self) -> str:
        return self.name or f"beam G{self.gantry_deg:g} C{self.couch_deg:g}"


@dataclass(frozen=True, eq=False)
class SpotMap:
    """The spots of one beam, on a regular lateral lattice at the isocentre plane.

    Attributes
    ----------
    energy_mev_u : (n,) float array
        Energy of each spot (a machine energy, or one inside the machine's range).
    layer : (n,) int array
        Energy layer of each spot; all spots of a layer share its energy.
    u_mm, v_mm : (n,) float arrays
        Spot positions on the isocentre plane of the beam's-eye view, mm.
    spacing_mm : (du, dv)
        Lattice spacing; every spot lies at ``lattice_origin_mm + (i du, j dv)``.
    lattice_origin_mm : (u0, v0)
        Lattice node (0, 0), mm.
    """

    energy_mev_u: FloatArray
    layer: IntArray
    u_mm: FloatArray
    v_mm: FloatArray
    spacing_mm: tuple[float, float]
    lattice_origin_mm: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        n = np.shape(self.energy_mev_u)
        for name in ("layer", "u_mm", "v_mm"):
            if np.shape(getattr(self, name)) != n:
                raise PlanningError(f"spot map: {name} has shape {np.shape(getattr(self, name))},"
                                    f" expected {n} like energy_mev_u")
        if len(n) != 1:
            raise PlanningError("spot map arrays must be 1-D")
        for name in ("energy_mev_u", "u_mm", "v_mm"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise PlanningError(f"spot map: {name} contains non-finite values")
        if len(self.spacing_mm) != 2 or min(self.spacing_mm) <= 0:
            raise PlanningError(f"spot map: lattice spacing must be two positive mm, "
                                f"got {self.spacing_mm}")
        if n[0]:
            energies = np.asarray(self.energy_mev_u)
            layer = np.asarray(self.layer)
            ids, inv = np.unique(layer, return_inverse=True)
            e_first = np.full(ids.size, np.nan)
            e_first[inv[::-1]] = energies[::-1]
            if not np.allclose(energies, e_first[inv], rtol=0, atol=1e-6):
                raise PlanningError("spot map: spots of one layer have different energies")

    @property
    def n_spots(self) -> int:
        return int(np.shape(self.energy_mev_u)[0])

    def lattice_indices(self) -> tuple[IntArray, IntArray]:
        """Integer lattice indices ``(iu, iv)`` of the spots.

        Raises
        ------
        PlanningError
            If a spot lies off the lattice (more than 1 um from a node).
        """
        fu = (np.asarray(self.u_mm) - self.lattice_origin_mm[0]) / self.spacing_mm[0]
        fv = (np.asarray(self.v_mm) - self.lattice_origin_mm[1]) / self.spacing_mm[1]
        iu, iv = np.rint(fu).astype(np.int64), np.rint(fv).astype(np.int64)
        off = np.hypot((fu - iu) * self.spacing_mm[0], (fv - iv) * self.spacing_mm[1])
        if off.size and off.max() > 1e-3:
            k = int(np.argmax(off))
            raise PlanningError(
                f"spot map: spot {k} at (u, v) = ({self.u_mm[k]:.3f}, {self.v_mm[k]:.3f}) mm is "
                f"not on the lattice of spacing {self.spacing_mm} mm; the dose engine needs "
                "spots on a regular lattice")
        return iu, iv
