"""Cost of the clinical DVH: sampling each structure (once per dose grid) and one DVH + metrics.

Cases: the demo patient (1 x 1 x 2.5 mm CT, contours) and the TG-119-sized phantom of
bench_plan.py (3 x 3 x 2.5 mm CT; its contours traced from the masks as ``bench/tg119_dicom.py``
exports them), on 4 mm and 3 mm dose grids. A smooth plan-like dose (a Gaussian about the
target's centre) stands in for a plan: the cost does not depend on the values.
Run: ``python bench/bench_dvh.py``; results in docs/benchmarks.md.
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


def main() -> None:
    from planning.dicom import load_demo_patient

    demo = load_demo_patient()
    tg119 = tg119_with_contours()
    for grid_mm in (4.0, 3.0):
        run("demo", demo, grid_mm)
        run("TG-119", tg119, grid_mm)


if __name__ == "__main__":
    main()
