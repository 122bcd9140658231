"""What TFLM can run, and a light .tflite summary (ops, MACs, weight bytes, I/O quantization).

Numpy + the `tflite` flatbuffer package only (no TensorFlow): usable by firmware/hil tooling too.

`TFLM_BUILTIN_OPS` is the set of builtin operators registered by TFLM's op resolver in the
tflite-micro release this project pins (extracted from the `Register_*` kernels of the
`tflite_micro` wheel; custom-only ops such as ETHOSU/CIRCULAR_BUFFER/DETECTION_POSTPROCESS are not
builtins and are excluded). Anything else in a converted model is an error naming the op.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .errors import ConvertError

TFLM_BUILTIN_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTHWISE_CONV_2D
DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL
FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF
L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR
LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2
PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND
SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH
TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())

# Ops that are legal in TFLM but must not appear in our converted zoo models (each costs an extra
# activation buffer in SRAM; see converter.onnx_export).
UNWANTED_OPS = frozenset({"PAD", "PADV2", "TRANSPOSE"})

_DTYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8",
                6: "bool", 10: "float64"}
_NP_DTYPES = {"float32": np.float32, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
              "int32": np.int32, "int64": np.int64}


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    scale: list[float]
    zero_point: list[int]
    nbytes: int          # bytes of its constant buffer (0 for activations)


@dataclass
class OpInfo:
    index: int
    name: str            # builtin name, e.g. CONV_2D
    inputs: list[int]
    outputs: list[int]
    macs: int = 0
    origin: str = ""     # ONNX node / torch module it came from, when known


@dataclass
class ModelSummary:
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]
    file_bytes: int
    extra: dict = field(default_factory=dict)

    @property
    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(op.name for op in self.ops).items()))

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def io(self, which: str) -> dict:
        t = self.tensors[(self.inputs if which == "input" else self.outputs)[0]]
        return {"name": t.name, "shape": t.shape, "dtype": t.dtype,
                "scale": t.scale[0] if t.scale else None,
                "zero_point": t.zero_point[0] if t.zero_point else None}


def summarize(model_bytes: bytes) -> ModelSummary:
    """Parse a .tflite flatbuffer (first subgraph)."""
    import tflite

    from .tflite_model import load as checked_load

    # The raw `tflite` accessors trust every offset; the bounds-checked parser turns a truncated or
    # corrupted file into a one-line TFLiteError (exit 2) before they touch it.
    checked_load(model_bytes)

    try:
        model = tflite.Model.GetRootAsModel(model_bytes, 0)
        if model.SubgraphsLength() < 1:
            raise ValueError("no subgraph")
        sg = model.Subgraphs(0)
    except Exception as exc:  # noqa: BLE001
        raise ConvertError(f"not a valid .tflite file ({exc})") from exc
    op_names = _enum_names(tflite.BuiltinOperator)
    tensors: list[TensorInfo] = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        q = t.Quantization()
        scale = [float(v) for v in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else []
        zp = [int(v) for v in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else []
        buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        nbytes = buf.DataLength() if buf is not None else 0
        tensors.append(TensorInfo(i, (t.Name() or b"").decode(errors="replace"),
                                  [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [],
                                  _DTYPE_NAMES.get(t.Type(), str(t.Type())), scale, zp, int(nbytes or 0)))
    ops: list[OpInfo] = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = op_names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (oc.CustomCode() or b"?").decode(errors="replace")
        ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        ops.append(OpInfo(i, name, ins, outs, _macs(name, ins, outs, tensors)))
    return ModelSummary(tensors, ops, [int(v) for v in sg.InputsAsNumpy()],
                        [int(v) for v in sg.OutputsAsNumpy()], len(model_bytes))


def _macs(name: str, ins: list[int], outs: list[int], tensors: list[TensorInfo]) -> int:
    try:
        out = tensors[outs[0]].shape
        if name == "CONV_2D":
            w = tensors[ins[1]].shape  # [O, kh, kw, I]
            return int(np.prod(out)) * w[1] * w[2] * w[3]
        if name == "DEPTHWISE_CONV_2D":
            w = tensors[ins[1]].shape  # [1, kh, kw, C*M]
            return int(np.prod(out)) * w[1] * w[2]
        if name == "FULLY_CONNECTED":
            w = tensors[ins[1]].shape  # [O, I]
            batch = int(np.prod(out)) // max(w[0], 1)
            return batch * w[0] * w[1]
        if name == "TRANSPOSE_CONV":
            w = tensors[ins[1]].shape
            x = tensors[ins[2]].shape
            return int(np.prod(x)) * w[0] * w[1] * w[2]
    except (IndexError, ValueError):
        return 0
    return 0


def attach_origins(summary: ModelSummary, layer_map: dict[str, str]) -> None:
    """Fill OpInfo.origin from the worker's Keras-layer -> ONNX-node map and the TFLite tensor names."""
    last_node = next(reversed(layer_map.values()), None) if layer_map else None
    for op in summary.ops:
        if not op.outputs:
            continue
        found: list[str] = []
        for part in summary.tensors[op.outputs[0]].name.split(";"):
            for seg in part.split("/"):
                if seg in layer_map and layer_map[seg] not in found:
                    found.append(layer_map[seg])
        if not found and op.outputs[0] in summary.outputs and last_node:
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


def check_tflm_compatible(summary: ModelSummary, forbid: frozenset[str] = frozenset()) -> None:
    """Raise ConvertError naming the first op TFLM cannot run (or one in `forbid`)."""
    for op in summary.ops:
        bad = op.name not in TFLM_BUILTIN_OPS
        if bad or op.name in forbid:
            why = "is not supported by TFLM" if bad else "is not allowed in a converted model"
            src = f", from layer {op.origin}" if op.origin else ""
            tname = summary.tensors[op.outputs[0]].name if op.outputs else "?"
            raise ConvertError(f"op #{op.index} {op.name} {why} (output tensor '{tname}'{src})")


def check_int8_io(summary: ModelSummary) -> None:
    """The model must take int8 and produce int8 directly (no float QUANTIZE/DEQUANTIZE at the ends)."""
    for which in ("input", "output"):
        io = summary.io(which)
        if io["dtype"] != "int8" or io["scale"] is None:
            raise ConvertError(f"model {which} is {io['dtype']}, expected a quantized int8 tensor")
    first = summary.ops[0] if summary.ops else None
    last = summary.ops[-1] if summary.ops else None
    if first is not None and first.name == "QUANTIZE":
        raise ConvertError("model starts with a QUANTIZE op (float input)")
    if last is not None and last.name == "DEQUANTIZE":
        raise ConvertError("model ends with a DEQUANTIZE op (float output)")


def np_dtype(name: str):
    return _NP_DTYPES[name]
