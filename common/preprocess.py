"""THE input preprocessing of netaug-mcu, numpy only: the trainer (its torch fast path is tested
against this), the converter's calibration/evaluation and the HIL host all follow it, so host and
device results are computed on identical int8 tensors.

    uint8 HxW(xC) -> float in [0, 1] -> bilinear resize to `resolution` (align_corners=False, no
    antialias; equals torch.nn.functional.interpolate) -> grey repeated to C channels when the model
    wants 3 -> (x - mean) / std  -> NHWC float32
    -> int8: q = clip(round_half_away_from_zero(x / scale) + zero_point, -128, 127)

The parameters travel as the `preprocess` dict of model.pt and model.json (`Preprocess.as_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UserError

class PreprocessError(UserError, ValueError):
    """Images that cannot be prepared as the model expects them."""


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class Preprocess:
    dataset: str | None
    resolution: int
    channels: int
    mean: list[float]
    std: list[float]
    interpolation: str = "bilinear"
    color: str = "grey"  # source colour model: "grey" (repeated to C) or "rgb"

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "resolution": self.resolution, "channels": self.channels,
                "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "color": self.color}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        ch = int(d.get("channels") or 1)
        return cls(d.get("dataset"), int(d["resolution"]), ch, list(d.get("mean") or [0.0] * ch),
                   list(d.get("std") or [1.0] * ch), d.get("interpolation", "bilinear"),
                   d.get("color", "grey"))


def _resize_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices/weights of torch's bilinear (align_corners=False) along one axis."""
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    src = (dst + np.float32(0.5)) * scale - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam1 = (src - i0.astype(np.float32)).astype(np.float32)
    lam0 = (np.float32(1.0) - lam1).astype(np.float32)
    return i0, i1, np.stack([lam0, lam1])


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of float NHWC, align_corners=False, no antialias (torch semantics)."""
    n, h, w, c = x.shape
    if (h, w) == (out_h, out_w):
        return x.astype(np.float32, copy=True)
    y0, y1, wy = _resize_weights(h, out_h)
    x0, x1, wx = _resize_weights(w, out_w)
    rows = x[:, y0] * wy[0][None, :, None, None] + x[:, y1] * wy[1][None, :, None, None]
    out = rows[:, :, x0] * wx[0][None, None, :, None] + rows[:, :, x1] * wx[1][None, None, :, None]
    return out.astype(np.float32)


def preprocess(images_uint8: np.ndarray, pp: dict | Preprocess) -> np.ndarray:
    """uint8 images ([H,W], [N,H,W] or [N,H,W,C]) -> normalised float32 NHWC at pp['resolution']."""
    if isinstance(pp, Preprocess):
        pp = pp.as_dict()
    x = np.asarray(images_uint8)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise PreprocessError(f"expected images [N,H,W] or [N,H,W,C], got shape {x.shape}")
    channels = int(pp.get("channels") or x.shape[-1])
    res = pp.get("resolution")
    interp = pp.get("interpolation", "bilinear")
    if interp != "bilinear":
        raise PreprocessError(f"unsupported interpolation {interp!r} (only bilinear)")
    xf = x.astype(np.float32) / np.float32(255.0)
    if res is not None:
        rh, rw = (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))
        xf = resize_bilinear(xf, rh, rw)
    if xf.shape[-1] != channels:
        if xf.shape[-1] == 1:
            xf = np.repeat(xf, channels, axis=-1)
        else:
            raise PreprocessError(f"images have {xf.shape[-1]} channels, the model expects {channels}")
    mean = np.asarray(pp.get("mean") or [0.0] * channels, np.float32).reshape(-1)
    std = np.asarray(pp.get("std") or [1.0] * channels, np.float32).reshape(-1)
    if mean.size == 1:
        mean = np.repeat(mean, channels)
    if std.size == 1:
        std = np.repeat(std, channels)
    return ((xf - mean) / std).astype(np.float32)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE does (round half away from zero, saturate)."""
    v = np.asarray(x, np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return np.clip(r + int(zero_point), -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)
