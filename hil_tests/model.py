"""An int8 .tflite model as the HIL host sees it: tensor details from the flatbuffer, metadata from model.json,
and the host TFLM reference interpreter (tflite-micro; bit-exact with the device's reference kernels)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ModelError(Exception):
    exit_code = 2


_TYPES = {9: ("int8", 1), 3: ("uint8", 1), 0: ("float32", 4), 7: ("int16", 2), 2: ("int32", 4)}


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * {"int8": 1, "uint8": 1, "int16": 2, "float32": 4, "int32": 4}[self.dtype]


@dataclass
class ModelInfo:
    path: Path
    data: bytes
    input: TensorInfo
    output: TensorInfo
    meta: dict = field(default_factory=dict)     # model.json, {} when absent
    meta_path: Path | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def preprocess(self) -> dict | None:
        return self.meta.get("preprocess")

    @property
    def classes(self) -> list[str] | None:
        return self.meta.get("classes")

    def accuracy(self, key: str) -> float | None:
        """float_top1 / int8_top1 / tflm_top1 (percent) from model.json, wherever the converter put them."""
        for d in (self.meta, self.meta.get("accuracy") or {}, self.meta.get("accuracies") or {},
                  self.meta.get("metrics") or {}):
            if isinstance(d, dict) and isinstance(d.get(key), (int, float)):
                return float(d[key])
        return None


def _tensor_info(model, sg, idx: int) -> TensorInfo:
    t = sg.Tensors(idx)
    ttype = t.Type()
    if ttype not in _TYPES:
        raise ModelError(f"unsupported tensor type {ttype}")
    q = t.Quantization()
    scale, zp = 0.0, 0
    if q is not None and q.ScaleLength() > 0:
        scale, zp = float(q.ScaleAsNumpy()[0]), int(q.ZeroPointAsNumpy()[0])
    name = t.Name().decode("utf-8", "replace") if t.Name() else f"t{idx}"
    return TensorInfo(name=name, shape=[int(v) for v in t.ShapeAsNumpy()], dtype=_TYPES[ttype][0],
                      scale=scale, zero_point=zp)


def _meta_override(meta: dict, key: str) -> dict:
    """model.json may hold {"input": {...}} or flat input_scale/input_zero_point keys."""
    d = dict(meta.get(key) or {}) if isinstance(meta.get(key), dict) else {}
    for k in ("scale", "zero_point", "shape", "dtype"):
        if f"{key}_{k}" in meta:
            d[k] = meta[f"{key}_{k}"]
    return d


def load_model(path: str | os.PathLike, meta_path: str | os.PathLike | None = None) -> ModelInfo:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    data = path.read_bytes()
    try:
        import tflite
        model = tflite.Model.GetRootAsModel(data, 0)
        sg = model.Subgraphs(0)
        if sg.InputsLength() != 1 or sg.OutputsLength() != 1:
            raise ModelError(f"{path}: expected 1 input and 1 output, got {sg.InputsLength()}/{sg.OutputsLength()}")
        tin, tout = _tensor_info(model, sg, sg.Inputs(0)), _tensor_info(model, sg, sg.Outputs(0))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffer decoding of a non-tflite file
        raise ModelError(f"{path}: not a readable .tflite model ({type(exc).__name__})") from None
    if tin.dtype != "int8" or tout.dtype != "int8":
        raise ModelError(f"{path}: HIL needs a full-int8 model (input {tin.dtype}, output {tout.dtype})")
    meta, mp = {}, None
    cands = [Path(meta_path)] if meta_path else [path.with_suffix(".json"), path.parent / "model.json"]
    for c in cands:
        if c.is_file():
            try:
                meta = json.loads(c.read_text())
            except (OSError, ValueError) as exc:
                raise ModelError(f"{c}: unreadable model.json ({exc})") from None
            mp = c
            break
    if meta_path and mp is None:
        raise ModelError(f"model.json not found: {meta_path}")
    # The .tflite is authoritative for the quantization; model.json only fills gaps and is cross-checked.
    mi = _meta_override(meta, "input")
    if mi.get("scale") is not None and tin.scale and abs(float(mi["scale"]) - tin.scale) > 1e-6 * max(1.0, tin.scale):
        raise ModelError(f"{mp}: input scale {mi['scale']} disagrees with the .tflite ({tin.scale})")
    return ModelInfo(path=path, data=data, input=tin, output=tout, meta=meta, meta_path=mp)


class HostReference:
    """Host TFLM (tflite-micro Python interpreter). Not thread-safe: one per thread."""

    def __init__(self, model: ModelInfo, arena_size: int | None = None):
        from tflite_micro.python.tflite_micro import runtime
        self.model = model
        self.arena_size = arena_size or max(64 * 1024, 10 * len(model.data))
        try:
            self.interp = runtime.Interpreter.from_bytes(model.data, arena_size=self.arena_size)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{model.path}: host TFLM cannot load the model ({str(exc).splitlines()[0]})") \
                from None

    def run(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int8).reshape(self.model.input.shape)
        self.interp.set_input(x, 0)
        self.interp.invoke()
        return np.asarray(self.interp.get_output(0), dtype=np.int8).reshape(-1).copy()

    def arena_used(self) -> int | None:
        """'Arena allocation total' of TFLM's RecordingMicroAllocator (it prints to C stderr)."""
        fd, name = tempfile.mkstemp(prefix="tflm-alloc-")
        saved = os.dup(2)
        try:
            os.dup2(fd, 2)
            self.interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(fd)
        try:
            text = Path(name).read_text(errors="replace")
        finally:
            os.unlink(name)
        for line in text.splitlines():
            if "Arena allocation total" in line:
                return int(line.split("total")[1].split()[0])
        return None
