"""Typed, actionable errors: every message names the column, row or parameter and the fix."""


class FinTuneError(Exception):
    """Base class for every error FinTune reports to a user (CLI exit 2, st.error in the app)."""


class DataError(FinTuneError, ValueError):
    """The input table cannot be used as given."""


class ConfigError(FinTuneError, ValueError):
    """A setting is out of range or inconsistent with the data."""


class BackboneError(FinTuneError):
    """A backbone cannot be found, downloaded or loaded."""


class TrainingError(FinTuneError):
    """Training stopped for a reason the user can act on.

    ``kind`` is one of ``non_finite_loss``, ``out_of_memory`` so the job status can say which.
    """

    def __init__(self, message: str, *, kind: str):
        super().__init__(message)
        self.kind = kind


class RunError(FinTuneError):
    """A run folder is missing, unfinished or unreadable."""
