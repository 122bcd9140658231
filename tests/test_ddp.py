"""DDP on CPU (gloo): 2 processes vs 1.

What is asserted, and why it is true:
- Baseline, BN-free model: 2 ranks x per-rank batch b (lr scaled x2) == 1 process x batch 2b
  within float tolerance. The loader gives rank r the samples r, r+2, ... of the global batch with
  the same per-sample augmentation, DDP averages the two per-rank mean gradients = the gradient of
  the global-batch mean. (With BatchNorm in train mode this would NOT hold: each rank normalises
  with its own half-batch statistics, so that comparison is only made for a model without BN.)
- Both ranks end bit-identical (weights and buffers), with different data on each rank.
- NetAug (two backward passes, the first under no_sync): ranks bit-identical. That holds only if
  the base-pass gradients are carried by the all-reduce of the aug pass and both ranks sampled the
  same sub-net, because each rank sees different images.
- The real CLI under torchrun trains and writes one model.pt; ranks started with different
  settings stop with a one-line error.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from netaug_mcu.common.datasets import find_fashion_mnist
from netaug_mcu.trainer import data as D
from netaug_mcu.trainer import engine
from netaug_mcu.trainer.config import make_config

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TinyNoBN(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                               nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.classifier(self.f(x))


def tiny_nobn(num_classes: int) -> nn.Module:
    return TinyNoBN(num_classes)


@pytest.fixture(scope="module")
def compact_ds():
    """A small Fashion-MNIST subset with its own compact tensors (cheap to send to processes)."""
    try:
        ds = D.load_dataset("fashion-mnist", resolution=16, channels=1, train_limit=256,
                            val_limit=64, test_limit=64, download=False)
    except D.DataError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")
    tr = torch.cat([ds.train_idx, ds.val_idx])
    src = D.ArraySource(ds.train.images[tr].clone(), ds.train.labels[tr].clone())
    test = D.ArraySource(ds.test.images[ds.test_idx].clone(), ds.test.labels[ds.test_idx].clone())
    n = len(ds.train_idx)
    return dataclasses.replace(ds, train=src, val=src, train_idx=torch.arange(n),
                               val_idx=torch.arange(n, len(tr)), test=test,
                               test_idx=torch.arange(len(ds.test_idx)))


def _worker(rank, world, jobs, ds, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    for name, port, cfg_kw, use_nobn in jobs:  # one process group per job (engine inits/destroys)
        os.environ["MASTER_PORT"] = str(port)
        cfg = make_config({}, cfg_kw)
        res = engine.run_training(cfg, dataset=ds, model_factory=tiny_nobn if use_nobn else None,
                                  log=lambda s: None)
        torch.save({k: v.detach().clone() for k, v in res["module"].state_dict().items()},
                   Path(out_dir) / f"{name}-rank{rank}.pt")


def _base_cfg(out, **kw):
    d = dict(model="mbv2-tiny", resolution=16, channels=1, epochs=2, batch_size=16, lr=0.05,
             warmup_epochs=0, out=str(out), progress=False, device="cpu", seed=1)
    d.update(kw)
    return d



@pytest.fixture(scope="module")
def spawned(tmp_path_factory, compact_ds):
    """One 2-process gloo spawn running the baseline job and (when present) the NetAug job."""
    d = tmp_path_factory.mktemp("ddp")
    jobs = [("base", _free_port(), _base_cfg(d / "base"), True)]
    jobs.append(("netaug", _free_port(), _base_cfg(d / "netaug", epochs=1, netaug=True, calib_images=64), False))
    mp.spawn(_worker, args=(2, jobs, compact_ds, str(d)), nprocs=2, join=True)
    return d, {name: [torch.load(d / f"{name}-rank{r}.pt") for r in range(2)]
               for name, _, _, _ in jobs}


def test_ddp_two_ranks_match_single_process_global_batch(tmp_path, compact_ds, spawned):
    d, states = spawned
    s0, s1 = states["base"]
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = engine.run_training(
            make_config({}, _base_cfg(tmp_path / "one", batch_size=32, lr=0.1)),
            dataset=compact_ds, model_factory=tiny_nobn, log=lambda s: None)
    finally:
        torch.set_num_threads(n)
    ss = single["module"].state_dict()
    torch.manual_seed(1)  # the engine seeds with cfg.seed before building the model
    init = tiny_nobn(10).state_dict()
    moved = max((ss[k] - init[k]).abs().max().item() for k in ss)
    diff = max((ss[k] - s0[k]).abs().max().item() for k in ss)
    assert moved > 1e-2, "training did not change the weights"
    assert diff < 1e-5, f"2x16 DDP vs 1x32: max |diff| {diff}"
    # only rank 0 wrote files; the run records its world size and scaled lr
    m = torch.load(d / "base" / "model.pt", weights_only=False)
    assert m["train_config"]["world_size"] == 2 and m["train_config"]["peak_lr"] == pytest.approx(0.1)


def test_ddp_netaug_ranks_identical(spawned):
    d, states = spawned
    s0, s1 = states["netaug"]
    assert s0.keys() == s1.keys()
    for k in s0:
        assert torch.equal(s0[k], s1[k]), k
    m = torch.load(d / "netaug" / "model.pt", weights_only=False)
    assert m["train_config"]["strategy"] == "netaug" and m["train_config"]["world_size"] == 2


def _env(**kw):
    e = dict(os.environ, OMP_NUM_THREADS="1", **{k: str(v) for k, v in kw.items()})
    e.pop("NETAUG_MCU_DEBUG", None)
    return e


def test_torchrun_cli_and_mismatched_settings(tmp_path):
    if find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST not installed")
    common = ["train", "--model", "mbv2-tiny", "--resolution", "16", "--epochs", "1",
              "--train-limit", "128", "--val-limit", "64", "--test-limit", "64",
              "--batch-size", "16", "--no-progress", "--no-download"]
    # 1) ranks launched by hand with different --seed: one-line error on each, non-zero exit
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "netaug_mcu", *common, "--seed", str(r),
                               "--out", str(tmp_path / "mm")], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=_env(RANK=r, WORLD_SIZE=2, LOCAL_RANK=r,
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert p.returncode == 2, err
        assert len(lines) == 1 and "ranks disagree on settings" in lines[0] and "seed" in lines[0]
        assert "Traceback" not in err + out
    # 2) torchrun: 2 gloo processes, one set of outputs
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", str(_free_port()), "-m", "netaug_mcu", *common,
                        "--out", str(tmp_path / "tr")], cwd=REPO, text=True,
                       capture_output=True, env=_env(), timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("outputs in") == 1
    m = torch.load(tmp_path / "tr" / "model.pt", weights_only=False)
    assert m["train_config"]["world_size"] == 2
    recs = (tmp_path / "tr" / "metrics.jsonl").read_text().splitlines()
    assert len(recs) == 1 and json.loads(recs[0])["epoch"] == 1
