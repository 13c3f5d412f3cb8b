"""Tests of the HU -> relative stopping power calibration (planning.hlut)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planning.errors import CalibrationError, InputError
from planning.hlut import (
    HlutCurve,
    default_hlut,
    load_hlut_csv,
    save_hlut_csv,
    stoichiometric_rsp,
)

# Woodard and White 1986 cortical bone, mass fractions (density 1.92 g/cm3).
CORTICAL_BONE = {
    "H": 0.034,
    "C": 0.155,
    "N": 0.042,
    "O": 0.435,
    "Na": 0.001,
    "Mg": 0.002,
    "P": 0.103,
    "S": 0.003,
    "Ca": 0.225,
}


def _write(tmp_path: Path, text: str, name: str = "curve.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- default curve


def test_default_curve_is_monotonic_and_positive() -> None:
    curve = default_hlut()
    assert curve.hu.size >= 8
    assert np.all(np.diff(curve.hu) > 0)
    assert np.all(np.diff(curve.rsp) >= 0)
    assert np.all(curve.rsp > 0)
    assert "NOT a scanner calibration" in curve.name


def test_default_curve_tissue_values_match_physics_md() -> None:
    curve = default_hlut()
    # Water: 0 HU, RSP 1 by definition.
    assert curve(0.0) == pytest.approx(1.0, abs=0.01)
    # Air about 0.001 (PHYSICS.md).
    assert float(curve(-1000.0)) < 0.01
    assert float(curve(-1024.0)) < 0.01
    # Lung 0.2-0.5 (PHYSICS.md) over the usual lung CT numbers.
    lung = curve(np.array([-800.0, -700.0, -600.0]))
    assert np.all((lung > 0.15) & (lung < 0.55))
    # Soft tissue 1.0-1.07 (PHYSICS.md).
    soft = curve(np.array([0.0, 20.0, 40.0, 60.0]))
    assert np.all((soft >= 0.99) & (soft <= 1.07))
    # Cortical bone 1.6-1.8 (PHYSICS.md) where cortical bone sits on a typical scanner.
    cortical = curve(np.array([1400.0, 1525.0, 1600.0]))
    assert np.all((cortical >= 1.6) & (cortical <= 2.0))


def test_default_curve_points_follow_documented_stoichiometry() -> None:
    # The CSV header documents cortical bone (1.92 g/cm3) at 1525 HU and water at 0 HU.
    curve = default_hlut()
    assert curve(1525.0) == pytest.approx(stoichiometric_rsp(1.92, CORTICAL_BONE), abs=5e-4)


# --------------------------------------------------------------------------- evaluation


def _simple_curve() -> HlutCurve:
    return HlutCurve(
        hu=np.array([-1000.0, 0.0, 1000.0]),
        rsp=np.array([0.001, 1.0, 1.5]),
        name="simple",
        source="test",
    )


def test_piecewise_linear_values() -> None:
    curve = _simple_curve()
    hu = np.array([-1000.0, -500.0, 0.0, 500.0, 1000.0])
    expected = np.array([0.001, 0.5005, 1.0, 1.25, 1.5])
    np.testing.assert_allclose(curve.hu_to_rsp(hu), expected, rtol=1e-12)


def test_clamped_outside_table() -> None:
    curve = _simple_curve()
    out = curve(np.array([-3000.0, -1001.0, 1001.0, 5000.0, np.inf, -np.inf]))
    np.testing.assert_array_equal(out, [0.001, 0.001, 1.5, 1.5, 1.5, 0.001])


def test_nan_propagates() -> None:
    assert np.isnan(_simple_curve()(np.array([np.nan]))[0])


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.int16, np.float32),
        (np.int32, np.float32),
        (np.float16, np.float32),
    ],
)
def test_dtype_and_shape(dtype: type, expected: type) -> None:
    curve = _simple_curve()
    hu = np.arange(-1200, 1200, 7).astype(dtype).reshape(-1, 1, 1)
    out = curve(hu)
    assert out.dtype == expected
    assert out.shape == hu.shape
    np.testing.assert_allclose(
        out.astype(np.float64),
        np.interp(hu.astype(np.float64), curve.hu, curve.rsp),
        rtol=2e-7 if expected == np.float32 else 1e-15,
    )


def test_large_volume_is_chunked_consistently() -> None:
    curve = default_hlut()
    rng = np.random.default_rng(1)
    hu = rng.uniform(-1100.0, 3100.0, size=(5, 1024, 1024)).astype(np.float32)
    out = curve(hu)
    assert out.dtype == np.float32
    idx = rng.integers(0, hu.size, size=2000)
    ref = np.interp(hu.reshape(-1)[idx].astype(np.float64), curve.hu, curve.rsp)
    np.testing.assert_allclose(out.reshape(-1)[idx], ref, rtol=2e-7)


def test_scalar_and_list_input() -> None:
    curve = _simple_curve()
    assert float(curve(500)) == pytest.approx(1.25)
    np.testing.assert_allclose(curve([0.0, 1000.0]), [1.0, 1.5])


def test_non_numeric_input_rejected() -> None:
    with pytest.raises(InputError):
        _simple_curve()(np.array(["a", "b"]))


def test_array_api_namespace_in_equals_out() -> None:
    xp = pytest.importorskip("array_api_strict")
    curve = _simple_curve()
    hu_np = np.array([[-2000.0, -500.0], [250.0, 4000.0]], dtype=np.float32)
    out = curve(xp.asarray(hu_np))
    assert out.__array_namespace__() is xp
    assert out.dtype == xp.float32
    assert out.shape == (2, 2)
    np.testing.assert_allclose(np.asarray(out), curve(hu_np), rtol=1e-6)
    out_int = curve(xp.asarray(np.array([0, 500], dtype=np.int16)))
    assert out_int.dtype == xp.float32


def test_curve_arrays_are_read_only_copies() -> None:
    hu = np.array([0.0, 1.0])
    curve = HlutCurve(hu=hu, rsp=np.array([1.0, 2.0]), name="c", source="s")
    hu[0] = -5.0
    assert curve.hu[0] == 0.0
    with pytest.raises(ValueError):
        curve.rsp[0] = 3.0


@pytest.mark.parametrize(
    ("hu", "rsp", "fragment"),
    [
        ([0.0], [1.0], "at least 2"),
        ([0.0, 0.0], [1.0, 1.1], "point 2: HU 0 is not greater"),
        ([0.0, 1.0], [1.0, -1.0], "point 2: RSP -1 is not positive"),
        ([0.0, 1.0], [1.1, 1.0], "point 2: RSP 1 at HU 1 is lower"),
        ([0.0, np.nan], [1.0, 1.1], "not finite"),
        ([0.0, 1.0, 2.0], [1.0, 1.1], "must match"),
    ],
)
def test_curve_validation(hu: list[float], rsp: list[float], fragment: str) -> None:
    with pytest.raises(CalibrationError, match=fragment) as info:
        HlutCurve(hu=np.array(hu), rsp=np.array(rsp), name="bad", source="my_source")
    assert "my_source" in str(info.value)


# --------------------------------------------------------------------------- CSV loading


def test_round_trip_of_user_csv(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        "# name: CT scanner A, 120 kV\n"
        "# measured 2024-05-01\n"
        "hu,rsp\n"
        "-1024, 0.001\n"
        "  -750 ,0.25   # lung insert\n"
        "\n"
        "0,1.0\n"
        "1200,1.65\n",
    )
    curve = load_hlut_csv(p)
    assert curve.name == "CT scanner A, 120 kV"
    assert curve.source == str(p)
    np.testing.assert_array_equal(curve.hu, [-1024.0, -750.0, 0.0, 1200.0])
    np.testing.assert_array_equal(curve.rsp, [0.001, 0.25, 1.0, 1.65])
    out = tmp_path / "saved.csv"
    save_hlut_csv(curve, out)
    again = load_hlut_csv(out)
    assert again.name == curve.name
    np.testing.assert_array_equal(again.hu, curve.hu)
    np.testing.assert_array_equal(again.rsp, curve.rsp)


def test_default_curve_round_trips(tmp_path: Path) -> None:
    curve = default_hlut()
    out = tmp_path / "default_copy.csv"
    save_hlut_csv(curve, out)
    again = load_hlut_csv(out)
    np.testing.assert_array_equal(again.hu, curve.hu)
    np.testing.assert_array_equal(again.rsp, curve.rsp)


@pytest.mark.parametrize(
    "text",
    [
        "-1000 0.001\n0 1\n1000 1.5\n",
        "-1000\t0.001\n0\t1\n1000\t1.5\n",
        "-1000;0.001\n0;1\n1000;1.5\n",
        "\ufeffHU,RSP\n-1000,0.001\n0,1\n1000,1.5\n",
        "rsp,hu\n0.001,-1000\n1,0\n1.5,1000\n",
        "hu,rsp\r\n-1000,0.001\r\n0,1\r\n1000,1.5\r\n",
    ],
)
def test_accepted_layouts(tmp_path: Path, text: str) -> None:
    curve = load_hlut_csv(_write(tmp_path, text))
    np.testing.assert_array_equal(curve.hu, [-1000.0, 0.0, 1000.0])
    np.testing.assert_array_equal(curve.rsp, [0.001, 1.0, 1.5])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "hu,rsp\n-1000,0.001\n-100,0.9\n0,1\n-200,1.1\n",
            "line 5 (row 4): HU -200 is not greater than the previous HU 0",
        ),
        ("hu,rsp\n-1000,0.001\n-1000,0.002\n", "line 3 (row 2): HU -1000 is not greater"),
        ("hu,rsp\n-1000,0.001\n0,1\n1000,0.9\n", "line 4 (row 3): RSP 0.9 at HU 1000 is lower"),
        ("hu,rsp\n-1000,-0.001\n0,1\n", "line 2 (row 1): RSP -0.001 is not positive"),
        ("hu,rsp\n-1000,0\n0,1\n", "RSP 0 is not positive"),
        ("hu,rsp\n-1000,0.001\n0,nan\n", "line 3 (row 2): RSP 'nan' is not finite"),
        ("hu,rsp\n-1000,0.001\ninf,1\n", "HU 'inf' is not finite"),
        ("hu,rsp\n0,1\n", "at least 2 data rows, found 1"),
        ("# only a comment\n\n", "at least 2 data rows, found 0"),
        ("hu,rsp\n-1000,abc\n0,1\n", "line 2 (row 1): RSP 'abc' is not a number"),
        ("hu,rsp\n-1000,0.001,7\n", "line 2: expected 2 columns"),
        ("The quick brown fox\njumps over\n", "expected 2 columns"),
        ("density,hu\n1,0\n2,1000\n", "line 1: header 'density,hu' must name the columns"),
        ("hu,rsp\n0,1\n1e3,1,5\n", "expected 2 columns"),
    ],
)
def test_invalid_csv_raises_calibration_error(tmp_path: Path, text: str, fragment: str) -> None:
    p = _write(tmp_path, text, name="clinic_hlut.csv")
    with pytest.raises(CalibrationError) as info:
        load_hlut_csv(p)
    message = str(info.value)
    assert "clinic_hlut.csv" in message
    assert fragment in message
    assert info.value.path == str(p)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "no_such_curve.csv"
    with pytest.raises(CalibrationError, match=r"no_such_curve\.csv: file not found"):
        load_hlut_csv(p)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="is a folder"):
        load_hlut_csv(tmp_path)


def test_binary_garbage(tmp_path: Path) -> None:
    p = tmp_path / "image.csv"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CalibrationError, match=r"image\.csv: is a binary file"):
        load_hlut_csv(p)


def test_non_utf8_text(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes("# Kalibrierung für Gerät\nhu,rsp\n0,1\n1,2\n".encode("latin-1"))
    with pytest.raises(CalibrationError, match=r"latin1\.csv: is not UTF-8"):
        load_hlut_csv(p)


# --------------------------------------------------------------------------- stoichiometry


def test_stoichiometric_rsp_of_water_is_one() -> None:
    water = {"H": 0.111907, "O": 0.888093}
    for energy in (50.0, 200.0, 400.0):
        assert stoichiometric_rsp(1.0, water, energy_mev_u=energy) == pytest.approx(1.0, abs=1e-12)
    assert stoichiometric_rsp(1.1, water) == pytest.approx(1.1, abs=1e-12)


def test_stoichiometric_rsp_against_published_values() -> None:
    # PMMA (C5H8O2, 1.19 g/cm3): RSPs measured in therapeutic proton and carbon beams are
    # reported between 1.16 and 1.17.
    pmma = {"H": 8 * 1.008 / 100.117, "C": 5 * 12.011 / 100.117, "O": 2 * 15.999 / 100.117}
    assert 1.16 <= stoichiometric_rsp(1.19, pmma) <= 1.17
    # Cortical bone: 1.6-1.8 (PHYSICS.md).
    assert 1.6 <= stoichiometric_rsp(1.92, CORTICAL_BONE) <= 1.8
    # Dry air, 1.205e-3 g/cm3: about 0.001 (PHYSICS.md); the mass stopping power of air is
    # 0.88-0.89 of water's at these energies (ICRU Report 49).
    air = {"N": 0.755, "O": 0.232, "Ar": 0.013}
    assert stoichiometric_rsp(1.205e-3, air) == pytest.approx(1.205e-3 * 0.885, rel=0.01)


@pytest.mark.parametrize(
    ("density", "fractions", "fragment"),
    [
        (1.0, {"Xx": 1.0}, "unknown element"),
        (1.0, {"H": 0.5, "O": 0.3}, "sum to 0.8"),
        (1.0, {"H": -0.1, "O": 1.1}, ">= 0"),
        (0.0, {"H": 0.111907, "O": 0.888093}, "density must be > 0"),
    ],
)
def test_stoichiometric_rsp_rejects_bad_input(
    density: float, fractions: dict[str, float], fragment: str
) -> None:
    with pytest.raises(InputError, match=fragment):
        stoichiometric_rsp(density, fractions)
