"""One Ion Beam Sequence item of an RT Ion Plan -> :class:`planning.plan.BeamPlan`.

The rules (what is accepted, refused or ignored) are listed in
:mod:`planning.dicom.rtplan_import`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from planning.beams import PRIMARIES_PER_WEIGHT_UNIT, Beam, SpotMap
from planning.dicom._rt_values import get_float_list, get_optional_float, is_present
from planning.dicom._spot_lattice import LatticeError, fit_lattice
from planning.dicom._values import PathLike, get_floats, get_int, get_sequence, get_str
from planning.dicom.errors import DicomImportError
from planning.errors import InputError, PlanningError
from planning.monitor_calibration import CONSTANT, MonitorCalibration
from planning.plan import BeamPlan

#: Relative mismatch allowed between the spot weights' sum and the Final Cumulative Meterset.
METERSET_TOLERANCE = 1e-3
#: Angles (degrees) and positions (mm) closer than this count as unchanged between points.
ANGLE_TOLERANCE_DEG = 1e-3
POSITION_TOLERANCE_MM = 1e-3
#: Nominal Beam Energies (MeV/u) closer than this count as one energy.
ENERGY_TOLERANCE_MEV_U = 1e-3
#: Beam modifiers IonPlan cannot model: (count attribute, sequence attribute, what it is).
_REFUSED_DEVICES = (
    ("NumberOfWedges", "IonWedgeSequence", "wedge"),
    ("NumberOfCompensators", "IonRangeCompensatorSequence", "range compensator"),
    ("NumberOfBoli", "ReferencedBolusSequence", "bolus"),
    ("NumberOfBlocks", "IonBlockSequence", "block (aperture)"),
    ("NumberOfRangeModulators", "RangeModulatorSequence", "range modulator (ridge filter)"),
)
#: Angles IonPlan's geometry does not model, so only 0 is accepted (a Table Top Eccentric
#: Angle turns the patient about another vertical axis than the couch's).
_FLAT_ANGLES = ("GantryPitchAngle", "TableTopPitchAngle", "TableTopRollAngle",
                "TableTopEccentricAngle")


@dataclass(frozen=True)
class BeamReadSettings:
    """Choices of the caller that apply to every beam."""

    ion_z: int
    ion_a: int
    monitor_calibration: MonitorCalibration | None
    lattice_tolerance_mm: float
    patient_position: str = "HFS"


@dataclass(frozen=True, eq=False)
class BeamRead:
    """A beam read from the plan."""

    beam_plan: BeamPlan
    sad_mm: tuple[float, float] | None
    machine_name: str
    warnings: tuple[str, ...]
    #: (energy MeV/u, FWHM x mm, FWHM y mm) of each energy layer whose control point states
    #: a Scanning Spot Size (or carries one over from an earlier control point).
    spot_fwhm_mm: tuple[tuple[float, float, float], ...] = ()


def _check_particle(item: Dataset, path: str, beam: str, s: BeamReadSettings) -> None:
    kind = get_str(item, "RadiationType", path).upper()
    wanted = f"ION with Z = {s.ion_z}, A = {s.ion_a} (the machine's particle)"
    if kind != "ION":
        raise DicomImportError(path, f"beam {beam!r}: radiation type {kind or '(missing)'}; "
                                     f"IonPlan plans {wanted}")
    z = get_int(item, "RadiationAtomicNumber", path, default=-1)
    a = get_int(item, "RadiationMassNumber", path, default=-1)
    if (z, a) != (s.ion_z, s.ion_a):
        raise DicomImportError(path, f"beam {beam!r}: ion with atomic number {z} and mass "
                                     f"number {a}; IonPlan plans {wanted}")


def _check_devices(item: Dataset, path: str, beam: str, warnings: list[str]) -> None:
    mode = get_str(item, "ScanMode", path).upper()
    if mode != "MODULATED":
        raise DicomImportError(path, f"beam {beam!r}: Scan Mode {mode or '(missing)'}; only "
                                     "MODULATED (spot scanning) beams can be imported")
    scan = get_str(item, "ModulatedScanModeType", path).upper()
    if scan and scan != "STATIONARY":
        warnings.append(f"beam {beam!r}: Modulated Scan Mode Type {scan} (the beam stays on "
                        "while it moves): each position's meterset is computed as a spot at "
                        "that position, an approximation of the scanned line")
    for count_kw, seq_kw, what in _REFUSED_DEVICES:
        count = get_int(item, count_kw, path, default=0)
        if count or get_sequence(item, seq_kw, path):
            raise DicomImportError(path, f"beam {beam!r} has {max(count, 1)} {what}(s), which "
                                         "IonPlan cannot model; remove it or plan it anew")
    if get_int(item, "NumberOfLateralSpreadingDevices", path, default=0) or get_sequence(
        item, "LateralSpreadingDeviceSequence", path
    ):
        warnings.append(f"beam {beam!r}: lateral spreading device(s) ignored (assumed part of "
                        "the machine's beam data)")


def _particles_per_unit(item: Dataset, path: str, beam: str, s: BeamReadSettings,
                        warnings: list[str]) -> MonitorCalibration | None:
    """How the beam's Primary Dosimeter Unit becomes particles: None for NP (particles
    themselves), the caller's monitor calibration for MU (its use noted in ``warnings``)."""
    unit = get_str(item, "PrimaryDosimeterUnit", path).upper()
    if unit == "NP":
        return None
    if unit == "MU":
        calibration = s.monitor_calibration
        if calibration is None:
            raise DicomImportError(path, f"beam {beam!r}: meterset in MU; give the machine's "
                                         "monitor calibration (particles per MU, e.g. "
                                         "2.1e5@290 or a CSV table over energy: "
                                         "--particles-per-mu of recalc and robust, "
                                         "particles_per_mu of a batch job) to convert it to "
                                         "particles")
        note = (" (an approximation: a monitor chamber's particles per MU fall with energy; "
                "give '<particles per MU>@<energy MeV/u>' or a table)"
                if calibration.kind == CONSTANT else "")
        warnings.append(f"beam {beam!r}: metersets in MU converted with "
                        f"{calibration.describe()}{note}")
        return calibration
    raise DicomImportError(path, f"beam {beam!r}: Primary Dosimeter Unit {unit or '(missing)'}; "
                                 "only NP (particles) and MU are supported")


