"""NetAug: super-net derivation, zero-overhead export, sampling, sorting, BN re-calibration,
training step, KD, bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from netaug_mcu.trainer import zoo
from netaug_mcu.trainer.errors import TrainError
from netaug_mcu.trainer.netaug.layers import DynamicBatchNorm2d
from netaug_mcu.trainer.netaug.strategy import NetAugError, NetAugStrategy, factor_list, WIDTH_DEFAULTS
from netaug_mcu.trainer.netaug.supernet import SuperNet, build_supernet

RES = 24


def _randomize(net: SuperNet, seed: int = 0, ch: int = 1) -> None:
    """Non-trivial BN affine parameters and data-calibrated running statistics (first of the max
    sub-net, then of the base slice), so that eval-mode activations keep a sane scale."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.momentum = 1.0
        x = torch.randn(8, ch, RES, RES, generator=g)
        net.train()
        for mode in ("max", "min"):
            net.set_active(mode)
            net(x)
        for m in bns:
            m.momentum = 0.1
    net.set_active("min")


def _supernet(name, ch=1, classes=10):
    torch.manual_seed(0)
    base = zoo.build(name, in_channels=ch, num_classes=classes, resolution=RES)
    s = NetAugStrategy(name, seed=0)
    net = s.prepare(base)
    _randomize(net)
    return s, base, net


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_min_subnet_equals_export_bit_exactly(name):
    s, base, net = _supernet(name)
    net.sort_channels()  # base slice now holds other channels than the copied plain weights
    net.eval()
    plain = s.export(net).eval()
    assert type(plain) is zoo.ZooNet and plain.arch == base.arch
    assert list(plain.state_dict()) == list(base.state_dict())
    x = torch.randn(3, 1, RES, RES)
    with torch.no_grad():
        net.set_active("min")
        a = net(x)
        b = plain(x)
    assert a.abs().max() > 1e-3  # not a degenerate all-zero comparison
    assert torch.equal(a, b)
    assert zoo.count(plain, RES, 1) == zoo.count(base, RES, 1)
    assert zoo.count(net, RES, 1)[1] == zoo.count(base, RES, 1)[1]  # min sub-net MACs == base MACs
    # a fresh super-net embeds the plain model exactly
    fresh = build_supernet(base, [1, 2], [1, 2])
    for k, v in fresh.export().state_dict().items():
        assert torch.equal(v, base.state_dict()[k]), k


def test_sampling_widths_and_determinism():
    _, base, net = _supernet("mbv2-tiny")
    g = torch.Generator().manual_seed(5)
    cfgs = [net.set_active("random", g) for _ in range(12)]
    assert len({str(c) for c in cfgs}) > 6
    base_cfg = net.set_active("min")
    assert base_cfg["out"] == [b.project.conv.out_channels for b in base.blocks]
    assert base_cfg["mid"] == [b.depthwise.conv.out_channels for b in base.blocks]
    # residual blocks inherit their input width; widths come from the candidate lists
    for c in cfgs:
        for i, b in enumerate(net.blocks):
            if b.use_res:
                assert c["out"][i] == c["out"][i - 1]
        assert c["stem"] in net.stem_c and c["head"] in net.head_c
    # min_w: widths at base, expand varies
    mw = [net.set_active("min_w", g) for _ in range(8)]
    assert all(c["out"] == base_cfg["out"] and c["head"] == base_cfg["head"] for c in mw)
    assert len({str(c["mid"]) for c in mw}) > 1
    # same seed -> same sequence (identical on every rank)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert [net.set_active("random", g1) for _ in range(5)] == [net.set_active("random", g2) for _ in range(5)]
    # the max sub-net uses all allocated channels
    mx = net.set_active("max")
    assert mx["head"] == net.head.conv.weight.shape[0]
    x = torch.randn(2, 1, RES, RES)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 10)


@pytest.mark.parametrize("name", ["mbv2-tiny", "mbv3-w0.35"])
def test_sort_preserves_supernet_function(name):
    _, _, net = _supernet(name)
    net.double().eval().set_active("max")  # float64: the permuted sums agree to ~1e-12
    x = torch.randn(2, 1, RES, RES, dtype=torch.float64)
    with torch.no_grad():
        y1 = net(x)
        net.set_active("min")
        m1 = net(x)
        w = net.blocks[2].project.conv.weight.clone()
        net.sort_channels()
        net.set_active("max")
        y2 = net(x)
        net.set_active("min")
        m2 = net(x)
    assert not torch.equal(w, net.blocks[2].project.conv.weight)
    assert torch.allclose(y1, y2, rtol=1e-9, atol=1e-9 * y1.abs().max().item())
    assert not torch.allclose(m1, m2)  # the base sub-net got other (more important) channels
    imp = net.blocks[2].project.conv.weight.abs().sum((0, 2, 3))
    assert torch.all(imp[:-1] >= imp[1:])


