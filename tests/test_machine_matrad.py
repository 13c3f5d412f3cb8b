"""Tests of the matRad machine import (planning.machine_matrad) on small synthetic MAT-files.

The fixtures follow the field layout of matRad's particle base data (matRad documentation,
"Particle Base Data File"): ``machine.meta`` and a 1 x E struct array ``machine.data``.
Expected values are the inputs themselves (the import must not change data on their own nodes)
or follow from the documented conventions (depths + offset, sigma of a Gaussian = FWHM / 2.3548).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io

from planning.errors import MachineError
from planning.machine import load_machine, pencil_beam_data, save_machine
from planning.machine_matrad import load_matrad_machine

# Unsorted on purpose: the import must sort by energy.
ENERGIES = (150.0, 100.0, 250.0)
PEAKS_MM = {100.0: 25.0, 150.0: 50.0, 250.0: 120.0}
N_DEPTHS = {100.0: 31, 150.0: 47, 250.0: 60}


def _depths(energy: float) -> np.ndarray:
    """Irregular nodes, dense around the peak, as matRad stores them."""
    peak, n = PEAKS_MM[energy], N_DEPTHS[energy]
    n_plateau = n // 3
    n_peak = n - n_plateau - 5
    plateau = np.linspace(0.0, 0.85 * peak, n_plateau, endpoint=False)
    around = np.linspace(0.85 * peak, peak + 8.0, n_peak, endpoint=False)
    tail = np.linspace(peak + 8.0, peak + 40.0, 5)
    return np.concatenate([plateau, around, tail])


def _idd(depths: np.ndarray, peak: float) -> np.ndarray:
    return 10.0 + 5.0 * depths / peak + 60.0 * np.exp(-0.5 * ((depths - peak) / 1.5) ** 2)


def _energy_entry(
    energy: float,
    *,
    double_gaussian: bool = False,
    weight_name: str = "weight",
    with_let: bool = False,
    n_tissues: int = 0,
    offset_mm: float = 0.0,
    z_struct: str | None = None,
) -> dict[str, Any]:
    d = _depths(energy)
    peak = PEAKS_MM[energy]
    col = d.reshape(-1, 1)  # MATLAB column vectors
    entry: dict[str, Any] = {
        "energy": energy,
        "range": peak + 1.0,
        "depths": col,
        "peakPos": peak,
        "offset": offset_mm,
        "initFocus": {
            "dist": np.array([[0.0, 20000.0]]),
            "sigma": np.array([[3.0, 5.0 + energy / 1000.0]]),
            "SisFWHMAtIso": 99.0,
        },
    }
    z = _idd(d, peak).reshape(-1, 1)
    if z_struct == "profileORG":
        entry["Z"] = {"mean": np.array([1.0, 2.0]), "width": np.array([3.0, 4.0]), "profileORG": z}
    elif z_struct == "other":
        entry["Z"] = {"mean": np.array([1.0, 2.0]), "profileAPM": z}
    else:
        entry["Z"] = z
    if double_gaussian:
        entry["sigma1"] = (0.02 * d + 0.1).reshape(-1, 1)
        entry["sigma2"] = (0.2 * d + 5.0).reshape(-1, 1)
        entry[weight_name] = (0.001 * d / peak).reshape(-1, 1)
    else:
        entry["sigma"] = (0.03 * d).reshape(-1, 1)
    if with_let:
        entry["LET"] = (1.0 + 80.0 * (d / (peak + 40.0)) ** 4).reshape(-1, 1)
    if n_tissues:
        t = np.arange(1, n_tissues + 1)
        entry["alpha"] = 0.1 * t[None, :] + 0.01 * d[:, None]
        entry["beta"] = 0.05 * np.ones((d.size, n_tissues)) + 1e-4 * d[:, None]
        entry["alphaX"] = 0.1 * t
        entry["betaX"] = 0.05 * np.ones(n_tissues)
    return entry


def _meta(mode: str = "carbon", **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "radiationMode": mode,
        "machine": "SynthGeneric",
        "SAD": 10000.0,
        "BAMStoIsoDist": 2000.0,
        "LUT_bxWidthminFWHM": np.array([[1.0, np.inf], [8.0, 8.0]]),
    }
    meta.update(extra)
    return meta


def _struct_array(entries: list[dict[str, Any]]) -> np.ndarray:
    """A 1 x E MATLAB struct array (all elements share the union of the field names)."""
    names: list[str] = []
    for e in entries:
        names += [k for k in e if k not in names]
    arr = np.zeros((1, len(entries)), dtype=[(n, object) for n in names])
    for i, e in enumerate(entries):
        for n in names:
            arr[0, i][n] = e.get(n, np.zeros((0, 0)))
    return arr


def _write_machine(
    tmp_path: Path,
    entries: list[dict[str, Any]],
    meta: dict[str, Any] | None = None,
    name: str = "carbon_Synth.mat",
) -> Path:
    p = tmp_path / name
    machine = {"meta": _meta() if meta is None else meta, "data": _struct_array(entries)}
    scipy.io.savemat(p, {"machine": machine})
    return p


def _index(machine: Any, energy: float) -> int:
    return int(np.flatnonzero(machine.energies_mev_u == energy)[0])


def _at_original_nodes(machine: Any, energy: float, table: np.ndarray, offset: float = 0.0):
    i = _index(machine, energy)
    d = _depths(energy) + offset
    d = d[d >= 0]
    return d, np.interp(d, machine.depth_mm[i], table[i])


# --------------------------------------------------------------------------- conversion


def test_single_gaussian_machine(tmp_path: Path) -> None:
    p = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES])
    m = load_matrad_machine(p)
    assert m.name == "SynthGeneric"
    assert (m.ion_z, m.ion_a) == (6, 12)
    np.testing.assert_array_equal(m.energies_mev_u, [100.0, 150.0, 250.0])
    np.testing.assert_array_equal(m.peak_depth_mm, [25.0, 50.0, 120.0])
    assert m.sad_mm == (10000.0, 10000.0)
    # Common node count: the largest of the energies, every row starting at 0.
    assert m.depth_mm.shape == (3, max(N_DEPTHS.values()))
    np.testing.assert_array_equal(m.depth_mm[:, 0], 0.0)
    for e in ENERGIES:
        i = _index(m, e)
        assert np.all(np.isin(_depths(e), m.depth_mm[i]))
        d, idd = _at_original_nodes(m, e, m.idd_mev_cm2_per_g)
        np.testing.assert_allclose(idd, _idd(d, PEAKS_MM[e]), rtol=1e-6)
        _, sigma = _at_original_nodes(m, e, m.sigma_core_mm)
        np.testing.assert_allclose(sigma, 0.03 * d, rtol=1e-6, atol=1e-12)
        # The padding nodes lie on the straight line between original nodes.
        np.testing.assert_allclose(
            m.idd_mev_cm2_per_g[i], np.interp(m.depth_mm[i], d, _idd(d, PEAKS_MM[e])), rtol=1e-12
        )
        # In-air sigma interpolated at the SAD (halfway between dist 0 and 20000 mm).
        assert m.spot_sigma_air_mm[i] == pytest.approx(0.5 * (3.0 + 5.0 + e / 1000.0))
    np.testing.assert_array_equal(m.sigma_halo_mm, m.sigma_core_mm)
    np.testing.assert_array_equal(m.halo_weight, 0.0)
    np.testing.assert_array_equal(m.letd_kev_um, 0.0)
    assert m.lq_tables is None
    prov = m.provenance
    assert prov["source"] == "matRad"
    assert prov["source_file"] == str(p)
    assert prov["machine_name"] == "SynthGeneric"
    assert prov["letd_available"] is False
    for field in (
        "meta.radiationMode",
        "meta.SAD",
        "data.depths",
        "data.Z",
        "data.sigma",
        "data.initFocus.dist",
        "data.initFocus.sigma",
        "data.peakPos",
        "data.offset",
    ):
        assert field in prov["fields_used"]
    assert "data.LET" not in prov["fields_used"]


def test_equal_lengths_keep_nodes_unchanged(tmp_path: Path) -> None:
    entries = [_energy_entry(150.0), _energy_entry(150.0)]
    entries[1]["energy"] = 160.0
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    assert m.depth_mm.shape == (2, N_DEPTHS[150.0])
    np.testing.assert_array_equal(m.depth_mm[0], _depths(150.0))
    np.testing.assert_array_equal(m.idd_mev_cm2_per_g[1], _idd(_depths(150.0), 50.0))


@pytest.mark.parametrize("weight_name", ["weight", "w"])
def test_double_gaussian_mapping(tmp_path: Path, weight_name: str) -> None:
    entries = [_energy_entry(e, double_gaussian=True, weight_name=weight_name) for e in ENERGIES]
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    for e in ENERGIES:
        d, core = _at_original_nodes(m, e, m.sigma_core_mm)
        _, halo = _at_original_nodes(m, e, m.sigma_halo_mm)
        _, weight = _at_original_nodes(m, e, m.halo_weight)
        np.testing.assert_allclose(core, 0.02 * d + 0.1, rtol=1e-9)
        np.testing.assert_allclose(halo, 0.2 * d + 5.0, rtol=1e-9)
        np.testing.assert_allclose(weight, 0.001 * d / PEAKS_MM[e], rtol=1e-9, atol=1e-15)
    assert f"data.{weight_name}" in m.provenance["fields_used"]
    assert "data.sigma2" in m.provenance["fields_used"]


def test_let_and_lq_tables(tmp_path: Path) -> None:
    entries = [_energy_entry(e, with_let=True, n_tissues=2) for e in ENERGIES]
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    assert m.provenance["letd_available"] is True
    lq = m.lq_tables
    assert lq is not None
    np.testing.assert_allclose(lq.alpha_x_gy, [0.1, 0.2])
    np.testing.assert_allclose(lq.beta_x_gy2, [0.05, 0.05])
    assert lq.alpha_gy.shape == (*m.depth_mm.shape, 2)
    for e in ENERGIES:
        i = _index(m, e)
        d, let = _at_original_nodes(m, e, m.letd_kev_um)
        np.testing.assert_allclose(let, 1.0 + 80.0 * (d / (PEAKS_MM[e] + 40.0)) ** 4, rtol=1e-9)
        for t in range(2):
            alpha = np.interp(d, m.depth_mm[i], lq.alpha_gy[i, :, t])
            beta = np.interp(d, m.depth_mm[i], lq.beta_gy2[i, :, t])
            np.testing.assert_allclose(alpha, 0.1 * (t + 1) + 0.01 * d, rtol=1e-9)
            np.testing.assert_allclose(beta, 0.05 + 1e-4 * d, rtol=1e-9)
    for field in ("data.LET", "data.alpha", "data.beta", "data.alphaX", "data.betaX"):
        assert field in m.provenance["fields_used"]


def test_single_tissue_class(tmp_path: Path) -> None:
    entries = [_energy_entry(e, n_tissues=1) for e in ENERGIES]
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    assert m.lq_tables is not None
    assert m.lq_tables.alpha_gy.shape == (*m.depth_mm.shape, 1)
    np.testing.assert_allclose(m.lq_tables.alpha_x_gy, [0.1])


def test_negative_offset_cuts_at_surface(tmp_path: Path) -> None:
    offset = -3.3
    entries = [_energy_entry(e, offset_mm=offset) for e in ENERGIES]
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    np.testing.assert_allclose(m.peak_depth_mm, [25.0 + offset, 50.0 + offset, 120.0 + offset])
    np.testing.assert_array_equal(m.depth_mm[:, 0], 0.0)
    for e in ENERGIES:
        i = _index(m, e)
        d, idd = _at_original_nodes(m, e, m.idd_mev_cm2_per_g, offset)
        np.testing.assert_allclose(idd, _idd(d - offset, PEAKS_MM[e]), rtol=1e-6)
        # The value at the surface is the matRad curve interpolated at depths = -offset.
        src = _depths(e)
        expected_0 = np.interp(-offset, src, _idd(src, PEAKS_MM[e]))
        assert m.idd_mev_cm2_per_g[i, 0] == pytest.approx(expected_0, rel=1e-12)
    assert any("negative depth" in note for note in m.provenance["conversion_notes"])


def test_positive_offset_extends_entrance(tmp_path: Path) -> None:
    offset = 2.0
    entries = [_energy_entry(e, offset_mm=offset) for e in ENERGIES]
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    np.testing.assert_allclose(m.peak_depth_mm, [27.0, 52.0, 122.0])
    for e in ENERGIES:
        i = _index(m, e)
        assert m.depth_mm[i, 0] == 0.0
        d, idd = _at_original_nodes(m, e, m.idd_mev_cm2_per_g, offset)
        np.testing.assert_allclose(idd, _idd(d - offset, PEAKS_MM[e]), rtol=1e-6)
        assert m.idd_mev_cm2_per_g[i, 0] == pytest.approx(_idd(np.array([0.0]), PEAKS_MM[e])[0])


@pytest.mark.parametrize(
    ("mode", "z", "a"), [("carbon", 6, 12), ("protons", 1, 1), ("helium", 2, 4), ("Carbon", 6, 12)]
)
def test_ion_species_from_radiation_mode(tmp_path: Path, mode: str, z: int, a: int) -> None:
    p = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES], meta=_meta(mode))
    m = load_matrad_machine(p)
    assert (m.ion_z, m.ion_a) == (z, a)
    assert m.provenance["radiation_mode"] == mode.lower()


@pytest.mark.parametrize("variant", ["profileORG", "other"])
def test_z_as_struct(tmp_path: Path, variant: str) -> None:
    entries = [_energy_entry(e, z_struct=variant) for e in ENERGIES]
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    for e in ENERGIES:
        d, idd = _at_original_nodes(m, e, m.idd_mev_cm2_per_g)
        np.testing.assert_allclose(idd, _idd(d, PEAKS_MM[e]), rtol=1e-6)
    used = "data.Z.profileORG" if variant == "profileORG" else "data.Z.profileAPM"
    assert used in m.provenance["fields_used"]


def test_spot_sigma_from_fwhm_at_iso(tmp_path: Path) -> None:
    entries = [_energy_entry(e) for e in ENERGIES]
    for e in entries:
        e["initFocus"] = {"SisFWHMAtIso": np.array([7.0, 12.0])}
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    expected = 7.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    np.testing.assert_allclose(m.spot_sigma_air_mm, expected, rtol=1e-12)
    assert "data.initFocus.SisFWHMAtIso" in m.provenance["fields_used"]


def test_spot_sigma_first_focus_and_single_column(tmp_path: Path) -> None:
    entries = [_energy_entry(e) for e in ENERGIES]
    entries[0]["initFocus"] = {
        "dist": np.array([[0.0, 10000.0, 20000.0], [0.0, 10000.0, 20000.0]]),
        "sigma": np.array([[2.0, 4.0, 9.0], [7.0, 7.0, 7.0]]),
        "SisFWHMAtIso": np.array([9.4, 16.5]),
    }
    entries[1]["initFocus"] = {"dist": 0.0, "sigma": 3.5, "SisFWHMAtIso": 99.0}
    m = load_matrad_machine(_write_machine(tmp_path, entries))
    assert m.spot_sigma_air_mm[_index(m, ENERGIES[0])] == pytest.approx(4.0)
    assert m.spot_sigma_air_mm[_index(m, ENERGIES[1])] == pytest.approx(3.5)


def test_separate_sad_x_y(tmp_path: Path) -> None:
    meta = _meta()
    del meta["SAD"]
    meta.update(SAD_x=6500.0, SAD_y=7200.0)
    m = load_matrad_machine(_write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES], meta))
    assert m.sad_mm == (6500.0, 7200.0)


def test_single_energy_machine(tmp_path: Path) -> None:
    m = load_matrad_machine(_write_machine(tmp_path, [_energy_entry(150.0)]))
    assert m.n_energies == 1
    assert m.depth_mm.shape == (1, N_DEPTHS[150.0])


def test_round_trip_through_ionplan_format(tmp_path: Path) -> None:
    entries = [_energy_entry(e, double_gaussian=True, with_let=True, n_tissues=2) for e in ENERGIES]
    src = _write_machine(tmp_path, entries)
    via_dispatch = load_machine(src)
    direct = load_matrad_machine(src)
    np.testing.assert_array_equal(via_dispatch.idd_mev_cm2_per_g, direct.idd_mev_cm2_per_g)
    out = tmp_path / "converted.npz"
    save_machine(direct, out)
    again = load_machine(out)
    assert again.name == direct.name
    assert (again.ion_z, again.ion_a) == (direct.ion_z, direct.ion_a)
    assert again.sad_mm == direct.sad_mm
    np.testing.assert_array_equal(again.energies_mev_u, direct.energies_mev_u)
    # The IonPlan format may store tables in float32: compare to float32 precision.
    for name in (
        "peak_depth_mm",
        "depth_mm",
        "idd_mev_cm2_per_g",
        "sigma_core_mm",
        "sigma_halo_mm",
        "halo_weight",
        "letd_kev_um",
        "spot_sigma_air_mm",
    ):
        np.testing.assert_allclose(getattr(again, name), getattr(direct, name), rtol=1e-6)
    assert again.lq_tables is not None and direct.lq_tables is not None
    np.testing.assert_allclose(again.lq_tables.alpha_gy, direct.lq_tables.alpha_gy, rtol=1e-6)
    np.testing.assert_allclose(again.lq_tables.beta_x_gy2, direct.lq_tables.beta_x_gy2, rtol=1e-6)
    assert again.provenance["fields_used"] == direct.provenance["fields_used"]
    assert again.provenance["source"] == "matRad"
    # The imported machine works with the energy interpolation of planning.machine.
    pb = pencil_beam_data(again, 125.0)
    assert 25.0 < pb.peak_depth_mm < 50.0


# --------------------------------------------------------------------------- errors


def _assert_machine_error(path: Path, fragment: str) -> None:
    with pytest.raises(MachineError) as info:
        load_matrad_machine(path)
    message = str(info.value)
    assert path.name in message
    assert fragment in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    _assert_machine_error(tmp_path / "nothing_here.mat", "machine file not found")


def test_not_a_mat_file(tmp_path: Path) -> None:
    p = tmp_path / "garbage.mat"
    p.write_bytes(b"this is not a MAT-file at all " * 20)
    _assert_machine_error(p, "not a readable MAT-file")


def test_truncated_mat_file(tmp_path: Path) -> None:
    p = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES])
    p.write_bytes(p.read_bytes()[:400])
    _assert_machine_error(p, "not a readable MAT-file")


def test_no_machine_variable(tmp_path: Path) -> None:
    p = tmp_path / "other.mat"
    scipy.io.savemat(p, {"ct": np.zeros((2, 2)), "cst": np.ones(3)})
    _assert_machine_error(p, "no variable 'machine'")


def test_machine_not_a_struct(tmp_path: Path) -> None:
    p = tmp_path / "matrix.mat"
    scipy.io.savemat(p, {"machine": np.zeros((3, 3))})
    _assert_machine_error(p, "must be a struct with fields 'meta' and 'data'")


def test_photon_machine_rejected(tmp_path: Path) -> None:
    p = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES], meta=_meta("photons"))
    _assert_machine_error(p, "radiationMode is 'photons'")


def test_missing_radiation_mode(tmp_path: Path) -> None:
    meta = _meta()
    del meta["radiationMode"]
    p = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES], meta)
    _assert_machine_error(p, "radiationMode is missing")


def test_missing_sad_is_not_replaced_by_bams_distance(tmp_path: Path) -> None:
    meta = _meta()
    del meta["SAD"]
    p = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES], meta)
    _assert_machine_error(p, "no SAD")


@pytest.mark.parametrize("field", ["energy", "depths", "Z", "sigma", "initFocus"])
def test_missing_required_field(tmp_path: Path, field: str) -> None:
    entries = [_energy_entry(e) for e in ENERGIES]
    del entries[1][field]
    p = _write_machine(tmp_path, entries)
    fragment = "missing field 'sigma'" if field == "sigma" else f"missing field '{field}'"
    _assert_machine_error(p, "machine.data(2)")
    _assert_machine_error(p, fragment)


def test_missing_part_of_double_gaussian(tmp_path: Path) -> None:
    entries = [_energy_entry(e, double_gaussian=True) for e in ENERGIES]
    del entries[2]["sigma2"]
    _assert_machine_error(
        _write_machine(tmp_path, entries), "machine.data(3) (250 MeV/u): missing field 'sigma2'"
    )


def test_inconsistent_lengths(tmp_path: Path) -> None:
    entries = [_energy_entry(e) for e in ENERGIES]
    entries[0]["Z"] = entries[0]["Z"][:-3]
    _assert_machine_error(
        _write_machine(tmp_path, entries),
        f"machine.data(1) (150 MeV/u): field 'Z' has {N_DEPTHS[150.0] - 3} values but 'depths' "
        f"has {N_DEPTHS[150.0]}",
    )


def test_alpha_of_wrong_shape(tmp_path: Path) -> None:
    entries = [_energy_entry(e, n_tissues=2) for e in ENERGIES]
    entries[1]["alpha"] = entries[1]["alpha"][:-1]
    _assert_machine_error(_write_machine(tmp_path, entries), "field 'alpha' must have shape")


def test_alpha_without_photon_parameters(tmp_path: Path) -> None:
    entries = [_energy_entry(e, n_tissues=2) for e in ENERGIES]
    for e in entries:
        del e["alphaX"]
    _assert_machine_error(_write_machine(tmp_path, entries), "missing field 'alphaX'")


def test_let_on_some_energies_only(tmp_path: Path) -> None:
    entries = [_energy_entry(e, with_let=(e != 250.0)) for e in ENERGIES]
    _assert_machine_error(_write_machine(tmp_path, entries), "differ in which optional fields")


def test_tissue_classes_differ_between_energies(tmp_path: Path) -> None:
    entries = [_energy_entry(e, n_tissues=2) for e in ENERGIES]
    entries[2]["alphaX"] = np.array([0.3, 0.2])
    _assert_machine_error(_write_machine(tmp_path, entries), "'alphaX'/'betaX' differ")


def test_duplicate_energy(tmp_path: Path) -> None:
    entries = [_energy_entry(e) for e in (*ENERGIES, 100.0)]
    _assert_machine_error(_write_machine(tmp_path, entries), "appears more than once")


def test_halo_weight_out_of_range(tmp_path: Path) -> None:
    entries = [_energy_entry(e, double_gaussian=True) for e in ENERGIES]
    entries[0]["weight"] = np.ones_like(entries[0]["weight"])
    _assert_machine_error(_write_machine(tmp_path, entries), "must lie in [0, 1)")


def test_non_increasing_depths(tmp_path: Path) -> None:
    entries = [_energy_entry(e) for e in ENERGIES]
    entries[1]["depths"] = entries[1]["depths"][::-1]
    _assert_machine_error(_write_machine(tmp_path, entries), "strictly increasing")


def test_non_finite_values(tmp_path: Path) -> None:
    entries = [_energy_entry(e) for e in ENERGIES]
    entries[0]["sigma"] = entries[0]["sigma"].copy()
    entries[0]["sigma"][4] = np.nan
    _assert_machine_error(_write_machine(tmp_path, entries), "field 'sigma' contains non-finite")


def test_peak_depth_not_positive(tmp_path: Path) -> None:
    entries = [_energy_entry(e, offset_mm=-30.0) for e in ENERGIES]
    _assert_machine_error(_write_machine(tmp_path, entries), "peakPos + offset")


def test_cli_depth_dose_with_a_matrad_machine(tmp_path: Path) -> None:
    """Bring-your-own beam data through the command line: ``--machine file.mat``."""
    from planning.cli import main

    path = _write_machine(tmp_path, [_energy_entry(e) for e in ENERGIES])
    out = tmp_path / "dd.csv"
    machine = load_matrad_machine(path)
    energy = float(0.5 * (machine.energies_mev_u[0] + machine.energies_mev_u[1]))
    assert main(["depth-dose", "--energy", f"{energy}", "--csv", str(out), "--machine",
                 str(path)]) == 0
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert rows.shape[1] == 3 and np.all(np.diff(rows[:, 0]) > 0)
    peak = rows[np.argmax(rows[:, 1]), 0]
    assert machine.peak_depth_mm[0] - 1 < peak < machine.peak_depth_mm[1] + 1
