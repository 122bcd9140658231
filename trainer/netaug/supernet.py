"""Derive the NetAug super-net from ANY zoo model (no per-architecture copy), sample sub-nets,
sort hidden channels, re-calibrate BN and export the base model.

Faithful to mit-han-lab/tinyml netaug (see shared/spec/netaug.md):
- width candidates of every conv/block output: ``[make_div1(base * f) for f in width_list]``;
  stem, DSConv, every non-residual block, the 1x1 head and MobileNetV3's post-pool conv have
  their own choice; a residual block takes ``out = in`` (so width is sampled per stage);
- expand candidates per block: ``(base_mid / base_in + 1e-10) * f for f in expand_list``,
  mid = ``make_div1(e * active_in)``; a block without expand conv has mid = in;
- the classifier's input is widened, its output is not; the stem's input is not widened;
- allocation: max input width x max ratio for mids, max candidate otherwise.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import torch
import torch.nn as nn

from .. import zoo
from .layers import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, DynamicSE, make_div1

MODES = ("random", "min_w", "min_e", "min", "max")


def aug_width(base: int, factors: Iterable[float]) -> list[int]:
    return [make_div1(base * f) for f in factors]


def _dyn_cba(plain: zoo.ConvBNAct, max_in: int, max_out: int, depthwise: bool = False) -> zoo.ConvBNAct:
    """A ConvBNAct like ``plain`` but with dynamic conv/BN allocated at (max_in, max_out)."""
    m = zoo.ConvBNAct.__new__(zoo.ConvBNAct)
    nn.Module.__init__(m)
    k = plain.conv.kernel_size[0]
    m.conv = DynamicConv2d(max_in, max_out, k, plain.conv.stride[0], depthwise=depthwise,
                           bias=plain.conv.bias is not None)
    m.bn = DynamicBatchNorm2d(max_out) if plain.bn is not None else None
    m.act = zoo.make_act(plain.act_name)
    m.act_name = plain.act_name
    return m


class SuperNet(zoo.ZooNet):
    """The augmented super-net of a zoo model. Same module names / state_dict keys as the zoo
    model (tensors are larger); the base model is the leading slice (``set_active("min")``)."""

    def __init__(self, base: zoo.ZooNet, width_list: list[float], expand_list: list[float]):
        W = [float(f) for f in width_list]
        E = [float(f) for f in expand_list]
        stem_c = aug_width(base.stem.conv.out_channels, W)
        stem = _dyn_cba(base.stem, base.stem.conv.in_channels, max(stem_c))
        slots: list[dict[str, Any]] = []
        blocks = []
        in_c = stem_c
        for b in base.blocks:
            b_in = b.depthwise.conv.in_channels if b.expand is None else b.expand.conv.in_channels
            b_mid = b.depthwise.conv.out_channels
            b_out = b.project.conv.out_channels
            out_c = in_c if b.use_res else aug_width(b_out, W)
            slot: dict[str, Any] = dict(res=b.use_res, out=out_c, expand=None)
            if b.expand is not None:
                base_e = b_mid / b_in + 1e-10
                slot["expand"] = [base_e * f for f in E]
                mid_max = make_div1(max(in_c) * max(slot["expand"]))
            else:
                mid_max = max(in_c)
            nb = zoo.InvertedResidual.__new__(zoo.InvertedResidual)
            nn.Module.__init__(nb)
            nb.expand = None if b.expand is None else _dyn_cba(b.expand, max(in_c), mid_max)
            nb.depthwise = _dyn_cba(b.depthwise, mid_max, mid_max, depthwise=True)
            nb.se = None if b.se is None else DynamicSE(mid_max)
            nb.project = _dyn_cba(b.project, mid_max, max(out_c))
            nb.use_res, nb.kernel_size, nb.stride = b.use_res, b.kernel_size, b.stride
            blocks.append(nb)
            slots.append(slot)
            in_c = out_c
        head = pre_head = head_c = pre_head_c = None
        if base.head is not None:
            head_c = aug_width(base.head.conv.out_channels, W)
            head = _dyn_cba(base.head, max(in_c), max(head_c))
            in_c = head_c
        if base.pre_head is not None:
            pre_head_c = aug_width(base.pre_head.conv.out_channels, W)
            pre_head = _dyn_cba(base.pre_head, max(in_c), max(pre_head_c))
            in_c = pre_head_c
        super().__init__(stem, blocks, head, pre_head, max(in_c), base.classifier.out_features, base.dropout)
        self.classifier = DynamicLinear(max(in_c), base.classifier.out_features)
        self.width_list, self.expand_list = W, E
        self.head_c, self.pre_head_c = head_c, pre_head_c
        self.stem_c = stem_c
        self.slots = slots
        self.arch = dict(base.arch)
        # a structural copy of the plain model (not a registered submodule: no state_dict keys);
        # export() fills a copy of it, so custom ZooNets (not in zoo.MODELS) export too
        template = copy.deepcopy(base).cpu()
        object.__setattr__(self, "_template", template)
        self.active_mode = "max"
        self.set_active("min")

    # ------------------------------------------------------------------------------------------
    def set_active(self, mode: str = "min", generator: torch.Generator | None = None) -> dict[str, Any]:
        """Activate a sub-net. ``random``: width and expand uniform; ``min_w``: width at base, expand
        random; ``min_e``: width random, expand at base; ``min``: the base model; ``max``: largest.
        Returns the chosen configuration (for logging / tests)."""
        if mode not in MODES:
            raise ValueError(f"unknown NetAug mode {mode!r}")
        w_rand = mode in ("random", "min_e")
        e_rand = mode in ("random", "min_w")

        def pick(lst, rand):
            if mode == "max":
                return max(lst)
            if rand and len(lst) > 1:
                return lst[int(torch.randint(len(lst), (1,), generator=generator))]
            return lst[0]

        c = pick(self.stem_c, w_rand)
        self.stem.conv.active_out = c
        cfg: dict[str, Any] = dict(stem=c, mid=[], out=[])
        for b, s in zip(self.blocks, self.slots):
            cin = c
            if s["expand"] is not None:
                mid = make_div1(pick(s["expand"], e_rand) * cin)
                b.expand.conv.active_out = mid
            else:
                mid = cin
            c = cin if s["res"] else pick(s["out"], w_rand)
            b.project.conv.active_out = c
            cfg["mid"].append(mid)
            cfg["out"].append(c)
        if self.head is not None:
            self.head.conv.active_out = cfg["head"] = pick(self.head_c, w_rand)
        if self.pre_head is not None:
            self.pre_head.conv.active_out = cfg["pre_head"] = pick(self.pre_head_c, w_rand)
        self.active_mode = mode
        return cfg

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder every inverted block's hidden (expanded) channels by importance = L1 norm of the
        project conv's full super weight over (out, kh, kw), descending; the permutation goes to the
        project conv's input, the depthwise conv + BN, the expand conv's output + BN and the SE.
        The SE's own squeeze channels are then sorted by the L1 norm of fc2. Block in/out widths,
        stem, DSConv and head are not sorted (reference). The super-net's function is unchanged;
        the leading slices (hence sub-nets) get the most important channels."""
        for b in self.blocks:
            if b.expand is None:
                continue
            idx = b.project.conv.weight.abs().sum((0, 2, 3)).argsort(descending=True)
            _perm(b.project.conv.weight, idx, 1)
            for cba in (b.depthwise, b.expand):
                _perm(cba.conv.weight, idx, 0)
                if cba.conv.bias is not None:
                    _perm(cba.conv.bias, idx, 0)
                if cba.bn is not None:
                    for t in (cba.bn.weight, cba.bn.bias, cba.bn.running_mean, cba.bn.running_var):
                        _perm(t, idx, 0)
            if b.se is not None:
                _perm(b.se.fc1.weight, idx, 1)
                _perm(b.se.fc2.weight, idx, 0)
                _perm(b.se.fc2.bias, idx, 0)
                sidx = b.se.fc2.weight.abs().sum((0, 2, 3)).argsort(descending=True)
                _perm(b.se.fc2.weight, sidx, 1)
                _perm(b.se.fc1.weight, sidx, 0)
                _perm(b.se.fc1.bias, sidx, 0)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def reset_bn(self, batches: Iterable, max_batches: int | None = None) -> int:
        """BN re-calibration of the base sub-net (reference ``reset_bn``): per BN layer, the per-batch
        mean and variance (averaged across ranks under torch.distributed), averaged over batches
        weighted by batch size, written into ``running_mean[:k]``/``running_var[:k]``.
        Returns the number of images used."""
        was_training = self.training
        self.set_active("min")
        self.eval()
        bns = [m for m in self.modules() if isinstance(m, DynamicBatchNorm2d)]
        for m in bns:
            m.calib = []
        dev = next(self.parameters()).device
        n = 0
        try:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                x = x.to(dev, non_blocking=True)
                self(x)
                n += x.shape[0]
            for m in bns:
                if not m.calib:
                    continue
                c = m.calib[0][0]
                tot = sum(r[3] for r in m.calib)
                m.running_mean[:c] = sum(r[1] for r in m.calib) / tot
                m.running_var[:c] = sum(r[2] for r in m.calib) / tot
        finally:
            for m in bns:
                m.calib = None
            self.train(was_training)
        return n

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def export(self) -> zoo.ZooNet:
        """The plain zoo model holding the base sub-net's weights and BN buffers (leading slices).
        Same state_dict keys as ``zoo.build(**arch)``; zero inference overhead."""
        plain = copy.deepcopy(self._template)
        p0 = next(self.parameters())
        plain.to(device=p0.device, dtype=p0.dtype)
        sd = self.state_dict()
        out = {}
        for k, v in plain.state_dict().items():
            src = sd[k]
            out[k] = src[tuple(slice(0, n) for n in v.shape)].clone()
        plain.load_state_dict(out, strict=True)
        plain.train(self.training)
        return plain

    @torch.no_grad()
    def load_base(self, plain: nn.Module) -> None:
        """Write a plain zoo model's weights/buffers into the leading slices."""
        sd = self.state_dict()
        for k, v in plain.state_dict().items():
            if k not in sd:
                raise KeyError(f"{k} not in the super-net")
            dst = sd[k]
            if dst.dim() == 0:
                dst.copy_(v)
            else:
                dst[tuple(slice(0, n) for n in v.shape)].copy_(v)


def _perm(t: torch.Tensor, idx: torch.Tensor, dim: int) -> None:
    t.copy_(t.index_select(dim, idx))


@torch.no_grad()
def init_modules(model: nn.Module) -> None:
    """The reference NetAug init (``utils/init.py``, init_type kaiming_uniform): conv
    kaiming_uniform_(a=sqrt(5)); BN gamma 1, beta 0; Linear trunc_normal(std 0.02); biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                m.bias.zero_()


def build_supernet(base: zoo.ZooNet, width_list: list[float], expand_list: list[float],
                   copy_weights: bool = True) -> SuperNet:
    """Super-net of ``base`` with reference (kaiming-uniform) init; when ``copy_weights`` the base
    model's weights and BN buffers are written into the leading slices (so ``export()`` of the
    fresh super-net returns ``base``'s weights exactly)."""
    net = SuperNet(base, width_list, expand_list)
    init_modules(net)
    p0 = next(base.parameters())
    net.to(device=p0.device, dtype=p0.dtype)
    if copy_weights:
        net.load_base(base)
    net.train(base.training)
    return net
