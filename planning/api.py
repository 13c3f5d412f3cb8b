"""The facade that the CLI and the GUI both call.

Functions here take plain values (paths, numbers, callbacks) and return typed results or text;
they hold no state between calls.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np

from planning.atomic import atomic_write_text
from planning.machine import Machine, load_machine, pencil_beam_data, save_machine

ProgressCallback = Callable[[float, str], None]


def get_machine(machine_path: str | os.PathLike[str] | None = None) -> Machine:
    """Load a machine file (IonPlan ``.npz`` or matRad ``.mat``), or the shipped generic one."""
    return load_machine(machine_path)


def depth_dose_table(
    energy_mev_u: float, machine_path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth dose of one pencil beam in water at any energy inside the machine's range.

    Returns
    -------
    depth_mm, idd_mev_cm2_per_g, letd_kev_um : ndarray, shape (D,)
        Laterally integrated dose per primary and dose-averaged LET at each depth.
    """
    data = pencil_beam_data(get_machine(machine_path), float(energy_mev_u))
    return data.depth_mm, data.idd_mev_cm2_per_g, data.letd_kev_um


def write_depth_dose_csv(
    energy_mev_u: float,
    csv_path: str | os.PathLike[str],
    machine_path: str | os.PathLike[str] | None = None,
) -> int:
    """Write ``depth_mm,idd,letd_kev_um`` for one pencil beam in water atomically.

    ``idd`` is the laterally integrated dose per primary in MeV cm^2/g. Returns the row count.
    """
    depth, idd, letd = depth_dose_table(energy_mev_u, machine_path)
    buf = io.StringIO()
    buf.write("depth_mm,idd,letd_kev_um\n")
    for z, d, let in zip(depth, idd, letd, strict=True):
        buf.write(f"{z:.4f},{d:.6e},{let:.4f}\n")
    atomic_write_text(csv_path, buf.getvalue())
    return int(depth.size)


def machine_summary(machine_path: str | os.PathLike[str] | None = None) -> str:
    """A short human-readable description of a machine."""
    m = get_machine(machine_path)
    lo, hi = m.energy_range_mev_u
    steps = np.diff(m.peak_depth_mm)
    lines = [
        f"machine: {m.name} (Z={m.ion_z}, A={m.ion_a})",
        f"energies: {m.n_energies}, {lo:g}-{hi:g} MeV/u",
        f"Bragg peak depths: {m.peak_depth_mm[0]:.1f}-{m.peak_depth_mm[-1]:.1f} mm "
        f"(steps {steps.min():.2f}-{steps.max():.2f} mm)" if steps.size else
        f"Bragg peak depth: {m.peak_depth_mm[0]:.1f} mm",
        f"in-air spot sigma at isocentre: {m.spot_sigma_air_mm.max():.2f}-"
        f"{m.spot_sigma_air_mm.min():.2f} mm",
        f"virtual SAD: {m.sad_mm[0]:g} / {m.sad_mm[1]:g} mm",
        f"spectra: {'yes' if m.spectra is not None else 'no'}; "
        f"LQ tables: {'yes' if m.lq_tables is not None else 'no'}",
    ]
    src = m.provenance.get("generator") or m.provenance.get("source")
    if src:
        lines.append(f"provenance: {src} {m.provenance.get('generator_version', '')}".rstrip())
    return "\n".join(lines)


def generate_generic_machine(
    out_path: str | os.PathLike[str], progress: ProgressCallback | None = None
) -> Machine:
    """Regenerate the generic carbon machine and write it atomically to ``out_path``."""
    from planning.machine_generator import CarbonMachineGenerator

    machine = CarbonMachineGenerator().generate(progress=progress)
    save_machine(machine, out_path)
    return machine
