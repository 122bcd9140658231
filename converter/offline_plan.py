"""Offline arena plans: tensor offsets computed here, stored in the model's "OfflineMemoryAllocation"
metadata, honoured by stock TFLM (micro_allocation_info.cc, docs/memory_management.md "Offline planned
tensor allocations": int32 [version, subgraphs, n_tensors, offset per tensor (-1 = online)]).

TFLM places offline tensors at their offsets first and then fits the online buffers (the kernels'
scratch requests) around them with its greedy first fit, so every candidate plan is scored with the
exact analyzer on both targets (cortex-m7 = CMSIS-NN scratch, host = reference kernels); a plan is only
written when its head is no larger than TFLM's greedy plan on each of them. Candidates are first-fit
placements of the planned buffers in different orders: every order for small graphs (first fit over all
orders reaches the optimum: any packing compacted downwards is first fit in its offset order), and a
seeded swap search from the best heuristic order otherwise. TFLM's greedy plan itself (its tensor
offsets) is always a candidate, so the result is never worse than greedy on the deployment target.
"""
from __future__ import annotations

import itertools
import random
import time

import numpy as np

from ..common.errors import UserError
from ..common.tflite_model import TFLiteModel, load
from . import analyzer
from .analyzer import tail as tail_sim
from .analyzer.planner import greedy_plan, planned_buffers

METADATA_NAME = "OfflineMemoryAllocation"
EXHAUSTIVE_MAX = 8        # 8! = 40,320 first-fit placements
SWAP_ITERATIONS = 3000
SWAP_SECONDS = 5.0        # the swap search stops after this long (large patched graphs)
PLAN_TARGETS = ("cortex-m7", "host")


class PlanError(UserError):
    pass


def first_fit(buffers: list[tuple[int, int, int]], order: list[int]) -> tuple[list[int], int]:
    """Place buffers (size, first, last) in `order` at the lowest offset free during their lifetime."""
    offsets = [0] * len(buffers)
    placed: list[int] = []
    for i in order:
        s, f, l = buffers[i]
        busy = sorted((offsets[j], offsets[j] + buffers[j][0]) for j in placed
                      if buffers[j][1] <= l and f <= buffers[j][2])
        cand = 0
        for lo, hi in busy:
            if lo - cand >= s:
                break
            cand = max(cand, hi)
        offsets[i] = cand
        placed.append(i)
    return offsets, max((offsets[i] + buffers[i][0] for i in range(len(buffers))), default=0)


def live_bound(buffers) -> int:
    """Max over time of the bytes alive: no placement can be lower."""
    times = {t for _, f, l in buffers for t in (f, l)}
    return max((sum(s for s, f, l in buffers if f <= t <= l) for t in times), default=0)


def _best_order(buffers) -> tuple[list[int], int]:
    n = len(buffers)
    bound = live_bound(buffers)
    keys = [lambda i: (-buffers[i][0], -i), lambda i: (buffers[i][1], -buffers[i][0]),
            lambda i: (-(buffers[i][2] - buffers[i][1]), -buffers[i][0]),
            lambda i: (-buffers[i][0] * (buffers[i][2] - buffers[i][1] + 1), i)]
    best = min((sorted(range(n), key=k) for k in keys), key=lambda o: first_fit(buffers, o)[1])
    best_high = first_fit(buffers, best)[1]
    if n <= EXHAUSTIVE_MAX:
        for o in itertools.permutations(range(n)):
            if best_high <= bound:
                break
            h = first_fit(buffers, list(o))[1]
            if h < best_high:
                best, best_high = list(o), h
        return best, best_high
    rng = random.Random(0)
    t_end = time.monotonic() + SWAP_SECONDS
    for _ in range(SWAP_ITERATIONS):
        if best_high <= bound or time.monotonic() > t_end:
            break
        o = best[:]
        a, b = rng.randrange(n), rng.randrange(n)
        o[a], o[b] = o[b], o[a]
        h = first_fit(buffers, o)[1]
        if h <= best_high:
            best, best_high = o, h
    return best, best_high


