"""Exact TFLM tensor-arena model: greedy plan (head), persistent tail, scratch, transients, flash.

`analyze(path_or_bytes, target="cortex-m7") -> Analysis` reproduces what TFLM's
`MicroInterpreter::AllocateTensors()` does with the arena, byte for byte:

* HEAD: every non-constant, non-variable tensor with bytes > 0 plus every kernel scratch
  request, sizes rounded up to 16, lifetimes as in micro_allocation_info.cc (scope counter:
  graph inputs at 0, op i at i+1, graph outputs extended to n_ops, inclusive intervals),
  placed by GreedyMemoryPlanner (descending size, ties by higher buffer id, first fit by
  offset among time-overlapping buffers, offset-sorted list insertion after equal offsets).
* TAIL: a simulation of every persistent allocation in the order TFLM makes it (allocator
  objects, eval tensors, node array, builtin-option structs, kernel OpData in Init, per-channel
  multiplier/shift in Prepare, scratch handles, variables, graph I/O TfLiteTensors with their
  quantization), each with its alignment, so padding is exact. Struct sizes come from
  converter/data/targets.json (measured from the TFLM sources for each ABI, with revisions).
* arena_bytes = head + tail = `arena_used_bytes()` (the wheel's "Arena allocation total"),
  assuming a 16-byte aligned arena whose size is a multiple of 16. `min_arena_bytes` also
  accounts for the transient needs during Prepare (temporary TfLiteTensors) and planning
  (AllocationInfo array + planner scratch); the binary-searched minimum lies within 16 B.

Imports numpy and the `tflite` flatbuffer package only (firmware generation uses it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from .tflite_model import TFLiteError, TFLiteModel, load, validate_for_tflm

DATA_DIR = Path(__file__).with_name("data")
ALIGN = 16  # MicroArenaBufferAlignment()
MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp
TARGETS = ("cortex-m7", "host")


class AnalyzerError(Exception):
    exit_code = 2


def _up(x: int, a: int = ALIGN) -> int:
    return (x + a - 1) // a * a


@lru_cache(maxsize=None)
def target_facts(target: str) -> dict:
    doc = json.loads((DATA_DIR / "targets.json").read_text())
    if target not in doc["targets"]:
        raise AnalyzerError(f"unknown target '{target}' (choose from {', '.join(sorted(doc['targets']))})")
    facts = dict(doc["targets"][target])
    facts["revisions"] = doc["revisions"]
    facts["no_op_data"] = doc.get("no_op_data", {}).get("ops", [])
    cal = facts.get("calibration") or {}
    for key in ("op_data", "structs", "builtin_data"):
        if key in cal:
            facts[key] = {**facts[key], **cal[key]}
    return facts


@lru_cache(maxsize=None)
def flash_facts() -> dict:
    return json.loads((DATA_DIR / "flash.json").read_text())


# ----------------------------------------------------------------------------------------
# Greedy memory planner (tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc)
# ----------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------
# Kernel facts: persistent allocations and scratch requests per op and target
# ----------------------------------------------------------------------------------------

def _dims(model: TFLiteModel, ti: int) -> tuple[int, ...]:
    return model.tensors[ti].shape if ti >= 0 else ()


def _in(op, k: int) -> int:
    return op.inputs[k] if k < len(op.inputs) else -1


def _out_pad(in_size: int, filt: int, stride: int, dil: int, out_size: int, padding: int) -> int:
    eff = (filt - 1) * dil + 1
    if padding == 0:  # SAME
        total = max((out_size - 1) * stride + eff - in_size, 0)
        return total // 2
    return 0


def kernel_allocations(model: TFLiteModel, op, facts: dict) -> tuple[list[int], list[int]]:
    """(persistent sizes allocated in Prepare, scratch request sizes) for one op on a target."""
    name = op.name
    cmsis = facts["kernels"] == "cmsis_nn"
    dsp = cmsis  # Cortex-M7 has the DSP extension, no MVE
    persist: list[int] = []
    scratch: list[int] = []
    T = model.tensors
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
        f = _in(op, 1)
        fd = _dims(model, f)
        if len(fd) == 4:
            ch = fd[0] if name != "DEPTHWISE_CONV_2D" else fd[3]
            if name == "TRANSPOSE_CONV":
                ch = fd[0]
            persist += [4 * ch, 4 * ch]
        if cmsis and name == "CONV_2D" and len(fd) == 4:
            x = _dims(model, _in(op, 0))
            o = op.options
            kh, kw, cin = fd[1], fd[2], fd[3]
            if len(x) == 4 and T[_in(op, 0)].type == 9:
                out = _dims(model, op.outputs[0])
                sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
                dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
                ph = _out_pad(x[1], kh, sh, dh, out[1], o.get("padding", 1)) if len(out) == 4 else 0
                pw = _out_pad(x[2], kw, sw, dw, out[2], o.get("padding", 1)) if len(out) == 4 else 0
                is_1x1 = ph == 0 and pw == 0 and kh == 1 and kw == 1 and dh == 1 and dw == 1 and x[3] == cin
                # 1x1 (any stride): no buffer with GCC (the fast path's 4*Cin is Arm Compiler 6 only);
                # general and 1xN: im2col of two columns in int16 = 4*ceil4(kh*kw*Cin), DSP or not.
                size = 0 if is_1x1 else 4 * _up(kh * kw * cin, 4)
                if size > 0:
                    scratch.append(size)
        if cmsis and name == "DEPTHWISE_CONV_2D" and len(fd) == 4:
            x = _dims(model, _in(op, 0))
            o = op.options
            out = _dims(model, op.outputs[0])
            kh, kw = fd[1], fd[2]
            if len(x) == 4 and len(out) == 4 and T[_in(op, 0)].type == 9:
                cin, cout = x[3], out[3]
                dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
                ph = _out_pad(x[1], kh, o.get("stride_h", 1), dh, out[1], o.get("padding", 1))
                pw = _out_pad(x[2], kw, o.get("stride_w", 1), dw, out[2], o.get("padding", 1))
                size = 0
                if cin == cout and x[0] == 1 and dh == 1 and dw == 1:
                    if kh == 3 and kw == 3 and ph <= 1 and pw <= 1:
                        size = 0
                    elif dsp:
                        size = cin * kh * kw * 2
                if size > 0:
                    scratch.append(size)
    elif name == "FULLY_CONNECTED":
        f = _in(op, 1)
        if f >= 0 and T[f].scales > 1:
            ch = T[f].scales
            persist += [4 * ch, 4 * ch]
        if cmsis:
            out = _dims(model, op.outputs[0])
            if len(out) > 2 and f >= 0:
                fd = _dims(model, f)
                accum = fd[-1] if fd else 0
                if accum % 4 == 0 and T[f].scales <= 1:
                    scratch.append(2 * 4 * fd[0])
    elif name == "AVERAGE_POOL_2D":
        if cmsis and dsp:
            x = _dims(model, _in(op, 0))
            if x and T[_in(op, 0)].type == 9:
                scratch.append(4 * x[-1])
    elif name in ("MEAN", "SUM"):
        x = _dims(model, _in(op, 0))
        axis = _in(op, 1)
        n_axis = T[axis].elements if axis >= 0 else 0
        if T[_in(op, 0)].type in (9, 7):
            scratch.append(4 * T[op.outputs[0]].elements)
        scratch += [4 * len(x), 4 * n_axis]
    elif name in ("REDUCE_MAX", "REDUCE_MIN"):
        x = _dims(model, _in(op, 0))
        axis = _in(op, 1)
        scratch += [4 * len(x), 4 * (T[axis].elements if axis >= 0 else 0)]
    elif name == "SOFTMAX":
        if T[_in(op, 0)].type == 7:
            persist += [2 * 513, 2 * 513]
    return persist, scratch


# ----------------------------------------------------------------------------------------
# Result types
# ----------------------------------------------------------------------------------------

@dataclass
class OpMemory:
    index: int
    op: str
    output_shape: list[int]
    live_bytes: int        # planned activation bytes alive while the op runs (16-aligned sizes)
    scratch_bytes: int     # kernel scratch requested by this op (16-aligned)
    high_water: int        # highest arena-head address in use while the op runs
    live_tensors: list[int] = field(default_factory=list)


@dataclass
class Analysis:
    target: str
    arena_bytes: int       # head + tail = arena_used_bytes() (16-aligned arena)
    head_bytes: int        # greedy plan high-water (activations + scratch)
    tail_bytes: int        # persistent allocations
    min_arena_bytes: int   # smallest arena AllocateTensors accepts (incl. Prepare/planning transients)
    flash_bytes: int       # model + kernels code + runtime + board support
    peak_op: str           # "index:OP" of the op at the head high-water mark
    peak_op_index: int
    ops: list[OpMemory]
    model_bytes: int
    weight_bytes: int
    tail_breakdown: dict[str, int]
    flash_breakdown: dict[str, int]
    scratch: list[dict]
    n_tensors: int
    n_planned: int
    op_histogram: dict[str, int]
    revisions: dict[str, str]
    notes: list[str]

    def to_json(self) -> dict:
        d = asdict(self)
        return d


# ----------------------------------------------------------------------------------------
# The simulation
# ----------------------------------------------------------------------------------------

class _Tail:
    def __init__(self):
        self.used = 0  # bytes below the (16-aligned) arena end
        self.cats: dict[str, int] = {}

    def alloc(self, size: int, align: int, cat: str) -> None:
        before = self.used
        new = self.used + size
        new = (new + align - 1) // align * align  # AlignPointerDown(tail - size, align)
        self.used = new
        self.cats[cat] = self.cats.get(cat, 0) + (new - before)


def analyze(src, target: str = "cortex-m7", *, board: str | None = "stm32f746g-disco") -> Analysis:
    """Analyze a .tflite (path, bytes or parsed TFLiteModel) for `target` ('cortex-m7' or 'host').

    Raises TFLiteError / AnalyzerError (exit_code 2, one-line message) for invalid input.
    """
    facts = target_facts(target)
    model = src if isinstance(src, TFLiteModel) else load(src)
    validate_for_tflm(model)
    for op in model.operators:
        if not op.outputs or any(t < 0 for t in op.outputs):
            raise AnalyzerError(f"operator {op.index} ({op.name}) has no output tensor")
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and len(op.inputs) < 2:
            raise AnalyzerError(f"operator {op.index} ({op.name}) lacks its weights input")
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and (len(model.tensors[op.inputs[1]].shape) != 4
                                                            or op.inputs[0] < 0):
            raise AnalyzerError(f"operator {op.index} ({op.name}) has a malformed filter/input")
    for ti in model.inputs + model.outputs:
        if ti < 0:
            raise AnalyzerError("graph input/output refers to no tensor")
    try:
        return _analyze(model, target, facts, board)
    except (IndexError, KeyError, ValueError, ZeroDivisionError, TypeError, OverflowError) as exc:
        raise AnalyzerError(f"unsupported or inconsistent model structure ({type(exc).__name__}: {exc})") from None


def _analyze(model: TFLiteModel, target: str, facts: dict, board: str | None) -> Analysis:
    S = facts["structs"]
    notes: list[str] = []
    T = model.tensors
    n_t, n_ops = len(T), len(model.operators)
    ptr = S["pointer"][0]

    tail = _Tail()
    # 1. interpreter construction
    if target == "host":
        tail.alloc(*S["RecordingSingleArenaBufferAllocator"], "allocator objects")
        tail.alloc(*S["GreedyMemoryPlanner"], "allocator objects")
        tail.alloc(*S["RecordingMicroAllocator"], "allocator objects")
    else:
        tail.alloc(*S["SingleArenaBufferAllocator"], "allocator objects")
        tail.alloc(*S["GreedyMemoryPlanner"], "allocator objects")
        tail.alloc(*S["MicroAllocator"], "allocator objects")
    # 2. StartModelAllocation
    tail.alloc(*S["MicroBuiltinDataAllocator"], "allocator objects")
    sbr = S["ScratchBufferRequest"][0]
    tail.alloc(S["SubgraphAllocations"][0] * model.n_subgraphs, S["SubgraphAllocations"][1], "allocator objects")
    tail.alloc(S["TfLiteEvalTensor"][0] * n_t, S["TfLiteEvalTensor"][1], "TfLiteEvalTensor data")
    tail.alloc(S["NodeAndRegistration"][0] * n_ops, S["NodeAndRegistration"][1], "NodeAndRegistration struct")
    # 3. builtin option structs
    bd = facts["builtin_data"]
    for op in model.operators:
        if op.name in bd and bd[op.name]:
            tail.alloc(bd[op.name][0], bd[op.name][1], "builtin data")
        elif op.name in facts.get("builtin_data_unknown", []):
            raise AnalyzerError(f"operator {op.name} is not supported by the analyzer")
    # 4. Init: OpData
    od = facts["op_data"]
    unknown_ops = set()
    for op in model.operators:
        if op.name in od:
            tail.alloc(od[op.name], ALIGN, "Persistent buffer data")
        elif op.name not in facts["no_op_data"]:
            unknown_ops.add(op.name)
    if unknown_ops:
        notes.append(f"kernel allocations of {', '.join(sorted(unknown_ops))} are not modelled: the tail may be "
                     "larger than computed")
    # 5. Prepare: temporary TfLiteTensors in TEMP (above the scratch-request array in HEAD), then
    #    per-channel arrays in the tail, scratch requests; then the request array is resized.
    #    AllocateTemp checks against the *current* tail; AllocatePersistentBuffer only against head_.
    scratch_reqs: list[tuple[int, int]] = []  # (op index, bytes)
    need = _up(sbr * MAX_SCRATCH_PER_OP, 8) + tail.used  # InitScratchBufferData
    tsz, tal = S["TfLiteTensor"]
    qsz, qal = S["TfLiteAffineQuantization"]
    for op in model.operators:
        persist, scratch = kernel_allocations(model, op, facts)
        temp = sbr * (len(scratch_reqs) + MAX_SCRATCH_PER_OP)
        for ti in [i for i in op.inputs if i >= 0] + op.outputs:
            temp = _up(temp, tal) + tsz
            if T[ti].scales > 0 and T[ti].zero_points > 0:
                temp = _up(temp, qal) + qsz
                temp = _up(temp, 4) + 4 + 4 * T[ti].scales
        temp += facts.get("prepare_temp_adjust", 0)  # calibrated (host wheel), see targets.json
        need = max(need, tail.used + temp)
        for p in persist:
            tail.alloc(p, ALIGN, "Persistent buffer data")
            if facts.get("persistent_checks_temp"):  # allocator refuses tail allocations below temp_
                need = max(need, tail.used + temp)
        for s_ in scratch:
            scratch_reqs.append((op.index, s_))
        need = max(need, tail.used + sbr * (len(scratch_reqs) + MAX_SCRATCH_PER_OP))  # ResizeBuffer
    # 6. FinishModelAllocation
    if scratch_reqs:
        tail.alloc(S["ScratchBufferHandle"][0] * len(scratch_reqs), S["ScratchBufferHandle"][1], "allocator objects")
    for t in T:
        if t.is_variable:
            tail.alloc(t.bytes, ALIGN, "TfLiteTensor variable buffer data")

    # lifetimes (micro_allocation_info.cc)
    first = [-1] * n_t
    last = [-1] * n_t
    scope = 0
    for ti in model.inputs:
        if ti >= 0:
            if first[ti] == -1:
                first[ti] = scope
            last[ti] = scope
    s_first: list[int] = []
    s_last: list[int] = []
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
    for oi, _ in scratch_reqs:
        s_first.append(oi + 1)
        s_last.append(oi + 1)
    for ti in model.outputs:
        if first[ti] == -1:
            first[ti] = scope
        last[ti] = scope

    offline = _offline_offsets(model)
    buffers: list[tuple[int, int, int]] = []
    owners: list[tuple[str, int]] = []
    offl: dict[int, int] = {}
    for t in T:
        needs = (not t.has_data) and (not t.is_variable) and t.bytes != 0
        off = offline[t.index] if offline else -1
        if offline and t.is_variable and off != -1:
            needs = True
        if needs:
            if off != -1:
                offl[len(buffers)] = off
            buffers.append((_up(t.bytes), first[t.index], last[t.index]))
            owners.append(("tensor", t.index))
    for k, (oi, sz) in enumerate(scratch_reqs):
        buffers.append((_up(sz), s_first[k], s_last[k]))
        owners.append(("scratch", oi))
    offsets, head = greedy_plan(buffers, offl)

    # planning: TEMP = subgraph offsets + AllocationInfo[] above the request array, then the planner
    # takes all remaining (16-aligned) memory and needs 40 B per planned buffer; then the head is
    # reserved at the plan's high-water mark.
    temp = sbr * (len(scratch_reqs) + MAX_SCRATCH_PER_OP)
    temp = _up(temp, ptr) + ptr * model.n_subgraphs
    temp = _up(temp, S["AllocationInfo"][1]) + S["AllocationInfo"][0] * (n_t + len(scratch_reqs))
    need = max(need, _up(tail.used, ALIGN) + _up(temp, ALIGN) + 40 * len(buffers), tail.used + head)

    # 7. graph I/O persistent TfLiteTensors
    for group in (model.inputs, model.outputs):
        tail.alloc(ptr * len(group), ALIGN, "Persistent buffer data")
        for ti in group:
            tail.alloc(tsz, tal, "Persistent TfLiteTensor data")
            t = T[ti]
            if t.scales > 0 and t.zero_points > 0:
                tail.alloc(qsz, qal, "Persistent TfLiteTensor quantization data")
                tail.alloc(4 + 4 * t.scales, 4, "Persistent TfLiteTensor quantization data")

    arena = head + tail.used
    min_arena = _up(max(arena, need), ALIGN)

    # per-op memory table
    ops_mem: list[OpMemory] = []
    peak_i, peak_v = 0, -1
    for op in model.operators:
        t = op.index + 1
        live = [k for k, (sz, f, l) in enumerate(buffers) if f <= t <= l]
        live_b = sum(buffers[k][0] for k in live if owners[k][0] == "tensor")
        scr_b = sum(buffers[k][0] for k in live if owners[k][0] == "scratch")
        hw = max((offsets[k] + buffers[k][0] for k in live), default=0)
        out_shape = list(T[op.outputs[0]].shape) if op.outputs else []
        ops_mem.append(OpMemory(op.index, op.name, out_shape, live_b, scr_b, hw,
                                [owners[k][1] for k in live if owners[k][0] == "tensor"]))
        if hw > peak_v:
            peak_i, peak_v = op.index, hw
    hist: dict[str, int] = {}
    for op in model.operators:
        hist[op.name] = hist.get(op.name, 0) + 1
    flash, fbreak, fnotes = estimate_flash(model, hist, target, board)
    notes += fnotes
    return Analysis(
        target=target, arena_bytes=arena, head_bytes=head, tail_bytes=tail.used, min_arena_bytes=min_arena,
        flash_bytes=flash, peak_op=f"{peak_i}:{model.operators[peak_i].name}", peak_op_index=peak_i, ops=ops_mem,
        model_bytes=model.file_bytes, weight_bytes=model.weight_bytes, tail_breakdown=dict(tail.cats),
        flash_breakdown=fbreak,
        scratch=[{"op": oi, "op_name": model.operators[oi].name, "bytes": sz} for oi, sz in scratch_reqs],
        n_tensors=n_t, n_planned=len(buffers), op_histogram=hist, revisions=facts["revisions"], notes=notes)


def _offline_offsets(model: TFLiteModel) -> list[int] | None:
    raw = model.metadata.get("OfflineMemoryAllocation")
    if not raw:
        return None
    import numpy as np
    if len(raw) % 4:
        raise AnalyzerError("corrupt OfflineMemoryAllocation metadata")
    arr = np.frombuffer(raw, dtype="<i4")
    if len(arr) < 3 or int(arr[2]) != len(model.tensors) or len(arr) < 3 + len(model.tensors):
        raise AnalyzerError("OfflineMemoryAllocation metadata does not match the tensor count")
    return [int(v) for v in arr[3:3 + len(model.tensors)]]


def estimate_flash(model: TFLiteModel, hist: dict[str, int], target: str,
                   board: str | None = None) -> tuple[int, dict[str, int], list[str]]:
    """Flash of the Cortex-M7 firmware: model + fixed runtime/startup/libc + board support + kernels.

    Kernel code per op type was measured by linking (converter/data/flash.json); code is shared
    between kernels, so the first kernel counts with its shared helpers ('alone') and the others
    with what they add on top ('on_top').
    """
    f = flash_facts()
    alone, on_top = f["alone"], f["on_top"]
    ops = sorted(hist)
    unknown = [o for o in ops if o not in alone]
    if "FULLY_CONNECTED" in ops:
        first = "FULLY_CONNECTED"
    else:
        known = [o for o in ops if o in alone]
        first = max(known, key=lambda o: alone[o]) if known else None
    kernels = alone[first] if first else 0
    for o in ops:
        if o == first:
            continue
        if o in on_top:
            kernels += on_top[o]
        elif o in alone:
            kernels += max(alone[o] - 1500, 0)
        else:
            kernels += f["kernel_default"]
    bs = f["board_support"]
    brk = {"model": model.file_bytes, "kernels": kernels, "runtime": f["fixed"],
           "board_support": bs.get(board or "stm32f746g-disco", bs["_default"])}
    notes = []
    if f.get("provisional"):
        notes.append("flash code sizes are provisional estimates (see converter/data/flash.json)")
    if unknown:
        notes.append(f"no measured code size for {', '.join(unknown)}: {f['kernel_default']} B each assumed")
    return sum(brk.values()), brk, notes
