"""Datasets, preprocessing and batch loading for the trainer.

Sources
-------
- ``fashion-mnist``: the four official IDX ``.gz`` files, searched in ``$NETAUG_MCU_DATA`` (the
  directory itself or its ``fashion-mnist/`` subfolder), ``/usr/share/datasets/fashion-mnist/``
  (Debian package ``dataset-fashion-mnist``), ``~/.cache/netaug-mcu/datasets/fashion-mnist/``; when
  none has them and downloading is allowed, they are downloaded from the official source into the
  cache and checked against the published MD5 sums. Every file is checked (gzip, IDX magic, shape,
  MD5 of the decompressed content) before use.
- any ImageFolder-style directory (class = subfolder name, images read with PIL): either with
  ``train/`` and ``val/`` (and optionally ``test/``) subfolders, or a single folder of class folders
  that is split deterministically.

Splits
------
``train`` (SGD), ``val`` (held out from the training data, used to select the best epoch) and
``test`` (the official test split: Fashion-MNIST's 10k test images, an ImageFolder's ``val/`` or
``test/``). The val split is drawn with a fixed seed, independent of the training seed, so runs with
different seeds see the same split.

Preprocessing (the contract shared with the converter and the HIL host)
-----------------------------------------------------------------------
uint8 image -> float in [0, 1] -> bilinear resize to the resolution (align_corners=False, no
antialias) -> grey repeated to C channels when the model wants 3 -> (x - mean) / std. Fashion-MNIST's
mean/std are computed from its training split; RGB ImageFolders use ImageNet's. The dict returned
by `Preprocess.as_dict()` is stored in model.pt under "preprocess".

Training augmentation (tensor ops, per batch): random-resized-crop with a mild scale range and a
horizontal flip, sampled per epoch for the whole epoch from a generator seeded by (seed, epoch), so
a sample gets the same augmentation whatever the world size, and resuming is exact.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
import struct
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DataError

# --------------------------------------------------------------------------------------------------
# Fashion-MNIST

FASHION_MNIST = "fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
# Official mirrors (zalandoresearch/fashion-mnist). The S3 website endpoint serves plain HTTP only;
# integrity comes from the MD5 sums below either way.
FASHION_MNIST_URLS = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
FASHION_MNIST_HOME = "https://github.com/zalandoresearch/fashion-mnist"
# file -> (MD5 of the published .gz, MD5 of its decompressed content, IDX magic, shape)
# The .gz MD5 identifies the official download; repackaged copies (e.g. Debian's) differ in the
# gzip header only, so the decompressed MD5 is what is checked for files found on disk.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                   "f4a8712d7a061bf5bd6d2ca38dc4d50a", 2051, (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": ("25c81989df183df01b3e8a0aad5dffbe",
                                   "9018921c3c673c538a1fc5bad174d6f9", 2049, (60000,)),
    "t10k-images-idx3-ubyte.gz": ("bef4ecab320f06d8554ea6380940ec79",
                                  "8181f5470baa50b63fa0f6fddb340f0a", 2051, (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": ("bb300cfdad3c16e7a12a480ee83cd310",
                                  "15d484375f8d13e6eb1aabb0c3f46965", 2049, (10000,)),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                    ".pgm"}
SPLIT_SEED = 20240601  # fixed: the val/test split does not depend on the training seed
CALIB_SEED = 937162211  # the reference's BN re-calibration subset seed


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netaug-mcu" / \
        "datasets" / FASHION_MNIST


def fashion_mnist_search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where Fashion-MNIST is looked for, in order (an explicit `data_dir` replaces the defaults)."""
    if data_dir:
        d = Path(data_dir).expanduser()
        return [d, d / FASHION_MNIST]
    dirs: list[Path] = []
    env = os.environ.get("NETAUG_MCU_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / FASHION_MNIST]
    return dirs + [DEBIAN_DIR, cache_dir()]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def read_idx(path: Path, magic: int, shape: tuple[int, ...], md5: str | None = None) -> np.ndarray:
    """Read and check one gzip'd IDX file; DataError naming the file on any problem."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"corrupt Fashion-MNIST file {path}: not a valid gzip file ({exc}); "
                        f"delete it and reinstall/download the dataset") from None
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"corrupt Fashion-MNIST file {path}: truncated header")
    got_magic = struct.unpack(">I", raw[:4])[0]
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    if got_magic != magic or tuple(dims) != tuple(shape):
        raise DataError(f"corrupt Fashion-MNIST file {path}: IDX magic/shape {got_magic}/{dims}, "
                        f"expected {magic}/{shape}")
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"corrupt Fashion-MNIST file {path}: {len(raw)} bytes after "
                        f"decompression, expected {header + int(np.prod(shape))}")
    if md5 and _md5(raw) != md5:
        raise DataError(f"corrupt Fashion-MNIST file {path}: MD5 of its content does not match "
                        f"the official release; delete it and reinstall/download the dataset")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _download(dest: Path, quiet: bool = False) -> None:
    """Download the four files into `dest`, verifying the published MD5 of each."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, (gz_md5, _, _, _) in FASHION_MNIST_FILES.items():
        target = dest / name
        if target.exists():
            continue
        last_err: Exception | None = None
        for base in FASHION_MNIST_URLS:
            try:
                if not quiet:
                    print(f"downloading {base}{name}", flush=True)
                with urllib.request.urlopen(base + name, timeout=60) as resp:
                    data = resp.read()
            except OSError as exc:
                last_err = exc
                continue
            if _md5(data) != gz_md5:
                last_err = DataError(f"MD5 mismatch for {base}{name}")
                continue
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=name, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
            break
        else:
            raise DataError(f"could not download Fashion-MNIST file {name} ({last_err}); install "
                            f"it with `apt-get install dataset-fashion-mnist` or put the files "
                            f"from {FASHION_MNIST_HOME} into {dest}")


def find_fashion_mnist(data_dir=None, download: bool = True, quiet: bool = False) -> Path:
    dirs = fashion_mnist_search_dirs(data_dir)
    for d in dirs:
        if all((d / n).is_file() for n in FASHION_MNIST_FILES):
            return d
    if download:
        dest = Path(data_dir).expanduser() if data_dir else cache_dir()
        _download(dest, quiet=quiet)
        return dest
    looked = ", ".join(str(d) for d in dirs)
    raise DataError(f"Fashion-MNIST not found (looked for {', '.join(FASHION_MNIST_FILES)} in "
                    f"{looked}); install it with `apt-get install dataset-fashion-mnist` or allow "
                    f"downloading from {FASHION_MNIST_URLS[0]} (drop --no-download)")


def load_fashion_mnist(data_dir=None, download: bool = True, quiet: bool = False,
                       verify: bool = True):
    """(train_images uint8 [60000,28,28], train_labels, test_images [10000,28,28], test_labels)."""
    d = find_fashion_mnist(data_dir, download, quiet)
    arrays = {}
    for name, (_, md5, magic, shape) in FASHION_MNIST_FILES.items():
        arrays[name] = read_idx(d / name, magic, shape, md5 if verify else None)
    for name in ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        if arrays[name].max() >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"corrupt Fashion-MNIST file {d / name}: label out of range")
    return (torch.from_numpy(arrays["train-images-idx3-ubyte.gz"].copy()),
            torch.from_numpy(arrays["train-labels-idx1-ubyte.gz"].astype(np.int64)),
            torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"].copy()),
            torch.from_numpy(arrays["t10k-labels-idx1-ubyte.gz"].astype(np.int64)))


