"""Typed patient data: the planning CT, its structures, and the patient and study they belong to.

Geometry
--------
Every volume here follows :mod:`planning.geometry`: arrays are indexed ``(z, y, x)``,
``spacing_mm`` is in the same order, and ``origin_mm`` is the DICOM patient (LPS) position
``(x, y, z)`` of the centre of voxel ``(0, 0, 0)``; voxel ``(k, j, i)`` lies at
``origin_mm + (i * sx, j * sy, k * sz)``. The axes always point along **+x, +y, +z LPS**
(towards the patient's left, posterior, superior), whatever the patient position of the scan:
the importer reorients (flips and, for decubitus scans, transposes) the pixel arrays of
head-first-prone, feet-first and decubitus series so that this holds, and keeps the scan's
original ``patient_position`` and ``image_orientation_patient`` only as metadata for export and
display. For a feet-first-supine (FFS) scan, for instance, image columns run towards the
patient's right, so the stored rows are the image rows mirrored.

Masks
-----
A structure's voxels are a :class:`RoiMask`: a boolean array cropped to the bounding box of the
structure plus the offset of that box in the CT grid, which keeps large CT grids with many small
structures cheap. :meth:`RoiMask.to_dense` gives the full ``(z, y, x)`` boolean array.
A voxel belongs to a structure when its centre lies inside the structure's contours on its slice
(even-odd rule across all the contours of that slice, so a contour inside another is a hole).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
#: CT numbers: int16 when exact, float32 otherwise (see CtVolume.hu).
HuArray = NDArray[np.int16] | NDArray[np.float32]


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class PatientStudy:
    """Patient and study attributes copied from the CT, needed to reference it from RT objects.

    All are DICOM strings as read (``""`` where the CT left them empty); dates are ``YYYYMMDD``,
    times ``HHMMSS[.ffffff]``.
    """

    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_id: str
    study_date: str
    study_time: str
    accession_number: str
    referring_physician_name: str
    study_description: str = ""


#: Patient positions IonPlan plans in (the decubitus positions are not handled).
SUPPORTED_POSITIONS = ("HFS", "HFP", "FFS", "FFP")
#: Image Orientation (Patient) of axial scans in those positions (PS3.3 C.7.6.2.1.1).
ORIENTATION_POSITIONS: dict[tuple[int, ...], str] = {
    (1, 0, 0, 0, 1, 0): "HFS",
    (-1, 0, 0, 0, -1, 0): "HFP",
    (-1, 0, 0, 0, 1, 0): "FFS",
    (1, 0, 0, 0, -1, 0): "FFP",
}


@dataclass(frozen=True, eq=False)
class CtVolume:
    """A planning CT in Hounsfield units on an axis-aligned grid (see the module docstring).

    Attributes
    ----------
    hu : (nz, ny, nx) int16 or float32 array, read-only
        CT numbers in HU (rescale slope and intercept applied). int16 when every slice's
        rescaled values are integers within the int16 range (the usual case), float32 otherwise.
    spacing_mm : tuple of 3 float
        Voxel spacing ``(sz, sy, sx)`` in mm, all positive.
    origin_mm : tuple of 3 float
        LPS position ``(x, y, z)`` in mm of the centre of voxel ``(0, 0, 0)``.
    patient_position : str
        The scan's DICOM Patient Position (``"HFS"``, ``"HFP"``, ``"FFS"``, ``"FFP"``, ...), or
        ``""`` when the series did not state it. Metadata only: geometry comes from the image
        orientation and positions.
    image_orientation_patient : tuple of 6 float
        The scan's original Image Orientation (Patient) direction cosines (row, then column),
        before reorientation.
    frame_of_reference_uid, series_instance_uid : str
        UIDs of the CT series.
    sop_instance_uids : tuple of str
        SOP Instance UIDs of the CT images; element ``k`` is the image of ``hu[k]``.
    study : PatientStudy
        Patient and study attributes.
    series_description : str
        Series Description, ``""`` if absent.
    series_number : int or None
        Series Number, if given.
    source_paths : tuple of str
        Files the slices were read from, in the order of ``hu``; empty for data built in memory.
    warnings : tuple of str
        What the import noticed that did not stop it (no Patient Position), each naming the
        file and series; :func:`planning.dicom.load_patient` copies them into
        :attr:`Patient.warnings`.
    """

    hu: HuArray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    patient_position: str
    image_orientation_patient: tuple[float, float, float, float, float, float]
    frame_of_reference_uid: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    study: PatientStudy
    series_description: str = ""
    series_number: int | None = None
    source_paths: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"CtVolume.hu must be 3-D (z, y, x), got shape {self.hu.shape}")
        if self.hu.dtype not in (np.dtype(np.int16), np.dtype(np.float32)):
            raise ValueError(f"CtVolume.hu must be int16 or float32, got {self.hu.dtype}")
        if len(self.spacing_mm) != 3 or not all(s > 0 for s in self.spacing_mm):
            raise ValueError(f"CtVolume.spacing_mm must be 3 positive values: {self.spacing_mm}")
        if len(self.origin_mm) != 3:
            raise ValueError(f"CtVolume.origin_mm must have 3 values: {self.origin_mm}")
        if len(self.sop_instance_uids) != self.hu.shape[0]:
            raise ValueError(
                f"CtVolume has {self.hu.shape[0]} slices but "
                f"{len(self.sop_instance_uids)} SOP Instance UIDs"
            )
        if self.hu.flags.writeable:
            object.__setattr__(self, "hu", _readonly(self.hu))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape ``(nz, ny, nx)``."""
        nz, ny, nx = self.hu.shape
        return (nz, ny, nx)

    def setup_position(self) -> str:
        """The patient position the beams are set up in: the CT's Patient Position, or where
        the series states none (it may: Type 2C), the one its Image Orientation (Patient)
        implies (HFS, HFP, FFS or FFP; PS3.3 C.7.6.2.1.1).

        Raises
        ------
        InputError
            A decubitus or unknown position, or none stated and a non-axial orientation.
        """
        from planning.errors import InputError

        if self.patient_position:
            position = self.patient_position.upper()
            if position not in SUPPORTED_POSITIONS:
                raise InputError(f"the CT {self.series_instance_uid} was scanned {position}; "
                                 f"IonPlan plans in {', '.join(SUPPORTED_POSITIONS)} only")
            return position
        key = tuple(round(v) for v in self.image_orientation_patient)
        if key in ORIENTATION_POSITIONS:
            return ORIENTATION_POSITIONS[key]
        raise InputError(f"the CT {self.series_instance_uid} states no Patient Position and its "
                         f"orientation {self.image_orientation_patient} does not imply one")

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3."""
        return float(np.prod(self.spacing_mm))

    def axis_positions_mm(
        self,
    ) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
        """LPS coordinates of the voxel centres along each axis.

        Returns
        -------
        z_mm, y_mm, x_mm : float arrays of shapes (nz,), (ny,), (nx,)
            ``z_mm[k]`` is the LPS z of slice ``k`` (likewise for y rows and x columns).
        """
        ox, oy, oz = self.origin_mm
        sz, sy, sx = self.spacing_mm
        nz, ny, nx = self.shape
        return (oz + sz * np.arange(nz), oy + sy * np.arange(ny), ox + sx * np.arange(nx))


@dataclass(frozen=True, eq=False)
class RoiMask:
    """Voxels of a structure on a CT grid, stored cropped to their bounding box.

    Attributes
    ----------
    grid_shape : tuple of 3 int
        Shape ``(nz, ny, nx)`` of the CT grid.
    offset_zyx : tuple of 3 int
        Index in the CT grid of element ``[0, 0, 0]`` of ``box``.
    box : (bz, by, bx) bool array, read-only
        The mask inside the bounding box; ``(0, 0, 0)``-shaped for an empty mask.
    """

    grid_shape: tuple[int, int, int]
    offset_zyx: tuple[int, int, int]
    box: BoolArray

    def __post_init__(self) -> None:
        if self.box.ndim != 3 or self.box.dtype != np.bool_:
            raise ValueError("RoiMask.box must be a 3-D bool array")
        for o, b, n in zip(self.offset_zyx, self.box.shape, self.grid_shape, strict=True):
            if o < 0 or o + b > n:
                raise ValueError(
                    f"RoiMask box {self.box.shape} at {self.offset_zyx} exceeds grid "
                    f"{self.grid_shape}"
                )
        if self.box.flags.writeable:
            object.__setattr__(self, "box", _readonly(self.box))

    @classmethod
    def from_dense(cls, mask: BoolArray) -> RoiMask:
        """Crop a full-grid ``(nz, ny, nx)`` boolean mask to its bounding box."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 3:
            raise ValueError(f"mask must be 3-D (z, y, x), got shape {mask.shape}")
        return cls.from_box(mask.shape, (0, 0, 0), mask)

    @classmethod
    def from_box(
        cls, grid_shape: Sequence[int], offset_zyx: Sequence[int], box: BoolArray
    ) -> RoiMask:
        """A mask from a boolean sub-array placed at ``offset_zyx``, cropped to its voxels.

        Parameters
        ----------
        grid_shape : sequence of 3 int
            Shape ``(nz, ny, nx)`` of the CT grid.
        offset_zyx : sequence of 3 int
            Grid index of ``box[0, 0, 0]``.
        box : (bz, by, bx) bool array
            Must lie inside the grid.
        """
        box = np.asarray(box, dtype=bool)
        nz, ny, nx = (int(n) for n in grid_shape)
        if box.ndim != 3:
            raise ValueError(f"box must be 3-D (z, y, x), got shape {box.shape}")
        if not box.any():
            return cls.empty((nz, ny, nx))
        lo: list[int] = []
        hi: list[int] = []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            present = np.flatnonzero(box.any(axis=other))
            lo.append(int(present[0]))
            hi.append(int(present[-1]) + 1)
        cropped = box[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].copy()
        z, y, x = (int(o) + low for o, low in zip(offset_zyx, lo, strict=True))
        return cls(grid_shape=(nz, ny, nx), offset_zyx=(z, y, x), box=cropped)

    @classmethod
    def empty(cls, grid_shape: Sequence[int]) -> RoiMask:
        """A mask with no voxel on a grid of shape ``(nz, ny, nx)``."""
        nz, ny, nx = (int(n) for n in grid_shape)
        return cls(grid_shape=(nz, ny, nx), offset_zyx=(0, 0, 0), box=np.zeros((0, 0, 0), bool))

    @property
    def voxel_count(self) -> int:
        """Number of voxels in the structure."""
        return int(np.count_nonzero(self.box))

    def to_dense(self) -> BoolArray:
        """The full ``(nz, ny, nx)`` boolean mask (a new, writable array)."""
        out = np.zeros(self.grid_shape, dtype=bool)
        z, y, x = self.offset_zyx
        bz, by, bx = self.box.shape
        out[z : z + bz, y : y + by, x : x + bx] = self.box
        return out

    def flat_indices(self) -> NDArray[np.intp]:
        """C-order flat indices into the CT grid of the structure's voxels, ascending."""
        k, j, i = np.nonzero(self.box)
        z, y, x = self.offset_zyx
        return np.ravel_multi_index((k + z, j + y, i + x), self.grid_shape)


