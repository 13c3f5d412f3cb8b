"""DICOM import of patient data (CT series, RT Structure Sets) and the demo patient.

Modules, each with one job:

``scan``            find and classify the DICOM files of a folder (recursive, any file names)
``ct_geometry``     header checks of a CT series, slice order, reorientation plan
``ct_import``       one CT series -> :class:`planning.patient.CtVolume` (pixel decoding)
``rasterize``       closed planar contours -> voxel masks (even-odd rule at voxel centres)
``rtstruct_import`` RT Structure Set -> :class:`planning.patient.StructureSet` on a CT grid
``patient_import``  a folder -> :class:`planning.patient.Patient` (CT + its structure set)
``demo_phantom``    the procedurally generated head phantom (arrays and contours)
``demo_patient``    the demo patient as DICOM files, or in memory
``info``            a printable summary of a folder
``errors``          :class:`DicomImportError`, the one error type for bad DICOM input
"""

from planning.dicom.ct_import import load_ct_series
from planning.dicom.demo_patient import load_demo_patient, write_demo_patient
from planning.dicom.errors import DicomImportError, SeriesSelectionError
from planning.dicom.info import describe_folder, folder_info, format_folder_info
from planning.dicom.patient_import import load_patient
from planning.dicom.rtdose_export import export_rt_dose
from planning.dicom.rtdose_import import DoseVolume, load_rt_dose
from planning.dicom.rtplan_export import export_rt_ion_plan
from planning.dicom.rtplan_import import (
    ImportedPlan,
    load_rt_ion_plan,
    metersets_in_mu,
    plan_sop_instance_uid,
)
from planning.dicom.rtstruct_export import export_rtstruct
from planning.dicom.rtstruct_import import load_rtstruct
from planning.dicom.scan import scan_folder

__all__ = [
    "DicomImportError",
    "DoseVolume",
    "ImportedPlan",
    "SeriesSelectionError",
    "describe_folder",
    "export_rt_dose",
    "export_rt_ion_plan",
    "export_rtstruct",
    "folder_info",
    "format_folder_info",
    "load_ct_series",
    "load_demo_patient",
    "load_patient",
    "load_rt_dose",
    "load_rt_ion_plan",
    "load_rtstruct",
    "metersets_in_mu",
    "plan_sop_instance_uid",
    "scan_folder",
    "write_demo_patient",
]
