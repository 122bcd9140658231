"""The patch rewrite of a .tflite graph (MCUNetV2-style patch-based inference in stock TFLM ops).

The stage ops[0..split] is replaced by, for each patch of an R x C grid of the split tensor:
STRIDED_SLICE of each input rectangle it needs (with the halo), PAD (zero point) only where the
rectangle leaves the image, the stage's ops with VALID padding on the patch; each grid row is
joined by a CONCATENATION along W, the rows by one along H into the original split tensor. The
rest of the graph, its tensors and weights are unchanged (weights are shared by the patch ops).
Ops run patch after patch so each patch's intermediates die before the next one starts.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from ...common.tflite_model import TFLiteModel, load
from . import schema as sch
from .stage import PAD_OPS, POOL_OPS, WINDOW_OPS, PatchError, Rect, activation_inputs, geometry, patch_bounds, \
    patch_plan, split_candidates

MAX_GRID = 10   # TFLM CONCATENATION takes at most 10 inputs (kMaxInputNum)
OP_VERSIONS = {"STRIDED_SLICE": 2, "PAD": 2, "CONCATENATION": 2}   # the int8 versions of these builtins


@dataclass
class _Builder:
    mt: object                                   # the ModelT being edited
    sg: object                                   # its subgraph 0
    S: object                                    # the schema module
    ops: list = field(default_factory=list)      # new operator list of the stage
    const_cache: dict = field(default_factory=dict)

    def opcode(self, name: str) -> int:
        code = getattr(self.S.BuiltinOperator, name)
        for i, oc in enumerate(self.mt.operatorCodes):
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                return i
        oc = self.S.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), OP_VERSIONS.get(name, 1)
        self.mt.operatorCodes.append(oc)
        return len(self.mt.operatorCodes) - 1

    def like(self, src: int, shape: tuple, name: str) -> int:
        """A new activation tensor with the quantization and type of tensor `src`."""
        t = copy.deepcopy(self.sg.tensors[src])
        t.shape = np.array(shape, dtype=np.int32)
        t.shapeSignature = None
        t.name = name.encode()
        t.buffer = self.empty_buffer()
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def empty_buffer(self) -> int:
        if "empty" not in self.const_cache:
            self.mt.buffers.append(self.S.BufferT())
            self.const_cache["empty"] = len(self.mt.buffers) - 1
        return self.const_cache["empty"]

    def const_i32(self, values, name: str) -> int:
        arr = np.asarray(values, dtype=np.int32)
        key = (arr.shape, arr.tobytes())
        if key in self.const_cache:
            return self.const_cache[key]
        b = self.S.BufferT()
        b.data = np.frombuffer(arr.astype("<i4").tobytes(), dtype=np.uint8)
        self.mt.buffers.append(b)
        t = self.S.TensorT()
        t.shape, t.type, t.buffer, t.name = np.array(arr.shape, dtype=np.int32), self.S.TensorType.INT32, \
            len(self.mt.buffers) - 1, name.encode()
        self.sg.tensors.append(t)
        self.const_cache[key] = len(self.sg.tensors) - 1
        return self.const_cache[key]

    def add_op(self, name: str, inputs: list[int], outputs: list[int], options=None, options_type: int = 0):
        op = self.S.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self.opcode(name), list(inputs), list(outputs)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self.ops.append(op)

    def strided_slice(self, src: int, have: Rect, want: Rect, channels: int, name: str) -> int:
        begin = [0, want.r0 - have.r0, want.c0 - have.c0, 0]
        end = [1, want.r1 - have.r0, want.c1 - have.c0, channels]
        out = self.like(src, (1, want.h, want.w, channels), name)
        opts = self.S.StridedSliceOptionsT()
        self.add_op("STRIDED_SLICE", [src, self.const_i32(begin, "patch/begin" + str(begin)),
                                      self.const_i32(end, "patch/end" + str(end)),
                                      self.const_i32([1, 1, 1, 1], "patch/strides")], [out],
                    opts, self.S.BuiltinOptions.StridedSliceOptions)
        return out

    def pad(self, src: int, rect: Rect, pads: tuple, channels: int, name: str, constant: int | None = None) -> int:
        pt, pb, pl, pr = pads
        out = self.like(src, (1, rect.h + pt + pb, rect.w + pl + pr, channels), name)
        p = self.const_i32([[0, 0], [pt, pb], [pl, pr], [0, 0]], f"patch/paddings{list(pads)}")
        if constant is None:
            self.add_op("PAD", [src, p], [out], self.S.PadOptionsT(), self.S.BuiltinOptions.PadOptions)
        else:
            self.add_op("PADV2", [src, p, constant], [out], self.S.PadV2OptionsT(), self.S.BuiltinOptions.PadV2Options)
        return out


def _constants(model: TFLiteModel, mt) -> dict[int, np.ndarray]:
    """Constant int32/int64 tensors small enough to be shape operands (PAD paddings)."""
    out = {}
    for t in model.tensors:
        if t.has_data and t.dtype in ("int32", "int64") and t.elements <= 16:
            raw = mt.buffers[t.buffer].data
            arr = np.frombuffer(bytes(raw), dtype="<i4" if t.dtype == "int32" else "<i8")
            out[t.index] = arr.reshape(t.shape)
    return out


def _emit_patch(b: _Builder, model: TFLiteModel, split: int, patch: Rect, tag: str, geos) -> int:
    """Append the ops of one patch; returns the tensor holding the patch of the split tensor."""
    T = model.tensors
    need, reads = patch_plan(model, split, patch, geos)
    full = {t: Rect(0, T[t].shape[1], 0, T[t].shape[2]) for t in model.inputs}
    have: dict[int, tuple[int, Rect]] = {t: (t, full[t]) for t in model.inputs}   # orig -> (new tensor, rect)
    for op in model.operators[:split + 1]:
        out_t = op.outputs[0]
        if out_t not in need:
            continue
        ins = list(op.inputs)
        for k in activation_inputs(model, op):
            src, rect = have[op.inputs[k]]
            rd = reads[(op.index, k)]
            ch = T[op.inputs[k]].shape[3]
            if rd.rect != rect:
                src = b.strided_slice(src, rect, rd.rect, ch, f"{T[op.inputs[k]].name}/{tag}/slice{op.index}")
                rect = rd.rect
            if op.name in PAD_OPS:
                ins[k] = src
                break
            if any(rd.pads):
                src = b.pad(src, rect, rd.pads, ch, f"{T[op.inputs[k]].name}/{tag}/pad{op.index}")
            ins[k] = src
        if op.name in PAD_OPS:
            rd = reads[(op.index, 0)]
            if any(rd.pads):
                const = op.inputs[2] if op.name == "PADV2" and len(op.inputs) > 2 else None
                src = b.pad(ins[0], rd.rect, rd.pads, T[out_t].shape[3], f"{T[out_t].name}/{tag}", const)
            else:
                src = ins[0]   # this patch lies inside the padding's image: the PAD is the identity
            have[out_t] = (src, need[out_t])
            continue
        new_out = b.like(out_t, (1, need[out_t].h, need[out_t].w, T[out_t].shape[3]), f"{T[out_t].name}/{tag}")
        src_op = b.sg.operators[op.index]
        nop = copy.deepcopy(src_op)
        nop.inputs, nop.outputs = ins, [new_out]
        if op.name in WINDOW_OPS:
            nop.builtinOptions.padding = b.S.Padding.VALID
        b.ops.append(nop)
        have[out_t] = (new_out, need[out_t])
    return have[model.operators[split].outputs[0]][0]


def _concat(b: _Builder, inputs: list[int], out: int, axis: int) -> None:
    opts = b.S.ConcatenationOptionsT()
    opts.axis = axis
    b.add_op("CONCATENATION", inputs, [out], opts, b.S.BuiltinOptions.ConcatenationOptions)


def _drop_unused(mt, sg) -> None:
    """Remove tensors no op, input or output refers to (TFLM would plan them), remapping indices."""
    used = set(sg.inputs) | set(sg.outputs)
    for op in sg.operators:
        used |= {t for t in op.inputs if t >= 0} | {t for t in op.outputs} | set(op.intermediates or [])
    keep = [i for i in range(len(sg.tensors)) if i in used]
    remap = {old: new for new, old in enumerate(keep)}
    sg.tensors = [sg.tensors[i] for i in keep]
    for op in sg.operators:
        op.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
        op.outputs = [remap[t] for t in op.outputs]
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = [remap[t] for t in op.intermediates]
    sg.inputs = [remap[t] for t in sg.inputs]
    sg.outputs = [remap[t] for t in sg.outputs]
    for sig in mt.signatureDefs or []:
        for tm in (sig.inputs or []) + (sig.outputs or []):
            tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)


def rewrite(data: bytes, split: int, grid: tuple[int, int]) -> bytes:
    """The patched model's bytes (raises PatchError when this split/grid cannot be applied)."""
    model = load(data)
    cands, reason = split_candidates(model)
    if split not in cands:
        raise PatchError(f"op {split} does not end a patchable first stage ({reason})")
    R, C = grid
    split_t = model.operators[split].outputs[0]
    H, W, ch = model.tensors[split_t].shape[1:4]
    if not (1 <= R <= min(H, MAX_GRID) and 1 <= C <= min(W, MAX_GRID)) or R * C < 2:
        raise PatchError(f"grid {R}x{C} does not fit the {H}x{W} split tensor (1..{MAX_GRID} per side, >= 2 patches)")
    mt = sch.unpack(data)
    S = sch.schema()
    sg = mt.subgraphs[0]
    b = _Builder(mt, sg, S)
    geos = {op.index: geometry(model, op, _constants(model, mt)) for op in model.operators[:split + 1]}
    rb, cb = patch_bounds(H, R), patch_bounds(W, C)
    rows = []
    for i in range(R):
        parts = [_emit_patch(b, model, split, Rect(rb[i], rb[i + 1], cb[j], cb[j + 1]), f"patch{i}_{j}", geos)
                 for j in range(C)]
        if R == 1:
            _concat(b, parts, split_t, 2)
        elif C == 1:
            rows.append(parts[0])
        else:
            row = b.like(split_t, (1, rb[i + 1] - rb[i], W, ch), f"{model.tensors[split_t].name}/row{i}")
            _concat(b, parts, row, 2)
            rows.append(row)
    if R > 1:
        _concat(b, rows, split_t, 1)
    sg.operators = b.ops + list(sg.operators[split + 1:])
    _drop_unused(mt, sg)
    return sch.pack(mt)


def truncate_at(data: bytes, tensor_name: str) -> bytes:
    """The model cut after the first op producing the tensor named `tensor_name`, which becomes its only
    output (to compare a stage's output directly: random-weight models often saturate the logits)."""
    model = load(data)
    ends = [op.index for op in model.operators if model.tensors[op.outputs[0]].name == tensor_name]
    if not ends:
        raise PatchError(f"no op produces tensor '{tensor_name}'")
    mt = sch.unpack(data)
    sg = mt.subgraphs[0]
    sg.operators = list(sg.operators[:ends[0] + 1])
    sg.outputs = [model.operators[ends[0]].outputs[0]]
    mt.signatureDefs = None
    _drop_unused(mt, sg)
    return sch.pack(mt)


__all__ = ["rewrite", "truncate_at", "PatchError", "MAX_GRID", "POOL_OPS"]
