"""User-facing errors of the trainer stage (all `UserError`s: one line, their exit code)."""
from __future__ import annotations

from ..common.datasets import DatasetError as DataError  # noqa: F401 - a missing/corrupt data set
from ..common.errors import UserError


class TrainError(UserError):
    """Bad input or an unrecoverable training condition (exit code 2)."""


class DivergedError(TrainError):
    """The loss became NaN/inf; the last good checkpoint is kept (exit code 3)."""

    exit_code = 3


class DistributedConfigError(TrainError):
    """Ranks of a distributed run disagree on their settings (exit code 2)."""
