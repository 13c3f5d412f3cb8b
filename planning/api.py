"""The facade that the CLI and the GUI both call.

Functions here take plain values (paths, numbers, callbacks) and return typed results or text;
they hold no state between calls.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from planning.atomic import atomic_write_text
from planning.errors import InputError, PlanningError
from planning.isodose import STANDARD_ISODOSE_PERCENT
from planning.machine import Machine, load_machine, pencil_beam_data, save_machine
from planning.plan import DEFAULT_PLAN_LABEL, checked_plan_name

if TYPE_CHECKING:
    from planning.compare.comparison import ComparisonResult
    from planning.compare.cross_model import CrossModelView
    from planning.document.identity import Identification
    from planning.dose_grid import DoseGrid
    from planning.dose_interpolation import VoxelLabels
    from planning.monitor_calibration import MonitorCalibration
    from planning.optimization import Objective
    from planning.patient import Patient
    from planning.plan_estimate import PlanEstimate
    from planning.planner import PlanRequest, PlanResult
    from planning.progress import CancelToken
    from planning.rbe import RbeModel, Tissue
    from planning.structure_dose import StructureDose

ProgressCallback = Callable[[float, str], None]


def get_machine(machine_path: str | os.PathLike[str] | None = None) -> Machine:
    """Load a machine file (IonPlan ``.npz`` or matRad ``.mat``), or the shipped generic one."""
    return load_machine(machine_path)


def depth_dose_table(
    energy_mev_u: float, machine_path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth dose of one pencil beam in water at any energy inside the machine's range.

    Returns
    -------
    depth_mm, idd_mev_cm2_per_g, letd_kev_um : ndarray, shape (D,)
        Laterally integrated dose per primary and dose-averaged LET at each depth.
    """
    data = pencil_beam_data(get_machine(machine_path), float(energy_mev_u))
    return data.depth_mm, data.idd_mev_cm2_per_g, data.letd_kev_um


def write_depth_dose_csv(
    energy_mev_u: float,
    csv_path: str | os.PathLike[str],
    machine_path: str | os.PathLike[str] | None = None,
) -> int:
    """Write ``depth_mm,idd,letd_kev_um`` for one pencil beam in water atomically.

    ``idd`` is the laterally integrated dose per primary in MeV cm^2/g. Returns the row count.
    """
    depth, idd, letd = depth_dose_table(energy_mev_u, machine_path)
    buf = io.StringIO()
    buf.write("depth_mm,idd,letd_kev_um\n")
    for z, d, let in zip(depth, idd, letd, strict=True):
        buf.write(f"{z:.4f},{d:.6e},{let:.4f}\n")
    atomic_write_text(csv_path, buf.getvalue())
    return int(depth.size)


def machine_summary(machine_path: str | os.PathLike[str] | None = None) -> str:
    """A short human-readable description of a machine."""
    m = get_machine(machine_path)
    lo, hi = m.energy_range_mev_u
    steps = np.diff(m.peak_depth_mm)
    lines = [
        f"machine: {m.name} (Z={m.ion_z}, A={m.ion_a})",
        f"energies: {m.n_energies}, {lo:g}-{hi:g} MeV/u",
        f"Bragg peak depths: {m.peak_depth_mm[0]:.1f}-{m.peak_depth_mm[-1]:.1f} mm "
        f"(steps {steps.min():.2f}-{steps.max():.2f} mm)" if steps.size else
        f"Bragg peak depth: {m.peak_depth_mm[0]:.1f} mm",
        f"in-air spot sigma at isocentre: {m.spot_sigma_air_mm.max():.2f}-"
        f"{m.spot_sigma_air_mm.min():.2f} mm",
        f"virtual SAD: {m.sad_mm[0]:g} / {m.sad_mm[1]:g} mm",
        f"spectra: {'yes' if m.spectra is not None else 'no'}; "
        f"LQ tables: {'yes' if m.lq_tables is not None else 'no'}",
    ]
    src = m.provenance.get("generator") or m.provenance.get("source")
    if src:
        lines.append(f"provenance: {src} {m.provenance.get('generator_version', '')}".rstrip())
    return "\n".join(lines)


def generate_generic_machine(
    out_path: str | os.PathLike[str], progress: ProgressCallback | None = None, *,
    overwrite: bool = False
) -> Machine:
    """Regenerate the generic carbon machine and write it atomically to ``out_path``.

    Raises
    ------
    InputError
        Before the minutes of generating: ``out_path`` exists and ``overwrite`` is not set
        (the shipped machine too would have been replaced without a word), or its folder
        does not exist or cannot be written.
    """
    from planning.machine_generator import CarbonMachineGenerator
    from planning.output_folder import check_writable

    out = Path(out_path)
    if out.exists() and not overwrite:
        raise InputError(f"{out} exists; give --overwrite to replace it (nothing was generated)")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder (nothing was generated)")
    check_writable(out.parent, "the machine file's folder")
    machine = CarbonMachineGenerator().generate(progress=progress)
    save_machine(machine, out)
    return machine


