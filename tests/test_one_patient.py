"""A CT series or a structure set that mixes patients is refused, naming the file (found by a
CLI review: both were planned and labelled with the first slice's patient)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from planning.dicom.demo_patient import write_demo_patient
from planning.dicom.errors import DicomImportError
from planning.dicom.patient_import import load_patient


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    write_demo_patient(folder)
    return folder


def _copy_with(demo: Path, out: Path, name: str, **changes: str) -> Path:
    out.mkdir()
    for f in demo.iterdir():
        ds = pydicom.dcmread(f)
        if f.name == name:
            for key, value in changes.items():
                setattr(ds, key, value)
        ds.save_as(out / f.name)
    return out


def test_a_ct_slice_of_another_patient_is_refused(demo_folder: Path, tmp_path: Path) -> None:
    slice_name = sorted(p.name for p in demo_folder.glob("CT*"))[40]
    folder = _copy_with(demo_folder, tmp_path / "mixed", slice_name, PatientID="OTHER-002")
    with pytest.raises(DicomImportError, match=rf"{slice_name}: PatientID 'OTHER-002' differs"):
        load_patient(folder)


def test_a_ct_slice_with_another_patient_name_is_refused(demo_folder: Path,
                                                          tmp_path: Path) -> None:
    slice_name = sorted(p.name for p in demo_folder.glob("CT*"))[3]
    folder = _copy_with(demo_folder, tmp_path / "named", slice_name, PatientName="Other^Anna")
    with pytest.raises(DicomImportError, match="PatientName 'Other\\^Anna' differs"):
        load_patient(folder)


def test_a_structure_set_of_another_patient_is_refused(demo_folder: Path,
                                                       tmp_path: Path) -> None:
    rs = next(p.name for p in demo_folder.iterdir() if p.name.startswith("RS"))
    folder = _copy_with(demo_folder, tmp_path / "rs", rs, PatientID="OTHER-002")
    with pytest.raises(DicomImportError, match="structure set is of patient ID 'OTHER-002'"):
        load_patient(folder)
    assert load_patient(demo_folder).structure_set is not None  # the demo itself loads
