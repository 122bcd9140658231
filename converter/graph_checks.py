"""Checks of a converted int8 .tflite, and where each op came from (ONNX node / torch module).

The op table itself (what TFLM can run) is `netaug_mcu.common.tflm_ops`; the model is read with
`netaug_mcu.common.tflite_model.load`.
"""
from __future__ import annotations

import re

from ..common.tflite_model import TFLiteModel
from ..common.tflm_ops import TFLM_BUILTIN_OPS
from .errors import ConvertError

# Ops that are legal in TFLM but must not appear in our converted zoo models (each costs an extra
# activation buffer in SRAM; see converter.onnx_export).
UNWANTED_OPS = frozenset({"PAD", "PADV2", "TRANSPOSE"})


def attach_origins(model: TFLiteModel, layer_map: dict[str, str]) -> None:
    """Fill OpInfo.origin from the worker's Keras-layer -> ONNX-node map and the TFLite tensor names."""
    last_node = next(reversed(layer_map.values()), None) if layer_map else None
    for op in model.ops:
        if not op.outputs:
            continue
        found: list[str] = []
        for part in model.tensors[op.outputs[0]].name.split(";"):
            for seg in part.split("/"):
                if seg in layer_map and layer_map[seg] not in found:
                    found.append(layer_map[seg])
        if not found and op.outputs[0] in model.outputs and last_node:
            found = [last_node]   # graph outputs are renamed by the converter
        if found:
            # prefer the node that does the arithmetic (Conv/Gemm/...) over activations
            main = [f for f in found if not re.search(r"/(Clip|Relu|Identity)$", f)]
            op.origin = describe_onnx_node((main or found)[0])


def describe_onnx_node(onnx_name: str) -> str:
    """'/features/features.2/conv/conv.1/conv.1.1/Conv' -> 'features.2.conv.1.1 (Conv)'."""
    name = onnx_name[2:] if onnx_name.startswith("wa/") else onnx_name.lstrip("/")
    parts = [p for p in name.split("/") if p]
    if len(parts) < 2:
        return f"ONNX node /{'/'.join(parts)}"
    kind = parts[-1]
    path: list[str] = []
    for scope in parts[:-1]:
        if path and scope.startswith(path[-1] + "."):
            path[-1] = scope
        else:
            path.append(scope)
    return f"{'.'.join(path)} ({kind.split('_')[0]})"


def check_tflm_compatible(model: TFLiteModel, forbid: frozenset[str] = frozenset()) -> None:
    """Raise ConvertError naming the first op TFLM cannot run (or one in `forbid`)."""
    for op in model.ops:
        bad = op.name not in TFLM_BUILTIN_OPS
        if bad or op.name in forbid:
            why = "is not supported by TFLM" if bad else "is not allowed in a converted model"
            src = f", from layer {op.origin}" if op.origin else ""
            tname = model.tensors[op.outputs[0]].name if op.outputs else "?"
            raise ConvertError(f"op #{op.index} {op.name} {why} (output tensor '{tname}'{src})")


def check_int8_io(model: TFLiteModel) -> None:
    """The model must take int8 and produce int8 directly (no float QUANTIZE/DEQUANTIZE at the ends)."""
    for which in ("input", "output"):
        io = model.io(which)
        if io["dtype"] != "int8" or io["scale"] is None:
            raise ConvertError(f"model {which} is {io['dtype']}, expected a quantized int8 tensor")
    first = model.ops[0] if model.ops else None
    last = model.ops[-1] if model.ops else None
    if first is not None and first.name == "QUANTIZE":
        raise ConvertError("model starts with a QUANTIZE op (float input)")
    if last is not None and last.name == "DEQUANTIZE":
        raise ConvertError("model ends with a DEQUANTIZE op (float output)")
