"""`.onnx` input for `analyze` and `check`: the project's converter turns it into the int8 .tflite the
analyzer reads (onnxsim + the TF-SAME padding / mean / hard-sigmoid / Gemm surgery of onnx_export,
then onnx2tf full-integer quantization, per-channel weights, int8 input and output).

Calibration: `--calib-data NPY` (NHWC float32, normalised as the model expects) or, without it,
random-normal inputs (seeded), which the output says. Arena and flash figures depend only on the
graph, shapes and the number of quantization channels, not on the calibration values; the
quantization scales do. The converted model is cached by the ONNX bytes, the calibration and the
converter sources, so a CI gate converts once.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..common.errors import UserError
from ..common.paths import cache_root

RANDOM_CALIB_SAMPLES = 8
RANDOM_CALIB_SEED = 0


def is_onnx(path: str) -> bool:
    return str(path).lower().endswith(".onnx")


def _input_shape(proto) -> tuple[str, tuple[int, ...]]:
    """Name and NCHW shape of the single graph input (a dynamic batch becomes 1)."""
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UserError(f"ONNX model has {len(inputs)} graph inputs; the converter takes exactly one image input")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    if len(shape) != 4:
        raise UserError(f"ONNX input '{inputs[0].name}' has shape {shape}: expected NCHW (4 dimensions)")
    if shape[0] in (-1, 0):
        shape[0] = 1
    if any(s <= 0 for s in shape[1:]):
        raise UserError(f"ONNX input '{inputs[0].name}' has a dynamic shape {shape}: export with a fixed C, H, W")
    return inputs[0].name, tuple(shape)


def _prepare(proto):
    """The converter's graph surgery (converter.onnx_export.prepare_onnx without the torch export)."""
    import onnx

    from .onnx_export import fold_same_padding, gemm_to_conv1x1, replace_spatial_mean, rewrite_hard_sigmoid, simplify
    out = simplify(proto)
    simplified = out is not proto
    fold_same_padding(out)
    replace_spatial_mean(out)
    rewrite_hard_sigmoid(out)
    gemm_to_conv1x1(out)
    try:
        onnx.checker.check_model(out)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad graph
        raise UserError(f"ONNX graph is invalid after surgery: {str(exc).splitlines()[0]}") from None
    return out, simplified


def _calibration(calib_data: str | None, nchw: tuple[int, ...]) -> tuple[np.ndarray, str]:
    n, c, h, w = nchw
    if calib_data is None:
        rng = np.random.default_rng(RANDOM_CALIB_SEED)
        return (rng.standard_normal((RANDOM_CALIB_SAMPLES, h, w, c)).astype(np.float32),
                f"random-normal ({RANDOM_CALIB_SAMPLES} samples, seed {RANDOM_CALIB_SEED})")
    from .convert import _load_calib
    arr = _load_calib(calib_data)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != (h, w, c):
        raise UserError(f"--calib-data {calib_data}: shape {tuple(arr.shape)}, the model needs NHWC [N,{h},{w},{c}]")
    return arr, f"{Path(calib_data).name} ({arr.shape[0]} samples)"


def _cache_key(onnx_bytes: bytes, calib: np.ndarray) -> str:
    h = hashlib.sha256(onnx_bytes)
    h.update(np.ascontiguousarray(calib).tobytes())
    for mod in ("onnx_export.py", "_onnx2tf_worker.py", "quantize.py", "onnx_input.py"):
        h.update((Path(__file__).parent / mod).read_bytes())
    return h.hexdigest()[:24]


def to_tflite(path: str, calib_data: str | None = None, quiet: bool = True) -> tuple[str, dict]:
    """Convert an .onnx file (cached) -> (path of the int8 .tflite, provenance for the output)."""
    from ..common.extras import require
    require("convert", f"an .onnx model ({Path(path).name})")
    import onnx

    data = Path(path).read_bytes()
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have several types
        raise UserError(f"{Path(path).name} is not a readable ONNX model ({type(exc).__name__})") from None
    name, nchw = _input_shape(proto)
    calib, calib_desc = _calibration(calib_data, nchw)
    out = cache_root() / "onnx-models" / f"{Path(path).stem}-{_cache_key(data, calib)}.tflite"
    info = {"source": str(path), "converted": str(out), "input": name, "input_shape_nchw": list(nchw),
            "calibration": calib_desc, "random_calibration": calib_data is None}
    if not out.is_file():
        from ..common.fsio import atomic_write
        from .quantize import onnx_to_int8_tflite
        if not quiet:
            print(f"converting {Path(path).name} (onnx2tf, int8; calibration {calib_desc}) ...")
        prepared, simplified = _prepare(proto)
        tfl, _, secs = onnx_to_int8_tflite(prepared, calib, input_name=name, simplified=simplified)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, tfl)
        atomic_write(out.with_suffix(".json"), json.dumps({**info, "seconds": round(secs, 1)}, indent=1) + "\n")
    return str(out), info


def note(info: dict) -> str:
    """The line the output carries about where the .tflite came from."""
    s = (f"converted from {Path(info['source']).name} with the project's converter (onnx2tf int8, per-channel), "
         f"calibration {info['calibration']}")
    if info["random_calibration"]:
        s += ": the figures come from random calibration (arena and flash do not depend on calibration values; " \
             "the quantization scales do; --calib-data NPY gives real ones)"
    return s
