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
  converter/data/targets.json (facts.py) (measured from the TFLM sources for each ABI, with revisions).
* arena_bytes = head + tail = `arena_used_bytes()` (the wheel's "Arena allocation total"),
  assuming a 16-byte aligned arena whose size is a multiple of 16. `min_arena_bytes` also
  accounts for the transient needs during Prepare (temporary TfLiteTensors) and planning
  (AllocationInfo array + planner scratch); the binary-searched minimum lies within 16 B.

Imports numpy and the `tflite` flatbuffer package only (firmware generation uses it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path

from ...common.tflite_model import TFLiteModel, load, validate_for_tflm
from ...common.tflm_ops import require_supported
from . import tail as tail_sim
from .facts import ALIGN, AnalyzerError, align_up, target_facts
from .flash import estimate_flash
from .planner import greedy_plan, planned_buffers


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
    unmodelled_ops: list[str] = field(default_factory=list)  # kernels whose allocations are not modelled

    @property
    def exact(self) -> bool:
        """arena_bytes is exact (every op's allocations modelled), not an estimate."""
        return not self.unmodelled_ops

    def to_json(self) -> dict:
        d = asdict(self)
        return d


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


def _check_structure(model: TFLiteModel) -> None:
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


def analyze(src, target: str = "cortex-m7", *, board: str | None = "stm32f746g-disco") -> Analysis:
    """Analyze a .tflite (path, bytes or parsed TFLiteModel) for `target` ('cortex-m7' or 'host').

    Raises TFLiteError / AnalyzerError (exit_code 2, one-line message) for invalid input.
    """
    facts = target_facts(target)
    model = src if isinstance(src, TFLiteModel) else load(src)
    validate_for_tflm(model)
    require_supported(model, Path(src).name if isinstance(src, (str, PathLike)) else "model", AnalyzerError)
    _check_structure(model)
    try:
        return _analyze(model, target, facts, board)
    except (IndexError, KeyError, ValueError, ZeroDivisionError, TypeError, OverflowError) as exc:
        raise AnalyzerError(f"unsupported or inconsistent model structure ({type(exc).__name__}: {exc})") from None


def _analyze(model: TFLiteModel, target: str, facts: dict, board: str | None) -> Analysis:
    notes: list[str] = []
    tail = tail_sim.Tail()
    tail_sim.construction(model, target, facts, tail, notes)
    scratch_reqs, need = tail_sim.prepare(model, facts, tail)
    tail_sim.finish(model, facts, tail, len(scratch_reqs))
    buffers, owners, offl = planned_buffers(model, scratch_reqs, _offline_offsets(model), ALIGN)
    offsets, head = greedy_plan(buffers, offl)
    need = max(need, tail_sim.planning_need(model, facts, tail, len(scratch_reqs), len(buffers), head))
    tail_sim.graph_io(model, facts, tail)
    arena = head + tail.used
    ops_mem = _op_table(model, buffers, owners, offsets)
    peak_i = max(range(len(ops_mem)), key=lambda i: (ops_mem[i].high_water, -i))
    hist = model.op_histogram
    flash, fbreak, fnotes = estimate_flash(model, hist, target, board)
    return Analysis(
        target=target, arena_bytes=arena, head_bytes=head, tail_bytes=tail.used,
        min_arena_bytes=align_up(max(arena, need), ALIGN), flash_bytes=flash,
        peak_op=f"{peak_i}:{model.operators[peak_i].name}", peak_op_index=peak_i, ops=ops_mem,
        model_bytes=model.file_bytes, weight_bytes=model.weight_bytes, tail_breakdown=dict(tail.cats),
        flash_breakdown=fbreak,
        scratch=[{"op": oi, "op_name": model.operators[oi].name, "bytes": sz} for oi, sz in scratch_reqs],
        n_tensors=len(model.tensors), n_planned=len(buffers), op_histogram=hist, revisions=facts["revisions"],
        notes=notes + fnotes, unmodelled_ops=tail_sim.unmodelled_ops(model, facts))


def _op_table(model: TFLiteModel, buffers, owners, offsets) -> list[OpMemory]:
    """Per op: planned bytes alive while it runs, its scratch, and the highest head address in use."""
    rows = []
    for op in model.operators:
        t = op.index + 1
        live = [k for k, (sz, f, l) in enumerate(buffers) if f <= t <= l]
        live_b = sum(buffers[k][0] for k in live if owners[k][0] == "tensor")
        scr_b = sum(buffers[k][0] for k in live if owners[k][0] == "scratch")
        hw = max((offsets[k] + buffers[k][0] for k in live), default=0)
        out_shape = list(model.tensors[op.outputs[0]].shape) if op.outputs else []
        rows.append(OpMemory(op.index, op.name, out_shape, live_b, scr_b, hw,
                             [owners[k][1] for k in live if owners[k][0] == "tensor"]))
    return rows
