"""``NetAugStrategy``: NetAug for the strategy-agnostic training loop (``trainer.engine``).

One step (reference ``train.py`` L98-171), gradients of both passes summed in the shared weights:

    set_active("min");   with no_sync: loss = CE(model(x), y) [+ kd_weight*KD]; loss.backward()
    set_active(sampled); aug = alpha * CE(model(x), y); aug.backward()   # DDP all-reduce here

Schedule (reference: ``stop_aug_w_epoch`` = last ~half): while ``epoch < total - total//2`` the
aug pass samples widths and expand ratios ("random") and the hidden channels are sorted at each
epoch start; afterwards widths stay at the base and only the expand ratios are sampled ("min_w").
Before every evaluation / export the base model's BN statistics are re-calibrated on the fixed
calibration subset the loop provides.

Initialisation: ``prepare(model)`` builds the super-net with the reference init (conv
kaiming_uniform(a=sqrt(5)), BN 1/0, Linear trunc_normal(0.02)) and writes the given plain model's
weights into the leading slices (``copy_weights=True``, default), so a NetAug run and a baseline
run that start from the same plain model start from the same base weights; ``copy_weights=False``
keeps the pure reference init of the whole super-net.  Quirks kept from the reference: SGD momentum
buffers are not permuted by the channel sort; the aug pass also updates the base slice's BN running
stats (they are re-calibrated before evaluation anyway).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .. import kd, zoo
from ..errors import TrainError
from ..strategy import Strategy, maybe_no_sync
from .supernet import SuperNet, build_supernet

# Reference factor lists (bash/imagenet/*.sh): the width list comes with each zoo entry, the expand
# list is the same everywhere.
EXPAND_DEFAULT = [1.0, 1.6, 2.2, 2.8]
WIDTH_DEFAULTS = {name: list(entry["netaug_width"]) for name, entry in zoo.MODELS.items()}


class NetAugError(TrainError):
    """Bad NetAug settings (exit code 2)."""


def factor_list(r: float, s: int) -> list[float]:
    """Candidates ``{1 + i(r-1)/s : i = 0..s}`` from augmentation factor r and diversity factor s."""
    if r < 1 or s < 0 or (s == 0 and r != 1):
        raise NetAugError(f"need r >= 1 and s >= 1 (got r={r}, s={s})")
    if s == 0:
        return [1.0]
    return [round(1 + i * (r - 1) / s, 6) for i in range(s + 1)]


def validate_list(name: str, lst) -> list[float]:
    try:
        vals = [float(v) for v in lst]
    except (TypeError, ValueError):
        raise NetAugError(f"{name} must be a list of numbers, got {lst!r}") from None
    if not vals:
        raise NetAugError(f"{name} is empty (it must contain 1.0)")
    if any(v != v or v in (float("inf"),) for v in vals):
        raise NetAugError(f"{name} has a non-finite value: {vals}")
    if any(v < 1.0 for v in vals):
        raise NetAugError(f"{name} values must all be >= 1 (got {vals})")
    if 1.0 not in vals:
        raise NetAugError(f"{name} must contain 1.0 (the base model), got {vals}")
    if vals != sorted(vals) or len(set(vals)) != len(vals):
        raise NetAugError(f"{name} must be strictly increasing, got {vals}")
    return vals


class NetAugStrategy(Strategy):
    """NetAug training strategy (same interface as ``trainer.strategy.Strategy``)."""

    name = "netaug"
    find_unused_parameters = False

    def __init__(self, model_name: str | None = None, aug_width=None, aug_expand=None, alpha: float = 1.0,
                 seed: int = 0, teacher: nn.Module | None = None, kd_weight: float = 1.0,
                 kd_temperature: float = 1.0, *, arch_name: str | None = None, copy_weights: bool = True,
                 stop_aug_w_frac: float = 0.5, sort: bool = True):
        name = model_name or arch_name
        if name is not None and name not in zoo.MODELS:
            raise NetAugError(f"unknown model {name!r} (choose from: {', '.join(zoo.MODELS)})")
        self.model_name = name
        self.aug_width = validate_list("--aug-width", aug_width if aug_width is not None
                                       else WIDTH_DEFAULTS.get(name, [1.0, 1.8, 2.6]))
        self.aug_expand = validate_list("--aug-expand", aug_expand if aug_expand is not None
                                        else EXPAND_DEFAULT)
        try:
            self.alpha = float(alpha)
        except (TypeError, ValueError):
            raise NetAugError(f"--alpha must be a number, got {alpha!r}") from None
        if not (self.alpha >= 0) or self.alpha == float("inf"):
            raise NetAugError(f"--alpha must be a finite number >= 0, got {alpha}")
        if not 0.0 <= float(stop_aug_w_frac) <= 1.0:
            raise NetAugError(f"stop_aug_w_frac must be in [0, 1], got {stop_aug_w_frac}")
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.teacher = teacher
        self.kd_weight = float(kd_weight)
        self.kd_temperature = float(kd_temperature)
        self.copy_weights = bool(copy_weights)
        self.stop_aug_w_frac = float(stop_aug_w_frac)
        self.sort = bool(sort)
        self.mode = "random"
        self.sorted_epochs = 0
        self.model: SuperNet | None = None
        if teacher is not None:
            kd.freeze(teacher)

    # ------------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> SuperNet:
        if isinstance(model, SuperNet):
            self.model = model
            return model
        if not isinstance(model, zoo.ZooNet):
            raise NetAugError(f"NetAug needs a zoo model, got {type(model).__name__}")
        if self.model_name is not None and model.arch.get("name") != self.model_name:
            raise NetAugError(f"strategy built for {self.model_name!r}, model is {model.arch.get('name')!r}")
        self.model = build_supernet(model, self.aug_width, self.aug_expand, copy_weights=self.copy_weights)
        return self.model

    @staticmethod
    def _net(model: nn.Module) -> SuperNet:
        net = getattr(model, "module", model)
        if not isinstance(net, SuperNet):
            raise NetAugError("NetAugStrategy got a module that prepare() did not build")
        return net

    def train_step(self, model, ddp_model, x, y, criterion):
        net = self._net(model)
        net.set_active("min")
        with maybe_no_sync(ddp_model):
            with self.forward_context():
                logits = ddp_model(x)
                loss = criterion(logits, y)
                if self.teacher is not None and self.kd_weight > 0:
                    with torch.no_grad():
                        t_logits = self.teacher(x)
                    loss = loss + self.kd_weight * kd.kd_loss(logits.float(), t_logits.float(),
                                                              self.kd_temperature)
            self.backward(loss)
        net.set_active(self.mode, self.generator)
        with self.forward_context():
            aug_loss = self.alpha * criterion(ddp_model(x), y)
        self.backward(aug_loss)
        net.set_active("min")
        return float(loss.detach()), logits.detach()

    def width_aug_on(self, epoch: int, total_epochs: int) -> bool:
        remaining = total_epochs - epoch
        return remaining > int(total_epochs * self.stop_aug_w_frac)

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        if self.width_aug_on(epoch, total_epochs):
            self.mode = "random"
            if self.sort and self.model is not None and len(self.aug_width) > 1:
                self.model.sort_channels()
                self.sorted_epochs += 1
        else:
            self.mode = "min_w"

    def before_eval(self, model, calib_batches) -> None:
        batches = calib_batches() if callable(calib_batches) else calib_batches
        self._net(model).reset_bn(batches)

    def eval_model(self, model) -> nn.Module:
        net = self._net(model)
        net.set_active("min")
        return net

    def export(self, model) -> zoo.ZooNet:
        net = self._net(model)
        return net.export()

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "mode": self.mode, "sorted_epochs": self.sorted_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if "generator" in state:
            self.generator.set_state(state["generator"])
        self.mode = state.get("mode", self.mode)
        self.sorted_epochs = state.get("sorted_epochs", self.sorted_epochs)

    def describe(self) -> dict[str, Any]:
        d = {"strategy": "netaug+kd" if self.teacher is not None else "netaug",
             "aug_width": self.aug_width, "aug_expand": self.aug_expand, "alpha": self.alpha,
             "netaug_seed": self.seed, "stop_aug_w_frac": self.stop_aug_w_frac,
             "init": "copy-base+kaiming_uniform" if self.copy_weights else "kaiming_uniform"}
        if self.teacher is not None:
            d.update(kd_weight=self.kd_weight, kd_temperature=self.kd_temperature)
        return d
