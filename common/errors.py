"""`UserError`: the base of every error a user can cause (bad input, a missing tool, a model that
does not fit). The `netaug-mcu` dispatcher prints it as one line and exits with `exit_code`;
anything else is an internal error (exit 3)."""
from __future__ import annotations


class UserError(Exception):
    """Bad input or an unusable environment: one line, exit code 2."""

    exit_code = 2


class OverBudget(UserError):
    """The model does not fit the board (exit code 1, like `check` over budget)."""

    exit_code = 1
