"""Firmware-stage user errors (the CLI prints them as one line)."""
from __future__ import annotations

from ..common.errors import OverBudget, UserError


class FirmwareError(UserError):
    """Bad input or a missing prerequisite: exit code 2."""


class ModelRefused(FirmwareError, OverBudget):
    """The model does not fit the board: exit code 1."""

    exit_code = 1
