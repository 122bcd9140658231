"""`optimize --patch`: search, verify bit-exactness in host TFLM, optionally add an offline arena plan,
and write the model (atomically) only when its outputs equal the original's on every input."""
from __future__ import annotations

from pathlib import Path

from ...common.fsio import atomic_write
from ...common.tflite_model import load
from .. import analyzer
from .search import arena_floor, parse_grid, search
from .stage import PatchError
from .verify import MIN_INPUTS, bit_exact

REPORT_TARGETS = ("cortex-m7", "host")   # the firmware ABI and the host wheel, both exact


def _arenas(data: bytes) -> dict[str, dict]:
    """{target: {'arena': arena_used_bytes(), 'min_arena': smallest working arena}} (exact analyzer)."""
    m = load(data)
    out = {}
    for t in REPORT_TARGETS:
        a = analyzer.analyze(m, t)
        out[t] = {"arena": a.arena_bytes, "min_arena": a.min_arena_bytes}
    return out


def patch_bytes(data: bytes, grid: str = "auto", max_overhead: float = 0.2, target: str = "cortex-m7",
                n_inputs: int = MIN_INPUTS, split: int | None = None) -> tuple[bytes, dict]:
    """(patched model, report); raises PatchError (original untouched) when no rewrite helps or verifies."""
    if not 0 <= max_overhead <= 100:
        raise PatchError(f"--max-overhead must be between 0 and 100 (a fraction: 0.2 = 20 %), got {max_overhead}")
    best, stats = search(data, parse_grid(grid), max_overhead, target, split)
    if best is None:
        raise PatchError(f"no split/grid stays within {max_overhead:.0%} MAC overhead "
                         f"({stats['candidates']} candidates tried)")
    if best.arena >= stats["base_arena"]:
        raise PatchError(f"patching does not reduce the {target} arena ({stats['base_arena']:,} B; best "
                         f"candidate {best.arena:,} B at op {best.split}, grid {best.grid[0]}x{best.grid[1]})")
    m0 = load(data)
    split_name = m0.tensors[m0.operators[best.split].outputs[0]].name
    v = bit_exact(data, best.data, n_inputs, stage_tensor=split_name)
    if v["mismatches"]:
        raise PatchError(f"patched model differs from the original on {v['mismatches']} of {v['inputs']} inputs in "
                         f"host TFLM (max |diff| {v['max_abs_diff']}); not written")
    m1 = load(best.data)
    before, after = _arenas(data), _arenas(best.data)
    split_t = m0.tensors[m0.operators[best.split].outputs[0]]
    rep = {"arena_before": before[target]["arena"], "arena_after": after[target]["arena"], "target": target,
           "arena": {t: {"before": before[t]["arena"], "after": after[t]["arena"], "min_before":
                         before[t]["min_arena"], "min_after": after[t]["min_arena"]} for t in before},
           "macs_before": m0.macs, "macs_after": m1.macs, "mac_overhead": m1.macs / max(m0.macs, 1) - 1,
           "patch_grid": f"{best.grid[0]}x{best.grid[1]}", "split_op": best.split,
           "split_op_name": m0.operators[best.split].name, "split_tensor": list(split_t.shape),
           "ops_before": len(m0.operators), "ops_after": len(m1.operators),
           "verified": v, "search": {"candidates": stats["candidates"], "max_overhead": max_overhead}}
    rep.update(arena_floor(data, max_overhead, target))
    return best.data, rep


def patch_file(src: str, out: str, **kw) -> dict:
    p = Path(src)
    if not p.is_file():
        raise PatchError(f"no such file: {src}")
    data = p.read_bytes()
    nd, rep = patch_bytes(data, **kw)
    atomic_write(out, nd)
    rep["out"] = str(out)
    return rep