def _shifter_numbers(item: Dataset, path: str, beam: str) -> set[int]:
    """Numbers of the beam's range shifters (checked against Number of Range Shifters)."""
    count = get_int(item, "NumberOfRangeShifters", path, default=0, minimum=0)
    numbers = {get_int(rs, "RangeShifterNumber", path)
               for rs in get_sequence(item, "RangeShifterSequence", path)}
    if count != len(numbers):
        raise DicomImportError(path, f"beam {beam!r}: Number of Range Shifters is {count} but "
                                     f"the Range Shifter Sequence lists {len(numbers)}")
    return numbers


def _shifter_wet(cp: Dataset, path: str, beam: str, state: dict[int, float]) -> None:
    """Update the WET of each range shifter from a control point's settings."""
    for setting in get_sequence(cp, "RangeShifterSettingsSequence", path):
        number = get_int(setting, "ReferencedRangeShifterNumber", path)
        wet = get_optional_float(setting, "RangeShifterWaterEquivalentThickness", path)
        text = get_str(setting, "RangeShifterSetting", path).upper()
        if text == "OUT":
            wet = 0.0
        if wet is None:
            raise DicomImportError(path, f"beam {beam!r}: range shifter {number} has no Range "
                                         "Shifter Water Equivalent Thickness; IonPlan needs it")
        if wet < 0:
            raise DicomImportError(path, f"beam {beam!r}: negative range shifter WET {wet} mm")
        state[number] = wet


def _same(first: Dataset, cp: Dataset, keyword: str, path: str, tol: float) -> None:
    if not is_present(cp, keyword, path):
        return
    count = 3 if keyword == "IsocenterPosition" else 1
    a = np.array(get_floats(first, keyword, path, count))
    b = np.array(get_floats(cp, keyword, path, count))
    if keyword.endswith("Angle"):
        diff = np.abs((b - a + 180.0) % 360.0 - 180.0)
    else:
        diff = np.abs(b - a)
    if np.any(diff > tol):
        raise DicomImportError(path, f"{keyword} changes from {a.tolist()} to {b.tolist()} "
                                     "between control points; arcs and moving couch or isocentre "
                                     "are not supported")


