"""The fragments' angular spread against the angular distributions of Haettner et al. 2013.

E. Haettner, H. Iwase, M. Kraemer, G. Kraft, D. Schardt, Phys. Med. Biol. 58 (2013) 8265:
12C at 400 MeV/u behind water of 5.9 and 15.9 cm, fragments per primary and steradian against
the angle to the beam (degrees), digitised as distributed with Geant4 (tests/data/haettner2013/
angular, provenance in tests/data/haettner2013/README.md).

The machine's lateral halo is the dose-weighted spread of its fragments (docs/physics.md): each
is emitted with Goldhaber's angle (:meth:`FragmentSpecies.emission_sigma_rad`) at the
primary's velocity and scatters (Highland) after the primary has scattered before it. The same
ingredients (the generator's species, multiplicities, cross-sections, emission angles and
scattering power) give here the fragments' directions rather than their positions: per birth
slice of the primaries' reactions, the fragment's emission angle, its own scattering after
birth and the primary's angular spread at birth (where the generator's position variance has
the primary's lateral spread), for the fragments made by the primaries themselves, a sum of
two-dimensional Gaussians per element. This tests those ingredients, not the generator's
tables. Hydrogen is left out (at these depths most protons come from the fireball and from
the fragments' own reactions, which this sum does not follow; the measured hydrogen also
extends far beyond the measured 6-10 degrees).

Compared: the yield inside the measured angles (the measured distribution integrated over the
solid angle, log-linear between points, duplicates averaged), and the projected root-mean-square
angle over the same cone, the second moment that a lateral dose spread depends on. Helium, the
heavy fragment that carries most of the halo's dose, is within 7 %; the heavier fragments are
narrower where their measured distributions have tails (tertiary fragments, the evaporation of
an excited prefragment; for boron a flat 0.38 /sr floor at 4-6 degrees) that one Goldhaber
Gaussian per isotope lacks: Li at 5.9 cm, Be at 15.9 cm (its heavier isotopes 9Be and 10Be
leave at smaller angles than 7Be) and B (strict xfail; docs/physics.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planning.machine_generator import CarbonMachineGenerator, GeneratorSettings
from planning.physics.scattering import (
    HIGHLAND_MEV,
    WATER_RADIATION_LENGTH_MM,
    highland_log_factor,
    p_beta_c_mev,
)

DATA = Path(__file__).parent / "data" / "haettner2013" / "angular"
ENERGY_MEV_U = 400.0
DEPTHS_CM = (5.9, 15.9)
Z_OF = {"He": 2, "Li": 3, "Be": 4, "B": 5}


def _measured(name: str, depth_cm: float) -> tuple[np.ndarray, np.ndarray]:
    """Angles (deg, >= 0, sorted; points at the same angle averaged) and fragments / sr."""
    data = np.loadtxt(DATA / f"{name}{depth_cm}.dat", skiprows=2)
    angle = np.round(np.abs(data[:, 0]), 1)
    uniq = np.unique(angle)
    amount = np.array([data[angle == a, 1].mean() for a in uniq])
    return uniq, amount


def _cone_moments(theta_rad: np.ndarray, per_sr: np.ndarray) -> tuple[float, float]:
    """Yield inside the cone and projected rms angle (deg) of a distribution per steradian on
    fine angles from 0 to the cone's edge (small angles: dOmega = 2 pi theta dtheta)."""
    n = float(np.trapezoid(per_sr * 2 * np.pi * theta_rad, theta_rad))
    second = float(np.trapezoid(per_sr * np.pi * theta_rad**3, theta_rad)) / n  # per axis
    return n, float(np.degrees(np.sqrt(second)))


def _measured_moments(name: str, depth_cm: float) -> tuple[float, float, float]:
    angle, amount = _measured(name, depth_cm)
    theta = np.linspace(0.0, angle.max(), 4000)
    per_sr = np.exp(np.interp(theta, angle, np.log(amount)))
    n, rms = _cone_moments(np.radians(theta), per_sr)
    return n, rms, float(angle.max())


@pytest.fixture(scope="module")
def model() -> dict[tuple[str, float], tuple[float, float]]:
    return model_moments()


