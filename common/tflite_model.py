"""The one .tflite reader of netaug-mcu (PyPI `tflite` flatbuffer package + numpy; no TensorFlow).

`load(path_or_bytes)` returns a `TFLiteModel` with plain-Python tensors (shape, type, quantization,
constant data size) and operators (inputs, outputs, builtin options, MACs), or raises `TFLiteError`
(exit_code 2) with a one-line message for anything that is not a well-formed TFLite model:
truncated or random bytes, another file format, offsets or vector lengths that point outside the
file, unknown types. The analyzer, the converter's report, the firmware generator and the HIL host
all read models through it.

The flatbuffers runtime reads at whatever offsets the file contains, so garbage can raise
any exception type (struct.error, IndexError, OverflowError, UnicodeDecodeError, ...) or
announce vectors with billions of elements. Every vector is bounds-checked before use and
every access runs inside a guard that turns a failure into `TFLiteError`.
"""
from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from collections import Counter
from pathlib import Path

from .errors import UserError


class TFLiteError(UserError):
    """Invalid or unsupported .tflite input (one-line message, exit code 2)."""


# TensorType -> (name, bytes per element); 0 bytes = packed / not a fixed size.
TENSOR_TYPES = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
    5: ("string", 0), 6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1),
    10: ("float64", 8), 11: ("complex128", 16), 12: ("uint64", 8), 13: ("resource", 0),
    14: ("variant", 0), 15: ("uint32", 4), 16: ("uint16", 2), 17: ("int4", 0), 18: ("bfloat16", 2),
}

MAX_ELEMENTS = 1 << 31  # a tensor this large cannot be planned in any MCU (or host) arena


def _builtin_names() -> dict[int, str]:
    import tflite
    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


_OP_NAMES: dict[int, str] | None = None


def op_name(code: int) -> str:
    global _OP_NAMES
    if _OP_NAMES is None:
        _OP_NAMES = _builtin_names()
    return _OP_NAMES.get(code, f"BUILTIN_{code}")


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    type: int
    buffer: int
    has_data: bool          # constant (weights) stored in the flatbuffer
    data_bytes: int         # length of that data
    is_variable: bool
    scale: list[float]      # quantization scales (one per channel when per-channel), [] if none
    zero_point: list[int]
    quantized_dimension: int
    dtype: str = ""         # type name (int8, int32, float32, ...)

    def __post_init__(self):
        if not self.dtype:
            self.dtype = TENSOR_TYPES.get(self.type, (f"type{self.type}", 0))[0]

    @property
    def scales(self) -> int:
        """Number of quantization scales (channels), 0 if not quantized."""
        return len(self.scale)

    @property
    def zero_points(self) -> int:
        return len(self.zero_point)

    @property
    def nbytes(self) -> int:
        """Bytes of its constant buffer (0 for activations)."""
        return self.data_bytes

    @property
    def elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(int(d), 0)
        return n

    @property
    def bytes(self) -> int:
        """TFLM BytesRequiredForTensor: elements x type size (int4 rounds up to bytes)."""
        if self.type == 17:
            return (self.elements + 1) // 2
        return self.elements * TENSOR_TYPES.get(self.type, ("", 0))[1]


@dataclass
class Operator:
    index: int
    opcode_index: int
    code: int               # builtin operator code
    name: str               # builtin operator name (or custom code)
    inputs: list[int]
    outputs: list[int]
    intermediates: list[int]
    options: dict = field(default_factory=dict)
    has_custom_options: bool = False
    macs: int = 0           # multiply-accumulates of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / TRANSPOSE_CONV
    origin: str = ""        # the ONNX node / torch module it came from, when the converter knows it


@dataclass
class IOTensor:
    """A graph input/output: what a host needs to quantize inputs and read outputs."""
    name: str
    shape: list[int]
    dtype: str
    scale: float | None
    zero_point: int | None
    nbytes: int


