"""Coordinate systems of IonPlan and the transforms between them.

Every coordinate transform of the project lives here. All positions are in mm.

Frames
------
Patient (LPS)
    DICOM patient coordinates: +x towards the patient's left, +y posterior, +z superior.
    Volumes are arrays indexed ``(z, y, x)`` with ``spacing_mm`` in the same order; ``origin_mm``
    is the LPS position ``(x, y, z)`` of the centre of voxel ``(0, 0, 0)``. Only axis-aligned
    volumes are handled: voxel ``(k, j, i)`` lies at ``origin + (i*sx, j*sy, k*sz)``.
IEC 61217 fixed system ``f``
    Origin at the isocentre. Seen from the foot of the couch looking at the gantry: ``X_f`` to the
    right, ``Y_f`` towards the gantry, ``Z_f`` up.
IEC patient support system ``s``
    The fixed system rotated by the couch (patient support) angle about ``Z_f``; a positive angle
    turns the couch counter-clockwise seen from above: ``p_f = Rz(couch) @ p_s``.
    A head-first-supine (HFS) patient on the couch has ``X_s`` = left (+x LPS),
    ``Y_s`` = superior (+z LPS), ``Z_s`` = anterior (-y LPS). For the other positions ``Y_s``
    (towards the gantry) is superior for head-first and inferior for feet-first, ``Z_s`` (up)
    is anterior for supine and posterior for prone, and ``X_s = Y_s x Z_s`` (right-handed):
    HFP ``X_s`` = right, FFS right, FFP left (DICOM PS3.3 C.7.3.1.1.2 patient positions).
IEC gantry system ``g``
    The fixed system rotated by the gantry angle about ``Y_f``, clockwise seen from the isocentre
    looking at the gantry. The radiation source sits on ``+Z_g``:
    ``Z_g = (sin g, 0, cos g)_f``, ``X_g = (cos g, 0, -sin g)_f``, ``Y_g = Y_f``.
    The beam travels along ``-Z_g``. For an HFS patient at couch 0 this gives: gantry 0 = beam
    from anterior going posterior (+y LPS); gantry 90 = source at the patient's left, beam going
    to the right (-x LPS); gantry 180 = from posterior (-y LPS); gantry 270 = from the patient's
    right (+x LPS).
Beam's-eye view (BEV)
    ``(u, v, t)`` relative to the isocentre: ``u`` along ``X_g`` (the IEC beam-limiting-device X
    axis at collimator angle 0, deflected by the X scanning magnet), ``v`` along ``Y_g``, and
    ``t`` the depth along the beam direction, positive downstream of the isocentre. Note that
    ``(u, v, t)`` is a left-handed triple because ``t`` points along ``-Z_g``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: LPS directions of the IEC patient-support axes Y_s (towards the gantry) and Z_s (up) for the
#: patient positions handled.
_SUPPORT_Y_Z_IN_LPS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "HFS": ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
    "HFP": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "FFS": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)),
    "FFP": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
}
PATIENT_POSITIONS = tuple(_SUPPORT_Y_Z_IN_LPS)


def support_to_lps_matrix(patient_position: str = "HFS") -> FloatArray:
    """(3, 3) matrix whose columns are the LPS components of X_s, Y_s, Z_s.

    Raises
    ------
    ValueError
        For positions other than HFS, HFP, FFS and FFP (decubitus positions are not handled).
    """
    try:
        y_s, z_s = (np.asarray(v) for v in _SUPPORT_Y_Z_IN_LPS[patient_position.upper()])
    except KeyError:
        raise ValueError(f"patient position {patient_position!r} is not handled; choose one of "
                         f"{', '.join(PATIENT_POSITIONS)}") from None
    return np.stack([np.cross(y_s, z_s), y_s, z_s], axis=1)



@dataclass(frozen=True)
class BeamFrame:
    """Orthonormal beam axes expressed in patient LPS coordinates.

    Attributes
    ----------
    direction : (3,) float array
        Unit vector along which the beam travels (source towards isocentre), LPS.
    u_axis : (3,) float array
        Unit lateral axis ``u`` of the beam's-eye view (IEC ``X_g``), LPS.
    v_axis : (3,) float array
        Unit lateral axis ``v`` of the beam's-eye view (IEC ``Y_g``), LPS.
    """

    direction: FloatArray
    u_axis: FloatArray
    v_axis: FloatArray

    @property
    def matrix(self) -> FloatArray:
        """(3, 3) matrix whose rows are ``u_axis``, ``v_axis``, ``direction`` (LPS -> BEV)."""
        return np.stack([self.u_axis, self.v_axis, self.direction])


def _rot_z(angle_deg: float) -> FloatArray:
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def fixed_to_lps_matrix(couch_deg: float, patient_position: str = "HFS") -> FloatArray:
    """Matrix taking IEC fixed-system vectors to patient LPS vectors.

    Parameters
    ----------
    couch_deg : float
        IEC patient support angle in degrees (counter-clockwise seen from above).
    patient_position : str
        DICOM patient position (HFS, HFP, FFS, FFP).

    Returns
    -------
    (3, 3) float array
        ``v_lps = M @ v_fixed``.
    """
    return support_to_lps_matrix(patient_position) @ _rot_z(couch_deg).T


def beam_frame(gantry_deg: float, couch_deg: float = 0.0,
               patient_position: str = "HFS") -> BeamFrame:
    """Beam direction and lateral BEV axes in LPS for a gantry and couch angle.

    Parameters
    ----------
    gantry_deg : float
        IEC gantry angle in degrees.
    couch_deg : float
        IEC patient support angle in degrees.
    patient_position : str
        DICOM patient position (HFS, HFP, FFS, FFP).

    Returns
    -------
    BeamFrame
        Unit vectors in LPS; ``direction`` is the direction of travel of the beam.
    """
    g = np.deg2rad(gantry_deg)
    sg, cg = np.sin(g), np.cos(g)
    to_lps = fixed_to_lps_matrix(couch_deg, patient_position)
    z_g = np.array([sg, 0.0, cg])
    x_g = np.array([cg, 0.0, -sg])
    y_g = np.array([0.0, 1.0, 0.0])
    return BeamFrame(direction=to_lps @ -z_g, u_axis=to_lps @ x_g, v_axis=to_lps @ y_g)


def lps_to_bev(points_lps: ArrayLike, isocenter_lps: ArrayLike, frame: BeamFrame) -> FloatArray:
    """Map patient points to beam's-eye-view coordinates.

    Parameters
    ----------
    points_lps : (N, 3) array_like
        Points ``(x, y, z)`` in LPS, mm.
    isocenter_lps : (3,) array_like
        Isocentre in LPS, mm.
    frame : BeamFrame
        Axes of the beam.

    Returns
    -------
    (N, 3) float array
        ``(u, v, t)`` in mm relative to the isocentre, ``t`` positive downstream.
    """
    p = np.asarray(points_lps, dtype=np.float64) - np.asarray(isocenter_lps, dtype=np.float64)
    return p @ frame.matrix.T


def bev_to_lps(points_bev: ArrayLike, isocenter_lps: ArrayLike, frame: BeamFrame) -> FloatArray:
    """Inverse of :func:`lps_to_bev`: ``(N, 3)`` BEV ``(u, v, t)`` to ``(N, 3)`` LPS, mm."""
    q = np.asarray(points_bev, dtype=np.float64)
    return q @ frame.matrix + np.asarray(isocenter_lps, dtype=np.float64)


def index_to_lps(
    index_zyx: ArrayLike, spacing_mm: ArrayLike, origin_mm: ArrayLike
) -> FloatArray:
    """Positions of (possibly fractional) voxel indices of an axis-aligned volume.

    Parameters
    ----------
    index_zyx : (N, 3) array_like
        Voxel indices in array order ``(k, j, i)`` = ``(z, y, x)``.
    spacing_mm : (3,) array_like
        Voxel spacing in array order ``(z, y, x)``.
    origin_mm : (3,) array_like
        LPS position ``(x, y, z)`` of the centre of voxel ``(0, 0, 0)``.

    Returns
    -------
    (N, 3) float array
        LPS positions ``(x, y, z)`` in mm.
    """
    idx = np.asarray(index_zyx, dtype=np.float64)
    sp = np.asarray(spacing_mm, dtype=np.float64)
    return idx[:, ::-1] * sp[::-1] + np.asarray(origin_mm, dtype=np.float64)


def lps_to_index(points_lps: ArrayLike, spacing_mm: ArrayLike, origin_mm: ArrayLike) -> FloatArray:
    """Fractional voxel indices ``(z, y, x)`` of LPS points; inverse of :func:`index_to_lps`."""
    p = np.asarray(points_lps, dtype=np.float64) - np.asarray(origin_mm, dtype=np.float64)
    sp = np.asarray(spacing_mm, dtype=np.float64)
    return (p / sp[::-1])[:, ::-1]


def voxel_centers_lps(
    shape: tuple[int, int, int],
    spacing_mm: ArrayLike,
    origin_mm: ArrayLike,
    flat_indices: ArrayLike | None = None,
) -> FloatArray:
    """LPS centres of the voxels of a volume (all of them, or those listed).

    Parameters
    ----------
    shape : tuple of int
        Volume shape ``(nz, ny, nx)``.
    spacing_mm, origin_mm
        As in :func:`index_to_lps`.
    flat_indices : (N,) int array_like, optional
        C-order flat indices of the wanted voxels; all voxels when omitted.

    Returns
    -------
    (N, 3) float array
        LPS positions ``(x, y, z)`` in mm, in the order of ``flat_indices`` (C order otherwise).
    """
    if flat_indices is None:
        flat = np.arange(int(np.prod(shape)))
    else:
        flat = np.asarray(flat_indices)
    k, j, i = np.unravel_index(flat, shape)
    return index_to_lps(np.stack([k, j, i], axis=1), spacing_mm, origin_mm)
