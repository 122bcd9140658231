"""The patchable first stage of a graph and the spatial regions each patch needs (receptive fields).

A stage is the prefix ops[0..split] of the (topologically ordered) operator list whose only tensor
used later is the split op's output: every op in it is spatially local (convolutions, pools, PAD,
elementwise ops on equal shapes), so one patch of the split tensor depends on one rectangle of each
earlier tensor. `patch_plan` walks the stage backwards from a patch of the split tensor and returns,
for every stage tensor, the rectangle to compute and, for every (op, input), the rectangle the op
reads plus the zero-point padding it needs where that rectangle leaves the image (SAME padding made
explicit, so the op can run with VALID padding on the patch).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...common.errors import UserError

WINDOW_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"}
POOL_OPS = {"MAX_POOL_2D", "AVERAGE_POOL_2D"}   # their SAME padding is not zero-point padding
PAD_OPS = {"PAD", "PADV2"}
UNARY_OPS = {"RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU", "QUANTIZE"}
BINARY_OPS = {"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"}
SUPPORTED_OPS = WINDOW_OPS | PAD_OPS | UNARY_OPS | BINARY_OPS


class PatchError(UserError):
    """The model (or the requested split/grid) cannot be patched; the original is left untouched."""


@dataclass(frozen=True)
class Rect:
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def h(self) -> int:
        return self.r1 - self.r0

    @property
    def w(self) -> int:
        return self.c1 - self.c0

    def union(self, o: "Rect") -> "Rect":
        return Rect(min(self.r0, o.r0), max(self.r1, o.r1), min(self.c0, o.c0), max(self.c1, o.c1))


@dataclass
class Read:
    """What one op input reads for one patch: a rectangle of the tensor and the padding around it."""
    rect: Rect
    pads: tuple[int, int, int, int]   # top, bottom, left, right


def _same_pad(in_size: int, k: int, s: int, d: int, out_size: int) -> int:
    eff = (k - 1) * d + 1
    return max((out_size - 1) * s + eff - in_size, 0) // 2   # TFLM ComputePadding: the smaller half first


def geometry(model, op, consts: dict[int, "object"]) -> tuple:
    """(kh, kw, sh, sw, dh, dw, pad_top, pad_left) of a window/PAD op; elementwise: a 1x1 identity."""
    T = model.tensors
    if op.name in PAD_OPS:
        p = consts.get(op.inputs[1])
        if p is None or p.shape != (4, 2):
            raise PatchError(f"op {op.index} ({op.name}) has non-constant or non-4D paddings")
        if p[0].any() or p[3].any():
            raise PatchError(f"op {op.index} ({op.name}) pads the batch or channel axis")
        return (1, 1, 1, 1, 1, 1, int(p[1][0]), int(p[2][0]))
    if op.name not in WINDOW_OPS:
        return (1, 1, 1, 1, 1, 1, 0, 0)
    o = op.options
    x, y = T[op.inputs[0]].shape, T[op.outputs[0]].shape
    if op.name in POOL_OPS:
        kh, kw = o["filter_h"], o["filter_w"]
        dh = dw = 1
    else:
        w = T[op.inputs[1]].shape
        kh, kw = w[1], w[2]
        dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
    sh, sw = o["stride_h"], o["stride_w"]
    same = o.get("padding", 1) == 0
    pt = _same_pad(x[1], kh, sh, dh, y[1]) if same else 0
    pl = _same_pad(x[2], kw, sw, dw, y[2]) if same else 0
    return (kh, kw, sh, sw, dh, dw, pt, pl)


def activation_inputs(model, op) -> list[int]:
    """Input slots of `op` that carry activations (not weights, bias, paddings, constants)."""
    T = model.tensors
    if op.name in WINDOW_OPS or op.name in PAD_OPS or op.name in UNARY_OPS:
        slots = [0]
    else:
        slots = list(range(len(op.inputs)))
    return [k for k in slots if op.inputs[k] >= 0 and not T[op.inputs[k]].has_data]


def stage_problem(model, op) -> str | None:
    """Why `op` cannot be part of a patched stage (None if it can)."""
    T = model.tensors
    if op.name not in SUPPORTED_OPS:
        return f"op {op.index} ({op.name}) is not spatially local"
    if len(op.outputs) != 1:
        return f"op {op.index} ({op.name}) has {len(op.outputs)} outputs"
    y = T[op.outputs[0]].shape
    if len(y) != 4 or y[0] != 1:
        return f"op {op.index} ({op.name}) output is not a 1xHxWxC tensor"
    for k in activation_inputs(model, op):
        x = T[op.inputs[k]].shape
        if len(x) != 4 or x[0] != 1:
            return f"op {op.index} ({op.name}) input is not a 1xHxWxC tensor"
        if op.name in BINARY_OPS and x != y:
            return f"op {op.index} ({op.name}) broadcasts a {list(x)} input (a global op)"
    if op.name in BINARY_OPS and any(T[i].has_data for i in op.inputs if i >= 0):
        if any(T[i].elements > 1 for i in op.inputs if i >= 0 and T[i].has_data):
            return f"op {op.index} ({op.name}) has a non-scalar constant operand"
    return None


def split_candidates(model) -> tuple[list[int], str]:
    """Ops k such that ops[0..k] form a patchable stage; and the reason the stage cannot grow further."""
    ops = model.operators
    outs = set(model.outputs)
    last_use: dict[int, int] = {}
    for op in ops:
        for t in op.inputs:
            if t >= 0:
                last_use[t] = op.index
    inside: set[int] = {t for t in model.inputs}
    cands: list[int] = []
    reason = "the whole graph is local"
    for op in ops:
        why = stage_problem(model, op)
        if why:
            reason = why
            break
        for k in activation_inputs(model, op):
            if op.inputs[k] not in inside:
                reason = f"op {op.index} ({op.name}) reads a tensor from outside the stage"
                break
        else:
            inside.add(op.outputs[0])
            crossing = [t for t in inside if last_use.get(t, -1) > op.index or t in outs]
            if crossing == [op.outputs[0]] and op.outputs[0] not in outs and op.index + 1 < len(ops):
                cands.append(op.index)
            continue
        break
    return cands, reason


def patch_bounds(n: int, parts: int) -> list[int]:
    return [round(i * n / parts) for i in range(parts + 1)]


def _read(geo: tuple, out: Rect, in_h: int, in_w: int) -> Read:
    kh, kw, sh, sw, dh, dw, pt, pl = geo
    lo_r, hi_r = out.r0 * sh - pt, (out.r1 - 1) * sh - pt + (kh - 1) * dh + 1
    lo_c, hi_c = out.c0 * sw - pl, (out.c1 - 1) * sw - pl + (kw - 1) * dw + 1
    rect = Rect(max(lo_r, 0), min(hi_r, in_h), max(lo_c, 0), min(hi_c, in_w))
    pads = (rect.r0 - lo_r, hi_r - rect.r1, rect.c0 - lo_c, hi_c - rect.c1)
    return Read(rect, pads)


def patch_plan(model, split: int, patch: Rect, geos: dict[int, tuple]) -> tuple[dict[int, Rect], dict]:
    """({tensor: rect to compute}, {(op, input slot): Read}) for one patch of the split tensor."""
    T = model.tensors
    need: dict[int, Rect] = {model.operators[split].outputs[0]: patch}
    reads: dict[tuple[int, int], Read] = {}
    for op in reversed(model.operators[:split + 1]):
        out = need.get(op.outputs[0])
        if out is None:   # not needed by this patch (cannot happen in a connected stage)
            continue
        for k in activation_inputs(model, op):
            t = op.inputs[k]
            x = T[t].shape
            rd = _read(geos[op.index], out, x[1], x[2])
            if rd.rect.h <= 0 or rd.rect.w <= 0:
                raise PatchError(f"op {op.index} ({op.name}) reads nothing for a patch (grid too fine)")
            if op.name in POOL_OPS and any(rd.pads):
                raise PatchError(f"op {op.index} ({op.name}) pools across the image border with SAME padding "
                                 "(its padding is not zero-point padding)")
            reads[(op.index, k)] = rd
            need[t] = need[t].union(rd.rect) if t in need else rd.rect
    return need, reads
