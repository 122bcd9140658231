"""Converter: PyTorch -> ONNX -> onnx2tf -> full-int8 TFLite, report, guarantees, bad input.

Heavy conversions happen once per session (fixtures below) and are cached on disk under
~/.cache/netaug-mcu/test-models/<hash of converter+zoo sources and parameters>.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("onnx2tf") is None or importlib.util.find_spec("tflite_micro") is None:
    pytest.skip("conversion dependencies (onnx2tf, tflite-micro) not installed", allow_module_level=True)

from netaug_mcu.converter import convert as cv  # noqa: E402
from netaug_mcu.common import datasets as ds  # noqa: E402
from netaug_mcu.common import preprocess as pre_mod  # noqa: E402
from netaug_mcu.common.tflite_model import load as load_tflite  # noqa: E402
from netaug_mcu.common.tflm_ops import TFLM_BUILTIN_OPS  # noqa: E402
from netaug_mcu.converter.errors import ConvertError  # noqa: E402
from netaug_mcu.converter.graph_checks import check_tflm_compatible  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ZOO_SMALL = [("mcunet-in1", 48, 3), ("mbv3-w0.35", 47, 3)]  # all 9 at full size: opt-in test


def _source_hash(*extra) -> str:
    h = hashlib.sha256(json.dumps(extra).encode())
    mine = ("onnx_export.py", "_onnx2tf_worker.py", "quantize.py", "graph_checks.py", "convert.py", "evaluate.py")
    floor = ("datasets.py", "preprocess.py", "tflite_model.py", "tflm_ops.py")
    for p in [REPO / "converter" / m for m in mine] + [REPO / "common" / m for m in floor] + [REPO / "trainer" / "zoo.py"]:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _cache_dir(tag: str, *params) -> Path:
    d = Path.home() / ".cache" / "netaug-mcu" / "test-models" / f"{tag}-{_source_hash(tag, *params)}"
    d.mkdir(parents=True, exist_ok=True)
    return d


RES = 16  # small, so that the one-off training of the fixture model is cheap


def _make_checkpoint(path: Path) -> None:
    """mbv2-tiny @16, 1 channel, 10 classes, trained briefly (32 Adam steps on 4k Fashion-MNIST
    images, BN statistics re-estimated; ~55 % top-1). A randomly initialised deep net is chaotic
    (1-LSB differences flip its argmax), which would make the numerics checks meaningless."""
    from netaug_mcu.trainer import zoo

    torch.manual_seed(0)
    arch = dict(name="mbv2-tiny", in_channels=1, num_classes=10, resolution=RES)
    model = zoo.build(**arch)
    pp = {"dataset": "fashion-mnist", "resolution": RES, "channels": 1, "mean": [0.2860], "std": [0.3530],
          "interpolation": "bilinear"}
    x, y = ds.load_fashion_mnist("train")
    n, b = 4096, 128
    xb = torch.from_numpy(pre_mod.preprocess(x[:n], pp).transpose(0, 3, 1, 2).copy())
    yb = torch.from_numpy(y[:n])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for i in range(0, n, b):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb[i:i + b]), yb[i:i + b]).backward()
        opt.step()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    with torch.no_grad():
        model(xb[:1024])
    model.eval()
    tmp = path.with_suffix(".tmp")
    torch.save({"format": "netaug-mcu/model/1", "arch": arch, "state_dict": model.state_dict(),
                "preprocess": pp, "classes": ds.FASHION_MNIST_CLASSES, "metrics": {}, "train_config": {}},
               tmp)
    os.replace(tmp, path)


@pytest.fixture(scope="session")
def converted():
    """(model.pt, model.tflite, report) of the session's checkpoint conversion (cached)."""
    zoo_hash = hashlib.sha256((REPO / "trainer" / "zoo.py").read_bytes()).hexdigest()[:12]
    ck_dir = Path.home() / ".cache" / "netaug-mcu" / "test-models" / f"ckpt-mbv2-tiny{RES}-{zoo_hash}"
    ck_dir.mkdir(parents=True, exist_ok=True)
    pt = ck_dir / "model.pt"
    if not pt.is_file():
        _make_checkpoint(pt)
    d = _cache_dir(f"mbv2-tiny{RES}", zoo_hash, 100, 200)
    tfl, js = d / "model.tflite", d / "model.json"
    if not (tfl.is_file() and js.is_file()):
        cv.convert_checkpoint(pt, tfl, calib_samples=100, eval_samples=200, quiet=True)
    return pt, tfl, json.loads(js.read_text())


