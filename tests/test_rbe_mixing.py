"""Mixed fields, per-voxel RBE-weighted dose, gradients, backends and machine depth tables.

Invariants (PHYSICS.md, "RBE models"): dose-averaging of alpha and sqrt(beta) (LEM) and of
z1D* (mMKM); RBE-weighted dose -> D x RBE_alpha at low dose and -> D for photon-like
parameters; analytic derivatives against finite differences; zero dose gives zero.
Published comparisons on an SOBP built from the generic machine: the NIRS clinical RBE at the
centre of a 6 cm SOBP (Inaniwa et al. 2015) and the LEM I / mMKM ratio of Zhang et al. 2020.
"""

from __future__ import annotations

import dataclasses

import array_api_strict
import numpy as np
import pytest
from scipy.optimize import brentq, nnls

from kernels.backend import DeviceUnavailableError, resolve_device
from planning.errors import InputError, MachineError
from planning.machine import Machine
from planning.rbe import (
    ConstantRbe,
    DepthTables,
    LemModel,
    MkmModel,
    PhysicalDose,
    RbeModel,
    depth_tables,
    rbe_table_rows,
    tissue_by_name,
)

MODELS: list[RbeModel] = [MkmModel(), LemModel(tissue_by_name("chordoma")),
                          LemModel(tissue_by_name("hsg")), ConstantRbe(2.5), PhysicalDose()]
IDS = ["mkm", "lem-chordoma", "lem-hsg", "constant", "physical"]


def _sums(model: RbeModel, dose: np.ndarray) -> tuple[np.ndarray, ...]:
    """Dose-weighted sums of a plausible carbon field for ``model``."""
    if isinstance(model, MkmModel):
        return (dose * 8.0,)
    if isinstance(model, LemModel):
        return (dose * 0.6, dose * 0.45)
    return ()


def test_single_species_reproduces_particle_values_and_mixing_is_dose_weighted() -> None:
    lem = LemModel(tissue_by_name("chordoma"))
    table = lem.particle_tables([6, 1], [50.0, 200.0])
    alpha, sqrt_beta = (q[:, 0] for q in table.quantities)  # C and H at 50 MeV/u
    dose = np.array([2.0])
    mixed = lem.mix(dose, (dose * alpha[0], dose * sqrt_beta[0]))
    np.testing.assert_allclose([m[0] for m in mixed], [alpha[0], sqrt_beta[0]], rtol=1e-14)
    d_c, d_h = np.array([1.5]), np.array([0.5])
    mixed = lem.mix(d_c + d_h, (d_c * alpha[0] + d_h * alpha[1],
                                d_c * sqrt_beta[0] + d_h * sqrt_beta[1]))
    assert mixed[0][0] == pytest.approx((1.5 * alpha[0] + 0.5 * alpha[1]) / 2.0, rel=1e-14)
    assert mixed[1][0] == pytest.approx((1.5 * sqrt_beta[0] + 0.5 * sqrt_beta[1]) / 2.0)


@pytest.mark.parametrize("tissue", ["chordoma", "hsg", "v79"])
def test_lem_low_dose_and_photon_limits(tissue: str) -> None:
    t = tissue_by_name(tissue)
    lem = LemModel(t)
    alpha, sqrt_beta = 3.0 * t.alpha_x_gy, np.sqrt(0.5 * t.beta_x_gy2)
    d = np.array([1e-5])
    low = lem.rbe_weighted_dose(d, (np.array([alpha]), np.array([sqrt_beta])))
    assert low[0] / d[0] == pytest.approx(alpha / t.alpha_x_gy, rel=1e-3)
    doses = np.array([0.1, 1.0, 2.0, 8.0])
    photon_like = lem.rbe_weighted_dose(doses, (np.full(4, t.alpha_x_gy),
                                                np.full(4, np.sqrt(t.beta_x_gy2))))
    np.testing.assert_allclose(photon_like, doses, rtol=1e-12)


