"""Who and what a saved document or picture is about: patient, plan, RBE model, date.

Every plan report, PDF page and saved picture carries this identification, and file names
are built from it (:mod:`planning.document.naming`), so that a file on disk can always be
traced back to its patient and plan.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from planning.patient import Patient


@dataclass(frozen=True)
class Identification:
    """The identification block of a document.

    Attributes
    ----------
    patient_name : str
        DICOM Patient's Name as imported (``"^"`` between name parts), or "" when unknown.
    patient_id : str
        DICOM Patient ID, or "" when unknown.
    plan_name : str
        The plan's name in IonPlan ("Plan 1") or the plan label.
    model : str
        One-line description of the RBE model of the doses shown.
    created : datetime.datetime
        When the document was made (local time, timezone-aware).
    """

    patient_name: str
    patient_id: str
    plan_name: str
    model: str
    created: datetime.datetime

    @property
    def patient_text(self) -> str:
        """"NAME, Given (ID 123)", with "Anonymous" and "-" for what is unknown."""
        name = ", ".join(p for p in self.patient_name.split("^") if p) or "Anonymous"
        return f"{name} (ID {self.patient_id or '-'})"

    @property
    def date_text(self) -> str:
        """Creation date and time with the offset of its time zone from UTC,
        ``YYYY-mm-dd HH:MM UTC+hh:mm`` (a time without a zone is taken as local time)."""
        return date_with_zone(self.created)

    def lines(self) -> list[str]:
        """Four lines: patient, plan, RBE model, date."""
        return [f"Patient: {self.patient_text}", f"Plan: {self.plan_name}",
                f"RBE model: {self.model}", f"Date: {self.date_text}"]

    def one_line(self) -> str:
        """Everything on one line, for page headers and picture banners."""
        return (f"{self.patient_text} | {self.plan_name} | {self.model} | "
                f"{self.date_text}")


def date_with_zone(when: datetime.datetime) -> str:
    """``when`` as ``YYYY-mm-dd HH:MM UTC+hh:mm`` in its own time zone (the machine's local
    zone when ``when`` has none), e.g. ``"2026-12-04 21:30 UTC+00:00"``."""
    aware = when if when.utcoffset() is not None else when.astimezone()
    offset = aware.utcoffset() or datetime.timedelta(0)
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{aware:%Y-%m-%d %H:%M} UTC{sign}{hours:02d}:{minutes:02d}"


def identification(patient: Patient | None, plan_name: str, model: str,
                   created: datetime.datetime | None = None) -> Identification:
    """The identification of a document about ``patient``'s plan ``plan_name`` (now when
    ``created`` is not given)."""
    study = patient.ct.study if patient is not None else None
    when = created if created is not None else datetime.datetime.now().astimezone()
    return Identification(study.patient_name if study else "",
                          study.patient_id if study else "", plan_name, model, when)
