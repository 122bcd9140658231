"""`convert` and `evaluate` subcommands (placeholder until the converter lands)."""
from __future__ import annotations


def register(sub) -> None:
    return None
