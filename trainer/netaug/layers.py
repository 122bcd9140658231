"""Dynamic (width-sliceable) layers for the NetAug super-net.

Every layer allocates its weights at the largest width and uses the *leading* slice:
``weight[:active_out, :x.shape[1]]``.  The input width is never set by hand: it is read from the
actual input.  Only convs whose output width is a free choice carry ``active_out`` (set by
``SuperNet.set_active``); depthwise convs and BN follow their input width.  The forward of each
layer is the plain layer's forward on slices (no extra Python work), so the min sub-net computes
exactly what the exported plain zoo model computes.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import zoo


def make_div1(v: float) -> int:
    """``make_divisible(v, 1)`` of the reference: round half up, at least 1."""
    return max(1, int(v + 0.5))


class DynamicConv2d(zoo.Conv2dSame):
    """Conv2dSame allocated at (max_in, max_out); uses ``weight[:active_out, :x.shape[1]]``.

    ``depthwise=True``: groups == channels == x.shape[1] (output width follows the input)."""

    def __init__(self, max_in: int, max_out: int, k: int, stride: int = 1, depthwise: bool = False,
                 bias: bool = False):
        if depthwise and max_in != max_out:
            raise ValueError("depthwise conv needs max_in == max_out")
        super().__init__(max_in, max_out, k, stride, groups=max_out if depthwise else 1, bias=bias)
        self.depthwise = depthwise
        self.active_out = max_out

    def active_weight(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        if self.depthwise:
            return self.weight[:cin]
        return self.weight[:self.active_out, :cin]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        cin = x.shape[1]
        if self.depthwise:
            w = self.weight[:cin]
            b = None if self.bias is None else self.bias[:cin]
            return zoo.conv2d_same(x, w, b, self.stride[0], cin)
        o = self.active_out
        w = self.weight
        if o != w.shape[0] or cin != w.shape[1]:  # the full tensor needs no copy
            # keep the parameter's memory format (channels_last while training): no layout reorder
            fmt = torch.channels_last if _is_channels_last(w) else torch.contiguous_format
            w = w[:o, :cin].contiguous(memory_format=fmt)
        b = None if self.bias is None else self.bias[:o]
        return zoo.conv2d_same(x, w, b, self.stride[0], 1)


def _is_channels_last(w: torch.Tensor) -> bool:
    return w.dim() == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d on the leading ``x.shape[1]`` channels (weight, bias, running stats).

    In training mode the running stats of the active slice are updated in place (momentum 0.1), as
    in the reference.  ``calib`` (set by ``reset_bn``) switches to re-calibration: normalise with
    the batch statistics and record (sum of means, sum of variances, count) per batch."""

    def __init__(self, num_features: int):
        super().__init__(num_features)
        self.calib: list | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        c = x.shape[1]
        if self.calib is not None:
            return self._calib_forward(x)
        if c == self.num_features:
            return super().forward(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, self.momentum, self.eps)

    def _calib_forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        n = x.shape[0]
        dist = torch.distributed
        synced = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        mean = x.mean((0, 2, 3))
        if synced:  # reference: batch mean averaged across ranks, then the variance around it
            mean = mean / dist.get_world_size()
            dist.all_reduce(mean)
        var = (x - mean.view(1, -1, 1, 1)).pow(2).mean((0, 2, 3))
        if synced:
            var = var / dist.get_world_size()
            dist.all_reduce(var)
        self.calib.append((c, mean * n, var * n, n))
        return F.batch_norm(x, mean, var, self.weight[:c], self.bias[:c], False, 0.0, self.eps)


class DynamicLinear(nn.Linear):
    """Linear whose input width follows x.shape[-1]; the output (classes) is never sliced."""

    def active_weight(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[:, :x.shape[-1]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.linear(x, self.weight[:, :x.shape[-1]].contiguous(), self.bias)


class DynamicSE(zoo.SqueezeExcite):
    """MobileNetV3 SE whose channels follow the input; squeeze = make_divisible(c // 4, 8)
    (torchvision's rule, so the min sub-net's SE is exactly the base model's)."""

    def __init__(self, max_channels: int):
        nn.Module.__init__(self)
        max_mid = zoo.make_divisible(max_channels // 4, 8)
        self.fc1 = DynamicConv2d(max_channels, max_mid, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = DynamicConv2d(max_mid, max_channels, 1, bias=True)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        c = x.shape[1]
        self.fc1.active_out = zoo.make_divisible(c // 4, 8)
        self.fc2.active_out = c
        return super().forward(x)
