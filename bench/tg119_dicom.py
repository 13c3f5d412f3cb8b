"""Write the TG-119-sized phantom of bench_plan.py as DICOM: CT series and RT Structure Set.

Used by bench/gpu_check.py to time ``ionplan plan`` on a TG-119-sized patient from files (CT
load and export included). Run: ``python bench/tg119_dicom.py OUT_DIR``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def write_tg119(folder: Path) -> Path:
    """Write the phantom into ``folder`` (created); returns the folder."""
    from bench.bench_plan import tg119_patient
    from planning.dicom import load_patient
    from planning.dicom.rtstruct_export import export_rtstruct
    from tests.dicom_factory import SeriesSpec, write_ct_series

    patient = tg119_patient()
    ct = patient.ct
    nz, ny, nx = ct.hu.shape
    sz, sy, sx = ct.spacing_mm
    x0, y0, z0 = ct.origin_mm
    spec = SeriesSpec(rows=ny, columns=nx, n_slices=nz, pixel_spacing=(sy, sx),
                      slice_spacing=sz, first_position=(x0, y0, z0), tag="tg119",
                      study_tag="tg119", frame_tag="tg119")
    hu = np.asarray(ct.hu, dtype=np.float64)

    def hu_at(points: np.ndarray) -> np.ndarray:
        k = round((points[0, 0, 2] - z0) / sz)
        return hu[k]

    folder.mkdir(parents=True, exist_ok=True)
    write_ct_series(folder, spec, hu_at, names="ordered")
    loaded = load_patient(folder).ct
    assert patient.structure_set is not None
    structures = dataclasses.replace(patient.structure_set,
                                     frame_of_reference_uid=loaded.frame_of_reference_uid)
    export_rtstruct(structures, loaded, folder / "RS_tg119.dcm", label="TG119",
                    from_masks=True)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    write_tg119(ap.parse_args().out)


if __name__ == "__main__":
    main()
