"""trainer.data: Fashion-MNIST checks, ImageFolder layouts, preprocessing, augmentation, sharding."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from netaug_mcu.common import datasets
from netaug_mcu.trainer import data as D
from netaug_mcu.trainer.errors import DataError


@pytest.fixture(scope="module")
def fmnist():
    try:
        return D.load_dataset("fashion-mnist", resolution=32, channels=1, train_limit=512,
                              val_limit=256, test_limit=256, download=False)
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")


def test_fashion_mnist_splits_and_stats(fmnist):
    ds = fmnist
    assert ds.classes == D.FASHION_MNIST_CLASSES
    assert (len(ds.train_idx), len(ds.val_idx), len(ds.test_idx)) == (512, 256, 256)
    # val is held out of the training images: the full split is disjoint
    full = D.load_dataset("fashion-mnist", resolution=28, channels=1, download=False)
    assert len(full.train_idx) == 55000 and len(full.val_idx) == 5000 and len(full.test_idx) == 10000
    assert not set(full.train_idx.tolist()) & set(full.val_idx.tolist())
    # split does not depend on anything but the fixed split seed
    assert torch.equal(full.val_idx[:256], ds.val_idx)
    # mean/std computed from the training split (published Fashion-MNIST figures: 0.2860 / 0.3530)
    assert abs(ds.preprocess.mean[0] - 0.2860) < 2e-3 and abs(ds.preprocess.std[0] - 0.3530) < 2e-3
    # at native resolution, normalised training pixels have mean 0 / std 1
    ld = D.Loader(full.train, full.train_idx, full.preprocess, batch_size=55000, train=False)
    x, y = next(iter(ld))
    assert x.shape == (55000, 1, 28, 28)
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3
    assert y.min() >= 0 and y.max() <= 9


def test_preprocess_contract_shapes_and_rgb(fmnist):
    ds = fmnist
    ld = D.Loader(ds.test, ds.test_idx, ds.preprocess, batch_size=100, train=False)
    batches = list(ld)
    assert [len(b[1]) for b in batches] == [100, 100, 56]
    x0 = batches[0][0]
    assert x0.shape == (100, 1, 32, 32) and x0.dtype == torch.float32
    # the same numbers as the documented contract function (used by converter / HIL)
    raw = ds.test.images[ds.test_idx[:100]].numpy()
    assert torch.allclose(D.preprocess_images(raw, ds.preprocess.as_dict()), x0, atol=1e-6)
    # by hand: [0,1] -> bilinear (align_corners=False, no antialias) -> normalise
    ref = torch.nn.functional.interpolate(torch.from_numpy(raw).float()[:, None] / 255, size=(32, 32),
                                          mode="bilinear", align_corners=False)
    ref = (ref - ds.preprocess.mean[0]) / ds.preprocess.std[0]
    assert torch.allclose(ref, x0, atol=1e-5)
    # 3 channels: grey repeated
    pre3 = D.Preprocess("fashion-mnist", 40, 3, ds.preprocess.mean * 3, ds.preprocess.std * 3)
    x3 = D.preprocess_images(raw[:4], pre3)
    assert x3.shape == (4, 3, 40, 40)
    assert torch.equal(x3[:, 0], x3[:, 1]) and torch.equal(x3[:, 1], x3[:, 2])
    d = pre3.as_dict()
    assert d["interpolation"] == "bilinear" and len(d["mean"]) == 3


def test_crop_resize_identity_and_augmentation_changes_pixels(fmnist):
    img = fmnist.train.batch(fmnist.train_idx[:8])
    ident = torch.tensor([[0, 0, 1, 1, 0.0]] * 8, dtype=torch.float64)
    assert (D.crop_resize(img, ident, 32) - D.resize(img, 32)).abs().max() < 1e-5
    flip = ident.clone()
    flip[:, 4] = 1
    assert torch.allclose(D.crop_resize(img, flip, 28), img.flip(-1), atol=1e-5)
    params = D.sample_aug(1000, torch.Generator().manual_seed(0), D.AugConfig(scale_min=0.6))
    area = params[:, 2] * params[:, 3]
    assert area.min() >= 0.6 * 0.74 and area.max() <= 1.0 + 1e-9  # clipped w/h only shrink area
    assert (params[:, 0] >= 0).all() and (params[:, 0] + params[:, 2] <= 1 + 1e-9).all()
    assert 0.4 < params[:, 4].mean() < 0.6


def test_train_loader_deterministic_and_sharded(fmnist):
    ds = fmnist
    kw = dict(batch_size=16, train=True, seed=3)
    one = D.Loader(ds.train, ds.train_idx, ds.preprocess, **{**kw, "batch_size": 32})
    r0 = D.Loader(ds.train, ds.train_idx, ds.preprocess, rank=0, world=2, **kw)
    r1 = D.Loader(ds.train, ds.train_idx, ds.preprocess, rank=1, world=2, **kw)
    for ld in (one, r0, r1):
        ld.set_epoch(2)
    assert len(one) == len(r0) == len(r1) == 16
    (xa, ya), (xb, yb), (xc, yc) = next(iter(one)), next(iter(r0)), next(iter(r1))
    # union of the ranks' k-th batches == the single process's k-th global batch, same augmentation
    assert torch.equal(ya[0::2], yb) and torch.equal(ya[1::2], yc)
    assert torch.allclose(xa[0::2], xb, atol=1e-6) and torch.allclose(xa[1::2], xc, atol=1e-6)
    # same epoch -> same batches; another epoch -> another order
    again = next(iter(one))[1]
    one.set_epoch(3)
    assert torch.equal(again, ya) and not torch.equal(next(iter(one))[1], ya)
    # eval shards cover every sample exactly once
    e0 = D.Loader(ds.val, ds.val_idx, ds.preprocess, batch_size=50, train=False, rank=0, world=2)
    e1 = D.Loader(ds.val, ds.val_idx, ds.preprocess, batch_size=50, train=False, rank=1, world=2)
    assert sum(len(y) for _, y in e0) + sum(len(y) for _, y in e1) == len(ds.val_idx)


def test_missing_fashion_mnist_error(tmp_path):
    with pytest.raises(DataError) as ei:
        D.load_dataset("fashion-mnist", resolution=32, channels=1, data_dir=tmp_path,
                       download=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "apt-get install dataset-fashion-mnist" in msg and str(tmp_path) in msg
    assert "train-images-idx3-ubyte.gz" in msg


def _copy_fmnist(dst: Path) -> Path:
    src = datasets.find_fashion_mnist()
    if src is None:
        raise DataError("Fashion-MNIST not installed")
    for stem in datasets.FASHION_MNIST_FILES:
        name = stem + ".gz" if (src / (stem + ".gz")).is_file() else stem
        shutil.copy(src / name, dst / name)
    return dst


def test_corrupt_fashion_mnist_errors(tmp_path):
    try:
        d = _copy_fmnist(tmp_path)
    except DataError:
        pytest.skip("Fashion-MNIST not installed")
    labels = d / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    # valid gzip + IDX header, one label changed -> content MD5 mismatch
    bad = bytearray(raw)
    bad[100] = (bad[100] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(bad)))
    with pytest.raises(DataError, match="MD5.*t10k-labels|t10k-labels.*MD5"):
        D.load_fashion_mnist(d, download=False)
    # truncated gzip
    labels.write_bytes(gzip.compress(raw)[:200])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        D.load_fashion_mnist(d, download=False)
    # wrong IDX magic
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:]))
    with pytest.raises(DataError, match="magic"):
        D.load_fashion_mnist(d, download=False)


def _make_folder(root: Path, classes=("cat", "dog", "fox"), n=6, size=(20, 14), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            arr[..., 0] = ci * 80  # a class-dependent pixel
            Image.fromarray(arr, mode).save(root / c / f"{i}.png")


def test_image_folder_train_val_layout(tmp_path):
    _make_folder(tmp_path / "train", n=10)
    _make_folder(tmp_path / "val", n=3)
    ds = D.load_dataset(str(tmp_path), resolution=24, channels=3)
    assert ds.classes == ["cat", "dog", "fox"]
    assert len(ds.train_idx) == 27 and len(ds.val_idx) == 3 and len(ds.test_idx) == 9
    assert ds.preprocess.mean == D.IMAGENET_MEAN and ds.preprocess.std == D.IMAGENET_STD
    ld = D.Loader(ds.train, ds.train_idx, ds.preprocess, batch_size=8, train=True, seed=0,
                  workers=0)
    x, y = next(iter(ld))
    assert x.shape == (8, 3, 24, 24) and y.dtype == torch.int64
    te = D.Loader(ds.test, ds.test_idx, ds.preprocess, batch_size=4, train=False)
    assert sum(len(y) for _, y in te) == 9
    # grey model: images converted to L, mean/std measured on the training images
    g = D.load_dataset(str(tmp_path), resolution=16, channels=1, train_limit=5)
    assert len(g.train_idx) == 5 and len(g.preprocess.mean) == 1
    xg, _ = next(iter(D.Loader(g.train, g.train_idx, g.preprocess, batch_size=5, train=False)))
    assert xg.shape == (5, 1, 16, 16)


def test_image_folder_single_dir_split_is_deterministic_and_disjoint(tmp_path):
    _make_folder(tmp_path, n=20)
    a = D.load_dataset(str(tmp_path), resolution=16, channels=3)
    b = D.load_dataset(str(tmp_path), resolution=16, channels=3)
    assert torch.equal(a.train_idx, b.train_idx) and torch.equal(a.test_idx, b.test_idx)
    sets = [set(t.tolist()) for t in (a.train_idx, a.val_idx, a.test_idx)]
    assert sum(map(len, sets)) == 60 and len(set.union(*sets)) == 60


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        D.load_dataset("nope", resolution=32, channels=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        D.load_dataset(str(tmp_path / "empty"), resolution=32, channels=3)
    _make_folder(tmp_path / "bad", n=2)
    (tmp_path / "bad" / "cat" / "broken.png").write_bytes(b"not a png")
    ds = D.load_dataset(str(tmp_path / "bad"), resolution=16, channels=3, val_split=1)
    with pytest.raises(DataError) as ei:
        for idx in (ds.train_idx, ds.val_idx, ds.test_idx):
            list(D.Loader(ds.train, idx, ds.preprocess, batch_size=2, train=False))
    assert "broken.png" in str(ei.value) and "\n" not in str(ei.value)
