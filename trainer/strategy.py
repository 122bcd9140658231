"""Training strategies: what one optimisation step does, and what gets exported.

The training loop (`trainer.engine`) is strategy-agnostic. It calls, in this order:

    module = strategy.prepare(model)                 # once; e.g. NetAug returns its super-net
    strategy.load_state_dict(state)                  # only when resuming
    for epoch in range(start, total):
        strategy.on_epoch_start(epoch, total)        # e.g. NetAug: channel sorting, aug schedule
        for x, y in train batches:
            optimizer.zero_grad(set_to_none=True)
            loss, logits = strategy.train_step(module, ddp_module, x, y, criterion)
            optimizer.step(); scheduler.step()       # the loop owns zero_grad/step
        strategy.before_eval(module, calib_batches)  # e.g. NetAug: BN re-calibration of the base net
        val accuracy of strategy.eval_model(module)
        plain = strategy.export(module)              # plain zoo nn.Module for model.pt
    state = strategy.state_dict()                    # stored in checkpoint.pt every epoch

Contract of each method
-----------------------
- ``prepare(model) -> nn.Module``: `model` is the plain zoo model (already initialised, on the
  right device). Return the module whose parameters are optimised and checkpointed.
- ``train_step(model, ddp_model, x, y, criterion) -> (loss: float, logits: Tensor)``: `model` is
  the module returned by `prepare`; `ddp_model` is the same module wrapped in
  `DistributedDataParallel` under torchrun, else the very same object as `model`. Forward through
  `ddp_model` (so DDP's gradient hooks fire); use `maybe_no_sync(ddp_model)` for every backward but
  the last one so a single all-reduce carries the summed gradients. Call `backward()` yourself; do
  NOT zero grads or step the optimiser. Return the (base) loss as a Python float (the loop checks
  it for NaN/inf) and the (base) logits used for train accuracy.
- ``on_epoch_start(epoch, total_epochs)``: epoch is 0-based.
- ``before_eval(model, calib_batches)``: `calib_batches` is a zero-argument callable returning an
  iterable of ``(x, y)`` batches: a fixed, deterministic subset of the training data with training
  augmentation, identical on every rank (so no cross-rank sync is needed for BN statistics).
- ``eval_model(model) -> nn.Module``: the module to evaluate (NetAug: the super-net with the base
  sub-net active, or its export).
- ``export(model) -> nn.Module``: a NEW plain zoo model (`trainer.zoo.build(**arch)`-compatible
  state_dict, strict) with the trained weights, sharing no tensors with `model` (the loop may load
  other weights into it); must not modify `model`'s training state.
- ``state_dict() / load_state_dict(d)``: anything needed to resume bit-exactly (e.g. the
  architecture-sampling generator state).

`trainer.netaug.strategy.NetAugStrategy` implements the same methods; `trainer.strategy_factory.build_strategy`
is the one place that constructs strategies from a `TrainConfig`.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any, Callable, Iterable

import torch
from torch import nn

from . import kd

CalibBatches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def maybe_no_sync(ddp_model: nn.Module):
    """`ddp_model.no_sync()` under DDP, a no-op context otherwise."""
    no_sync = getattr(ddp_model, "no_sync", None)
    return no_sync() if callable(no_sync) else contextlib.nullcontext()


class Strategy:
    """Base class: plain supervised training with one forward/backward per step.

    The loop may set ``forward_context`` (a zero-argument callable returning a context manager:
    mixed-precision autocast on CUDA) and ``grad_scaler`` (fp16 loss scaling); strategies run
    their forwards inside ``self.forward_context()`` and call ``self.backward(loss)``."""

    name = "baseline"
    forward_context = staticmethod(contextlib.nullcontext)
    grad_scaler = None

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.grad_scaler is None else self.grad_scaler.scale(loss)).backward()

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def train_step(self, model: nn.Module, ddp_model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   criterion: nn.Module) -> tuple[float, torch.Tensor]:
        with self.forward_context():
            logits = ddp_model(x)
            loss = criterion(logits, y)
        self.backward(loss)
        return float(loss.detach()), logits.detach()

    def on_epoch_start(self, epoch: int, total_epochs: int) -> None:
        pass

    def before_eval(self, model: nn.Module, calib_batches: CalibBatches) -> None:
        pass

    def eval_model(self, model: nn.Module) -> nn.Module:
        return model

    def export(self, model: nn.Module) -> nn.Module:
        return copy.deepcopy(model)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        """Settings recorded in model.pt's train_config / metrics."""
        return {"strategy": self.name}


class BaselineStrategy(Strategy):
    """Plain training, optionally with knowledge distillation from a frozen teacher.

    With a teacher: loss = CE_ls(student, y) + kd_weight * KD(student, teacher, T), the KD term from
    `trainer.kd.kd_loss`. The reported loss is the total loss.
    """

    name = "baseline"

    def __init__(self, teacher: nn.Module | None = None, kd_weight: float = 1.0,
                 kd_temperature: float = 1.0):
        self.teacher = teacher
        self.kd_weight = float(kd_weight)
        self.kd_temperature = float(kd_temperature)
        if teacher is not None:
            kd.freeze(teacher)

    def train_step(self, model, ddp_model, x, y, criterion):
        with self.forward_context():
            logits = ddp_model(x)
            loss = criterion(logits, y)
            if self.teacher is not None:
                with torch.no_grad():
                    t_logits = self.teacher(x)
                loss = loss + self.kd_weight * kd.kd_loss(logits.float(), t_logits.float(), self.kd_temperature)
        self.backward(loss)
        return float(loss.detach()), logits.detach()

    def describe(self):
        d = {"strategy": self.name}
        if self.teacher is not None:
            d.update(kd_weight=self.kd_weight, kd_temperature=self.kd_temperature)
        return d
