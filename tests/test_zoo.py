"""Model zoo: reference params/MACs, forward shapes, TF-SAME padding, bad input."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from netaug_mcu.trainer import zoo

REFERENCED = [n for n, info in zoo.MODELS.items() if info.get("ref")]


@pytest.fixture(scope="module")
def described():
    return zoo.describe_all()


@pytest.mark.parametrize("name", REFERENCED)
def test_params_macs_match_reference(name, described):
    ref_params, ref_macs, convention = zoo.MODELS[name]["ref"]
    row = next(r for r in described if r["name"] == name)
    params = row["params"] if convention == "folded" else row["params_torch"]
    macs = row["macs"]
    assert abs(macs - ref_macs) / ref_macs < 0.01, (name, macs, ref_macs)
    assert abs(params - ref_params) / ref_params < 0.01, (name, params, ref_params, convention)


def test_exact_counts_pinned(described):
    """Exact BN-folded figures (guards against silent architecture changes)."""
    got = {d["name"]: (d["params"], d["macs"]) for d in described}
    assert got["mbv2-tiny"] == (744072, 23499152)
    assert got["mcunet-in3"] == (729720, 81785520)
    assert got["mcunet-in0"] == (743008, 6364224)
    assert got["proxyless-w0.35"] == (1774360, 35716800)
    assert set(got) == set(zoo.MODELS)


def test_describe_all_fields(described):
    rows = described
    assert [r["name"] for r in rows] == list(zoo.MODELS)
    for r in rows:
        assert r["resolution"] == zoo.MODELS[r["name"]]["resolution"]
        assert r["params"] > 1e5 and r["macs"] > 1e6
        assert r["params_torch"] > r["params"]  # BN gamma+beta > folded bias
    m = zoo.build("mcunet-in3")
    assert zoo.count(m, 176, 3, convention="torch")[0] == sum(p.numel() for p in m.parameters())
    with pytest.raises(zoo.ZooError):
        zoo.count(m, 176, 3, convention="bogus")


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_forward_shapes(name):
    torch.manual_seed(0)
    for ch, res in ((1, 32), (3, 33), (1, 17)):
        m = zoo.build(name, in_channels=ch, num_classes=10, resolution=res).eval()
        assert m.arch == dict(name=name, in_channels=ch, num_classes=10, resolution=res)
        with torch.no_grad():
            y = m(torch.randn(2, ch, res, res))
        assert y.shape == (2, 10)
        assert torch.isfinite(y).all()


def test_structure_for_netaug():
    m = zoo.build("mbv2-tiny")
    assert m.blocks[0].expand is None and not m.blocks[0].use_res  # DSConv first block
    assert m.head is not None and m.pre_head is None
    assert sum(b.use_res for b in m.blocks) == 10
    m = zoo.build("mcunet-in3")
    assert m.head is None and m.classifier.in_features == 160
    assert m.blocks[-1].expand.conv.out_channels == 480
    m = zoo.build("mbv3-w0.35")
    assert sum(b.se is not None for b in m.blocks) == 8
    assert m.pre_head is not None and m.classifier.in_features == 448
    assert m.dropout == 0.0


@pytest.mark.parametrize("size", [8, 9, 16, 17, 48, 47])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_same_padding_matches_tf_semantics(size, k):
    """Stride-2 conv == conv over the input zero-padded with TF SAME pads (extra at bottom/right)."""
    torch.manual_seed(0)
    conv = zoo.Conv2dSame(2, 3, k, stride=2, bias=True)
    x = torch.randn(1, 2, size, size)
    out = -(-size // 2)
    total = max((out - 1) * 2 + k - size, 0)
    lo, hi = total // 2, total - total // 2
    ref = F.conv2d(F.pad(x, (lo, hi, lo, hi)), conv.weight, conv.bias, 2)
    got = conv(x)
    assert got.shape == (1, 3, out, out)
    assert torch.allclose(got, ref, atol=1e-6)


def test_bad_input():
    with pytest.raises(zoo.ZooError) as e:
        zoo.build("resnet9000")
    assert e.value.exit_code == 2 and "mbv2-tiny" in str(e.value)
    with pytest.raises(zoo.ZooError):
        zoo.build("mbv2-tiny", in_channels=0)
    with pytest.raises(zoo.ZooError):
        zoo.build("mbv2-tiny", resolution=4)


@pytest.mark.parametrize("size,stride", [(1, 1), (2, 2), (1, 2), (2, 1)])
def test_training_depthwise_fast_path_matches_conv(size, stride):
    """Depthwise convs with a 1x1 output run as a product while training (oneDNN's backward is
    ~30x slower there): same values and gradients as F.conv2d; evaluation keeps F.conv2d exactly."""
    torch.manual_seed(0)
    x = torch.randn(4, 6, size, size).contiguous(memory_format=torch.channels_last)
    w = torch.randn(6, 1, 3, 3).contiguous(memory_format=torch.channels_last)
    b = torch.randn(6)
    outs, grads = [], []
    for plain in (True, False):
        xi, wi, bi = (t.clone().requires_grad_() for t in (x, w, b))
        ctx = zoo.plain_kernels() if plain else torch.enable_grad()
        with ctx:
            y = zoo.conv2d_same(xi, wi, bi, stride, 6)
        y.square().sum().backward()
        outs.append(y.detach())
        grads.append([t.grad for t in (xi, wi, bi)])
    if size == 2 and stride == 1:  # 2x2 output: no fast path, the same kernel
        assert torch.equal(outs[0], outs[1])
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    for g0, g1 in zip(*grads):
        assert torch.allclose(g0, g1, atol=1e-5)
    with torch.no_grad():  # evaluation / export: F.conv2d, bit for bit
        with zoo.plain_kernels():
            ref = zoo.conv2d_same(x, w, b, stride, 6)
        assert torch.equal(zoo.conv2d_same(x, w, b, stride, 6), ref)
