"""Choose the split op and the patch grid that minimise the exact TFLM arena under a MAC-overhead limit.

Every candidate is built and scored by the project's exact analyzer (the greedy plan and the grown
persistent tail of the per-patch op copies decide, not a proxy). Pruning: a split cannot beat the
best arena found when the original ops after it already need more (their live bytes are a lower
bound on any plan, and the tail only grows); halo recomputation grows with the grid, so a grid row
stops at the first grid over the MAC limit. The winner is verified bit-exact in host TFLM before
anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...common.tflite_model import TFLiteModel, load
from .. import analyzer
from . import schema as sch
from .rewrite import MAX_GRID, _constants, rewrite
from .stage import PatchError, Rect, geometry, patch_bounds, patch_plan, split_candidates

AUTO_GRID_MAX = 6


@dataclass
class Candidate:
    split: int
    grid: tuple[int, int]
    data: bytes
    arena: int            # min_arena_bytes on the target (what `check` compares)
    macs: int

    def key(self):
        return (self.arena, self.macs, self.grid[0] * self.grid[1])


def parse_grid(text: str) -> tuple[int, int] | None:
    """'auto' -> None, 'RxC' -> (R, C)."""
    if text == "auto":
        return None
    parts = text.lower().split("x")
    try:
        r, c = (int(p) for p in parts)
    except ValueError:
        raise PatchError(f"bad --patch '{text}': use auto or RxC, e.g. 3x3") from None
    if not (1 <= r <= MAX_GRID and 1 <= c <= MAX_GRID) or r * c < 2:
        raise PatchError(f"bad --patch '{text}': 1..{MAX_GRID} patches per side, at least 2 patches")
    return r, c


def _rest_bound(base: analyzer.Analysis, split: int) -> int:
    """Live activation + scratch bytes of the unchanged ops after `split`: a lower bound on the head."""
    return max((o.live_bytes + o.scratch_bytes for o in base.ops[split + 1:]), default=0)


def estimated_macs(model: TFLiteModel, split: int, grid: tuple[int, int], geos) -> int:
    """MACs of the patched model from the patch regions alone (no rewrite): each stage op costs its
    per-output-pixel MACs times the pixels it computes over all patches."""
    T = model.tensors
    y = T[model.operators[split].outputs[0]].shape
    rb, cb = patch_bounds(y[1], grid[0]), patch_bounds(y[2], grid[1])
    total = sum(op.macs for op in model.operators[split + 1:])
    for i in range(grid[0]):
        for j in range(grid[1]):
            need, _ = patch_plan(model, split, Rect(rb[i], rb[i + 1], cb[j], cb[j + 1]), geos)
            for op in model.operators[:split + 1]:
                o = T[op.outputs[0]].shape
                r = need.get(op.outputs[0])
                if r is not None and op.macs:
                    total += op.macs * r.h * r.w // (o[1] * o[2])
    return total


def _copy_tail(model: TFLiteModel, split: int) -> int:
    """Persistent bytes every extra copy of the stage adds at least: per-channel multiplier + shift arrays
    (two 16-aligned allocations per CONV_2D / DEPTHWISE_CONV_2D in Prepare)."""
    T = model.tensors
    total = 0
    for op in model.operators[:split + 1]:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = T[op.inputs[1]].shape
            ch = w[3] if op.name == "DEPTHWISE_CONV_2D" else w[0]
            total += 2 * analyzer.align_up(4 * ch)
    return total


@dataclass
class _Stage:
    """What the search and the floor both need: the model, its exact analysis, the ops that can end a
    patched stage (and why the stage stops), and the geometry of the ops up to the last of them (up to
    the first op whose geometry cannot be patched: a split at or after it is never a candidate)."""
    model: TFLiteModel
    base: analyzer.Analysis
    cands: list[int]
    reason: str
    geos: dict

    def geometry_ok(self, split: int) -> bool:
        return split < len(self.geos)   # geos holds ops 0..n-1 without a gap


def _stage(data: bytes, target: str) -> _Stage:
    model = load(data)
    analyzer.validate_for_tflm(model)
    cands, reason = split_candidates(model)
    consts = _constants(model, sch.unpack(data))
    geos = {}
    for op in model.operators[:max(cands, default=-1) + 1]:
        try:
            geos[op.index] = geometry(model, op, consts)
        except PatchError:
            break
    return _Stage(model, analyzer.analyze(model, target), cands, reason, geos)


def arena_floor(data: bytes, max_overhead: float, target: str = "cortex-m7") -> dict:
    """The smallest arena ANY candidate of this search could reach: a lower bound, not a candidate.

    A rewrite keeps every original op (so the whole original persistent tail), keeps the ops after its
    split unchanged (their live + scratch bytes), and holds the model input while patches slice it. So
    arena >= tail + max(live bytes after the split, input bytes), minimised over the splits whose cheapest
    grid of the search space stays within the MAC limit. When this floor is above a goal (a ratio, a
    board's budget), no choice of split and grid reaches it in stock TFLM: the remedy is the architecture
    (MCUNetV2's receptive-field redistribution, smaller later stages) or a runtime with in-place kernels.
    """
    st = _stage(data, target)
    model, base = st.model, st.base
    macs0 = max(model.macs, 1)
    inp = sum(model.tensors[t].bytes for t in model.inputs)
    best = None
    for k in (k for k in st.cands if st.geometry_ok(k)):
        h, w = model.tensors[model.operators[k].outputs[0]].shape[1:3]
        overheads = []
        for g in _grids(None, h, w):
            try:
                overheads.append(estimated_macs(model, k, g, st.geos) / macs0 - 1)
            except PatchError:
                continue
        if not overheads or min(overheads) > max_overhead + 1e-12:
            continue
        floor = base.tail_bytes + max(_rest_bound(base, k), inp)
        if best is None or floor < best["arena_floor"]:
            best = {"arena_floor": floor, "floor_split_op": k, "floor_mac_overhead": round(min(overheads), 4)}
    if best is None:
        return {"arena_floor": base.arena_bytes, "floor_split_op": None, "floor_mac_overhead": None,
                "reduction_ceiling": 1.0}
    best["reduction_ceiling"] = round(base.arena_bytes / best["arena_floor"], 3)
    return best


def _score(data: bytes, split: int, grid, target: str, macs0: int) -> Candidate:
    nd = rewrite(data, split, grid)
    nm = load(nd)
    a = analyzer.analyze(nm, target)
    return Candidate(split, grid, nd, a.min_arena_bytes, nm.macs)


QUICK_GRIDS = [(2, 2), (1, 4), (4, 1), (3, 3)]   # `check`'s suggestion: a few grids, not the full search


def _grids(fixed, h: int, w: int):
    if fixed == "quick":
        yield from [g for g in QUICK_GRIDS if g[0] <= h and g[1] <= w]
        return
    if fixed:
        yield fixed
        return
    grids = [(r, c) for r in range(1, min(AUTO_GRID_MAX, h) + 1) for c in range(1, min(AUTO_GRID_MAX, w) + 1)
             if r * c >= 2]
    yield from sorted(grids, key=lambda g: (g[0] * g[1], g))   # fewest patches first: the bounds prune more


def search(data: bytes, grid: tuple[int, int] | None, max_overhead: float, target: str = "cortex-m7",
           split: int | None = None) -> tuple[Candidate | None, dict]:
    """(best candidate or None, search stats). grid None = automatic."""
    st = _stage(data, target)
    model, base, cands, reason = st.model, st.base, st.cands, st.reason
    if not cands:
        raise PatchError(f"the first stage cannot be patched: {reason}")
    if split is not None:
        if split not in cands:
            raise PatchError(f"op {split} does not end a patchable first stage")
        cands = [split]
    macs0 = max(model.macs, 1)
    best: Candidate | None = None
    tried = 0
    for k in (k for k in cands if st.geometry_ok(k)):
        rest = _rest_bound(base, k) + base.tail_bytes
        if best and rest >= best.arena:
            continue
        per_copy = _copy_tail(model, k)
        h, w = model.tensors[model.operators[k].outputs[0]].shape[1:3]
        over_from = {}   # r -> first c over the limit
        for g in _grids(grid, h, w):
            r, c = g
            if any(r >= rr and c >= cc for rr, cc in over_from.items()):
                continue   # a finer grid than one already over the MAC limit
            if best and rest + (r * c - 1) * per_copy >= best.arena:
                continue   # lower bound: unchanged ops' live bytes + original tail + the copies' tail
            try:
                if estimated_macs(model, k, g, st.geos) / macs0 - 1 > max_overhead + 1e-12:
                    over_from[r] = min(c, over_from.get(r, c))
                    continue
                cand = _score(data, k, g, target, macs0)
            except PatchError:
                continue
            tried += 1
            if cand.macs / macs0 - 1 > max_overhead + 1e-12:
                over_from[r] = min(c, over_from.get(r, c))
                continue
            if best is None or cand.key() < best.key():
                best = cand
    return best, {"candidates": tried, "splits": cands, "base_arena": base.min_arena_bytes,
                  "stage_limit": reason}