@dataclass
class TFLiteModel:
    data: bytes
    version: int
    description: str
    n_subgraphs: int
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    opcodes: list[tuple[int, str]]   # (builtin code, custom code)
    metadata: dict[str, bytes]
    weight_bytes: int                # sum of constant buffer bytes referenced by tensors

    @property
    def file_bytes(self) -> int:
        return len(self.data)

    @property
    def ops(self) -> list[Operator]:
        return self.operators

    @property
    def op_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(op.name for op in self.operators).items()))

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.operators)

    @property
    def tensor_data_bytes(self) -> int:
        """Sum of the constant data of every tensor (a shared buffer counts once per tensor)."""
        return sum(t.data_bytes for t in self.tensors)

    def io_tensor(self, which: str, k: int = 0) -> "IOTensor":
        """Input or output `k` as the host sees it on the wire."""
        t = self.tensors[(self.inputs if which == "input" else self.outputs)[k]]
        return IOTensor(t.name, list(t.shape), t.dtype, t.scale[0] if t.scale else None,
                        t.zero_point[0] if t.zero_point else None, t.bytes)

    def io(self, which: str, k: int = 0) -> dict:
        """Name, shape, dtype and (first) scale/zero point of input or output `k`."""
        d = asdict(self.io_tensor(which, k))
        d.pop("nbytes")
        return d

    def producers(self) -> dict[int, int]:
        prod = {}
        for op in self.operators:
            for t in op.outputs:
                if t >= 0:
                    prod.setdefault(t, op.index)
        return prod


class _Checker:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.n = len(buf)

    def vec(self, length: int, elem: int, what: str) -> int:
        if length < 0 or length * max(elem, 1) > self.n:
            raise TFLiteError(f"corrupt TFLite flatbuffer: {what} vector length {length} exceeds the file size")
        return length


def _text(raw: bytes | None, default: str = "") -> str:
    """A flatbuffer string as printable text: a corrupt file's names end up in one-line error messages."""
    if not raw:
        return default
    return "".join(c if c.isprintable() else "?" for c in raw.decode("utf-8", "replace"))


def _read_options(op, code: int) -> dict:
    """The builtin options the analyzer needs (strides, padding, filter sizes, ...)."""
    import tflite
    t = op.BuiltinOptionsType()
    tab = op.BuiltinOptions()
    if tab is None or t == 0:
        return {}
    B = tflite.BuiltinOptions
    o: dict = {}
    if t == B.Conv2DOptions:
        x = tflite.Conv2DOptions(); x.Init(tab.Bytes, tab.Pos)
        o = dict(padding=x.Padding(), stride_w=x.StrideW(), stride_h=x.StrideH(),
                 dilation_w=x.DilationWFactor(), dilation_h=x.DilationHFactor(), activation=x.FusedActivationFunction())
    elif t == B.DepthwiseConv2DOptions:
        x = tflite.DepthwiseConv2DOptions(); x.Init(tab.Bytes, tab.Pos)
        o = dict(padding=x.Padding(), stride_w=x.StrideW(), stride_h=x.StrideH(), depth_multiplier=x.DepthMultiplier(),
                 dilation_w=x.DilationWFactor(), dilation_h=x.DilationHFactor(), activation=x.FusedActivationFunction())
    elif t == B.Pool2DOptions:
        x = tflite.Pool2DOptions(); x.Init(tab.Bytes, tab.Pos)
        o = dict(padding=x.Padding(), stride_w=x.StrideW(), stride_h=x.StrideH(), filter_w=x.FilterWidth(),
                 filter_h=x.FilterHeight(), activation=x.FusedActivationFunction())
    elif t == B.FullyConnectedOptions:
        x = tflite.FullyConnectedOptions(); x.Init(tab.Bytes, tab.Pos)
        o = dict(keep_num_dims=bool(x.KeepNumDims()), activation=x.FusedActivationFunction())
    elif t == B.ReducerOptions:
        x = tflite.ReducerOptions(); x.Init(tab.Bytes, tab.Pos)
        o = dict(keep_dims=bool(x.KeepDims()))
    return o


