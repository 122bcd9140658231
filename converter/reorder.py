"""Memory-optimal operator reordering (Liberis & Lane, "Neural networks on microcontrollers:
saving memory at inference via operator reordering", as implemented in eliberis/tflite-tools).

Search: dynamic programming over the *executed-operator sets* (downward-closed sets of the
operator DAG). best[S] = smallest possible peak to have executed exactly S; executing op o
next costs the bytes of every tensor that is alive while o runs (produced and still needed,
o's inputs and outputs; 16-byte aligned sizes as TFLM plans them) plus o's scratch. Unlike
tflite-tools this handles operators with several outputs and tensors with several consumers
(a tensor is released after its last consumer, whichever order they run in).

The schedule peak is a lower bound on TFLM's greedy head; several optimal orders are
therefore scored with the exact analyzer and the smallest arena wins (never worse than the
original order). The order is written back by permuting the subgraph's operator offset
vector in place (everything else stays byte-identical).
"""
from __future__ import annotations

import struct
from pathlib import Path

from . import analyzer
from ..common.errors import UserError
from ..common.fsio import atomic_write
from ..common.tflite_model import TFLiteModel, load

MAX_STATES = 400_000


class ReorderError(UserError):
    pass


def _graph(model: TFLiteModel):
    ops = model.operators
    prod = {}
    for op in ops:
        for t in op.outputs:
            prod[t] = op.index
    preds = []
    consumers: dict[int, set[int]] = {}
    for op in ops:
        p = {prod[t] for t in op.inputs if t >= 0 and t in prod}
        preds.append(p)
        for t in op.inputs:
            if t >= 0:
                consumers.setdefault(t, set()).add(op.index)
    return prod, preds, consumers


def schedule_peak(model: TFLiteModel, order: list[int]) -> int:
    """Peak of the sum of live (16-aligned) activation bytes for an execution order."""
    T = model.tensors
    prod, preds, consumers = _graph(model)
    size = {t.index: analyzer.align_up(t.bytes) for t in T if not t.has_data and not t.is_variable}
    outs = set(model.outputs)
    live = {t for t in model.inputs if t in size}
    remaining = {t: set(c) for t, c in consumers.items()}
    peak = 0
    for oi in order:
        op = model.operators[oi]
        cur = live | {t for t in op.inputs if t in size} | {t for t in op.outputs if t in size}
        peak = max(peak, sum(size[t] for t in cur))
        for t in op.inputs:
            if t in remaining:
                remaining[t].discard(oi)
        live = {t for t in cur if (remaining.get(t) or t in outs)}
    return peak


def optimal_orders(model: TFLiteModel, n_orders: int = 4) -> tuple[int, list[list[int]]]:
    """(optimal schedule peak, up to n_orders distinct orders achieving it)."""
    ops = model.operators
    n = len(ops)
    T = model.tensors
    prod, preds, consumers = _graph(model)
    size = {t.index: analyzer.align_up(t.bytes) for t in T if not t.has_data and not t.is_variable and t.bytes}
    outs = set(model.outputs)
    ins = [t for t in model.inputs if t in size]
    pred_mask = [sum(1 << p for p in preds[i]) for i in range(n)]
    op_in = [[t for t in set(op.inputs) if t in size] for op in ops]
    op_out = [[t for t in set(op.outputs) if t in size] for op in ops]
    cons_mask = {t: sum(1 << c for c in cs) for t, cs in consumers.items()}
    # tensors produced by ops (or graph inputs) that are alive after executing set S
    def live_after(S: int) -> set[int]:
        res = set()
        for t in ins:
            if (cons_mask.get(t, 0) & ~S) or t in outs:
                res.add(t)
        for i in range(n):
            if S >> i & 1:
                for t in op_out[i]:
                    if (cons_mask.get(t, 0) & ~S) or t in outs:
                        res.add(t)
        return res

    best: dict[int, int] = {0: 0}
    back: dict[int, list[tuple[int, int]]] = {}
    frontier = [0]
    for _ in range(n):
        nxt: dict[int, int] = {}
        for S in frontier:
            base = best[S]
            live = live_after(S)
            for i in range(n):
                if S >> i & 1 or (pred_mask[i] & ~S):
                    continue
                cur = live | set(op_in[i]) | set(op_out[i])
                cost = max(base, sum(size[t] for t in cur))
                S2 = S | 1 << i
                if S2 not in best or cost < best[S2]:
                    best[S2] = cost
                    back[S2] = [(S, i)]
                elif cost == best[S2]:
                    back[S2].append((S, i))
                nxt[S2] = 1
        frontier = list(nxt)
        if len(best) > MAX_STATES:
            raise ReorderError(f"graph too branchy for the exact search (> {MAX_STATES} states)")
    full = (1 << n) - 1
    if full not in best:   # some operator waits for its own (or a later cycle's) output: no order exists
        raise ReorderError("the operator graph has a cycle (an operator consumes a tensor produced after it); "
                           "the model is corrupt")
    peak = best[full]
    # enumerate a few optimal orders (prefer original order first, then alternatives)
    orders: list[list[int]] = []

    def walk(S: int, suffix: list[int], prefer_low: bool):
        while S:
            choices = sorted(back[S], key=lambda c: c[1], reverse=prefer_low)
            # only choices whose prefix is optimal enough: best[prev] <= peak holds for all kept edges
            prev, i = choices[0]
            suffix.append(i)
            S = prev
        return list(reversed(suffix))

    for prefer_low in (True, False):
        o = walk(full, [], prefer_low)
        if o not in orders:
            orders.append(o)
    return peak, orders[:n_orders]


