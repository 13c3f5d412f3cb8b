"""Monitor units to particles (planning/monitor_calibration.py): the energy dependence against
NIST's stopping powers of air, and the user's three forms of a calibration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from planning.errors import InputError
from planning.monitor_calibration import AIR_SCALED, CONSTANT, TABLE, parse_monitor_calibration

#: NIST PSTAR (Berger, Coursey, Zucker, Chang; physics.nist.gov/PhysRefData/Star), electronic
#: stopping power of protons in dry air (near sea level), MeV cm^2/g, by proton energy, MeV.
PSTAR_AIR = {80.0: 7.620, 100.0: 6.443, 125.0: 5.475, 150.0: 4.816, 175.0: 4.338,
             200.0: 3.976, 225.0: 3.691, 250.0: 3.462, 275.0: 3.275, 300.0: 3.118,
             350.0: 2.871, 400.0: 2.687, 450.0: 2.544, 500.0: 2.431}
#: Proton mass / atomic mass unit: a proton of T = E x this has the speed of an ion of E MeV/u.
PROTON_MASS_U = 938.272 / 931.494


def _pstar_air(energy_mev_u: float) -> float:
    t = energy_mev_u * PROTON_MASS_U
    e = np.array(sorted(PSTAR_AIR))
    s = np.array([PSTAR_AIR[k] for k in e])
    return float(np.exp(np.interp(math.log(t), np.log(e), np.log(s))))


@pytest.mark.parametrize("energy", [80.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 430.0])
def test_particles_per_mu_follow_the_stopping_power_of_air(energy):
    """A chamber's charge per ion is proportional to the ion's stopping power in air: the
    particles per MU at ``energy`` relative to the calibration at 400 MeV/u are NIST's
    S_air(400) / S_air(E) (a bare carbon ion stops as 36 protons of the same speed)."""
    calibration = parse_monitor_calibration("3e5@400")
    assert calibration.kind == AIR_SCALED
    expected = _pstar_air(400.0) / _pstar_air(energy)
    assert calibration.at(energy) / 3e5 == pytest.approx(expected, rel=5e-3)


def test_the_three_forms_and_a_table_interpolated_log_log(tmp_path: Path):
    constant = parse_monitor_calibration(" 2.5e5 ")
    assert constant.kind == CONSTANT and constant.at(90.0) == constant.at(400.0) == 2.5e5
    table = tmp_path / "calibration.csv"
    table.write_text("energy_MeV_u,particles_per_MU\n100,1.0e5\n400,4.0e5\n")
    read = parse_monitor_calibration(table)
    assert read.kind == TABLE and read.energies_mev_u == (100.0, 400.0)
    assert read.at(100.0) == pytest.approx(1e5) and read.at(400.0) == pytest.approx(4e5)
    assert read.at(200.0) == pytest.approx(2e5)  # N = 1e3 E: a straight line in log-log
    assert "calibration.csv" in read.describe() and "100-400 MeV/u" in read.describe()
    with pytest.raises(InputError, match=r"no value at 99 MeV/u .*100-400 MeV/u"):
        read.at(99.0)


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("-2e5", "positive"),
    ("0@290", "particles per MU must be a positive"),
    ("2e5@", "energy .* is not a number"),
    ("2e5@nan", "energy .* must be a positive"),
    ("inf", "positive"),
    ("no-such-file.csv", "not a number, .* or an existing CSV file"),
    ("2e4@1", "must lie in 50-500 MeV/u"),  # Bethe would give nonsense (review)
    ("2e4@10000", "must lie in 50-500 MeV/u"),
])
def test_bad_calibrations_are_refused_with_what_is_wrong(text, message):
    with pytest.raises(InputError, match=message):
        parse_monitor_calibration(text)


@pytest.mark.parametrize("content, message", [
    ("energy,n\n100,1e5\n", "1 row"),
    ("100,1e5\n90,2e5\n", "row 2: energy 90 MeV/u does not follow 100"),
    ("100,1e5\nabc,2e5\n", "row 2"),
    ("100,1e5\n200,-3\n", "row 2: .* positive"),
    ("100\n200,2e5\n", "row 1"),
    ("100;1,0e5\n200;2,0e5\n", "row 1: .* separate the columns with a comma"),  # a European
])
def test_bad_tables_name_the_file_and_row(tmp_path: Path, content, message):
    path = tmp_path / "mu.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as err:
        parse_monitor_calibration(path)
    assert "mu.csv" in str(err.value)


def test_an_unreadable_table_is_named_once(tmp_path: Path, monkeypatch):
    """The OS's text repeats the path ("[Errno 13] Permission denied: '/x/mu.csv'") after the
    message has named it; the tests run as root, so the refusal is made here."""
    path = tmp_path / "mu.csv"
    path.write_text("100,1e5\n200,2e5\n")

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputError) as err:
        parse_monitor_calibration(path)
    assert str(err.value) == f"monitor calibration {path}: cannot read it (Permission denied)"


def test_a_calibration_comes_back_from_its_report_record(tmp_path: Path):
    from planning.monitor_calibration import MonitorCalibration

    table = tmp_path / "t.csv"
    table.write_text("100,1e5\n400,4e5\n")
    for text in ("2e5", "3e5@290", str(table)):
        made = parse_monitor_calibration(text)
        assert MonitorCalibration.from_record(made.record()) == made
    with pytest.raises(InputError, match="not a monitor calibration record"):
        MonitorCalibration.from_record({"kind": "guess", "energies_mev_u": [],
                                        "particles_per_mu": [1.0], "source": ""})
