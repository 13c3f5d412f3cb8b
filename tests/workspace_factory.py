"""Plans made without the dose engine, for the workspace tests: random spots and weights, and
cubes shaped like a dose (a smooth bump on the target at the prescription); robust
evaluations of them whose scenario doses are the plan's, scaled."""

from __future__ import annotations

import numpy as np

from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.evaluation import doses_at_volumes
from planning.exchange import ExchangeView
from planning.patient import Patient
from planning.plan import BeamDoses, BeamPlan, Plan, Prescription
from planning.planner import PlanResult, grid_of
from planning.rbe import LemModel, MkmModel, Tissue
from planning.robust import RobustResult

PRESCRIPTION_GY_RBE = 57.6


def synthetic_plan_result(patient: Patient, seed: int, *, grid_mm: float = 8.0,
                          target: str = "PTV") -> PlanResult:
    """A two-beam LEM I plan on ``patient`` with its exchange view; every value random but
    valid (the workspace format does not care about physics)."""
    rng = np.random.default_rng(seed)
    grid = DoseGrid.covering(grid_of(patient.ct), grid_mm)
    centres = grid.voxel_centers_lps().reshape((*grid.shape, 3))
    mask = patient.structure_set.get(target).mask if patient.structure_set else None
    ct = grid_of(patient.ct)
    if mask is not None:
        iso = ct.voxel_centers_lps(np.flatnonzero(mask.to_dense())).mean(axis=0)
    else:
        iso = centres.reshape(-1, 3).mean(axis=0)
    r2 = ((centres - iso) ** 2).sum(axis=-1)
    bump = np.exp(-r2 / (2 * 25.0**2)).astype(np.float32)
    beams = []
    for k, gantry in enumerate((90.0, 270.0)):
        n = 7 + k
        spots = SpotMap(rng.uniform(150, 300, n), np.arange(n), 5.0 * rng.integers(-4, 4, n),
                        5.0 * rng.integers(-4, 4, n), (5.0, 5.0))
        beam = Beam((float(iso[0]), float(iso[1]), float(iso[2])), gantry, 10.0 * k,
                    f"B{k}", "HFS")
        beams.append(BeamPlan(beam, spots, rng.uniform(0, 3, n), 2.5 * k))
    model = LemModel(Tissue("chordoma", 0.1, 0.05, 30.0))
    plan = Plan("IonPlan", "generic", tuple(beams), Prescription(target, PRESCRIPTION_GY_RBE, 16),
                model.describe(), notes=("made by a test",), rbe=model,
                beam_doses=BeamDoses((1.0, 2.0, 3.0), (0.5, 0.25), (1.5, 0.75)))

    def cube(scale: float) -> np.ndarray:
        noise = rng.random(grid.shape, dtype=np.float32) * np.float32(0.01)
        return (bump * np.float32(scale) + noise).astype(np.float32)

    rbe_dose = cube(PRESCRIPTION_GY_RBE)
    exchange = ExchangeView(grid, cube(20.0), cube(50.0), rbe_dose, cube(1.2), MkmModel(),
                            model, 16)
    return PlanResult(plan, patient, grid, cube(20.0), rbe_dose, cube(60.0), cube(3.0), model,
                      report={"rbe_model": model.describe(), "optimizer": {"iterations": 12},
                              "warnings": [], "timings_s": {}},
                      exchange=exchange, beam_physical_dose_gy=(cube(10.0), cube(10.0)))


def synthetic_robust(result: PlanResult, scales: tuple[float, ...] = (1.0, 0.9, 1.08)
                     ) -> RobustResult:
    """A robust evaluation of ``result`` made without the dose engine: the range scenarios
    of a 3.5 % stopping-power error (no setup error), scenario k's doses being
    ``scales[k]`` x the plan's (``scales[0]`` the nominal one, 1). Its report entries are
    computed as :func:`planning.robust.evaluate_robustness` computes them, and added to
    ``result.report``."""
    from planning.robust import (
        BAND_VOLUME_PERCENT,
        RobustSettings,
        make_scenarios,
        structure_metrics,
        worst_case,
    )
    from planning.structure_dose import sampled_structures

    settings = RobustSettings(range_error_pct=3.5, setup_error_mm=0.0)
    scenarios = make_scenarios(settings)
    assert len(scenarios) == len(scales)
    samples = {s.name: d for s, d in sampled_structures(result.patient, result.dose_grid)}
    rbe = [(result.rbe_dose_gy_rbe * np.float32(k)).astype(np.float32) for k in scales]
    phys = [(result.physical_dose_gy * np.float32(k)).astype(np.float32) for k in scales]
    rows = [{"name": sc.name, "range_error_pct": sc.range_error_pct,
             "shift_mm": list(sc.shift_mm), "seconds": 0.0,
             "structures": structure_metrics(r, p, samples)}
            for sc, r, p in zip(scenarios, rbe, phys, strict=True)]
    bands = {}
    for name, s in samples.items():
        at = np.stack([doses_at_volumes(s.dose(r), BAND_VOLUME_PERCENT, s.volume_mm3)
                       for r in rbe])
        bands[name] = {"volume_percent": list(BAND_VOLUME_PERCENT),
                       "dose_min_gy_rbe": [round(float(x), 4) for x in at.min(axis=0)],
                       "dose_max_gy_rbe": [round(float(x), 4) for x in at.max(axis=0)],
                       "dose_nominal_gy_rbe": [round(float(x), 4) for x in at[0]]}
    result.report.update({
        "robust": {"range_error_pct": 3.5, "setup_error_mm": 0.0, "setup_directions": 6,
                   "combined": False, "combined_only": False, "n_scenarios": len(scenarios)},
        "scenarios": rows, "worst_case": {"structures": worst_case(rows)},
        "dvh_bands_gy_rbe": bands})
    return RobustResult(result, np.minimum.reduce(rbe), np.maximum.reduce(rbe),
                        np.minimum.reduce(phys), np.maximum.reduce(phys), scenarios)