def model_moments() -> dict[tuple[str, float], tuple[float, float]]:
    """(element, depth cm) -> (yield in the measured cone, projected rms angle deg)."""
    gen = CarbonMachineGenerator(GeneratorSettings(ripple_filter_sigma_mm=0.0))
    prim = gen.primary
    r0 = float(prim.range_energy.range_mm(ENERGY_MEV_U))
    out = {}
    for depth_cm in DEPTHS_CM:
        per_sr: dict[str, np.ndarray] = {}
        cones: dict[str, np.ndarray] = {}
        d = 10.0 * depth_cm
        dz = 0.5
        zb = np.arange(dz / 2, d, dz)  # birth slices, mm
        born = prim.survival(r0, r0 - (zb - dz / 2)) - prim.survival(r0, r0 - (zb + dz / 2))
        e_birth = prim.range_energy.energy_mev_u(r0 - zb)
        # The primary's angular variance at each birth depth (its own scattering power).
        nodes = np.linspace(0.0, 1.0, 400)
        prim_var = np.empty(zb.size)
        for i, z in enumerate(zb):
            zz = z * nodes
            e = prim.range_energy.energy_mev_u(r0 - zz)
            power = (HIGHLAND_MEV * prim.z / p_beta_c_mev(e, prim.a)) ** 2
            prim_var[i] = (np.trapezoid(power, zz) / WATER_RADIATION_LENGTH_MM
                           * highland_log_factor(z) ** 2)
        for frag, species in gen.fragments:
            name = next((k for k, z in Z_OF.items() if z == frag.z), None)
            if name is None:
                continue
            path = d - zb
            r_birth = species.range_energy.range_mm(e_birth)
            alive = np.where(r_birth > path,
                             species.survival(r_birth, np.maximum(r_birth - path, 0.0)), 0.0)
            weight = born * frag.multiplicity * alive
            var = (frag.emission_sigma_rad(e_birth) ** 2
                   + (HIGHLAND_MEV * frag.z / p_beta_c_mev(e_birth, species.a)) ** 2
                   / WATER_RADIATION_LENGTH_MM * path * highland_log_factor(path) ** 2
                   + prim_var)
            _, _, edge_deg = _measured_moments(name, depth_cm)
            theta = np.radians(np.linspace(0.0, edge_deg, 4000))
            per_sr[name] = per_sr.get(name, 0.0) + (
                weight / (2 * np.pi * var) * np.exp(-theta[:, None] ** 2 / (2 * var))).sum(axis=1)
            cones[name] = theta
        for name, theta in cones.items():  # every isotope of an element together
            out[(name, depth_cm)] = _cone_moments(theta, per_sr[name])
    return out


def test_measured_distributions_integrate_to_the_measured_yields() -> None:
    """Units check of the digitised files (fragments per primary and steradian): the cone
    integrals are the yields of the same experiment (TDK*.dat, interpolated to the depth)
    within 0.89-1.08 (0.896-1.070 on 2026-12-06), boron at 15.9 cm 1.25 (its flat 0.38 /sr at
    4 and 6 degrees; within 1.20-1.30)."""
    yields = {"He": "TDKHe.dat", "Li": "TDKLi.dat", "Be": "TDKBe.dat", "B": "TDKB.dat"}
    for name, file in yields.items():
        data = np.loadtxt(DATA.parent / file, skiprows=2)
        for depth_cm in DEPTHS_CM:
            total = float(np.interp(depth_cm, data[:, 0], data[:, 1]))
            cone, _, _ = _measured_moments(name, depth_cm)
            low, high = (1.20, 1.30) if (name, depth_cm) == ("B", 15.9) else (0.89, 1.08)
            assert low * total <= cone <= high * total, (name, depth_cm, cone, total)


@pytest.mark.parametrize("depth_cm", DEPTHS_CM)
@pytest.mark.parametrize("name", sorted(Z_OF))
def test_fragments_in_the_measured_cone(model, name: str, depth_cm: float) -> None:  # type: ignore[no-untyped-def]
    """The primaries' own fragments inside the measured angles: within 20 % (0.88-1.19 on
    2026-12-06, generator 1.4.0; He at 15.9 cm 0.88: part of its helium comes from the
    fragments' reactions, not summed here). The multiplicities were set from the yields at
    5.7 cm, so 5.9 cm checks the units and 15.9 cm the attenuation and build-up."""
    measured, _, _ = _measured_moments(name, depth_cm)
    assert model[(name, depth_cm)][0] == pytest.approx(measured, rel=0.20)


#: (element, depth cm) whose projected rms angle is within 20 % of the measured one (model /
#: measured on 2026-12-06, generator 1.4.0): He 0.99 / 0.93, Be 0.83 at 5.9 cm, Li 0.85 at 15.9 cm.
WITHIN_20_PERCENT = (("He", 5.9), ("He", 15.9), ("Be", 5.9), ("Li", 15.9))
#: The narrower ones: Li 0.74 at 5.9 cm, Be 0.72 at 15.9 cm, B 0.63 / 0.48.
NARROWER = (("Li", 5.9), ("Be", 15.9), ("B", 5.9), ("B", 15.9))


@pytest.mark.parametrize(("name", "depth_cm"), WITHIN_20_PERCENT)
def test_angular_spread_within_20_percent(model, name: str, depth_cm: float) -> None:  # type: ignore[no-untyped-def]
    """Projected rms angle within 20 % of the measured one (numbers at WITHIN_20_PERCENT)."""
    _, measured, _ = _measured_moments(name, depth_cm)
    assert model[(name, depth_cm)][1] == pytest.approx(measured, rel=0.20)


@pytest.mark.parametrize(("name", "depth_cm"), NARROWER)
@pytest.mark.xfail(strict=True, reason="one Goldhaber Gaussian per isotope is narrower than the "
                   "measured distributions of the heavier fragments, which have tails (model / "
                   "measured rms angle: Li 0.74 at 5.9 cm, Be 0.72 at 15.9 cm, B 0.63 / 0.48); "
                   "issue 13, docs/physics.md")
def test_angular_spread_of_the_narrower_fragments(model, name: str, depth_cm: float) -> None:  # type: ignore[no-untyped-def]
    _, measured, _ = _measured_moments(name, depth_cm)
    assert model[(name, depth_cm)][1] == pytest.approx(measured, rel=0.20)
