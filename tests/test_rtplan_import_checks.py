"""RT Ion Plan import: consistency checks of metersets, energies, fraction group and beam types.

Each case edits a plan exported by IonPlan (three beams of three layers, one control-point
pair per layer, tests/test_rtplan_dicom.py) so that one rule of PS3.3 is broken and checks
that the import refuses it with a :class:`DicomImportError` naming the file, the beam and
(for control points) the control point:

* Cumulative Meterset Weight (300A,0134): starts at 0, does not decrease, rises between
  control points ``i`` and ``i + 1`` by the sum of the Scan Spot Meterset Weights (300A,0396)
  of ``i``, ends at the Final Cumulative Meterset Weight; the last control point's weights
  are zero. The attribute is Type 2: an empty value is warned about and the beam not checked.
* The spots of control point ``i`` are delivered between ``i`` and ``i + 1``: the Nominal
  Beam Energy must not change across such a pair.
* Fraction group: a Beam Meterset of 0 for a beam with spots, a Referenced Beam Number
  without an Ion Beam Sequence item, a Number of Beams (300A,0080) that is not the number of
  Referenced Beam Sequence items (or is missing: Type 1), a beam referenced twice.
* A CONTINUATION beam delivers treatment dose that IonPlan cannot recompose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from planning.dicom import (
    DicomImportError,
    export_rt_ion_plan,
    load_rt_ion_plan,
)
from planning.patient import Patient
from planning.plan import Plan
from tests.test_rtplan_dicom import (  # noqa: F401  (plan: its fixture; patient: conftest's)
    SAD_MM,
    _edited,
    plan,
)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory, plan: Plan,  # noqa: F811
              patient: Patient) -> Path:
    path = tmp_path_factory.mktemp("rtplan_checks") / "RP_checks.dcm"
    export_rt_ion_plan(plan, patient, path, sad_mm=SAD_MM)
    return path


def _points(ds: Dataset, beam: int = 0) -> list[Dataset]:
    return list(ds.IonBeamSequence[beam].IonControlPointSequence)


def _weights(cp: Dataset) -> np.ndarray:
    return np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, dtype=np.float64))


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters."""
    return f"{value:.10g}"


def _refused(plan_file: Path, tmp_path: Path, edit: Callable[[Dataset], None],
             message: str) -> DicomImportError:
    path = _edited(plan_file, tmp_path, edit)
    with pytest.raises(DicomImportError, match=message) as info:
        load_rt_ion_plan(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def test_the_exported_plan_imports_without_warnings(plan_file: Path) -> None:
    imported = load_rt_ion_plan(plan_file)
    assert imported.warnings == ()
    assert len(imported.plan.beams) == 3


# --------------------------------------------------------------------------- item 1: cumulative


def _decreasing(ds: Dataset) -> None:
    _points(ds)[2].CumulativeMetersetWeight = 0.0  # 0, w0, 0, ...


def _middle_halved(ds: Dataset) -> None:
    points = _points(ds)
    for cp in points[1:-1]:
        cp.CumulativeMetersetWeight = _ds(float(cp.CumulativeMetersetWeight) / 2)


def _moved_into_closing_point(ds: Dataset) -> None:
    points = _points(ds)
    for opening, closing in zip(points[0::2], points[1::2], strict=True):
        closing.ScanSpotMetersetWeights = opening.ScanSpotMetersetWeights
        opening.ScanSpotMetersetWeights = (0 * _weights(opening)).tolist()


def _last_is_one(ds: Dataset) -> None:
    _points(ds)[-1].CumulativeMetersetWeight = 1.0


def _first_not_zero(ds: Dataset) -> None:
    points = _points(ds)
    shift = float(ds.IonBeamSequence[0].FinalCumulativeMetersetWeight) * 0.5
    for cp in points:
        cp.CumulativeMetersetWeight = _ds(float(cp.CumulativeMetersetWeight) + shift)
    ds.IonBeamSequence[0].FinalCumulativeMetersetWeight = points[-1].CumulativeMetersetWeight


def _weights_in_last_point(ds: Dataset) -> None:
    """The last pair's weights in both of its points (nothing is delivered after the last)."""
    points = _points(ds)
    points[-1].ScanSpotMetersetWeights = points[-2].ScanSpotMetersetWeights


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_decreasing, r"beam 'G90 C0', control point 2: Cumulative Meterset Weight 0 is "
                      r"below .* of control point 1"),
        (_middle_halved, r"beam 'G90 C0', control point 0: the spot meterset weights sum to "
                         r".* but the Cumulative Meterset Weight rises by"),
        (_moved_into_closing_point, r"beam 'G90 C0', control point 0: the spot meterset "
                                    r"weights sum to 0 but the Cumulative Meterset Weight "
                                    r"rises by"),
        (_last_is_one, r"beam 'G90 C0', control point 5: Cumulative Meterset Weight 1 is "
                       r"below"),
        (_first_not_zero, r"beam 'G90 C0', control point 0: Cumulative Meterset Weight .* "
                          r"must be 0"),
        (_weights_in_last_point, r"beam 'G90 C0', control point 5: the last control point "
                                 r"has spot meterset weights"),
    ],
)
def test_inconsistent_cumulative_meterset_weights_are_refused(
    plan_file: Path, tmp_path: Path, edit: Callable[[Dataset], None], message: str
) -> None:
    _refused(plan_file, tmp_path, edit, message)


