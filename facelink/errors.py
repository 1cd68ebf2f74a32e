"""Systemic errors: each stops a job with a non-zero exit and a one-line reason.

Per-row problems (a corrupt photo, a photo with no face) are never exceptions: they are rows with a
status and a reason. These classes are for what makes a whole run wrong.
"""


class FaceLinkError(Exception):
    """Base class: the job prints ``<job>: <message>`` and exits with :attr:`exit_code`."""

    exit_code = 1


class SetupError(FaceLinkError):
    """Something `make setup` installs is missing (jars, models, Java)."""

    exit_code = 3


class InputError(FaceLinkError):
    """The job's input cannot be read as a whole (missing manifest, missing columns)."""

    exit_code = 4


class AccountingError(FaceLinkError):
    """Counts do not balance: rows in != rows out + rejects. Nothing may be lost silently."""

    exit_code = 5


class RefusedError(FaceLinkError):
    """The run lacks what accountability requires (operator, purpose, authority); it is audited."""

    exit_code = 6


class DataQualityError(FaceLinkError):
    """A critical data-quality expectation failed; nothing downstream publishes."""

    exit_code = 7
