"""Monitor units to particles: the dose monitor calibration of a scanning beam line.

An RT Ion Plan whose Primary Dosimeter Unit is MU gives each spot's meterset in monitor units
of the machine's transmission ionization chambers. A chamber collects a charge proportional to
the energy the ions leave in its air gap, that is to the number of ions times their stopping
power in air; so the particles per MU of one beam line fall with energy as the stopping power
of air rises towards low energies (about 2.8x from 400 down to 80 MeV/u for carbon). A
clinic's calibration (particles per MU measured against a reference chamber at each energy)
therefore belongs to its machine and is a table over energy.

:class:`MonitorCalibration` holds one of three forms, parsed from the user's text by
:func:`parse_monitor_calibration`:

- ``"<particles per MU>@<energy MeV/u>"``: one measured point, carried to the other energies
  with the electronic stopping power of air (Bethe, I = 85.7 eV, ICRU Report 37/49 for dry air;
  :func:`planning.physics.stopping.bethe_stopping_ratio`): N(E) = N(E_ref) S(E_ref) / S(E). Its
  ratio between 80 and 430 MeV/u agrees with NIST PSTAR's air table (protons at the same
  velocity) within 0.5 % (tests/test_monitor_calibration.py). It assumes a chamber whose W-value
  does not change with energy (within about 1 % for ions in air above 10 MeV/u) and counts
  only the primaries' own ionization.
- a CSV file of ``energy_MeV_u, particles_per_MU`` rows (a header line allowed), energies
  increasing: the clinic's table, interpolated linearly in log(energy) / log(particles per
  MU); energies outside it are refused.
- ``"<particles per MU>"``: one number for every energy, as some systems book it when their
  chambers are read per energy layer already corrected; the import says it assumed that.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planning.errors import InputError, os_error_reason
from planning.physics.stopping import bethe_stopping_ratio

#: Mean excitation energy of dry air (near sea level), eV (ICRU Report 37; also ICRU 49).
AIR_MEAN_EXCITATION_EV = 85.7

#: Where a measured point N@E may lie, MeV/u: the energies of carbon therapy beams (about
#: 50-430 MeV/u), within which Bethe's stopping power of air carries it to the others (its
#: ratios follow NIST PSTAR within 0.5 % at 80-430 MeV/u).
REFERENCE_ENERGY_RANGE_MEV_U = (50.0, 500.0)

#: The forms of a calibration (:attr:`MonitorCalibration.kind`).
CONSTANT, AIR_SCALED, TABLE = "constant", "air stopping power", "table"


@dataclass(frozen=True)
class MonitorCalibration:
    """Primary particles per monitor unit of a machine's dose monitor, by beam energy.

    Attributes
    ----------
    kind : str
        :data:`CONSTANT`, :data:`AIR_SCALED` or :data:`TABLE`.
    energies_mev_u : tuple of float
        The calibration energies, MeV/u, increasing (one for :data:`AIR_SCALED`, none for
        :data:`CONSTANT`).
    particles_per_mu : tuple of float
        Particles per MU at those energies (the one value for :data:`CONSTANT`).
    source : str
        Where it came from: the text typed or the table's file path.
    """

    kind: str
    energies_mev_u: tuple[float, ...]
    particles_per_mu: tuple[float, ...]
    source: str

    def at(self, energy_mev_u: float) -> float:
        """Particles per MU at ``energy_mev_u`` (MeV/u).

        Raises
        ------
        InputError
            The energy lies outside a table's range.
        """
        if self.kind == CONSTANT:
            return self.particles_per_mu[0]
        if self.kind == AIR_SCALED:
            ref = self.energies_mev_u[0]
            return self.particles_per_mu[0] * float(bethe_stopping_ratio(
                ref, energy_mev_u, i_ev=AIR_MEAN_EXCITATION_EV))
        lo, hi = self.energies_mev_u[0], self.energies_mev_u[-1]
        if not lo * (1 - 1e-9) <= energy_mev_u <= hi * (1 + 1e-9):
            raise InputError(f"monitor calibration {self.source}: no value at "
                             f"{energy_mev_u:g} MeV/u (the table covers {lo:g}-{hi:g} MeV/u)")
        return float(np.exp(np.interp(math.log(energy_mev_u), np.log(self.energies_mev_u),
                                       np.log(self.particles_per_mu))))

    def record(self) -> dict[str, object]:
        """The calibration as report.json keeps it (:meth:`from_record` reads it back)."""
        return {"kind": self.kind, "energies_mev_u": list(self.energies_mev_u),
                "particles_per_mu": list(self.particles_per_mu), "source": self.source,
                "description": self.describe()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MonitorCalibration:
        """A calibration from :meth:`record`'s dict.

        Raises
        ------
        InputError
            Not such a record (missing or malformed entries).
        """
        try:
            made = cls(str(record["kind"]), tuple(float(e) for e in record["energies_mev_u"]),
                       tuple(float(n) for n in record["particles_per_mu"]),
                       str(record["source"]))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"not a monitor calibration record: {record!r}") from None
        if made.kind not in (CONSTANT, AIR_SCALED, TABLE) or not made.particles_per_mu:
            raise InputError(f"not a monitor calibration record: {record!r}")
        return made

    def describe(self) -> str:
        """One line for reports and import notes."""
        if self.kind == CONSTANT:
            return f"{self.particles_per_mu[0]:.6g} particles/MU at every energy"
        if self.kind == AIR_SCALED:
            return (f"{self.particles_per_mu[0]:.6g} particles/MU at "
                    f"{self.energies_mev_u[0]:g} MeV/u, other energies by the stopping power "
                    f"of air (I = {AIR_MEAN_EXCITATION_EV:g} eV)")
        return (f"table {self.source} ({len(self.energies_mev_u)} energies, "
                f"{self.energies_mev_u[0]:g}-{self.energies_mev_u[-1]:g} MeV/u)")


def parse_monitor_calibration(text: str | os.PathLike[str]) -> MonitorCalibration:
    """A calibration from the user's text: ``"2.1e5"``, ``"2.1e5@290"`` or a CSV path (module
    docstring).

    Raises
    ------
    InputError
        The text is none of these, a number is not finite and positive, or the table is
        unreadable or malformed (the message names the file and row).
    """
    raw = os.fspath(text).strip()
    if not raw:
        raise InputError("monitor calibration: empty; give particles per MU, "
                         "'<particles per MU>@<energy MeV/u>' or a CSV file")
    number, at, energy = raw.partition("@")
    if at:
        n = _positive(number, raw, "particles per MU")
        e = _positive(energy, raw, "energy (MeV/u)")
        lo, hi = REFERENCE_ENERGY_RANGE_MEV_U
        if not lo <= e <= hi:
            raise InputError(f"monitor calibration {raw!r}: the energy of the measured point "
                             f"must lie in {lo:g}-{hi:g} MeV/u (carbon therapy beams; the "
                             f"stopping power of air carries it to the other energies there), "
                             f"not {e:g}")
        return MonitorCalibration(AIR_SCALED, (e,), (n,), raw)
    try:
        value = float(raw)
    except ValueError:
        return _read_table(Path(raw))
    return MonitorCalibration(CONSTANT, (), (_positive(str(value), raw, "particles per MU"),),
                              raw)


def _positive(text: str, whole: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"monitor calibration {whole!r}: {what} {text.strip()!r} is not a "
                         "number") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"monitor calibration {whole!r}: {what} must be a positive number, "
                         f"not {text.strip()}")
    return value


def _read_table(path: Path) -> MonitorCalibration:
    if not path.is_file():
        raise InputError(f"monitor calibration {path}: not a number, "
                         "'<particles per MU>@<energy MeV/u>' or an existing CSV file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise InputError(f"monitor calibration {path}: cannot read it "
                         f"({os_error_reason(exc)})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"monitor calibration {path}: cannot read it ({exc})") from None
    energies: list[float] = []
    values: list[float] = []
    for number, row in enumerate(rows, start=1):
        hint = ("; separate the columns with a comma and write decimals with a point (a "
                "spreadsheet set to another locale writes ';' and ',')"
                if any(";" in c for c in row) else "")
        try:
            e, n = (float(c) for c in row[:2]) if len(row) >= 2 else (math.nan, math.nan)
        except ValueError:
            if number == 1 and not energies and not hint:
                continue  # a header line
            raise InputError(f"monitor calibration {path}, row {number}: {row!r} is not "
                             f"'energy_MeV_u, particles_per_MU'{hint}") from None
        if len(row) < 2 or not (math.isfinite(e) and math.isfinite(n) and e > 0 and n > 0):
            raise InputError(f"monitor calibration {path}, row {number}: {row!r} needs a "
                             "positive energy (MeV/u) and a positive number of particles per "
                             f"MU{hint}")
        if energies and e <= energies[-1]:
            raise InputError(f"monitor calibration {path}, row {number}: energy {e:g} MeV/u "
                             f"does not follow {energies[-1]:g}; list increasing energies")
        energies.append(e)
        values.append(n)
    if len(energies) < 2:
        raise InputError(f"monitor calibration {path}: {len(energies)} row(s); a table needs "
                         "at least two energies")
    return MonitorCalibration(TABLE, tuple(energies), tuple(values), str(path))
