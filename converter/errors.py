"""User-facing errors of the conversion stage (printed as one line by the CLI dispatcher)."""
from __future__ import annotations


class ConvertError(Exception):
    """Bad input or an unconvertible model: the CLI prints one line and exits with `exit_code`."""

    exit_code = 2
