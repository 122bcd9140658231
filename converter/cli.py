"""Converter-stage subcommands: convert/evaluate (conversion) and analyze/check/optimize/fit (memory)."""
from __future__ import annotations

import importlib.util


def register(sub) -> None:
    from . import convert_cli
    convert_cli.register(sub)
    if importlib.util.find_spec(f"{__package__}.analyze_cli") is not None:
        from . import analyze_cli
        analyze_cli.register(sub)
