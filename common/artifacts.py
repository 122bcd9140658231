"""The files stages hand to each other: names, format tags (bump the number on an incompatible
change) and the readers that check them.

model.pt        (trainer -> converter) torch.save'd dict: format, arch {name, in_channels,
                num_classes, resolution}, state_dict, preprocess (common.preprocess), classes,
                metrics, train_config. Read with netaug_mcu.trainer.model_file (needs torch).
checkpoint.pt   (trainer, --resume) everything needed to continue a run exactly.
<model>.json    (converter -> firmware, hil) the conversion report next to <model>.tflite: format,
                input/output quantization, preprocess, op histogram, MACs, float/int8/TFLM top-1.
HIL run folder  journal.jsonl (one fsync'd line per finished sample), run.json (what the journal
                belongs to), accuracy.json, latency.json, report.json / report.md.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import UserError

MODEL_PT = "netaug-mcu/model/1"
CHECKPOINT = "netaug-mcu/checkpoint/1"
MODEL_JSON = "netaug-mcu/model-json/1"
HIL_RUN = "netaug-mcu/hil-run/1"
HIL_REPORT = "netaug-mcu/hil-report/1"

JOURNAL = "journal.jsonl"
RUN_META = "run.json"
ACCURACY = "accuracy.json"
LATENCY = "latency.json"


def model_json_path(tflite_path: str | os.PathLike) -> Path:
    """model.tflite -> model.json (the report that travels with a converted model)."""
    p = Path(tflite_path)
    return p.with_suffix(".json") if p.suffix else p.with_name(p.name + ".json")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parsed JSON, or a one-line UserError naming the file (missing, unreadable, not JSON)."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise UserError(f"{what} {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UserError(f"{what} {p} is not valid JSON ({exc})") from None
    except RecursionError:
        raise UserError(f"{what} {p} is not usable JSON (nested too deeply)") from None


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_model_json(path: str | os.PathLike) -> dict:
    """A converter report (<model>.json); its `preprocess`, when present, must be well-formed."""
    doc = read_json(path, "model.json")
    if not isinstance(doc, dict):
        raise UserError(f"model.json {path} is not a JSON object")
    pre = doc.get("preprocess")
    if pre is not None:
        if not isinstance(pre, dict):
            raise UserError(f"model.json {path}: 'preprocess' is not an object")
        for key in ("mean", "std"):
            v = pre.get(key)
            if v is not None and (not isinstance(v, list) or not all(_is_number(x) for x in v)):
                raise UserError(f"model.json {path}: preprocess.{key} must be a list of finite numbers")
        if any(x <= 0 for x in pre.get("std") or []):
            raise UserError(f"model.json {path}: preprocess.std values must be > 0")
        for key in ("resolution", "channels"):
            v = pre.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise UserError(f"model.json {path}: preprocess.{key} must be a positive integer")
    for key in ("input", "output"):
        io = doc.get(key)
        if io is None:
            continue
        if not isinstance(io, dict):
            raise UserError(f"model.json {path}: '{key}' is not an object")
        if io.get("scale") is not None and not _is_number(io["scale"]):
            raise UserError(f"model.json {path}: {key}.scale must be a finite number")
        if io.get("zero_point") is not None and (not isinstance(io["zero_point"], int) or isinstance(io["zero_point"], bool)):
            raise UserError(f"model.json {path}: {key}.zero_point must be an integer")
    cls = doc.get("classes")
    if cls is not None and (not isinstance(cls, list) or not all(isinstance(c, str) for c in cls)):
        raise UserError(f"model.json {path}: 'classes' must be a list of names")
    return doc
