"""Tiny-model zoo: MobileNetV2-Tiny, MobileNetV2-w0.35, MCUNet in0..in4, ProxylessNAS-w0.35, MobileNetV3-w0.35.

Plain ``nn.Module``s parametrised by input channels, number of classes and input resolution
(the resolution is only recorded: every model ends in a global average pool).

Structure (shared by all models; ``trainer.netaug`` derives the augmented super-net from it
generically, module names and state_dict keys are identical in both):

    ZooNet
      stem        ConvBNAct(in_channels -> c, 3x3, stride 2)
      blocks      ModuleList of InvertedResidual; blocks[0] is the DSConv block (no expand conv)
                  InvertedResidual = [expand ConvBNAct 1x1] -> depthwise ConvBNAct kxk
                                     -> [se SqueezeExcite] -> project ConvBNAct 1x1 (no act)
                                     (+ identity shortcut when ``use_res``)
      head        optional 1x1 "feature mix" ConvBNAct (MobileNetV2 / ProxylessNAS / MobileNetV3)
      pool        AdaptiveAvgPool2d(1)
      pre_head    optional 1x1 conv with bias + act after pooling (MobileNetV3's 2nd head layer)
      classifier  Linear

TF-"SAME" padding (no standalone PAD in the int8 TFLite).
  onnx2tf 1.29.24 (ops/Conv.py) emits a Conv with padding SAME only when the ONNX pads are
  symmetric AND the spatial output size equals the input size (i.e. stride 1); any other
  non-zero pads become an explicit PAD op + VALID conv.  PyTorch's symmetric ``k//2`` padding
  of a stride-2 conv therefore always produced a PAD op, and it is also numerically different
  from TF SAME on even inputs (SAME puts the extra row/column at the bottom/right).
  ``Conv2dSame`` below pads exactly like TF SAME: stride-1 convs use symmetric ``k//2``
  (== SAME for odd k); strided convs compute TF's pads from the actual input size
  (``x.shape``, traced as constants by ONNX export for a fixed input size) and
    * pass them to the conv when they are symmetric (odd inputs), else
    * apply no padding at all when the SAME pads are zero, else
    * F.pad(top/left smaller) + VALID conv.
  See the comment above ``SAME_PADDING_NOTE`` for what was verified with onnx2tf.

MACs/params (``count``) are counted with BN folded into the preceding conv (a folded conv gains
a bias); activations, additions, pooling and the SE multiplication are not counted.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ZooError", "MODELS", "build", "count", "describe_all", "same_pads",
    "Conv2dSame", "ConvBNAct", "SqueezeExcite", "InvertedResidual", "ZooNet", "make_divisible",
]

# What was verified (2026-12-01, torch 2.13 `torch.onnx.export(dynamo=False, opset_version=13)`,
# onnx2tf 1.29.24 `-oiqt -qt per-channel -iqd int8 -oqd int8`), mcunet-in0, 1 input channel, 10 classes:
#  * the legacy exporter folds our F.pad into the Conv's ONNX `pads` (e.g. [0,0,1,1] for k3/s2 on an
#    even input, [1,1,2,2] for k5, [2,2,3,3] for k7) and folds BN; graph = Conv/Clip/Add/
#    GlobalAveragePool/Flatten/Gemm only;
#  * onnx2tf turns the asymmetric pads into tf.pad + VALID conv, which the TFLite converter fuses
#    back into a SAME conv: *_full_integer_quant.tflite at r48 AND at r47 (odd: 47->24 symmetric,
#    then 24->12->6->3 asymmetric) = {CONV_2D: 30, DEPTHWISE_CONV_2D: 15, ADD: 8, MEAN: 1,
#    FULLY_CONNECTED: 1}: no PAD, no TRANSPOSE, no RESHAPE;
#  * the float32 .tflite equals onnxruntime on the same ONNX to 1.5e-8 (so the fused SAME conv is
#    numerically the torch model).
#  * AdaptiveAvgPool2d(1) -> GlobalAveragePool -> one MEAN (no TRANSPOSE); flatten + Linear -> one
#    FULLY_CONNECTED.
SAME_PADDING_NOTE = "TF-SAME pads via F.pad+conv: onnx2tf 1.29.24 -> single CONV_2D/DEPTHWISE_CONV_2D, no PAD/TRANSPOSE"


class ZooError(ValueError):
    """A user error (unknown model, bad argument): printed as one line by the CLI."""

    exit_code = 2


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never going below 90% of ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TF "SAME" (begin, end) padding of one spatial axis of length ``size``."""
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