def test_mkm_low_dose_limit() -> None:
    mkm = MkmModel()
    z = 10.0
    d = np.array([1e-6])
    low = mkm.rbe_weighted_dose(d, (np.array([z]),))
    expected = mkm.f_clin * (mkm.alpha0_gy + mkm.beta_gy2 * z) / mkm.alpha_ref_gy
    assert low[0] / d[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_gradients_match_finite_differences(model: RbeModel) -> None:
    dose = np.array([0.05, 0.7, 2.0, 6.0])
    sums = _sums(model, dose) if model.quantity_names else ()
    grad = model.rbe_weighted_dose_gradient(dose, sums)
    np.testing.assert_allclose(grad.dose_gy_rbe, model.rbe_weighted_dose_from_sums(dose, sums),
                               rtol=1e-14)
    h = 1e-6 * dose
    fd_dose = (model.rbe_weighted_dose_from_sums(dose + h, sums)
               - model.rbe_weighted_dose_from_sums(dose - h, sums)) / (2 * h)
    np.testing.assert_allclose(grad.d_dose, fd_dose, rtol=1e-5, atol=1e-9)
    for k in range(len(sums)):
        hk = 1e-6 * sums[k]
        up = tuple(s + hk if j == k else s for j, s in enumerate(sums))
        down = tuple(s - hk if j == k else s for j, s in enumerate(sums))
        fd = (model.rbe_weighted_dose_from_sums(dose, up)
              - model.rbe_weighted_dose_from_sums(dose, down)) / (2 * hk)
        np.testing.assert_allclose(grad.d_sums[k], fd, rtol=1e-5)


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_zero_dose_gives_zero_and_finite_derivatives(model: RbeModel) -> None:
    dose = np.zeros(3)
    sums = tuple(np.zeros(3) for _ in model.quantity_names)
    grad = model.rbe_weighted_dose_gradient(dose, sums)
    assert np.all(grad.dose_gy_rbe == 0.0)
    assert np.all(np.isfinite(grad.d_dose))
    assert all(np.all(np.isfinite(g)) for g in grad.d_sums)
    assert all(np.all(m == 0.0) for m in model.mix(dose, sums))


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_per_voxel_functions_run_on_array_api_strict(model: RbeModel) -> None:
    xp = array_api_strict
    dose_np = np.array([0.0, 0.3, 1.0, 4.0])
    sums_np = _sums(model, dose_np)
    dose = xp.asarray(dose_np)
    sums = tuple(xp.asarray(s) for s in sums_np)
    grad = model.rbe_weighted_dose_gradient(dose, sums)
    expected = model.rbe_weighted_dose_gradient(dose_np, sums_np)
    assert isinstance(grad.dose_gy_rbe, type(dose))
    np.testing.assert_allclose(np.asarray(grad.dose_gy_rbe), expected.dose_gy_rbe, rtol=1e-14)
    np.testing.assert_allclose(np.asarray(grad.d_dose), expected.d_dose, rtol=1e-14)
    mixed = model.mix(dose, sums)
    np.testing.assert_allclose(np.asarray(model.rbe_weighted_dose(dose, mixed)),
                               expected.dose_gy_rbe, rtol=1e-12)


def _gpu_available() -> bool:
    try:
        return resolve_device("gpu") == "gpu"
    except DeviceUnavailableError:
        return False


@pytest.mark.parametrize("model", MODELS, ids=IDS)
def test_cupy_matches_numpy(model: RbeModel) -> None:
    if not _gpu_available():
        pytest.skip("no CUDA device with CuPy: CuPy-vs-NumPy RBE comparison not run")
    import cupy

    dose_np = np.array([0.0, 0.3, 1.0, 4.0], dtype=np.float32)
    sums_np = _sums(model, dose_np)
    grad = model.rbe_weighted_dose_gradient(cupy.asarray(dose_np),
                                            tuple(cupy.asarray(s) for s in sums_np))
    expected = model.rbe_weighted_dose_gradient(dose_np, sums_np)
    assert isinstance(grad.dose_gy_rbe, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(grad.dose_gy_rbe), expected.dose_gy_rbe, rtol=1e-6)
    for got, want in zip(grad.d_sums, expected.d_sums, strict=True):
        np.testing.assert_allclose(cupy.asnumpy(got), want, rtol=1e-6)


def test_wrong_number_of_quantities_is_rejected() -> None:
    with pytest.raises(InputError, match="needs 2 quantities"):
        LemModel().rbe_weighted_dose(np.ones(2), (np.ones(2),))
    for value in (0.0, 0.01, 0.99, 10.5, 1e9, float("nan")):
        with pytest.raises(InputError, match=r"constant RBE must be a finite number in \[1, 10\]"):
            ConstantRbe(value)
    assert ConstantRbe(1.0).rbe == 1.0 and ConstantRbe(10.0).rbe == 10.0


def test_rbe_table_rows() -> None:
    mkm = MkmModel()
    rows = rbe_table_rows(mkm, 6, [10.0, 50.0, 100.0, 290.0])
    assert [r.energy_mev_u for r in rows] == [10.0, 50.0, 100.0, 290.0]
    assert rows[3].let_kev_um == pytest.approx(13.0, rel=0.02)  # MSTAR, about 13 keV/um
    assert all(r.beta_gy2 == mkm.beta_gy2 for r in rows)
    assert [r.alpha_gy for r in rows] == sorted((r.alpha_gy for r in rows), reverse=True)
    lem_rows = rbe_table_rows(LemModel(), 6, [290.0])
    assert lem_rows[0].alpha_gy > 0.1 and lem_rows[0].beta_gy2 > 0
    with pytest.raises(InputError, match="no per-particle linear-quadratic"):
        rbe_table_rows(ConstantRbe(3.0), 6, [100.0])


# --------------------------------------------------------------------- machine depth tables


@pytest.fixture(scope="module")
def tables(machine: Machine) -> dict[str, DepthTables]:
    return {"mkm": depth_tables(machine, MkmModel()),
            "lem central": depth_tables(machine,
                                        LemModel(tissue_by_name("chordoma", "central"))),
            "lem averaged": depth_tables(machine,
                                         LemModel(tissue_by_name("chordoma", "averaged")))}


def test_depth_tables_of_a_single_species_bin_reproduce_the_particle_value(
        machine: Machine) -> None:
    assert machine.spectra is not None
    fluence = np.zeros_like(machine.spectra.fluence_per_primary)
    fluence[:, :, 5, 20] = 1.0  # carbon only, one energy bin
    one_bin = dataclasses.replace(machine, spectra=dataclasses.replace(
        machine.spectra, fluence_per_primary=fluence))
    result = depth_tables(one_bin, MkmModel())
    expected = result.particles.quantities[0][5, 20]
    np.testing.assert_allclose(result.values[0], expected, rtol=1e-12)
    assert result.values[0].shape == machine.depth_mm.shape


def test_depth_tables_shapes_and_trends(machine: Machine, tables: dict[str, DepthTables]) -> None:
    z1d = tables["mkm"].values[0]
    assert z1d.shape == machine.depth_mm.shape
    assert np.all(np.isfinite(z1d)) and np.all(z1d > 0)
    i = int(np.argmin(np.abs(machine.energies_mev_u - 290.0)))
    i_peak = int(np.argmax(machine.idd_mev_cm2_per_g[i]))
    assert z1d[i, i_peak] > 2.5 * z1d[i, 0]                  # LET rises to the Bragg peak
    alpha = tables["lem averaged"].values[0]
    assert alpha[i, i_peak] > alpha[i, 0] > tissue_by_name("chordoma").alpha_x_gy


def test_depth_tables_need_spectra(machine: Machine) -> None:
    with pytest.raises(MachineError, match="no particle spectra"):
        depth_tables(dataclasses.replace(machine, spectra=None), MkmModel())


def _sobp_centre_field(machine: Machine, tables: dict[str, DepthTables], proximal_mm: float,
                       distal_mm: float, lem: str = "lem averaged"
                       ) -> tuple[float, float, float, float]:
    """Dose and dose-weighted sums (z1D* D, alpha D, sqrt(beta) D) at the centre of a
    physically flat SOBP built from the machine's pencil beams (weights by NNLS)."""
    peaks = machine.peak_depth_mm
    sel = np.where((peaks >= proximal_mm - 2.0) & (peaks <= distal_mm))[0]
    depth = np.linspace(proximal_mm, distal_mm, 121)
    idd = np.array([np.interp(depth, machine.depth_mm[i], machine.idd_mev_cm2_per_g[i])
                    for i in sel]).T
    weights, _ = nnls(idd, np.ones_like(depth))
    centre = 0.5 * (proximal_mm + distal_mm)

    def at_centre(values: np.ndarray) -> np.ndarray:
        return np.array([np.interp(centre, machine.depth_mm[i], values[i]) for i in sel])

    d = weights * at_centre(machine.idd_mev_cm2_per_g)
    return (float(d.sum()), float(d @ at_centre(tables["mkm"].values[0])),
            float(d @ at_centre(tables[lem].values[0])),
            float(d @ at_centre(tables[lem].values[1])))


def test_nirs_clinical_rbe_at_the_centre_of_a_6cm_sobp(machine: Machine,
                                                       tables: dict[str, DepthTables]) -> None:
    """NIRS/QST reference case: centre of a 6 cm SOBP of a 290 MeV/u-range beam (100–160 mm).

    Inaniwa et al. 2015 chose the reference radiation (alpha_r = 0.764 /Gy, beta_r = 0.0615
    /Gy^2) as the HSG response at the centre of the 6 cm SOBP, where the clinical RBE is then
    F_clin = 2.41 at every dose level (unverified reading; see planning.rbe.mkm). Our generic
    beams give an SOBP-centre HSG alpha close to alpha_r; tolerance 5 % for the generic
    machine's fragment spectra and the physically (not biologically) flat SOBP.
    """
    dose, z_sum, _, _ = _sobp_centre_field(machine, tables, 100.0, 160.0)
    mkm = MkmModel()
    z_mix = z_sum / dose
    assert mkm.alpha0_gy + mkm.beta_gy2 * z_mix == pytest.approx(mkm.alpha_ref_gy, rel=0.05)
    for d_gy in (0.5, 1.0, 2.0):
        rbe = mkm.rbe_weighted_dose(np.array([d_gy]), (np.array([z_mix]),))[0] / d_gy
        assert rbe == pytest.approx(2.41, rel=0.05)


@pytest.mark.parametrize("scheme", ["central", "averaged"])
def test_lem_to_mkm_ratio_at_sobp_centre(machine: Machine, tables: dict[str, DepthTables],
                                         scheme: str) -> None:
    """Exchange case: Zhang et al. 2020 (Radiat Oncol 15, doi 10.1186/s13014-020-01723-z),
    20 recurrent nasopharynx patients planned with LEM I (RayStation) and recalculated with
    MKM: LEM/MKM = 1.37 (95 % CI 1.35–1.39) at 3.00 Gy(RBE) per fraction (LEM), rising to
    3.09 at 0.24 Gy(RBE). Here: centre of a 6 cm single-field SOBP (100–160 mm) of the generic
    machine, LEM I chordoma-like tissue (alpha_x/beta_x = 2 Gy, D_t = 30 Gy), mMKM HSG with
    F_clin = 2.41. Accepted band at 3 Gy(RBE): 1.3–1.5 (PHYSICS.md, "Between centres") for the
    impact-parameter averaged rapid scheme (the default); the central-traversal scheme of Kraemer
    and Scholz 2006 loses the penumbra energy outside the nucleus, which lowers alpha most
    at the low LET of the SOBP's proximal layers, so its band starts 0.1 lower (1.2–1.5). At
    0.24 Gy(RBE) 15 % around 3.09 (one SOBP point against patient-target averages).
    """
    key = f"lem {scheme}"
    dose, z_sum, a_sum, b_sum = _sobp_centre_field(machine, tables, 100.0, 160.0, key)
    lem, mkm = LemModel(tissue_by_name("chordoma", scheme)), MkmModel()
    mixed_lem = (np.array([a_sum / dose]), np.array([b_sum / dose]))
    mixed_mkm = (np.array([z_sum / dose]),)

    def ratio_at_lem_dose(target_gy_rbe: float) -> float:
        phys = brentq(lambda x: lem.rbe_weighted_dose(np.array([x]), mixed_lem)[0]
                      - target_gy_rbe, 1e-5, 30.0)
        return target_gy_rbe / float(mkm.rbe_weighted_dose(np.array([phys]), mixed_mkm)[0])

    r_3, r_low = ratio_at_lem_dose(3.0), ratio_at_lem_dose(0.24)
    assert (1.2 if scheme == "central" else 1.3) <= r_3 <= 1.5
    assert r_low > ratio_at_lem_dose(1.0) > r_3         # rises at low dose per fraction
    assert r_low == pytest.approx(3.09, rel=0.15)       # Zhang 2020 at 0.24 Gy(RBE)


@pytest.mark.parametrize("scheme", ["central", "averaged"])
def test_published_dose_dependence_needs_only_one_lem_alpha_scale(
        machine: Machine, tables: dict[str, DepthTables], scheme: str) -> None:
    """Zhang et al. 2020 (Radiat Oncol 15, doi 10.1186/s13014-020-01723-z) give LEM/MKM at three
    LEM doses per fraction: 1.37 at 3.00 Gy(RBE), 1.46 (95 % CI 1.41-1.51) at 2.70 and 3.09
    (2.94-3.24) at 0.24. At the centre of the 6 cm SOBP, scaling IonPlan's LEM I alpha_mix alone
    (beta_mix, the mixing and the mMKM NIRS dose unchanged) so that the 3.00 Gy(RBE) point is met
    puts the other two inside (2.70) and at the edge (0.24, within 6 %) of the published
    intervals: the dose dependence of both models agrees with the publication, and IonPlan's
    shortfall is one LEM alpha scale at the SOBP centre (measured 1.10 for the central rapid
    scheme, 1.06 for the averaged one; docs/physics.md, 'The published LEM/NIRS benchmark').
    """
    key = f"lem {scheme}"
    dose, z_sum, a_sum, b_sum = _sobp_centre_field(machine, tables, 100.0, 160.0, key)
    lem, mkm = LemModel(tissue_by_name("chordoma", scheme)), MkmModel()
    sqrt_beta = np.array([b_sum / dose])
    mixed_mkm = (np.array([z_sum / dose]),)

    def ratio(scale: float, target_gy_rbe: float) -> float:
        mixed_lem = (np.array([scale * a_sum / dose]), sqrt_beta)
        phys = brentq(lambda x: lem.rbe_weighted_dose(np.array([x]), mixed_lem)[0]
                      - target_gy_rbe, 1e-6, 30.0)
        return target_gy_rbe / float(mkm.rbe_weighted_dose(np.array([phys]), mixed_mkm)[0])

    scale = brentq(lambda k: ratio(k, 3.00) - 1.37, 0.5, 2.0)
    assert 1.41 <= ratio(scale, 2.70) <= 1.51
    assert ratio(scale, 0.24) == pytest.approx(3.09, rel=0.06)
    assert 1.0 < scale < 1.2  # IonPlan's LEM I alpha at the SOBP centre is below the published
