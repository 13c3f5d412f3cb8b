"""The IonPlan exception hierarchy.

Every error a user can cause (bad file, bad parameter) is an :class:`IonPlanError`; its message
names the file or value and says what is wrong. The CLI prints it on one line and exits non-zero;
the GUI shows it in a dialog.
"""


class IonPlanError(Exception):
    """Base class of all errors a user can cause or fix."""


class InputError(IonPlanError):
    """An argument or parameter value is out of its valid range or malformed."""


class DataFileError(IonPlanError):
    """A data file (machine, HLUT curve, table) is missing, unreadable or inconsistent.

    Parameters
    ----------
    path : str
        The file concerned.
    reason : str
        What is wrong with it, and what to do.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MachineError(DataFileError):
    """A machine (beam data) file is invalid or a requested energy is out of its range."""


class CalibrationError(DataFileError):
    """A HU to relative stopping power calibration curve is invalid."""


class PlanningError(IonPlanError):
    """A planning step cannot proceed with the given plan, geometry or settings."""


class DeviceError(IonPlanError):
    """The requested compute device is not available."""


def os_error_reason(exc: OSError) -> str:
    """What an OSError says is wrong with its file, without the file's name, for a message
    that begins with it (the OS's text repeats it: "[Errno 2] No such file or directory:
    '/x/p.dcm'"): ``"no such file"``, ``"a folder, not a file"``, else the OS's reason
    (``"Permission denied"``)."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    return exc.strerror or type(exc).__name__