def test_bn_slice_running_stats_and_reset_bn():
    _, _, net = _supernet("mcunet-in0")
    bn = net.blocks[1].depthwise.bn
    k = net.blocks[1].depthwise.conv.weight.shape[0]
    net.train().set_active("min")
    before = bn.running_mean.clone()
    net(torch.randn(4, 1, RES, RES))
    used = (bn.running_mean != before).nonzero().flatten()
    assert len(used) > 0 and used.max() < net.blocks[1].expand.conv.active_out < k
    # reset_bn: eval-mode stats == statistics of the calibration data (one batch: exact)
    x = torch.randn(16, 1, RES, RES) * 2 + 1
    n = net.reset_bn([(x, None)])
    assert n == 16
    net.eval()
    with torch.no_grad():
        y_eval = net(x)
    # train-mode forward on the same batch normalises with the same (biased-variance) statistics
    for m in net.modules():
        if isinstance(m, DynamicBatchNorm2d):
            m.calib = []  # batch-statistics normalisation without touching running stats
    with torch.no_grad():
        y_batch = net(x)
    for m in net.modules():
        if isinstance(m, DynamicBatchNorm2d):
            m.calib = None
    assert torch.allclose(y_eval, y_batch, atol=1e-4)


def test_netaug_step_lowers_loss():
    torch.manual_seed(0)
    base = zoo.build("mbv2-tiny", in_channels=1, num_classes=4, resolution=16)
    s = NetAugStrategy("mbv2-tiny", aug_width=[1, 1.5], aug_expand=[1, 1.5], seed=1)
    net = s.prepare(base)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    x, y = torch.randn(16, 1, 16, 16), torch.arange(16) % 4
    s.on_epoch_start(0, 4)
    assert s.mode == "random"
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss, logits = s.train_step(net, net, x, y, crit)
        assert logits.shape == (16, 4)
        opt.step()
        losses.append(loss)
    assert losses[-1] < losses[0] * 0.7, losses
    # both passes contribute: the widened part of a shared weight gets gradients too
    w = net.head.conv.weight
    assert w.grad[w.shape[0] // 2:].abs().sum() > 0
    s.on_epoch_start(2, 4)
    assert s.mode == "min_w"
    st = s.state_dict()
    s2 = NetAugStrategy("mbv2-tiny", aug_width=[1, 1.5], aug_expand=[1, 1.5], seed=99)
    s2.load_state_dict(st)
    assert torch.equal(s2.generator.get_state(), s.generator.get_state()) and s2.mode == "min_w"


def test_defaults_and_factor_lists():
    assert factor_list(2.8, 3) == [1.0, 1.6, 2.2, 2.8]
    assert factor_list(2.6, 2) == [1.0, 1.8, 2.6]
    assert NetAugStrategy("mbv2-tiny").aug_width == [1.0, 1.8, 2.6]
    assert NetAugStrategy("mcunet-in3").aug_width == [1.0, 1.6, 2.2]
    assert NetAugStrategy("mbv3-w0.35").aug_width == [1.0, 2.0, 3.0]
    assert NetAugStrategy("mbv2-tiny").aug_expand == [1.0, 1.6, 2.2, 2.8]
    assert set(WIDTH_DEFAULTS) == set(zoo.MODELS)


@pytest.mark.parametrize("bad", [[], [1.5, 2.0], [1.0, 0.5], [2.0, 1.0], [1.0, 1.0], ["x"]])
def test_bad_aug_lists_rejected(bad):
    with pytest.raises(NetAugError) as e:
        NetAugStrategy("mbv2-tiny", aug_width=bad)
    assert e.value.exit_code == 2
    with pytest.raises(NetAugError):
        NetAugStrategy("mbv2-tiny", aug_expand=bad)


def test_bad_alpha_and_model():
    with pytest.raises(NetAugError):
        NetAugStrategy("mbv2-tiny", alpha=-1)
    with pytest.raises(NetAugError):
        NetAugStrategy("nope")


def test_kd_loss_and_teacher(tmp_path):
    from netaug_mcu.trainer import kd

    s = torch.randn(4, 10)
    assert kd.kd_loss(s, s.clone(), 4.0).abs() < 1e-6
    t = torch.randn(4, 10)
    ref = (torch.softmax(t / 2, 1) * (torch.log_softmax(t / 2, 1) - torch.log_softmax(s / 2, 1))).sum(1).mean() * 4
    assert torch.allclose(kd.kd_loss(s, t, 2.0), ref, atol=1e-6)
    teacher = zoo.build("mcunet-in0", in_channels=3, num_classes=10, resolution=32)
    p = tmp_path / "teacher.pt"
    torch.save({"format": "netaug-mcu/model/1", "arch": teacher.arch, "state_dict": teacher.state_dict(),
                "preprocess": {"resolution": 32, "channels": 3, "mean": [0.5] * 3, "std": [0.25] * 3}}, p)
    tm = kd.load_teacher(p, num_classes=10, student_preprocess={"mean": [0.3], "std": [0.3]})
    assert tm(torch.randn(2, 1, 20, 20)).shape == (2, 10)  # grey->RGB, resize, re-normalise
    assert not any(q.requires_grad for q in tm.parameters())
    with pytest.raises(TrainError) as e:
        kd.load_teacher(p, num_classes=5)
    assert e.value.exit_code == 2 and "classes" in str(e.value)
    with pytest.raises(TrainError):
        kd.load_teacher(tmp_path / "missing.pt", num_classes=10)
    # NetAug + KD: the KD term is part of the reported base loss
    base = zoo.build("mcunet-in0", in_channels=1, num_classes=10, resolution=16)
    st = NetAugStrategy("mcunet-in0", aug_width=[1, 1.5], aug_expand=[1, 1.5], teacher=tm, kd_weight=1.0,
                        kd_temperature=2.0)
    net = st.prepare(base)
    x, y = torch.randn(4, 1, 16, 16), torch.arange(4)
    loss, _ = st.train_step(net, net, x, y, nn.CrossEntropyLoss())
    net.set_active("min")
    with torch.no_grad():
        ce = nn.CrossEntropyLoss()(net(x), y).item()
    assert loss > ce


def test_supernet_is_trainable_module_with_same_keys():
    _, base, net = _supernet("mcunet-in1")
    assert isinstance(net, SuperNet)
    assert list(net.state_dict()) == list(base.state_dict())
    assert sum(p.numel() for p in net.parameters()) > 5 * sum(p.numel() for p in base.parameters())


def test_benchmark_quick_mode(tmp_path, capsys):
    """bench/netaug_vs_baseline.py --quick runs end to end, writes the required keys, resumes."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("netaug_bench", root / "bench/netaug_vs_baseline.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "q" / "netaug_quick"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    for k in ("baseline_top1_mean", "netaug_top1_mean", "baseline_top1_std", "netaug_top1_std", "gain_pp",
              "gain_se_pp", "seeds", "epochs", "baseline_converged", "epoch_time_ratio", "equal_wall_clock",
              "protocol"):
        assert k in res, k
    assert res["seeds"] == [0, 1] and res["protocol"]["quick"] is True
    assert res["epoch_time_ratio"] > 1.0  # the aug pass costs extra
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").stat().st_size > 1000
    capsys.readouterr()
    # rerun = resume: every run is already finished, nothing is retrained, same figures
    assert bench.main(["--quick", "--out", str(out)]) == 0
    assert "epoch 1/" not in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["gain_pp"] == res["gain_pp"]
    assert bench.main(["--quick", "--aug-width", "2,3", "--out", str(out)]) == 2
    assert "must contain 1.0" in capsys.readouterr().err


_DDP_CALIB_SCRIPT = r"""
import os, socket, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
from netaug_mcu.trainer import zoo
from netaug_mcu.trainer.netaug.supernet import build_supernet

def case():
    torch.manual_seed(0)
    net = build_supernet(zoo.build("mcunet-in0", in_channels=1, num_classes=10, resolution=16), [1, 2], [1, 2])
    x = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 3 + 1
    return net, x

def stats(net):
    bns = [net.stem.bn, net.blocks[2].depthwise.bn, net.blocks[-1].project.bn]
    return [b.running_var[:8].tolist() for b in bns] + [b.running_mean[:8].tolist() for b in bns]

def work(rank, port, q):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    net, x = case()
    net.reset_bn([(x[rank * 4:(rank + 1) * 4], None)])  # each rank sees half of the batch
    q.put((rank, stats(net)))
    dist.destroy_process_group()

if __name__ == "__main__":
    net, x = case()
    net.reset_bn([(x, None)])
    ref = stats(net)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    ctx = mp.get_context("spawn"); q = ctx.Queue()
    ps = [ctx.Process(target=work, args=(r, port, q)) for r in range(2)]
    [p.start() for p in ps]
    res = [q.get(timeout=120) for _ in ps]
    [p.join(timeout=60) for p in ps]
    # error relative to the layer's largest statistic (deep layers accumulate float error ~1e-5);
    # an unsynced per-rank estimate from 4 of the 8 samples is off by ~10%
    err = max(max(abs(u - v) for u, v in zip(a, b)) / (max(map(abs, b)) + 1e-30)
              for _, st in res for a, b in zip(st, ref))
    print("max relative error", err)
    ok = sorted(r for r, _ in res) == [0, 1] and err < 1e-3
    print("SYNCED_OK" if ok else "SYNCED_MISMATCH")
"""


def test_reset_bn_averages_across_ranks(tmp_path):
    """2-process gloo: each rank re-calibrates on half of a batch; the synced statistics equal the
    single-process statistics of the whole batch (reference: mean synced, then variance around it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp_calib.py"
    script.write_text(_DDP_CALIB_SCRIPT)
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env)
    assert "SYNCED_OK" in r.stdout, (r.stdout[-1000:], r.stderr[-2000:])


def test_underfit_benchmark_arms_and_resume(tmp_path, capsys):
    """bench/netaug_underfit.py: the four Table 2 arms + teacher, regime and gains written; a rerun
    retrains nothing; bad input is a one-line error (exit 2)."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("netaug_underfit", root / "bench/netaug_underfit.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "u" / "res"
    argv = ["--train-images", "256", "--test-images", "200", "--calib-images", "128", "--epochs", "2",
            "--teacher-epochs", "2", "--batch-size", "64", "--seeds", "0", "--resolution", "12",
            "--no-equal-wall-clock", "--work", str(tmp_path / "w"), "--out", str(out)]
    assert bench.main(argv) == 0
    res = json.loads(out.with_suffix(".json").read_text())
    assert set(res["arms"]) == {"baseline", "kd", "netaug", "netaug_kd"}
    assert set(res["gains_equal_epochs"]) == {"kd", "netaug", "netaug_kd"}
    assert res["teacher"]["params"] > 10 * 3814 and res["protocol"]["full_protocol"] is False  # wider teacher
    assert isinstance(res["regime"]["underfits"], bool)
    assert len(res["arms"]["netaug"]["train_curve"]) == 2
    assert out.with_suffix(".png").stat().st_size > 1000
    capsys.readouterr()
    assert bench.main(argv) == 0
    assert "epoch 1/" not in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["gains_equal_epochs"] == res["gains_equal_epochs"]
    assert bench.main(argv[:-4] + ["--train-images", "70000"]) == 2
    assert "60000" in capsys.readouterr().err
    assert bench.main(argv + ["--arms", "baseline,dropout"]) == 2
    assert "--arms" in capsys.readouterr().err
    b = res["arms"]["baseline"]  # the regime compares like with like: eval-mode train vs test top-1
    assert res["regime"]["baseline_train_minus_test_pp"] == b["train_minus_test_pp"]
    assert res["regime"]["baseline_train_running_minus_test_pp"] == b["train_running_minus_test_pp"]
    assert len(b["train_eval_curve"]) == 2 and 0 <= b["train_eval_top1"][0] <= 100


def test_underfit_benchmark_jobs_match_in_process(tmp_path):
    """--jobs 2 trains each run in a child process: same records as in-process training, and the
    protocol's work directory is keyed so another student never reuses these runs."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("netaug_underfit", root / "bench/netaug_underfit.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    common = ["--train-images", "256", "--test-images", "200", "--calib-images", "128", "--epochs", "2",
              "--batch-size", "64", "--seeds", "0,1", "--resolution", "12", "--arms", "baseline,netaug"]
    got = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"j{jobs}" / "res"
        assert bench.main(common + ["--jobs", jobs, "--work", str(tmp_path / f"w{jobs}"), "--out", str(out)]) == 0
        got[jobs] = json.loads(out.with_suffix(".json").read_text())
    assert got["1"]["teacher"] is None and set(got["1"]["arms"]) == {"baseline", "netaug"}
    for a in ("baseline", "netaug"):
        assert got["1"]["arms"][a]["per_seed_test_top1"] == got["2"]["arms"][a]["per_seed_test_top1"]
        assert got["1"]["arms"][a]["train_eval_curve"] == got["2"]["arms"][a]["train_eval_curve"]
    assert got["1"]["gains_equal_epochs"] == got["2"]["gains_equal_epochs"]
    nano = bench.work_dir(bench.parse(common + ["--model", "nano", "--work", str(tmp_path / "w1")]))
    assert nano != bench.work_dir(bench.parse(common + ["--work", str(tmp_path / "w1")])) and not nano.exists()
