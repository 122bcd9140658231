"""PyTorch -> ONNX export plus the graph surgery that keeps the int8 TFLite free of PAD/TRANSPOSE.

onnx2tf 1.29 translates an ONNX Conv with explicit `pads` into TF padding='SAME' only when the
pads are symmetric *and* the spatial size is unchanged (stride 1). A stride-2 conv whose padding
is exactly TF 'SAME' (e.g. `nn.ZeroPad2d((0, 1, 0, 1))` + conv, or pads [0,0,1,1]) still becomes
PAD + VALID conv, and a PAD costs a whole extra activation buffer on the MCU. `fold_same_padding`
therefore:
  1. folds a zero-valued constant `Pad` (spatial dims only) into the Conv that consumes it;
  2. rewrites every Conv whose pads equal TF 'SAME' padding for its input size into
     `auto_pad="SAME_UPPER"` (ONNX's name for TF SAME), which onnx2tf maps to padding='SAME'.
Pads that are *not* TF-SAME-compatible (torch's symmetric padding=1 on a stride-2 conv over an even
input) cannot be rewritten without changing the function; they stay and surface as PAD ops.
`replace_spatial_mean` turns `ReduceMean(axes=[2,3])` (torch `x.mean((2, 3))`) into
GlobalAveragePool(+Flatten), which onnx2tf emits as a single MEAN instead of TRANSPOSE + MEAN.
"""
from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

from .errors import ConvertError

# 14, not 13: at opset 13 torch exports nn.Hardswish as HardSigmoid*x, and onnx2tf turns
# HardSigmoid into min/max -> TFLite RELU_0_TO_1, which TFLM does not have. Opset 14 has HardSwish
# (-> TFLite HARD_SWISH); standalone HardSigmoid is rewritten by `rewrite_hard_sigmoid`.
OPSET = 14


def export_onnx(model, input_shape_nchw: tuple[int, ...], input_name: str = "input",
                output_name: str = "logits"):
    """Export `model` (eval mode, CPU) with the legacy TorchScript exporter; returns an onnx.ModelProto."""
    import onnx
    import torch

    model = model.eval().cpu()
    dummy = torch.zeros(*input_shape_nchw, dtype=torch.float32)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), buf, dynamo=False, opset_version=OPSET,
                              input_names=[input_name], output_names=[output_name],
                              do_constant_folding=True, export_params=True)
    except Exception as exc:  # noqa: BLE001 - any exporter failure is an unexpressible layer
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConvertError(f"ONNX export failed (a layer ONNX opset {OPSET} cannot express?): "
                           f"{type(exc).__name__}: {msg}") from exc
    return onnx.load_model_from_string(buf.getvalue())


def simplify(proto):
    """Constant-fold with onnxsim (turns the exporter's F.pad shape arithmetic into constant pads).

    onnxsim's C++ extension segfaults in a process that has already imported TensorFlow (protobuf/
    onnx symbol clash), so in that case it runs in a short subprocess instead.
    """
    import importlib.util
    import sys

    if importlib.util.find_spec("onnxsim") is None:
        return proto
    if "tensorflow" in sys.modules:
        return _simplify_subprocess(proto)
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(proto)
    except Exception:  # noqa: BLE001 - fall back to the unsimplified graph; onnx2tf simplifies too
        return proto
    return simplified if ok else proto


def _simplify_subprocess(proto):
    import os
    import subprocess
    import sys
    import tempfile

    import onnx

    code = ("import sys, onnx, onnxsim\n"
            "m, ok = onnxsim.simplify(onnx.load(sys.argv[1]))\n"
            "onnx.save(m, sys.argv[2]) if ok else sys.exit(1)\n")
    with tempfile.TemporaryDirectory(prefix="netaug-onnxsim-") as tmp:
        src, dst = os.path.join(tmp, "in.onnx"), os.path.join(tmp, "out.onnx")
        onnx.save(proto, src)
        r = subprocess.run([sys.executable, "-c", code, src, dst], capture_output=True, timeout=600)
        if r.returncode != 0 or not os.path.isfile(dst):
            return proto
        return onnx.load(dst)


