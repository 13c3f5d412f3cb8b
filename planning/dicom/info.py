"""A printable summary of the DICOM data in a folder (what ``ionplan info DIR`` shows).

Every CT series is loaded (one at a time) to report its geometry and HU range, and every RT
Structure Set is rasterized on the CT it belongs to for the voxel counts and volumes. A series or
structure set that fails to import is listed with its error instead: the summary itself never
fails on bad files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from planning.dicom._values import PathLike
from planning.dicom.ct_import import load_ct_series
from planning.dicom.errors import DicomImportError
from planning.dicom.rtstruct_import import (
    parse_structure_set,
    read_rtstruct_file,
    read_structure_set,
)
from planning.dicom.scan import CtSeriesFiles, RtStructSummary, SkippedFile, scan_folder
from planning.patient import CtVolume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeriesInfo:
    """Summary of one CT series; geometry fields are None when it could not be loaded.

    ``dimensions`` is ``(nx, ny, nz)`` voxels, ``spacing_mm`` ``(sx, sy, sz)``, ``origin_mm``
    the LPS ``(x, y, z)`` of voxel (0, 0, 0) after reorientation, ``hu_range`` (min, max).
    """

    series_instance_uid: str
    modality: str
    description: str
    patient_position: str
    file_count: int
    patient: str
    study: str
    dimensions: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    origin_mm: tuple[float, float, float] | None = None
    hu_range: tuple[float, float] | None = None
    error: str = ""


@dataclass(frozen=True)
class RoiInfo:
    """One ROI: ``voxel_count`` and ``volume_cm3`` are None without a matching CT."""

    number: int
    name: str
    interpreted_type: str
    colour_rgb: tuple[int, int, int] | None
    voxel_count: int | None
    volume_cm3: float | None


@dataclass(frozen=True)
class StructureSetInfo:
    """Summary of one RT Structure Set."""

    path: str
    sop_instance_uid: str
    label: str
    ct_series_uid: str
    rois: tuple[RoiInfo, ...]
    warnings: tuple[str, ...]
    error: str = ""


@dataclass(frozen=True)
class FolderInfo:
    """Everything :func:`folder_info` found."""

    folder: str
    series: tuple[SeriesInfo, ...]
    structure_sets: tuple[StructureSetInfo, ...]
    skipped: tuple[SkippedFile, ...]
    damaged: tuple[SkippedFile, ...]


def _series_info(series: CtSeriesFiles, ct: CtVolume | None, error: str) -> SeriesInfo:
    name = series.attribute("PatientName")
    pid = series.attribute("PatientID")
    study = " ".join(
        v for v in (series.attribute("StudyDate"), series.attribute("StudyDescription")) if v
    )
    dimensions = spacing = origin = hu_range = None
    if ct is not None:
        nz, ny, nx = ct.shape
        sz, sy, sx = ct.spacing_mm
        dimensions = (nx, ny, nz)
        spacing = (sx, sy, sz)
        origin = ct.origin_mm
        hu_range = (float(np.min(ct.hu)), float(np.max(ct.hu)))
    return SeriesInfo(
        series_instance_uid=series.series_instance_uid,
        modality=series.attribute("Modality") or "?",
        description=series.attribute("SeriesDescription"),
        patient_position=series.attribute("PatientPosition"),
        file_count=len(series.files),
        patient=f"{name} ({pid})" if pid else name,
        study=study,
        dimensions=dimensions,
        spacing_mm=spacing,
        origin_mm=origin,
        hu_range=hu_range,
        error=error,
    )


def _belongs(summary: RtStructSummary, ct: CtVolume) -> bool:
    if summary.referenced_series_uids:
        return ct.series_instance_uid in summary.referenced_series_uids
    return ct.frame_of_reference_uid in summary.frame_of_reference_uids


def _structure_set_info(summary: RtStructSummary, cts: list[CtVolume]) -> StructureSetInfo:
    ct = next((c for c in cts if _belongs(summary, c)), None)
    try:
        ds = read_rtstruct_file(summary.path)
        if ct is not None:
            structure_set = read_structure_set(ds, ct, path=summary.path)
            rois = tuple(
                RoiInfo(
                    s.roi_number,
                    s.name,
                    s.interpreted_type,
                    s.colour_rgb,
                    s.mask.voxel_count,
                    s.volume_cm3(ct.spacing_mm),
                )
                for s in structure_set.structures
            )
            warnings = structure_set.warnings
        else:
            parsed = parse_structure_set(ds, path=summary.path)
            rois = tuple(
                RoiInfo(r.number, r.name, r.interpreted_type, r.colour_rgb, None, None)
                for r in parsed.rois
            )
            warnings = (*parsed.warnings, "no CT series in the folder matches it")
    except DicomImportError as exc:
        return StructureSetInfo(
            summary.path, summary.sop_instance_uid, summary.label, "", (), (), error=exc.reason
        )
    return StructureSetInfo(
        path=summary.path,
        sop_instance_uid=summary.sop_instance_uid,
        label=summary.label,
        ct_series_uid=ct.series_instance_uid if ct is not None else "",
        rois=rois,
        warnings=tuple(warnings),
    )


def folder_info(folder: PathLike) -> FolderInfo:
    """Scan ``folder`` recursively and summarize its CT series and RT Structure Sets.

    Loads every CT series; keeps them all in memory while the structure sets are measured.

    Raises
    ------
    DicomImportError
        Only if ``folder`` is not a folder.
    """
    scan = scan_folder(folder)
    series_infos: list[SeriesInfo] = []
    cts: list[CtVolume] = []
    for series in scan.ct_series:
        try:
            ct = load_ct_series(scan, series_uid=series.series_instance_uid, allow_damaged=True)
        except DicomImportError as exc:
            series_infos.append(_series_info(series, None, f"{exc.path}: {exc.reason}"))
            continue
        cts.append(ct)
        series_infos.append(_series_info(series, ct, ""))
    sets = tuple(_structure_set_info(s, cts) for s in scan.structure_sets)
    return FolderInfo(
        folder=scan.folder,
        series=tuple(series_infos),
        structure_sets=sets,
        skipped=scan.skipped,
        damaged=scan.damaged,
    )


def _fmt3(values: tuple[float, float, float], digits: int) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def format_folder_info(info: FolderInfo) -> str:
    """Render a :class:`FolderInfo` as plain text (one item per line, no trailing newline)."""
    lines = [f"Folder: {info.folder}", f"CT series: {len(info.series)}"]
    for n, s in enumerate(info.series, start=1):
        lines.append(f"  [{n}] {s.series_instance_uid}")
        lines.append(
            f"      modality {s.modality}, description {s.description or '-'!r}, "
            f"patient position {s.patient_position or '?'}, {s.file_count} slices"
        )
        lines.append(f"      patient {s.patient or '-'}, study {s.study or '-'}")
        if s.error:
            lines.append(f"      NOT LOADABLE: {s.error}")
            continue
        if s.dimensions and s.spacing_mm and s.origin_mm and s.hu_range:
            nx, ny, nz = s.dimensions
            lines.append(
                f"      {nx} x {ny} x {nz} voxels (x, y, z), spacing {_fmt3(s.spacing_mm, 3)} mm, "
                f"origin ({_fmt3(s.origin_mm, 2)}) mm LPS"
            )
            lines.append(f"      HU range {s.hu_range[0]:g} .. {s.hu_range[1]:g}")
    lines.append(f"RT Structure Sets: {len(info.structure_sets)}")
    for n, ss in enumerate(info.structure_sets, start=1):
        lines.append(f"  [{n}] {ss.label or '(no label)'}  {ss.sop_instance_uid}  {ss.path}")
        if ss.error:
            lines.append(f"      NOT LOADABLE: {ss.error}")
            continue
        lines.append(f"      on CT series {ss.ct_series_uid or '(none found)'}")
        lines.append(
            f"      {'ROI':>4}  {'name':<20} {'type':<12} {'colour':<12} {'voxels':>9} "
            f"{'volume cm3':>11}"
        )
        for r in ss.rois:
            colour = ",".join(str(c) for c in r.colour_rgb) if r.colour_rgb else "-"
            voxels = "-" if r.voxel_count is None else str(r.voxel_count)
            volume = "-" if r.volume_cm3 is None else f"{r.volume_cm3:.2f}"
            lines.append(
                f"      {r.number:>4}  {r.name:<20} {r.interpreted_type or '-':<12} "
                f"{colour:<12} {voxels:>9} {volume:>11}"
            )
        lines.extend(f"      warning: {w}" for w in ss.warnings)
    if info.skipped:
        lines.append(f"Skipped files: {len(info.skipped)}")
        reasons: dict[str, int] = {}
        for item in info.skipped:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        lines.extend(f"  {count} x {reason}" for reason, count in reasons.items())
    if info.damaged:
        lines.append(f"Damaged DICOM files: {len(info.damaged)}")
        lines.extend(f"  {item.path}: {item.reason}" for item in info.damaged)
    return "\n".join(lines)


def describe_folder(folder: PathLike) -> str:
    """The text summary of ``folder``: ``format_folder_info(folder_info(folder))``."""
    return format_folder_info(folder_info(folder))
