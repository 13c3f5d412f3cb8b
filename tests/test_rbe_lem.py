"""LEM I (Scholz and Kraft 1996; Scholz et al. 1997) with the Kraemer–Scholz (2006) rapid beta.

Published anchors: the photon parameter sets of HSG (0.313 /Gy, 0.0615 /Gy^2, D_t 7.5 Gy) and
V79 (0.184 /Gy, 0.020 /Gy^2, D_t 17 Gy) used for LEM calculations by Friedrich et al. 2013
(J Radiat Res 54:494, Fig. 8); the LEM I track (r_min = 10 nm, r_max = 0.062 E^1.7 um); the
beta limits of the rapid scheme; the low-LET limit alpha_ion -> alpha_x; and the shape of the
carbon RBE_alpha curve for V79 (rise with LET to a maximum of 3–5, overkill decrease beyond;
Kraemer and Scholz 2006, Elsaesser and Scholz 2007).
"""

from __future__ import annotations

import numpy as np
import pytest

from planning.errors import InputError
from planning.physics.stopping import load_stopping_table
from planning.rbe import DEFAULT_TISSUES, LemModel, Tissue, tissue_by_name
from planning.rbe.lem import lem1_alpha_beta, parse_tissue, rapid_beta_gy2
from planning.rbe.track import GY_UM2_PER_KEV_UM, scholz_kraft


def test_default_tissues_are_the_published_sets() -> None:
    hsg, v79, chordoma = tissue_by_name("HSG"), tissue_by_name("v79"), tissue_by_name("chordoma")
    assert (hsg.alpha_x_gy, hsg.beta_x_gy2, hsg.d_t_gy) == (0.313, 0.0615, 7.5)
    assert (v79.alpha_x_gy, v79.beta_x_gy2, v79.d_t_gy) == (0.184, 0.020, 17.0)
    assert chordoma.alpha_beta_ratio_gy == pytest.approx(2.0)
    assert chordoma.d_t_gy == 30.0
    assert len({t.name for t in DEFAULT_TISSUES}) == len(DEFAULT_TISSUES)


def test_photon_response_is_continuous_with_slope_s_max_above_threshold() -> None:
    t = tissue_by_name("v79")
    d_t = t.d_t_gy
    below, above = t.photon_effect(np.array([d_t - 1e-9, d_t + 1e-9]))
    assert below == pytest.approx(above, rel=1e-9)
    slope = (t.photon_effect(np.array(d_t + 2.0)) - t.photon_effect(np.array(d_t + 1.0)))
    assert float(slope) == pytest.approx(t.alpha_x_gy + 2 * t.beta_x_gy2 * d_t, rel=1e-12)


def test_rbe_weighted_dose_above_the_threshold_dose_follows_the_linear_photon_response() -> None:
    # A saturated high-LET field (alpha 1.0 /Gy, beta 0) at 10 Gy in the HSG class (D_t 7.5 Gy):
    # effect 10, above eps_t = 0.313 x 7.5 + 0.0615 x 7.5^2 = 5.8069, so the photon dose of equal
    # effect lies on the linear part: 7.5 + (10 - 5.8064) / 1.2355 = 10.894 Gy (inverting the
    # quadratic alone gives 10.46 Gy).
    hsg = tissue_by_name("hsg")
    dose = np.array([10.0])
    d_rbe = LemModel(tissue=hsg).rbe_weighted_dose_from_sums(dose, (1.0 * dose, 0.0 * dose))
    assert float(d_rbe[0]) == pytest.approx(7.5 + (10.0 - 5.806875) / 1.2355, rel=1e-9)
    # Below eps_t the quadratic: 3 Gy of that field, effect 3.
    d_low = LemModel(tissue=hsg).rbe_weighted_dose_from_sums(np.array([3.0]),
                                                              (np.array([3.0]), np.array([0.0])))
    assert float(d_low[0]) == pytest.approx(2 * 3.0 / (0.313 + np.sqrt(0.313**2 + 4 * 0.0615 * 3)))


