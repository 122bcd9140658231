"""Firmware-stage user errors (the CLI prints them as one line)."""
from __future__ import annotations


class FirmwareError(Exception):
    """Bad input or missing prerequisite: one-line message, exit code 2."""
    exit_code = 2


class ModelRefused(FirmwareError):
    """The model does not fit the board or uses an op TFLM cannot run: exit code 1."""
    exit_code = 1
