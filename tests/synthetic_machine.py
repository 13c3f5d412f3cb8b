"""Synthetic carbon-ion machines with analytic beam data, for tests and benchmarks.

The dose-engine tests must not depend on the machine generator, so they build their own
:class:`planning.machine.Machine` from closed-form physics (plausible, not clinical):

- range-energy relation of the Bragg-Kleeman form ``R_cm = 1.3413e-3 * E^1.658`` (fit to ICRU 90
  for carbon in water, quoted in shared/PHYSICS.md), so the stopping power per nucleon at
  residual range ``r`` is ``(1/p) alpha^(-1/p) r^(1/p - 1)``;
- range straggling ``sigma_R = 0.003 R`` folded in analytically (Bortfeld 1997, Med. Phys. 24:2024:
  the Gaussian-smeared power law is a parabolic cylinder function);
- primary fluence attenuated as ``exp(-z / 210 mm)`` (nuclear mean free path, PHYSICS.md), with a
  fragment dose that builds up with the lost fluence and falls linearly to zero at 3 R;
- core sigma ``0.0065 R (z/R)^1.5`` (Highland-like growth, about 0.9 mm at the end of a 144 mm
  range), halo sigma ``2 mm + 0.04 z``, halo weight 0.6 of the fragment share of the dose;
- LETd: dose-weighted mean of the primaries' stopping power and 3 keV/um for fragments.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gamma, pbdv

from planning.machine import Machine

ALPHA_CM = 1.3413e-3
P_EXP = 1.658
ION_A = 12
MEAN_FREE_PATH_MM = 210.0
STRAGGLING_REL = 0.003
FRAGMENT_LET_KEV_UM = 3.0


def range_mm(energy_mev_u: np.ndarray | float) -> np.ndarray:
    """CSDA range in water (mm) of the Bragg-Kleeman fit."""
    return 10.0 * ALPHA_CM * np.asarray(energy_mev_u, dtype=np.float64) ** P_EXP


def energy_for_range(range_mm_: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`range_mm`, MeV/u."""
    return (np.asarray(range_mm_, dtype=np.float64) / (10.0 * ALPHA_CM)) ** (1.0 / P_EXP)


def _smeared_power(zeta: np.ndarray, a: float) -> np.ndarray:
    """Integral over y >= 0 of y^a N(y; zeta, 1): the Gaussian-smeared power law."""
    out = np.empty_like(zeta)
    near = zeta <= 8.0
    d, _ = pbdv(-(a + 1.0), -zeta[near])
    out[near] = gamma(a + 1.0) / np.sqrt(2 * np.pi) * np.exp(-zeta[near] ** 2 / 4.0) * d
    zf = zeta[~near]
    out[~near] = zf ** a * (1.0 + a * (a - 1.0) / (2.0 * zf * zf))
    return out


def _curves(energy: float, depth_mm: np.ndarray) -> dict[str, np.ndarray]:
    a = 1.0 / P_EXP - 1.0
    r_cm = ALPHA_CM * energy ** P_EXP
    sig_cm = STRAGGLING_REL * r_cm
    z_cm = depth_mm / 10.0
    zeta = (r_cm - z_cm) / sig_cm
    s_u = (1.0 / P_EXP) * ALPHA_CM ** (-1.0 / P_EXP)  # MeV/u per cm at unit residual range
    survive = np.exp(-depth_mm / MEAN_FREE_PATH_MM)
    prim = ION_A * s_u * sig_cm ** a * _smeared_power(zeta, a) * survive
    r_mm = 10.0 * r_cm
    entrance = ION_A * s_u * r_cm ** a
    frag_level = 0.6 * entrance * (1.0 - np.exp(-np.minimum(depth_mm, r_mm) / MEAN_FREE_PATH_MM))
    frag = frag_level * np.clip((3.0 * r_mm - depth_mm) / (2.0 * r_mm), 0.0, 1.0)
    idd = prim + frag
    # Primaries still moving: attenuation times the straggled survival probability.
    from scipy.special import erfc

    alive = survive * 0.5 * erfc(-zeta / np.sqrt(2.0))
    let_prim = np.minimum(0.1 * prim / np.maximum(alive, 1e-12), 250.0)
    letd = (let_prim * prim + FRAGMENT_LET_KEV_UM * frag) / np.maximum(idd, 1e-30)
    frag_share = frag / np.maximum(idd, 1e-30)
    sigma_end = 0.0065 * r_mm
    return {
        "idd_mev_cm2_per_g": idd,
        "sigma_core_mm": sigma_end * (np.minimum(depth_mm, r_mm) / r_mm) ** 1.5,
        "sigma_halo_mm": 2.0 + 0.04 * depth_mm,
        "halo_weight": np.clip(0.6 * frag_share, 0.0, 0.95),
        "letd_kev_um": letd,
    }


def _depth_nodes(r_mm: float) -> np.ndarray:
    s = STRAGGLING_REL * r_mm
    parts = [
        np.linspace(0.0, 0.9 * r_mm, 40, endpoint=False),
        np.linspace(0.9 * r_mm, r_mm - 4 * s, 30, endpoint=False),
        np.linspace(r_mm - 4 * s, r_mm + 4 * s, 60, endpoint=False),
        np.linspace(r_mm + 4 * s, 3.0 * r_mm, 40),
    ]
    return np.concatenate(parts)


def make_synthetic_machine(
    *,
    min_range_mm: float = 30.0,
    max_range_mm: float = 300.0,
    peak_spacing_mm: float = 3.0,
    energies_mev_u: np.ndarray | None = None,
    sad_mm: tuple[float, float] = (6500.0, 7000.0),
    with_halo: bool = True,
) -> Machine:
    """A carbon machine whose energies have evenly spaced ranges (or the given energies).

    Parameters
    ----------
    min_range_mm, max_range_mm, peak_spacing_mm : float
        Range interval and spacing of the energies, when ``energies_mev_u`` is None.
    energies_mev_u : (E,) array, optional
        Explicit energies, increasing.
    sad_mm : (float, float)
        Virtual source-axis distances.
    with_halo : bool
        False sets the halo weight to 0 (single-Gaussian spots, for analytic tests).
    """
    if energies_mev_u is None:
        n = round((max_range_mm - min_range_mm) / peak_spacing_mm) + 1
        energies = energy_for_range(np.linspace(min_range_mm, max_range_mm, n))
    else:
        energies = np.asarray(energies_mev_u, dtype=np.float64)
    rows: dict[str, list[np.ndarray]] = {}
    depth_rows = []
    peaks = []
    for e in energies:
        r = float(range_mm(e))
        d = _depth_nodes(r)
        c = _curves(float(e), d)
        if not with_halo:
            c["halo_weight"] = np.zeros_like(d)
        for k, v in c.items():
            rows.setdefault(k, []).append(v)
        depth_rows.append(d)
        fine = np.linspace(0.95 * r, 1.01 * r, 2401)
        i = int(np.argmax(_curves(float(e), fine)["idd_mev_cm2_per_g"]))
        peaks.append(fine[i])
    sigma_air = 4.5 - 2.5 * (energies - energies.min()) / max(np.ptp(energies), 1e-9)
    return Machine(
        name="synthetic carbon (tests)",
        ion_z=6,
        ion_a=12,
        energies_mev_u=energies,
        peak_depth_mm=np.array(peaks),
        depth_mm=np.array(depth_rows),
        spot_sigma_air_mm=sigma_air,
        sad_mm=(float(sad_mm[0]), float(sad_mm[1])),
        provenance={"generator": "tests/synthetic_machine.py"},
        **{k: np.array(v) for k, v in rows.items()},
    )