@pytest.mark.parametrize("name", ["hsg", "v79"])
def test_photon_like_field_has_rbe_one_at_any_dose(name: str) -> None:
    # alpha_i = alpha_x, beta_i = beta_x: the ion curve continued linearly above D_t is the
    # photon curve itself, so D_RBE = D up to 4 D_t.
    t = tissue_by_name(name)
    dose = np.linspace(0.0, 4 * t.d_t_gy, 41)
    sums = (t.alpha_x_gy * dose, np.sqrt(t.beta_x_gy2) * dose)
    assert np.allclose(LemModel(tissue=t).rbe_weighted_dose_from_sums(dose, sums), dose,
                       rtol=1e-12, atol=1e-12)


def test_mixed_field_above_the_threshold_dose_continues_with_its_slope_at_d_t() -> None:
    # alpha_mix 0.6 /Gy, beta_mix 0.04 /Gy^2, HSG D_t 7.5 Gy: the effect at 12 Gy is
    # eps(D_t) + (alpha + 2 beta D_t)(12 - D_t) = 4.5 + 2.25 + 1.2 x 4.5 = 12.15.
    hsg = tissue_by_name("hsg")
    dose = np.array([12.0])
    d_rbe = LemModel(tissue=hsg).rbe_weighted_dose_from_sums(
        dose, (0.6 * dose, np.sqrt(0.04) * dose))
    assert float(d_rbe[0]) == pytest.approx(7.5 + (12.15 - 5.806875) / 1.2355, rel=1e-9)


@pytest.mark.parametrize("dose_gy", [0.5, 7.0, 8.0, 20.0])
def test_lem_gradient_matches_finite_differences_on_both_sides_of_d_t(dose_gy: float) -> None:
    hsg = tissue_by_name("hsg")
    model = LemModel(tissue=hsg)
    d, a, b = np.array([dose_gy]), np.array([0.7 * dose_gy]), np.array([0.15 * dose_gy])
    grad = model.rbe_weighted_dose_gradient(d, (a, b))
    h = 1e-6

    def f(dd: float = 0.0, da: float = 0.0, db: float = 0.0) -> float:
        return float(model.rbe_weighted_dose_from_sums(d + dd, (a + da, b + db))[0])

    assert float(grad.d_dose[0]) == pytest.approx((f(dd=h) - f(dd=-h)) / (2 * h), abs=1e-6)
    assert float(grad.d_sums[0][0]) == pytest.approx((f(da=h) - f(da=-h)) / (2 * h), rel=1e-6)
    assert float(grad.d_sums[1][0]) == pytest.approx((f(db=h) - f(db=-h)) / (2 * h), rel=1e-6)
    if dose_gy > hsg.d_t_gy:
        assert float(grad.d_dose[0]) < 0.0  # the quadratic term stops growing as D^2


@pytest.mark.parametrize("name", ["hsg", "v79", "chordoma"])
def test_rapid_beta_limits(name: str) -> None:
    # Kraemer and Scholz 2006: beta_z = (alpha_z/alpha_P)^2 (s_max - alpha_P)/(2 D_t):
    # beta_x for a photon-like particle, (s_max - alpha)/(2 D_t) without saturation, 0 at s_max,
    # and suppressed by (alpha_z/alpha_P)^2 when single traversals saturate.
    t = tissue_by_name(name)
    assert float(rapid_beta_gy2(t.alpha_x_gy, t.alpha_x_gy, t)) == pytest.approx(t.beta_x_gy2,
                                                                                 rel=1e-12)
    a = 0.5 * (t.alpha_x_gy + t.s_max_gy)
    assert float(rapid_beta_gy2(a, a, t)) == pytest.approx((t.s_max_gy - a) / (2 * t.d_t_gy))
    assert float(rapid_beta_gy2(t.s_max_gy, t.s_max_gy, t)) == pytest.approx(0.0, abs=1e-15)
    assert float(rapid_beta_gy2(0.1 * a, a, t)) == pytest.approx(0.01 * float(
        rapid_beta_gy2(a, a, t)))


