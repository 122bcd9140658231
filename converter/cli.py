"""Converter-stage subcommands: convert/evaluate (conversion) and analyze/check/optimize/fit (memory)."""
from __future__ import annotations


def register(sub) -> None:
    from . import convert_cli
    convert_cli.register(sub)
    try:
        from . import analyze_cli
    except ModuleNotFoundError as exc:  # analyzer not in this checkout yet
        if exc.name != f"{__package__}.analyze_cli":
            raise
    else:
        analyze_cli.register(sub)
