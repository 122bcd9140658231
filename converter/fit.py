"""`fit`: the largest input resolution of a zoo model whose int8 TFLite fits a board.

Each probed resolution is converted with converter.convert.convert_zoo (random weights, full
int8, cached on disk by the converter) and analyzed exactly; a binary search over multiples of
`step` finds the largest resolution whose minimum arena fits the SRAM budget and whose flash
estimate fits the flash. Activation memory grows with resolution, so the predicate is monotone;
the neighbours of the answer are converted too, so the table shows the boundary explicitly.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from . import analyzer, budget


def _probe(name: str, res: int, channels: int, classes: int, target: str, bud, work: Path) -> dict:
    from .convert import convert_zoo
    out = work / f"{name}-{res}.tflite"
    convert_zoo(name, res, channels, classes, out, quiet=True)
    from ..common.placement import input_buffer_bytes
    from ..common.tflite_model import load
    model = load(out)
    a = analyzer.analyze(model, target, board=bud.board)
    # The gate's own verdict (the placement planner on firmware boards), not a second formula.
    v = budget.check(a, bud, str(out), input_bytes=input_buffer_bytes(model))
    return {"resolution": res, "arena_bytes": a.arena_bytes, "min_arena_bytes": a.min_arena_bytes,
            "head_bytes": a.head_bytes, "tail_bytes": a.tail_bytes, "flash_bytes": a.flash_bytes,
            "peak_op": a.peak_op, "fits_ram": v.ram_over_bytes == 0 and (v.placement or {}).get("fits", True),
            "fits_flash": v.flash_over_bytes == 0, "fits": v.fits, "arena_budget": v.arena_budget}


def _probe_patched(row: dict, name: str, res: int, target: str, bud, work: Path, max_overhead: float) -> dict:
    """The same probe after `optimize --patch auto` (search only; `optimize` verifies what it writes)."""
    from ..common.placement import input_buffer_bytes
    from ..common.tflite_model import load
    from .patching.search import arena_floor, search
    from .patching.stage import PatchError
    data = (work / f"{name}-{res}.tflite").read_bytes()
    try:   # what no split/grid can beat: says whether a miss is the search's or the model's
        floor = {"arena_floor": arena_floor(data, max_overhead, target)["arena_floor"]}
    except PatchError:
        floor = {}
    try:
        best, _ = search(data, None, max_overhead, target)
    except PatchError as exc:
        best, why = None, str(exc)
    else:
        why = "no split/grid within the MAC limit"
    if best is None:
        return {**row, "patched": False, "patch_refused": why, **floor}
    out = work / f"{name}-{res}-patched.tflite"
    out.write_bytes(best.data)
    model = load(best.data)
    a = analyzer.analyze(model, target, board=bud.board)
    v = budget.check(a, bud, str(out), input_bytes=input_buffer_bytes(model))
    fits_ram = v.ram_over_bytes == 0 and (v.placement or {}).get("fits", True)
    return {"resolution": res, "patched": True, "patch_grid": f"{best.grid[0]}x{best.grid[1]}", "split_op": best.split,
            "mac_overhead": round(model.macs / max(load(data).macs, 1) - 1, 4), "arena_bytes": a.arena_bytes,
            "min_arena_bytes": a.min_arena_bytes, "flash_bytes": a.flash_bytes, "fits_ram": fits_ram,
            "fits_flash": v.flash_over_bytes == 0, "fits": v.fits, **floor}


def _largest(cands: list[int], pred) -> int | None:
    lo, hi, best = 0, len(cands) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(cands[mid]):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def fit_zoo(name: str, board: str | None = "stm32f746g-disco", sram: str | None = None, flash: str | None = None,
            reserve: str | None = None, channels: int = 3, classes: int = 10, step: int = 16, min_res: int = 32,
            max_res: int = 256, target: str | None = None, patch: bool = False, max_overhead: float = 0.2) -> dict:
    if step not in (8, 16):
        raise analyzer.AnalyzerError("--step must be 8 or 16")
    if min_res < step or max_res < min_res:
        raise analyzer.AnalyzerError(f"bad resolution range {min_res}..{max_res}")
    bud = budget.budget(board, sram, flash, reserve)
    tgt = target or bud.target
    cands = list(range((min_res + step - 1) // step * step, max_res + 1, step))
    if not cands:
        raise analyzer.AnalyzerError(f"no multiple of {step} in {min_res}..{max_res}")
    from rich.progress import Progress
    table: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="netaug-fit-") as d, Progress(transient=True) as prog:
        work = Path(d)
        task = prog.add_task(f"fit {name} on {bud.board}", total=None)

        def probe(r: int) -> dict:
            if r not in table:
                prog.update(task, description=f"fit {name}: converting + analyzing {r}x{r}")
                table[r] = _probe(name, r, channels, classes, tgt, bud, work)
            return table[r]

        lo, hi = 0, len(cands) - 1
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            if probe(cands[mid])["fits"]:
                best = mid
                lo = mid + 1
            else:
                hi = mid - 1
        if best is not None and best + 1 < len(cands):
            probe(cands[best + 1])  # the first one that does not fit, for the table
        ptable: dict[int, dict] = {}
        if patch:
            def probe_p(r: int) -> dict:
                if r not in ptable:
                    row = probe(r)
                    prog.update(task, description=f"fit {name}: patch search at {r}x{r}")
                    ptable[r] = _probe_patched(row, name, r, tgt, bud, work, max_overhead) if not row["fits"] \
                        else {**row, "patched": False}
                return ptable[r]
            pbest = _largest(cands, lambda r: probe_p(r)["fits"])
    rows = [table[r] for r in sorted(table)]
    bres = cands[best] if best is not None else None
    extra = {}
    if patch:
        pres = cands[pbest] if pbest is not None else None
        extra = {"best_resolution_patched": pres, "best_patched": ptable[pres] if pres else None,
                 "probed_patched": [ptable[r] for r in sorted(ptable)], "max_overhead": max_overhead}
    return {"zoo": name, "board": bud.board, "target": tgt, "channels": channels, "classes": classes, "step": step,
            "arena_budget": bud.arena_budget, "sram_bytes": bud.sram_bytes, "reserve_bytes": bud.reserve_bytes,
            "flash_budget": bud.flash_bytes, "best_resolution": bres, "best": table[bres] if bres else None,
            "probed": rows, **extra}