def test_lem1_track_parameters() -> None:
    # Scholz and Kraft 1996: r_min = 0.01 um, r_max = 0.062 E^1.7 um, integral = LET.
    track = scholz_kraft([100.0], [26.26])
    assert track.core_radius_um[0] == pytest.approx(0.01)
    assert track.max_radius_um[0] == pytest.approx(0.062 * 100.0**1.7)
    assert track.energy_per_length_gy_um2()[0] == pytest.approx(GY_UM2_PER_KEV_UM * 26.26,
                                                                  rel=1e-12)


#: alpha (1/Gy) of 12C at 400, 100 and 20 MeV/u in the chordoma class (alpha_x 0.1 /Gy, beta_x
#: 0.05 /Gy^2, D_t 30 Gy, R_n 5 um) from the independent "Survival" code (Attili, Russo et al.;
#: INFN/University of Torino), its rapidLEM_Scholz2006 and rapidLEM_Russo2011 models, as
#: reported in IonPlan issue 13.
SURVIVAL_CHORDOMA_ALPHA = {"central": (0.408, 0.655, 1.101), "averaged": (0.454, 0.689, 1.110)}


@pytest.mark.parametrize("scheme", sorted(SURVIVAL_CHORDOMA_ALPHA))
def test_rapid_schemes_reproduce_the_survival_code(scheme: str) -> None:
    energies = np.array([400.0, 100.0, 20.0])
    table = LemModel(tissue_by_name("chordoma", scheme)).particle_tables([6], energies)
    np.testing.assert_allclose(table.quantities[0][0], SURVIVAL_CHORDOMA_ALPHA[scheme], rtol=0.02)


def test_default_rapid_scheme_is_the_impact_parameter_average() -> None:
    """The low-dose limit of LEM I itself, as TRiP98's default "classic" LEM I evaluates it
    (docs/physics.md, "LEM I: which rapid scheme"); the central traversal by name."""
    assert tissue_by_name("chordoma").rapid_scheme == "averaged"
    assert LemModel().tissue.rapid_scheme == "averaged"
    assert "rapid=averaged" in LemModel().describe()
    assert parse_tissue("chordoma").rapid_scheme == "averaged"
    assert parse_tissue("0.1,0.05,30").rapid_scheme == "averaged"
    assert parse_tissue("chordoma:central").rapid_scheme == "central"
    with pytest.raises(InputError, match="rapid scheme"):
        Tissue("x", 0.1, 0.05, 30.0, rapid_scheme="full")


def test_nucleus_radius_sensitivity_at_10_mev_u() -> None:
    # Issue 13: alpha of 12C at 10 MeV/u moves by about 12 % per um of R_n near 5 um.
    e = np.array([10.0])
    let = load_stopping_table(6).let_kev_um(e)
    for scheme in ("central", "averaged"):
        t = tissue_by_name("chordoma", scheme)
        a5 = lem1_alpha_beta(e, let, t)[0][0]
        a4 = lem1_alpha_beta(e, let, Tissue("r4", 0.1, 0.05, 30.0, 4.0, scheme))[0][0]
        assert a5 / a4 - 1.0 == pytest.approx(0.12, abs=0.03)


def test_central_scheme_low_let_limit_is_the_energy_inside_the_nucleus() -> None:
    # A central traversal deposits inside R_n the fraction
    # f = (1 + 2 ln(R_n/r_min)) / (1 + 2 ln(r_max/r_min)) of its energy (Scholz-Kraft track);
    # at low LET the local effect is linear, so alpha_z -> f alpha_x (the penumbra outside the
    # nucleus is lost in this scheme).
    t = tissue_by_name("v79", "central")
    e = np.array([1000.0])
    track = scholz_kraft(e, [0.01])
    f = (1 + 2 * np.log(t.nucleus_radius_um / track.core_radius_um[0])) / (
        1 + 2 * np.log(track.max_radius_um[0] / track.core_radius_um[0]))
    alpha, _ = lem1_alpha_beta(e, np.array([0.01]), t)
    assert alpha[0] == pytest.approx(f * t.alpha_x_gy, rel=0.01)


