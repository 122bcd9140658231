"""model.pt: the trained plain zoo model as the trainer writes it and the converter and KD read it
(format `netaug_mcu.common.artifacts.MODEL_PT`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..common.artifacts import MODEL_PT
from . import zoo
from .errors import TrainError

REQUIRED_KEYS = ("arch", "state_dict", "preprocess")


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return s[0][:200] if s else type(exc).__name__


def read(path: str | os.PathLike, what: str = "model file") -> dict[str, Any]:
    """The checked dict of a model.pt; TrainError (exit 2) naming `what` for anything else."""
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"{what} {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise TrainError(f"cannot read {what} {p}: {_first_line(exc)}") from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_PT:
        raise TrainError(f"{what} {p} is not a netaug-mcu model.pt (format {MODEL_PT!r})")
    for key in REQUIRED_KEYS:
        if key not in obj:
            raise TrainError(f"{what} {p} lacks {key!r}")
    return obj


def build(obj: dict[str, Any], path: str | os.PathLike = "model.pt") -> nn.Module:
    """The zoo model a model.pt describes, with its weights (eval mode)."""
    arch = dict(obj["arch"])
    try:
        model = zoo.build(**arch)
        model.load_state_dict(obj["state_dict"], strict=True)
    except Exception as exc:  # noqa: BLE001 - unknown arch, mismatched weights
        raise TrainError(f"{path} does not match its architecture {arch}: {_first_line(exc)}") from None
    return model.eval()


def payload(plain: nn.Module, arch: dict[str, Any], preprocess: dict[str, Any], classes: list[str],
            metrics: dict[str, Any], train_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": MODEL_PT,
        "arch": dict(arch),
        "state_dict": {k: v.detach().cpu().clone() for k, v in plain.state_dict().items()},
        "preprocess": dict(preprocess),
        "classes": list(classes),
        "metrics": metrics,
        "train_config": train_config,
    }


def init_from(model: nn.Module, path: str, cfg) -> dict[str, Any]:
    """Load weights of an earlier model.pt; a new classifier when the class count differs."""
    obj = read(path, "--init-from")
    arch = obj.get("arch", {})
    if arch.get("name") != cfg.model:
        raise TrainError(f"--init-from {path} holds a {arch.get('name')!r} model, not "
                         f"{cfg.model!r}")
    if int(arch.get("in_channels", -1)) != cfg.channels:
        raise TrainError(f"--init-from {path} has {arch.get('in_channels')} input channels, this "
                         f"run uses --channels {cfg.channels}")
    src = obj["state_dict"]
    dst = model.state_dict()
    head = {k for k in dst if k.startswith("classifier.")}
    loaded, fresh = {}, []
    for k, v in dst.items():
        if k not in src:
            raise TrainError(f"--init-from {path}: weight {k} missing (different architecture?)")
        if src[k].shape == v.shape:
            loaded[k] = src[k]
        elif k in head:
            fresh.append(k)
        else:
            raise TrainError(f"--init-from {path}: weight {k} has shape {tuple(src[k].shape)}, "
                             f"expected {tuple(v.shape)}")
    if fresh and any(k in loaded for k in head):  # re-initialise the whole classifier together
        for k in head:
            loaded.pop(k, None)
    model.load_state_dict(loaded, strict=False)
    return {"init_from": str(path), "new_classifier": bool(fresh),
            "source_classes": arch.get("num_classes")}