def test_last_cumulative_weight_must_be_the_final_one(plan_file: Path, tmp_path: Path) -> None:
    """Cumulative weights and spot weights that agree, but a Final Cumulative Meterset Weight
    that is not the last control point's."""
    def edit(ds: Dataset) -> None:
        beam = ds.IonBeamSequence[0]
        beam.FinalCumulativeMetersetWeight = _ds(float(beam.FinalCumulativeMetersetWeight) * 1.01)

    _refused(plan_file, tmp_path, edit,
             r"beam 'G90 C0', control point 5: Cumulative Meterset Weight .* differs from the "
             r"Final Cumulative Meterset Weight")


def test_cumulative_weights_within_tolerance_are_accepted(plan_file: Path,
                                                          tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        for cp in _points(ds)[1:]:
            cp.CumulativeMetersetWeight = _ds(float(cp.CumulativeMetersetWeight) * (1 + 2e-4))

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, edit))
    assert imported.warnings == ()


@pytest.mark.parametrize("which", ["all", "one"])
def test_empty_cumulative_weights_are_warned_about(plan_file: Path, tmp_path: Path,
                                                   which: str) -> None:
    """Cumulative Meterset Weight is Type 2 in the Ion Control Point Sequence: empty values
    are allowed; the check is skipped for the beam, with a warning."""
    def edit(ds: Dataset) -> None:
        points = _points(ds, 1)
        for cp in points if which == "all" else points[3:4]:
            cp.CumulativeMetersetWeight = None
        if which == "all":  # Type 1C: required only when the cumulative weights are not empty
            del ds.IonBeamSequence[1].FinalCumulativeMetersetWeight

    imported = load_rt_ion_plan(_edited(plan_file, tmp_path, edit))
    assert len(imported.plan.beams) == 3
    assert any("beam 'G270 C0'" in w and "Cumulative Meterset Weight" in w and "empty" in w
               for w in imported.warnings), imported.warnings


# --------------------------------------------------------------------------- item 2: energy


def test_energy_change_inside_a_delivering_pair_is_refused(plan_file: Path,
                                                           tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        points = _points(ds)
        assert float(points[0].NominalBeamEnergy) == 180.5
        points[1].NominalBeamEnergy = 170.25

    _refused(plan_file, tmp_path, edit,
             r"beam 'G90 C0', control point 0: Nominal Beam Energy changes from 180.5 to "
             r"170.25 MeV/u at control point 1")


def test_energy_change_between_consecutive_delivering_points_is_refused(
        plan_file: Path, tmp_path: Path) -> None:
    """A layout without closing points: each point at its own energy, all with weights."""
    def edit(ds: Dataset) -> None:
        beam = ds.IonBeamSequence[0]
        points = _points(ds)
        # drop the closing point of the first pair: control point 0 (180.5) is followed by
        # control point 1 at 170.25 MeV/u, cumulative weights kept consistent
        del beam.IonControlPointSequence[1]
        beam.NumberOfControlPoints = len(points) - 1
        for index, cp in enumerate(beam.IonControlPointSequence):
            cp.ControlPointIndex = index

    _refused(plan_file, tmp_path, edit,
             r"beam 'G90 C0', control point 0: Nominal Beam Energy changes from 180.5 to "
             r"170.25 MeV/u at control point 1")


# --------------------------------------------------------------------------- item 3: fractions


def _zero_meterset(ds: Dataset) -> None:
    ds.FractionGroupSequence[0].ReferencedBeamSequence[0].BeamMeterset = 0.0


def _unknown_beam(ds: Dataset) -> None:
    group = ds.FractionGroupSequence[0]
    ref = Dataset()
    ref.ReferencedBeamNumber = 7
    ref.BeamMeterset = 1e6
    group.ReferencedBeamSequence.append(ref)
    group.NumberOfBeams = 4


def _beams_miscounted(ds: Dataset) -> None:
    ds.FractionGroupSequence[0].NumberOfBeams = 2


def _beams_uncounted(ds: Dataset) -> None:
    del ds.FractionGroupSequence[0].NumberOfBeams


def _referenced_twice(ds: Dataset) -> None:
    group = ds.FractionGroupSequence[0]
    group.ReferencedBeamSequence[2].ReferencedBeamNumber = \
        group.ReferencedBeamSequence[1].ReferencedBeamNumber


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_zero_meterset, r"beam 'G90 C0': Beam Meterset is 0 in the fraction group but "
                         r"control point 0 has spot meterset weights"),
        (_unknown_beam, r"fraction group: Referenced Beam Number 7 has no beam in the Ion "
                        r"Beam Sequence"),
        (_beams_miscounted, r"fraction group: Number of Beams is 2 but the Referenced Beam "
                            r"Sequence has 3 items"),
        (_beams_uncounted, r"fraction group: Number of Beams .* missing"),
        (_referenced_twice, r"fraction group: Referenced Beam Number 2 is listed twice"),
    ],
)
def test_inconsistent_fraction_group_is_refused(
    plan_file: Path, tmp_path: Path, edit: Callable[[Dataset], None], message: str
) -> None:
    _refused(plan_file, tmp_path, edit, message)


# --------------------------------------------------------------------------- item 4: continuation


def test_continuation_beam_is_refused(plan_file: Path, tmp_path: Path) -> None:
    def edit(ds: Dataset) -> None:
        ds.IonBeamSequence[2].TreatmentDeliveryType = "CONTINUATION"

    _refused(plan_file, tmp_path, edit,
             r"beam 'G270 C10': Treatment Delivery Type CONTINUATION .* IonPlan cannot "
             r"recompose continuation beams")