@pytest.fixture(scope="session")
def zoo_small():
    """Random-weight zoo models at small resolutions (cached): {name: (tflite path, report)}."""
    out = {}
    for name, res, ch in ZOO_SMALL:
        d = _cache_dir(f"zoo-{name}", res, ch)
        tfl = d / "model.tflite"
        rep = cv.convert_zoo(name, res, ch, 10, tfl, calib_samples=16, check_samples=5, quiet=True)
        out[name] = (tfl, rep)
    return out


# ------------------------------------------------------------------ numpy data path

@pytest.mark.parametrize("h,w,res,ch", [(28, 28, 32, 1), (28, 28, 96, 3), (28, 28, 20, 1), (37, 50, 17, 3),
                                        (28, 28, 28, 1)])
def test_preprocess_matches_torch_bilinear(h, w, res, ch):
    import torch.nn.functional as F

    rng = np.random.default_rng(h * w + res)
    im = rng.integers(0, 256, (4, h, w), dtype=np.uint8)
    mean, std = [0.3] * ch, [0.25] * ch
    got = pre_mod.preprocess(im, {"resolution": res, "channels": ch, "mean": mean, "std": std})
    t = torch.from_numpy(im.copy()).float().div(255).unsqueeze(1)
    t = F.interpolate(t, size=(res, res), mode="bilinear", align_corners=False, antialias=False)
    t = ((t.repeat(1, ch, 1, 1) - 0.3) / 0.25).permute(0, 2, 3, 1).numpy()
    assert got.shape == (4, res, res, ch) and got.dtype == np.float32
    assert np.abs(got - t).max() < 1e-5  # = ~1e-6 before the /std scaling


def test_preprocess_rejects_colour_to_grey():
    with pytest.raises(ValueError):
        pre_mod.preprocess(np.zeros((1, 8, 8, 3), np.uint8), {"resolution": 8, "channels": 1})


def test_quantize_input_rounds_half_away_from_zero_and_saturates():
    x = np.array([0.5, 1.5, -0.5, -1.5, 2.49, 1000.0, -1000.0], np.float32)
    q = pre_mod.quantize(x, 1.0, 0)
    assert q.dtype == np.int8
    assert q.tolist() == [1, 2, -1, -2, 2, 127, -128]
    assert pre_mod.quantize(np.array([0.0]), 0.1, -5).tolist() == [-5]


def test_fashion_mnist_idx_reader():
    x, y = ds.load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))


def test_read_idx_rejects_garbage(tmp_path):
    p = tmp_path / "bad-idx"
    p.write_bytes(b"\x00\x00\x08\x03" + (100).to_bytes(4, "big") * 3 + b"\x00" * 10)
    with pytest.raises(ds.DatasetError, match="truncated"):
        ds.read_idx(p)
    p.write_bytes(b"hello world")
    with pytest.raises(ds.DatasetError):
        ds.read_idx(p)


# ------------------------------------------------------------------ ONNX surgery (fast, no TF)

def _pad_conv_onnx(pads_hw_begin_end, stride, size=8):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    (hb, wb), (he, we) = pads_hw_begin_end
    nodes = [helper.make_node("Pad", ["x", "pads"], ["xp"], name="/stem/pad/Pad", mode="constant"),
             helper.make_node("Conv", ["xp", "w"], ["y"], name="/stem/conv/Conv", kernel_shape=[3, 3],
                              strides=[stride, stride])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, size, size])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"),
                           numpy_helper.from_array(np.array([0, 0, hb, wb, 0, 0, he, we], np.int64), "pads")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_pad_folded_into_stride2_conv_as_tf_same():
    from netaug_mcu.converter.onnx_export import fold_same_padding, onnx_reference

    m = _pad_conv_onnx(((0, 0), (1, 1)), stride=2)
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 8)).astype(np.float32)
    before = onnx_reference(m, x)
    stats = fold_same_padding(m)
    assert stats == {"pads_folded": 1, "convs_same": 1}
    assert [n.op_type for n in m.graph.node] == ["Conv"]
    attrs = {a.name: a for a in m.graph.node[0].attribute}
    assert attrs["auto_pad"].s == b"SAME_UPPER" and "pads" not in attrs
    np.testing.assert_allclose(onnx_reference(m, x), before, rtol=0, atol=1e-5)


