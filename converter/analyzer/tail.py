"""The persistent tail of the arena: every allocation TFLM makes from the top of the arena, in the
order AllocateTensors() makes it, each with its alignment (so the padding is exact), plus the
transient needs of Prepare that bound the smallest working arena."""
from __future__ import annotations

from ...common.tflite_model import TFLiteModel
from .facts import ALIGN, AnalyzerError, align_up
from .kernels import kernel_allocations

MAX_SCRATCH_PER_OP = 12  # kMaxScratchBuffersPerOp


class Tail:
    def __init__(self):
        self.used = 0  # bytes below the (16-aligned) arena end
        self.cats: dict[str, int] = {}

    def alloc(self, size: int, align: int, cat: str) -> None:
        before = self.used
        new = self.used + size
        new = (new + align - 1) // align * align  # AlignPointerDown(tail - size, align)
        self.used = new
        self.cats[cat] = self.cats.get(cat, 0) + (new - before)


def construction(model: TFLiteModel, target: str, facts: dict, tail: Tail, notes: list[str]) -> None:
    """Interpreter construction, StartModelAllocation, builtin option structs, kernel Init (OpData)."""
    S = facts["structs"]
    allocator = "RecordingSingleArenaBufferAllocator" if target == "host" else "SingleArenaBufferAllocator"
    micro = "RecordingMicroAllocator" if target == "host" else "MicroAllocator"
    for struct in (allocator, "GreedyMemoryPlanner", micro, "MicroBuiltinDataAllocator"):
        tail.alloc(*S[struct], "allocator objects")
    tail.alloc(S["SubgraphAllocations"][0] * model.n_subgraphs, S["SubgraphAllocations"][1], "allocator objects")
    tail.alloc(S["TfLiteEvalTensor"][0] * len(model.tensors), S["TfLiteEvalTensor"][1], "TfLiteEvalTensor data")
    tail.alloc(S["NodeAndRegistration"][0] * len(model.operators), S["NodeAndRegistration"][1],
               "NodeAndRegistration struct")
    bd = facts["builtin_data"]
    for op in model.operators:
        if op.name in bd and bd[op.name]:
            tail.alloc(bd[op.name][0], bd[op.name][1], "builtin data")
        elif op.name in facts.get("builtin_data_unknown", []):
            raise AnalyzerError(f"operator {op.name} is not supported by the analyzer")
    od = facts["op_data"]
    for op in model.operators:
        if op.name in od:
            tail.alloc(od[op.name], ALIGN, "Persistent buffer data")
    unknown_ops = unmodelled_ops(model, facts)
    if unknown_ops:
        notes.append(f"kernel allocations of {', '.join(sorted(unknown_ops))} are not modelled: the tail may be "
                     "larger than computed")


def unmodelled_ops(model: TFLiteModel, facts: dict) -> list[str]:
    """Ops whose kernel allocations (OpData) the analyzer does not know: the arena is then an estimate."""
    known = set(facts["op_data"]) | set(facts["no_op_data"])
    return sorted({op.name for op in model.operators if op.name not in known})


def prepare(model: TFLiteModel, facts: dict, tail: Tail) -> tuple[list[tuple[int, int]], int]:
    """Kernel Prepare: temporary TfLiteTensors in TEMP (above the scratch-request array in the head),
    per-channel arrays in the tail, scratch requests. AllocateTemp checks against the *current* tail,
    AllocatePersistentBuffer only against the head. Returns ((op index, bytes) scratch requests, the
    arena needed so far)."""
    S = facts["structs"]
    T = model.tensors
    sbr = S["ScratchBufferRequest"][0]
    tsz, tal = S["TfLiteTensor"]
    qsz, qal = S["TfLiteAffineQuantization"]
    scratch_reqs: list[tuple[int, int]] = []
    need = align_up(sbr * MAX_SCRATCH_PER_OP, 8) + tail.used  # InitScratchBufferData
    for op in model.operators:
        persist, scratch = kernel_allocations(model, op, facts)
        temp = sbr * (len(scratch_reqs) + MAX_SCRATCH_PER_OP)
        for ti in [i for i in op.inputs if i >= 0] + op.outputs:
            temp = align_up(temp, tal) + tsz
            if T[ti].scales > 0 and T[ti].zero_points > 0:
                temp = align_up(temp, qal) + qsz
                temp = align_up(temp, 4) + 4 + 4 * T[ti].scales
        temp += facts.get("prepare_temp_adjust", 0)  # calibrated (host wheel), see targets.json
        need = max(need, tail.used + temp)
        for p in persist:
            tail.alloc(p, ALIGN, "Persistent buffer data")
            if facts.get("persistent_checks_temp"):  # allocator refuses tail allocations below temp_
                need = max(need, tail.used + temp)
        scratch_reqs += [(op.index, s) for s in scratch]
        need = max(need, tail.used + sbr * (len(scratch_reqs) + MAX_SCRATCH_PER_OP))  # ResizeBuffer
    return scratch_reqs, need


def finish(model: TFLiteModel, facts: dict, tail: Tail, n_scratch: int) -> None:
    """FinishModelAllocation: scratch buffer handles, variable tensors."""
    S = facts["structs"]
    if n_scratch:
        tail.alloc(S["ScratchBufferHandle"][0] * n_scratch, S["ScratchBufferHandle"][1], "allocator objects")
    for t in model.tensors:
        if t.is_variable:
            tail.alloc(t.bytes, ALIGN, "TfLiteTensor variable buffer data")


def planning_need(model: TFLiteModel, facts: dict, tail: Tail, n_scratch: int, n_buffers: int, head: int) -> int:
    """Memory planning: TEMP = subgraph offsets + AllocationInfo[] above the request array, then the
    planner takes all remaining (16-aligned) memory and needs 40 B per planned buffer; then the head
    is reserved at the plan's high-water mark."""
    S = facts["structs"]
    ptr = S["pointer"][0]
    temp = S["ScratchBufferRequest"][0] * (n_scratch + MAX_SCRATCH_PER_OP)
    temp = align_up(temp, ptr) + ptr * model.n_subgraphs
    temp = align_up(temp, S["AllocationInfo"][1]) + S["AllocationInfo"][0] * (len(model.tensors) + n_scratch)
    return max(align_up(tail.used, ALIGN) + align_up(temp, ALIGN) + 40 * n_buffers, tail.used + head)


def graph_io(model: TFLiteModel, facts: dict, tail: Tail) -> None:
    """The persistent TfLiteTensors of the graph inputs and outputs, with their quantization."""
    S = facts["structs"]
    ptr = S["pointer"][0]
    tsz, tal = S["TfLiteTensor"]
    qsz, qal = S["TfLiteAffineQuantization"]
    for group in (model.inputs, model.outputs):
        tail.alloc(ptr * len(group), ALIGN, "Persistent buffer data")
        for ti in group:
            tail.alloc(tsz, tal, "Persistent TfLiteTensor data")
            t = model.tensors[ti]
            if t.scales > 0 and t.zero_points > 0:
                tail.alloc(qsz, qal, "Persistent TfLiteTensor quantization data")
                tail.alloc(4 + 4 * t.scales, 4, "Persistent TfLiteTensor quantization data")
