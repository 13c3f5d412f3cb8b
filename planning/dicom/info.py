"""A printable summary of the DICOM data in a folder (what ``ionplan info DIR`` shows).

Every CT series is loaded (one at a time) to report its geometry and HU range, and every RT
Structure Set is rasterized on the CT it belongs to for the voxel counts and volumes. Every RT
Ion Plan and RT Dose is read with its importer (:func:`~planning.dicom.rtplan_import.
read_rt_ion_plan`, :func:`~planning.dicom.rtdose_import.read_rt_dose`), so the summary applies
the same checks as an import: beams, layers, spots and particles of a plan; type, grid and dose
statistics of a dose. A series, structure set, plan or dose that fails to import is listed with
its error instead: the summary itself never fails on bad files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from planning.dicom._values import PathLike, get_int, get_sequence, get_str, read_dicom_file
from planning.dicom.ct_import import load_ct_series
from planning.dicom.errors import DicomImportError
from planning.dicom.rtdose_import import DoseVolume, read_rt_dose
from planning.dicom.rtplan_import import beams_in_mu, read_rt_ion_plan
from planning.dicom.rtstruct_import import (
    parse_structure_set,
    read_rtstruct_file,
    read_structure_set,
)
from planning.dicom.scan import (
    CtSeriesFiles,
    RtStructSummary,
    SkippedFile,
    patient_label,
    scan_folder,
)
from planning.monitor_calibration import CONSTANT, MonitorCalibration
from planning.patient import CtVolume
from planning.plan import BeamPlan, Prescription, fractions_text

logger = logging.getLogger(__name__)

#: Given to the plan importer so that a plan without a prescription is still summarized.
_NO_PRESCRIPTION = Prescription(target="(none)", total_dose_gy_rbe=1.0, n_fractions=1)
#: The importer's warning when the fallback prescription was used (not shown: said otherwise).
_FALLBACK_WARNING = "the plan states no target prescription"


@dataclass(frozen=True)
class SeriesInfo:
    """Summary of one CT series; geometry fields are None when it could not be loaded.

    ``dimensions`` is ``(nx, ny, nz)`` voxels, ``spacing_mm`` ``(sx, sy, sz)``, ``origin_mm``
    the LPS ``(x, y, z)`` of voxel (0, 0, 0) after reorientation, ``hu_range`` (min, max);
    ``warnings`` what its import warned of (:attr:`planning.patient.CtVolume.warnings`).
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
    warnings: tuple[str, ...] = ()


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
    patient: str = ""


@dataclass(frozen=True)
class BeamInfo:
    """One treatment beam of an RT Ion Plan.

    Attributes
    ----------
    name : str
        Beam name.
    gantry_deg, couch_deg : float
        Gantry and patient support angles, degrees.
    isocenter_mm : tuple of float
        LPS ``(x, y, z)`` of the isocentre, mm.
    n_layers : int
        Number of energy layers.
    energy_range_mev_u : tuple of float or None
        Lowest and highest layer energy, MeV/u (None without spots).
    n_spots : int
        Number of spots.
    particles_per_fraction : float
        Primary particles of all spots per fraction (MU for a plan in MU, ``meterset_unit``).
    range_shifter_wet_mm : float
        Water-equivalent thickness of the range shifter, mm (0: none).
    meterset_unit : str
        ``"particles"``, or ``"MU"`` for a plan whose metersets are monitor units.
    """

    name: str
    gantry_deg: float
    couch_deg: float
    isocenter_mm: tuple[float, float, float]
    n_layers: int
    energy_range_mev_u: tuple[float, float] | None
    n_spots: int
    particles_per_fraction: float
    range_shifter_wet_mm: float
    meterset_unit: str = "particles"