def run_headless_demo(
    device: str = "auto",
    progress: ProgressCallback | None = None,
    *,
    hlut_path: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> str:
    """Plan the bundled demo patient end to end without a display; return a summary.

    ``hlut_path`` is a user HU to relative stopping power CSV; ``out_dir`` a folder that
    receives the demo patient, the plan and its dose as DICOM (``overwrite``: write the demo
    patient's files again where it holds them).
    """
    from planning.demo import run_headless_demo as demo
    from planning.hlut import load_hlut_csv

    hlut = load_hlut_csv(hlut_path) if hlut_path is not None else None
    return demo(device=device, progress=progress, hlut=hlut, out_dir=out_dir,
                overwrite=overwrite)


def folder_summary(folder: str | os.PathLike[str]) -> str:
    """Printable summary of the DICOM series and structure sets found under ``folder``."""
    from planning.dicom import describe_folder

    return describe_folder(folder)


def write_demo_patient(out_dir: str | os.PathLike[str], *, overwrite: bool = False
                       ) -> list[str]:
    """Write the demo patient (CT series and RTSTRUCT) into ``out_dir``; return the file paths
    (refused into a folder with other DICOM files, or with the demo's own unless
    ``overwrite``: :func:`planning.dicom.demo_patient.write_demo_patient`)."""
    from planning.dicom import write_demo_patient as write

    return [str(p) for p in write(out_dir, overwrite=overwrite)]


@dataclass(frozen=True)
class SeriesChoice:
    """One CT series of a folder, as offered to the user."""

    series_uid: str
    description: str
    n_images: int
    patient_position: str


def list_ct_series(folder: str | os.PathLike[str]) -> list[SeriesChoice]:
    """The CT series found under ``folder`` that a planning CT can be chosen from (localizers
    left out; header scan only, no pixel data read)."""
    from planning.dicom import scan_folder

    return [SeriesChoice(s.series_instance_uid, s.attribute("SeriesDescription"),
                         len(s.files), s.attribute("PatientPosition"))
            for s in scan_folder(folder).planning_ct_candidates()]


def load_patient(folder: str | os.PathLike[str], *, series_uid: str | None = None,
                 progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> Patient:
    """The CT of a folder (the given series, or the only one) and its structure set."""
    from planning.dicom import load_patient as load

    return load(folder, series_uid=series_uid, progress=progress, cancel=cancel)


def demo_patient() -> Patient:
    """The bundled demo patient, built in memory."""
    from planning.dicom import load_demo_patient

    return load_demo_patient()


def default_objectives(patient: Patient, target: str, total_dose_gy_rbe: float
                       ) -> list[Objective]:
    """The objectives ``ionplan plan`` uses when none are configured (target homogeneity,
    organs at risk below the prescription)."""
    from planning.planner import default_objectives as defaults

    return defaults(patient, target, total_dose_gy_rbe)


def warm_up_gpu() -> float:
    """Compile the GPU kernels ahead of the first plan (nothing on a machine without a usable
    GPU); seconds taken. Errors are logged, never raised: the first plan then compiles them."""
    from planning.engine.dose_engine import warm_up_device

    try:
        return warm_up_device("auto")
    except Exception as exc:  # a broken CUDA set-up must not stop the application
        logging.getLogger(__name__).warning("GPU warm-up failed: %s", exc)
        return 0.0


def gpu_available() -> bool:
    """True when a CUDA device is usable by the dose engine."""
    from planning.engine.dose_engine import resolve_device
    from planning.errors import DeviceError

    try:
        return resolve_device("gpu") == "gpu"
    except DeviceError:
        return False


def beam_direction_lps(gantry_deg: float, couch_deg: float, patient_position: str = "HFS"
                       ) -> tuple[float, float, float]:
    """Unit vector of a beam's direction of travel (source towards isocentre) in LPS."""
    from planning.geometry import beam_frame

    try:
        d = beam_frame(gantry_deg, couch_deg, patient_position or "HFS").direction
    except ValueError as exc:  # e.g. a decubitus position, which the dose engine refuses too
        raise InputError(str(exc)) from None
    return float(d[0]), float(d[1]), float(d[2])


def target_isocenter_mm(patient: Patient, target: str) -> tuple[float, float, float]:
    """LPS position (mm) where the planner puts the isocentre for ``target``."""
    from planning.planner import target_isocenter_mm as iso

    if patient.structure_set is None:
        raise InputError("the patient has no structure set")
    try:
        structure = patient.structure_set.get(target)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    mask = structure.mask.to_dense()
    if not mask.any():
        raise InputError(f"the target {structure.name!r} has no voxels on the CT grid"
                         + patient.structure_set.empty_structure_text(structure.name))
    return iso(patient.ct, mask)


def plan_request(
    patient: Patient,
    *,
    target: str,
    dose_gy_rbe: float,
    fractions: int,
    gantry_deg: Sequence[float],
    couch_deg: Sequence[float] | None = None,
    rbe: str = "mkm",
    rbe_value: float | None = None,
    tissue: str | None = None,
    spot_spacing_mm: float = 3.0,
    grid_mm: float = 2.5,
    objectives: Sequence[Objective] | None = None,
    device: str = "auto",
    exchange: bool = False,
    optimization_grid_mm: float | None = None,
) -> PlanRequest:
    """A plan on a loaded patient, as asked (nothing computed): what :func:`estimate_plan`
    estimates and :func:`plan_patient` makes, so that the two are given the same request.

    ``objectives``, when given, replace the default objectives entirely;
    ``optimization_grid_mm`` as for :func:`make_plan`.

    Raises
    ------
    InputError
        A request no plan can be made of (no gantry angle, a couch angle per beam missing, a
        beam direction given twice, a spacing out of range:
        :class:`planning.planner.PlanRequest`).
    """
    from planning.planner import PlanConfig, PlanRequest

    config = None if objectives is None else PlanConfig(tuple(objectives),
                                                        replace_defaults=True)
    return PlanRequest(
        target=target, total_dose_gy_rbe=float(dose_gy_rbe), n_fractions=int(fractions),
        gantry_deg=tuple(float(g) for g in gantry_deg),
        couch_deg=tuple(float(c) for c in couch_deg or ()), patient=patient,
        rbe_model=rbe, rbe_value=rbe_value, tissue=tissue, spot_spacing_mm=spot_spacing_mm,
        dose_grid_mm=grid_mm, optimization_grid_mm=optimization_grid_mm, device=device,
        exchange=exchange, config=config)


def plan_patient(request: PlanRequest, *, progress: ProgressCallback | None = None,
                 cancel: CancelToken | None = None) -> PlanResult:
    """Optimize the plan of ``request`` (:func:`plan_request`) on its loaded patient (nothing
    written); see :func:`make_plan`."""
    from planning.planner import make_plan as plan

    return plan(request, machine=get_machine(), progress=progress, cancel=cancel)


def estimate_plan(request: PlanRequest, *, progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None) -> PlanEstimate:
    """The pre-flight estimate (work, memory, time) of the plan :func:`plan_patient` would
    make of ``request``; a second or two (:mod:`planning.plan_estimate`).

    Raises what :func:`plan_patient` raises before its long steps (bad request, unreachable
    target)."""
    from planning.plan_estimate import estimate_plan as estimate

    return estimate(request, machine=get_machine(), progress=progress, cancel=cancel)


def export_plan(result: PlanResult, out_dir: str | os.PathLike[str], *,
                plan_name: str | None = None, robust: Any = None,
                created: datetime.datetime | None = None) -> list[str]:
    """Write a plan's RTPLAN.dcm, RT Doses and report.json into ``out_dir`` (and, with
    ``plan_name``, its plan document dated ``created``, default now); return the paths.
    With ``robust``, the plan's
    :class:`planning.robust.RobustResult`, its worst-case RT Doses and report.html too, and
    the document has its robustness section (:func:`planning.robust.write_robust_outputs`).
    A folder holding another plan's files is refused; an export that fails leaves none of its
    files (:func:`planning.output_folder.fresh_output_folder`)."""
    import dataclasses as _dc

    from planning.output_folder import fresh_output_folder
    from planning.planner import write_plan_outputs
    from planning.robust import write_robust_outputs as write_robust

    with fresh_output_folder(out_dir):
        if robust is not None:
            return [str(p) for p in write_robust(_dc.replace(robust, nominal=result), out_dir,
                                                 machine=get_machine(), plan_name=plan_name,
                                                 created=created)]
        return [str(p) for p in write_plan_outputs(result, out_dir, machine=get_machine(),
                                                   plan_name=plan_name, created=created)]


def identification(patient: Patient | None, plan_name: str, model: str) -> Identification:
    """Patient, plan, model and the time now, for a saved document or picture
    (:mod:`planning.document.identity`)."""
    from planning.document.identity import identification as ident

    return ident(patient, plan_name, model)


def new_plan_folder(parent: str | os.PathLike[str], ident: Identification) -> Path:
    """A new, empty folder ``<patientID>_<plan>_<YYYYmmdd-HHMMSS>`` (``-2``, ... when taken)
    in ``parent`` for an export (:func:`planning.document.naming.new_folder`)."""
    from planning.document.naming import file_stem, new_folder

    return new_folder(Path(parent), file_stem(ident))


def write_plan_document(result: PlanResult, folder: str | os.PathLike[str],
                        plan_name: str, *,
                        isodose_percent: Sequence[float] = STANDARD_ISODOSE_PERCENT,
                        restored: bool = False) -> Path:
    """Write the plan document (PDF) of ``result`` into ``folder`` under a new name
    (:func:`planning.document.write_plan_document`); return its path. ``isodose_percent``:
    the isodose lines of its views (% of the prescription); ``restored``: a plan restored
    from a saved session (it cannot be re-optimized; its notes say so as :func:`plan_notes`'s
    do)."""
    from planning.document import write_plan_document as write

    return write(result, Path(folder), plan_name, isodose_percent=isodose_percent,
                 restored=restored)


def write_identified_picture(rgba: np.ndarray, ident: Identification,
                             folder: str | os.PathLike[str], kind: str) -> Path:
    """Write an (H, W, 4) uint8 picture with ``ident`` burned in, as a new PNG in ``folder``
    (:func:`planning.document.picture.write_picture`); return its path."""
    from planning.document.picture import write_picture

    return write_picture(rgba, ident, Path(folder), kind)


def plan_notes(result: PlanResult, *, restored: bool = False) -> tuple[str, ...]:
    """What a reader of ``result`` must be told beside its numbers: its report's, patient's
    and structure set's warnings, an optimizer stopped before converging, another model than
    the plan's (:func:`planning.plan_notes.plan_notes`; the PDF lists them too).
    ``restored``: a plan restored from a saved session (it cannot be re-optimized)."""
    from planning.plan_notes import plan_notes as notes

    return notes(result, restored=restored)


def structure_dose_statistics(patient: Patient, dose: np.ndarray, dose_grid: DoseGrid,
                              reference: float, *, labels: VoxelLabels | None = None
                              ) -> list[StructureDose]:
    """Clinical DVH and metrics of every structure on a dose cube
    (:func:`planning.structure_dose.structure_dose_statistics`; ``labels``: the LEM I tissue
    regions of a plan with a tissue per structure, ``PlanResult.tissue_labels``, for its
    RBE-weighted dose and RBE). The first call on a dose grid
    samples the structures (about 1-2 s for the demo patient on a quiet machine; run it off the
    UI thread); later cubes on that grid cost the interpolation (tens of ms per target or organ,
    0.1-0.5 s for a body or brain)."""
    from planning.structure_dose import structure_dose_statistics as stats

    return stats(patient, dose, dose_grid, reference, labels=labels)


def comparison_side(source: PlanResult | str | os.PathLike[str], *, label: str,
                    quantity: str = "rbe") -> Any:
    """A side of :func:`compare_doses`: one dose of a plan computed in memory (``quantity``
    ``"rbe"``, ``"physical"``, or ``"mkm"`` / ``"lem1"`` for plans computed with the exchange
    view, so that the same plan under mMKM and LEM I can be compared), or an RT Dose file or
    plan output folder (e.g. a partner centre's dose)."""
    from planning.compare.sources import load_side

    return load_side(source, label=label, quantity=quantity)


def rbe_model(name: str, tissue: str | None = None, constant_rbe: float | None = None) -> RbeModel:
    """An RBE model by CLI name: ``mkm``, ``lem1``, ``const`` or ``physical``
    (:func:`planning.rbe.by_name.rbe_model_by_name`)."""
    from planning.rbe.by_name import rbe_model_by_name

    return rbe_model_by_name(name, tissue, constant_rbe)


def parse_tissue(text: str) -> Tissue:
    """A LEM I tissue from a class name or from ``alpha_x,beta_x,D_t``
    (:func:`planning.rbe.lem.parse_tissue`)."""
    from planning.rbe import parse_tissue as parse

    return parse(text)


#: Charge number of each ion species of ``rbe_table``, by symbol.
ION_CHARGES = {"H": 1, "He": 2, "Li": 3, "Be": 4, "B": 5, "C": 6}

#: The stopping-power tables (LET in water) behind ``rbe_table``'s rows.
RBE_TABLE_STOPPING_SOURCE = "mstar_3_12"


def rbe_table(model_name: str, ion: str, energies_mev_u: list[float],
              tissue: str | None = None) -> dict[str, Any]:
    """LQ parameters of one ion species under an RBE model, as a JSON-ready table that says
    what it holds: ``model`` (the model with every parameter), ``ion``, ``ion_z``, ``tissue``
    (LEM I tissue or mMKM cell line), ``stopping_power_source``, ``energy_range_mev_u`` (the
    tabulated range) and ``rows`` of ``energy_mev_u, let_kev_um, alpha, beta`` (1/Gy, 1/Gy^2).

    Raises
    ------
    InputError
        An unknown ion, model or tissue, or an energy outside the range of the ion's
        stopping-power table (the models' LET would be extrapolated there).
    """
    from planning.physics.stopping import load_stopping_table
    from planning.rbe import LemModel, MkmModel, rbe_table_rows

    symbol = next((k for k in ION_CHARGES if k.upper() == ion.strip().upper()), None)
    if symbol is None:
        raise InputError(f"unknown ion {ion!r}; choose one of {', '.join(ION_CHARGES)}")
    z = ION_CHARGES[symbol]
    if model_name.strip().lower() not in ("mkm", "lem1"):
        raise InputError("rbe-table needs a model with per-particle LQ parameters: mkm or lem1")
    model = rbe_model(model_name, tissue)
    energies = load_stopping_table(z, RBE_TABLE_STOPPING_SOURCE).energy_mev_u
    lo_mev_u, hi_mev_u = float(energies[0]), float(energies[-1])
    outside = [e for e in energies_mev_u if not lo_mev_u <= e <= hi_mev_u]
    if outside:
        raise InputError(f"energy {outside[0]:g} MeV/u is outside the tabulated range "
                         f"{lo_mev_u:g}-{hi_mev_u:g} MeV/u of {symbol} "
                         f"({RBE_TABLE_STOPPING_SOURCE} stopping powers)")
    rows = rbe_table_rows(model, z, energies_mev_u, stopping_source=RBE_TABLE_STOPPING_SOURCE)
    tissue_name = (model.tissue.name if isinstance(model, LemModel)
                   else model.cell_line if isinstance(model, MkmModel) else None)
    return {"model": model.describe(), "ion": symbol, "ion_z": z, "tissue": tissue_name,
            "stopping_power_source": RBE_TABLE_STOPPING_SOURCE,
            "energy_range_mev_u": [lo_mev_u, hi_mev_u],
            "rows": [{"energy_mev_u": r.energy_mev_u, "let_kev_um": r.let_kev_um,
                      "alpha": r.alpha_gy, "beta": r.beta_gy2} for r in rows]}


def make_plan(
    ct_dir: str | os.PathLike[str],
    *,
    target: str,
    dose_gy_rbe: float,
    fractions: int,
    gantry_deg: list[float],
    out_dir: str | os.PathLike[str],
    couch_deg: list[float] | None = None,
    rbe: str = "mkm",
    rbe_value: float | None = None,
    tissue: str | None = None,
    spot_spacing_mm: float = 3.0,
    grid_mm: float = 2.5,
    config_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    hlut_path: str | os.PathLike[str] | None = None,
    exchange: bool = False,
    reoptimize_configs: Sequence[str | os.PathLike[str]] = (),
    robust: Any = None,
    optimization_grid_mm: float | None = None,
    ct_series_uid: str | None = None,
    on_estimate: Callable[[PlanEstimate], None] | None = None,
    label: str = DEFAULT_PLAN_LABEL,
) -> dict[str, Any]:
    """Plan a CT folder end to end and write RTPLAN.dcm, RTDOSE_PHYSICAL.dcm, RTDOSE_RBE.dcm
    and report.json into ``out_dir`` (see :mod:`planning.planner`); return the report.
    ``label`` names the plan (:func:`planning.plan.checked_plan_name`).

    ``optimization_grid_mm`` is the spacing the optimizer samples the dose on (default half
    the dose grid's, :mod:`planning.optimization_grid`). ``exchange`` adds the mMKM / LEM I
    exchange view (:mod:`planning.exchange`):
    RTDOSE_RBE_MKM.dcm, RTDOSE_RBE_LEM1.dcm and ``report["exchange"]``. ``robust`` (a
    :class:`planning.robust.RobustSettings`, see :func:`robust_settings`) adds the robust
    evaluation of the fresh plan (:func:`robust_evaluation_of_result`): RTDOSE_RBE_MIN.dcm,
    RTDOSE_RBE_MAX.dcm, report.html and the robust entries of report.json; refused before the
    plan when the plan and its scenarios would not fit in the memory available
    (:func:`planning.robust_estimate.check_robust_memory_after_plan`).

    Each of ``reoptimize_configs`` (plan configuration files) then re-optimizes the plan from
    its kept influence matrices, starting from the spot weights of the plan before it
    (:func:`planning.planner.reoptimize`), and writes the same
    outputs into ``out_dir/reoptimized_<k>``; the first report lists them under
    ``"reoptimized"`` (configuration file, folder, seconds, and ``own_warnings``: its report's
    warnings less those of the inputs all the plans share, which the first report gives,
    :func:`planning.planner.input_warnings`). All configuration files are read before any work; the
    re-optimizations are refused before the plan when they would not fit in memory beside it
    (:func:`planning.plan_estimate.check_reoptimization_memory_after_plan`), and each is
    checked again before it runs (:func:`planning.plan_estimate.check_reoptimization_memory`).

    ``ct_series_uid`` chooses the CT series when ``ct_dir`` holds several.

    ``on_estimate(estimate)``, when given, is called with the plan's pre-flight estimate
    (:mod:`planning.plan_estimate`) once the CT is loaded, before any long step; it may raise
    to stop (nothing is computed or written then)."""
    from planning.planner import PlanRequest, write_plan_outputs
    from planning.planner import make_plan as plan

    request = PlanRequest(
        target=target, total_dose_gy_rbe=float(dose_gy_rbe), n_fractions=int(fractions),
        gantry_deg=tuple(float(g) for g in gantry_deg),
        couch_deg=tuple(float(c) for c in couch_deg or ()), ct_dir=os.fspath(ct_dir),
        rbe_model=rbe, rbe_value=rbe_value, tissue=tissue, spot_spacing_mm=spot_spacing_mm,
        dose_grid_mm=grid_mm, config_path=None if config_path is None else os.fspath(config_path),
        optimization_grid_mm=optimization_grid_mm, device=device, output_dir=os.fspath(out_dir),
        hlut_path=None if hlut_path is None else os.fspath(hlut_path), exchange=exchange,
        label=checked_plan_name(label, "plan label"))
    from planning.plan_config import check_config_structures, config_key, load_plan_config
    from planning.plan_estimate import check_reoptimization_memory
    from planning.planner import input_warnings, reoptimize
    from planning.progress import stage_progress

    configs = [load_plan_config(c) for c in reoptimize_configs]
    if configs or ct_series_uid is not None or on_estimate is not None or robust is not None:
        # The CT is loaded once, here: the re-optimizations' configurations are checked on it
        # and the estimates made of it before the first plan.
        from planning.dicom import load_patient

        tissues = load_plan_config(config_path).tissues if config_path is not None else ()
        patient = load_patient(ct_dir, series_uid=ct_series_uid,
                               progress=stage_progress(progress, 0.0, 0.02))
        for config in configs:
            check_config_structures(config, patient)
            if config.tissues != tissues:
                raise PlanningError(f"{config_key(config, 'tissues')}: the LEM I tissues "
                                    "differ from the plan's: they change the influence "
                                    "matrices, so a re-optimization cannot change them")
        request = dataclasses.replace(request, patient=patient, ct_dir=None)
    machine = get_machine()
    if on_estimate is not None or robust is not None or configs:
        from planning.plan_estimate import check_reoptimization_memory_after_plan, estimate_plan
        from planning.robust_estimate import check_robust_memory_after_plan

        estimate = estimate_plan(request, machine=machine)
        if on_estimate is not None:
            on_estimate(estimate)
        if robust is not None:
            check_robust_memory_after_plan(estimate, robust,
                                           keep_influence=bool(reoptimize_configs))
        if configs:
            check_reoptimization_memory_after_plan(estimate, exchange=exchange)
    from planning.report_json import report_json_text
    from planning.robust import write_robust_outputs as write_robust

    share = 0.5 if robust is not None else 1.0
    result = plan(request, machine=machine, progress=stage_progress(progress, 0.0, share),
                  keep_influence=bool(reoptimize_configs))
    if robust is None:
        write_plan_outputs(result, out_dir, machine=machine, plan_name=result.plan.label)
    else:
        # Not kept: its cubes are written, and the re-optimizations need the memory.
        write_robust(robust_evaluation_of_result(
            result, range_error_pct=robust.range_error_pct,
            setup_error_mm=robust.setup_error_mm, setup_directions=robust.setup_directions,
            combined=robust.combined, combined_only=robust.combined_only, device=device,
            hlut_path=hlut_path,
            progress=stage_progress(progress, share, 1.0)),
            out_dir, machine=machine, plan_name=result.plan.label)
    assert result.prepared is not None
    done = []
    for k, (path, config) in enumerate(zip(reoptimize_configs, configs, strict=True), 1):
        check_reoptimization_memory(result.prepared)
        again = reoptimize(result.prepared, config=config, progress=progress)
        again.report["reoptimized_from"] = {"config": os.fspath(path),
                                            "plan_folder": os.fspath(out_dir)}
        folder = Path(out_dir) / f"reoptimized_{k}"
        write_plan_outputs(again, folder, machine=machine, plan_name=again.plan.label)
        # The warnings of the inputs it shares with this plan are in this report already.
        shared = input_warnings(result.prepared)
        done.append({"config": os.fspath(path), "folder": folder.name,
                     "seconds": again.report["timings_s"]["total"],
                     "own_warnings": [w for w in again.report["warnings"] if w not in shared]})
        del again  # written: not kept beside the next one
    if done:
        result.report["reoptimized"] = done
        atomic_write_text(Path(out_dir) / "report.json", report_json_text(result.report))
    return result.report


def reoptimize_plan(result: PlanResult, *, total_dose_gy_rbe: float | None = None,
                    n_fractions: int | None = None, objectives: Sequence[Objective] | None = None,
                    exchange: bool | None = None, exchange_tissue: str | None = None,
                    progress: ProgressCallback | None = None, cancel: CancelToken | None = None
                    ) -> PlanResult:
    """Re-optimize a plan made here (``result.prepared``) with a new prescription and/or
    objectives (replacing the defaults), from its kept influence matrices; ``exchange`` and
    ``exchange_tissue`` as in :func:`planning.planner.reoptimize`.

    Raises
    ------
    PlanningError
        When the plan keeps no prepared state (an imported or recalculated plan), or the new
        plan would not fit in memory beside it
        (:func:`planning.plan_estimate.check_reoptimization_memory`).
    """
    from planning.plan_estimate import check_reoptimization_memory
    from planning.planner import reoptimize

    if result.prepared is None:
        raise PlanningError("this plan was not optimized here (imported or recalculated), so "
                            "there is no kept influence to re-optimize from: plan it anew")
    check_reoptimization_memory(result.prepared, exchange=exchange)
    config = None
    if objectives is not None:
        # The objectives are no longer the file's: errors on them must not name it.
        config = dataclasses.replace(result.prepared.config, objectives=tuple(objectives),
                                     replace_defaults=True, path="")
    return reoptimize(result.prepared, total_dose_gy_rbe=total_dose_gy_rbe,
                      n_fractions=n_fractions, config=config, exchange=exchange,
                      exchange_tissue=exchange_tissue, progress=progress, cancel=cancel)


# --------------------------------------------------------------- recalculation and comparison


def metersets_in_mu(rtplan: str | os.PathLike[str]) -> bool:
    """Whether an RT Ion Plan gives its metersets in MU, so that recalculating it needs the
    machine's monitor calibration (:func:`parse_monitor_calibration`)."""
    from planning.dicom import metersets_in_mu as in_mu

    return in_mu(rtplan)


def parse_monitor_calibration(text: str | os.PathLike[str]) -> MonitorCalibration:
    """The machine's particles per MU from ``"N"``, ``"N@E"`` or a CSV table's path
    (:mod:`planning.monitor_calibration`); InputError says what is wrong."""
    from planning.monitor_calibration import parse_monitor_calibration as parse

    return parse(text)


def recalculate_plan(
    ct: str | os.PathLike[str] | Patient,
    rtplan: str | os.PathLike[str] | Any,
    *,
    rbe: str | None = None,
    rbe_value: float | None = None,
    tissue: str | None = None,
    machine_path: str | os.PathLike[str] | None = None,
    grid_mm: float = 2.5,
    hlut_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    exchange: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    ct_series_uid: str | None = None,
    monitor_calibration: MonitorCalibration | None = None,
) -> PlanResult:
    """Forward dose of an RT Ion Plan (path, or a :class:`planning.plan.Plan`) on a CT (folder,
    or a loaded :class:`Patient`); see :mod:`planning.compare.recalc`.

    ``rbe`` None uses the model the plan names, else mMKM. With ``out_dir``, writes RTPLAN.dcm,
    RTDOSE_PHYSICAL.dcm, RTDOSE_RBE.dcm (and the exchange pair) and report.json there.
    ``cancel`` is a :class:`planning.progress.CancelToken`; ``ct_series_uid`` chooses the CT
    series of a folder that holds several; ``monitor_calibration``
    (:func:`planning.monitor_calibration.parse_monitor_calibration`) converts a plan's
    metersets in MU to particles."""
    from planning.compare.recalc import recalculate_files

    return recalculate_files(ct, rtplan, rbe=rbe, rbe_value=rbe_value, tissue=tissue,
                             machine=get_machine(machine_path), grid_mm=grid_mm,
                             hlut_path=hlut_path, device=device, exchange=exchange,
                             out_dir=out_dir, progress=progress, cancel=cancel,
                             ct_series_uid=ct_series_uid,
                             monitor_calibration=monitor_calibration)


def compare_doses(
    a: Any,
    b: Any,
    *,
    structures: Patient | str | os.PathLike[str] | None = None,
    criteria: list[tuple[float, float]] | None = None,
    threshold_percent: float = 10.0,
    quantity: str = "rbe",
    prescription_gy: float | None = None,
    cross_model: bool = True,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    ct_series_uid: str | None = None,
) -> ComparisonResult:
    """Compare dose B against the reference A (:mod:`planning.compare.comparison`).

    ``a`` and ``b`` are RT Dose files, plan output folders, :class:`planning.dicom.DoseVolume`
    or :class:`PlanResult`; ``structures`` a CT folder or a loaded patient; ``criteria`` gamma
    ``(dose %, DTA mm)`` pairs (default 3 %/3 mm and 2 %/2 mm, global). Returns the typed
    result: cubes on the common grid, difference statistics, gamma per criterion, per-structure
    DVHs and metrics, and the cross-model view of plan sides. ``ct_series_uid`` chooses the
    CT series of a ``structures`` folder that holds several."""
    from planning.compare.comparison import DEFAULT_GAMMA, CompareSettings, compare

    settings = CompareSettings(
        gamma=tuple((float(d), float(r)) for d, r in criteria) if criteria else DEFAULT_GAMMA,
        threshold_percent=float(threshold_percent), quantity=quantity,
        prescription_gy=prescription_gy, cross_model=cross_model, device=device)
    return compare(a, b, patient=structures, settings=settings, progress=progress,
                   cancel=cancel, ct_series_uid=ct_series_uid)


def cross_model_view(
    ct: str | os.PathLike[str] | Patient,
    rtplan: str | os.PathLike[str] | Any,
    *,
    grid_mm: float = 2.5,
    lem_tissue: str | None = None,
    device: str = "auto",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CrossModelView:
    """A plan (RT Ion Plan path or :class:`planning.plan.Plan`) on its CT under mMKM and LEM I
    side by side, with per-structure metrics and the LEM I / mMKM ratio in the target
    (:mod:`planning.compare.cross_model`)."""
    from planning.compare.cross_model import cross_model_view as view
    from planning.compare.recalc import check_plan_on_ct
    from planning.dicom import load_patient as load
    from planning.dicom import load_rt_ion_plan
    from planning.patient import Patient

    patient = ct if isinstance(ct, Patient) else load(ct, progress=progress, cancel=cancel)
    if isinstance(rtplan, (str, os.PathLike)):
        imported = load_rt_ion_plan(rtplan, structure_set=patient.structure_set)
        check_plan_on_ct(patient, imported.frame_of_reference_uid, imported.patient_position,
                         os.fspath(rtplan), patient_id=imported.patient_id)
        rtplan = imported.plan
    return view(patient, rtplan, dose_grid=grid_mm, lem_tissue=lem_tissue, device=device,
                progress=progress, cancel=cancel)


def write_comparison_report(result: ComparisonResult, out_dir: str | os.PathLike[str]
                            ) -> list[str]:
    """Write report.json and the self-contained report.html of a comparison; return paths."""
    from planning.compare.html_report import write_comparison_report as write

    return [str(p) for p in write(result, out_dir)]


# --------------------------------------------------------------- robust evaluation and batches


def robust_settings(range_error_pct: float = 3.5, setup_error_mm: float = 3.0,
                    setup_directions: int = 6, combined: bool = False,
                    combined_only: bool = False) -> Any:
    """The scenario set of a robust evaluation (:class:`planning.robust.RobustSettings`);
    ``combined_only`` implies ``combined``."""
    from planning.robust import RobustSettings

    return RobustSettings(float(range_error_pct), float(setup_error_mm), int(setup_directions),
                          bool(combined or combined_only), bool(combined_only))


def robust_evaluation(
    ct: str | os.PathLike[str] | Patient,
    rtplan: str | os.PathLike[str] | Any,
    *,
    range_error_pct: float = 3.5,
    setup_error_mm: float = 3.0,
    setup_directions: int = 6,
    combined: bool = False,
    combined_only: bool = False,
    rbe: str | None = None,
    rbe_value: float | None = None,
    tissue: str | None = None,
    machine_path: str | os.PathLike[str] | None = None,
    grid_mm: float = 2.5,
    hlut_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    scheduler: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    verbose: bool = True,
    ct_series_uid: str | None = None,
    monitor_calibration: MonitorCalibration | None = None,
) -> Any:
    """Robust evaluation of an RT Ion Plan (path, or a :class:`planning.plan.Plan`) on a CT
    (folder, or a loaded :class:`Patient`): the nominal, range, setup (and combined) scenarios,
    their metrics, DVH bands and voxel-wise worst-case cubes (:mod:`planning.robust`).

    ``scheduler`` (``tcp://HOST:PORT``) runs the scenarios on that Dask cluster (paths only);
    otherwise they run here, one after the other. With ``out_dir``, writes the nominal files,
    RTDOSE_RBE_MIN.dcm, RTDOSE_RBE_MAX.dcm, report.json, report.html and the plan document
    (PDF, with its robustness section) there. Returns a
    :class:`planning.robust.RobustResult` (its ``report`` is report.json's content).
    ``ct_series_uid`` chooses the CT series of a folder that holds several;
    ``monitor_calibration`` converts a plan's metersets in MU to particles."""
    from planning.robust import robust_files

    settings = robust_settings(range_error_pct, setup_error_mm, setup_directions, combined,
                               combined_only)
    runner = None
    client = None
    if scheduler is not None:
        from planning.distributed import connect, dask_scenario_runner, quiet_logs

        if not verbose:
            quiet_logs()
        client = connect(scheduler)
        runner = dask_scenario_runner(client)
    try:
        return robust_files(ct, rtplan, settings=settings, rbe=rbe, rbe_value=rbe_value,
                            tissue=tissue, machine_path=machine_path, grid_mm=grid_mm,
                            hlut_path=hlut_path, device=device, out_dir=out_dir, runner=runner,
                            progress=progress, cancel=cancel, ct_series_uid=ct_series_uid,
                            monitor_calibration=monitor_calibration)
    finally:
        if client is not None:
            client.close()


def robust_evaluation_of_result(result: PlanResult, *, range_error_pct: float = 3.5,
                                setup_error_mm: float = 3.0, setup_directions: int = 6,
                                combined: bool = False, combined_only: bool = False,
                                device: str = "auto",
                                hlut_path: str | os.PathLike[str] | None = None,
                                progress: ProgressCallback | None = None,
                                cancel: CancelToken | None = None) -> Any:
    """Robust evaluation of a plan made in this session (the GUI's plan, ``ionplan plan
    --robust``) on its own dose grid, with its own RBE model. Returns a
    :class:`planning.robust.RobustResult` whose nominal scenario is ``result`` itself (its
    report gets the robust entries)."""
    import dataclasses as _dc

    from planning.robust import evaluate_robustness
    from planning.robust_tables import ROBUST_REPORT_KEYS

    settings = robust_settings(range_error_pct, setup_error_mm, setup_directions, combined,
                               combined_only)
    cutoff = float(result.report.get("lateral_cutoff_fraction", 0.99))
    robust = evaluate_robustness(result.patient, result.plan, model=result.model,
                                 settings=settings, grid_mm=result.dose_grid,
                                 hlut_path=hlut_path, device=device, cutoff_fraction=cutoff,
                                 progress=progress, cancel=cancel)
    for key in ROBUST_REPORT_KEYS:
        result.report[key] = robust.report[key]
    return _dc.replace(robust, nominal=result)


def write_robust_outputs(result: Any, out_dir: str | os.PathLike[str], *,
                         plan_name: str | None = None) -> list[str]:
    """Write a :class:`planning.robust.RobustResult` (files of :func:`robust_evaluation`,
    the plan document named after ``plan_name``, default the plan's name)."""
    from planning.robust import write_robust_outputs as write

    name = result.nominal.plan.label if plan_name is None else plan_name
    return [str(p) for p in write(result, out_dir, machine=get_machine(), plan_name=name)]