def test_symmetric_stride2_padding_is_not_rewritten():
    """torch's padding=1 on a stride-2 conv over an even input is not TF SAME: must stay explicit."""
    from netaug_mcu.converter.onnx_export import fold_same_padding

    m = _pad_conv_onnx(((1, 1), (1, 1)), stride=2)
    stats = fold_same_padding(m)
    assert stats["convs_same"] == 0
    conv = m.graph.node[-1]
    assert [list(a.ints) for a in conv.attribute if a.name == "pads"] == [[1, 1, 1, 1]]


def test_spatial_mean_becomes_global_average_pool():
    from netaug_mcu.converter.onnx_export import onnx_reference, prepare_onnx

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    torch.manual_seed(0)
    m = M().eval()
    proto, stats = prepare_onnx(m, (1, 1, 8, 8))
    ops = [n.op_type for n in proto.graph.node]
    assert stats["means_replaced"] == 1 and "ReduceMean" not in ops and "GlobalAveragePool" in ops
    x = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(onnx_reference(proto, x), m(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_unexpressible_layer_is_a_convert_error(tmp_path):
    class FFT(torch.nn.Module):
        def forward(self, x):
            return torch.fft.fft2(x).abs().flatten(1)

    out = tmp_path / "m.tflite"
    pp = {"resolution": 8, "channels": 1, "mean": [0.0], "std": [1.0]}
    with pytest.raises(ConvertError, match="fft"):
        cv.convert_module(FFT(), pp, out, calib=np.zeros((2, 8, 8, 1), np.float32), quiet=True)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ converted checkpoint: guarantees

def test_report_fields(converted):
    _, tfl, rep = converted
    for key in ("input", "output", "preprocess", "op_histogram", "weight_bytes", "file_bytes", "macs",
                "float_top1", "int8_top1", "tflm_top1", "agreement", "max_logit_diff", "eval_samples"):
        assert key in rep, key
    assert rep["file_bytes"] == tfl.stat().st_size
    assert 0 < rep["weight_bytes"] < rep["file_bytes"]
    assert rep["eval_samples"] == 200 and rep["calib_samples"] == 100
    assert rep["input"]["shape"] == [1, RES, RES, 1] and rep["output"]["shape"] == [1, 10]
    assert rep["preprocess"]["mean"] == [0.2860]
    s = load_tflite(tfl.read_bytes())
    assert rep["op_histogram"] == s.op_histogram and rep["macs"] == s.macs > 0
    # MACs of the graph equal the zoo's own count for the same architecture (conv+fc MACs)
    from netaug_mcu.trainer import zoo

    counted = zoo.count(zoo.build("mbv2-tiny", 1, 10, RES), resolution=RES, in_channels=1)
    macs = counted["macs"] if isinstance(counted, dict) else counted[1]
    assert abs(rep["macs"] - macs) / macs < 0.02


def test_no_pad_or_transpose_in_converted_checkpoint(converted):
    _, _, rep = converted
    assert not set(rep["op_histogram"]) & {"PAD", "PADV2", "TRANSPOSE"}, rep["op_histogram"]
    assert set(rep["op_histogram"]) <= TFLM_BUILTIN_OPS


def test_no_pad_or_transpose_in_zoo_models(zoo_small):
    for name, (tfl, rep) in zoo_small.items():
        hist = load_tflite(tfl.read_bytes()).op_histogram
        assert not set(hist) & {"PAD", "PADV2", "TRANSPOSE"}, (name, hist)
        assert set(hist) <= TFLM_BUILTIN_OPS, (name, hist)
        assert rep["tflm_vs_tflite_ref"]["bit_exact"], name


def test_int8_input_and_output_really_int8(converted):
    _, tfl, rep = converted
    s = load_tflite(tfl.read_bytes())
    assert rep["input"]["dtype"] == "int8" and rep["output"]["dtype"] == "int8"
    assert s.ops[0].name != "QUANTIZE" and s.ops[-1].name != "DEQUANTIZE"
    assert "QUANTIZE" not in s.op_histogram and "DEQUANTIZE" not in s.op_histogram
    # weights: per-channel int8 for convolutions, per-tensor for FULLY_CONNECTED; int32 biases
    for op in s.ops:
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w, b = s.tensors[op.inputs[1]], s.tensors[op.inputs[2]]
            assert w.dtype == "int8" and b.dtype == "int32", op
            channels = w.shape[0] if op.name != "DEPTHWISE_CONV_2D" else w.shape[3]
            assert len(w.scale) == (1 if op.name == "FULLY_CONNECTED" else channels), (op.name, len(w.scale))


def test_output_dequantizes_to_torch_logits(converted):
    """tf.lite int8 output, dequantized, tracks the float torch model on real images."""
    from netaug_mcu.converter.evaluate import LiteRTRunner

    pt, tfl, rep = converted
    model, ckpt = cv.load_checkpoint(pt)
    x, _ = ds.load_fashion_mnist("test")
    xin = pre_mod.preprocess(x[-16:], ckpt["preprocess"])
    with torch.no_grad():
        ref = model(torch.from_numpy(xin.transpose(0, 3, 1, 2).copy())).numpy()
    lite = LiteRTRunner(tfl.read_bytes())
    s_in, z_in = lite.input_quant
    s_out, z_out = lite.output_quant
    got = np.stack([pre_mod.dequantize(lite(pre_mod.quantize(v[None], s_in, z_in)), s_out, z_out).reshape(-1)
                    for v in xin])
    span = ref.max() - ref.min()
    assert span > 50 * s_out  # logits are not degenerate
    assert np.abs(got - ref).max() < 0.1 * span
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.8
    assert rep["agreement"]["float_vs_int8"] >= 90.0


def test_tflm_bit_exact_with_tflite_reference_kernels(converted):
    from netaug_mcu.common.host_tflm import HostTFLM
    from netaug_mcu.converter.evaluate import LiteRTRunner

    _, tfl, rep = converted
    assert rep["tflm_vs_tflite_ref"]["bit_exact"] and rep["tflm_vs_tflite_ref"]["samples"] == 200
    data = tfl.read_bytes()
    ref, micro = LiteRTRunner(data, reference=True), HostTFLM(data)
    rng = np.random.default_rng(7)
    for _ in range(10):
        q = rng.integers(-128, 128, (1, RES, RES, 1), dtype=np.int8)
        np.testing.assert_array_equal(micro(q), ref(q))
    # optimized tf.lite kernels differ from TFLM by a few LSB; top-1 still agrees almost always
    assert rep["agreement"]["int8_vs_tflm"] >= 90.0
    assert rep["int8_top1"] is not None and rep["tflm_top1"] is not None


def test_unsupported_op_error_names_op_index_and_layer(converted):
    import re

    from netaug_mcu.converter.graph_checks import attach_origins

    _, tfl, rep = converted
    s = load_tflite(tfl.read_bytes())
    # the layer origins recorded at conversion time point at the torch modules
    assert rep["ops"][0]["layer"].startswith("features.0") or "stem" in rep["ops"][0]["layer"] \
        or rep["ops"][0]["layer"], rep["ops"][0]
    assert sum(1 for o in rep["ops"] if o["layer"]) >= 0.9 * len(rep["ops"])
    attach_origins(s, {})
    k = next(i for i, o in enumerate(s.ops) if o.name == "DEPTHWISE_CONV_2D")
    s.ops[k].name = "FAKE_OP"
    s.ops[k].origin = rep["ops"][k]["layer"]
    with pytest.raises(ConvertError) as ei:
        check_tflm_compatible(s)
    msg = str(ei.value)
    assert f"op #{k} FAKE_OP" in msg and "not supported by TFLM" in msg and rep["ops"][k]["layer"] in msg
    assert "\n" not in msg
    s.ops[k].name = "DEPTHWISE_CONV_2D"
    with pytest.raises(ConvertError, match=re.escape(f"op #{k} DEPTHWISE_CONV_2D")):
        check_tflm_compatible(s, forbid=frozenset({"DEPTHWISE_CONV_2D"}))


def test_evaluate_command_reproduces_report(converted, tmp_path):
    _, tfl, rep = converted
    out = tmp_path / "eval.json"
    r = _cli("evaluate", str(tfl), "--eval-samples", "200", "--out", str(out), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    ev = json.loads(out.read_text())
    assert ev["int8_top1"] == rep["int8_top1"] and ev["tflm_top1"] == rep["tflm_top1"]
    assert "float_top1" not in ev
    assert ev["preprocess_source"].endswith("model.json")


def test_zoo_conversion_is_cached(tmp_path, zoo_small):
    name, res, ch = ZOO_SMALL[0]
    import time

    t0 = time.time()
    rep = cv.convert_zoo(name, res, ch, 10, tmp_path / "z.tflite", calib_samples=16, check_samples=5, quiet=True)
    assert time.time() - t0 < 5 and rep["cached"]
    assert (tmp_path / "z.tflite").read_bytes() == zoo_small[name][0].read_bytes()
    assert json.loads((tmp_path / "z.json").read_text())["op_histogram"] == rep["op_histogram"]


def test_torch_symmetric_stride2_padding_yields_pad_error(tmp_path):
    """A model with torch-style padding (not TF SAME) would need PAD: conversion refuses, naming it."""

    class Sym(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.stem(x)).mean((2, 3)))

    pp = {"resolution": 16, "channels": 1, "mean": [0.0], "std": [1.0]}
    out = tmp_path / "sym.tflite"
    with pytest.raises(ConvertError, match=r"op #0 PAD .*stem") as ei:
        cv.convert_module(Sym().eval(), pp, out, calib=np.random.default_rng(0).standard_normal(
            (4, 16, 16, 1)).astype(np.float32), quiet=True)
    assert "\n" not in str(ei.value)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ CLI: bad input -> exit 2, one line

def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "netaug_mcu", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _assert_one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("netaug-mcu convert: error:"), r.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_missing_checkpoint(tmp_path):
    r = _cli("convert", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o.tflite"), "-q")
    _assert_one_line_error(r, "does not exist")
    assert not (tmp_path / "o.tflite").exists()


def test_cli_corrupt_checkpoint(tmp_path, converted):
    bad = tmp_path / "model.pt"
    bad.write_bytes(converted[0].read_bytes()[:3000])
    r = _cli("convert", str(bad), "--out", str(tmp_path / "o.tflite"), "-q")
    _assert_one_line_error(r, "cannot read checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_cli_checkpoint_weights_do_not_match_arch(tmp_path, converted):
    ck = torch.load(converted[0], weights_only=True)
    ck["arch"]["num_classes"] = 7
    p = tmp_path / "model.pt"
    torch.save(ck, p)
    r = _cli("convert", str(p), "--out", str(tmp_path / "o.tflite"), "-q")
    _assert_one_line_error(r, "does not match")


def test_cli_calibration_wrong_shape(tmp_path, converted):
    npy = tmp_path / "calib.npy"
    np.save(npy, np.zeros((8, 28, 28, 1), np.float32))
    r = _cli("convert", str(converted[0]), "--out", str(tmp_path / "o.tflite"), "--calib-data", str(npy), "-q")
    _assert_one_line_error(r, "wrong shape", f"[N,{RES},{RES},1]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy"]


def test_cli_unwritable_output(tmp_path, converted):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _cli("convert", str(converted[0]), "--out", str(blocker / "sub" / "o.tflite"), "-q")
    _assert_one_line_error(r, "cannot write output")


def test_cli_unknown_zoo_model(tmp_path):
    r = _cli("convert", "--zoo", "no-such-net", "--out", str(tmp_path / "o.tflite"), "-q")
    _assert_one_line_error(r, "no-such-net")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.opt_in
@pytest.mark.parametrize("name", ["mbv2-tiny", "mbv2-w0.35", "mcunet-in0", "mcunet-in1", "mcunet-in2",
                                  "mcunet-in3", "mcunet-in4", "proxyless-w0.35", "mbv3-w0.35"])
def test_zoo_default_resolution_has_no_pad_transpose(name, tmp_path):
    rep = cv.convert_zoo(name, None, 3, 10, tmp_path / "m.tflite", check_samples=3, quiet=True)
    assert not set(rep["op_histogram"]) & {"PAD", "PADV2", "TRANSPOSE"}
    assert rep["tflm_vs_tflite_ref"]["bit_exact"]


def test_op_tflm_lacks_is_named_with_its_layer(tmp_path):
    """A real conversion producing TOPK_V2 (a TFLite builtin TFLM does not implement) is refused."""

    class TopK(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            return torch.topk(self.conv(x).mean((2, 3)), 2).values

    assert "TOPK_V2" not in TFLM_BUILTIN_OPS
    out = tmp_path / "topk.tflite"
    with pytest.raises(ConvertError, match=r"op #\d+ TOPK_V2 is not supported by TFLM .*TopK"):
        cv.convert_module(TopK().eval(), {"resolution": 8, "channels": 1}, out,
                          calib=np.random.default_rng(0).standard_normal((4, 8, 8, 1)).astype(np.float32),
                          quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_worker_blocks_network_and_uses_closed_proxies():
    """The onnx2tf worker refuses every socket connection (and proxies point at a closed port)."""
    from netaug_mcu.converter.quantize import offline_env

    env = offline_env()
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:9"
    code = ("import socket, converter._onnx2tf_worker as w\n"
            "w._block_network()\n"
            "try:\n    socket.create_connection(('github.com', 443), timeout=1)\nexcept OSError as e:\n"
            "    print('blocked', e)\n"
            "import urllib.request\n"
            "try:\n    urllib.request.urlopen('https://github.com', timeout=1)\nexcept OSError as e:\n"
            "    print('blocked', type(e).__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("blocked") == 2, r.stdout


def test_image_folder_loading(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(d / f"{i}.png")
    x, y, classes = ds.load_split(str(tmp_path), split="test", channels=3)
    assert classes == ["cat", "dog"] and x.shape == (6, 10, 12, 3) and y.tolist() == [0, 0, 0, 1, 1, 1]
    g, _, _ = ds.load_split(str(tmp_path), split="train", channels=1)
    assert g.shape == (6, 10, 12)
    out = pre_mod.preprocess(x, {"resolution": 8, "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3})
    assert out.shape == (6, 8, 8, 3) and -1.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(ds.DatasetError):
        ds.load_split(str(tmp_path / "missing"))


def test_softmax_tail_outputs_probabilities_with_the_same_top1(converted, tmp_path):
    """convert --softmax: one int8 SOFTMAX at the end (scale 1/256, zp -128), probabilities that sum to ~1,
    TFLM bit-exact with tf.lite, and the same top-1 as the logits model (softmax is monotonic)."""
    pt, _, rep = converted
    tfl = tmp_path / "sm.tflite"
    r = _cli("convert", str(pt), "--softmax", "--calib-samples", "100", "--eval-samples", "200",
             "--out", str(tfl), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    sm = json.loads((tmp_path / "sm.json").read_text())
    s = load_tflite(tfl.read_bytes())
    assert s.ops[-1].name == "SOFTMAX" and sm["output_activation"] == "softmax"
    assert sm["output"]["scale"] == 1 / 256 and sm["output"]["zero_point"] == -128
    assert sm["tflm_vs_tflite_ref"]["bit_exact"]
    assert abs(sm["tflm_top1"] - rep["tflm_top1"]) <= 1.0 and abs(sm["float_top1"] - rep["float_top1"]) < 0.01
    from netaug_mcu.converter.evaluate import LiteRTRunner

    lite = LiteRTRunner(tfl.read_bytes())
    s_in, z_in = lite.input_quant
    x, _ = ds.load_fashion_mnist("test")
    xin = pre_mod.preprocess(x[:8], rep["preprocess"])
    probs = np.stack([pre_mod.dequantize(lite(pre_mod.quantize(v[None], s_in, z_in)), 1 / 256, -128).reshape(-1)
                      for v in xin])
    assert np.all(probs >= 0) and np.allclose(probs.sum(1), 1.0, atol=0.05)
