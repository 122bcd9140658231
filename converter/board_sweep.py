"""`check MODEL --all-boards`: the gate's verdict on every board of the database at once.

The model is parsed once and analyzed once per analyzer target (boards share targets), then each
board's budget is applied with the same `budget.check` as `check --board` (the placement planner on
firmware boards, otherwise the largest contiguous RAM run minus the board's reserve), so a row here
and `check --board B` never disagree. Boards whose core has no analyzer model get the verdict
'unsupported core'; boards whose target is derived from the nearest exact one say so.

Rows are sorted: boards that fit, smallest arena budget first (the first one is the smallest board
that fits), then boards that are over budget (closest first), then unsupported cores.
"""
from __future__ import annotations

from pathlib import Path

from ..common import boards
from . import budget

VERDICTS = ("fits", "over", "unsupported core")


def sweep(model_path: str, reserve: str | None = None, allow_estimate: bool = False) -> dict:
    """The --all-boards document for one .tflite: rows, the smallest fitting board, counts. The same
    gates as `check --board`: ops without a TFLM kernel and (without allow_estimate) unmodelled kernels
    are refused."""
    from ..common import placement
    from ..common.tflite_model import load
    from ..common.tflm_ops import require_supported
    from . import analyzer
    from .commands import require_exact
    model = load(model_path)
    require_supported(model, Path(model_path).name)
    input_bytes = placement.input_buffer_bytes(model)
    analyses: dict[str, analyzer.Analysis] = {}
    cache: dict[tuple[str, int], analyzer.Analysis] = {}   # one analysis per target and board-support size
    rows = []
    for name in boards.names():
        b = boards.get(name)
        if not b.supported:
            rows.append(_unsupported_row(b))
            continue
        key = (b.target, _board_support(name))
        if key not in cache:
            cache[key] = analyzer.analyze(model, b.target, board=name)
            require_exact(cache[key], model_path, allow_estimate)
        a = cache[key]
        analyses.setdefault(b.target, a)
        res = budget.check(a, budget.budget(name, reserve=reserve), model_path, None, input_bytes=input_bytes)
        rows.append(_row(b, res.to_json()))
    rows.sort(key=_sort_key)
    notes = sorted({n for a in analyses.values() for n in a.notes})
    fitting = [r for r in rows if r["verdict"] == "fits"]
    return {"model": str(model_path), "boards": rows, "smallest_fit": fitting[0]["board"] if fitting else None,
            "notes": notes, "counts": {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS},
            "targets": {t: {"arena_bytes": a.arena_bytes, "min_arena_bytes": a.min_arena_bytes,
                            "flash_bytes": a.flash_bytes} for t, a in sorted(analyses.items())}}


def _board_support(name: str) -> int:
    """The board-support code size the flash estimate adds for this board (converter/data/flash.json)."""
    from .analyzer import flash_facts
    bs = flash_facts()["board_support"]
    return bs.get(name, bs["_default"])


def _common(b: boards.Board) -> dict:
    return {"board": b.name, "mcu": b.mcu, "vendor": b.vendor, "core": b.core, "target": b.target,
            "exact": b.exact, "kernels": b.kernels, "sram_run_bytes": b.sram_bytes,
            "arena_regions": b.largest_run_regions(), "flash_budget": b.flash_bytes}


def _unsupported_row(b: boards.Board) -> dict:
    return {**_common(b), "verdict": "unsupported core", "fits": None,
            "reason": f"{b.core}: no analyzer memory model ({b.kernels or 'unknown'} kernels)"}


def _row(b: boards.Board, res: dict) -> dict:
    plan = res.get("placement")
    ram_over = res["ram_over_bytes"] if plan is None or plan["fits"] else max(res["ram_over_bytes"], 1)
    row = {**_common(b), "verdict": "fits" if res["fits"] else "over", "fits": res["fits"],
           "min_arena_bytes": res["min_arena_bytes"], "arena_budget": res["arena_budget"],
           "reserve_bytes": res["reserve_bytes"], "flash_bytes": res["flash_bytes"],
           "ram_over_bytes": ram_over, "flash_over_bytes": res["flash_over_bytes"],
           "ram_margin_bytes": res["ram_margin_bytes"], "flash_margin_bytes": res["flash_margin_bytes"],
           "placement": plan["layout"] if plan and plan["fits"] else None}
    if plan is not None and not plan["fits"]:
        row["reason"] = plan["reason"]
    if not b.exact:
        row["derived"] = (f"figure derived from the nearest exact target {b.target} ({b.core} has no proven "
                          f"memory model of its own)")
    return row


