"""`analyze --layers`: the per-layer profile of a .tflite, from the parsed model and its exact arena
analysis: op, shapes, MACs, parameters, weight bytes, activation bytes and the arena high-water at
that op (the persistent tail plus the highest planned head address in use while the op runs)."""
from __future__ import annotations

from pathlib import Path


def layers(model, a) -> list[dict]:
    """One row per operator (`model`: TFLiteModel, `a`: its Analysis)."""
    T = model.tensors
    rows = []
    for op, mem in zip(model.operators, a.ops):
        ins = [i for i in op.inputs if i >= 0]
        consts = [i for i in ins if T[i].has_data]
        acts = [i for i in ins if not T[i].has_data] + list(op.outputs)
        rows.append({
            "index": op.index, "op": op.name,
            "input_shapes": [list(T[i].shape) for i in ins if not T[i].has_data],
            "output_shapes": [list(T[i].shape) for i in op.outputs],
            "weight_shapes": [list(T[i].shape) for i in consts],
            "macs": op.macs,
            "params": sum(T[i].elements for i in consts),
            "weight_bytes": sum(T[i].nbytes for i in consts),
            "activation_bytes": sum(T[i].bytes for i in acts),
            "live_bytes": mem.live_bytes, "scratch_bytes": mem.scratch_bytes,
            "head_high_water": mem.high_water,
            "arena_high_water": a.tail_bytes + mem.high_water,
            "origin": op.origin,
        })
    return rows


def totals(rows: list[dict]) -> dict:
    return {"macs": sum(r["macs"] for r in rows), "params": sum(r["params"] for r in rows),
            "weight_bytes": sum(r["weight_bytes"] for r in rows),
            "max_activation_bytes": max((r["activation_bytes"] for r in rows), default=0),
            "max_arena_high_water": max((r["arena_high_water"] for r in rows), default=0)}


def _shape(shapes: list[list[int]]) -> str:
    return " ".join("x".join(map(str, s)) for s in shapes) or "-"


def print_layers(rows: list[dict], a, path: str) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console(width=max(160, Console().width))
    t = Table(title=f"{Path(path).name}: per-layer profile (target {a.target}, tail {a.tail_bytes:,} B)")
    for c in ("#", "op", "input", "output", "weights", "MACs", "params", "weight B", "act B", "arena hw B"):
        t.add_column(c, justify="left" if c in ("op", "input", "output", "weights") else "right")
    for r in rows:
        style = "bold red" if r["index"] == a.peak_op_index else None
        t.add_row(str(r["index"]), r["op"], _shape(r["input_shapes"]), _shape(r["output_shapes"]),
                  _shape(r["weight_shapes"]), f"{r['macs']:,}", f"{r['params']:,}", f"{r['weight_bytes']:,}",
                  f"{r['activation_bytes']:,}", f"{r['arena_high_water']:,}", style=style)
    tot = totals(rows)
    t.add_row("", "total", "", "", "", f"{tot['macs']:,}", f"{tot['params']:,}", f"{tot['weight_bytes']:,}",
              f"max {tot['max_activation_bytes']:,}", f"max {tot['max_arena_high_water']:,}", style="bold")
    con.print(t)
    con.print(f"arena hw = persistent tail + the highest planned head address in use while the op runs (its "
              f"maximum is arena_bytes {a.arena_bytes:,}); act B = bytes the op reads and writes (non-constant "
              "tensors); peak op in red")
