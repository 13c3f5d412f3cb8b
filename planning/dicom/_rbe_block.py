"""IonPlan's private DICOM block with the RBE model record (docs/dicom.md).

First-generation RT Ion Plan and RT Dose objects have no standard attribute for the RBE model
and its parameters, so IonPlan writes the record of :func:`planning.rbe.record.model_record`
as JSON text in a private block: group 0x0071, Private Creator (0071,0010) =
``"IonPlan RBE model 1"``, the record at element offset 0x00, i.e. (0071,1000), VR UT.
Readers find the block by its creator, wherever another writer put the block's slot.
"""

from __future__ import annotations

import json
from typing import Any

from pydicom.dataset import Dataset

from planning.dicom._values import PathLike, reading
from planning.dicom.errors import DicomImportError
from planning.errors import IonPlanError
from planning.rbe import RbeModel
from planning.rbe.record import (
    StructureTissues,
    model_from_record,
    model_record,
    structure_tissues_from_record,
)

PRIVATE_GROUP = 0x0071
PRIVATE_CREATOR = "IonPlan RBE model 1"
#: Element offset of the JSON record within the block.
RECORD_OFFSET = 0x00


def write_rbe_block(ds: Dataset, model: RbeModel,
                    structure_tissues: StructureTissues = ()) -> None:
    """Add the private block with the record of ``model`` (and of the LEM I tissues per
    structure the dose was computed with, if any) to ``ds``."""
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(RECORD_OFFSET, "UT",
                  json.dumps(model_record(model, structure_tissues), sort_keys=True))


def read_rbe_block(ds: Dataset, path: PathLike
                   ) -> tuple[RbeModel, StructureTissues] | None:
    """The RBE model recorded in ``ds``'s private block and the LEM I tissues per structure it
    names (empty when none); None when the block is absent.

    Raises
    ------
    DicomImportError
        A block whose record is not valid JSON or not a valid IonPlan RBE model record.
    """
    with reading(path, "cannot read IonPlan's RBE model block"):
        try:
            block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
        except KeyError:
            return None
        if RECORD_OFFSET not in block:
            return None
        value: Any = block[RECORD_OFFSET].value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    try:
        record = json.loads(text)
        return model_from_record(record), structure_tissues_from_record(record)
    except (ValueError, IonPlanError) as exc:
        raise DicomImportError(path, f"the RBE model record in the private block "
                                     f"{PRIVATE_CREATOR!r}: {exc}") from None