def _geometry(first: Dataset, path: str, beam: str, patient_position: str) -> Beam:
    for keyword in ("GantryAngle", "PatientSupportAngle", "IsocenterPosition"):
        if not is_present(first, keyword, path):
            raise DicomImportError(path, f"beam {beam!r}: {keyword} missing in the first "
                                         "control point")
    for keyword in _FLAT_ANGLES:
        angle = get_optional_float(first, keyword, path)
        if angle is not None and abs((angle + 180.0) % 360.0 - 180.0) > ANGLE_TOLERANCE_DEG:
            raise DicomImportError(path, f"beam {beam!r}: {keyword} {angle} deg; only 0 is "
                                         "supported")
    gantry = get_floats(first, "GantryAngle", path, 1)[0] % 360.0
    couch = (get_floats(first, "PatientSupportAngle", path, 1)[0] + 180.0) % 360.0 - 180.0
    x, y, z = get_floats(first, "IsocenterPosition", path, 3)
    return Beam(isocenter_mm=(x, y, z), gantry_deg=gantry + 0.0,
                couch_deg=180.0 if couch == -180.0 else couch + 0.0, name=beam,
                patient_position=patient_position)


def _spots(cp: Dataset, path: str, where: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(n, 2) positions and (n,) weights of one control point."""
    n = get_int(cp, "NumberOfScanSpotPositions", path, minimum=0, maximum=1 << 24)
    positions = get_float_list(cp, "ScanSpotPositionMap", path, where)
    weights = get_float_list(cp, "ScanSpotMetersetWeights", path, where)
    if positions.size != 2 * n or weights.size != n:
        raise DicomImportError(path, f"{where}: Number of Scan Spot Positions is {n} but the map "
                                     f"has {positions.size} values and there are {weights.size} "
                                     "weights")
    if np.any(weights < 0):
        raise DicomImportError(path, f"{where}: negative spot meterset weight")
    return positions.reshape(n, 2), weights


def _check_cumulative(points: list[Dataset], weights: list[NDArray[np.float64]],
                      final: float | None, path: str, beam: str, warnings: list[str]) -> None:
    """Check the Cumulative Meterset Weights (300A,0134) against the spot weights.

    PS3.3 (RT Ion Control Point, Scan Spot Meterset Weights): the weights of control point
    ``i`` sum to the cumulative weight of ``i + 1`` minus that of ``i``; the cumulative weight
    starts at 0, does not decrease and ends at the Final Cumulative Meterset Weight. The
    attribute is Type 2: with an empty value in any control point the beam is not checked,
    with a warning. Differences up to METERSET_TOLERANCE of the beam's total are accepted.
    """
    values = [get_optional_float(cp, "CumulativeMetersetWeight", path) for cp in points]
    empty = [index for index, value in enumerate(values) if value is None]
    if empty:
        listed = ", ".join(str(i) for i in empty[:10]) + (", ..." if len(empty) > 10 else "")
        warnings.append(f"beam {beam!r}: Cumulative Meterset Weight empty at control point(s) "
                        f"{listed}; the spot weights are not checked against the cumulative "
                        "weights")
        return
    cumulative = [float(v) for v in values if v is not None]
    sums = [float(w.sum()) for w in weights]
    scale = final if final is not None and final > 0 else float(sum(sums))
    tolerance = METERSET_TOLERANCE * scale
    if abs(cumulative[0]) > tolerance:
        raise DicomImportError(path, f"beam {beam!r}, control point 0: Cumulative Meterset "
                                     f"Weight {cumulative[0]:.6g}; it must be 0 at the first "
                                     "control point")
    for index in range(1, len(cumulative)):
        before, now = cumulative[index - 1], cumulative[index]
        if now < before - tolerance:
            raise DicomImportError(path, f"beam {beam!r}, control point {index}: Cumulative "
                                         f"Meterset Weight {now:.6g} is below the "
                                         f"{before:.6g} of control point {index - 1}; it must "
                                         "not decrease")
        if abs(now - before - sums[index - 1]) > tolerance:
            raise DicomImportError(path, f"beam {beam!r}, control point {index - 1}: the spot "
                                         f"meterset weights sum to {sums[index - 1]:.6g} but "
                                         "the Cumulative Meterset Weight rises by "
                                         f"{now - before:.6g} to control point {index}; the "
                                         "weights of a control point are delivered between it "
                                         "and the next")
    if final is not None and abs(cumulative[-1] - final) > tolerance:
        raise DicomImportError(path, f"beam {beam!r}, control point {len(cumulative) - 1}: "
                                     f"Cumulative Meterset Weight {cumulative[-1]:.6g} differs "
                                     f"from the Final Cumulative Meterset Weight {final:.6g}")


def _check_pairs(energies: list[float | None], delivering: list[int], path: str,
                 beam: str) -> None:
    """Refuse an energy change between a control point with spot weights and the next: its
    spots are delivered between the two, at one energy."""
    for index in delivering:
        if index + 1 >= len(energies):
            continue
        before, after = energies[index], energies[index + 1]
        if (before is not None and after is not None
                and abs(after - before) > ENERGY_TOLERANCE_MEV_U):
            raise DicomImportError(path, f"beam {beam!r}, control point {index}: Nominal Beam "
                                         f"Energy changes from {before:g} to {after:g} MeV/u at "
                                         f"control point {index + 1}, but the spots of control "
                                         f"point {index} are delivered between it and control "
                                         f"point {index + 1}, at one energy")


def _spot_size(cp: Dataset, path: str, label: str, warnings: list[str]
               ) -> tuple[float, float] | None:
    """The control point's Scanning Spot Size (FWHM in air at the isocentre, IEC GANTRY X and
    Y, mm), None when it states none; one that is not two positive widths is a warning."""
    if not is_present(cp, "ScanningSpotSize", path):
        return None
    size = get_float_list(cp, "ScanningSpotSize", path, label)
    if size.size != 2 or not np.all(size > 0):
        warnings.append(f"{label}: Scanning Spot Size {size.tolist()} is not two positive "
                        "widths (mm): not compared with the beam model's")
        return None
    return float(size[0]), float(size[1])


def read_beam(item: Dataset, path: PathLike, name: str, beam_meterset: float,
              settings: BeamReadSettings) -> BeamRead:
    """Read one beam (see :mod:`planning.dicom.rtplan_import` for the rules).

    Parameters
    ----------
    item : Dataset
        The Ion Beam Sequence item.
    path : str or os.PathLike
        File name for messages.
    name : str
        Beam name, for messages and the :class:`Beam`.
    beam_meterset : float
        Beam Meterset of the beam in the fraction group (Primary Dosimeter Unit per fraction).
    settings : BeamReadSettings
        Particle, MU calibration and lattice tolerance.

    Raises
    ------
    DicomImportError
        Any refused or inconsistent content.
    """
    where = str(path)
    warnings: list[str] = []
    _check_particle(item, where, name, settings)
    _check_devices(item, where, name, warnings)
    calibration = _particles_per_unit(item, where, name, settings, warnings)
    points = get_sequence(item, "IonControlPointSequence", where)
    if not points:
        raise DicomImportError(where, f"beam {name!r} has no control points")
    stated = get_int(item, "NumberOfControlPoints", where, default=len(points))
    if stated != len(points):
        raise DicomImportError(where, f"beam {name!r}: Number of Control Points is {stated} but "
                                      f"the sequence has {len(points)}")
    first = points[0]
    beam = _geometry(first, where, name, settings.patient_position)
    shifter_numbers = _shifter_numbers(item, where, name)
    shifters: dict[int, float] = {}
    wet_mm: float | None = None
    energy: float | None = None
    layers: list[tuple[float, NDArray[np.float64], NDArray[np.float64]]] = []
    point_weights: list[NDArray[np.float64]] = []
    point_energies: list[float | None] = []  # stated or carried over from the point before
    spot_size: tuple[float, float] | None = None  # likewise
    spot_sizes: list[tuple[float, float, float]] = []
    delivering: list[int] = []  # control points with a non-zero spot weight
    for index, cp in enumerate(points):
        label = f"beam {name!r}, control point {index}"
        for keyword in ("GantryAngle", "PatientSupportAngle"):
            _same(first, cp, keyword, where, ANGLE_TOLERANCE_DEG)
        _same(first, cp, "IsocenterPosition", where, POSITION_TOLERANCE_MM)
        _shifter_wet(cp, where, name, shifters)
        if index == 0 and set(shifters) != shifter_numbers:
            raise DicomImportError(where, f"beam {name!r}: the first control point sets range "
                                          f"shifters {sorted(shifters)}, the beam has "
                                          f"{sorted(shifter_numbers)}; each needs its setting "
                                          "and water equivalent thickness")
        stated_energy = get_optional_float(cp, "NominalBeamEnergy", where)
        energy = stated_energy if stated_energy is not None else energy
        point_energies.append(energy)
        spot_size = _spot_size(cp, where, label, warnings) or spot_size
        positions, weights = _spots(cp, where, label)
        point_weights.append(weights)
        if weights.size == 0 or not np.any(weights > 0):
            continue
        if energy is None or energy <= 0:
            raise DicomImportError(where, f"{label}: no positive Nominal Beam Energy")
        total_wet = float(sum(shifters.values()))
        if wet_mm is not None and abs(total_wet - wet_mm) > POSITION_TOLERANCE_MM:
            raise DicomImportError(where, f"beam {name!r}: range shifter WET changes between "
                                          "layers; IonPlan needs one WET per beam")
        wet_mm = total_wet
        layers.append((energy, positions, weights))
        if spot_size is not None:
            spot_sizes.append((energy, *spot_size))
        delivering.append(index)
    if not layers:
        raise DicomImportError(where, f"beam {name!r} delivers no spot (all weights zero)")
    final = get_optional_float(item, "FinalCumulativeMetersetWeight", where)
    _check_cumulative(points, point_weights, final, where, name, warnings)
    _check_pairs(point_energies, delivering, where, name)
    if delivering[-1] == len(points) - 1:
        raise DicomImportError(where, f"beam {name!r}, control point {len(points) - 1}: the last "
                                      "control point has spot meterset weights; the weights of "
                                      "a control point are delivered between it and the next, "
                                      "so the last one's must be zero")
    total_weight = float(sum(w.sum() for _, _, w in layers))
    if final is None:
        final = total_weight
        warnings.append(f"beam {name!r}: Final Cumulative Meterset Weight missing, the sum of "
                        "the spot weights is used")
    if final <= 0 or abs(total_weight - final) > METERSET_TOLERANCE * final:
        raise DicomImportError(where, f"beam {name!r}: spot weights sum to {total_weight:.6g} "
                                      f"but Final Cumulative Meterset Weight is {final:.6g}")
    if beam_meterset <= 0:
        raise DicomImportError(where, f"beam {name!r}: Beam Meterset is {beam_meterset:g} in the "
                                      f"fraction group but control point {delivering[0]} has "
                                      "spot meterset weights; the beam would deliver no dose")
    try:  # weight units per spot meterset weight, per layer (MU: particles per MU by energy)
        per_weight = [beam_meterset / final / PRIMARIES_PER_WEIGHT_UNIT
                      * (1.0 if calibration is None else calibration.at(e))
                      for e, _, _ in layers]
    except InputError as exc:
        raise DicomImportError(where, f"beam {name!r}: {exc}") from exc
    energies = np.concatenate([np.full(w.size, e) for e, _, w in layers])
    layer_ids = np.concatenate([np.full(w.size, k, np.int64) for k, (_, _, w) in
                                enumerate(layers)])
    uv = np.concatenate([p for _, p, _ in layers])
    try:
        lattice = fit_lattice(uv[:, 0], uv[:, 1], tolerance_mm=settings.lattice_tolerance_mm)
    except LatticeError as exc:
        raise DicomImportError(where, f"beam {name!r}: {exc}") from exc
    du, dv = lattice.spacing_mm
    u0, v0 = lattice.origin_mm  # a lattice centred on the isocentre may be offset by d/2
    nodes = np.column_stack((layer_ids, np.rint((lattice.u_mm - u0) / du),
                             np.rint((lattice.v_mm - v0) / dv)))
    if np.unique(nodes, axis=0).shape[0] != nodes.shape[0]:
        raise DicomImportError(where, f"beam {name!r}: two spots of one control point lie at the "
                                      "same position (within the lattice tolerance)")
    sad_mm = None
    if is_present(item, "VirtualSourceAxisDistances", where):
        sad = get_float_list(item, "VirtualSourceAxisDistances", where, f"beam {name!r}")
        if sad.size == 2 and bool(np.all(np.isfinite(sad) & (sad > 0))):
            sad_mm = (float(sad[0]), float(sad[1]))
        else:  # was dropped without a word: the beam model's SAD went unchecked
            warnings.append(f"beam {name!r}: Virtual Source-Axis Distances "
                            f"{' / '.join(f'{v:g}' for v in sad)} mm are not two positive "
                            "distances (x, y): not compared with the beam model's")
    try:
        spots = SpotMap(energy_mev_u=energies, layer=layer_ids, u_mm=lattice.u_mm,
                        v_mm=lattice.v_mm, spacing_mm=lattice.spacing_mm,
                        lattice_origin_mm=lattice.origin_mm)
        weights = np.concatenate([w * scale for (_, _, w), scale in zip(layers, per_weight,
                                                                       strict=True)])
        beam_plan = BeamPlan(beam=beam, spots=spots, weights=weights,
                             range_shifter_wet_mm=wet_mm or 0.0)
    except PlanningError as exc:
        raise DicomImportError(where, f"beam {name!r}: {exc}") from exc
    return BeamRead(
        beam_plan=beam_plan,
        sad_mm=sad_mm,
        machine_name=get_str(item, "TreatmentMachineName", where),
        warnings=tuple(warnings),
        spot_fwhm_mm=tuple(spot_sizes),
    )