def _parse(buf: bytes) -> TFLiteModel:
    import tflite
    if len(buf) < 8:
        raise TFLiteError(f"not a TFLite model: only {len(buf)} bytes")
    if buf[4:8] != b"TFL3":
        hint = ""
        if buf[:2] == b"PK":
            hint = " (this looks like a zip archive, e.g. a PyTorch checkpoint)"
        elif buf[:1] == b"\x08":
            hint = " (this looks like a protobuf, e.g. an ONNX model: convert it first)"
        raise TFLiteError(f"not a TFLite model: missing the 'TFL3' flatbuffer identifier{hint}")
    root = struct.unpack_from("<I", buf, 0)[0]
    if root + 4 > len(buf):
        raise TFLiteError("corrupt TFLite flatbuffer: root table offset points past the end of the file")
    ck = _Checker(buf)
    m = tflite.Model.GetRootAsModel(buf, 0)
    version = m.Version()
    n_sub = ck.vec(m.SubgraphsLength(), 4, "subgraphs")
    if n_sub == 0:
        raise TFLiteError("TFLite model has no subgraph")
    n_codes = ck.vec(m.OperatorCodesLength(), 4, "operator_codes")
    opcodes = []
    for i in range(n_codes):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        cc = oc.CustomCode()
        opcodes.append((code, _text(cc)))
    n_buf = ck.vec(m.BuffersLength(), 4, "buffers")
    buffer_len: dict[int, int] = {}

    def buf_bytes(i: int) -> int:
        if i not in buffer_len:
            b = m.Buffers(i)
            n = 0
            if b is not None:
                n = ck.vec(b.DataLength(), 1, "buffer data")
                if n == 0 and b.Offset() > 1:  # data stored outside the flatbuffer (large models)
                    n = int(b.Size())
            buffer_len[i] = n
        return buffer_len[i]

    sg = m.Subgraphs(0)
    n_t = ck.vec(sg.TensorsLength(), 4, "tensors")
    tensors: list[Tensor] = []
    for i in range(n_t):
        t = sg.Tensors(i)
        shape = tuple(int(t.Shape(j)) for j in range(ck.vec(t.ShapeLength(), 4, "shape")))
        sig = None
        if not t.ShapeSignatureIsNone():
            sig = tuple(int(t.ShapeSignature(j)) for j in range(ck.vec(t.ShapeSignatureLength(), 4, "shape_signature")))
        bidx = int(t.Buffer())
        if bidx < 0 or bidx >= max(n_buf, 1) and bidx != 0:
            raise TFLiteError(f"corrupt TFLite flatbuffer: tensor {i} refers to buffer {bidx} of {n_buf}")
        nbytes = buf_bytes(bidx) if 0 <= bidx < n_buf else 0
        q = t.Quantization()
        scales: list[float] = []
        zps: list[int] = []
        qd = 0
        if q is not None:
            if ck.vec(q.ScaleLength(), 4, "quantization scale"):
                scales = [float(v) for v in q.ScaleAsNumpy()]
            if ck.vec(q.ZeroPointLength(), 8, "quantization zero_point"):
                zps = [int(v) for v in q.ZeroPointAsNumpy()]
            qd = int(q.QuantizedDimension())
        name = t.Name()
        tensors.append(Tensor(
            index=i, name=_text(name, f"t{i}"), shape=shape, shape_signature=sig,
            type=int(t.Type()), buffer=bidx, has_data=nbytes > 0, data_bytes=nbytes,
            is_variable=bool(t.IsVariable()), scale=scales, zero_point=zps, quantized_dimension=qd))

    def idx_list(getlen, get, what):
        out = []
        for j in range(ck.vec(getlen(), 4, what)):
            v = int(get(j))
            if v < -1 or v >= n_t:
                raise TFLiteError(f"corrupt TFLite flatbuffer: {what} refers to tensor {v} of {n_t}")
            out.append(v)
        return out

    inputs = idx_list(sg.InputsLength, sg.Inputs, "subgraph inputs")
    outputs = idx_list(sg.OutputsLength, sg.Outputs, "subgraph outputs")
    ops: list[Operator] = []
    for i in range(ck.vec(sg.OperatorsLength(), 4, "operators")):
        op = sg.Operators(i)
        oi = int(op.OpcodeIndex())
        if oi < 0 or oi >= n_codes:
            raise TFLiteError(f"corrupt TFLite flatbuffer: operator {i} uses opcode {oi} of {n_codes}")
        code, custom = opcodes[oi]
        ins = idx_list(op.InputsLength, op.Inputs, f"operator {i} inputs")
        outs = idx_list(op.OutputsLength, op.Outputs, f"operator {i} outputs")
        inter = idx_list(op.IntermediatesLength, op.Intermediates, f"operator {i} intermediates")
        name = op_name(code)
        if code == 32:
            name = "CUSTOM:" + (custom or "?")
        ops.append(Operator(index=i, opcode_index=oi, code=code, name=name, inputs=ins, outputs=outs,
                            intermediates=inter, options=_read_options(op, code),
                            has_custom_options=not op.CustomOptionsIsNone(),
                            macs=_macs(name, ins, outs, tensors)))
    metadata: dict[str, bytes] = {}
    for i in range(ck.vec(m.MetadataLength(), 4, "metadata")):
        md = m.Metadata(i)
        nm = md.Name()
        bi = int(md.Buffer())
        if nm and 0 <= bi < n_buf:
            b = m.Buffers(bi)
            n = ck.vec(b.DataLength(), 1, "metadata buffer") if b is not None else 0
            metadata[_text(nm)] = b.DataAsNumpy().tobytes() if n else b""
    weight_bytes = sum(buf_bytes(b) for b in {t.buffer for t in tensors if t.has_data})
    desc = m.Description()
    return TFLiteModel(data=buf, version=int(version), description=_text(desc),
                       n_subgraphs=n_sub, tensors=tensors, operators=ops, inputs=inputs, outputs=outputs,
                       opcodes=opcodes, metadata=metadata, weight_bytes=weight_bytes)


