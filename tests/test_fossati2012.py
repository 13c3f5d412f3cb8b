"""The published LEM I / NIRS benchmark through the planner: Fossati et al. 2012.

P. Fossati, S. Molinelli, N. Matsufuji et al., "Dose prescription in carbon ion radiotherapy:
a planning study to compare NIRS and LEM approaches with a clinically-oriented strategy",
Phys. Med. Biol. 57 (2012) 7543: cube and sphere targets of 4-12 cm in water, two opposed
fields, NIRS prescriptions of 3.6-4.4 Gy(RBE) per fraction; the LEM I (alpha_x/beta_x = 2 Gy)
RBE-weighted dose of the same plans is 0.45 +/- 0.09 Gy(RBE) per fraction higher (as summarised
in IonPlan issue 13). Here: water cubes of 4, 8 and 12 cm, gantry 90 and 270, optimized to 3.6
and 4.4 Gy(RBE) in one fraction under mMKM (the NIRS clinical dose), the target-mean LEM I
(chordoma class: alpha_x 0.1 /Gy, beta_x 0.05 /Gy^2, D_t 30 Gy) minus mMKM dose; accepted:
the mean over the six cases within 0.45 +/- 0.15 Gy(RBE).
"""

from __future__ import annotations

import numpy as np
import pytest

from planning import api
from planning.hlut import default_hlut
from planning.patient import CtVolume, Patient, PatientStudy, RoiMask, Structure, StructureSet

CUBES_MM = (40.0, 80.0, 120.0)
NIRS_GY_RBE = (3.6, 4.4)
FOSSATI_LEM_MINUS_NIRS_GY_RBE = 0.45
TOLERANCE_GY_RBE = 0.15


def water_cube_patient(side_mm: float, voxel_mm: float = 4.0) -> Patient:
    """A water box (HU of relative stopping power 1 in the default HLUT) holding a centred
    cubic target ``PTV`` of side ``side_mm``; 30 mm of water around it laterally, 40 mm along
    the beams (x)."""
    hu_axis = np.arange(-1000.0, 3000.0, 1.0)
    hu_water = round(float(np.interp(1.0, default_hlut().hu_to_rsp(hu_axis), hu_axis)))
    half = (side_mm / 2 + 30.0, side_mm / 2 + 30.0, side_mm / 2 + 40.0)  # z, y, x
    shape = tuple(2 * int(np.ceil(h / voxel_mm)) for h in half)  # even: no voxel on an edge
    axes = [(np.arange(n) - (n - 1) / 2) * voxel_mm for n in shape]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    cube = np.maximum(np.maximum(np.abs(xx), np.abs(yy)), np.abs(zz)) <= side_mm / 2
    study = PatientStudy("Fossati^Cube", "FOSSATI", "", "O", "1.2.826.0.1.1", "1", "", "", "",
                         "")
    ct = CtVolume(np.full(shape, hu_water, dtype=np.int16), (voxel_mm,) * 3,
                  tuple(float(a[0]) for a in axes[::-1]), "HFS", (1, 0, 0, 0, 1, 0),
                  "1.2.826.0.1.2", "1.2.826.0.1.3",
                  tuple(f"1.2.826.0.1.4.{k}" for k in range(shape[0])), study)
    structures = (Structure("Body", 1, "EXTERNAL", None, RoiMask.from_dense(np.ones(shape, bool))),
                  Structure("PTV", 2, "PTV", None, RoiMask.from_dense(cube)))
    return Patient(ct, StructureSet(structures, "1.2.826.0.1.2", "1.2.826.0.1.5",
                                    "1.2.826.0.1.6"))


def lem_minus_nirs_gy_rbe(side_mm: float, nirs_gy_rbe: float) -> float:
    """Target-mean LEM I minus mMKM dose (Gy(RBE)) of a plan optimized under mMKM."""
    result = api.plan_patient(api.plan_request(
        water_cube_patient(side_mm), target="PTV", dose_gy_rbe=nirs_gy_rbe, fractions=1,
        gantry_deg=[90.0, 270.0], spot_spacing_mm=6.0, grid_mm=4.0, optimization_grid_mm=4.0,
        exchange=True, device="cpu"))
    ptv = result.report["exchange"]["structures"]["PTV"]
    assert ptv["mkm_mean_gy_rbe"] == pytest.approx(nirs_gy_rbe, rel=0.02)
    return float(ptv["lem_mean_gy_rbe"] - ptv["mkm_mean_gy_rbe"])


def test_water_cube_is_water_and_centred() -> None:
    patient = water_cube_patient(40.0)
    assert float(default_hlut().hu_to_rsp(np.array([patient.ct.hu.flat[0]]))[0]) == (
        pytest.approx(1.0, abs=0.002))
    ptv = patient.structure_set.get("PTV").mask.to_dense()
    assert int(ptv.sum()) == 10**3  # 40 mm / 4 mm voxels per side
    assert np.array_equal(ptv, ptv[::-1, ::-1, ::-1])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="IonPlan's LEM I - mMKM on these cubes is +0.20 / +0.35 / "
                   "+0.44 Gy(RBE) at 3.6 and -0.06 / +0.09 / +0.18 at 4.4 Gy(RBE)/fx (4 / 8 / "
                   "12 cm; mean +0.20, generator 1.4.0, averaged rapid scheme, the default since "
                   "2026-12-07; +0.12 with the central one), below Fossati 2012's 0.45 +/- 0.09: "
                   "no implementation error found; the LEM I alpha at the 6 cm SOBP centre is one "
                   "scale (1.06 averaged, 1.10 central) below what Zhang 2020 and Fossati need, "
                   "and Fossati's NIRS dose is the Kanai-type clinical system (+0.03 Gy(RBE) "
                   "here); docs/physics.md, 'The published LEM/NIRS benchmark'")
def test_lem_minus_nirs_on_opposed_field_water_cubes() -> None:
    diffs = [lem_minus_nirs_gy_rbe(side, dose) for side in CUBES_MM for dose in NIRS_GY_RBE]
    assert float(np.mean(diffs)) == pytest.approx(FOSSATI_LEM_MINUS_NIRS_GY_RBE,
                                                  abs=TOLERANCE_GY_RBE), diffs
