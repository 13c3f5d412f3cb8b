"""Shared pieces of the DICOM RT exporters: common modules, UIDs, value formatting, writing.

Every exported object (RT Ion Plan, RT Dose, RT Structure Set) carries the same Patient,
General Study, RT Series, General Equipment and SOP Common modules, copied from the planning
CT's :class:`planning.patient.PatientStudy` so that the objects join the CT's study. Each export
makes a new series.

UIDs are random (:func:`pydicom.uid.generate_uid`) unless the caller passes a ``uid_seed``: then
they derive from the seed and a role name, so the same export gives the same UIDs (useful for
reproducible test files). Files are written as Part 10 files in Explicit VR Little Endian,
atomically (:mod:`planning.atomic`).
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pydicom
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from planning import __version__
from planning.atomic import atomic_binary_file
from planning.dicom._values import PathLike
from planning.errors import InputError
from planning.patient import PatientStudy
from planning.rbe.record import fit_label

logger = logging.getLogger(__name__)

RT_ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
#: Longest text a DICOM DS value may hold.
DS_MAX_CHARS = 16
MANUFACTURER = "IonPlan"
#: Text before the RBE model in RT Plan Description (written and read back by IonPlan).
RBE_MODEL_PREFIX = "RBE model: "
#: Characters a Short Text (ST) value may hold (DICOM PS3.5, 6.2).
ST_MAX_CHARS = 1024


@dataclass(frozen=True)
class ExportIdentity:
    """How an exported object is identified and dated.

    Attributes
    ----------
    uid_seed : str or None
        None: random UIDs. Otherwise UIDs are derived from this string and a role name
        (deterministic export).
    created : datetime
        Instance creation (and series) date and time; timezone-aware (a naive time is taken
        as the machine's local time), written as that zone's date and time.
    """

    uid_seed: str | None
    created: datetime

    @classmethod
    def make(cls, uid_seed: str | None = None, created: datetime | None = None) -> ExportIdentity:
        """An identity with the given seed and time (now when ``created`` is None), made
        timezone-aware (local time zone where ``created`` has none)."""
        when = created or datetime.now()
        return cls(uid_seed=uid_seed,
                   created=when if when.utcoffset() is not None else when.astimezone())

    def uid(self, role: str) -> str:
        """A new UID for ``role`` (e.g. ``"sop"``, ``"series"``)."""
        if self.uid_seed is None:
            return str(generate_uid())
        return str(generate_uid(entropy_srcs=["ionplan-export", self.uid_seed, role]))

    @property
    def date(self) -> str:
        return self.created.strftime("%Y%m%d")

    @property
    def time(self) -> str:
        return self.created.strftime("%H%M%S")


def format_ds(value: float) -> str:
    """A decimal string of at most 16 characters for ``value`` (as many digits as fit).

    Raises
    ------
    InputError
        If ``value`` is not finite.
    """
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"cannot write the non-finite number {v} to DICOM")
    if v == 0.0:
        return "0"
    for digits in range(12, 0, -1):
        text = format(v, f".{digits}g")
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}e{int(exponent)}"
        if len(text) <= DS_MAX_CHARS:
            return text
    raise InputError(f"cannot write {v} as a DICOM decimal string")


def ds_values(values: Sequence[float]) -> list[str]:
    """:func:`format_ds` of each value."""
    return [format_ds(v) for v in values]


def set_ds(ds: Dataset, keyword: str, values: float | Sequence[float]) -> None:
    """Set a DS attribute from numbers formatted here (so pydicom's own checks are not needed)."""
    items = [values] if isinstance(values, (int, float)) else list(values)
    text = ds_values(items)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    value: str | list[str] = text[0] if len(text) == 1 else text
    ds.add(DataElement(tag, "DS", value, validation_mode=config.IGNORE))


def sequence(items: Sequence[Dataset]) -> DicomSequence:
    """A DICOM sequence of ``items``."""
    return DicomSequence(list(items))


def reference(sop_class: str, sop_instance: str) -> Dataset:
    """A sequence item with Referenced SOP Class and Instance UIDs."""
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_instance
    return item


def check_text(value: str, limit: int, what: str) -> str:
    """``value`` stripped of backslashes and control characters; InputError if too long."""
    text = "".join(ch for ch in value if ch.isprintable() and ch != "\\").strip()
    if len(text) > limit:
        raise InputError(f"{what} {value!r} is longer than the {limit} characters DICOM allows")
    return text


def clip_text(value: str, limit: int, what: str) -> str:
    """``value`` cleaned like :func:`check_text`, cut to ``limit`` characters with a log note."""
    text = "".join(ch for ch in value if ch.isprintable() and ch != "\\").strip()
    if len(text) > limit:
        logger.info("%s %r cut to %d characters for DICOM", what, value, limit)
        text = text[:limit].rstrip()
    return text


def base_dataset(
    *,
    sop_class: str,
    modality: str,
    study: PatientStudy,
    identity: ExportIdentity,
    series_description: str,
    series_number: int,
) -> Dataset:
    """A dataset with file meta and the SOP Common, Patient, General Study, RT Series and
    General Equipment modules filled in.

    A Series Description longer than the 64 characters of its VR (LO) loses whole
    space-separated items from its end, marked by ``"..."`` (:func:`planning.rbe.record.fit_label`).

    The SOP Instance UID and Series Instance UID are new (roles ``"<modality>/sop"`` and
    ``"<modality>/series"``, so one seed gives distinct UIDs to a plan, its dose and its
    structures); patient and study attributes are the CT's.
    """
    sop_instance = identity.uid(f"{modality}/sop")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = f"IONPLAN_{__version__}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = identity.date
    ds.InstanceCreationTime = identity.time
    # No Timezone Offset From UTC (0008,0201): it would apply to every date and time of the
    # instance (PS3.3 C.12.1.1.8), the study's copied from the CT too, which another site may
    # have written in its own zone. IonPlan's own dates are the exporting machine's local time.
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    # Patient
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    # General Study
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    if study.study_description:
        ds.StudyDescription = study.study_description
    # RT Series
    ds.Modality = modality
    ds.SeriesInstanceUID = identity.uid(f"{modality}/series")
    ds.SeriesNumber = series_number
    ds.SeriesDate = identity.date
    ds.SeriesTime = identity.time
    ds.SeriesDescription = fit_label(
        "".join(ch for ch in series_description if ch.isprintable() and ch != "\\"), 64)
    ds.OperatorsName = ""
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "IonPlan treatment planning"
    ds.SoftwareVersions = __version__
    return ds


def write_dataset(ds: Dataset, path: PathLike) -> None:
    """Write ``ds`` as a Part 10 file (Explicit VR Little Endian), atomically.

    Raises
    ------
    OSError
        If the file cannot be written (the target is then left untouched).
    """
    # Encoded in memory first: pydicom wraps an error of the file it writes into a message
    # with its own traceback; the bytes are then written atomically (a full disk names the file).
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    with atomic_binary_file(path) as fh:
        fh.write(buffer.getbuffer())
    logger.info("wrote %s (%s)", path, ds.Modality)
