"""IonPlan planning domain: patient data, machines, physics, optimization, evaluation, CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ionplan")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"
