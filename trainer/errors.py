"""User-facing errors of the trainer stage.

Every exception here carries an integer ``exit_code``; the ``netaug-mcu`` dispatcher prints it
as one line (``netaug-mcu CMD: error: MSG``) and exits with that code, without a traceback.
"""
from __future__ import annotations


class TrainError(Exception):
    """Bad input or an unrecoverable training condition (exit code 2)."""

    exit_code = 2


class DataError(TrainError):
    """A dataset is missing, corrupt or unusable."""


class DivergedError(TrainError):
    """The loss became NaN/inf; the last good checkpoint is kept (exit code 3)."""

    exit_code = 3


class DistributedConfigError(TrainError):
    """Ranks of a distributed run disagree on their settings (exit code 2)."""
