"""Plans made without the dose engine, for the workspace tests: random spots and weights, and
cubes shaped like a dose (a smooth bump on the target at the prescription)."""

from __future__ import annotations

import numpy as np

from planning.beams import Beam, SpotMap
from planning.dose_grid import DoseGrid
from planning.exchange import ExchangeView
from planning.patient import Patient
from planning.plan import BeamDoses, BeamPlan, Plan, Prescription
from planning.planner import PlanResult, grid_of
from planning.rbe import LemModel, MkmModel, Tissue

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