@dataclass(frozen=True)
class PlanInfo:
    """Summary of one RT Ion Plan; only ``path`` and ``error`` are set when it is unreadable.

    Attributes
    ----------
    path : str
        The file.
    label : str
        The plan's name: RT Plan Name, else RT Plan Label.
    sop_instance_uid : str
        Its SOP Instance UID.
    n_fractions : int or None
        Number of fractions planned.
    prescription_found : bool
        Whether the plan states a target prescription dose.
    target : str
        Prescription target (``""`` when not found).
    total_dose_gy_rbe : float or None
        Prescribed total dose, Gy(RBE) (None when not found).
    rbe_model : str
        RBE model named in the RT Plan Description (``""`` if none).
    beams : tuple of BeamInfo
        The imported treatment beams.
    warnings : tuple of str
        The importer's warnings (skipped beams, ignored devices, ...).
    error : str
        Why the plan could not be imported (``""`` if it could).
    patient : str
        Patient Name and ID (``""`` when unreadable).
    """

    path: str
    label: str = ""
    sop_instance_uid: str = ""
    n_fractions: int | None = None
    prescription_found: bool = False
    target: str = ""
    total_dose_gy_rbe: float | None = None
    rbe_model: str = ""
    beams: tuple[BeamInfo, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str = ""
    patient: str = ""


@dataclass(frozen=True)
class DoseInfo:
    """Summary of one RT Dose; only ``path`` and ``error`` are set when it is unreadable.

    Attributes
    ----------
    path : str
        The file.
    sop_instance_uid : str
        Its SOP Instance UID.
    dose_type : str
        PHYSICAL, EFFECTIVE or ERROR.
    units : str
        GY or RELATIVE.
    summation_type : str
        Dose Summation Type (PLAN, FRACTION, BEAM, ...).
    comment : str
        Dose Comment.
    shape_xyz : tuple of int or None
        Grid size ``(nx, ny, nz)`` in voxels.
    spacing_mm : tuple of float or None
        Voxel spacing ``(sx, sy, sz)``, mm.
    origin_mm : tuple of float or None
        LPS ``(x, y, z)`` of the centre of voxel (0, 0, 0), mm.
    max_dose : float or None
        Largest voxel dose, in ``units``.
    mean_dose : float or None
        Mean dose over the voxels with dose > 0 (None if there are none).
    voxels_with_dose : int
        Number of voxels with dose > 0.
    referenced_plan_uid : str
        SOP Instance UID of the plan it references (``""`` if none).
    error : str
        Why the dose could not be imported (``""`` if it could).
    patient : str
        Patient Name and ID (``""`` when unreadable).
    """

    path: str
    sop_instance_uid: str = ""
    dose_type: str = ""
    units: str = ""
    summation_type: str = ""
    comment: str = ""
    shape_xyz: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    origin_mm: tuple[float, float, float] | None = None
    max_dose: float | None = None
    mean_dose: float | None = None
    voxels_with_dose: int = 0
    referenced_plan_uid: str = ""
    error: str = ""
    patient: str = ""


@dataclass(frozen=True)
class FolderInfo:
    """Everything :func:`folder_info` found."""

    folder: str
    series: tuple[SeriesInfo, ...]
    structure_sets: tuple[StructureSetInfo, ...]
    skipped: tuple[SkippedFile, ...]
    damaged: tuple[SkippedFile, ...]
    plans: tuple[PlanInfo, ...] = ()
    doses: tuple[DoseInfo, ...] = ()


def _patient(ds: Dataset, path: str) -> str:
    """Patient Name and ID of a dataset (:func:`~planning.dicom.scan.patient_label`)."""
    return patient_label(get_str(ds, "PatientName", path), get_str(ds, "PatientID", path))


def _series_info(series: CtSeriesFiles, ct: CtVolume | None, error: str) -> SeriesInfo:
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
        patient=series.patient,
        study=study,
        dimensions=dimensions,
        spacing_mm=spacing,
        origin_mm=origin,
        hu_range=hu_range,
        error=error,
        warnings=() if ct is None else ct.warnings,
    )


def _belongs(summary: RtStructSummary, ct: CtVolume) -> bool:
    if summary.referenced_series_uids:
        return ct.series_instance_uid in summary.referenced_series_uids
    return ct.frame_of_reference_uid in summary.frame_of_reference_uids


