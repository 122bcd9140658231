"""How the trainer runs fast without changing what it computes: threads, memory format, mixed
precision and the plain layout of everything it exports.

Measured on the 2-core CPU box (bench/train_throughput.py): channels_last makes one mbv2-tiny@32
step ~1.7x faster than NCHW (oneDNN's depthwise kernels are much faster in NHWC); weights are
converted back to the plain NCHW layout on export, so model.pt holds the same bytes as before.
On CUDA: channels_last + autocast (bf16, or fp16 with a GradScaler).
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

AMP_MODES = ("off", "bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def configure_threads(threads: int) -> None:
    """`threads` intra-op threads and one inter-op thread (these nets have no parallel branches;
    a second inter-op pool only adds spinning threads on a shared machine)."""
    torch.set_num_threads(int(threads))
    with contextlib.suppress(RuntimeError):  # only allowed before the first parallel region
        torch.set_num_interop_threads(1)


def memory_format(enabled: bool) -> torch.memory_format:
    return torch.channels_last if enabled else torch.contiguous_format


def to_training_layout(module: nn.Module, enabled: bool) -> nn.Module:
    """4-D weights in channels_last (NHWC) when `enabled`; a no-op otherwise."""
    return module.to(memory_format=torch.channels_last) if enabled else module


def to_plain_layout(module: nn.Module) -> nn.Module:
    """Every 4-D weight back in the contiguous NCHW layout (exports, model.pt)."""
    return module.to(memory_format=torch.contiguous_format)


def plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the state_dict in the contiguous layout (bit-identical values)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def check_amp(amp: str, device: torch.device) -> None:
    from .errors import TrainError

    if amp not in AMP_MODES:
        raise TrainError(f"--amp must be one of {', '.join(AMP_MODES)} (got {amp!r})")
    if amp != "off" and device.type != "cuda":
        raise TrainError(f"--amp {amp} needs --device cuda (mixed precision is for GPUs; on CPU the "
                         f"trainer runs float32)")


def autocast(amp: str, device: torch.device):
    """The autocast context of one training step (a no-op for amp == 'off')."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> Any | None:
    """fp16 needs loss scaling (its exponent range is too small for small gradients); bf16 not."""
    if amp != "fp16":
        return None
    return torch.amp.GradScaler(device.type)
