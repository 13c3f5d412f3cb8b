"""The Fossati 2012 water cubes taken apart (not a timed test; tests/test_fossati2012.py plans the
same cubes and checks only the published mean).

For each cube (4, 8, 12 cm; gantry 90 and 270; 3.6 and 4.4 Gy(RBE) in one fraction, optimized under
mMKM) the target mean (dose-grid voxels whose centres lie in the PTV) of:

- the physical dose and the LETd,
- the mMKM NIRS clinical dose (the planner's; Inaniwa et al. 2015, HSG survival at the delivered
  dose against the reference radiation, F_clin = 2.41),
- a Kanai-type NIRS dose: a dose-independent clinical RBE = F x RBE_10 (HSG RBE at 10 % survival,
  HSG x-ray alpha 0.313 /Gy, beta 0.0615 /Gy^2; the ion alpha = alpha0 + beta z1D*_mix of the
  voxel, beta constant), F chosen so that the clinical RBE at the centre of the 6 cm SOBP is 2.41
  as in the mMKM system (the clinical dose of Kanai et al. 1999, which the NIRS treatment planning
  system used in Fossati et al. 2012, PMB 57:7543, defines the RBE at 10 % HSG survival);
- LEM I (chordoma class) with the central and the averaged rapid scheme,
- and (``--alpha-scale K``) LEM I central with every alpha_mix multiplied by K (beta_mix kept):
  the scale that meets Zhang et al. 2020 at the 6 cm SOBP centre is 1.10
  (tests/test_rbe_mixing.py::test_published_dose_dependence_needs_only_one_lem_alpha_scale).

Run: ``nice -n 5 python bench/lem_nirs_cubes.py [--sides 40,80,120] [--doses 3.6,4.4]``
(about 1-3 minutes per cube on this machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's planning

from planning import api
from planning.exchange import exchange_view
from planning.rbe import LemModel, MkmModel, depth_tables, tissue_by_name
from tests.test_fossati2012 import water_cube_patient

HSG_XRAY = (0.313, 0.0615)   # Friedrich et al. 2013, J Radiat Res 54:494, Fig. 8 caption
SOBP_CENTRE_HSG_ALPHA = 0.764  # bench/lem_nirs_sobp.py, planner's inputs


def dose_at_survival(alpha: np.ndarray, beta: float, effect: float = np.log(10.0)) -> np.ndarray:
    return 2.0 * effect / (alpha + np.sqrt(alpha * alpha + 4.0 * beta * effect))


def kanai_rbe(alpha_ion: np.ndarray, mkm: MkmModel) -> np.ndarray:
    rbe10 = dose_at_survival(np.array(HSG_XRAY[0]), HSG_XRAY[1]) / dose_at_survival(
        alpha_ion, mkm.beta_gy2)
    rbe10_centre = dose_at_survival(np.array(HSG_XRAY[0]), HSG_XRAY[1]) / dose_at_survival(
        np.array(SOBP_CENTRE_HSG_ALPHA), mkm.beta_gy2)
    return mkm.f_clin / rbe10_centre * rbe10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sides", default="40,80,120")
    parser.add_argument("--doses", default="3.6,4.4")
    parser.add_argument("--alpha-scale", type=float, default=1.10)
    args = parser.parse_args()
    mkm = MkmModel()
    print("side  NIRS  phys  LETd  mMKM  Kanai  LEMc   LEMa   LEMc-mMKM LEMa-mMKM LEMc-Kanai "
          f"LEMa-Kanai  report(LEMa-mMKM)  LEMc*{args.alpha_scale:g}-mMKM  s")
    rows = []
    for side in (float(s) for s in args.sides.split(",")):
        for nirs in (float(d) for d in args.doses.split(",")):
            t0 = time.perf_counter()
            patient = water_cube_patient(side)
            result = api.plan_patient(api.plan_request(
                patient, target="PTV", dose_gy_rbe=nirs, fractions=1,
                gantry_deg=[90.0, 270.0], spot_spacing_mm=6.0, grid_mm=4.0,
                optimization_grid_mm=4.0, exchange=True, device="cpu"))
            assert result.prepared is not None and result.exchange is not None
            engine, w = result.prepared.dose_engine(), result.plan.all_weights()
            averaged = result.exchange  # the plan's exchange view: the default scheme
            assert averaged.lem.tissue == tissue_by_name("chordoma", "averaged")
            central = exchange_view(engine, w, 1, mkm=mkm,
                                    lem=LemModel(tissue_by_name("chordoma", "central")))
            grid = central.dose_grid
            ptv = patient.structure_set.get("PTV").mask.to_dense()
            # dose grid = CT grid here (4 mm, same origin): check and use the mask directly
            assert ptv.shape == grid.shape, (ptv.shape, grid.shape)
            d = central.dose_gy[ptv].astype(np.float64)
            m = central.mkm_dose_gy_rbe[ptv].astype(np.float64)
            # invert the mMKM clinical dose for the HSG alpha of each voxel
            d_bio = m / mkm.f_clin
            eps = mkm.alpha_ref_gy * d_bio + mkm.beta_ref_gy2 * d_bio**2
            alpha_ion = (eps - mkm.beta_gy2 * d * d) / d
            k = kanai_rbe(alpha_ion, mkm) * d
            lc = central.lem_dose_gy_rbe[ptv].astype(np.float64)
            la = averaged.lem_dose_gy_rbe[ptv].astype(np.float64)
            letd = result.letd_kev_um[ptv].astype(np.float64)
            rep = result.report["exchange"]["structures"]["PTV"]
            lem_c = central.lem
            fwd = engine.forward(w, model_tables=depth_tables(engine.machine, lem_c),
                                 with_let=False)
            a_sum, b_sum = (np.asarray(q, dtype=np.float64) for q in fwd.model_sums)
            scaled = np.asarray(lem_c.rbe_weighted_dose_from_sums(
                fwd.dose_gy, (args.alpha_scale * a_sum, b_sum)), dtype=np.float64)
            ls = scaled.reshape(grid.shape)[ptv]
            row = (side, nirs, d.mean(), float(np.sum(letd * d) / d.sum()), m.mean(), k.mean(),
                   lc.mean(), la.mean(), ls.mean())
            rows.append(row)
            print(f"{side:4.0f} {nirs:5.2f} {d.mean():5.3f} {row[3]:5.1f} {m.mean():5.3f} "
                  f"{k.mean():5.3f} {lc.mean():6.3f} {la.mean():6.3f}  {lc.mean() - m.mean():+7.3f}"
                  f"  {la.mean() - m.mean():+7.3f}  {lc.mean() - k.mean():+7.3f}  "
                  f"{la.mean() - k.mean():+7.3f}   "
                  f"{rep['lem_mean_gy_rbe'] - rep['mkm_mean_gy_rbe']:+7.3f}"
                  f"           {ls.mean() - m.mean():+7.3f}"
                  f"  {time.perf_counter() - t0:5.0f}", flush=True)
    a = np.array(rows)
    print(f"mean of {len(rows)}: LEMc-mMKM {np.mean(a[:, 6] - a[:, 4]):+.3f}  "
          f"LEMa-mMKM {np.mean(a[:, 7] - a[:, 4]):+.3f}  "
          f"LEMc-Kanai {np.mean(a[:, 6] - a[:, 5]):+.3f}"
          f"  LEMa-Kanai {np.mean(a[:, 7] - a[:, 5]):+.3f}  "
          f"LEMc*{args.alpha_scale:g}-mMKM {np.mean(a[:, 8] - a[:, 4]):+.3f}  "
          f"LEMc*{args.alpha_scale:g}-Kanai {np.mean(a[:, 8] - a[:, 5]):+.3f}  "
          "(Fossati 2012: +0.45 +/- 0.09)")


if __name__ == "__main__":
    main()
