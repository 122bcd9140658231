"""HIL report: markdown + JSON from accuracy.json / latency.json (+ model.json accuracies)."""
from __future__ import annotations

import json
from pathlib import Path

from ..common import artifacts
from ..common.errors import UserError
from ..common.fsio import atomic_write_many
from .client import HilError
from .runner import ACCURACY, LATENCY


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _matrix(v) -> bool:
    return isinstance(v, list) and all(isinstance(r, list) and len(r) == len(v) and all(_int(x) for x in r) for r in v)


def _boards(v) -> bool:
    return isinstance(v, list) and all(isinstance(b, dict) and isinstance(b.get("info") or {}, dict) for b in v)


def _names(v) -> bool:
    return isinstance(v, list) and all(isinstance(c, str) for c in v)


# key -> (check, what it must be, required): what build_report and render_markdown read from each file
_ACCURACY = {
    "model": (lambda v: isinstance(v, str), "a path", False),
    **{k: (_number, "a number", False) for k in ("device_top1", "host_tflm_top1", "bit_exact_rate",
                                                  "top1_agreement_with_host", "samples_per_s")},
    "samples": (_int, "an integer", False), "bit_exact": (_int, "an integer", False),
    "complete": (lambda v: isinstance(v, bool), "true or false", False),
    "confusion_matrix": (_matrix, "a square matrix of integers", False),
    "classes": (_names, "a list of names", False), "boards": (_boards, "a list of board objects", False),
}
_LATENCY = {
    **{k: (_number, "a number", True) for k in ("min_ms", "median_ms", "p90_ms", "max_ms")},
    "model": (lambda v: isinstance(v, str), "a path", False),
    "board": (lambda v: isinstance(v, dict), "an object", False),
}


def _load(path: Path, fields: dict) -> dict | None:
    """accuracy.json / latency.json: None when absent, else an object whose fields have the types we read."""
    if not path.exists():
        return None
    try:
        doc = artifacts.read_json(path, path.name)
    except UserError as exc:
        raise HilError(str(exc)) from None
    if not isinstance(doc, dict):
        raise HilError(f"{path}: not a JSON object (expected the output of `netaug-mcu hil`)")
    for key, (ok, what, required) in fields.items():
        v = doc.get(key)
        if v is None and not required:
            continue
        if not ok(v):
            raise HilError(f"{path}: '{key}' must be {what} (got {str(v)[:40]!r})")
    return doc


def build_report(out_dir: str, model_path: str | None = None, latency_path: str | None = None) -> dict:
    out = Path(out_dir)
    acc = _load(out / ACCURACY, _ACCURACY)
    lat = _load(Path(latency_path), _LATENCY) if latency_path else _load(out / LATENCY, _LATENCY)
    if acc is None and lat is None:
        raise HilError(f"nothing to report in {out}: run `netaug-mcu hil accuracy --out {out}` and/or "
                       f"`netaug-mcu hil latency --out {out}` first")
    mp = model_path or (acc or {}).get("model") or (lat or {}).get("model")
    model_meta = {}
    if mp:
        from .model import load_model
        try:
            m = load_model(mp)
            model_meta = {"path": str(m.path), "sha256": m.sha256, "file_bytes": len(m.data),
                          "input": vars(m.input), "output": vars(m.output),
                          "float_top1": m.accuracy("float_top1"), "int8_top1": m.accuracy("int8_top1"),
                          "tflm_top1": m.accuracy("tflm_top1"), "eval_samples": m.meta.get("eval_samples"),
                          "model_json": str(m.meta_path) if m.meta_path else None}
        except HilError:
            raise
        except Exception as exc:  # noqa: BLE001
            model_meta = {"path": mp, "error": str(exc)}
    boards = []
    if acc:
        boards = [b.get("info") or {} for b in acc.get("boards", [])]
    elif lat:
        boards = [lat.get("board") or {}]
    board = boards[0] if boards else {}
    rep = {
        "format": artifacts.HIL_REPORT,
        "model": model_meta,
        "accuracy": None if acc is None else {
            "float_top1": model_meta.get("float_top1"),
            "int8_top1": model_meta.get("int8_top1"),
            "host_tflm_top1_model_json": model_meta.get("tflm_top1"),
            "host_tflm_top1": acc.get("host_tflm_top1"),
            "device_top1": acc.get("device_top1"),
            "samples": acc.get("samples"), "complete": acc.get("complete"),
            "bit_exact": acc.get("bit_exact"), "bit_exact_rate": acc.get("bit_exact_rate"),
            "top1_agreement_with_host": acc.get("top1_agreement_with_host"),
            "confusion_matrix": acc.get("confusion_matrix"), "classes": acc.get("classes"),
            "boards": acc.get("boards"), "samples_per_s": acc.get("samples_per_s"),
        },
        "latency": None if lat is None else {k: lat.get(k) for k in (
            "min_ms", "median_ms", "p90_ms", "max_ms", "mean_ms", "runs", "warmup", "timer", "timer_label",
            "clock_hz", "source", "note", "input")},
        "board": board,
        "arena": {"arena_bytes": board.get("arena"), "arena_used_bytes": board.get("arena_used")},
    }
    atomic_write_many({out / "report.json": json.dumps(rep, indent=2) + "\n", out / "report.md": render_markdown(rep)})
    return rep


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.2f} %"


