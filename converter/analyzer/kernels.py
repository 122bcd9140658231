"""Per-op kernel facts: what each kernel allocates in Prepare (persistent tail) and which scratch
buffers it requests (head), for the reference kernels (host) and CMSIS-NN on its DSP (cortex-m4/m7/m33),
MVE (cortex-m55) and plain-C code paths (targets.json `cmsis_nn_path`)."""
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


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero; Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def _ceil_to(x: int, m: int) -> int:
    return (x + m - 1) // m * m


# CMSIS-NN code paths (arm_nn_math_types.h): "dsp" = ARM_MATH_DSP (M4, M7, M33), "mve" = ARM_MATH_MVEI
# (M55, M85), "c" = neither (M0+/M3, M33 without DSP). Figures for GCC: the Arm Compiler 6 only
# branches (1x1 fast buffer, the one-input-channel depthwise threshold 8) do not apply.
CMSIS_NN_PATHS = ("dsp", "mve", "c")
DW_ONE_IN_CH_THRESHOLD = 1   # CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD (GCC)
CH_IN_BLOCK_MVE = 124


def conv_s8_buffer_size(path: str, in_hwc: tuple[int, int, int], k_hw: tuple[int, int], out_w: int,
                        stride: tuple[int, int], pad: tuple[int, int], dil: tuple[int, int], filt_c: int) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size (CMSIS-NN 4ab83cc3) for one code path.
    in_hwc = input h, w, c; k_hw = filter h, w; stride/pad/dil = (h, w); filt_c = filter input channels."""
    (ih, iw, ic), (kh, kw) = in_hwc, k_hw
    if pad == (0, 0) and (kh, kw) == (1, 1) and dil == (1, 1) and ic == filt_c:
        return 0      # 1x1: the fast path's 2*Cin int16 buffer is Arm Compiler 6 only; non-unit stride: none
    is_1_x_n = ih == 1 and dil[1] == 1 and kh == 1 and (stride[1] * ic) % 4 == 0 and ic == filt_c
    if path == "mve":
        if is_1_x_n:
            n = _conv_1_x_n_mve(iw, ic, kw, out_w, stride[1], pad[1])
            if n is not None:
                return n
        return 4 * ((ic * kw * kh + 15) // 16) * 16    # 4 im2col columns of whole 16-lane Q registers
    return 2 * _ceil_to(kw * kh * ic, 4) * 2           # DSP and plain C: 2 im2col columns in int16


def _conv_1_x_n_mve(iw: int, ic: int, kw: int, out_w: int, stride_w: int, pad_w: int) -> int | None:
    """arm_convolve_1_x_n_s8_get_buffer_size_mve; None = falls back to the general MVE size."""
    total_pad = (out_w - 1) * stride_w + kw - iw
    asym = _cmod(total_pad, 2)
    right = max(1, _cdiv(pad_w + asym + stride_w - 1, stride_w)) if pad_w + asym != 0 else 0
    left = max(1, _cdiv(pad_w + stride_w - 1, stride_w)) if pad_w != 0 else 0
    if right + max(out_w - (right + left), 0) + left != out_w:
        return None
    pad_left = pad_w * ic
    pad_right = right * ic if asym else pad_left
    return max(kw * ic + pad_left, kw * ic - ic + pad_right)


def depthwise_s8_buffer_size(path: str, n: int, in_c: int, out_c: int, k_hw: tuple[int, int],
                             pad: tuple[int, int], dil: tuple[int, int], conv_args: dict) -> int:
    """arm_depthwise_conv_wrapper_s8_get_buffer_size for one code path (TFLM's Prepare passes
    filter_dims.c = output channels). conv_args: the conv_s8_buffer_size arguments of the MVE
    one-input-channel case (depthwise run as a regular convolution)."""
    kh, kw = k_hw
    if path == "mve" and in_c == 1 and out_c > DW_ONE_IN_CH_THRESHOLD:
        return conv_s8_buffer_size("mve", filt_c=1, **conv_args) + out_c * kh * kw
    if not (in_c == out_c and n == 1 and dil == (1, 1)):
        return 0
    if path == "mve":
        return 4 * CH_IN_BLOCK_MVE * kw * kh
    if kh == 3 and kw == 3 and pad[0] <= 1 and pad[1] <= 1:
        return 0      # the 3x3 kernel with padding <= 1 needs no buffer
    return in_c * kw * kh * 2 if path == "dsp" else 0


def _conv_geometry(model: TFLiteModel, op, fd: tuple[int, ...]) -> dict | None:
    """Input/filter/output geometry and TFLM's padding (ComputePaddingHeightWidth) of a 4-D int8 conv."""
    x, out = _dims(model, _in(op, 0)), _dims(model, op.outputs[0])
    if len(x) != 4 or len(out) != 4 or model.tensors[_in(op, 0)].type != 9:
        return None
    o = op.options
    kh, kw = fd[1], fd[2]
    dh, dw = o.get("dilation_h", 1), o.get("dilation_w", 1)
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    ph = _out_pad(x[1], kh, sh, dh, out[1], o.get("padding", 1))
    pw = _out_pad(x[2], kw, sw, dw, out[2], o.get("padding", 1))
    return {"x": x, "out": out, "conv": {"in_hwc": (x[1], x[2], x[3]), "k_hw": (kh, kw), "out_w": out[2],
                                         "stride": (sh, sw), "pad": (ph, pw), "dil": (dh, dw)}}


