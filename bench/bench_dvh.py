"""Cost of the clinical DVH: sampling each structure (once per dose grid) and one DVH + metrics.

Cases: the demo patient (1 x 1 x 2.5 mm CT, contours) and the TG-119-sized phantom of
bench_plan.py (3 x 3 x 2.5 mm CT; its contours traced from the masks as ``bench/tg119_dicom.py``
exports them), on 4 mm and 3 mm dose grids. A smooth plan-like dose (a Gaussian about the
target's centre) stands in for a plan: the cost does not depend on the values.
Run: ``python bench/bench_dvh.py``; results in docs/benchmarks.md.

``python bench/bench_dvh.py --tg119-plan OUT.npz`` plans the TG-119 phantom as issue 14 did
(60 Gy(RBE) / 20 fx, mMKM, gantry 90/270, 5 mm spots, 3 mm grid, CPU) and prints, for the
target (PTV = TG-119 OuterTarget) and the Core, D95 and the volume three ways: the dose-grid
voxel centres of earlier versions, the clinical DVH of the report, and the brute-force
reference of tests/test_clinical_dvh.py (0.2 mm point-in-polygon on the same contours, SciPy's
RegularGridInterpolator); the RBE-weighted cube is saved to OUT.npz, which
``--tg119-evaluate OUT.npz`` evaluates again without planning. ``--demo-plan`` does the same
for the GUI's demo plan (PTV and brainstem).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def tg119_with_contours():  # type: ignore[no-untyped-def]
    from bench.bench_plan import tg119_patient
    from planning.dicom.rtstruct_export import mask_contours

    patient = tg119_patient()
    ss = patient.structure_set
    structures = tuple(dataclasses.replace(s, contours=tuple(mask_contours(s, patient.ct)))
                       for s in ss.structures)
    return dataclasses.replace(patient, structure_set=dataclasses.replace(
        ss, structures=structures))


def run(case: str, patient, grid_mm: float) -> None:  # type: ignore[no-untyped-def]
    from planning.dose_grid import DoseGrid
    from planning.evaluation import cumulative_dvh, dose_metrics
    from planning.structure_dose import grid_of, structure_dose_statistics
    from planning.structure_sampling import dose_samples

    grid = DoseGrid.covering(grid_of(patient.ct), grid_mm)
    target = patient.structure_set.get("PTV")
    k, j, i = np.nonzero(target.mask.to_dense())
    centre = np.array(patient.ct.origin_mm) + np.array(patient.ct.spacing_mm)[::-1] * np.array(
        [i.mean(), j.mean(), k.mean()])
    r2 = np.sum((grid.voxel_centers_lps() - centre) ** 2, axis=1)
    dose = (60.0 * np.exp(-r2 / (2 * 40.0**2))).reshape(grid.shape).astype(np.float32)
    print(f"\n{case}, CT {patient.ct.shape} at {patient.ct.spacing_mm} mm, dose grid "
          f"{grid.shape} at {grid_mm} mm, load {os.getloadavg()[0]:.1f}")
    print(f"{'structure':12} {'cm3':>9} {'samples':>8} {'cell mm (z,y,x)':>20} {'MiB':>6} "
          f"{'sample s':>8} {'DVH s':>7}")
    for s in patient.structure_set.structures:
        t0 = time.perf_counter()
        samples = dose_samples(s, patient.ct, grid)
        t1 = time.perf_counter()
        assert samples is not None
        values = samples.dose(dose)
        dose_metrics(values, 60.0, samples.volume_mm3)
        cumulative_dvh(s.name, values, samples.volume_mm3, max_dose=66.0, n_bins=200)
        t2 = time.perf_counter()
        cell = ", ".join(f"{c:.2f}" for c in samples.cell_mm)
        print(f"{s.name:12} {samples.volume_cm3:9.2f} {samples.n_samples:8d} {cell:>20} "
              f"{samples.nbytes / 2**20:6.2f} {t1 - t0:8.3f} {t2 - t1:7.3f}")
    t0 = time.perf_counter()
    structure_dose_statistics(patient, dose, grid, 60.0)
    t1 = time.perf_counter()
    structure_dose_statistics(patient, dose, grid, 60.0)
    t2 = time.perf_counter()
    print(f"all structures (GUI statistics): first {t1 - t0:.2f} s, cached {t2 - t1:.2f} s")


def tg119_plan(out: Path) -> None:
    """Plan TG-119 as issue 14 did, save the RBE-weighted cube, compare the DVH methods."""
    from planning.planner import PlanRequest, make_plan

    patient = tg119_with_contours()
    t0 = time.perf_counter()
    result = make_plan(PlanRequest(
        target="PTV", total_dose_gy_rbe=60.0, n_fractions=20, gantry_deg=(90.0, 270.0),
        patient=patient, rbe_model="mkm", spot_spacing_mm=5.0, dose_grid_mm=3.0,
        device="cpu"))
    print(f"plan: {time.perf_counter() - t0:.0f} s")
    grid = result.dose_grid
    np.savez_compressed(out, rbe_dose_gy_rbe=result.rbe_dose_gy_rbe, shape=grid.shape,
                        spacing_mm=grid.spacing_mm, origin_mm=grid.origin_mm)
    compare_methods(patient, grid, result.rbe_dose_gy_rbe, ("PTV", "Core"))


def demo_plan() -> None:
    """Plan the demo patient as the GUI's demo plan (57.6 Gy(RBE) / 16 fx, mMKM, gantry
    90/270, 3 mm spots, 4 mm grid) and compare the DVH methods on the PTV and brainstem."""
    from planning.dicom import load_demo_patient
    from planning.planner import PlanRequest, make_plan

    patient = load_demo_patient()
    result = make_plan(PlanRequest(
        target="PTV", total_dose_gy_rbe=57.6, n_fractions=16, gantry_deg=(90.0, 270.0),
        patient=patient, rbe_model="mkm", spot_spacing_mm=3.0, dose_grid_mm=4.0,
        device="cpu"))
    grid = result.dose_grid
    np.savez_compressed("demo_plan_rbe.npz", rbe_dose_gy_rbe=result.rbe_dose_gy_rbe,
                        shape=grid.shape, spacing_mm=grid.spacing_mm, origin_mm=grid.origin_mm)
    compare_methods(patient, result.dose_grid, result.rbe_dose_gy_rbe, ("PTV", "Brainstem"),
                    57.6)


def tg119_evaluate(saved: Path) -> None:
    """:func:`compare_methods` on a cube saved by :func:`tg119_plan`."""
    from planning.dose_grid import DoseGrid

    z = np.load(saved)
    shape, spacing, origin = (tuple(z[k].tolist()) for k in ("shape", "spacing_mm", "origin_mm"))
    compare_methods(tg119_with_contours(), DoseGrid(shape, spacing, origin), z["rbe_dose_gy_rbe"],
                    ("PTV", "Core"))


def compare_methods(patient, grid, rbe: np.ndarray, names: tuple[str, ...],  # type: ignore[no-untyped-def]
                    prescription: float = 60.0) -> None:
    """D95 and volume of some structures: dose-grid voxel centres, clinical DVH, brute-force
    reference; and the contour volume (shoelace x slice; one contour per slice, no holes)."""
    from planning.evaluation import dose_metrics
    from planning.structure_dose import grid_of, structure_dose_statistics, structure_rows
    from tests.test_clinical_dvh import brute_force, shoelace_mm2

    ct = patient.ct
    for name in names:
        s = patient.structure_set.get(name)
        rows = structure_rows(s.mask.to_dense(), grid_of(ct), grid)
        voxel = dose_metrics(rbe.reshape(-1)[rows], prescription)
        (clinical,) = structure_dose_statistics(patient, rbe, grid, prescription, names=[name])
        by_z: dict[float, list[np.ndarray]] = {}
        for c in s.contours:
            by_z.setdefault(float(c.points_mm[0, 2]), []).append(c.points_mm[:, :2])
        ref_cm3, ref_d95 = brute_force(grid, rbe, by_z, ct.spacing_mm[0])
        contour_cm3 = sum(shoelace_mm2(c.points_mm[:, :2]) for c in s.contours) * ct.spacing_mm[
            0] / 1e3
        voxel_cm3 = rows.size * float(np.prod(grid.spacing_mm)) / 1e3
        d95 = clinical.metrics.d95
        print(f"{name}: D95 voxel centres {voxel.d95:.2f} ({100 * (voxel.d95 / ref_d95 - 1):+.2f}"
              f" %), clinical {d95:.2f} ({100 * (d95 / ref_d95 - 1):+.2f} %), reference "
              f"{ref_d95:.2f} Gy(RBE); volume: contours {contour_cm3:.2f}, voxels "
              f"{voxel_cm3:.2f}, clinical {clinical.dvh.volume_cm3:.2f}, brute force "
              f"{ref_cm3:.2f} cm3")


def main() -> None:
    from planning.dicom import load_demo_patient

    if len(sys.argv) == 3 and sys.argv[1] == "--tg119-plan":
        tg119_plan(Path(sys.argv[2]))
        return
    if len(sys.argv) == 2 and sys.argv[1] == "--demo-plan":
        demo_plan()
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--tg119-evaluate":
        tg119_evaluate(Path(sys.argv[2]))
        return
    demo = load_demo_patient()
    tg119 = tg119_with_contours()
    for grid_mm in (4.0, 3.0):
        run("demo", demo, grid_mm)
        run("TG-119", tg119, grid_mm)


if __name__ == "__main__":
    main()
