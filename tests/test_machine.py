"""Machine file format, validation and energy interpolation."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from planning.errors import MachineError
from planning.machine import (
    TREATMENT_MACHINE_NAME_CHARS,
    Machine,
    load_machine,
    pencil_beam_data,
    save_machine,
)


def test_shipped_machine_is_self_describing(machine: Machine) -> None:
    path = Path(machine.provenance["source_file"])
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    assert "metadata_json.npy" in names
    with np.load(path) as data:
        meta = json.loads(str(data["metadata_json"]))
    assert meta["format"] == "ionplan-machine/1"
    prov = meta["provenance"]
    assert prov["generator"] == "planning.machine_generator"
    assert prov["generator_version"]
    assert "mstar_3_12" in prov["stopping_powers"]
    # Units are in the field names.
    for name in ("energies_mev_u", "depth_mm", "idd_mev_cm2_per_g", "letd_kev_um",
                 "sigma_core_mm", "spectra_fluence_per_primary"):
        assert f"{name}.npy" in names


def test_the_shipped_machine_is_named_whole_in_its_plans(machine: Machine) -> None:
    """The generic machine was "IonPlan generic 12C" in report.json and the plan document
    but "IonPlan generic" in its RT Ion Plans (16 characters) and so in the documents of
    plans read back: its name fits the RT Ion Plan whole, and the generator gives it."""
    from planning.machine_generator import GENERIC_MACHINE_NAME

    assert machine.name == GENERIC_MACHINE_NAME == "IonPlan generic"
    assert machine.treatment_machine_name == machine.name
    assert len(machine.name) <= TREATMENT_MACHINE_NAME_CHARS


def test_a_long_machine_name_is_cut_once_for_every_file(machine: Machine) -> None:
    """A machine file may name its machine with more than DICOM's 16 characters: its plans
    carry the first 16 (without trailing spaces) in every file, not the whole name in some."""
    long = dataclasses.replace(machine, name=" Synchrotron room 3 carbon ")
    assert long.treatment_machine_name == "Synchrotron room"
    assert dataclasses.replace(machine, name="HIT gantry").treatment_machine_name == "HIT gantry"


def test_round_trip(tmp_path: Path, machine: Machine) -> None:
    out = tmp_path / "m.npz"
    save_machine(machine, out)
    again = load_machine(out)
    assert again.name == machine.name and again.sad_mm == machine.sad_mm
    np.testing.assert_array_equal(again.idd_mev_cm2_per_g, machine.idd_mev_cm2_per_g)
    assert again.spectra is not None and machine.spectra is not None
    np.testing.assert_array_equal(again.spectra.fluence_per_primary,
                                  machine.spectra.fluence_per_primary)


def test_interpolated_energy_lies_between_neighbours(machine: Machine) -> None:
    e_lo, e_hi = machine.energies_mev_u[100], machine.energies_mev_u[101]
    mid = pencil_beam_data(machine, 0.5 * (e_lo + e_hi))
    assert machine.peak_depth_mm[100] < mid.peak_depth_mm < machine.peak_depth_mm[101]
    # The interpolated curve keeps a sharp peak at its own peak depth.
    j = int(np.argmax(mid.idd_mev_cm2_per_g))
    assert abs(mid.depth_mm[j] - mid.peak_depth_mm) < 0.3
    lo_peak = machine.idd_mev_cm2_per_g[100].max()
    hi_peak = machine.idd_mev_cm2_per_g[101].max()
    assert min(lo_peak, hi_peak) * 0.99 < mid.idd_mev_cm2_per_g.max() < max(lo_peak, hi_peak) * 1.01


def test_tabulated_energy_returns_its_row(machine: Machine) -> None:
    data = pencil_beam_data(machine, float(machine.energies_mev_u[42]))
    np.testing.assert_array_equal(data.idd_mev_cm2_per_g, machine.idd_mev_cm2_per_g[42])


@pytest.mark.parametrize("energy", [79.9, 430.5, float("nan"), -5.0])
def test_energy_outside_range_is_a_domain_error(machine: Machine, energy: float) -> None:
    with pytest.raises(MachineError, match="outside the machine's range"):
        pencil_beam_data(machine, energy)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(MachineError, match="not found"):
        load_machine(tmp_path / "nothing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(MachineError, match=r"bad\.npz"):
        load_machine(bad)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(MachineError, match="not an IonPlan machine file"):
        load_machine(other)


def test_truncated_file_is_a_domain_error(tmp_path: Path, machine: Machine) -> None:
    out = tmp_path / "m.npz"
    save_machine(machine, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    with pytest.raises(MachineError, match=r"m\.npz"):
        load_machine(out)


def test_validation_names_the_bad_field(machine: Machine) -> None:
    bad_idd = machine.idd_mev_cm2_per_g.copy()
    bad_idd[3, 7] = -1.0
    with pytest.raises(MachineError, match="idd_mev_cm2_per_g has negative values"):
        dataclasses.replace(machine, idd_mev_cm2_per_g=bad_idd)
    with pytest.raises(MachineError, match="strictly increasing"):
        dataclasses.replace(machine, energies_mev_u=machine.energies_mev_u[::-1].copy())
    with pytest.raises(MachineError, match="halo_weight"):
        dataclasses.replace(machine, halo_weight=np.ones_like(machine.halo_weight))


def test_failed_save_keeps_the_old_file(tmp_path: Path, machine: Machine,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m.npz"
    out.write_bytes(b"old contents")

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez_compressed", explode)
    with pytest.raises(RuntimeError):
        save_machine(machine, out)
    assert out.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_spot_limits_default_when_absent_and_round_trip(tmp_path: Path, machine: Machine) -> None:
    from planning.machine import DEFAULT_MAX_PARTICLES_PER_SPOT, DEFAULT_MIN_PARTICLES_PER_SPOT

    # a file written before the limits existed: they come from the defaults
    with np.load(machine.provenance["source_file"]) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["metadata_json"]))
    meta.pop("min_particles_per_spot", None)
    meta.pop("max_particles_per_spot", None)
    arrays["metadata_json"] = np.array(json.dumps(meta))
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **arrays)
    before = load_machine(old)
    assert before.min_particles_per_spot == DEFAULT_MIN_PARTICLES_PER_SPOT
    assert before.max_particles_per_spot == DEFAULT_MAX_PARTICLES_PER_SPOT
    out = tmp_path / "limits.npz"
    save_machine(dataclasses.replace(machine, min_particles_per_spot=2.5e4,
                                     max_particles_per_spot=3e7), out)
    again = load_machine(out)
    assert (again.min_particles_per_spot, again.max_particles_per_spot) == (2.5e4, 3e7)


@pytest.mark.parametrize(("low", "top", "message"), [
    (-1.0, 1e8, "min_particles_per_spot"),
    (float("nan"), 1e8, "min_particles_per_spot"),
    (1e5, 1e5, "max_particles_per_spot"),
    (1e5, float("inf"), "max_particles_per_spot"),
])
def test_bad_spot_limits_refused(machine: Machine, low: float, top: float, message: str) -> None:
    with pytest.raises(MachineError, match=message):
        dataclasses.replace(machine, min_particles_per_spot=low, max_particles_per_spot=top)
