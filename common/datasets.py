"""Where the pixels come from: Fashion-MNIST (the official IDX files) and ImageFolder directories.

Numpy + stdlib (+ Pillow for image folders). The trainer, the converter's calibration/evaluation
and the HIL runner all read data through here, so every stage sees the same images.

Fashion-MNIST is looked for in `--data-dir` when given, else `$NETAUG_MCU_DATA` (the directory or its
`fashion-mnist/` subfolder), `/usr/share/datasets/fashion-mnist` (Debian package
`dataset-fashion-mnist`) and `<cache>/datasets/fashion-mnist`; each file may be gzip'd or not. Every
file is checked (IDX magic, shape, and the MD5 of the decompressed content when `verify`).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from .errors import UserError
from .paths import cache_root


class DatasetError(UserError):
    """A data set is missing, corrupt or unusable."""


FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_ALIASES = {"fashion-mnist", "fashion_mnist", "fashionmnist", "fmnist"}
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
# Official mirrors (zalandoresearch/fashion-mnist); integrity comes from the MD5 sums below.
FASHION_MNIST_URLS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
FASHION_MNIST_HOME = "https://github.com/zalandoresearch/fashion-mnist"
# stem -> (MD5 of the published .gz, MD5 of the decompressed content, IDX magic, shape).
# Repackaged copies (e.g. Debian's) differ in the gzip header only, so files found on disk are
# checked by the MD5 of their content.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                                2051, (60000, 28, 28)),
    "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9",
                                2049, (60000,)),
    "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a",
                               2051, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965",
                               2049, (10000,)),
}
SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_fashion_mnist(name: str) -> bool:
    return str(name).lower() in FASHION_MNIST_ALIASES


def fashion_mnist_cache() -> Path:
    return cache_root() / "datasets" / FASHION_MNIST


def fashion_mnist_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order (an explicit `data_dir` replaces the defaults)."""
    if data_dir:
        d = Path(data_dir).expanduser()
        return [d, d / FASHION_MNIST]
    dirs: list[Path] = []
    env = os.environ.get("NETAUG_MCU_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / FASHION_MNIST]
    return dirs + [DEBIAN_DIR, fashion_mnist_cache()]


def _file(d: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (d / name).is_file():
            return d / name
    return None


def read_idx(path: str | os.PathLike, magic: int | None = None, shape: tuple[int, ...] | None = None,
             md5: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip'd or not); check its magic, shape and content MD5 when given."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; delete it and reinstall/download the data set") \
            from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DatasetError(f"{path} is not an IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    if magic is not None and (struct.unpack(">I", raw[:4])[0] != magic
                              or (shape is not None and tuple(dims) != tuple(shape))):
        raise DatasetError(f"{path}: IDX magic/shape {struct.unpack('>I', raw[:4])[0]}/{dims}, expected "
                           f"{magic}/{shape}")
    dt = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 0
    if len(raw) != header + count * dt.itemsize:
        raise DatasetError(f"{path}: {len(raw)} bytes, expected {header + count * dt.itemsize} (truncated "
                           f"or corrupt)")
    if md5 and hashlib.md5(raw, usedforsecurity=False).hexdigest() != md5:
        raise DatasetError(f"{path}: MD5 of its content does not match the official release; delete it "
                           f"and reinstall/download the data set")
    return np.frombuffer(raw, dtype=dt, count=count, offset=header).reshape(dims)


def find_fashion_mnist(data_dir=None) -> Path | None:
    for d in fashion_mnist_dirs(data_dir):
        if all(_file(d, stem) for stem in FASHION_MNIST_FILES):
            return d
    return None


def download_fashion_mnist(dest: Path, log=print) -> Path:
    """Download the four .gz files into `dest`, verifying the published MD5 of each."""
    dest.mkdir(parents=True, exist_ok=True)
    for stem, (gz_md5, _, _, _) in FASHION_MNIST_FILES.items():
        name = stem + ".gz"
        if (dest / name).exists():
            continue
        last_err: Exception | None = None
        for base in FASHION_MNIST_URLS:
            try:
                log(f"downloading {base}{name}")
                with urllib.request.urlopen(base + name, timeout=60) as resp:
                    data = resp.read()
            except OSError as exc:
                last_err = exc
                continue
            if hashlib.md5(data, usedforsecurity=False).hexdigest() != gz_md5:
                last_err = DatasetError(f"MD5 mismatch for {base}{name}")
                continue
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=name, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest / name)
            break
        else:
            raise DatasetError(f"could not download Fashion-MNIST file {name} ({last_err}); install it "
                               f"with `apt-get install dataset-fashion-mnist` or put the files from "
                               f"{FASHION_MNIST_HOME} into {dest}")
    return dest


def fashion_mnist_dir(data_dir=None, download: bool = False, log=print) -> Path:
    d = find_fashion_mnist(data_dir)
    if d is not None:
        return d
    if download:
        return download_fashion_mnist(Path(data_dir).expanduser() if data_dir else fashion_mnist_cache(), log)
    looked = ", ".join(str(p) for p in fashion_mnist_dirs(data_dir))
    files = ", ".join(stem + ".gz" for stem in FASHION_MNIST_FILES)
    raise DatasetError(f"Fashion-MNIST not found (looked for {files} in {looked}); install it with "
                       f"`apt-get install dataset-fashion-mnist`, set NETAUG_MCU_DATA, or allow downloading "
                       f"from {FASHION_MNIST_URLS[0]}")


def load_fashion_mnist(split: str = "test", data_dir=None, download: bool = False, verify: bool = True,
                       log=print) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N,28,28], labels int64 [N]) of the 'train' or 'test' split."""
    if split not in SPLIT_FILES:
        raise DatasetError(f"unknown split {split!r} (train or test)")
    d = fashion_mnist_dir(data_dir, download, log)
    arrays = []
    for stem in SPLIT_FILES[split]:
        _, md5, magic, shape = FASHION_MNIST_FILES[stem]
        arrays.append(read_idx(_file(d, stem), magic, shape, md5 if verify else None))
    images, labels = arrays
    if labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"corrupt Fashion-MNIST labels in {d}: label out of range")
    return images, labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------
# ImageFolder: ROOT/CLASS/IMAGE files (any depth below CLASS), with optional train/ val/ test/


def scan_image_folder(root: str | os.PathLike, classes: list[str] | None = None
                      ) -> tuple[list[str], list[Path], list[int]]:
    """(class names, image paths, labels); `classes` fixes the class list (e.g. the training set's)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise DatasetError(f"no class subfolders in {root} (expected ImageFolder layout "
                               f"{root}/CLASS/IMAGE.jpg)")
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DatasetError(f"{root} has classes not in the training set: {', '.join(extra[:5])}")
    paths, labels = [], []
    for ci, c in enumerate(classes):
        d = root / c
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
                paths.append(p)
                labels.append(ci)
    if not paths:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root}")
    return classes, paths, labels


