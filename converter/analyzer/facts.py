"""Measured TFLM facts per target (converter/data/targets.json: struct sizes and alignments, builtin
option structs, kernel OpData sizes) and the kernel code sizes for the flash estimate
(converter/data/flash.json)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import ConvertError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
ALIGN = 16  # MicroArenaBufferAlignment()
TARGETS = ("cortex-m7", "cortex-m4", "cortex-m33", "cortex-m55", "host")


class AnalyzerError(ConvertError):
    """A model the analyzer cannot model (exit code 2)."""


def align_up(x: int, a: int = ALIGN) -> int:
    return (x + a - 1) // a * a


@lru_cache(maxsize=None)
def target_facts(target: str) -> dict:
    doc = json.loads((DATA_DIR / "targets.json").read_text())
    if target not in doc["targets"]:
        raise AnalyzerError(f"unknown target '{target}' (choose from {', '.join(sorted(doc['targets']))})")
    facts = dict(doc["targets"][target])
    base = facts.pop("inherits", None)   # same ABI as another target: its struct/op facts, these overrides
    if base:
        facts = {**{k: v for k, v in doc["targets"][base].items() if k != "calibration"}, **facts}
    facts["revisions"] = doc["revisions"]
    facts["no_op_data"] = doc.get("no_op_data", {}).get("ops", [])
    cal = facts.get("calibration") or {}
    for key in ("op_data", "structs", "builtin_data"):
        if key in cal:
            facts[key] = {**facts[key], **cal[key]}
    return facts


@lru_cache(maxsize=None)
def flash_facts() -> dict:
    return json.loads((DATA_DIR / "flash.json").read_text())


