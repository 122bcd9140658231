"""Per-op kernel facts: what each kernel allocates in Prepare (persistent tail) and which scratch
buffers it requests (head), for the reference kernels (host) and CMSIS-NN (cortex-m7)."""
from __future__ import annotations

from ...common.tflite_model import TFLiteModel
from .facts import align_up as _up


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


def _conv_scratch(model: TFLiteModel, op, fd: tuple[int, ...]) -> int:
    """CMSIS-NN int8 CONV_2D: 1x1 (any stride) needs no buffer with GCC (the fast path's 4*Cin is Arm
    Compiler 6 only); general and 1xN: im2col of two columns in int16 = 4*ceil4(kh*kw*Cin)."""
    x = _dims(model, _in(op, 0))
    if len(x) != 4 or model.tensors[_in(op, 0)].type != 9:
        return 0
    o, out = op.options, _dims(model, op.outputs[0])
    kh, kw, cin = fd[1], fd[2], fd[3]
    dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
    ph = _out_pad(x[1], kh, o.get("stride_h", 1), dh, out[1], o.get("padding", 1)) if len(out) == 4 else 0
    pw = _out_pad(x[2], kw, o.get("stride_w", 1), dw, out[2], o.get("padding", 1)) if len(out) == 4 else 0
    is_1x1 = ph == 0 and pw == 0 and kh == 1 and kw == 1 and dh == 1 and dw == 1 and x[3] == cin
    return 0 if is_1x1 else 4 * _up(kh * kw * cin, 4)


def _depthwise_scratch(model: TFLiteModel, op, fd: tuple[int, ...], dsp: bool) -> int:
    """CMSIS-NN int8 DEPTHWISE_CONV_2D: the 3x3 fast path (pad <= 1) needs none; with DSP the generic
    path buffers Cin*kh*kw int16 values."""
    x, out = _dims(model, _in(op, 0)), _dims(model, op.outputs[0])
    if len(x) != 4 or len(out) != 4 or model.tensors[_in(op, 0)].type != 9:
        return 0
    o = op.options
    kh, kw = fd[1], fd[2]
    cin, cout = x[3], out[3]
    dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
    ph = _out_pad(x[1], kh, o.get("stride_h", 1), dh, out[1], o.get("padding", 1))
    pw = _out_pad(x[2], kw, o.get("stride_w", 1), dw, out[2], o.get("padding", 1))
    if not (cin == cout and x[0] == 1 and dh == 1 and dw == 1):
        return 0
    if kh == 3 and kw == 3 and ph <= 1 and pw <= 1:
        return 0
    return cin * kh * kw * 2 if dsp else 0


def _fully_connected(model: TFLiteModel, op, cmsis: bool) -> tuple[list[int], list[int]]:
    T = model.tensors
    f = _in(op, 1)
    persist = [4 * T[f].scales, 4 * T[f].scales] if f >= 0 and T[f].scales > 1 else []
    scratch = []
    if cmsis and f >= 0 and len(_dims(model, op.outputs[0])) > 2:
        fd = _dims(model, f)
        accum = fd[-1] if fd else 0
        if accum % 4 == 0 and T[f].scales <= 1:
            scratch.append(2 * 4 * fd[0])
    return persist, scratch


def _reduce(model: TFLiteModel, op) -> list[int]:
    T = model.tensors
    x = _dims(model, _in(op, 0))
    axis = _in(op, 1)
    n_axis = T[axis].elements if axis >= 0 else 0
    scratch = [4 * T[op.outputs[0]].elements] if op.name in ("MEAN", "SUM") and T[_in(op, 0)].type in (9, 7) else []
    return scratch + [4 * len(x), 4 * n_axis]


def kernel_allocations(model: TFLiteModel, op, facts: dict) -> tuple[list[int], list[int]]:
    """(persistent sizes allocated in Prepare, scratch request sizes) for one op on a target."""
    name = op.name
    cmsis = facts["kernels"] == "cmsis_nn"
    dsp = cmsis  # Cortex-M7 has the DSP extension, no MVE
    T = model.tensors
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
        fd = _dims(model, _in(op, 1))
        if len(fd) != 4:
            return [], []
        ch = fd[3] if name == "DEPTHWISE_CONV_2D" else fd[0]   # per-channel multiplier + shift
        scratch = 0
        if cmsis and name == "CONV_2D":
            scratch = _conv_scratch(model, op, fd)
        elif cmsis and name == "DEPTHWISE_CONV_2D":
            scratch = _depthwise_scratch(model, op, fd, dsp)
        return [4 * ch, 4 * ch], [scratch] if scratch > 0 else []
    if name == "FULLY_CONNECTED":
        return _fully_connected(model, op, cmsis)
    if name == "AVERAGE_POOL_2D":
        x = _dims(model, _in(op, 0))
        return [], [4 * x[-1]] if cmsis and dsp and x and T[_in(op, 0)].type == 9 else []
    if name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"):
        return [], _reduce(model, op)
    if name == "SOFTMAX" and T[_in(op, 0)].type == 7:
        return [2 * 513, 2 * 513], []
    return [], []
