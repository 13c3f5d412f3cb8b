"""Headless end-to-end demo on the bundled demo patient.

Runs every stage of the engine on the procedurally generated head phantom (CT -> relative
stopping power through the default HLUT, spot placement on the PTV, influence matrices, spot
weights, forward dose) and returns a printable summary. The spot weights are a least-squares fit
(L-BFGS-B, weights >= 0) of a uniform physical dose in the PTV; the RBE-weighted optimizer with
organ-at-risk objectives is :mod:`planning` issue "Radiobiology and inverse planning".
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.sparse import sparray

from planning.beams import Beam, SpotMap
from planning.dicom import (
    export_rt_dose,
    export_rt_ion_plan,
    load_demo_patient,
    write_demo_patient,
)
from planning.dicom.demo_patient import check_demo_folder
from planning.dose_grid import DoseGrid
from planning.engine import build_influence
from planning.engine.dose_engine import DoseEngineSettings, forward_dose, place_spots
from planning.hlut import HlutCurve, default_hlut
from planning.machine import Machine, load_machine
from planning.patient import Patient
from planning.plan import BeamPlan, Plan, Prescription
from planning.progress import CancelToken, ProgressCallback
from planning.rbe import PhysicalDose
from planning.structure_dose import grid_of, structure_rows

DEMO_DOSE_GY = 2.0
DEMO_TARGET = "PTV"


def run_headless_demo(
    device: str = "auto",
    machine: Machine | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    *,
    hlut: HlutCurve | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> str:
    """Plan two opposed carbon beams on the demo patient's PTV and summarise the result.

    ``hlut`` replaces the default HU to stopping-power curve. With ``out_dir`` the demo
    patient (CT series and RTSTRUCT), the plan (RTPLAN.dcm, one fraction of 2 Gy) and its
    physical dose (RTDOSE_PHYSICAL.dcm) are written there as DICOM; the folder is checked
    first (:func:`planning.dicom.demo_patient.check_demo_folder`; ``overwrite`` writes the
    demo patient's files again).
    """
    if out_dir is not None:
        check_demo_folder(Path(out_dir), overwrite)
    t0 = time.perf_counter()
    machine = machine or load_machine()
    patient = load_demo_patient()
    assert patient.structure_set is not None  # the demo patient always has its structures
    grid = grid_of(patient.ct)
    hlut = hlut or default_hlut()
    rsp = hlut.hu_to_rsp(np.asarray(patient.ct.hu, dtype=np.float32))
    target = patient.structure_set.get(DEMO_TARGET).mask.to_dense()
    centre_zyx = np.argwhere(target).mean(axis=0)
    iso = np.asarray(grid.origin_mm) + centre_zyx[::-1] * np.asarray(grid.spacing_mm)[::-1]
    iso_mm = (float(iso[0]), float(iso[1]), float(iso[2]))
    settings = DoseEngineSettings(device=device)
    beams = [Beam(isocenter_mm=iso_mm, gantry_deg=g, name=f"G{g}") for g in (90, 270)]
    spot_maps = [place_spots(machine, rsp, grid, b, target, spot_spacing_mm=3.0,
                             settings=settings) for b in beams]
    dose_grid = DoseGrid.covering(grid, 3.0)
    t1 = time.perf_counter()
    influence = build_influence(machine, rsp, grid, dose_grid, beams, spot_maps, settings,
                                progress=progress, cancel=cancel)
    t2 = time.perf_counter()
    target_rows = structure_rows(target, grid, dose_grid)
    weights = _fit_uniform_dose(influence.dose[target_rows], DEMO_DOSE_GY)
    t3 = time.perf_counter()
    dose, letd = forward_dose(influence, weights)
    lines = [
        "IonPlan headless demo: two opposed 12C beams (gantry 90/270) on the demo head patient",
        f"  CT {patient.ct.shape[2]}x{patient.ct.shape[1]}x{patient.ct.shape[0]} voxels; "
        f"target {DEMO_TARGET} {target.sum() * patient.ct.voxel_volume_mm3 / 1000:.1f} cm3",
        f"  device: {influence.device}; spots: {influence.spots.n_spots} in "
        f"{sum(len(np.unique(s.layer)) for s in spot_maps)} energy layers",
        f"  influence matrix: {influence.nnz:,} nonzeros, {influence.nbytes / 2**20:.0f} MiB, "
        f"built in {t2 - t1:.2f} s",
        f"  weights (least squares to {DEMO_DOSE_GY:g} Gy physical): {t3 - t2:.2f} s",
        "  physical dose per structure (Gy): D95 / mean / D5 / max",
    ]
    for s in patient.structure_set.structures:
        rows = structure_rows(s.mask.to_dense(), grid, dose_grid)
        if rows.size == 0:
            continue
        d = dose.reshape(-1)[rows]
        d95, d5 = np.percentile(d, [5, 95])
        lines.append(f"    {s.name:<10} {d95:5.2f} / {d.mean():5.2f} / {d5:5.2f} / {d.max():5.2f}")
    d_target = dose.reshape(-1)[target_rows]
    lines.append(f"  mean LETd in {DEMO_TARGET}: "
                 f"{np.average(letd.reshape(-1)[target_rows], weights=d_target):.0f} keV/um")
    if out_dir is not None:
        plan = Plan(label="IonPlan demo", machine_name=machine.treatment_machine_name,
                    beams=tuple(BeamPlan(b, s, w) for b, s, w in
                                zip(beams, spot_maps, _split(weights, spot_maps), strict=True)),
                    prescription=Prescription(DEMO_TARGET, DEMO_DOSE_GY, 1),
                    rbe_model=PhysicalDose().describe(), ion_z=machine.ion_z,
                    ion_a=machine.ion_a, rbe=PhysicalDose())
        written = _export(plan, patient, dose, dose_grid, machine, Path(out_dir), overwrite)
        lines.append(f"  wrote {written} DICOM files to {out_dir}")
    lines.append(f"  HLUT: {hlut.name}")
    lines.append(f"  total {time.perf_counter() - t0:.2f} s")
    return "\n".join(lines)


def _split(weights: NDArray[np.float64], spot_maps: list[SpotMap]) -> list[NDArray[np.float64]]:
    """Per-beam slices of the concatenated spot weights (influence column order)."""
    bounds = np.cumsum([0] + [s.n_spots for s in spot_maps])
    return [weights[a:b] for a, b in itertools.pairwise(bounds)]


def _export(plan: Plan, patient: Patient, dose_gy: NDArray[np.float32], dose_grid: DoseGrid,
            machine: Machine, out: Path, overwrite: bool) -> int:
    """Write the demo patient, the plan and its physical dose; return the number of files."""
    files = write_demo_patient(out, overwrite=overwrite)
    plan_uid = export_rt_ion_plan(
        plan, patient, out / "RTPLAN.dcm", sad_mm=machine.sad_mm,
        machine_spot_sigma_mm=lambda e: float(np.interp(e, machine.energies_mev_u,
                                                        machine.spot_sigma_air_mm)))
    export_rt_dose(dose_gy * plan.prescription.n_fractions, dose_grid, patient,
                   out / "RTDOSE_PHYSICAL.dcm", dose_type="PHYSICAL", model=PhysicalDose(),
                   referenced_plan_uid=plan_uid)
    return len(files) + 2


def _fit_uniform_dose(a_target: sparray, dose_gy: float) -> NDArray[np.float64]:
    """Non-negative spot weights minimising the squared deviation from ``dose_gy`` in the target
    rows ``a_target`` (n_target_voxels x n_spots), by L-BFGS-B with the analytic gradient."""
    a = a_target.astype(np.float64).tocsr()
    n_rows = a.shape[0]

    def objective(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        residual = a @ w - dose_gy
        return float(residual @ residual) / n_rows, (2.0 / n_rows) * (a.T @ residual)

    column_dose = np.asarray(a.sum(axis=0)).ravel() / n_rows
    start = np.full(a.shape[1], dose_gy / max(float(column_dose.sum()), 1e-12))
    result = minimize(objective, start, jac=True, method="L-BFGS-B",
                      bounds=[(0.0, None)] * a.shape[1], options={"maxiter": 300})
    return np.asarray(result.x)
