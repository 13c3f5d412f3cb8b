"""RBE models: mMKM with the NIRS/QST clinical dose, LEM I, constant RBE and physical dose.

See :mod:`planning.rbe.models` for the common interface, :mod:`planning.rbe.mkm` and
:mod:`planning.rbe.lem` for the models, :mod:`planning.rbe.track` for the track structure and
:mod:`planning.rbe.tables` for the machine depth tables and the ``rbe-table`` rows.
"""

from planning.rbe.lem import DEFAULT_TISSUES, LemModel, Tissue, parse_tissue, tissue_by_name
from planning.rbe.mkm import MkmModel
from planning.rbe.models import (
    ConstantRbe,
    ParticleTable,
    PhysicalDose,
    RbeGradient,
    RbeModel,
    dose_unit_of,
    prescription_unit_of,
)
from planning.rbe.tables import DepthTables, RbeTableRow, depth_tables, rbe_table_rows

__all__ = [
    "DEFAULT_TISSUES",
    "ConstantRbe",
    "DepthTables",
    "LemModel",
    "MkmModel",
    "ParticleTable",
    "PhysicalDose",
    "RbeGradient",
    "RbeModel",
    "RbeTableRow",
    "Tissue",
    "depth_tables",
    "dose_unit_of",
    "parse_tissue",
    "prescription_unit_of",
    "rbe_table_rows",
    "tissue_by_name",
]