@dataclass(frozen=True, eq=False)
class Contour:
    """One contour of a structure as stored in an RT Structure Set.

    Attributes
    ----------
    points_mm : (N, 3) float64 array, read-only
        Vertices ``(x, y, z)`` in LPS, mm. A closed planar contour is implicitly closed (the last
        vertex connects to the first).
    geometric_type : str
        DICOM Contour Geometric Type: ``"CLOSED_PLANAR"``, ``"OPEN_PLANAR"``,
        ``"OPEN_NONPLANAR"`` or ``"POINT"``.
    """

    points_mm: FloatArray
    geometric_type: str

    def __post_init__(self) -> None:
        if self.points_mm.ndim != 2 or self.points_mm.shape[1] != 3:
            raise ValueError(f"Contour.points_mm must be (N, 3), got {self.points_mm.shape}")
        if self.points_mm.flags.writeable:
            object.__setattr__(self, "points_mm", _readonly(self.points_mm))


@dataclass(frozen=True, eq=False)
class Structure:
    """A region of interest (organ, target, external contour, ...).

    Attributes
    ----------
    name : str
        ROI Name.
    roi_number : int
        ROI Number, unique within its structure set.
    interpreted_type : str
        RT ROI Interpreted Type (``"PTV"``, ``"ORGAN"``, ``"EXTERNAL"``, ...); ``""`` if unknown.
    colour_rgb : tuple of 3 int, or None
        ROI Display Color, each 0-255; None if the structure set gave none.
    mask : RoiMask
        Voxels whose centres lie inside the contours, on the CT grid.
    contours : tuple of Contour
        The contours as stored, in LPS mm.
    """

    name: str
    roi_number: int
    interpreted_type: str
    colour_rgb: tuple[int, int, int] | None
    mask: RoiMask
    contours: tuple[Contour, ...] = ()

    @property
    def is_target(self) -> bool:
        """Whether its interpreted type is a target volume's (:data:`TARGET_TYPES`)."""
        return self.interpreted_type.upper() in TARGET_TYPES

    def volume_cm3(self, spacing_mm: Sequence[float]) -> float:
        """Volume in cm^3 of the mask voxels, for a grid spacing ``(sz, sy, sx)`` in mm."""
        return self.mask.voxel_count * float(np.prod(spacing_mm)) / 1000.0


