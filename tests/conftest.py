"""Shared fixtures: the shipped generic machine and its generator (both built once per
session), the GPU of the GPU tests (a CUDA device or the CPU stand-in) and the bundled demo
patient (once per module)."""

from __future__ import annotations

import pytest

from planning.dicom import load_demo_patient
from planning.machine import Machine, load_machine
from planning.machine_generator import CarbonMachineGenerator
from planning.patient import Patient
from tests import twin_device


@pytest.fixture(scope="session")
def machine() -> Machine:
    """The generic carbon machine shipped in assets/machines."""
    return load_machine()


@pytest.fixture(scope="session")
def generator() -> CarbonMachineGenerator:
    """The generator with the default (shipped) settings."""
    return CarbonMachineGenerator()


@pytest.fixture(params=["cuda", "twin"])
def gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A GPU test runs twice: on a CUDA device (skipped without one) and on the stand-in that
    runs the GPU engine's code on the CPU with the kernel's CPU twin (tests/twin_device.py),
    so that its glue is tested in CI too. The value is "cuda" or "twin"."""
    return twin_device.use_gpu(request.param, monkeypatch)


@pytest.fixture(scope="module")
def patient() -> Patient:
    """The bundled demo patient, loaded once per test module (a module may define its own
    ``patient`` fixture, such as a water phantom, which then takes precedence)."""
    return load_demo_patient()