def make_act(act: str | None) -> nn.Module | None:
    if act is None:
        return None
    if act == "relu6":
        return nn.ReLU6(inplace=True)
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "hswish":
        return nn.Hardswish(inplace=True)
    raise ZooError(f"unknown activation {act!r}")


def conv2d_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: int, groups: int) -> torch.Tensor:
    """``F.conv2d`` with TF-SAME padding computed from ``x``'s spatial size (odd kernels)."""
    k_h, k_w = weight.shape[-2:]
    if stride == 1:
        return F.conv2d(x, weight, bias, 1, (k_h // 2, k_w // 2), 1, groups)
    ph = same_pads(int(x.shape[-2]), k_h, stride)
    pw = same_pads(int(x.shape[-1]), k_w, stride)
    if ph[0] == ph[1] and pw[0] == pw[1]:
        return F.conv2d(x, weight, bias, stride, (ph[0], pw[0]), 1, groups)
    x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
    return F.conv2d(x, weight, bias, stride, 0, 1, groups)


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d (square odd kernel, dilation 1) with TF-SAME padding for any stride/input size."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False):
        if k % 2 != 1:
            raise ZooError(f"Conv2dSame needs an odd kernel, got {k}")
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return conv2d_same(x, self.weight, self.bias, self.stride[0], self.groups)


class ConvBNAct(nn.Module):
    """conv (+ BN) (+ activation). Keys: conv.weight[, conv.bias], bn.*."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu6", bn: bool = True, bias: bool = False):
        super().__init__()
        self.conv = Conv2dSame(cin, cout, k, stride, groups, bias)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.act = make_act(act)
        self.act_name = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: avgpool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> hard-sigmoid -> scale."""

    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.gate(self.fc2(self.act(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    """MB block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (linear) (+ identity)."""

    def __init__(self, cin: int, mid: int, cout: int, k: int, stride: int, use_res: bool,
                 expand: bool = True, act: str = "relu6", se_mid: int | None = None):
        super().__init__()
        if not expand and mid != cin:
            raise ZooError("a block without expand conv must have mid == in")
        if use_res and (stride != 1 or cin != cout):
            raise ZooError("identity shortcut needs stride 1 and in == out")
        self.expand = ConvBNAct(cin, mid, 1, act=act) if expand else None
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid, se_mid) if se_mid else None
        self.project = ConvBNAct(mid, cout, 1, act=None)
        self.use_res = bool(use_res)
        self.kernel_size = k
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.use_res else y


class ZooNet(nn.Module):
    """stem -> blocks -> [head] -> pool -> [pre_head] -> classifier."""

    def __init__(self, stem: ConvBNAct, blocks: list[InvertedResidual], head: ConvBNAct | None,
                 pre_head: ConvBNAct | None, feat: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pre_head = pre_head
        self.dropout = float(dropout)
        self.classifier = nn.Linear(feat, num_classes)
        self.arch: dict[str, Any] = {}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        if self.head is not None:
            x = self.head(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.pool(self.features(x))
        if self.pre_head is not None:
            x = self.pre_head(x)
        x = torch.flatten(x, 1)
        if self.dropout > 0:
            x = F.dropout(x, self.dropout, self.training)
        return self.classifier(x)


# ----------------------------------------------------------------------------------------------
# Architecture tables (netaug.md section 7).  Block tuple: (out, expand_ratio, kernel, stride, res)


def _mbv2_stages(stages, cin):
    """[(t, c, n, s, k)] -> block tuples; residual on every non-first block of a stage."""
    out = []
    for t, c, n, s, k in stages:
        for i in range(n):
            out.append((c, t, k, s if i == 0 else 1, i > 0 and True))
            cin = c
    return out


_MBV2_TINY_STAGES = [(6, 8, 2, 2, 3), (6, 16, 3, 2, 3), (6, 24, 4, 2, 3), (6, 32, 3, 1, 3),
                     (6, 56, 3, 2, 3), (6, 112, 1, 1, 3)]

_PROXYLESS_035 = [
    (16, 3, 5, 2, False), (16, 3, 3, 1, True),
    (16, 3, 7, 2, False), (16, 3, 3, 1, True), (16, 3, 5, 1, True), (16, 3, 5, 1, True),
    (32, 6, 7, 2, False), (32, 3, 5, 1, True), (32, 3, 5, 1, True), (32, 3, 5, 1, True),
    (32, 6, 5, 1, False), (32, 3, 5, 1, True), (32, 3, 5, 1, True), (32, 3, 5, 1, True),
    (64, 6, 7, 2, False), (64, 6, 7, 1, True), (64, 3, 7, 1, True), (64, 3, 7, 1, True),
    (112, 6, 7, 1, False),
]


def _mcunet(spec: str):
    """Parse 'out(e,k[,s])[r] ...' (netaug.md section 7 notation)."""
    blocks = []
    for tok in spec.split():
        res = tok.endswith("r")
        tok = tok.rstrip("r")
        c, rest = tok.split("(")
        vals = [int(v) for v in rest.rstrip(")").split(",")]
        e, k = vals[0], vals[1]
        s = vals[2] if len(vals) > 2 else 1
        blocks.append((int(c), e, k, s, res))
    return blocks


_MCUNET = {
    "mcunet-in0": (24, 16, _mcunet("16(4,5,2) 16(3,3)r 16(4,3)r 24(5,7,2) 24(4,5)r 24(5,5)r "
                                   "48(5,7,2) 48(4,5)r 56(5,3) 56(4,5)r 56(5,3)r 112(6,3,2) 112(4,5)r 192(6,3)")),
    "mcunet-in1": (16, 8, _mcunet("16(4,3,2) 16(3,3)r 24(3,7,2) 24(5,3)r 40(5,3,2) 40(4,7)r "
                                  "48(4,5) 48(3,3)r 48(4,3)r 96(5,7,2) 96(4,5)r 96(4,5)r 160(6,3)")),
    "mcunet-in2": (16, 8, _mcunet("16(3,5,2) 16(6,7)r 16(5,3)r 16(5,5)r 24(5,3,2) 24(6,7)r 24(6,5)r "
                                  "40(4,7,2) 40(5,5)r 48(5,3) 48(5,5)r 48(4,3)r 96(6,5,2) 96(4,5)r "
                                  "96(3,5)r 96(4,3)r 160(5,5)")),
    "mcunet-in3": (16, 8, _mcunet("16(3,7,2) 16(5,3)r 16(5,7)r 16(4,5)r 24(5,5,2) 24(5,5)r 24(5,5)r "
                                  "40(5,3,2) 40(6,7)r 40(4,5)r 48(5,5) 48(5,7)r 48(5,3)r 96(6,3,2) "
                                  "96(5,7)r 96(4,3)r 160(5,7)")),
    "mcunet-in4": (32, 16, _mcunet("24(3,7,2) 24(5,3)r 24(4,5)r 40(5,7,2) 40(4,3)r 40(4,7)r "
                                   "80(3,7,2) 80(3,3)r 80(3,7)r 96(4,3) 96(3,5)r 96(3,5)r 192(4,7,2) "
                                   "192(3,7)r 192(3,5)r 320(4,5)")),
}

# MobileNetV3-Large (torchvision `_mobilenet_v3_conf("mobilenet_v3_large")`):
# (in, kernel, expanded, out, use_se, act, stride) at width 1.0.
_MBV3_LARGE = [
    (16, 3, 16, 16, False, "relu", 1), (16, 3, 64, 24, False, "relu", 2), (24, 3, 72, 24, False, "relu", 1),
    (24, 5, 72, 40, True, "relu", 2), (40, 5, 120, 40, True, "relu", 1), (40, 5, 120, 40, True, "relu", 1),
    (40, 3, 240, 80, False, "hswish", 2), (80, 3, 200, 80, False, "hswish", 1),
    (80, 3, 184, 80, False, "hswish", 1), (80, 3, 184, 80, False, "hswish", 1),
    (80, 3, 480, 112, True, "hswish", 1), (112, 3, 672, 112, True, "hswish", 1),
    (112, 5, 672, 160, True, "hswish", 2), (160, 5, 960, 160, True, "hswish", 1),
    (160, 5, 960, 160, True, "hswish", 1),
]


def _build_mb(in_channels, num_classes, stem_c, ds_c, blocks, head_c, dropout=0.0):
    """MobileNetV2-style net: stem, DSConv, MB blocks (ReLU6), optional 1x1 head."""
    stem = ConvBNAct(in_channels, stem_c, 3, 2)
    mods = [InvertedResidual(stem_c, stem_c, ds_c, 3, 1, False, expand=False)]
    cin = ds_c
    for c, e, k, s, res in blocks:
        mid = int(round(e * cin))
        mods.append(InvertedResidual(cin, mid, c, k, s, bool(res)))
        cin = c
    head = None
    if head_c:
        head = ConvBNAct(cin, head_c, 1)
        cin = head_c
    return ZooNet(stem, mods, head, None, cin, num_classes, dropout)


def _build_mbv3(in_channels, num_classes, width=0.35, dropout=0.0):
    """MobileNetV3-Large at ``width``: channels = make_divisible(c * width, 8) as torchvision does;
    SE squeeze = make_divisible(expanded // 4, 8); head 1x1 conv to 6*last (hswish), pool,
    1x1 conv with bias to make_divisible(1280 * width, 8) (hswish; torchvision's Linear), classifier.

    Resulting mbv3-w0.35 (in-mid-out, kernel, stride, SE squeeze, act, r = residual):
      stem 3x3 s2 -> 8 (hswish);
      8-8-8 k3 s1 relu r (no expand conv); 8-24-8 k3 s2 relu; 8-24-8 k3 relu r;
      8-24-16 k5 s2 se8 relu; 16-40-16 k5 se16 relu r; 16-40-16 k5 se16 relu r;
      16-88-32 k3 s2 hswish; 32-72-32 k3 hswish r; 32-64-32 k3 hswish r; 32-64-32 k3 hswish r;
      32-168-40 k3 se40 hswish; 40-232-40 k3 se56 hswish r; 40-232-56 k5 s2 se56 hswish;
      56-336-56 k5 se88 hswish r; 56-336-56 k5 se88 hswish r;
      head 1x1 56->336 (BN, hswish); pool; 1x1 336->448 (bias, hswish); FC 448->classes.
    SE = avgpool, 1x1 conv (bias), ReLU, 1x1 conv (bias), hard-sigmoid, multiply (torchvision).
    0.99M folded params, 18.4M MACs at r160."""
    def ch(c):
        return make_divisible(c * width, 8)

    stem_c = ch(_MBV3_LARGE[0][0])
    stem = ConvBNAct(in_channels, stem_c, 3, 2, act="hswish")
    mods = []
    cin = stem_c
    for _, k, exp, out, se, act, s in _MBV3_LARGE:
        mid, cout = ch(exp), ch(out)
        se_mid = make_divisible(mid // 4, 8) if se else None
        mods.append(InvertedResidual(cin, mid, cout, k, s, s == 1 and cin == cout,
                                     expand=mid != cin, act=act, se_mid=se_mid))
        cin = cout
    head = ConvBNAct(cin, 6 * cin, 1, act="hswish")
    last = ch(1280)
    pre_head = ConvBNAct(6 * cin, last, 1, act="hswish", bn=False, bias=True)
    return ZooNet(stem, mods, head, pre_head, last, num_classes, dropout)


# ``ref`` = (params, MACs, params convention) reference figures.  MACs always BN-folded.
# The MCUNet README figures (mbv2-tiny, mcunet-in0..in4) count every trainable parameter of the
# unfolded PyTorch model (BN gamma/beta included): e.g. mcunet-in3 has 737,408 of them (0.74M)
# but 729,720 folded params (0.73M, -1.4%).  The netaug.md figures for mbv2-w0.35 (1.66M) and
# proxyless-w0.35 (1.77M) were counted BN-folded (torch count: 1.68M / 1.78M).  So each reference
# is compared in its own convention; ``count`` reports folded params by default.
MODELS: dict[str, dict[str, Any]] = {
    "mbv2-tiny": dict(resolution=144, description="MobileNetV2-Tiny (netaug tinymbv2 / mcunet zoo mbv2-w0.35): "
                      "MobileNetV2 w0.35 trunk, 1x1 head 112->448", ref=(0.75e6, 23.5e6, "torch")),
    "mbv2-w0.35": dict(resolution=160, description="MobileNetV2 width 0.35 (netaug mbv2-0.35), head 112->1280",
                       ref=(1.66e6, 30.9e6, "folded")),
    "mcunet-in0": dict(resolution=48, description="MCUNet in0 (10 fps on STM32F746)", ref=(0.75e6, 6.4e6, "torch")),
    "mcunet-in1": dict(resolution=96, description="MCUNet in1 (5 fps)", ref=(0.64e6, 12.8e6, "torch")),
    "mcunet-in2": dict(resolution=160, description="MCUNet in2 (256 kB SRAM)", ref=(0.73e6, 67.3e6, "torch")),
    "mcunet-in3": dict(resolution=176, description="MCUNet in3 (320 kB SRAM; netaug 'mcunet')",
                       ref=(0.74e6, 81.8e6, "torch")),
    "mcunet-in4": dict(resolution=160, description="MCUNet in4 (512 kB SRAM)", ref=(1.73e6, 125.9e6, "torch")),
    "proxyless-w0.35": dict(resolution=160, description="ProxylessNAS-Mobile width 0.35 (netaug proxylessnas-0.35)",
                            ref=(1.77e6, 35.7e6, "folded")),
    "mbv3-w0.35": dict(resolution=160, description="MobileNetV3-Large width 0.35 (torchvision config, SE, "
                       "hard-swish, channels rounded to multiples of 8)", ref=None),
}


def build(name: str, in_channels: int = 3, num_classes: int = 1000, resolution: int | None = None,
          dropout: float = 0.0) -> ZooNet:
    """Build a zoo model; ``model.arch`` records name/in_channels/num_classes/resolution."""
    if name not in MODELS:
        raise ZooError(f"unknown model {name!r} (choose from: {', '.join(MODELS)})")
    if int(in_channels) < 1 or int(num_classes) < 1:
        raise ZooError(f"in_channels and num_classes must be >= 1 (got {in_channels}, {num_classes})")
    if resolution is None:
        resolution = MODELS[name]["resolution"]
    if int(resolution) < 8:
        raise ZooError(f"resolution must be >= 8 (got {resolution})")
    in_channels, num_classes, resolution = int(in_channels), int(num_classes), int(resolution)
    if name == "mbv2-tiny":
        m = _build_mb(in_channels, num_classes, 16, 8, _mbv2_stages(_MBV2_TINY_STAGES, 8), 448, dropout)
    elif name == "mbv2-w0.35":
        m = _build_mb(in_channels, num_classes, 16, 8, _mbv2_stages(_MBV2_TINY_STAGES, 8), 1280, dropout)
    elif name == "proxyless-w0.35":
        m = _build_mb(in_channels, num_classes, 16, 8, _PROXYLESS_035, 1280, dropout)
    elif name in _MCUNET:
        stem_c, ds_c, blocks = _MCUNET[name]
        m = _build_mb(in_channels, num_classes, stem_c, ds_c, blocks, None, dropout)
    else:  # mbv3-w0.35
        m = _build_mbv3(in_channels, num_classes, 0.35, dropout)
    m.arch = dict(name=name, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    return m


def count(model: nn.Module, resolution: int | None = None, in_channels: int | None = None,
          convention: str = "folded") -> tuple[int, int]:
    """(params, MACs) of ``model`` with BN folded, for one ``in_channels`` x ``resolution``^2 image.

    Params, ``convention="folded"`` (default; what the int8 model stores): conv/linear weights +
    their biases, + one bias per conv output channel when a BN is folded into a conv without bias
    (BN parameters themselves are not counted).  ``convention="torch"``: every trainable
    parameter of the unfolded PyTorch model (BN gamma/beta included) -- the convention of the
    MCUNet README figures (see ``MODELS[...]["ref"]``).
    MACs: conv (out_h*out_w*cout*cin/groups*k*k) and linear (in*out) multiply-accumulates."""
    arch = getattr(model, "arch", {}) or {}
    resolution = int(resolution or arch.get("resolution") or 224)
    in_channels = int(in_channels or arch.get("in_channels") or 3)
    macs = 0
    hooks = []

    def conv_hook(mod, inp, out):
        nonlocal macs
        w = mod.weight if not hasattr(mod, "active_weight") else mod.active_weight(inp[0])
        macs += out.shape[2] * out.shape[3] * w.numel()

    def lin_hook(mod, inp, out):
        nonlocal macs
        macs += inp[0].shape[-1] * out.shape[-1]

    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, resolution, resolution))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if convention == "torch":
        return int(sum(p.numel() for p in model.parameters())), int(macs)
    if convention != "folded":
        raise ZooError(f"unknown params convention {convention!r} (folded|torch)")
    params = 0
    for mod in model.modules():
        if isinstance(mod, ConvBNAct):
            params += mod.conv.weight.numel()
            if mod.conv.bias is not None or mod.bn is not None:
                params += mod.conv.out_channels
        elif isinstance(mod, (nn.Linear, nn.Conv2d)) and not isinstance(mod, Conv2dSame):
            params += sum(p.numel() for p in mod.parameters())
    return int(params), int(macs)


def describe_all() -> list[dict[str, Any]]:
    """One dict per model: name, resolution, params (BN folded), macs, params_torch (all trainable
    parameters, unfolded), description, and the reference figures when known
    (3 input channels, 1000 classes, default resolution)."""
    out = []
    for name, info in MODELS.items():
        m = build(name)
        params, macs = count(m, info["resolution"], 3)
        params_torch, _ = count(m, info["resolution"], 3, convention="torch")
        d = dict(name=name, resolution=info["resolution"], params=params, macs=macs,
                 params_torch=params_torch, description=info["description"])
        if info.get("ref"):
            d["ref_params"], d["ref_macs"] = int(info["ref"][0]), int(info["ref"][1])
            d["ref_params_convention"] = info["ref"][2]
        out.append(d)
    return out
