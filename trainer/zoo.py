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

import contextlib
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.errors import UserError

__all__ = [
    "ZooError", "MODELS", "register", "parse_arch", "build", "build_arch", "count", "describe_all", "same_pads",
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


class ZooError(UserError, ValueError):
    """A user error (unknown model, bad argument): printed as one line by the CLI."""


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


def _depthwise_to_1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      pad_h: int, pad_w: int) -> torch.Tensor | None:
    """A depthwise conv whose output is 1x1, as the product with the kernel window that overlaps
    the input (the padded taps only ever multiply zeros), or None when it does not apply.
    Why: oneDNN's depthwise backward costs ~30x more than this on 1x1 maps (mbv2-tiny@32's last
    blocks); the forward is bit-identical (one tap: x*w; 2x2->1: the same sum up to reassociation)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    k_h, k_w = weight.shape[-2:]
    if pad_h + h > k_h or pad_w + w > k_w:
        return None
    win = weight[:, 0, pad_h:pad_h + h, pad_w:pad_w + w].unsqueeze(0)
    y = x * win if h * w == 1 else (x * win).sum((2, 3), keepdim=True)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


FAST_DEPTHWISE = [True]  # bench/train_throughput.py switches it off for its plain-PyTorch loop


@contextlib.contextmanager
def plain_kernels():
    """Every conv through F.conv2d (no training fast path), e.g. for a reference loop."""
    FAST_DEPTHWISE[0] = False
    try:
        yield
    finally:
        FAST_DEPTHWISE[0] = True


def _training_fast_path(x: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    """Only while training (grad on, eager): evaluation, ONNX export and tracing keep F.conv2d."""
    return (FAST_DEPTHWISE[0] and groups > 1 and groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1
            and torch.is_grad_enabled() and not torch.jit.is_tracing()
            and not torch.onnx.is_in_onnx_export())


def conv2d_same(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: int, groups: int) -> torch.Tensor:
    """``F.conv2d`` with TF-SAME padding computed from ``x``'s spatial size (odd kernels)."""
    k_h, k_w = weight.shape[-2:]
    if _training_fast_path(x, weight, groups):
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if -(-h // stride) == 1 and -(-w // stride) == 1:
            ph = k_h // 2 if stride == 1 else same_pads(h, k_h, stride)[0]
            pw = k_w // 2 if stride == 1 else same_pads(w, k_w, stride)[0]
            y = _depthwise_to_1x1(x, weight, bias, ph, pw)
            if y is not None:
                return y
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
# Architectures as data.  One entry per model (``register``), one builder for all (``build``).
#
# An architecture is a string of block tokens (as timm's _efficientnet_builder decodes
# ``ir_r2_k3_s2_e6_c24``), separated by spaces; options of a token are joined with ``_``:
#   stem_k3_s2_c16        ConvBNAct(in_channels -> 16, 3x3, stride 2)
#   ds_k3_c8              inverted-residual block without expand conv (mid = in): DSConv
#   ir_k5_s2_e4_c24       1x1 expand to e x in (or m<mid> channels) -> k5 depthwise, stride 2 -> 1x1 to 24
#   head_c448             1x1 ConvBNAct before the pool
#   prehead_c448          1x1 conv with bias, no BN, after the pool (MobileNetV3's second head layer)
# Options: k kernel, s stride (default 1), e expand ratio, m mid channels, c out channels, r repeat
# (the first with the stride, the others stride 1), se squeeze-excite (squeeze make_divisible(mid//4, 8),
# torchvision's rule), relu / hs (hard-swish) activation (default relu6), noskip (no identity
# shortcut; by default a block has one when stride == 1 and in == out).
# Each entry also carries its default resolution, reference (params, MACs, params convention) figures
# (MACs always BN-folded; see the README for the conventions) and its NetAug width list (the
# reference's factor list for the family, netaug.md section 7).

MODELS: dict[str, dict[str, Any]] = {}
ACTS = {"relu": "relu", "hs": "hswish"}


def register(name: str, *, arch: str, resolution: int, description: str, netaug_width: tuple[float, ...],
             ref: tuple[float, float, str] | None = None) -> None:
    """Add a model to the zoo: everything about it is in this one entry."""
    if name in MODELS:
        raise ZooError(f"zoo model {name!r} registered twice")
    MODELS[name] = dict(arch=" ".join(arch.split()), resolution=resolution, description=description,
                        ref=ref, netaug_width=tuple(netaug_width))


def parse_arch(arch: str) -> list[dict[str, Any]]:
    """Block tokens -> [{type, k, s, e | m, c, se, act, skip}], repeats expanded."""
    blocks = []
    for tok in arch.split():
        kind, *opts = tok.split("_")
        if kind not in ("stem", "ds", "ir", "head", "prehead"):
            raise ZooError(f"unknown block type {kind!r} in {tok!r}")
        b: dict[str, Any] = {"type": kind, "k": 3, "s": 1, "act": "relu6", "se": False, "skip": None}
        repeat = 1
        for o in opts:
            if o in ACTS:
                b["act"] = ACTS[o]
            elif o == "se":
                b["se"] = True
            elif o == "noskip":
                b["skip"] = False
            elif o[:1] in "ksmcr" and o[1:].isdigit():
                if o[0] == "r":
                    repeat = int(o[1:])
                else:
                    b[o[0]] = int(o[1:])
            elif o[:1] == "e":
                b["e"] = float(o[1:])
            else:
                raise ZooError(f"unknown option {o!r} in block {tok!r}")
        if "c" not in b:
            raise ZooError(f"block {tok!r} has no output channels (c...)")
        blocks.append(b)
        blocks += [dict(b, s=1) for _ in range(repeat - 1)]
    return blocks


def _block(b: dict[str, Any], cin: int) -> InvertedResidual:
    k, s, cout, act = b["k"], b["s"], b["c"], b["act"]
    if b["type"] == "ds":
        mid = cin
    elif "m" in b:
        mid = b["m"]
    else:
        mid = int(round(b.get("e", 1.0) * cin))
    skip = (s == 1 and cin == cout) if b["skip"] is None else b["skip"]
    se_mid = make_divisible(mid // 4, 8) if b["se"] else None
    return InvertedResidual(cin, mid, cout, k, s, skip, expand=mid != cin, act=act, se_mid=se_mid)


def build(name: str, in_channels: int = 3, num_classes: int = 1000, resolution: int | None = None,
          dropout: float = 0.0) -> ZooNet:
    """Build a zoo model; ``model.arch`` records name/in_channels/num_classes/resolution."""
    if name not in MODELS:
        raise ZooError(f"unknown model {name!r} (choose from: {', '.join(MODELS)})")
    if resolution is None:
        resolution = MODELS[name]["resolution"]
    return build_arch(MODELS[name]["arch"], in_channels, num_classes, resolution, dropout, name=name)


def build_arch(arch: str, in_channels: int, num_classes: int, resolution: int, dropout: float = 0.0,
               name: str = "custom") -> ZooNet:
    """Build any architecture string (the zoo's entries, or a benchmark's own model)."""
    if int(in_channels) < 1 or int(num_classes) < 1:
        raise ZooError(f"in_channels and num_classes must be >= 1 (got {in_channels}, {num_classes})")
    if int(resolution) < 8:
        raise ZooError(f"resolution must be >= 8 (got {resolution})")
    in_channels, num_classes, resolution = int(in_channels), int(num_classes), int(resolution)
    stem = head = pre_head = None
    blocks: list[InvertedResidual] = []
    c = in_channels
    for b in parse_arch(arch):
        if b["type"] == "stem":
            stem = ConvBNAct(c, b["c"], b["k"], b["s"], act=b["act"])
        elif b["type"] in ("ds", "ir"):
            blocks.append(_block(b, c))
        elif b["type"] == "head":
            head = ConvBNAct(c, b["c"], 1, act=b["act"])
        else:
            pre_head = ConvBNAct(c, b["c"], 1, act=b["act"], bn=False, bias=True)
        c = b["c"]
    if stem is None:
        raise ZooError(f"architecture {name!r} has no stem")
    m = ZooNet(stem, blocks, head, pre_head, c, num_classes, dropout)
    m.arch = dict(name=name, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    return m


MBV2_FAMILY = (1.0, 1.8, 2.6)
MCUNET_FAMILY = (1.0, 1.6, 2.2)
_MBV2_035_TRUNK = """stem_k3_s2_c16 ds_k3_c8 ir_r2_k3_s2_e6_c8 ir_r3_k3_s2_e6_c16 ir_r4_k3_s2_e6_c24 ir_r3_k3_e6_c32
                     ir_r3_k3_s2_e6_c56 ir_k3_e6_c112"""

register("mbv2-tiny", arch=_MBV2_035_TRUNK + " head_c448", resolution=144, netaug_width=MBV2_FAMILY,
         ref=(0.75e6, 23.5e6, "torch"),
         description="MobileNetV2-Tiny (netaug tinymbv2 / mcunet zoo mbv2-w0.35): MobileNetV2 w0.35 trunk, "
                     "1x1 head 112->448")
register("mbv2-w0.35", arch=_MBV2_035_TRUNK + " head_c1280", resolution=160, netaug_width=MBV2_FAMILY,
         ref=(1.66e6, 30.9e6, "folded"), description="MobileNetV2 width 0.35 (netaug mbv2-0.35), head 112->1280")
register("mcunet-in0", resolution=48, netaug_width=MCUNET_FAMILY, ref=(0.75e6, 6.4e6, "torch"),
         description="MCUNet in0 (10 fps on STM32F746)",
         arch="""stem_k3_s2_c24 ds_k3_c16 ir_k5_s2_e4_c16 ir_k3_e3_c16 ir_k3_e4_c16 ir_k7_s2_e5_c24 ir_k5_e4_c24
                 ir_k5_e5_c24 ir_k7_s2_e5_c48 ir_k5_e4_c48 ir_k3_e5_c56 ir_k5_e4_c56 ir_k3_e5_c56 ir_k3_s2_e6_c112
                 ir_k5_e4_c112 ir_k3_e6_c192""")
register("mcunet-in1", resolution=96, netaug_width=MCUNET_FAMILY, ref=(0.64e6, 12.8e6, "torch"),
         description="MCUNet in1 (5 fps)",
         arch="""stem_k3_s2_c16 ds_k3_c8 ir_k3_s2_e4_c16 ir_k3_e3_c16 ir_k7_s2_e3_c24 ir_k3_e5_c24 ir_k3_s2_e5_c40
                 ir_k7_e4_c40 ir_k5_e4_c48 ir_k3_e3_c48 ir_k3_e4_c48 ir_k7_s2_e5_c96 ir_k5_e4_c96 ir_k5_e4_c96
                 ir_k3_e6_c160""")
register("mcunet-in2", resolution=160, netaug_width=MCUNET_FAMILY, ref=(0.73e6, 67.3e6, "torch"),
         description="MCUNet in2 (256 kB SRAM)",
         arch="""stem_k3_s2_c16 ds_k3_c8 ir_k5_s2_e3_c16 ir_k7_e6_c16 ir_k3_e5_c16 ir_k5_e5_c16 ir_k3_s2_e5_c24
                 ir_k7_e6_c24 ir_k5_e6_c24 ir_k7_s2_e4_c40 ir_k5_e5_c40 ir_k3_e5_c48 ir_k5_e5_c48 ir_k3_e4_c48
                 ir_k5_s2_e6_c96 ir_k5_e4_c96 ir_k5_e3_c96 ir_k3_e4_c96 ir_k5_e5_c160""")
register("mcunet-in3", resolution=176, netaug_width=MCUNET_FAMILY, ref=(0.74e6, 81.8e6, "torch"),
         description="MCUNet in3 (320 kB SRAM; netaug 'mcunet')",
         arch="""stem_k3_s2_c16 ds_k3_c8 ir_k7_s2_e3_c16 ir_k3_e5_c16 ir_k7_e5_c16 ir_k5_e4_c16 ir_k5_s2_e5_c24
                 ir_k5_e5_c24 ir_k5_e5_c24 ir_k3_s2_e5_c40 ir_k7_e6_c40 ir_k5_e4_c40 ir_k5_e5_c48 ir_k7_e5_c48
                 ir_k3_e5_c48 ir_k3_s2_e6_c96 ir_k7_e5_c96 ir_k3_e4_c96 ir_k7_e5_c160""")
register("mcunet-in4", resolution=160, netaug_width=MCUNET_FAMILY, ref=(1.73e6, 125.9e6, "torch"),
         description="MCUNet in4 (512 kB SRAM)",
         arch="""stem_k3_s2_c32 ds_k3_c16 ir_k7_s2_e3_c24 ir_k3_e5_c24 ir_k5_e4_c24 ir_k7_s2_e5_c40 ir_k3_e4_c40
                 ir_k7_e4_c40 ir_k7_s2_e3_c80 ir_k3_e3_c80 ir_k7_e3_c80 ir_k3_e4_c96 ir_k5_e3_c96 ir_k5_e3_c96
                 ir_k7_s2_e4_c192 ir_k7_e3_c192 ir_k5_e3_c192 ir_k5_e4_c320""")
register("proxyless-w0.35", resolution=160, netaug_width=MBV2_FAMILY, ref=(1.77e6, 35.7e6, "folded"),
         description="ProxylessNAS-Mobile width 0.35 (netaug proxylessnas-0.35)",
         arch="""stem_k3_s2_c16 ds_k3_c8 ir_k5_s2_e3_c16 ir_k3_e3_c16 ir_k7_s2_e3_c16 ir_k3_e3_c16 ir_k5_e3_c16
                 ir_k5_e3_c16 ir_k7_s2_e6_c32 ir_k5_e3_c32 ir_k5_e3_c32 ir_k5_e3_c32 ir_k5_e6_c32_noskip
                 ir_k5_e3_c32 ir_k5_e3_c32 ir_k5_e3_c32 ir_k7_s2_e6_c64 ir_k7_e6_c64 ir_k7_e3_c64 ir_k7_e3_c64
                 ir_k7_e6_c112 head_c1280""")
# MobileNetV3-Large at width 0.35 (torchvision `_mobilenet_v3_conf`, channels make_divisible(c * 0.35, 8),
# SE squeeze make_divisible(mid // 4, 8)); 0.99M folded params, 18.4M MACs at r160.
register("mbv3-w0.35", resolution=160, netaug_width=(1.0, 2.0, 3.0), ref=None,
         description="MobileNetV3-Large width 0.35 (torchvision config, SE, hard-swish, channels rounded to "
                     "multiples of 8)",
         arch="""stem_k3_s2_c8_hs ds_k3_c8_relu ir_k3_s2_e3_c8_relu ir_k3_e3_c8_relu ir_k5_s2_e3_c16_se_relu
                 ir_k5_m40_c16_se_relu ir_k5_m40_c16_se_relu ir_k3_s2_m88_c32_hs ir_k3_m72_c32_hs ir_k3_e2_c32_hs
                 ir_k3_e2_c32_hs ir_k3_m168_c40_se_hs ir_k3_m232_c40_se_hs ir_k5_s2_m232_c56_se_hs
                 ir_k5_e6_c56_se_hs ir_k5_e6_c56_se_hs head_c336_hs prehead_c448_hs""")


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
