"""Nuclear reaction cross-sections and reaction products of the machine generator.

Tripathi et al. 1996 (Nucl Instrum Meth B 117:347; NASA TP-3621, 1997) and 1997 (Nucl Instrum
Meth B 129:11) against the values quoted in ../shared/PHYSICS.md (C+O about 1.0 b and C+p
about 0.22 b at 200-400 MeV/u, as from Kox and Sihver) and the published behaviour (a rise
below about 100 MeV/u); 12C + 12C against Geant4's implementation of the same formula and the
measured values its manual lists; conservation of charge and nucleons by the reaction-product
tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planning.physics.nuclear import (
    CARBON_FRAGMENT_ELEMENTS,
    CARBON_FRAGMENTS,
    FRAGMENT_ISOTOPES,
    FRAGMENT_PRODUCTS,
    fireball,
    reaction_products,
    sihver_cross_section_mb,
    tripathi_cross_section_mb,
    water_cross_section_per_mm,
)

SPECIES = tuple((f.z, f.a) for f in CARBON_FRAGMENTS)


@pytest.mark.parametrize("energy", [200.0, 300.0, 400.0])
def test_carbon_cross_sections_at_therapy_energies(energy: float) -> None:
    assert float(tripathi_cross_section_mb(12, 6, 16, 8, energy)) == pytest.approx(1000, rel=0.05)
    assert float(tripathi_cross_section_mb(12, 6, 1, 1, energy)) == pytest.approx(220, rel=0.06)
    # The energy-independent high-energy form (Sihver 1993) agrees there.
    assert float(tripathi_cross_section_mb(12, 6, 16, 8, energy)) == pytest.approx(
        sihver_cross_section_mb(12, 16), rel=0.03)


#: 12C + 12C total reaction cross-section, mb, of Tripathi's formula as Geant4 implements it
#: (G4TripathiCrossSection), from the Geant4 Physics Reference Manual ("Total Reaction Cross
#: Section in Nucleus-nucleus Reactions", table "Representative total reaction cross
#: sections"), by lab energy in MeV/u.
GEANT4_TRIPATHI_CARBON_ON_CARBON_MB = {30.0: 1269.24, 83.0: 989.96, 200.0: 864.56}


@pytest.mark.parametrize("energy", sorted(GEANT4_TRIPATHI_CARBON_ON_CARBON_MB))
def test_carbon_on_carbon_against_geant4(energy: float) -> None:
    """The formula as implemented here against an independent implementation of it (Geant4's):
    within 0.7 % at 83 and 200 MeV/u (found: +0.6 % and +0.26 %) and 2 % at 30 MeV/u (+1.5 %,
    where the Coulomb and c.m.-energy terms matter, below the therapy range). Against the
    measured values the same table lists (not asserted: that is the formula's own accuracy,
    docs/physics.md): 1289 / 996 / 867 mb against 1316 +/- 40, 965 +/- 30 and 864 +/- 45
    (Geant4's: 1269 / 990 / 865)."""
    value = float(tripathi_cross_section_mb(12, 6, 12, 6, energy))
    assert value == pytest.approx(GEANT4_TRIPATHI_CARBON_ON_CARBON_MB[energy],
                                  rel=0.02 if energy < 50 else 0.007)


def test_cross_sections_rise_at_low_energy_and_are_symmetric() -> None:
    e = np.array([30.0, 80.0, 200.0])
    c_o = tripathi_cross_section_mb(12, 6, 16, 8, e)
    assert c_o[0] > c_o[1] > c_o[2]
    assert c_o[1] / c_o[2] == pytest.approx(1.15, abs=0.06)
    # At equal velocity the projectile and target may be exchanged.
    np.testing.assert_allclose(tripathi_cross_section_mb(1, 1, 12, 6, e),
                               tripathi_cross_section_mb(12, 6, 1, 1, e))
    assert np.all(tripathi_cross_section_mb(1, 1, 1, 1, e) == 0)


def test_carbon_mean_free_path_in_water() -> None:
    """About 21 cm at 200-400 MeV/u (PHYSICS.md)."""
    mfp = 1 / water_cross_section_per_mm(12, 6, np.array([200.0, 300.0, 400.0]))
    assert np.all((mfp > 195) & (mfp < 225))


@pytest.mark.parametrize("parent", [(6, 12), *SPECIES])
def test_reaction_products_conserve_charge_and_nucleons(parent: tuple[int, int]) -> None:
    z, a = parent
    products = (tuple(f.multiplicity for f in CARBON_FRAGMENTS) if parent == (6, 12)
                else reaction_products(parent, SPECIES))
    bound_z = sum(m * pz for m, (pz, _) in zip(products, SPECIES, strict=True))
    bound_a = sum(m * pa for m, (_, pa) in zip(products, SPECIES, strict=True))
    assert bound_z <= z and bound_a <= a
    fb = fireball(z, a, products, SPECIES)
    assert fb.unbound == pytest.approx(a - bound_a)
    # The fireball's protons: the parent's unbound protons plus the target's participants.
    assert fb.protons >= z - bound_z - 1e-12
    assert 0 < fb.energy_fraction < 1
    # Neutrons never receive negative energy; the fireball shares exactly the unbound energy.
    assert fb.neutron_energy_fraction >= 0
    fractions = fb.proton_energy_fractions()
    assert fractions.mean() == pytest.approx(fb.energy_fraction)
    assert fractions.min() >= 0 and fractions.max() <= 1


def test_every_transported_isotope_has_reaction_products_and_fractions_sum_to_one() -> None:
    assert set(SPECIES) == set(FRAGMENT_PRODUCTS)
    for z, isotopes in FRAGMENT_ISOTOPES.items():
        assert sum(f for _, f in isotopes) == pytest.approx(1.0, abs=1e-12), z
    # The isotopes share their element's number per 12C reaction.
    for z, number in CARBON_FRAGMENT_ELEMENTS.items():
        assert sum(f.multiplicity for f in CARBON_FRAGMENTS if f.z == z) == pytest.approx(number)


def test_products_are_shared_among_the_transported_isotopes_of_each_element() -> None:
    # All isotopes transported: each element's products split by the isotopic fractions.
    boron = reaction_products((6, 11), SPECIES)
    b10, b11 = (boron[SPECIES.index((5, a))] for a in (10, 11))
    assert b10 + b11 == pytest.approx(FRAGMENT_PRODUCTS[(6, 11)][4])
    fractions = dict(FRAGMENT_ISOTOPES[5])
    assert b10 / b11 == pytest.approx(fractions[10] / fractions[11])
    # Only 11B transported: it takes all the boron.
    only_11 = ((1, 1), (2, 4), (3, 7), (4, 7), (5, 11), (6, 11))
    assert reaction_products((6, 11), only_11)[4] == pytest.approx(FRAGMENT_PRODUCTS[(6, 11)][4])
    with pytest.raises(ValueError, match="not transported"):
        reaction_products((6, 11), ((1, 1), (2, 4)))
    with pytest.raises(ValueError, match="no reaction products"):
        reaction_products((7, 14), SPECIES)


ISOTOPE_DATA = Path(__file__).parent / "data" / "fragment_isotopes" / "c12_on_hydrogen.dat"
#: Element: (energies of the measurements nearest to therapy, MeV/u).
ISOTOPE_SOURCES = {5: (365.0, 486.0), 4: (365.0, 486.0), 3: (600.0,), 2: (1050.0, 2100.0)}


@pytest.mark.parametrize("element", sorted(ISOTOPE_SOURCES))
def test_isotopic_fractions_are_the_measured_ones(element: int) -> None:
    """Each isotope's fraction within 0.03 of the mean of the measured fractions (12C + H,
    tests/data/fragment_isotopes; 8B, 8Li and 6He, not transported, left out)."""
    rows = np.loadtxt(ISOTOPE_DATA, usecols=(1, 2, 3))
    z_f = np.floor(rows[:, 0] + 1e-9).astype(int)
    a_f = np.rint((rows[:, 0] - z_f) * 100).astype(int)
    isotopes = dict(FRAGMENT_ISOTOPES[element])
    measured = []
    for energy in ISOTOPE_SOURCES[element]:
        sel = (z_f == element) & (rows[:, 1] == energy) & np.isin(a_f, list(isotopes))
        sigma = {int(a): float(s) for a, s in zip(a_f[sel], rows[sel, 2], strict=True)}
        assert set(sigma) == set(isotopes), (element, energy, sigma)
        total = sum(sigma.values())
        measured.append({a: s / total for a, s in sigma.items()})
    for a, fraction in isotopes.items():
        assert fraction == pytest.approx(np.mean([m[a] for m in measured]), abs=0.03), (element, a)
