"""torch.distributed for the training loop: one process, or DDP under torchrun (nccl on GPUs, gloo on
CPU). Errors on one rank stop every rank with the same one-line message."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from ..common.errors import UserError
from .errors import DistributedConfigError, TrainError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_env() -> tuple[int, int, int]:
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise TrainError("RANK/WORLD_SIZE/LOCAL_RANK must be integers") from None
    return rank, world, local


def resolve_device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError("--device cuda requested but CUDA is not available in this PyTorch "
                             f"({torch.__version__})")
        return torch.device(spec if ":" in spec else f"cuda:{local_rank}")
    return torch.device("cpu")


def init(device: torch.device) -> DistInfo:
    rank, world, local = dist_env()
    info = DistInfo(rank, world, local)
    if world <= 1:
        return info
    if not dist.is_available():
        raise TrainError("this PyTorch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        try:
            dist.init_process_group(backend=backend)
        except (RuntimeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TrainError(f"cannot initialise torch.distributed ({backend}): {first}") from None
        info.initialized_here = True
    return info


def shutdown(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def check_same_config(cfg, info: DistInfo) -> None:
    """All ranks must train with the same settings; one-line error on every rank otherwise."""
    if not info.enabled:
        return
    mine = (cfg.digest(), cfg.training_fields())
    gathered: list[Any] = [None] * info.world
    dist.all_gather_object(gathered, mine)
    ref_digest, ref_fields = gathered[0]
    for r, (dg, fields) in enumerate(gathered):
        if dg != ref_digest:
            diff = [k for k in sorted(ref_fields) if ref_fields.get(k) != fields.get(k)]
            shown = ", ".join(f"{k}={fields.get(k)!r} (rank 0: {ref_fields.get(k)!r})" for k in diff[:4])
            raise DistributedConfigError(f"ranks disagree on settings: rank {r} has {shown}")


def all_reduce(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _raise_rank_error(err: tuple[str, int] | None) -> None:
    """Re-raise a (message, exit_code) error collected from some rank."""
    if err:
        exc = TrainError(err[0])
        exc.exit_code = err[1]
        raise exc


def _capture(fn: Callable[[], None], info: DistInfo) -> tuple[str, int] | None:
    """Run fn; under DDP a user error becomes (message, exit code) to share with the other ranks."""
    try:
        fn()
    except UserError as exc:
        if not info.enabled:
            raise
        return str(exc), exc.exit_code
    return None


def rank0_first(fn: Callable[[], None], info: DistInfo) -> None:
    """Run `fn` on rank 0 only; a user error there stops every rank with the same message."""
    err = _capture(fn, info) if info.main else None
    _raise_rank_error(broadcast_object(err, info))


def all_ranks_ok(fn: Callable[[], None], info: DistInfo) -> None:
    """Run `fn` on every rank; if any rank fails with a user error, every rank raises it."""
    err = _capture(fn, info)
    if info.enabled:
        errs: list[Any] = [None] * info.world
        dist.all_gather_object(errs, err)
        err = next((e for e in errs if e), None)
    _raise_rank_error(err)


def broadcast_buffers(module: nn.Module, info: DistInfo) -> None:
    """DDP broadcasts buffers before each forward; make rank 0's last ones count everywhere."""
    if info.enabled:
        for b in module.buffers():
            dist.broadcast(b, src=0)


def check_ranks_agree(module: nn.Module, info: DistInfo) -> None:
    if not info.enabled:
        return
    s = sum(float(p.detach().double().sum()) for p in module.parameters())
    sums: list[Any] = [None] * info.world
    dist.all_gather_object(sums, s)
    if any(v != sums[0] for v in sums):
        raise RuntimeError(f"DDP ranks ended with different weights ({sums})")