def _conv_scratch(model: TFLiteModel, op, fd: tuple[int, ...], path: str) -> int:
    """CMSIS-NN int8 CONV_2D scratch (Prepare: arm_convolve_wrapper_s8_get_buffer_size)."""
    g = _conv_geometry(model, op, fd)
    return 0 if g is None else conv_s8_buffer_size(path, filt_c=fd[3], **g["conv"])


def _depthwise_scratch(model: TFLiteModel, op, fd: tuple[int, ...], path: str) -> int:
    """CMSIS-NN int8 DEPTHWISE_CONV_2D scratch (Prepare: arm_depthwise_conv_wrapper_s8_get_buffer_size)."""
    g = _conv_geometry(model, op, fd)
    if g is None:
        return 0
    c = g["conv"]
    return depthwise_s8_buffer_size(path, g["x"][0], g["x"][3], g["out"][3], c["k_hw"], c["pad"], c["dil"], c)


def _fully_connected(model: TFLiteModel, op, path: str | None) -> tuple[list[int], list[int]]:
    """CMSIS-NN FULLY_CONNECTED Prepare (path None = reference kernel): per-channel arrays; with a
    conv-1x1-shaped int8 FC and per-tensor weights, a 2*4*Cout scratch (fake per-channel); otherwise
    on MVE the kernel-sum buffer (4*Cout), persistent (KERNELS_OPTIMIZED_FOR_SPEED) when weights and
    bias are constant, else scratch."""
    T = model.tensors
    f = _in(op, 1)
    persist = [4 * T[f].scales, 4 * T[f].scales] if f >= 0 and T[f].scales > 1 else []
    scratch = []
    fd = _dims(model, f) if f >= 0 else ()
    if path is None or not fd or T[_in(op, 0)].type != 9 or T[f].type != 9:
        return persist, scratch
    out = _dims(model, op.outputs[0])
    if len(out) > 2 and fd[-1] % 4 == 0:
        if T[f].scales <= 1:
            scratch.append(2 * 4 * out[-1])
    elif path == "mve":
        b = _in(op, 2)
        if T[f].has_data and (b < 0 or T[b].has_data):
            persist.append(4 * out[-1])
        else:
            scratch.append(4 * out[-1])
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
    path = facts.get("cmsis_nn_path", "dsp") if cmsis else None
    T = model.tensors
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
        fd = _dims(model, _in(op, 1))
        if len(fd) != 4:
            return [], []
        ch = fd[3] if name == "DEPTHWISE_CONV_2D" else fd[0]   # per-channel multiplier + shift
        scratch = 0
        if cmsis and name == "CONV_2D":
            scratch = _conv_scratch(model, op, fd, path)
        elif cmsis and name == "DEPTHWISE_CONV_2D":
            scratch = _depthwise_scratch(model, op, fd, path)
        return [4 * ch, 4 * ch], [scratch] if scratch > 0 else []
    if name == "FULLY_CONNECTED":
        return _fully_connected(model, op, path)
    if name == "AVERAGE_POOL_2D":
        x = _dims(model, _in(op, 0))
        # arm_avgpool_s8_get_buffer_size: 4*C on the DSP path, none on MVE and plain C
        return [], [4 * x[-1]] if path == "dsp" and x and T[_in(op, 0)].type == 9 else []
    if name in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"):
        return [], _reduce(model, op)
    if name == "SOFTMAX" and T[_in(op, 0)].type == 7:
        return [2 * 513, 2 * 513], []
    return [], []