def permute_operators(data: bytes, order: list[int]) -> bytes:
    """Return a copy of the flatbuffer whose subgraph-0 operator vector follows `order`."""
    import tflite
    buf = bytearray(data)
    m = tflite.Model.GetRootAsModel(buf, 0)
    sg = m.Subgraphs(0)
    o = sg._tab.Offset(10)  # SubGraph.operators (field 3 -> vtable offset 10)
    if not o:
        raise ReorderError("model has no operator vector")
    vec = sg._tab.Vector(o)
    n = sg._tab.VectorLen(o)
    if sorted(order) != list(range(n)):
        raise ReorderError("order is not a permutation of the operators")
    targets = [vec + 4 * j + struct.unpack_from("<I", buf, vec + 4 * j)[0] for j in range(n)]
    for j, src in enumerate(order):
        pos = vec + 4 * j
        rel = targets[src] - pos
        if rel <= 0:
            raise ReorderError("operator tables precede their vector; cannot permute in place")
        struct.pack_into("<I", buf, pos, rel)
    return bytes(buf)


def is_topological(model: TFLiteModel, order: list[int]) -> bool:
    _, preds, _ = _graph(model)
    seen: set[int] = set()
    for i in order:
        if not preds[i] <= seen:
            return False
        seen.add(i)
    return True


def optimize_bytes(data: bytes, target: str = "cortex-m7") -> tuple[bytes, dict]:
    model = load(data)
    analyzer.validate_for_tflm(model)
    orig = list(range(len(model.operators)))
    peak_opt, orders = optimal_orders(model)
    base = analyzer.analyze(model, target)
    base_host = analyzer.analyze(model, "host") if target != "host" else base
    best = (base.arena_bytes, base.min_arena_bytes, orig, data, base_host.arena_bytes)
    for order in orders:
        if order == orig:
            continue
        nd = permute_operators(data, order)
        nm = load(nd)
        a = analyzer.analyze(nm, target)
        ah = analyzer.analyze(nm, "host") if target != "host" else a
        if ah.arena_bytes > base_host.arena_bytes:
            continue
        if (a.arena_bytes, a.min_arena_bytes) < best[:2]:
            best = (a.arena_bytes, a.min_arena_bytes, order, nd, ah.arena_bytes)
    rep = {"arena_before": base.arena_bytes, "arena_after": best[0], "host_arena_before": base_host.arena_bytes,
           "host_arena_after": best[4], "peak_before": schedule_peak(model, orig), "peak_after":
           schedule_peak(model, best[2]), "optimal_schedule_peak": peak_opt, "order": best[2],
           "changed": best[2] != orig, "candidates": len(orders)}
    return best[3], rep


def verify_tflm(a: bytes, b: bytes, n_inputs: int = 4, seed: int = 0) -> dict:
    """Run both models in the tflite-micro wheel: identical outputs, measured arenas."""
    import numpy as np

    from .analyzer_measure import measure_arena, run_tflm
    rng = np.random.default_rng(seed)
    ma, mb = measure_arena(a), measure_arena(b)
    model = load(a)
    for _ in range(n_inputs):
        feeds = []
        for ti in model.inputs:
            t = model.tensors[ti]
            if t.type == 9:
                feeds.append(rng.integers(-128, 128, size=t.shape, dtype=np.int8))
            elif t.type == 3:
                feeds.append(rng.integers(0, 256, size=t.shape, dtype=np.uint8))
            else:
                feeds.append(rng.standard_normal(t.shape).astype(np.float32))
        ya, yb = run_tflm(a, feeds), run_tflm(b, feeds)
        for x, y in zip(ya, yb):
            if not np.array_equal(x, y):
                raise ReorderError("reordered model gives different TFLM outputs (not written)")
    return {"inputs": n_inputs, "measured_before": ma, "measured_after": mb}


def optimize_file(src: str, out: str, target: str = "cortex-m7", verify: bool = True) -> dict:
    p = Path(src)
    if not p.is_file():
        raise ReorderError(f"no such file: {src}")
    data = p.read_bytes()
    nd, rep = optimize_bytes(data, target)
    if verify:
        v = verify_tflm(data, nd)
        if v["measured_after"] > v["measured_before"]:
            raise ReorderError(f"measured arena grew {v['measured_before']} -> {v['measured_after']} (not written)")
        rep["verified"] = v
    atomic_write(out, nd)
    return rep
