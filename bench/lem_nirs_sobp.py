"""LEM I / NIRS (mMKM) at the centre of the 6 cm SOBP, taken apart (not a timed test).

Case: the 6 cm single-field SOBP of tests/test_rbe_mixing.py (100-160 mm, physically flat, NNLS
weights on the generic machine's pencil beams). At its centre the mixed field is rebuilt from the
machine's particle spectra (fluence per species and energy bin, interpolated linearly in depth
between the spectrum nodes and weighted with the SOBP weights), and both models are evaluated on
it, first as the planner does and then with one ingredient changed at a time:

- the rapid LEM I variant (``central`` / ``averaged``);
- the fragments (Z < 6) made photon-like (alpha_x, beta_x) or removed;
- the spectrum bins evaluated on 9 sub-energies each instead of the bin centre;
- the nucleus radius and the threshold dose of the chordoma class;
- the NIRS reference radiation and F_clin.

Printed per case: LETd, LEM alpha_mix and beta_mix, HSG alpha_mix (mMKM), the LEM/mMKM ratio at
3.00, 2.70 and 0.24 Gy(RBE) per fraction LEM (Zhang et al. 2020, Radiat Oncol 15,
doi 10.1186/s13014-020-01723-z: 1.37, 1.46, 3.09) and LEM - mMKM at 3.6 and 4.4 Gy(RBE) mMKM
(Fossati et al. 2012, PMB 57:7543: +0.45 +/- 0.09 Gy(RBE) per fraction, opposed-field plans).

Run: ``nice -n 5 python bench/lem_nirs_sobp.py`` (about a minute on one core).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import brentq, nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's planning

from planning.machine import Machine, load_machine
from planning.rbe import LemModel, MkmModel, tissue_by_name
from planning.rbe.lem import Tissue, lem1_alpha_beta
from planning.rbe.mkm import z1d_star_gy
from planning.rbe.models import let_table_kev_um

PROXIMAL_MM, DISTAL_MM = 100.0, 160.0
ZHANG_LEM_GY_RBE = (3.00, 2.70, 0.24)
ZHANG_RATIO = (1.37, 1.46, 3.09)
FOSSATI_NIRS_GY_RBE = (3.6, 4.4)


@dataclasses.dataclass(frozen=True)
class CentreField:
    """Dose per species and energy (relative, summing to 1) at the SOBP centre and the energies
    (MeV/u) at which the per-particle quantities are evaluated (bin centres, or sub-bins)."""

    species_z: np.ndarray      # (P,)
    energies_mev_u: np.ndarray  # (N,)
    dose: np.ndarray           # (P, N) relative dose, sums to 1


def sobp_centre_field(machine: Machine, sub_bins: int = 1) -> CentreField:
    spectra = machine.spectra
    assert spectra is not None
    peaks = machine.peak_depth_mm
    sel = np.where((peaks >= PROXIMAL_MM - 2.0) & (peaks <= DISTAL_MM))[0]
    depth = np.linspace(PROXIMAL_MM, DISTAL_MM, 121)
    idd = np.array([np.interp(depth, machine.depth_mm[i], machine.idd_mev_cm2_per_g[i])
                    for i in sel]).T
    weights, _ = nnls(idd, np.ones_like(depth))
    centre = 0.5 * (PROXIMAL_MM + DISTAL_MM)
    fluence = np.zeros(spectra.fluence_per_primary.shape[2:])
    for w, i in zip(weights, sel, strict=True):
        s_depth = spectra.depth_mm[i]
        k = int(np.clip(np.searchsorted(s_depth, centre) - 1, 0, len(s_depth) - 2))
        t = (centre - s_depth[k]) / (s_depth[k + 1] - s_depth[k])
        fluence += w * ((1 - t) * spectra.fluence_per_primary[i, k]
                        + t * spectra.fluence_per_primary[i, k + 1])
    z = np.asarray(spectra.species_z)
    edges = spectra.bin_edges_mev_u
    if sub_bins == 1:
        energies = spectra.bin_centers_mev_u
        let = let_table_kev_um(z, energies)
        dose = fluence * let
    else:
        # sub-energies spread uniformly in log E inside each bin (the first bin linearly),
        # the bin's fluence shared equally; dose = fluence x LET at each sub-energy
        lo, hi = edges[:-1], edges[1:]
        frac = (np.arange(sub_bins) + 0.5) / sub_bins
        sub = np.where(lo[:, None] > 0,
                       np.exp(np.log(np.maximum(lo, 1e-6))[:, None]
                              + frac[None, :] * np.log(hi / np.maximum(lo, 1e-6))[:, None]),
                       lo[:, None] + frac[None, :] * (hi - lo)[:, None])
        energies = sub.ravel()
        let = let_table_kev_um(z, energies)
        dose = np.repeat(fluence / sub_bins, sub_bins, axis=1) * let
    return CentreField(z, energies, dose / dose.sum())


def with_fragments_scaled(field: CentreField, factor: float) -> CentreField:
    """The same field with the dose of Z < 6 scaled by ``factor`` (renormalised)."""
    dose = np.where(field.species_z[:, None] < 6, factor * field.dose, field.dose)
    return dataclasses.replace(field, dose=dose / dose.sum())


def letd(field: CentreField) -> float:
    let = let_table_kev_um(field.species_z, field.energies_mev_u)
    return float(np.sum(field.dose * let))


def lem_mix(field: CentreField, tissue: Tissue, fragments: str = "as computed"
            ) -> tuple[float, float]:
    let = let_table_kev_um(field.species_z, field.energies_mev_u)
    ee = np.broadcast_to(field.energies_mev_u[None, :], let.shape)
    alpha, beta = lem1_alpha_beta(ee, let, tissue)
    dose = field.dose.copy()
    frag = field.species_z[:, None] < 6
    if fragments == "photon-like":
        alpha = np.where(frag, tissue.alpha_x_gy, alpha)
        beta = np.where(frag, tissue.beta_x_gy2, beta)
    elif fragments == "removed":
        dose = np.where(frag, 0.0, dose)
        dose = dose / dose.sum()
    return float(np.sum(dose * alpha)), float(np.sum(dose * np.sqrt(beta))) ** 2


def z1d_mix(field: CentreField, mkm: MkmModel) -> float:
    let = let_table_kev_um(field.species_z, field.energies_mev_u)
    zz = np.broadcast_to(field.species_z[:, None], let.shape)
    ee = np.broadcast_to(field.energies_mev_u[None, :], let.shape)
    z1d = z1d_star_gy(zz, ee, let, beta_gy2=mkm.beta_gy2,
                      domain_radius_um=mkm.domain_radius_um,
                      nucleus_radius_um=mkm.nucleus_radius_um)
    return float(np.sum(field.dose * z1d))


def lem_dose(tissue: Tissue, alpha: float, beta: float, phys: float) -> float:
    lem = LemModel(tissue)
    return float(lem.rbe_weighted_dose(np.array([phys]),
                                       (np.array([alpha]), np.array([np.sqrt(beta)])))[0])


def mkm_dose(mkm: MkmModel, z_mix: float, phys: float) -> float:
    return float(mkm.rbe_weighted_dose(np.array([phys]), (np.array([z_mix]),))[0])


def summary(label: str, tissue: Tissue, alpha: float, beta: float, mkm: MkmModel,
            z_mix: float, let_d: float) -> dict[str, float]:
    ratios = []
    for target in ZHANG_LEM_GY_RBE:
        phys = brentq(lambda x, t=target: lem_dose(tissue, alpha, beta, x) - t, 1e-6, 30.0)
        ratios.append(target / mkm_dose(mkm, z_mix, phys))
    diffs = []
    for target in FOSSATI_NIRS_GY_RBE:
        phys = brentq(lambda x, t=target: mkm_dose(mkm, z_mix, x) - t, 1e-6, 30.0)
        diffs.append(lem_dose(tissue, alpha, beta, phys) - target)
    hsg_alpha = mkm.alpha0_gy + mkm.beta_gy2 * z_mix
    phys_3 = brentq(lambda x: lem_dose(tissue, alpha, beta, x) - 3.0, 1e-6, 30.0)
    print(f"{label:<46} {let_d:5.1f} {alpha:6.3f} {beta:6.4f} {hsg_alpha:6.3f} "
          f"{3.0 / phys_3:5.2f} {mkm_dose(mkm, z_mix, phys_3) / phys_3:5.2f} "
          + " ".join(f"{r:5.2f}" for r in ratios) + " " + " ".join(f"{d:+6.2f}" for d in diffs))
    return {"r300": ratios[0], "r270": ratios[1], "r024": ratios[2], "d36": diffs[0],
            "d44": diffs[1]}


def implied_alpha(tissue: Tissue, beta: float, mkm: MkmModel, z_mix: float) -> None:
    """The LEM alpha_mix (beta_mix, mMKM kept) that each published point needs."""
    out = []
    for target, ratio in zip(ZHANG_LEM_GY_RBE, ZHANG_RATIO, strict=True):
        phys = brentq(lambda x, t=target / ratio: mkm_dose(mkm, z_mix, x) - t, 1e-6, 30.0)
        effect = tissue.alpha_x_gy * target + tissue.beta_x_gy2 * target**2
        out.append((effect - beta * phys**2) / phys)
    for target in FOSSATI_NIRS_GY_RBE:
        phys = brentq(lambda x, t=target: mkm_dose(mkm, z_mix, x) - t, 1e-6, 30.0)
        lem = target + 0.45
        effect = tissue.alpha_x_gy * lem + tissue.beta_x_gy2 * lem**2
        out.append((effect - beta * phys**2) / phys)
    print("LEM alpha_mix (1/Gy) each published point needs, beta_mix and mMKM as here: "
          + ", ".join(f"{name} {a:.3f}" for name, a in zip(
              ("Zhang 3.00", "Zhang 2.70", "Zhang 0.24", "Fossati 3.6", "Fossati 4.4"), out,
              strict=True)))


def main() -> None:
    machine = load_machine()
    field = sobp_centre_field(machine)
    fine = sobp_centre_field(machine, sub_bins=9)
    mkm = MkmModel()
    z_mix, z_fine = z1d_mix(field, mkm), z1d_mix(fine, mkm)
    let_d = letd(field)
    dose_by_z = field.dose.sum(axis=1)
    print("dose fractions at the SOBP centre by Z:",
          ", ".join(f"Z={z}: {d:.3f}" for z, d in zip(field.species_z, dose_by_z, strict=True)))
    print(f"{'case':<46} {'LETd':>5} {'a_LEM':>6} {'b_LEM':>6} {'a_HSG':>6} "
          f"{'RBE_L':>5} {'RBE_M':>5} {'r3.00':>5} {'r2.70':>5} {'r0.24':>5} "
          f"{'d3.6':>6} {'d4.4':>6}")
    print(f"{'published (Zhang 2020; Fossati 2012)':<46} {'':>5} {'':>6} {'':>6} {'':>6} "
          f"{'':>5} {'':>5}  1.37  1.46  3.09  +0.45  +0.45")
    for scheme in ("central", "averaged"):
        chordoma = tissue_by_name("chordoma", scheme)
        a, b = lem_mix(field, chordoma)
        summary(f"planner's inputs, {scheme}", chordoma, a, b, mkm, z_mix, let_d)
        a, b = lem_mix(fine, chordoma)
        summary(f"9 sub-energies per bin, {scheme}", chordoma, a, b, mkm, z_fine, letd(fine))
        more = with_fragments_scaled(field, 1.5)
        a, b = lem_mix(more, chordoma)
        summary(f"fragment dose x 1.5 (both models), {scheme}", chordoma, a, b, mkm,
                z1d_mix(more, mkm), letd(more))
        a, b = lem_mix(field, chordoma, "photon-like")
        summary(f"fragments photon-like (LEM), {scheme}", chordoma, a, b, mkm, z_mix, let_d)
        for r_n in (4.0, 6.0):
            t = dataclasses.replace(chordoma, nucleus_radius_um=r_n)
            a, b = lem_mix(field, t)
            summary(f"R_n = {r_n:g} um, {scheme}", t, a, b, mkm, z_mix, let_d)
        for d_t in (20.0, 40.0):
            t = dataclasses.replace(chordoma, d_t_gy=d_t)
            a, b = lem_mix(field, t)
            summary(f"D_t = {d_t:g} Gy, {scheme}", t, a, b, mkm, z_mix, let_d)
    chordoma = tissue_by_name("chordoma", "central")
    a, b = lem_mix(field, chordoma)
    implied_alpha(chordoma, b, mkm, z_mix)
    for label, variant in (("mMKM reference radiation = HSG x-ray (0.313)",
                            dataclasses.replace(mkm, alpha_ref_gy=0.313)),
                           ("mMKM F_clin 2.41 -> 2.20",
                            dataclasses.replace(mkm, f_clin=2.20))):
        summary(label + ", central", chordoma, a, b, variant, z_mix, let_d)


if __name__ == "__main__":
    main()
