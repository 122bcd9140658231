"""TFLM's GreedyMemoryPlanner (tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc) and the
buffer lifetimes it is given (micro_allocation_info.cc)."""
from __future__ import annotations


def greedy_plan(buffers: list[tuple[int, int, int]], offline: dict[int, int] | None = None) -> tuple[list[int], int]:
    """buffers: [(size, first, last)] in AllocationInfo order. Returns (offsets, high-water)."""
    n = len(buffers)
    if n == 0:
        return [], 0
    offline = offline or {}
    head_ids = [i for i in range(n) if i in offline]
    online = [i for i in range(n) if i not in offline]
    # online ids fill the sort array from the tail (reverse id order), then a stable
    # descending bubble sort: equal sizes keep the higher id first.
    tail_ids = list(reversed(online))
    tail_ids.sort(key=lambda i: -buffers[i][0])  # Python's sort is stable
    order = head_ids + tail_ids
    offsets = [-1] * n
    placed: list[int] = []  # ids in offset order (insertion after equal offsets)
    first = order[0]
    offsets[first] = offline.get(first, 0)
    placed.append(first)
    for bid in order[1:]:
        size, f, l = buffers[bid]
        if bid in offline:
            cand = offline[bid]
        else:
            cand = 0
            for pid in placed:
                ps, pf, pl = buffers[pid]
                if not (pf <= l and f <= pl):
                    continue
                if offsets[pid] - cand >= size:
                    break
                cand = max(cand, offsets[pid] + ps)
        offsets[bid] = cand
        # insert before the first entry with a strictly larger offset
        pos = len(placed)
        for k, pid in enumerate(placed):
            if offsets[pid] > cand:
                pos = k
                break
        if pos == 0 and offsets[placed[0]] > cand:
            placed.insert(0, bid)
        else:
            placed.insert(pos, bid)
    high = max(offsets[i] + buffers[i][0] for i in range(n))
    return offsets, high


def lifetimes(model, scratch_reqs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(first, last) scope of every tensor: graph inputs at 0, op i at i+1, graph outputs extended to
    the last op, inclusive (micro_allocation_info.cc); scratch buffers live in their op's scope."""
    n_t = len(model.tensors)
    first, last = [-1] * n_t, [-1] * n_t
    scope = 0
    for ti in model.inputs:
        if ti >= 0:
            if first[ti] == -1:
                first[ti] = scope
            last[ti] = scope
    for op in model.operators:
        scope += 1
        for ti in op.outputs:
            if first[ti] == -1:
                first[ti] = scope
        for ti in op.inputs:
            if ti >= 0:
                last[ti] = scope
        for ti in op.outputs:
            last[ti] = scope
    for ti in model.outputs:
        if first[ti] == -1:
            first[ti] = scope
        last[ti] = scope
    return first, last


def planned_buffers(model, scratch_reqs: list[tuple[int, int]], offline: list[int] | None, align: int = 16):
    """The planner's buffers in AllocationInfo order: [(size, first, last)], their owners
    [("tensor"|"scratch", index)] and the offline-planned offsets {buffer id: offset}."""
    first, last = lifetimes(model, scratch_reqs)
    buffers: list[tuple[int, int, int]] = []
    owners: list[tuple[str, int]] = []
    offl: dict[int, int] = {}
    for t in model.tensors:
        needs = (not t.has_data) and (not t.is_variable) and t.bytes != 0
        off = offline[t.index] if offline else -1
        if offline and t.is_variable and off != -1:
            needs = True
        if needs:
            if off != -1:
                offl[len(buffers)] = off
            buffers.append(((t.bytes + align - 1) // align * align, first[t.index], last[t.index]))
            owners.append(("tensor", t.index))
    for oi, sz in scratch_reqs:
        buffers.append(((sz + align - 1) // align * align, oi + 1, oi + 1))
        owners.append(("scratch", oi))
    return buffers, owners, offl