def _structure_set_info(summary: RtStructSummary, cts: list[CtVolume],
                        unloadable: tuple[str, ...] = ()) -> StructureSetInfo:
    """``unloadable``: the series UIDs of the folder's CT series that could not be loaded."""
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
            damaged = [uid for uid in summary.referenced_series_uids if uid in unloadable]
            warnings = (*parsed.warnings,
                        f"its CT series {damaged[0]} is in the folder but could not be loaded "
                        "(see the series above)" if damaged
                        else "no CT series in the folder matches it")
    except DicomImportError as exc:
        return StructureSetInfo(summary.path, summary.sop_instance_uid, summary.label, "", (),
                                (), error=exc.reason, patient=summary.patient)
    return StructureSetInfo(
        path=summary.path,
        sop_instance_uid=summary.sop_instance_uid,
        label=summary.label,
        ct_series_uid=ct.series_instance_uid if ct is not None else "",
        rois=rois,
        warnings=tuple(warnings),
        patient=summary.patient,
    )


def _beam_info(beam_plan: BeamPlan, meterset_unit: str = "particles") -> BeamInfo:
    spots = beam_plan.spots
    energies = np.asarray(spots.energy_mev_u, dtype=np.float64)
    energy_range = (float(energies.min()), float(energies.max())) if energies.size else None
    beam = beam_plan.beam
    return BeamInfo(
        name=beam.name or beam.label,
        gantry_deg=beam.gantry_deg,
        couch_deg=beam.couch_deg,
        isocenter_mm=beam.isocenter_mm,
        n_layers=int(np.unique(np.asarray(spots.layer)).size),
        energy_range_mev_u=energy_range,
        n_spots=spots.n_spots,
        particles_per_fraction=float(np.sum(beam_plan.weights)) * 1e6,
        range_shifter_wet_mm=beam_plan.range_shifter_wet_mm,
        meterset_unit=meterset_unit,
    )


def _planned_fractions(ds: Dataset, path: str) -> int:
    """Number of Fractions Planned of the (only) fraction group; the importer checked it."""
    group = get_sequence(ds, "FractionGroupSequence", path)[0]
    return get_int(group, "NumberOfFractionsPlanned", path)


#: Reads a plan in MU as MU (one "particle" per MU) to summarise it.
_PER_MU = MonitorCalibration(CONSTANT, (), (1.0,), "info: metersets shown in MU")
#: What info says of a plan in MU.
_MU_NOTE = ("metersets in MU (shown in MU): recalculating it needs the machine's monitor "
            "calibration (--particles-per-mu, docs/dicom.md 'Metersets in MU')")


def _plan_info(path: str) -> PlanInfo:
    """Import the RT Ion Plan at ``path`` (all the importer's checks) and summarize it."""
    try:
        ds = read_dicom_file(path, "cannot read the RT Ion Plan")
        in_mu = beams_in_mu(ds)
        # A plan in MU is summarised in MU: one "particle" per MU, said so below.
        imported = read_rt_ion_plan(ds, path=path, fallback_prescription=_NO_PRESCRIPTION,
                                    monitor_calibration=_PER_MU if in_mu else None)
        n_fractions = _planned_fractions(ds, path)
        patient = _patient(ds, path)
    except DicomImportError as exc:
        return PlanInfo(path=path, error=exc.reason)
    plan, found = imported.plan, imported.prescription_found
    return PlanInfo(
        path=path,
        label=plan.label,
        sop_instance_uid=imported.sop_instance_uid,
        n_fractions=n_fractions,
        prescription_found=found,
        target=plan.prescription.target if found else "",
        total_dose_gy_rbe=plan.prescription.total_dose_gy_rbe if found else None,
        rbe_model=plan.rbe_label or "",
        beams=tuple(_beam_info(b, "MU" if in_mu else "particles") for b in plan.beams),
        warnings=(*(w for w in imported.warnings if not w.startswith(_FALLBACK_WARNING)
                    and "metersets in MU converted" not in w),
                  *((_MU_NOTE,) if in_mu else ())),
        patient=patient,
    )


def _dose_stats(dose: DoseVolume) -> tuple[float | None, float | None, int]:
    """(max, mean over voxels > 0, number of voxels > 0) of a dose cube."""
    values = np.asarray(dose.dose_gy, dtype=np.float64)
    positive = values[values > 0]
    maximum = float(values.max()) if values.size else None
    mean = float(positive.mean()) if positive.size else None
    return maximum, mean, int(positive.size)