#: RT ROI Interpreted Types of target volumes (the structures whose dose is meant to be
#: uniform: the homogeneity index means something for them only).
TARGET_TYPES = ("PTV", "CTV", "GTV")


#: Display colours of structures whose structure set gives no ROI Display Color (RGB 0-255),
#: by their index in the structure set (:meth:`StructureSet.display_colours`): neighbours
#: differ, so their outlines and DVH curves can be told apart.
FALLBACK_COLOURS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


@dataclass(frozen=True, eq=False)
class StructureSet:
    """The structures of an RT Structure Set, rasterized on one CT grid.

    Attributes
    ----------
    structures : tuple of Structure
        In the order of the structure set's ROI list.
    frame_of_reference_uid : str
        The frame of reference the contours are in (the CT's).
    sop_instance_uid, series_instance_uid : str
        UIDs of the RT Structure Set object, for referencing it from an RT Ion Plan.
    label : str
        Structure Set Label.
    referenced_ct_series_uid : str
        The CT series the structure set says it was drawn on (``""`` if it does not say).
    warnings : tuple of str
        Problems found while importing that did not stop the import (contours outside the CT,
        contour types that cannot be rasterized, ...).
    source_path : str
        The file it was read from; ``""`` for data built in memory.
    """

    structures: tuple[Structure, ...]
    frame_of_reference_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    label: str = ""
    referenced_ct_series_uid: str = ""
    warnings: tuple[str, ...] = ()
    source_path: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        """ROI names in order."""
        return tuple(s.name for s in self.structures)

    def display_colours(self) -> tuple[tuple[int, int, int], ...]:
        """The colour each structure is drawn in (outlines, DVH curves, table swatches), in
        order: its ROI Display Color, or without one :data:`FALLBACK_COLOURS` by its index
        in the structure set, so that a structure has the same colour on every screen and in
        every document."""
        return tuple(s.colour_rgb or FALLBACK_COLOURS[i % len(FALLBACK_COLOURS)]
                     for i, s in enumerate(self.structures))

    def display_colour(self, structure: Structure) -> tuple[int, int, int]:
        """The colour of ``structure``, one of this set's structures
        (:meth:`display_colours`).

        Raises
        ------
        KeyError
            If ``structure`` is not one of this set's.
        """
        for s, colour in zip(self.structures, self.display_colours(), strict=True):
            if s is structure:
                return colour
        raise KeyError(f"structure {structure.name!r} is not one of this structure set's")

    def empty_structure_text(self, name: str) -> str:
        """Why the structure called ``name`` may have no voxels, for an error that says it
        has none: what the import warned of about its ROI, with the file
        (``"; the import of /data/RS.dcm said: ROI 'PTV': 13 contour(s) outside the CT volume
        were ignored"``); ``""`` when it warned of nothing about it."""
        mine = [w for w in self.warnings
                if w.startswith((f"ROI {name!r}:", f"ROI {name!r} "))]
        if not mine:
            return ""
        where = f" of {self.source_path}" if self.source_path else ""
        return f"; the import{where} said: {'; '.join(mine)}"

    def get(self, name: str) -> Structure:
        """The structure called ``name`` (exact match first, then case-insensitive).

        Raises
        ------
        KeyError
            If no structure has that name, or several have it exactly or, without an exact
            match, but for case (which one is meant cannot be told: a plan on the first of two
            "PTV"s planned one ROI and reported the other).
        """
        exact = [s for s in self.structures if s.name == name]
        if len(exact) > 1:
            raise KeyError(f"{len(exact)} structures are named {name!r} (ROI numbers "
                           f"{', '.join(str(s.roi_number) for s in exact)}): which one is "
                           "meant cannot be told; rename one in the structure set")
        if exact:
            return exact[0]
        matches = [s for s in self.structures if s.name.casefold() == name.casefold()]
        if len(matches) > 1:
            raise KeyError(f"several structures are named {name!r} but for case "
                           f"({', '.join(repr(s.name) for s in matches)}); give the name "
                           "exactly")
        if matches:
            return matches[0]
        raise KeyError(f"no structure named {name!r}; structures: {', '.join(self.names)}")


