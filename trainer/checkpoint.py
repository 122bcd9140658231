"""checkpoint.pt (format `common.artifacts.CHECKPOINT`): everything needed to continue a killed run
exactly (module, optimizer, scheduler, strategy, RNG states, best-so-far), written atomically after
every epoch by rank 0 and read by rank 0 for --resume (then broadcast: no shared file system needed).
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.artifacts import CHECKPOINT
from ..common.fsio import atomic_write_with
from . import distributed
from .errors import TrainError

NAME = "checkpoint.pt"


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return s[0] if s else type(exc).__name__


def atomic_save(obj: Any, path: Path) -> None:
    atomic_write_with(path, lambda fh: torch.save(obj, fh))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(st["cuda"])


@dataclass
class Progress:
    """Where a run stands: restored by --resume, saved after every epoch."""
    start_epoch: int = 0
    best_acc: float = -1.0
    best_epoch: int = -1
    best_state: dict | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0


def check_out_dir(out: Path, resume: bool, overwrite: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise TrainError(f"cannot write to output folder {out}: {exc.strerror or _first_line(exc)}") from None
    ck = out / NAME
    if resume:
        if not ck.is_file():
            raise TrainError(f"--resume: no {NAME} in {out}")
    elif ck.exists() and not overwrite:
        raise TrainError(f"{out} already holds a training run; use --resume to continue it, "
                         f"--overwrite to start over, or another --out")


def save(path: Path, *, epoch: int, module, optimizer, scheduler, strategy, progress: Progress, cfg,
         world: int) -> None:
    atomic_save({"format": CHECKPOINT, "epoch": epoch, "module": module.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "strategy": strategy.state_dict(), "rng": rng_state(), "best_acc": progress.best_acc,
                 "best_epoch": progress.best_epoch, "best_state": progress.best_state,
                 "history": progress.history, "config": cfg.training_fields(), "config_digest": cfg.digest(),
                 "world_size": world, "train_seconds": progress.train_seconds}, path)


def _read(path: Path, info: distributed.DistInfo) -> dict[str, Any] | None:
    ck = None
    if info.main:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
            if not info.enabled:
                raise TrainError(f"--resume: cannot read {path}: {_first_line(exc)}") from None
            ck = None
        if ck is not None and (not isinstance(ck, dict) or ck.get("format") != CHECKPOINT):
            if not info.enabled:
                raise TrainError(f"--resume: {path} is not a netaug-mcu checkpoint")
            ck = None
    return distributed.broadcast_object(ck, info)


def resume(path: Path, cfg, info: distributed.DistInfo, module, optimizer, scheduler, strategy) -> Progress:
    """Load checkpoint.pt into the run's objects; the settings must be the checkpoint's."""
    ck = _read(path, info)
    if ck is None:
        raise TrainError(f"--resume: cannot read {path}")
    if ck["config_digest"] != cfg.digest():
        old, now = ck["config"], cfg.training_fields()
        diff = [k for k in sorted(now) if old.get(k) != now.get(k)]
        raise TrainError("--resume: settings differ from the checkpoint's: " + ", ".join(
            f"{k}={now.get(k)!r} (checkpoint: {old.get(k)!r})" for k in diff[:4]))
    if ck.get("world_size", 1) != info.world:
        raise TrainError(f"--resume: checkpoint was written by {ck.get('world_size')} process(es), this run "
                         f"has {info.world}")
    module.load_state_dict(ck["module"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    strategy.load_state_dict(ck.get("strategy", {}))
    start = ck["epoch"] + 1
    set_rng_state(ck["rng"])
    return Progress(start, ck["best_acc"], ck["best_epoch"], ck["best_state"],
                    [h for h in ck["history"] if h["epoch"] <= start], ck.get("train_seconds", 0.0))
