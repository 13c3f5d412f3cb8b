"""Optimization regions generated around a structure: shells ("rings") at a distance from it.

Objectives name structures; besides the structure set's ROIs they may name a *generated*
region, written ``"<ROI> ring <A>-<B> mm"``: the voxels outside the ROI whose centre lies more
than ``A`` and at most ``B`` mm from the ROI's nearest voxel centre (Euclidean distance on the
CT grid, its voxel spacing in each axis), inside the body when the structure set has one (see
:func:`planning.structure_dose.body_mask`). ``A = 0`` starts at the ROI's surface.

Clinical planning systems call these optimization structures ("rings", "shells"): they hold
the dose down around a target, where nothing else in the structure set does. A real ROI of the
same name wins over the generated one.

The optimizer samples a ring that starts :data:`SMOOTH_FROM_MM` or more from its structure every
:data:`SMOOTH_SAMPLING_MM` (:mod:`planning.optimization_grid`): that far out the dose varies
over the pencil beams' lateral width (sigma >= 3 mm in the patient), so a 5 mm lattice sees its
maxima while the optimizer's matrices stay small. Reports and DVHs never use generated regions.
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt

from planning.errors import PlanningError
from planning.patient import Patient
from planning.structure_dose import body_structures

_RING = re.compile(r"^(?P<roi>.+) ring (?P<inner>\d+(?:\.\d+)?)-(?P<outer>\d+(?:\.\d+)?) mm$")


def ring_name(roi: str, inner_mm: float, outer_mm: float) -> str:
    """``"PTV ring 0-5 mm"``: the name of a generated shell (see the module docstring)."""
    return f"{roi} ring {inner_mm:g}-{outer_mm:g} mm"


def is_generated(name: str) -> bool:
    """Whether ``name`` has the form of a generated region."""
    return _RING.match(name) is not None


#: Rings starting this far from their structure (mm) are sampled on a coarser sub-lattice.
SMOOTH_FROM_MM = 5.0

#: Sampling distance of such rings in the optimizer, mm.
SMOOTH_SAMPLING_MM = 5.0


def ring_match(name: str) -> re.Match[str] | None:
    """The parts (``roi``, ``inner``, ``outer``) of a generated ring's name, or None."""
    return _RING.match(name)


def region_name(patient: Patient, name: str) -> str:
    """The name objectives and reports use: the ROI's own spelling (names match
    case-insensitively), or ``name`` itself for a generated region.

    Raises
    ------
    PlanningError
        As :func:`region_mask`, for a name that is neither (checked without computing the
        region's voxels).
    """
    ss = patient.structure_set
    if ss is not None:
        try:
            return ss.get(name).name
        except KeyError:
            pass
    _ring_parts(patient, name)  # raises for an unknown name
    return name


def region_mask(patient: Patient, name: str) -> NDArray[np.bool_]:
    """The voxels of structure or generated region ``name`` on the CT grid, (nz, ny, nx) bool.

    Raises
    ------
    PlanningError
        When ``name`` is neither a structure nor a generated region of one, or the ring's
        distances are not ``0 <= A < B``.
    """
    ss = patient.structure_set
    if ss is not None:
        try:
            return np.asarray(ss.get(name).mask.to_dense(), dtype=bool)
        except KeyError:
            pass
    inside, inner, outer = _ring_parts(patient, name)
    # The distances within the box of the structure grown by the outer distance (and a voxel):
    # every voxel of the structure is in it, so they are the whole volume's, and no voxel
    # outside it is within the outer distance (the TG-119 rings: 1.3 -> 0.1 s).
    spacing = np.asarray(patient.ct.spacing_mm, dtype=float)
    margin = np.ceil(outer / spacing).astype(int) + 1
    nonzero = np.nonzero(inside)
    box = tuple(slice(max(int(idx.min()) - m, 0), min(int(idx.max()) + m + 1, n))
                for idx, m, n in zip(nonzero, margin, inside.shape, strict=True))
    part = inside[box]
    distance_mm = distance_transform_edt(~part, sampling=spacing)
    ring = np.zeros_like(inside)
    ring[box] = (distance_mm > inner) & (distance_mm <= outer) & ~part
    body = _body_on_ct(patient)
    return ring & body if body is not None else ring


def _ring_parts(patient: Patient, name: str) -> tuple[NDArray[np.bool_], float, float]:
    """The voxels of the structure that the generated ring ``name`` (no structure's name)
    surrounds and the ring's inner and outer distances (mm); PlanningError when ``name`` is
    no valid ring."""
    ss = patient.structure_set
    if ss is None:
        raise PlanningError(f"the CT has no structure set, so no structure {name!r}")
    match = _RING.match(name)
    if match is None:
        raise PlanningError(f"no structure named {name!r}; structures: {', '.join(ss.names)}")
    roi, inner, outer = match["roi"], float(match["inner"]), float(match["outer"])
    if not inner < outer:
        raise PlanningError(f"ring {name!r}: the inner distance must be less than the outer "
                            f"one, got {inner:g}-{outer:g} mm")
    try:
        inside = np.asarray(ss.get(roi).mask.to_dense(), dtype=bool)
    except KeyError:
        raise PlanningError(f"ring {name!r}: no structure {roi!r} to put a ring around"
                            ) from None
    if not inside.any():
        raise PlanningError(f"ring {name!r}: structure {roi!r} has no voxels"
                            + ss.empty_structure_text(roi))
    return inside, inner, outer


def _body_on_ct(patient: Patient) -> NDArray[np.bool_] | None:
    for s in body_structures(patient):
        mask = np.asarray(s.mask.to_dense(), dtype=bool)
        if mask.any():
            return mask
    return None