def read_image(path: Path, channels: int) -> np.ndarray:
    """uint8 [H,W] (channels 1) or [H,W,3] (channels 3) with Pillow."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB" if channels == 3 else "L"), dtype=np.uint8).copy()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
        raise DatasetError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None


def image_folder_split(root: Path, split: str) -> Path:
    """The folder of a split: train -> train/; test -> test/ or val/; else the folder itself."""
    subs = ["train"] if split == "train" else ["test", "val"]
    return next((root / s for s in subs if (root / s).is_dir()), root)


def load_image_folder(root: str | os.PathLike, channels: int = 3) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images of an ImageFolder as one uint8 array (resized with Pillow bilinear to the first
    image's size when sizes differ), labels and class names."""
    from PIL import Image

    classes, paths, labels = scan_image_folder(root)
    images, size = [], None
    for p in paths:
        arr = read_image(p, channels)
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            arr = np.asarray(Image.fromarray(arr).resize((size[1], size[0]), Image.BILINEAR), np.uint8)
        images.append(arr)
    return np.stack(images), np.asarray(labels, np.int64), classes


def load_split(name: str, split: str = "test", channels: int = 1, data_dir=None
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """'fashion-mnist' or an ImageFolder path -> (images uint8, labels int64, class names)."""
    if is_fashion_mnist(name):
        x, y = load_fashion_mnist(split, data_dir)
        return x, y, list(FASHION_MNIST_CLASSES)
    p = Path(name).expanduser()
    if p.is_dir():
        return load_image_folder(image_folder_split(p, split), channels=channels)
    raise DatasetError(f"unknown dataset {name!r} (fashion-mnist or an ImageFolder directory)")