def test_alpha_tends_to_alpha_x_at_low_let() -> None:
    # As LET -> 0 every local dose is small, so alpha_ion -> alpha_x (Scholz et al. 1997) in the
    # impact-parameter averaged scheme, which keeps the penumbra energy.
    t = tissue_by_name("v79", "averaged")
    alpha, beta = lem1_alpha_beta(np.array([1000.0]), np.array([0.01]), t)
    assert alpha[0] == pytest.approx(t.alpha_x_gy, rel=0.01)
    assert beta[0] == pytest.approx(t.beta_x_gy2, rel=0.02)
    # Fast protons (0.3 keV/um) in V79 are within a few per cent of the photon alpha.
    table = LemModel(t).particle_tables([1], [430.0])
    assert table.quantities[0][0, 0] / t.alpha_x_gy == pytest.approx(1.0, abs=0.06)


@pytest.mark.parametrize("scheme", ["central", "averaged"])
def test_v79_carbon_rbe_alpha_rises_to_a_maximum_and_falls_by_overkill(scheme: str) -> None:
    t = tissue_by_name("v79", scheme)
    energies = np.geomspace(0.5, 430.0, 40)
    table = LemModel(t).particle_tables([6], energies)
    rbe_alpha = table.quantities[0][0][::-1] / t.alpha_x_gy  # increasing LET
    let = table.let_kev_um[0][::-1]
    i_max = int(np.argmax(rbe_alpha))
    # 430 MeV/u, about 11 keV/um; the central scheme loses the penumbra outside the nucleus.
    assert (1.0 if scheme == "central" else 1.3) < rbe_alpha[0] < 2.0
    assert 3.0 <= rbe_alpha[i_max] <= 5.0
    assert let[i_max] > 100.0
    assert np.all(np.diff(rbe_alpha[: i_max + 1]) > 0)
    assert rbe_alpha[-1] < rbe_alpha[i_max]
    # The inactivation cross-section saturates near the nucleus area (pi 5^2 = 78.5 um^2).
    sigma = table.quantities[0][0] * GY_UM2_PER_KEV_UM * table.let_kev_um[0]
    assert sigma.max() < 1.3 * np.pi * t.nucleus_radius_um**2


def test_carbon_beta_falls_from_beta_x_towards_zero_with_let() -> None:
    # Rapid scheme: beta_z -> beta_x at low LET and -> 0 where single traversals saturate.
    t = tissue_by_name("hsg")
    energies = np.geomspace(0.5, 430.0, 30)
    let = load_stopping_table(6).let_kev_um(energies)
    _, beta = lem1_alpha_beta(energies, let, t)
    assert np.all(beta >= 0.0) and np.all(beta <= t.beta_x_gy2)
    assert np.all(np.diff(beta[energies > 0.9]) > 0)   # decreasing with LET (increasing E)
    assert beta[-1] > 0.7 * t.beta_x_gy2
    assert beta[0] < 0.01 * t.beta_x_gy2


def test_user_defined_tissue_and_invalid_input() -> None:
    custom = Tissue("prostate-like", 0.15, 0.1, 20.0, nucleus_radius_um=4.0)
    table = LemModel(custom).particle_tables([6], [100.0])
    assert table.quantities[0][0, 0] > custom.alpha_x_gy
    with pytest.raises(InputError, match="beta_x_gy2"):
        Tissue("bad", 0.1, 0.0, 30.0)
    with pytest.raises(InputError, match="d_t_gy"):
        Tissue("bad", 0.1, 0.05, float("nan"))
    with pytest.raises(InputError, match="unknown tissue"):
        tissue_by_name("liver")