def _buffers(model: TFLiteModel, target: str):
    facts = analyzer.target_facts(target)
    tail = tail_sim.Tail()
    tail_sim.construction(model, target, facts, tail, [])
    scratch, _ = tail_sim.prepare(model, facts, tail)
    return planned_buffers(model, scratch, None, analyzer.ALIGN)


def _offsets_vector(model: TFLiteModel, owners, offsets) -> list[int]:
    vec = [-1] * len(model.tensors)
    for k, (kind, idx) in enumerate(owners):
        if kind == "tensor":
            vec[idx] = offsets[k]
    return vec


def with_plan(data: bytes, offsets: list[int]) -> bytes:
    """The model with an OfflineMemoryAllocation metadata entry (replacing any existing one)."""
    from .patching import schema as sch
    S = sch.schema()
    mt = sch.unpack(data)
    buf = S.BufferT()
    buf.data = np.frombuffer(np.array([1, 1, len(offsets)] + offsets, dtype="<i4").tobytes(), dtype=np.uint8)
    mt.buffers.append(buf)
    md = S.MetadataT()
    md.name, md.buffer = METADATA_NAME.encode(), len(mt.buffers) - 1
    mt.metadata = [m for m in (mt.metadata or []) if m.name != METADATA_NAME.encode()] + [md]
    return sch.pack(mt)


def _heads(data: bytes) -> dict[str, int]:
    m = load(data)
    return {t: analyzer.analyze(m, t).head_bytes for t in PLAN_TARGETS}


def _arenas(data: bytes) -> dict[str, int]:
    m = load(data)
    return {t: analyzer.analyze(m, t).arena_bytes for t in PLAN_TARGETS}


def plan_bytes(data: bytes) -> tuple[bytes, dict]:
    """(model with the best offline plan, report). Raises PlanError when no plan is at least as good."""
    model = load(data)
    analyzer.validate_for_tflm(model)
    if model.n_subgraphs != 1:
        raise PlanError("offline plans are written for single-subgraph models only")
    base = data if METADATA_NAME not in model.metadata else _strip_plan(data)
    greedy_heads, greedy_arenas = _heads(base), _arenas(base)
    bm = load(base)
    buffers, owners, _ = _buffers(bm, "cortex-m7")
    g_offsets, _ = greedy_plan(buffers)
    order, _ = _best_order(buffers)
    ff_offsets, _ = first_fit(buffers, order)
    tensor_only = [k for k, o in enumerate(owners) if o[0] == "tensor"]
    t_order, _ = _best_order([buffers[k] for k in tensor_only])
    t_offsets, _ = first_fit([buffers[k] for k in tensor_only], t_order)
    t_full = [0] * len(buffers)
    for j, k in enumerate(tensor_only):
        t_full[k] = t_offsets[j]
    best = None
    for name, offs in (("search", ff_offsets), ("search-tensors", t_full), ("greedy", g_offsets)):
        cand = with_plan(base, _offsets_vector(bm, owners, offs))
        heads = _heads(cand)
        if all(heads[t] <= greedy_heads[t] for t in PLAN_TARGETS):
            key = (heads["cortex-m7"], heads["host"])
            if best is None or key < best[0]:
                best = (key, name, cand, heads)
    if best is None:
        raise PlanError("no offline plan is as small as TFLM's greedy plan on both targets; none written")
    _, name, cand, heads = best
    arenas = _arenas(cand)
    rep = {"method": name, "planned_buffers": len(buffers), "live_bound": live_bound(buffers),
           "exhaustive": len(buffers) <= EXHAUSTIVE_MAX,
           "targets": {t: {"greedy_head": greedy_heads[t], "planned_head": heads[t], "arena_greedy": greedy_arenas[t],
                           "arena_planned": arenas[t], "saving": greedy_arenas[t] - arenas[t]} for t in PLAN_TARGETS}}
    return cand, rep


def _strip_plan(data: bytes) -> bytes:
    from .patching import schema as sch
    mt = sch.unpack(data)
    mt.metadata = [m for m in (mt.metadata or []) if m.name != METADATA_NAME.encode()]
    return sch.pack(mt)
