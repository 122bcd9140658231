"""Evaluation/calibration data and THE input preprocessing, numpy only (no torch, no TensorFlow).

hil_tests imports this module to read Fashion-MNIST test images and prepare board inputs exactly
as the converter does, so host (tf.lite / TFLM) and board results are computed on identical int8
tensors.

Preprocessing contract (COMMON.md): uint8 HxW(xC) -> float in [0,1] -> bilinear resize to
`resolution` (align_corners=False, no antialias; equals torch.nn.functional.interpolate) ->
grey->C channels by repetition when channels==3 -> (x-mean)/std. Output is NHWC float32.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DatasetError(Exception):
    """Missing/corrupt data set (one-line CLI error)."""

    exit_code = 2


def fashion_mnist_dirs() -> list[Path]:
    """Search order from COMMON.md (the download fallback lives in the trainer's data module)."""
    dirs = []
    if os.environ.get("NETAUG_MCU_DATA"):
        env = Path(os.environ["NETAUG_MCU_DATA"])
        dirs += [env, env / "fashion-mnist"]
    dirs += [Path("/usr/share/datasets/fashion-mnist"),
             Path.home() / ".cache" / "netaug-mcu" / "datasets" / "fashion-mnist"]
    return dirs


def _find(stem: str) -> Path | None:
    for d in fashion_mnist_dirs():
        for name in (stem + ".gz", stem):
            p = d / name
            if p.is_file():
                return p
    return None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally .gz) into a numpy array (uint8 data as in MNIST)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path} is not an IDX file")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise DatasetError(f"{path}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    dt = np.dtype(dtypes[data[2]])
    count = int(np.prod(dims)) if dims else 0
    if len(data) - offset < count * dt.itemsize:
        raise DatasetError(f"{path} is truncated")
    return np.frombuffer(data, dtype=dt, count=count, offset=offset).reshape(dims)


def load_fashion_mnist(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,28,28], labels int64 [N]) of the 'train' or 'test' split."""
    if split not in _FILES:
        raise DatasetError(f"unknown split {split!r} (train or test)")
    img_stem, lbl_stem = _FILES[split]
    ip, lp = _find(img_stem), _find(lbl_stem)
    if ip is None or lp is None:
        where = ", ".join(str(d) for d in fashion_mnist_dirs())
        raise DatasetError(f"Fashion-MNIST {split} split not found (looked in {where}); install the "
                           f"Debian package dataset-fashion-mnist or set NETAUG_MCU_DATA")
    images, labels = read_idx(ip), read_idx(lp)
    if images.ndim != 3 or labels.shape[0] != images.shape[0]:
        raise DatasetError(f"Fashion-MNIST {split} files are inconsistent: {images.shape} vs {labels.shape}")
    return images, labels.astype(np.int64)


def load_image_folder(root: str | os.PathLike, channels: int = 3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """ImageFolder layout root/<class>/<image>: (uint8 [N,H,W(,C)], labels, class names).

    Images are returned at their stored size only if all sizes agree; otherwise they are resized
    to the first image's size with PIL bilinear (use a fixed-size export for exact comparisons).
    """
    try:
        from PIL import Image
    except ModuleNotFoundError as exc:  # pragma: no cover - pillow is a declared dependency
        raise DatasetError("reading an image folder needs pillow (pip install pillow)") from exc
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DatasetError(f"{root} has no class sub-directories")
    images, labels, size = [], [], None
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".webp"}
    for ci, cls in enumerate(classes):
        for p in sorted((root / cls).iterdir()):
            if p.suffix.lower() not in exts:
                continue
            try:
                im = Image.open(p)
                im = im.convert("L" if channels == 1 else "RGB")
            except OSError as exc:
                raise DatasetError(f"cannot read image {p}: {exc}") from exc
            if size is None:
                size = im.size
            elif im.size != size:
                im = im.resize(size, Image.BILINEAR)
            images.append(np.asarray(im, dtype=np.uint8))
            labels.append(ci)
    if not images:
        raise DatasetError(f"no images found under {root}")
    return np.stack(images), np.asarray(labels, np.int64), classes


def load_dataset(name: str, split: str = "test", channels: int = 1):
    """'fashion-mnist' or a path to an ImageFolder directory -> (images uint8, labels, classes)."""
    if name in ("fashion-mnist", "fashion_mnist", "fmnist"):
        x, y = load_fashion_mnist(split)
        return x, y, list(FASHION_MNIST_CLASSES)
    p = Path(name).expanduser()
    if p.is_dir():
        # train -> train/; test -> test/ or val/ (as the trainer splits folders); else the folder itself
        subs = ["train"] if split == "train" else ["test", "val"]
        sub = next((p / s for s in subs if (p / s).is_dir()), p)
        return load_image_folder(sub, channels=channels)
    raise DatasetError(f"unknown dataset {name!r} (fashion-mnist or an ImageFolder directory)")


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


def preprocess(images_uint8: np.ndarray, pp: dict) -> np.ndarray:
    """uint8 images ([H,W], [N,H,W] or [N,H,W,C]) -> normalised float32 NHWC at pp['resolution']."""
    x = np.asarray(images_uint8)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images [N,H,W] or [N,H,W,C], got shape {x.shape}")
    channels = int(pp.get("channels", x.shape[-1]))
    res = pp.get("resolution")
    interp = pp.get("interpolation", "bilinear")
    if interp != "bilinear":
        raise ValueError(f"unsupported interpolation {interp!r} (only bilinear)")
    xf = x.astype(np.float32) / np.float32(255.0)
    if res is not None:
        rh, rw = (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))
        xf = resize_bilinear(xf, rh, rw)
    if xf.shape[-1] != channels:
        if xf.shape[-1] == 1:
            xf = np.repeat(xf, channels, axis=-1)
        else:
            raise ValueError(f"images have {xf.shape[-1]} channels, the model expects {channels}")
    mean = np.asarray(pp.get("mean", [0.0] * channels), np.float32).reshape(-1)
    std = np.asarray(pp.get("std", [1.0] * channels), np.float32).reshape(-1)
    if mean.size == 1:
        mean = np.repeat(mean, channels)
    if std.size == 1:
        std = np.repeat(std, channels)
    return ((xf - mean) / std).astype(np.float32)


def quantize_input(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE does (round half away from zero, saturate)."""
    v = np.asarray(x, np.float32) / np.float32(scale)
    r = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return np.clip(r + int(zero_point), -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)
