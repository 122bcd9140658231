"""User-facing errors of the conversion stage (printed as one line by the CLI dispatcher)."""
from __future__ import annotations

from ..common.errors import UserError


class ConvertError(UserError):
    """Bad input or an unconvertible model (exit code 2)."""
