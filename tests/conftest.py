"""Shared fixtures: the shipped generic machine and its generator (both built once per session)."""

from __future__ import annotations

import pytest

from planning.machine import Machine, load_machine
from planning.machine_generator import CarbonMachineGenerator


@pytest.fixture(scope="session")
def machine() -> Machine:
    """The generic carbon machine shipped in assets/machines."""
    return load_machine()


@pytest.fixture(scope="session")
def generator() -> CarbonMachineGenerator:
    """The generator with the default (shipped) settings."""
    return CarbonMachineGenerator()
