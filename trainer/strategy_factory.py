"""The one place that turns a `TrainConfig` into a training strategy (baseline, KD, NetAug, NetAug+KD)."""
from __future__ import annotations

import torch
from torch import nn

from . import kd
from .netaug.strategy import NetAugStrategy
from .strategy import BaselineStrategy, Strategy


def load_teacher(cfg, num_classes: int, device: torch.device, preprocess: dict | None) -> nn.Module | None:
    if not cfg.teacher:
        return None
    # the teacher adapts the student's batches (channels, resolution, normalisation) to its own
    return kd.load_teacher(cfg.teacher, num_classes=num_classes, device=device, student_preprocess=preprocess)


def build_strategy(cfg, num_classes: int, device: torch.device, preprocess: dict | None = None) -> Strategy:
    """The strategy a `TrainConfig` asks for (baseline, KD, NetAug, NetAug+KD)."""
    teacher = load_teacher(cfg, num_classes, device, preprocess)
    if cfg.netaug:
        return NetAugStrategy(model_name=cfg.model, aug_width=cfg.aug_width, aug_expand=cfg.aug_expand,
                              alpha=cfg.alpha, seed=cfg.seed, teacher=teacher, kd_weight=cfg.kd_weight,
                              kd_temperature=cfg.kd_temperature)
    return BaselineStrategy(teacher=teacher, kd_weight=cfg.kd_weight, kd_temperature=cfg.kd_temperature)
