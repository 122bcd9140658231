"""Board profiles (converter/data/boards.json) and memory budgets for `check`/`fit`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .analyzer import AnalyzerError

PATH = Path(__file__).with_name("data") / "boards.json"


@lru_cache(maxsize=None)
def _doc() -> dict:
    return json.loads(PATH.read_text())


def names() -> list[str]:
    return sorted(_doc()["boards"])


def default_reserve() -> int:
    return sum(_doc()["default_reserve"].values())


@dataclass
class Budget:
    board: str
    sram_bytes: int      # RAM available to the arena region
    flash_bytes: int
    reserve_bytes: int   # stack + heap + firmware .data/.bss
    target: str
    clock_mhz: int | None = None

    @property
    def arena_budget(self) -> int:
        return max(self.sram_bytes - self.reserve_bytes, 0)


def parse_size(text: str) -> int:
    """'320K', '1M', '327680', '0x50000' -> bytes."""
    s = str(text).strip().upper().replace("B", "").replace("I", "")
    mult = 1
    if s.endswith("K"):
        mult, s = 1024, s[:-1]
    elif s.endswith("M"):
        mult, s = 1024 * 1024, s[:-1]
    try:
        v = int(s, 0) if s.lower().startswith("0x") else float(s)
    except ValueError:
        raise AnalyzerError(f"bad size '{text}' (use bytes or K/M suffixes, e.g. 320K)") from None
    if v < 0:
        raise AnalyzerError(f"bad size '{text}': negative")
    return int(v * mult)


def budget(board: str | None, sram: str | None = None, flash: str | None = None,
           reserve: str | None = None) -> Budget:
    if board:
        b = _doc()["boards"].get(board)
        if b is None:
            raise AnalyzerError(f"unknown board '{board}' (known: {', '.join(names())}; or give --sram and --flash)")
        sram_b, flash_b, target, clock = b["sram_bytes"], b["flash_bytes"], b["target"], b["clock_mhz"]
    else:
        if not sram or not flash:
            raise AnalyzerError("give --board or both --sram and --flash")
        sram_b, flash_b, target, clock = 0, 0, "cortex-m7", None
    if sram:
        sram_b = parse_size(sram)
    if flash:
        flash_b = parse_size(flash)
    res = parse_size(reserve) if reserve is not None else default_reserve()
    return Budget(board or "custom", sram_b, flash_b, res, target, clock)