def render_markdown(rep: dict) -> str:
    L = ["# HIL report", ""]
    m = rep.get("model") or {}
    if m:
        L += [f"Model: `{m.get('path')}` ({m.get('file_bytes', 'n/a')} B, sha256 {str(m.get('sha256'))[:12]}), "
              f"model.json: {m.get('model_json') or 'none'}", ""]
    b = rep.get("board") or {}
    if b:
        L += ["## Board", "", "| field | value |", "|---|---|"]
        L += [f"| {k} | {v} |" for k, v in b.items()]
        L += [""]
    a = rep.get("accuracy")
    if a:
        L += ["## Accuracy (top-1)", "", "| stage | top-1 | where |", "|---|---|---|",
              f"| float | {_pct(a.get('float_top1'))} | model.json (converter) |",
              f"| int8 (tf.lite / LiteRT) | {_pct(a.get('int8_top1'))} | model.json (converter) |",
              f"| int8 host TFLM | {_pct(a.get('host_tflm_top1'))} | this run, same {a.get('samples')} samples |",
              f"| **on device** | **{_pct(a.get('device_top1'))}** | this run, {a.get('samples')} samples"
              f"{'' if a.get('complete') else ' (INCOMPLETE)'} |", "",
              f"Bit-exact with host TFLM: {a.get('bit_exact')}/{a.get('samples')} "
              f"(rate {a.get('bit_exact_rate')}); top-1 agreement {_pct(a.get('top1_agreement_with_host'))}.", ""]
        if a.get("samples_per_s"):
            L += [f"Throughput: {a['samples_per_s']} samples/s over {len(a.get('boards') or [])} board(s).", ""]
        cm, cls = a.get("confusion_matrix"), a.get("classes")
        if cm:
            names = cls if cls and len(cls) == len(cm) else [str(i) for i in range(len(cm))]
            L += ["### Confusion matrix (rows: true, columns: predicted)", "",
                  "| true \\ pred | " + " | ".join(str(i) for i in range(len(cm))) + " |",
                  "|---|" + "---|" * len(cm)]
            L += [f"| {i} {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
            L += [""]
        for bd in a.get("boards") or []:
            L += [f"- `{bd.get('url')}`: {bd.get('samples')} samples, {bd.get('transfer')} transfer, "
                  f"resets {bd.get('resets')}, timeouts {bd.get('timeouts')}, CRC retries {bd.get('crc_retries')}"
                  + (f", error: {bd['error']}" if bd.get("error") else "")]
        L += [""]
    lt = rep.get("latency")
    if lt:
        L += ["## Latency per inference", "", f"Timer: {lt.get('timer')} — {lt.get('timer_label')}; "
              f"clock {lt.get('clock_hz')} Hz; from {lt.get('source')}; {lt.get('runs')} runs after "
              f"{lt.get('warmup')} warm-up invokes.", "",
              "| min | median | p90 | max |", "|---|---|---|---|",
              f"| {lt.get('min_ms'):.3f} ms | {lt.get('median_ms'):.3f} ms | {lt.get('p90_ms'):.3f} ms | "
              f"{lt.get('max_ms'):.3f} ms |", ""]
        if lt.get("note"):
            L += [f"Note: {lt['note']}.", ""]
    ar = rep.get("arena") or {}
    if ar.get("arena_bytes") is not None:
        L += ["## Memory", "", f"Arena: {ar.get('arena_used_bytes')} B used of {ar.get('arena_bytes')} B "
              f"(device `info%`).", ""]
    return "\n".join(L)
