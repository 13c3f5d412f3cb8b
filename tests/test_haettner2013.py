"""The generic machine's 400 MeV/u depth dose against the measurement of Haettner et al. 2013.

E. Haettner, H. Iwase, M. Kraemer, G. Kraft, D. Schardt, "Experimental study of nuclear
fragmentation of 200 and 400 MeV/u 12C ions in water for applications in particle therapy",
Phys. Med. Biol. 58 (2013) 8265: ionization in a large-area chamber behind a water column, 12C
at 400 MeV/u, no ripple filter. Digitised curve as distributed with Geant4 (tests/data/
haettner2013, provenance in its README). Comparison as in IonPlan issue 13: both curves
normalised at the first measured depth (2.23 cm on the data's axis), peaks aligned; ratios
dose(200 mm) / entrance 1.05 +/- 0.05, dose(peak + 5 mm) / entrance 0.46 +/- 0.05,
dose(peak + 55 mm) / entrance 0.31 +/- 0.05 and peak / entrance 3.45 +/- 10 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planning.machine_generator import CarbonMachineGenerator, EnergyData, GeneratorSettings

DATA = Path(__file__).parent / "data" / "haettner2013" / "400tdk.dat"
#: Ratio: (measured value, absolute tolerance).
MEASURED = {"200 mm": (1.05, 0.05), "peak + 5 mm": (0.46, 0.05), "peak + 55 mm": (0.31, 0.05),
            "peak": (3.45, 0.345)}
#: Ratios where the generator's fragmentation (fixed multiplicities, energy-independent
#: cross-sections, no transport of the fragments' own reactions) is short of the measurement.
SHORT_OF_MEASUREMENT = ("200 mm", "peak + 5 mm", "peak + 55 mm")


def _measured() -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(DATA, skiprows=2)
    return 10.0 * data[:, 0], data[:, 1]  # depth mm on the data's axis, ionization


def _ratios(depth_mm: np.ndarray, dose: np.ndarray, entrance_mm: float, peak_mm: float
            ) -> dict[str, float]:
    entrance = float(np.interp(entrance_mm, depth_mm, dose))
    return {"200 mm": float(np.interp(200.0, depth_mm, dose)) / entrance,
            "peak + 5 mm": float(np.interp(peak_mm + 5.0, depth_mm, dose)) / entrance,
            "peak + 55 mm": float(np.interp(peak_mm + 55.0, depth_mm, dose)) / entrance,
            "peak": float(dose.max()) / entrance}


@pytest.fixture(scope="module")
def beam() -> EnergyData:
    return CarbonMachineGenerator(GeneratorSettings(ripple_filter_sigma_mm=0.0)).generate_energy(
        400.0)


@pytest.fixture(scope="module")
def model_ratios(beam: EnergyData) -> dict[str, float]:
    depth, ion = _measured()
    peak_mm = float(depth[np.argmax(ion)])
    shifted = beam.depth_mm + (peak_mm - beam.peak_depth_mm)  # peaks aligned
    return _ratios(shifted, beam.idd_mev_cm2_per_g, float(depth[0]), peak_mm)


def test_digitised_curve_gives_the_published_ratios() -> None:
    depth, ion = _measured()
    assert float(depth[np.argmax(ion)]) == pytest.approx(275.0, abs=0.1)
    got = _ratios(depth, ion, float(depth[0]), float(depth[np.argmax(ion)]))
    for name, (value, tol) in MEASURED.items():
        # The rounded numbers; the peak within its 10 % band (3.52 as digitised).
        assert got[name] == pytest.approx(value, abs=tol if name == "peak" else 0.02), name


def test_peak_to_entrance_ratio(model_ratios: dict[str, float]) -> None:
    value, tol = MEASURED["peak"]
    assert model_ratios["peak"] == pytest.approx(value, abs=tol)


@pytest.mark.parametrize("name", sorted(SHORT_OF_MEASUREMENT))
@pytest.mark.xfail(strict=True, reason="fragment tail and plateau short of Haettner 2013 "
                   "(issue 13, item 1 open): IonPlan 0.86 / 0.27 / 0.19 at 200 mm / peak + 5 / "
                   "peak + 55 mm against 1.05 / 0.46 / 0.31; docs/physics.md")
def test_fragment_tail_and_plateau_ratios(model_ratios: dict[str, float], name: str) -> None:
    value, tol = MEASURED[name]
    assert model_ratios[name] == pytest.approx(value, abs=tol)