def _dose_info(path: str) -> DoseInfo:
    """Import the RT Dose at ``path`` (all the importer's checks) and summarize it."""
    try:
        ds = read_dicom_file(path, "cannot read the RT Dose")
        dose = read_rt_dose(ds, path=path)
        patient = _patient(ds, path)
    except DicomImportError as exc:
        return DoseInfo(path=path, error=exc.reason)
    nz, ny, nx = dose.grid.shape
    sz, sy, sx = dose.grid.spacing_mm
    maximum, mean, count = _dose_stats(dose)
    return DoseInfo(
        path=path,
        sop_instance_uid=dose.sop_instance_uid,
        dose_type=dose.dose_type,
        units=dose.units,
        summation_type=dose.summation_type,
        comment=dose.comment,
        shape_xyz=(nx, ny, nz),
        spacing_mm=(sx, sy, sz),
        origin_mm=dose.grid.origin_mm,
        max_dose=maximum,
        mean_dose=mean,
        voxels_with_dose=count,
        referenced_plan_uid=dose.referenced_plan_uid,
        patient=patient,
    )


def folder_info(folder: PathLike) -> FolderInfo:
    """Scan ``folder`` recursively and summarize its CT series, RT Structure Sets, RT Ion Plans
    and RT Doses.

    Loads every CT series; keeps them all in memory while the structure sets are measured. Plans
    and doses are imported one at a time.

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
    loaded = {ct.series_instance_uid for ct in cts}
    unloadable = tuple(s.series_instance_uid for s in scan.ct_series
                       if s.series_instance_uid not in loaded)
    sets = tuple(_structure_set_info(s, cts, unloadable) for s in scan.structure_sets)
    return FolderInfo(
        folder=scan.folder,
        series=tuple(series_infos),
        structure_sets=sets,
        skipped=scan.skipped,
        damaged=scan.damaged,
        plans=tuple(_plan_info(path) for path in scan.rt_ion_plans),
        doses=tuple(_dose_info(path) for path in scan.rt_doses),
    )


def _fmt3(values: tuple[float, float, float], digits: int) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def _format_series(series: tuple[SeriesInfo, ...]) -> list[str]:
    lines = [f"CT series: {len(series)}"]
    for n, s in enumerate(series, start=1):
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
        lines.extend(f"      warning: {w}" for w in s.warnings)
    return lines


def _format_structure_sets(sets: tuple[StructureSetInfo, ...]) -> list[str]:
    lines = [f"RT Structure Sets: {len(sets)}"]
    for n, ss in enumerate(sets, start=1):
        lines.append(f"  [{n}] {ss.label or '(no label)'}  {ss.sop_instance_uid}  {ss.path}")
        lines.append(f"      patient {ss.patient}")
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
    return lines


def _format_beam(n: int, b: BeamInfo) -> list[str]:
    if b.energy_range_mev_u is None:
        energies = "no energy"
    else:
        energies = f"{b.energy_range_mev_u[0]:.2f} .. {b.energy_range_mev_u[1]:.2f} MeV/u"
    shifter = (
        f"range shifter {b.range_shifter_wet_mm:.1f} mm WET"
        if b.range_shifter_wet_mm > 0
        else "no range shifter"
    )
    return [
        f"      beam {n} {b.name!r}: gantry {b.gantry_deg:g} deg, couch {b.couch_deg:g} deg, "
        f"isocentre ({_fmt3(b.isocenter_mm, 2)}) mm LPS",
        f"        {b.n_layers} energy layers {energies}, {b.n_spots} spots, "
        f"{b.particles_per_fraction:.4g} {b.meterset_unit} per fraction, {shifter}",
    ]


def _format_prescription(p: PlanInfo) -> str:
    if p.prescription_found and p.total_dose_gy_rbe is not None:
        rx = f"prescription {p.total_dose_gy_rbe:g} Gy(RBE) to {p.target!r}"
    else:
        rx = "prescription not found (the plan states no target prescription dose)"
    return f"      {fractions_text(p.n_fractions)}, {rx}"


def _format_plans(plans: tuple[PlanInfo, ...]) -> list[str]:
    lines = [f"RT Ion Plans: {len(plans)}"]
    for n, p in enumerate(plans, start=1):
        if p.error:
            lines.append(f"  [{n}] {p.path}")
            lines.append(f"      unreadable: {p.error}")
            continue
        lines.append(f"  [{n}] {p.label or '(no label)'}  {p.sop_instance_uid}  {p.path}")
        lines.append(f"      patient {p.patient}")
        lines.append(_format_prescription(p))
        if p.rbe_model:
            lines.append(f"      RBE model: {p.rbe_model}")
        for k, beam in enumerate(p.beams, start=1):
            lines.extend(_format_beam(k, beam))
        lines.extend(f"      warning: {w}" for w in p.warnings)
    return lines


def _dose_unit(d: DoseInfo) -> str:
    if d.units != "GY":
        return f"({d.units.lower()})"
    return "Gy(RBE)" if d.dose_type == "EFFECTIVE" else "Gy"


def _plan_reference(d: DoseInfo, plans: tuple[PlanInfo, ...]) -> str:
    if not d.referenced_plan_uid:
        return "references no plan"
    label = next((p.label for p in plans if p.sop_instance_uid == d.referenced_plan_uid), None)
    where = "not in this folder" if label is None else f"plan {label!r} in this folder"
    return f"referenced plan {d.referenced_plan_uid} ({where})"


def _format_dose(d: DoseInfo, plans: tuple[PlanInfo, ...]) -> list[str]:
    lines = [
        f"      patient {d.patient}",
        f"      dose type {d.dose_type}, units {d.units}, summation {d.summation_type}, "
        f"comment {d.comment or '-'!r}"
    ]
    if d.shape_xyz and d.spacing_mm and d.origin_mm:
        nx, ny, nz = d.shape_xyz
        lines.append(
            f"      grid {nx} x {ny} x {nz} voxels (x, y, z), spacing {_fmt3(d.spacing_mm, 3)} "
            f"mm, origin ({_fmt3(d.origin_mm, 2)}) mm LPS"
        )
    unit = _dose_unit(d)
    maximum = "-" if d.max_dose is None else f"{d.max_dose:.4g} {unit}"
    mean = "-" if d.mean_dose is None else f"{d.mean_dose:.4g} {unit}"
    lines.append(f"      max {maximum}, mean {mean} over the {d.voxels_with_dose} voxels > 0")
    lines.append(f"      {_plan_reference(d, plans)}")
    return lines


def _format_doses(doses: tuple[DoseInfo, ...], plans: tuple[PlanInfo, ...]) -> list[str]:
    lines = [f"RT Doses: {len(doses)}"]
    for n, d in enumerate(doses, start=1):
        if d.error:
            lines.extend((f"  [{n}] {d.path}", f"      unreadable: {d.error}"))
            continue
        lines.append(f"  [{n}] {d.sop_instance_uid}  {d.path}")
        lines.extend(_format_dose(d, plans))
    return lines


def _format_left_out(info: FolderInfo) -> list[str]:
    lines = []
    if info.skipped:
        lines.append(f"Skipped files: {len(info.skipped)}")
        reasons: dict[str, int] = {}
        for item in info.skipped:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        lines.extend(f"  {count} x {reason}" for reason, count in reasons.items())
    if info.damaged:
        lines.append(f"Damaged DICOM files: {len(info.damaged)}")
        lines.extend(f"  {item.path}: {item.reason}" for item in info.damaged)
    return lines


def format_folder_info(info: FolderInfo) -> str:
    """Render a :class:`FolderInfo` as plain text (one item per line, no trailing newline).

    Parameters
    ----------
    info : FolderInfo
        What :func:`folder_info` found.

    Returns
    -------
    str
        The CT series, RT Structure Sets, RT Ion Plans, RT Doses, then the skipped and damaged
        files.
    """
    lines = [f"Folder: {info.folder}"]
    lines += _format_series(info.series)
    lines += _format_structure_sets(info.structure_sets)
    lines += _format_plans(info.plans)
    lines += _format_doses(info.doses, info.plans)
    lines += _format_left_out(info)
    return "\n".join(lines)


def describe_folder(folder: PathLike) -> str:
    """The text summary of ``folder``: ``format_folder_info(folder_info(folder))``."""
    return format_folder_info(folder_info(folder))
