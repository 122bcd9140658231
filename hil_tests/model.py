"""An int8 .tflite model as the HIL host sees it: its I/O tensors (read with the project's one .tflite
reader), the converter's model.json next to it, and the host TFLM reference interpreter."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..common.artifacts import model_json_path, read_model_json
from ..common.errors import UserError
from ..common.host_tflm import HostTFLM
from ..common.tflite_model import IOTensor, TFLiteError, load
from ..common.tflm_ops import require_supported


class ModelError(UserError):
    pass


@dataclass
class ModelInfo:
    path: Path
    data: bytes
    input: IOTensor
    output: IOTensor
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
        """float_top1 / int8_top1 / tflm_top1 (percent) from model.json."""
        v = self.meta.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def load_model(path: str | os.PathLike, meta_path: str | os.PathLike | None = None) -> ModelInfo:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        tfl = load(path)
    except TFLiteError as exc:
        raise ModelError(f"{path}: not a readable .tflite model ({exc})") from None
    require_supported(tfl, str(path))
    if len(tfl.inputs) != 1 or len(tfl.outputs) != 1:
        raise ModelError(f"{path}: expected 1 input and 1 output, got {len(tfl.inputs)}/{len(tfl.outputs)}")
    tin, tout = tfl.io_tensor("input"), tfl.io_tensor("output")
    if tin.dtype != "int8" or tout.dtype != "int8":
        raise ModelError(f"{path}: HIL needs a full-int8 model (input {tin.dtype}, output {tout.dtype})")
    for which, t in (("input", tin), ("output", tout)):
        if t.scale is None or t.zero_point is None or not t.scale > 0 or t.scale == float("inf") or t.nbytes < 1:
            raise ModelError(f"{path}: the {which} tensor has no usable int8 quantization "
                             f"(scale {t.scale}, zero point {t.zero_point}, {t.nbytes} bytes)")
    meta, mp = {}, None
    cands = [Path(meta_path)] if meta_path else [model_json_path(path), path.parent / "model.json"]
    for c in cands:
        if c.is_file():
            meta, mp = read_model_json(c), c
            break
    if meta_path and mp is None:
        raise ModelError(f"model.json not found: {meta_path}")
    # The .tflite is authoritative for the quantization; model.json is cross-checked.
    mi = meta.get("input") if isinstance(meta.get("input"), dict) else {}
    if mi.get("scale") is not None and tin.scale and abs(float(mi["scale"]) - tin.scale) > 1e-6 * max(1.0, tin.scale):
        raise ModelError(f"{mp}: input scale {mi['scale']} disagrees with the .tflite ({tin.scale})")
    return ModelInfo(path=path, data=tfl.data, input=tin, output=tout, meta=meta, meta_path=mp)


def host_reference(model: ModelInfo, arena_size: int | None = None) -> HostTFLM:
    """Host TFLM for `model` (bit-exact with the device's reference kernels). One per thread."""
    return HostTFLM(model.data, arena_size=arena_size, name=str(model.path))
