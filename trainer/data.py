"""Datasets, preprocessing and batch loading for the trainer.

Sources (read through netaug_mcu.common.datasets, as every stage does)
-------
- ``fashion-mnist``: the official IDX files (Debian package ``dataset-fashion-mnist``,
  ``$NETAUG_MCU_DATA``, or downloaded into the cache and checked against the published MD5 sums).
- any ImageFolder-style directory (class = subfolder name, images read with PIL): either with
  ``train/`` and ``val/`` (and optionally ``test/``) subfolders, or a single folder of class folders
  that is split deterministically.

Splits
------
``train`` (SGD), ``val`` (held out from the training data, used to select the best epoch) and
``test`` (the official test split: Fashion-MNIST's 10k test images, an ImageFolder's ``val/`` or
``test/``). The val split is drawn with a fixed seed, independent of the training seed, so runs with
different seeds see the same split.

Preprocessing
-------------
netaug_mcu.common.preprocess defines it; here it runs on torch tensors per batch (F.interpolate
bilinear, align_corners=False, no antialias), which equals the numpy definition (tests/test_data.py).
Fashion-MNIST's mean/std are computed from its training split; RGB ImageFolders use ImageNet's. The
dict returned by `Preprocess.as_dict()` is stored in model.pt under "preprocess".

Training augmentation (tensor ops, per batch): random-resized-crop with a mild scale range and a
horizontal flip, sampled per epoch for the whole epoch from a generator seeded by (seed, epoch), so
a sample gets the same augmentation whatever the world size, and resuming is exact. Preloaded
datasets (Fashion-MNIST) live on the training device: on a GPU each batch is gathered, cropped and
normalised there (no host work per step); image folders are decoded by DataLoader workers into
pinned memory and copied asynchronously.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..common import datasets
from ..common.datasets import FASHION_MNIST, FASHION_MNIST_CLASSES, is_fashion_mnist
from ..common.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .errors import DataError

SPLIT_SEED = 20240601  # fixed: the val/test split does not depend on the training seed
CALIB_SEED = 937162211  # the reference's BN re-calibration subset seed


def load_fashion_mnist(data_dir=None, download: bool = True, quiet: bool = False, verify: bool = True):
    """(train_images uint8 [60000,28,28], train_labels, test_images [10000,28,28], test_labels) as tensors."""
    log = (lambda *_: None) if quiet else (lambda m: print(m, flush=True))
    out = []
    for split in ("train", "test"):
        x, y = datasets.load_fashion_mnist(split, data_dir, download=download, verify=verify, log=log)
        out += [torch.from_numpy(x.copy()), torch.from_numpy(y)]
    return tuple(out)


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

    def on(self, device: torch.device) -> torch.Tensor:
        """The uint8 images on `device`, copied there once (an accelerator then gathers, crops and
        normalises its batches itself: no host work or transfer per step)."""
        if device.type == "cpu":
            return self.images
        cache = self.__dict__.setdefault("_on_device", {})
        if device not in cache:
            cache[device] = self.images.to(device)
        return cache[device]

    def batch(self, idx: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """float [B, C_native, H, W] in [0, 1] (on `device`, default: where the images are)."""
        x = self.on(device)[idx.to(device)] if device is not None else self.images[idx]
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
        t = torch.from_numpy(datasets.read_image(self.paths[i], self.native_channels))
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        return t.unsqueeze(0).float().div_(255.0)


# --------------------------------------------------------------------------------------------------
# Preprocessing


def finish(x: torch.Tensor, pre: Preprocess) -> torch.Tensor:
    """[B, Cn, R, R] in [0,1] -> channel repeat -> normalised [B, C, R, R]."""
    if x.shape[1] != pre.channels:
        if x.shape[1] == 1:
            x = x.expand(-1, pre.channels, -1, -1)
        else:
            raise DataError(f"cannot feed {x.shape[1]}-channel images to a {pre.channels}-channel "
                            f"model")
    mean = torch.tensor(pre.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=False)


def preprocess_images(images: torch.Tensor | np.ndarray, pre: Preprocess | dict) -> torch.Tensor:
    """Evaluation preprocessing of uint8 images [N,H,W] / [N,H,W,C] -> float [N,C,R,R]."""
    if isinstance(pre, dict):
        pre = Preprocess.from_dict(pre)
    t = torch.from_numpy(np.array(images, copy=True))
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
    p = params.to(device=x.device, dtype=torch.float32)
    x0, y0, w, h, flip = p.unbind(1)
    sx = torch.where(flip > 0.5, -w, w)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
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
    if is_fashion_mnist(spec):
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
        classes, paths, labels = datasets.scan_image_folder(root / "train")
        train_src = FolderSource(paths, labels, mode)
        n = len(paths)
        holdout = root / "test" if (root / "val").is_dir() and (root / "test").is_dir() else None
        if holdout is not None:  # train / val / test
            _, vp, vl = datasets.scan_image_folder(root / "val", classes)
            _, tp, tl = datasets.scan_image_folder(holdout, classes)
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
                _, tp, tl = datasets.scan_image_folder(other, classes)
                test_src, test_idx = FolderSource(tp, tl, mode), torch.arange(len(tp))
            else:
                test_src, test_idx = None, None
    else:  # one folder: deterministic test / val / train split
        classes, paths, labels = datasets.scan_image_folder(root)
        train_src = val_src = test_src = FolderSource(paths, labels, mode)
        n = len(paths)
        perm = torch.randperm(n, generator=gen)
        n_test = _split_count(n, 0.2, 0.2)
        test_idx, rest = perm[:n_test], perm[n_test:]
        n_val = _split_count(len(rest), val_split, 0.1)
        val_idx, train_idx = rest[:n_val], rest[n_val:]
    if len(train_idx) == 0:
        raise DataError(f"no training images in {root}")
    if len(classes) < 2:  # a one-class folder "trains" to 100 %: refuse it up front
        raise DataError(f"dataset {root} has {len(classes)} class ({', '.join(classes)}); a classifier needs >= 2")
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
        if isinstance(self.src, ArraySource):  # preloaded: the batch is built where it is used
            dev = self.device
            labels = self.src.labels if dev.type == "cpu" else self._device_labels()
            for b in range(nb):
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                idx = order[sl]
                x = self.src.batch(idx, dev if dev.type != "cpu" else None)
                x = resize(x, self.pre.resolution) if params is None else \
                    crop_resize(x, params[sl], self.pre.resolution)
                yield finish(x, self.pre), labels[idx.to(dev)]
            return
        jobs = _FolderJobs(self.src, order[: nb * self.batch_size] if self.train else order,
                           params, self.pre.resolution)
        cuda = self.device.type == "cuda"  # pinned host batches: asynchronous copies to the GPU
        dl = torch.utils.data.DataLoader(jobs, batch_size=self.batch_size, shuffle=False,
                                         num_workers=self.workers, drop_last=self.train,
                                         pin_memory=cuda, persistent_workers=False)
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

    def _device_labels(self) -> torch.Tensor:
        cache = self.src.__dict__.setdefault("_labels_on", {})
        if self.device not in cache:
            cache[self.device] = self.src.labels.to(self.device)
        return cache[self.device]

    def _to_device(self, x, y):
        if self.device.type != "cpu":
            return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return x, y