# --------------------------------------------------------------------------------------------------
# Sources: where the pixels of sample i come from


class ArraySource:
    """Images preloaded as a uint8 tensor [N,H,W] (grey) or [N,H,W,C]; resized per batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images = images
        self.labels = labels
        self.native_channels = 1 if images.dim() == 3 else images.shape[-1]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        """float [B, C_native, H, W] in [0, 1]."""
        x = self.images[idx]
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return x.float().div_(255.0)


class FolderSource:
    """ImageFolder-style list of (path, label); images decoded with PIL on demand."""

    def __init__(self, paths: list[Path], labels: list[int], mode: str):
        self.paths = paths
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.mode = mode  # PIL mode: "RGB" or "L"
        self.native_channels = 3 if mode == "RGB" else 1

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> torch.Tensor:
        """float [1, C, H, W] in [0, 1]."""
        from PIL import Image

        path = self.paths[i]
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert(self.mode), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
            raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        return t.unsqueeze(0).float().div_(255.0)


def _scan_folder(root: Path, classes: list[str] | None = None):
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = found
        if not classes:
            raise DataError(f"no class subfolders in {root} (expected ImageFolder layout "
                            f"{root}/CLASS/IMAGE.jpg)")
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(f"{root} has classes not in the training set: {', '.join(extra[:5])}")
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
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root}")
    return classes, paths, labels


# --------------------------------------------------------------------------------------------------
# Preprocessing


@dataclass
class Preprocess:
    dataset: str
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


def finish(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """[B, Cn, R, R] in [0,1] -> channel repeat -> normalised [B, C, R, R]."""
    if x.shape[1] != pre.channels:
        if x.shape[1] == 1:
            x = x.expand(-1, pre.channels, -1, -1)
        else:
            raise DataError(f"cannot feed {x.shape[1]}-channel images to a {pre.channels}-channel "
                            f"model")
    mean = torch.tensor(pre.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=False)


def preprocess_images(images: torch.Tensor | np.ndarray, pre: Preprocess | dict) -> torch.Tensor:
    """Evaluation preprocessing of uint8 images [N,H,W] / [N,H,W,C] -> float [N,C,R,R]."""
    if isinstance(pre, dict):
        pre = Preprocess(**{k: pre[k] for k in ("dataset", "resolution", "channels", "mean",
                                                 "std")})
    t = torch.as_tensor(np.asarray(images))
    src = ArraySource(t, torch.zeros(len(t), dtype=torch.int64))
    return finish(resize(src.batch(torch.arange(len(t))), pre.resolution), pre)


@dataclass
class AugConfig:
    enabled: bool = True
    scale_min: float = 0.6  # random-resized-crop area fraction range [scale_min, 1]
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True


def sample_aug(n: int, gen: torch.Generator, aug: AugConfig) -> torch.Tensor:
    """[n, 5] float64: x0, y0, w, h (fractions of the image side) and flip (0/1)."""
    u = torch.rand(n, 5, generator=gen, dtype=torch.float64)
    if not aug.enabled:
        return torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]], dtype=torch.float64).repeat(n, 1)
    area = aug.scale_min + (1.0 - aug.scale_min) * u[:, 0]
    lo, hi = math.log(aug.ratio[0]), math.log(aug.ratio[1])
    ratio = torch.exp(lo + (hi - lo) * u[:, 1])
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    x0 = (1.0 - w) * u[:, 2]
    y0 = (1.0 - h) * u[:, 3]
    flip = (u[:, 4] < 0.5).double() if aug.flip else torch.zeros(n, dtype=torch.float64)
    return torch.stack([x0, y0, w, h, flip], dim=1)


def crop_resize(x: torch.Tensor, params: torch.Tensor, resolution: int) -> torch.Tensor:
    """Random-resized-crop + flip as one bilinear grid_sample (align_corners=False).

    With the full box and no flip this samples exactly where `resize` does.
    """
    b = x.shape[0]
    p = params.to(torch.float32)
    x0, y0, w, h, flip = p.unbind(1)
    sx = torch.where(flip > 0.5, -w, w)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = 2 * x0 + w - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    grid = F.affine_grid(theta, [b, x.shape[1], resolution, resolution], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------------------------------
# The dataset as seen by the engine


@dataclass
class Dataset:
    name: str
    classes: list[str]
    train: Any  # ArraySource | FolderSource
    train_idx: torch.Tensor
    val: Any
    val_idx: torch.Tensor
    test: Any | None
    test_idx: torch.Tensor | None
    preprocess: Preprocess
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> str:
        t = f", test {len(self.test_idx)}" if self.test_idx is not None else ""
        return (f"{self.name}: {self.num_classes} classes, train {len(self.train_idx)}, "
                f"val {len(self.val_idx)}{t}")


def _split_count(n: int, spec: float | int | None, default: float) -> int:
    v = default if spec is None else spec
    k = int(round(n * v)) if isinstance(v, float) and v < 1 else int(v)
    if k < 0 or k >= n:
        raise DataError(f"validation split {v} leaves no training data (of {n} images)")
    return k


def _limit(idx: torch.Tensor, limit: int | None) -> torch.Tensor:
    return idx if not limit or limit <= 0 else idx[:limit]


def load_dataset(spec: str, *, resolution: int, channels: int, val_split: float | int | None = None,
                 train_limit: int | None = None, val_limit: int | None = None,
                 test_limit: int | None = None, data_dir=None, download: bool = True,
                 quiet: bool = False) -> Dataset:
    """`spec` is "fashion-mnist" or a path to an ImageFolder directory."""
    if resolution < 8 or resolution > 1024:
        raise DataError(f"resolution {resolution} out of range (8..1024)")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, not {channels}")
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    if spec.lower().replace("_", "-") in (FASHION_MNIST, "fashionmnist"):
        tr_x, tr_y, te_x, te_y = load_fashion_mnist(data_dir, download=download, quiet=quiet)
        perm = torch.randperm(len(tr_y), generator=gen)
        n_val = _split_count(len(tr_y), val_split, 5000)
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        fit = tr_x[train_idx].double()
        mean, std = (fit / 255.0).mean().item(), (fit / 255.0).std().item()
        pre = Preprocess(FASHION_MNIST, resolution, channels, [mean] * channels, [std] * channels,
                         color="grey")
        src = ArraySource(tr_x, tr_y)
        test = ArraySource(te_x, te_y)
        return Dataset(FASHION_MNIST, list(FASHION_MNIST_CLASSES), src, _limit(train_idx, train_limit),
                       src, _limit(val_idx, val_limit), test,
                       _limit(torch.arange(len(te_y)), test_limit), pre,
                       {"source": "fashion-mnist"})
    root = Path(spec).expanduser()
    if not root.exists():
        raise DataError(f"unknown dataset '{spec}': use 'fashion-mnist' or the path of an "
                        f"ImageFolder directory (CLASS/IMAGE files, optionally under train/ and "
                        f"val/)")
    if not root.is_dir():
        raise DataError(f"dataset {root} is not a directory")
    mode = "RGB" if channels == 3 else "L"
    if (root / "train").is_dir():
        classes, paths, labels = _scan_folder(root / "train")
        train_src = FolderSource(paths, labels, mode)
        n = len(paths)
        holdout = root / "test" if (root / "val").is_dir() and (root / "test").is_dir() else None
        if holdout is not None:  # train / val / test
            _, vp, vl = _scan_folder(root / "val", classes)
            _, tp, tl = _scan_folder(holdout, classes)
            val_src, test_src = FolderSource(vp, vl, mode), FolderSource(tp, tl, mode)
            train_idx = torch.randperm(n, generator=gen)
            val_idx = torch.randperm(len(vp), generator=gen)
            test_idx = torch.arange(len(tp))
        else:  # train (+ held-out val) / val|test as the test split
            perm = torch.randperm(n, generator=gen)
            n_val = _split_count(n, val_split, 0.1)
            val_src, val_idx, train_idx = train_src, perm[:n_val], perm[n_val:]
            other = root / "val" if (root / "val").is_dir() else root / "test"
            if other.is_dir():
                _, tp, tl = _scan_folder(other, classes)
                test_src, test_idx = FolderSource(tp, tl, mode), torch.arange(len(tp))
            else:
                test_src, test_idx = None, None
    else:  # one folder: deterministic test / val / train split
        classes, paths, labels = _scan_folder(root)
        train_src = val_src = test_src = FolderSource(paths, labels, mode)
        n = len(paths)
        perm = torch.randperm(n, generator=gen)
        n_test = _split_count(n, 0.2, 0.2)
        test_idx, rest = perm[:n_test], perm[n_test:]
        n_val = _split_count(len(rest), val_split, 0.1)
        val_idx, train_idx = rest[:n_val], rest[n_val:]
    if len(train_idx) == 0:
        raise DataError(f"no training images in {root}")
    if channels == 3:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:  # grey: statistics of (up to) 500 training images
        sub = train_idx[:500]
        vals = torch.cat([train_src.image(int(i)).flatten().double() for i in sub])
        mean, std = [vals.mean().item()], [vals.std().item()]
    pre = Preprocess(root.name, resolution, channels, mean, std,
                     color="rgb" if channels == 3 else "grey")
    return Dataset(root.name, classes, train_src, _limit(train_idx, train_limit), val_src,
                   _limit(val_idx, val_limit), test_src,
                   None if test_idx is None else _limit(test_idx, test_limit), pre,
                   {"source": str(root)})


# --------------------------------------------------------------------------------------------------
# Batch loading (sharded for DDP)


class _FolderJobs(torch.utils.data.Dataset):
    def __init__(self, src: FolderSource, idx: torch.Tensor, params: torch.Tensor | None,
                 resolution: int):
        self.src, self.idx, self.params, self.resolution = src, idx, params, resolution

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, k):
        img = self.src.image(int(self.idx[k]))
        if self.params is None:
            out = resize(img, self.resolution)
        else:
            out = crop_resize(img, self.params[k:k + 1], self.resolution)
        return out[0], self.src.labels[self.idx[k]]


class Loader:
    """Batches of one split, sharded across `world` ranks like a DistributedSampler.

    Training: each epoch a permutation of the split (generator seeded by (seed, epoch)), cut to a
    multiple of `world`, rank r takes positions r, r+world, ...; incomplete batches are dropped.
    With per-rank batch b on W ranks, step k's union over ranks is exactly the global batch
    k of a single process with batch W*b. Evaluation: rank r takes indices[r::world], nothing dropped.
    """

    def __init__(self, src, indices: torch.Tensor, pre: Preprocess, *, batch_size: int,
                 train: bool, seed: int = 0, rank: int = 0, world: int = 1,
                 aug: AugConfig | None = None, workers: int = 0,
                 device: torch.device | str = "cpu", fixed_params_seed: int | None = None):
        self.src, self.indices, self.pre = src, indices, pre
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.rank, self.world = rank, world
        self.aug = aug or AugConfig()
        self.workers = workers
        self.device = torch.device(device)
        self.fixed_params_seed = fixed_params_seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _plan(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(this rank's indices in order, their augmentation params or None)."""
        if not self.train:
            return self.indices[self.rank::self.world], None
        if self.fixed_params_seed is not None:  # fixed subset (BN calibration): no shuffling
            gen = torch.Generator().manual_seed(self.fixed_params_seed)
            order = self.indices
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = self.indices[torch.randperm(len(self.indices), generator=gen)]
        params = sample_aug(len(order), gen, self.aug)
        usable = len(order) - len(order) % self.world
        return order[:usable][self.rank::self.world], params[:usable][self.rank::self.world]

    def __len__(self) -> int:
        n = len(self._plan()[0]) if self.train else len(self.indices[self.rank::self.world])
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, params = self._plan()
        n = len(order)
        nb = n // self.batch_size if self.train else math.ceil(n / self.batch_size)
        if isinstance(self.src, ArraySource):
            for b in range(nb):
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                idx = order[sl]
                x = self.src.batch(idx)
                x = resize(x, self.pre.resolution) if params is None else \
                    crop_resize(x, params[sl], self.pre.resolution)
                yield self._to_device(finish(x, self.pre), self.src.labels[idx])
            return
        jobs = _FolderJobs(self.src, order[: nb * self.batch_size] if self.train else order,
                           params, self.pre.resolution)
        dl = torch.utils.data.DataLoader(jobs, batch_size=self.batch_size, shuffle=False,
                                         num_workers=self.workers, drop_last=self.train)
        it = iter(dl)
        while True:
            try:
                x, y = next(it)
            except StopIteration:
                return
            except DataError as exc:  # re-raised from a worker with its traceback text
                lines = [ln for ln in str(exc).splitlines() if ln.strip()]
                raise DataError(lines[-1].split("DataError: ", 1)[-1]) from None
            yield self._to_device(finish(x, self.pre), y)

    def _to_device(self, x, y):
        if self.device.type != "cpu":
            return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y