def _const_value(graph, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _attr(node, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _set_attr(node, name: str, value: Any) -> None:
    import onnx

    _del_attr(node, name)
    node.attribute.append(onnx.helper.make_attribute(name, value))


def _del_attr(node, name: str) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node if name in n.input]


def _shapes(model) -> dict[str, list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [d.dim_value for d in dims]
    return out


def tf_same_pads(in_size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """(begin, end) padding of TF 'SAME' (== ONNX SAME_UPPER) along one spatial axis."""
    out = -(-in_size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - in_size, 0)
    return total // 2, total - total // 2


def fold_same_padding(model) -> dict[str, int]:
    """In-place surgery (see module doc). Returns counts {'pads_folded', 'convs_same'}."""
    graph = model.graph
    stats = {"pads_folded": 0, "convs_same": 0}
    graph_outputs = {o.name for o in graph.output}

    # 1. fold zero constant Pad -> Conv
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        if (_attr(pad, "mode", b"constant") or b"constant") not in (b"constant", "constant"):
            continue
        if len(pad.input) < 2 or pad.output[0] in graph_outputs:
            continue
        pads = _const_value(graph, pad.input[1])
        if pads is None or pads.size != 8:
            continue
        if len(pad.input) > 2 and pad.input[2]:
            cval = _const_value(graph, pad.input[2])
            if cval is None or np.any(cval != 0):
                continue
        pads = [int(v) for v in pads.reshape(-1)]
        if pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
            continue
        users = _consumers(graph, pad.output[0])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            continue
        conv = users[0]
        if (_attr(conv, "auto_pad", b"NOTSET") or b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        cp = list(_attr(conv, "pads", [0, 0, 0, 0]))
        if len(cp) != 4:
            continue
        new = [cp[0] + pads[2], cp[1] + pads[3], cp[2] + pads[6], cp[3] + pads[7]]
        _set_attr(conv, "pads", new)
        conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        stats["pads_folded"] += 1

    # 2. Conv pads == TF SAME -> auto_pad SAME_UPPER
    shapes = _shapes(model)
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        pads = _attr(conv, "pads")
        if not pads or len(pads) != 4 or not any(pads):
            continue
        if (_attr(conv, "auto_pad", b"NOTSET") or b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        xs = shapes.get(conv.input[0])
        w = shapes.get(conv.input[1])
        if w is None:
            wv = _const_value(graph, conv.input[1])
            w = list(wv.shape) if wv is not None else None
        if xs is None or w is None or len(xs) != 4 or len(w) != 4:
            continue
        k = list(_attr(conv, "kernel_shape", w[2:]))
        s = list(_attr(conv, "strides", [1, 1]))
        d = list(_attr(conv, "dilations", [1, 1]))
        same = [tf_same_pads(xs[2 + i], k[i], s[i], d[i]) for i in range(2)]
        if [same[0][0], same[1][0], same[0][1], same[1][1]] == list(pads):
            _del_attr(conv, "pads")
            _set_attr(conv, "auto_pad", "SAME_UPPER")
            stats["convs_same"] += 1
    return stats


def replace_spatial_mean(model) -> int:
    """ReduceMean over H,W of a 4-D tensor -> GlobalAveragePool (+ Flatten when keepdims=0)."""
    import onnx

    graph = model.graph
    shapes = _shapes(model)
    count = 0
    for node in [n for n in graph.node if n.op_type == "ReduceMean"]:
        xs = shapes.get(node.input[0])
        axes = _attr(node, "axes")
        if axes is None and len(node.input) > 1:
            av = _const_value(graph, node.input[1])
            axes = None if av is None else [int(a) for a in av.reshape(-1)]
        if xs is None or len(xs) != 4 or axes is None:
            continue
        if sorted(a % 4 for a in axes) != [2, 3]:
            continue
        keep = int(_attr(node, "keepdims", 1))
        idx = list(graph.node).index(node)
        out = node.output[0]
        new_nodes = []
        if keep:
            new_nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [out],
                                                   name=node.name + "/gap"))
        else:
            mid = out + "_gap"
            new_nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [mid],
                                                   name=node.name + "/gap"))
            new_nodes.append(onnx.helper.make_node("Flatten", [mid], [out], axis=1,
                                                   name=node.name + "/flatten"))
        graph.node.remove(node)
        for j, nn_ in enumerate(new_nodes):
            graph.node.insert(idx + j, nn_)
        count += 1
    return count


def rewrite_hard_sigmoid(model) -> int:
    """HardSigmoid(a, b)(x) = clip(a*x + b, 0, 1) -> Mul(6a) -> Add(6b) -> Clip(0, 6) -> Mul(1/6).

    onnx2tf maps HardSigmoid to max(0, min(1, .)) = TFLite RELU_0_TO_1 (not in TFLM); the rewrite
    gives ADD(+RELU6 fused) and MUL, both TFLM builtins. (Mul by 6a is skipped when 6a == 1.)
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    count = 0
    for node in [n for n in graph.node if n.op_type == "HardSigmoid"]:
        a = float(_attr(node, "alpha", 0.2))
        b = float(_attr(node, "beta", 0.5))
        base = (node.name or f"hardsigmoid{count}") + "/hs"
        consts = {f"{base}_scale": 6.0 * a, f"{base}_shift": 6.0 * b, f"{base}_zero": 0.0,
                  f"{base}_six": 6.0, f"{base}_sixth": 1.0 / 6.0}
        for name, v in consts.items():
            graph.initializer.append(numpy_helper.from_array(np.array(v, np.float32), name))
        x = node.input[0]
        new = []
        if abs(6.0 * a - 1.0) > 1e-7:
            new.append(onnx.helper.make_node("Mul", [x, f"{base}_scale"], [f"{base}_ax"], name=f"{base}/Mul0"))
            x = f"{base}_ax"
        new.append(onnx.helper.make_node("Add", [x, f"{base}_shift"], [f"{base}_add"], name=f"{base}/Add"))
        new.append(onnx.helper.make_node("Clip", [f"{base}_add", f"{base}_zero", f"{base}_six"], [f"{base}_clip"],
                                         name=f"{base}/Clip"))
        new.append(onnx.helper.make_node("Mul", [f"{base}_clip", f"{base}_sixth"], [node.output[0]],
                                         name=f"{base}/Mul"))
        idx = list(graph.node).index(node)
        graph.node.remove(node)
        for j, n in enumerate(new):
            graph.node.insert(idx + j, n)
        count += 1
    return count


def gemm_to_conv1x1(model) -> int:
    """Classifier `Flatten([N,C,1,1]) -> Gemm(transB=1)` -> `Conv 1x1 -> Flatten`.

    TFLM's int8 FULLY_CONNECTED kernel is not bit-exact with tf.lite's reference kernel (1 LSB on
    ~0.7 % of Fashion-MNIST inputs for a trained mbv2-tiny, per-channel or per-tensor weights),
    while CONV_2D is. A 1x1 convolution on the pooled 1x1 map computes the same thing.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    shapes = _shapes(model)
    inits = {i.name: i for i in graph.initializer}
    count = 0
    for gemm in [n for n in graph.node if n.op_type == "Gemm"]:
        if int(_attr(gemm, "transA", 0)) or not int(_attr(gemm, "transB", 0)):
            continue
        if float(_attr(gemm, "alpha", 1.0)) != 1.0 or float(_attr(gemm, "beta", 1.0)) != 1.0:
            continue
        flat = next((n for n in graph.node if gemm.input[0] in n.output), None)
        if flat is None or flat.op_type not in ("Flatten", "Reshape"):
            continue
        x4 = flat.input[0]
        xs = shapes.get(x4)
        if xs is None or len(xs) != 4 or xs[2:] != [1, 1]:
            continue
        if gemm.input[1] not in inits or (len(gemm.input) > 2 and gemm.input[2] and gemm.input[2] not in inits):
            continue
        w = numpy_helper.to_array(inits[gemm.input[1]])
        if w.ndim != 2 or w.shape[1] != xs[1]:
            continue
        base = gemm.name or f"gemm{count}"
        wname = f"{base}/conv_weight"
        graph.initializer.append(numpy_helper.from_array(w.reshape(w.shape[0], w.shape[1], 1, 1).astype(w.dtype),
                                                         wname))
        ins = [x4, wname] + ([gemm.input[2]] if len(gemm.input) > 2 and gemm.input[2] else [])
        y4 = f"{base}/conv_out"
        conv = onnx.helper.make_node("Conv", ins, [y4], name=f"{base}/Conv", kernel_shape=[1, 1])
        out_flat = onnx.helper.make_node("Flatten", [y4], [gemm.output[0]], name=f"{base}/Flatten", axis=1)
        idx = list(graph.node).index(gemm)
        graph.node.remove(gemm)
        graph.node.insert(idx, conv)
        graph.node.insert(idx + 1, out_flat)
        if not _consumers(graph, flat.output[0]):
            graph.node.remove(flat)
        count += 1
    return count


def prepare_onnx(model, input_shape_nchw: tuple[int, ...], input_name: str = "input"):
    """Export + surgery + check. Returns (onnx.ModelProto, stats dict)."""
    import onnx

    raw = export_onnx(model, input_shape_nchw, input_name=input_name)
    proto = simplify(raw)
    stats = fold_same_padding(proto)
    stats["onnxsim"] = proto is not raw
    stats["means_replaced"] = replace_spatial_mean(proto)
    stats["hard_sigmoids_rewritten"] = rewrite_hard_sigmoid(proto)
    stats["fc_to_conv1x1"] = gemm_to_conv1x1(proto)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001
        raise ConvertError(f"exported ONNX graph is invalid: {exc}") from exc
    return proto, stats


def onnx_reference(proto, x_nchw: np.ndarray) -> np.ndarray:
    """Run the (surgery-modified) ONNX graph with onnxruntime (used by tests to prove surgery is exact)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x_nchw.astype(np.float32)})[0]
