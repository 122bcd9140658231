"""`hil profile`: per-operator time from the device (`prof%`, hil_tests/PROTOCOL.md), one row per op.

The firmware times each kernel invoke with the board timer: DWT cycles on a board (`timer=dwt`), the
SysTick instruction-count proxy under QEMU -icount (`systick-icount`, not real cycles). Rows carry the
model's op name, output shape and MACs (the model is parsed with common.tflite_model, no TFLM needed).
The PNG is drawn with Pillow (in the light `hil` extra), one horizontal bar per op.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..common.fsio import atomic_write, atomic_write_with
from ..common.tflite_model import TFLiteModel, load as load_tflite
from . import protocol as P
from .client import Client, HilError, ProtocolError

PROFILE = "profile.json"


def parse_prof(lines: list[str]) -> tuple[int, list[int], int]:
    """(operators run, ticks per operator, ticks of the whole Invoke) from a `prof%` reply."""
    def value(prefix: str) -> str:
        ln = next((ln for ln in lines if ln.startswith(prefix)), None)
        if ln is None:
            raise ProtocolError(f"no {prefix}... line in the prof% reply ({lines[:3]})")
        return ln[len(prefix):]
    try:
        n = int(value("m-prof-ops-"))
        ticks = [int(v) for v in value("m-prof-ticks-[").rstrip("]").split(",") if v]
        total = int(value("m-prof-total-"))
    except ValueError:
        raise ProtocolError(f"garbled prof% reply: {lines[:3]}") from None
    if len(ticks) != n:
        raise ProtocolError(f"prof% reported {n} operators but {len(ticks)} timings")
    return n, ticks, total


def op_rows(model: TFLiteModel | None, ticks: list[int], clock_hz: int) -> list[dict]:
    """One row per executed operator (execution order = the model's operator order)."""
    total = sum(ticks) or 1
    rows = []
    for i, t in enumerate(ticks):
        op = model.operators[i] if model is not None else None
        out = model.tensors[op.outputs[0]].shape if op is not None and op.outputs else None
        rows.append({"index": i, "op": op.name if op else "?", "output_shape": list(out) if out is not None else None,
                     "macs": op.macs if op else None, "ticks": t,
                     "ms": round(t * 1e3 / clock_hz, 6) if clock_hz else None, "share_pct": round(100 * t / total, 2)})
    return rows


def profile_device(url: str, model_path: str | None, data: bytes | None = None, baud: int = 115200,
                   timeout: float = 5.0, infer_timeout: float = 120.0) -> dict:
    """Connect, load the input (zeros unless `data`), run `prof%`, return the rows and totals."""
    model = load_tflite(model_path) if model_path else None
    with Client(url, baud=baud, timeout=timeout, infer_timeout=infer_timeout).connect() as c:
        info = dict(c.info)
        n_in = int(info.get("input", 0))
        if model is not None and model.io_tensor("input").nbytes != n_in:
            raise HilError(f"model and device disagree on the input: {Path(model_path).name} has "
                           f"{model.io_tensor('input').nbytes} bytes, the device expects {n_in}")
        c.load(data if data is not None else bytes(n_in))
        rep = c.command("prof", timeout=infer_timeout)
    if rep.errors:
        raise HilError(f"prof% failed on {url}: {rep.errors[0]} (firmware older than `prof%`?)")
    n, ticks, total = parse_prof(rep.lines)
    if model is not None and n != len(model.operators):
        raise HilError(f"the device ran {n} operators, {Path(model_path).name} has {len(model.operators)}: "
                       f"is the device running this model (device model '{info.get('model')}')?")
    clock = int(info.get("clock_hz") or 0)
    timer = info.get("timer")
    return {"model": str(model_path) if model_path else None, "device_model": info.get("model"),
            "timer": timer, "timer_label": P.timer_label(timer), "clock_hz": clock,
            "ops": op_rows(model, ticks, clock), "ops_ticks": sum(ticks), "invoke_ticks": total,
            "invoke_ms": round(total * 1e3 / clock, 6) if clock else None, "board": info}


def table(res: dict) -> str:
    lines = [f"{'#':>3} {'op':22s} {'output':18s} {'MACs':>10s} {'ticks':>10s} {'ms':>10s} {'%':>6s}"]
    for r in res["ops"]:
        shape = "x".join(map(str, r["output_shape"])) if r["output_shape"] else "-"
        lines.append(f"{r['index']:3d} {r['op'][:22]:22s} {shape[:18]:18s} {r['macs'] if r['macs'] is not None else '-':>10} "
                     f"{r['ticks']:10d} {r['ms'] if r['ms'] is not None else '-':>10} {r['share_pct']:6.2f}")
    lines.append(f"Invoke(): {res['invoke_ticks']} ticks = {res['invoke_ms']} ms (ops {res['ops_ticks']} ticks)  "
                 f"[{res['timer']}: {res['timer_label']}]")
    return "\n".join(lines)


def write_png(res: dict, path: Path) -> Path:
    """Horizontal bars, one per op, length = its time; labelled with op name and ms."""
    from PIL import Image, ImageDraw
    rows, bar_h, left, width = res["ops"], 14, 260, 900
    h = 40 + bar_h * len(rows) + 30
    img = Image.new("RGB", (width, h), "white")
    d = ImageDraw.Draw(img)
    d.text((10, 8), f"{Path(res['model'] or res['device_model'] or 'model').name}: per-op time "
                    f"[{res['timer']}: {res['timer_label']}]", fill="black")
    top = max((r["ticks"] for r in rows), default=1) or 1
    for i, r in enumerate(rows):
        y = 32 + i * bar_h
        d.text((10, y), f"{r['index']:3d} {r['op'][:24]}", fill="black")
        w = int((width - left - 110) * r["ticks"] / top)
        d.rectangle([left, y + 2, left + max(w, 1), y + bar_h - 3], fill=(66, 114, 196))
        d.text((left + w + 6, y), f"{r['ms']} ms" if r["ms"] is not None else f"{r['ticks']} ticks", fill="black")
    d.text((10, h - 22), f"Invoke(): {res['invoke_ms']} ms, {len(rows)} ops", fill="black")
    return atomic_write_with(path, lambda fh: img.save(fh, format="PNG"))


def save(res: dict, out_dir: str | None, png: str | None) -> None:
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(out_dir) / PROFILE, json.dumps(res, indent=1) + "\n")
    if png:
        write_png(res, Path(png))