def _macs(name: str, ins: list[int], outs: list[int], tensors: list[Tensor]) -> int:
    try:
        out = tensors[outs[0]].shape
        n_out = 1
        for d in out:
            n_out *= int(d)
        if name == "CONV_2D":
            w = tensors[ins[1]].shape  # [O, kh, kw, I]
            return n_out * w[1] * w[2] * w[3]
        if name == "DEPTHWISE_CONV_2D":
            w = tensors[ins[1]].shape  # [1, kh, kw, C*M]
            return n_out * w[1] * w[2]
        if name == "FULLY_CONNECTED":
            w = tensors[ins[1]].shape  # [O, I]
            return n_out // max(w[0], 1) * w[0] * w[1]
        if name == "TRANSPOSE_CONV":
            w, x = tensors[ins[1]].shape, tensors[ins[2]].shape
            n_in = 1
            for d in x:
                n_in *= int(d)
            return n_in * w[0] * w[1] * w[2]
    except (IndexError, ValueError):
        return 0
    return 0


def load(src) -> TFLiteModel:
    """Parse a .tflite file path or bytes into a validated `TFLiteModel` (raises TFLiteError)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        buf = bytes(src)
    else:
        p = Path(src)
        if not p.exists():
            raise TFLiteError(f"no such file: {p}")
        if p.is_dir():
            raise TFLiteError(f"{p} is a directory, not a .tflite file")
        try:
            buf = p.read_bytes()
        except OSError as exc:
            raise TFLiteError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        return _parse(buf)
    except TFLiteError:
        raise
    except RecursionError:
        raise TFLiteError("corrupt TFLite flatbuffer: nested tables loop") from None
    except Exception as exc:  # noqa: BLE001 - any failure inside the flatbuffer reader = corrupt input
        raise TFLiteError(f"corrupt TFLite flatbuffer ({type(exc).__name__} while reading it)") from None


def validate_for_tflm(model: TFLiteModel) -> None:
    """Reject models the analyzer (and TFLM's static planner) cannot handle, with a clear reason."""
    if model.n_subgraphs > 1:
        raise TFLiteError(f"model has {model.n_subgraphs} subgraphs; the analyzer handles single-subgraph models "
                          "(control flow such as IF/WHILE is not supported)")
    if not model.operators:
        raise TFLiteError("model has no operators")
    for t in model.tensors:
        if t.type not in TENSOR_TYPES or TENSOR_TYPES[t.type][1] == 0 and t.type != 17:
            if not t.has_data:
                raise TFLiteError(f"tensor {t.index} ('{t.name}') has unsupported type {t.dtype}")
        if any(d < 0 for d in t.shape) or (t.shape_signature and any(d < 0 for d in t.shape_signature[1:])):
            raise TFLiteError(f"tensor {t.index} ('{t.name}') has a dynamic shape {list(t.shape_signature or t.shape)};"
                              " TFLM needs static shapes")
        if t.shape_signature and t.shape_signature[:1] == (-1,) and t.shape[:1] != (1,):
            raise TFLiteError(f"tensor {t.index} ('{t.name}') has a dynamic batch dimension")
        if t.elements > MAX_ELEMENTS or t.bytes > MAX_ELEMENTS:
            raise TFLiteError(f"tensor {t.index} ('{t.name}') has a huge shape {list(t.shape)} "
                              f"({t.elements} elements)")
    act = [t for t in model.tensors if not t.has_data]
    if any(model.tensors[i].type in (0, 1) for i in model.inputs + model.outputs if i >= 0) or \
            any(t.type == 0 for t in act):
        floats = [op.name for op in model.operators
                  if any(i >= 0 and model.tensors[i].type == 0 and not model.tensors[i].has_data for i in op.outputs)]
        if len(floats) == sum(1 for _ in model.operators):
            raise TFLiteError("float32 model: this analyzer models the int8 TFLM/CMSIS-NN deployment; a float "
                              "model would run on TFLM's (slow, 4x larger) float reference kernels. Convert it to "
                              "full int8 first (netaug-mcu convert)")
