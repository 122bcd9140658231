"""Test images for the HIL runner: Fashion-MNIST reading, preprocessing and int8 quantization (numpy only).

The project's numpy-only `converter.datasets` module is the source of truth; this module adapts to it when it
is importable and otherwise uses an equivalent local implementation of the same contract (COMMON.md):
uint8 HxW(xC) -> float [0,1] -> bilinear resize (align_corners=False, no antialias) -> grey->C by repetition
-> (x - mean) / std, then q = clip(round(x / scale) + zero_point, -128, 127).
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class DatasetError(Exception):
    exit_code = 2


def _converter_datasets():
    try:
        from converter import datasets  # numpy-only module of the converter stage
    except Exception:  # noqa: BLE001 - absent or broken: use the local implementation
        return None
    return datasets


def _data_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("NETAUG_MCU_DATA"):
        env = Path(os.environ["NETAUG_MCU_DATA"])
        dirs += [env / "fashion-mnist", env]
    dirs += [Path("/usr/share/datasets/fashion-mnist"),
             Path.home() / ".cache" / "netaug-mcu" / "datasets" / "fashion-mnist"]
    return dirs


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: truncated IDX file")
    return arr.reshape(shape)


def _local_load_test() -> tuple[np.ndarray, np.ndarray]:
    for d in _data_dirs():
        for suffix in (".gz", ""):
            img, lab = d / f"t10k-images-idx3-ubyte{suffix}", d / f"t10k-labels-idx1-ubyte{suffix}"
            if img.exists() and lab.exists():
                return _read_idx(img), _read_idx(lab).astype(np.int64)
    raise DatasetError("Fashion-MNIST test set not found (looked in $NETAUG_MCU_DATA, "
                       "/usr/share/datasets/fashion-mnist, ~/.cache/netaug-mcu/datasets/fashion-mnist); "
                       "install the Debian package dataset-fashion-mnist or run `netaug-mcu` convert once")


def load_test_set(dataset: str = "fashion-mnist") -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N,28,28] and int64 labels [N] of the test split."""
    if dataset != "fashion-mnist":
        raise DatasetError(f"unknown dataset {dataset!r} (supported: fashion-mnist)")
    ds = _converter_datasets()
    if ds is not None:
        for name in ("load_fashion_mnist", "load_fashion_mnist_test", "read_fashion_mnist", "load"):
            fn = getattr(ds, name, None)
            if fn is None:
                continue
            try:
                out = fn(split="test") if name != "load_fashion_mnist_test" else fn()
            except TypeError:
                continue
            except Exception as exc:  # noqa: BLE001
                code = getattr(exc, "exit_code", None)
                if isinstance(code, int):
                    raise DatasetError(str(exc)) from None
                raise
            images, labels = out[0], out[1]
            return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)
    return _local_load_test()


def _resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """x float32 [N,H,W,C]; half-pixel centres (align_corners=False), no antialias (= torch/TF default)."""
    n, h, w, c = x.shape
    if (h, w) == (out_h, out_w):
        return x

    def coords(in_size: int, out_size: int):
        scale = in_size / out_size
        src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
        src = np.clip(src, 0.0, None)
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        i1 = np.minimum(i0 + 1, in_size - 1)
        frac = (src - i0).astype(np.float32)
        return i0, i1, frac

    y0, y1, fy = coords(h, out_h)
    x0, x1, fx = coords(w, out_w)
    top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    out = top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]
    return out.astype(np.float32)


def _local_preprocess(images: np.ndarray, pre: dict) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    x = x.astype(np.float32) / 255.0
    res = pre.get("resolution")
    if res:
        rh, rw = (res, res) if isinstance(res, int) else tuple(res)
        x = _resize_bilinear(x, int(rh), int(rw))
    ch = int(pre.get("channels", x.shape[-1]))
    if x.shape[-1] == 1 and ch > 1:
        x = np.repeat(x, ch, axis=-1)
    mean = np.asarray(pre.get("mean", [0.0] * ch), dtype=np.float32).reshape(1, 1, 1, -1)
    std = np.asarray(pre.get("std", [1.0] * ch), dtype=np.float32).reshape(1, 1, 1, -1)
    return ((x - mean) / std).astype(np.float32)


def preprocess(images: np.ndarray, pre: dict) -> np.ndarray:
    """uint8 [N,H,W(,C)] -> float32 NHWC following the `preprocess` dict of model.json / model.pt."""
    ds = _converter_datasets()
    fn = getattr(ds, "preprocess", None) if ds is not None else None
    if fn is not None:
        out = np.asarray(fn(images, pre), dtype=np.float32)
        if out.ndim == 4 and out.shape[-1] != int(pre.get("channels", out.shape[-1])) \
                and out.shape[1] == int(pre.get("channels", 0)):
            out = np.transpose(out, (0, 2, 3, 1))  # NCHW -> NHWC
        return out
    return _local_preprocess(images, pre)


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 with the model's input quantization (round half away from zero, like TFLite)."""
    ds = _converter_datasets()
    fn = getattr(ds, "quantize_input", None) if ds is not None else None
    if fn is not None:
        try:
            return np.asarray(fn(x, scale, zero_point), dtype=np.int8)
        except TypeError:
            pass
    q = np.sign(x / scale) * np.floor(np.abs(x / scale) + 0.5) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)