@dataclass(frozen=True, eq=False)
class Patient:
    """A planning CT and, if one was found, its structure set.

    Attributes
    ----------
    ct : CtVolume
        The planning CT.
    structure_set : StructureSet or None
        Its structures on the CT grid.
    warnings : tuple of str
        Import notes that did not stop the import (skipped files, the CT's and the structure
        set's warnings).
    """

    ct: CtVolume
    structure_set: StructureSet | None = None
    warnings: tuple[str, ...] = ()

    def import_warnings(self) -> tuple[str, ...]:
        """What the import of the patient's files warned of, each once, for the outputs
        (report.json, the terminal, the plan document): the patient's own notes (skipped and
        damaged files, no structure set), then its structure set's, each after the file it
        was read from (``"/data/p1/RS.dcm: ROI 'Eye_L' has an open contour"``; without a file,
        a structure set built in memory, as it is)."""
        ss = self.structure_set
        theirs = () if ss is None else ss.warnings
        where = "" if ss is None or not ss.source_path else f"{ss.source_path}: "
        own = [w for w in self.warnings if w not in theirs]  # load_patient copies them
        return tuple(dict.fromkeys([*own, *(f"{where}{w}" for w in theirs)]))

    def record(self) -> dict[str, str | None]:
        """Who and which images, as the output files' reports say it: patient ID and name,
        study, CT series, frame of reference and structure set UIDs (None without one)."""
        study, ss = self.ct.study, self.structure_set
        return {"patient_id": study.patient_id, "patient_name": study.patient_name,
                "study_instance_uid": study.study_instance_uid,
                "ct_series_instance_uid": self.ct.series_instance_uid,
                "frame_of_reference_uid": self.ct.frame_of_reference_uid,
                "structure_set_sop_instance_uid": None if ss is None else ss.sop_instance_uid}
