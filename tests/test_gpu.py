"""The CUDA path of the trainer: channels_last + autocast (bf16, fp16 with loss scaling), batches
built on the device, NetAug, export to the plain CPU model, and DDP over NCCL under torchrun.

Skips without a GPU (this project's CI box has none). What is asserted:
- a bf16 / fp16 run trains (the loss goes down), writes model.pt with float32 CPU tensors equal to
  the trained module's weights, and the exported model runs on CPU;
- a preloaded dataset's batches on the GPU equal the CPU batches (the same crops, the same
  normalisation; float tolerance: the GPU's bilinear sampling rounds differently);
- torchrun with 2 NCCL ranks (when 2 GPUs exist) trains NetAug and writes one model.pt.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from netaug_mcu.trainer import data as D
from netaug_mcu.trainer import engine
from netaug_mcu.trainer.config import make_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU in this machine")


@pytest.fixture(scope="module")
def ds():
    try:
        return D.load_dataset("fashion-mnist", resolution=32, channels=1, train_limit=2048,
                              val_limit=256, test_limit=256, download=False)
    except D.DataError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")


def test_device_batches_match_cpu(ds):
    kw = dict(batch_size=64, train=True, seed=3)
    cpu = D.Loader(ds.train, ds.train_idx[:256], ds.preprocess, **kw)
    gpu = D.Loader(ds.train, ds.train_idx[:256], ds.preprocess, device="cuda", **kw)
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and yg.is_cuda
        assert torch.equal(yc, yg.cpu())
        assert torch.allclose(xc, xg.cpu(), atol=1e-4)


@pytest.mark.parametrize("amp,netaug", [("bf16", False), ("fp16", True), ("off", True)])
def test_cuda_training_amp(tmp_path, ds, amp, netaug):
    cfg = make_config({}, dict(model="mbv2-tiny", resolution=32, channels=1, epochs=2, batch_size=128,
                               lr=0.1, warmup_epochs=0, out=str(tmp_path / "run"), progress=False,
                               device="cuda", amp=amp, netaug=netaug, calib_images=512))
    res = engine.run_training(cfg, dataset=ds, log=lambda s: None)
    hist = res["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"], hist
    m = torch.load(tmp_path / "run" / "model.pt", weights_only=False)
    for k, v in m["state_dict"].items():
        assert v.device.type == "cpu" and v.is_contiguous(), k
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
    assert m["metrics"]["test_top1"] > 30.0, m["metrics"]  # 10 classes: far above chance
    if not netaug:  # the last epoch's export holds the trained module's weights, bit for bit
        last = torch.load(tmp_path / "run" / "model_last.pt", weights_only=False)["state_dict"]
        live = res["module"].state_dict()
        for k, v in last.items():
            assert torch.equal(v, live[k].cpu().contiguous()), k


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP over NCCL needs 2 GPUs")
def test_torchrun_nccl_netaug(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", str(port), "-m", "netaug_mcu", "train", "--model", "mbv2-tiny",
                        "--dataset", "fashion-mnist", "--resolution", "32", "--epochs", "1",
                        "--train-limit", "2048", "--netaug", "--device", "cuda", "--amp", "bf16",
                        "--no-progress", "--no-download", "--out", str(tmp_path / "tr")],
                       cwd=REPO, text=True, capture_output=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = torch.load(tmp_path / "tr" / "model.pt", weights_only=False)
    assert m["train_config"]["world_size"] == 2 and m["train_config"]["amp"] == "bf16"
    assert len((tmp_path / "tr" / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "tr" / "summary.json").read_text())