def _sort_key(r: dict):
    rank = VERDICTS.index(r["verdict"])
    if r["verdict"] == "fits":
        return rank, r["arena_budget"], r["flash_budget"], r["board"]
    if r["verdict"] == "over":
        return rank, r["ram_over_bytes"] + r["flash_over_bytes"], r["board"], 0
    return rank, r["sram_run_bytes"], r["board"], 0


def verdict_text(r: dict) -> str:
    """'fits (margin ...)', 'over by N B on SRAM / flash' or 'unsupported core (...)'."""
    if r["verdict"] == "unsupported core":
        return f"unsupported core ({r['reason']})"
    if r["verdict"] == "fits":
        text = f"fits (SRAM margin {r['ram_margin_bytes']:,} B, flash margin {r['flash_margin_bytes']:,} B)"
    else:
        over = [f"over by {r['ram_over_bytes']:,} B on SRAM"] if r["ram_over_bytes"] else []
        over += [f"over by {r['flash_over_bytes']:,} B on flash"] if r["flash_over_bytes"] else []
        text = ", ".join(over)
        if r.get("reason"):
            text += f" ({r['reason']})"
    return text + (" [derived]" if not r["exact"] else "")


def print_sweep(doc: dict) -> None:
    print(f"{Path(doc['model']).name}: {len(doc['boards'])} boards "
          f"({', '.join(f'{n} {v}' for v, n in doc['counts'].items())})")
    print(f"  {'board':28s} {'core':16s} {'target':11s} {'arena need':>11s} {'arena budget':>13s} "
          f"{'flash':>10s} {'flash budget':>13s}  verdict")
    for r in doc["boards"]:
        need = f"{r['min_arena_bytes']:,}" if "min_arena_bytes" in r else "-"
        bud = f"{r['arena_budget']:,}" if "arena_budget" in r else "-"
        fl = f"{r['flash_bytes']:,}" if "flash_bytes" in r else "-"
        print(f"  {r['board']:28s} {r['core']:16s} {str(r['target'] or '-'):11s} {need:>11s} {bud:>13s} "
              f"{fl:>10s} {r['flash_budget']:>13,}  {verdict_text(r)}")
    derived = sorted({r["target"] for r in doc["boards"] if not r["exact"] and r["target"]})
    if derived:
        print(f"  [derived]: figure from the nearest exact target ({', '.join(derived)}); the core has no proven "
              "memory model of its own")
    print(f"smallest board that fits: {doc['smallest_fit'] or 'none'}")


def list_boards() -> list[dict]:
    """`check --list-boards --json`: the database as the gate sees it (budgets, not raw regions)."""
    out = []
    for name in boards.names():
        b = boards.get(name)
        out.append({**_common(b), "clock_mhz": b.clock_mhz, "fpu": b.fpu, "dsp": b.dsp, "mve": b.mve,
                    "reserve_bytes": b.reserve_bytes, "flash_kind": b.flash_kind,
                    "regions": [{"name": r.name, "origin": f"0x{r.origin:08X}", "bytes": r.bytes, "usage": r.usage,
                                 "kind": r.kind} for r in b.regions],
                    "firmware": bool(b.firmware), "source": b.source})
    return out


def print_boards(rows: list[dict]) -> None:
    for r in rows:
        tgt = r["target"] or "unsupported"
        if r["target"] and not r["exact"]:
            tgt += " (derived)"
        print(f"{r['board']:28s} {r['core']:16s} {r['clock_mhz']:5d} MHz  SRAM run {r['sram_run_bytes'] // 1024:5d} KiB"
              f"  flash {r['flash_budget'] // 1024:6d} KiB  target {tgt}")
