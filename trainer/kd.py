"""Knowledge distillation (Hinton et al. 2015), used on the base pass (baseline+KD, NetAug+KD).

    KD(s, t; T) = T^2 * KL( softmax(t / T) || softmax(s / T) )      (mean over the batch)
               = T^2 * mean_b sum_c p_t[b,c] * (log p_t[b,c] - log p_s[b,c])

The T^2 factor keeps the gradient scale independent of T. The total loss is
CE_ls(s, y) + kd_weight * KD(s, t; T). The teacher is frozen (eval mode, no grad).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import model_file
from .errors import TrainError


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    T = float(temperature)
    log_ps = F.log_softmax(student_logits / T, dim=1)
    log_pt = F.log_softmax(teacher_logits.detach() / T, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * (T * T)


def freeze(teacher: nn.Module) -> nn.Module:
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class Teacher(nn.Module):
    """A frozen teacher that adapts the student's input batch to its own input format:
    grey <-> RGB (repeat / mean over channels), resolution (bilinear, align_corners=False) and
    normalisation (undo the student's mean/std, apply the teacher's), when they differ."""

    def __init__(self, model: nn.Module, in_channels: int, resolution: int,
                 mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        self.model = freeze(model)
        self.in_channels = int(in_channels)
        self.resolution = int(resolution)
        self.mean, self.std = mean, std
        self.student_mean: list[float] | None = None
        self.student_std: list[float] | None = None

    def set_student_preprocess(self, mean, std) -> None:
        self.student_mean, self.student_std = list(mean), list(std)

    def train(self, mode: bool = True):  # always frozen
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        renorm = (self.student_mean is not None and self.mean is not None
                  and (self.student_mean != self.mean or self.student_std != self.std))
        if renorm:
            sm = torch.tensor(self.student_mean, device=x.device).view(1, -1, 1, 1)
            ss = torch.tensor(self.student_std, device=x.device).view(1, -1, 1, 1)
            x = x * ss + sm
        c = x.shape[1]
        if c != self.in_channels:
            if c == 1:
                x = x.repeat(1, self.in_channels, 1, 1)
            elif self.in_channels == 1:
                x = x.mean(1, keepdim=True)
            else:
                raise TrainError(f"teacher wants {self.in_channels} input channels, the student gets {c}")
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False, antialias=False)
        if renorm:
            tm = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            ts = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            x = (x - tm) / ts
        return self.model(x)


def load_teacher(path: str | os.PathLike, num_classes: int, device: torch.device | str = "cpu",
                 student_preprocess: dict[str, Any] | None = None) -> Teacher:
    """Load a teacher from any netaug-mcu ``model.pt``; TrainError (exit 2) when the file is not a
    model.pt or its class count differs from ``num_classes``."""
    obj = model_file.read(path, "--teacher")
    arch = dict(obj["arch"])
    if int(arch.get("num_classes", -1)) != int(num_classes):
        raise TrainError(f"--teacher {os.fspath(path)} predicts {arch.get('num_classes')} classes, the student "
                         f"{num_classes}: a teacher must have the same classes")
    model = model_file.build(obj, f"--teacher {os.fspath(path)}")
    pre = obj.get("preprocess") or {}
    t = Teacher(model, arch["in_channels"], pre.get("resolution", arch.get("resolution")),
                pre.get("mean"), pre.get("std"))
    if student_preprocess:
        t.set_student_preprocess(student_preprocess["mean"], student_preprocess["std"])
    return t.to(device)
