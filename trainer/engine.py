"""The training loop: single process or DDP under torchrun, any `trainer.strategy` strategy.

Recipe (reference: mit-han-lab/tinyml netaug/train.py): SGD, Nesterov momentum 0.9, weight decay
on conv/linear weights only (none on BN parameters and biases), label smoothing 0.1, lr = base_lr x
world_size with a linear warm-up from the unscaled base_lr (or --warmup-lr) followed by a cosine
decay to 0, both stepped per iteration.

Outputs (rank 0 only) in ``cfg.out``:
  metrics.jsonl   one JSON line per epoch: epoch, lr, train_loss, train_acc, val_acc, val_loss,
                  epoch_seconds (+ best flag)
  curves.png      loss and accuracy curves (matplotlib)
  checkpoint.pt   everything needed by --resume (module, optimizer, scheduler, epoch, RNG states,
                  strategy state, best accuracy, best exported weights); written atomically
                  after every epoch
  model.pt        the exported plain zoo model (format "netaug-mcu/model/1", see COMMON.md):
                  the best-val epoch (--select best, default) or the last one
  model_last.pt   the exported model of the last epoch (when --select best)
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from . import data as data_mod
from .config import TrainConfig
from .errors import DistributedConfigError, DivergedError, TrainError
from .strategy import Strategy, build_strategy

MODEL_FORMAT = "netaug-mcu/model/1"
CHECKPOINT_FORMAT = "netaug-mcu/checkpoint/1"


# --------------------------------------------------------------------------------------------------
# Distributed helpers


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


def init_distributed(device: torch.device) -> DistInfo:
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


def check_same_config(cfg: TrainConfig, info: DistInfo) -> None:
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
            shown = ", ".join(f"{k}={fields.get(k)!r} (rank 0: {ref_fields.get(k)!r})"
                              for k in diff[:4])
            raise DistributedConfigError(f"ranks disagree on settings: rank {r} has {shown}")


def _all_reduce(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------------------------------
# Small utilities


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    st = {"python": random.getstate(), "numpy": np.random.get_state(),
          "torch": torch.get_rng_state()}
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


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def param_groups(module: nn.Module, wd: float) -> list[dict[str, Any]]:
    """Weight decay on weights of convs/linears only (ndim > 1), none on BN params and biases."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, *, peak: float, warmup_start: float, warmup_steps: int,
          decay_steps: int) -> float:
    """Reference CosineLRwithWarmup: linear warm-up, then 0.5*peak*(1+cos(pi*t/T))."""
    if step < warmup_steps:
        return warmup_start + (peak - warmup_start) * step / warmup_steps
    t = min(step - warmup_steps, decay_steps)
    return 0.5 * peak * (1 + math.cos(math.pi * t / max(1, decay_steps)))


def make_scheduler(optimizer, *, peak: float, warmup_start: float, warmup_steps: int,
                   decay_steps: int):
    def factor(step: int) -> float:
        return lr_at(step, peak=peak, warmup_start=warmup_start, warmup_steps=warmup_steps,
                     decay_steps=decay_steps) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


@torch.no_grad()
def evaluate(model: nn.Module, loader, info: DistInfo, device: torch.device) -> tuple[float, float]:
    """(top-1 accuracy in %, mean CE loss) over the whole split (all ranks' shards summed)."""
    was = model.training
    model.eval()
    correct = total = loss_sum = 0.0
    try:
        for x, y in loader:
            out = model(x)
            loss_sum += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += float((out.argmax(1) == y).sum())
            total += len(y)
    finally:
        model.train(was)
    correct, total, loss_sum = _all_reduce([correct, total, loss_sum], info, device)
    if total == 0:
        return float("nan"), float("nan")
    return 100.0 * correct / total, loss_sum / total


def _num(v: float | None) -> float | None:
    """JSON-safe number: None instead of NaN/inf (e.g. no held-out val split)."""
    return v if v is not None and math.isfinite(v) else None


def _pct(v: float | None) -> str:
    return f"{v:.2f}%" if v is not None and math.isfinite(v) else "n/a (no val split)"


def _first_line(exc: BaseException) -> str:
    s = str(exc).strip().splitlines()
    return s[0] if s else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# Model building, --init-from


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from . import zoo

    if cfg.model not in zoo.MODELS:
        raise TrainError(f"unknown model {cfg.model!r} (choose from: {', '.join(zoo.MODELS)})")
    return zoo.build(cfg.model, in_channels=cfg.channels, num_classes=num_classes,
                     resolution=cfg.resolution, dropout=cfg.dropout)


def load_model_file(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"model file {p} not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file
        raise TrainError(f"cannot read {p}: {_first_line(exc)}") from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT:
        raise TrainError(f"{p} is not a netaug-mcu model.pt (format {MODEL_FORMAT!r})")
    return obj


def init_from(model: nn.Module, path: str, cfg: TrainConfig) -> dict[str, Any]:
    """Load weights of an earlier model.pt; a new classifier when the class count differs."""
    obj = load_model_file(path)
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


# --------------------------------------------------------------------------------------------------
# Output helpers


def _check_out_dir(out: Path, cfg: TrainConfig) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise TrainError(f"cannot write to output folder {out}: "
                         f"{exc.strerror or _first_line(exc)}") from None
    ck = out / "checkpoint.pt"
    if cfg.resume:
        if not ck.is_file():
            raise TrainError(f"--resume: no checkpoint.pt in {out}")
    elif ck.exists() and not cfg.overwrite:
        raise TrainError(f"{out} already holds a training run; use --resume to continue it, "
                         f"--overwrite to start over, or another --out")


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    a1.plot(ep, [h["val_loss"] for h in history], "s-", label="val loss (no smoothing)")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a1.legend()
    a1.grid(alpha=0.3)
    a2.plot(ep, [h["train_acc"] for h in history], "o-", label="train top-1")
    a2.plot(ep, [h["val_acc"] for h in history], "s-", label="val top-1")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy (%)")
    a2.legend()
    a2.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def model_payload(plain: nn.Module, cfg: TrainConfig, ds, metrics: dict[str, Any],
                  train_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "arch": {"name": cfg.model, "in_channels": cfg.channels, "num_classes": ds.num_classes,
                 "resolution": cfg.resolution},
        "state_dict": {k: v.detach().cpu().clone() for k, v in plain.state_dict().items()},
        "preprocess": ds.preprocess.as_dict(),
        "classes": list(ds.classes),
        "metrics": metrics,
        "train_config": train_config,
    }


class _Progress:
    """rich progress bar for one epoch (rank 0 only; silent when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.p = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                              MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                              TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self.p.__enter__()
        return self

    def task(self, desc: str, total: int):
        return self.p.add_task(desc, total=total, stats="") if self.p else None

    def update(self, task, **kw):
        if self.p is not None:
            self.p.update(task, **kw)

    def __exit__(self, *a):
        if self.p is not None:
            self.p.__exit__(*a)


# --------------------------------------------------------------------------------------------------
# The loop


def run_training(cfg: TrainConfig, *, model_factory: Callable[[int], nn.Module] | None = None,
                 strategy: Strategy | None = None, dataset=None,
                 on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train according to `cfg`; returns a summary dict (also holding the trained `module`).

    `model_factory(num_classes)`, `strategy` and `dataset` replace the zoo model, the strategy
    built from `cfg` and the dataset loaded from `cfg` (tests, benchmarks). `on_epoch_end(epoch,
    record)` runs after each epoch's checkpoint has been written.
    """
    cfg.validate()
    rank, world, local = dist_env()
    device = resolve_device(cfg.device, local)
    if device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    info = init_distributed(device)
    try:
        return _run(cfg, info, device, model_factory, strategy, dataset, on_epoch_end, log)
    finally:
        if info.initialized_here and dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()


def _run(cfg, info, device, model_factory, strategy, dataset, on_epoch_end, log):
    main = info.main
    out = Path(cfg.out)
    say = (log or (lambda s: print(s, flush=True))) if main else (lambda s: None)
    show_progress = main and cfg.progress
    check_same_config(cfg, info)
    if model_factory is None:  # fail fast, before any data is read
        from . import zoo

        if cfg.model not in zoo.MODELS:
            raise TrainError(f"unknown model {cfg.model!r} (choose from: {', '.join(zoo.MODELS)})")
    _rank0_first(lambda: _check_out_dir(out, cfg), info)

    seed_everything(cfg.seed)

    # ---- data
    if dataset is None:
        kw = dict(resolution=cfg.resolution, channels=cfg.channels, val_split=cfg.val_split,
                  train_limit=cfg.train_limit, val_limit=cfg.val_limit,
                  test_limit=cfg.test_limit, data_dir=cfg.data_dir)
        holder: dict[str, Any] = {}

        def load_main():  # rank 0 first: it may have to download
            holder["ds"] = data_mod.load_dataset(cfg.dataset, download=cfg.download, **kw)

        _rank0_first(load_main, info)

        def load_others():  # other nodes may need their own copy (atomic writes: no race)
            holder["ds"] = data_mod.load_dataset(cfg.dataset, download=cfg.download, quiet=True,
                                                 **kw)

        _all_ranks_ok(load_others if "ds" not in holder else (lambda: None), info)
        dataset = holder["ds"]
    ds = dataset
    pre = ds.preprocess
    aug = data_mod.AugConfig(enabled=cfg.augment, scale_min=cfg.crop_scale_min)
    train_loader = data_mod.Loader(ds.train, ds.train_idx, pre, batch_size=cfg.batch_size,
                                   train=True, seed=cfg.seed, rank=info.rank, world=info.world,
                                   aug=aug, workers=cfg.workers, device=device)
    val_loader = data_mod.Loader(ds.val, ds.val_idx, pre, batch_size=max(256, cfg.batch_size),
                                 train=False, rank=info.rank, world=info.world,
                                 workers=cfg.workers, device=device)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise TrainError(f"training split has {len(ds.train_idx)} images: fewer than one batch "
                         f"of {cfg.batch_size} x {info.world} process(es); lower --batch-size")
    gen = torch.Generator().manual_seed(data_mod.CALIB_SEED)
    calib_idx = ds.train_idx[torch.randperm(len(ds.train_idx), generator=gen)][:cfg.calib_images]

    def calib_batches():
        return data_mod.Loader(ds.train, calib_idx, pre, batch_size=cfg.batch_size, train=True,
                               aug=aug, workers=cfg.workers, device=device,
                               fixed_params_seed=data_mod.CALIB_SEED)

    # ---- model + strategy
    torch.manual_seed(cfg.seed)
    model = model_factory(ds.num_classes) if model_factory else build_model(cfg, ds.num_classes)
    init_info = init_from(model, cfg.init_from, cfg) if cfg.init_from else None
    model = model.to(device)
    if strategy is None:
        strategy = build_strategy(cfg, ds.num_classes, device, pre.as_dict())
    module = strategy.prepare(model).to(device)
    if info.enabled:
        ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
        ddp_module = nn.parallel.DistributedDataParallel(
            module, find_unused_parameters=getattr(strategy, "find_unused_parameters", False),
            **ddp_kw)
    else:
        ddp_module = module

    # ---- optimisation
    peak = cfg.lr * info.world
    warm_start = cfg.lr if cfg.warmup_lr is None else cfg.warmup_lr
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    decay_steps = cfg.epochs * steps_per_epoch - warmup_steps
    optimizer = torch.optim.SGD(param_groups(module, cfg.wd), lr=peak, momentum=0.9,
                                nesterov=True)
    scheduler = make_scheduler(optimizer, peak=peak, warmup_start=warm_start,
                               warmup_steps=warmup_steps, decay_steps=decay_steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    # ---- resume
    start_epoch, best_acc, best_epoch, best_state, history = 0, -1.0, -1, None, []
    train_seconds = 0.0
    if cfg.resume:
        ck = _load_checkpoint(out / "checkpoint.pt", info)
        if ck is None:
            raise TrainError(f"--resume: cannot read {out / 'checkpoint.pt'}")
        if ck["config_digest"] != cfg.digest():
            old = ck["config"]
            now = cfg.training_fields()
            diff = [k for k in sorted(now) if old.get(k) != now.get(k)]
            raise TrainError("--resume: settings differ from the checkpoint's: " + ", ".join(
                f"{k}={now.get(k)!r} (checkpoint: {old.get(k)!r})" for k in diff[:4]))
        if ck.get("world_size", 1) != info.world:
            raise TrainError(f"--resume: checkpoint was written by {ck.get('world_size')} "
                             f"process(es), this run has {info.world}")
        module.load_state_dict(ck["module"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        strategy.load_state_dict(ck.get("strategy", {}))
        start_epoch = ck["epoch"] + 1
        best_acc, best_epoch, best_state = ck["best_acc"], ck["best_epoch"], ck["best_state"]
        history = [h for h in ck["history"] if h["epoch"] <= start_epoch]
        train_seconds = ck.get("train_seconds", 0.0)
        set_rng_state(ck["rng"])
        say(f"resuming {out} at epoch {start_epoch + 1}/{cfg.epochs} (best val {best_acc:.2f}% "
            f"at epoch {best_epoch + 1})")
    if main:
        with open(out / "metrics.jsonl", "w") as fh:  # rewrite: drop epochs after the checkpoint
            for h in history:
                fh.write(json.dumps(h) + "\n")

    train_config = dict(cfg.to_dict(), world_size=info.world, peak_lr=peak,
                        steps_per_epoch=steps_per_epoch, **strategy.describe())
    if init_info:
        train_config.update(init_info)
    if start_epoch == 0:
        say(f"training {cfg.model} on {ds.summary()}; {info.world} process(es) on {device}, "
            f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch_size}"
            f"{'/process' if info.enabled else ''}, peak lr {peak:g}, "
            f"strategy {strategy.describe().get('strategy')}")

    # ---- epochs
    module.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        strategy.on_epoch_start(epoch, cfg.epochs)
        train_loader.set_epoch(epoch)
        module.train()
        loss_sum = correct = seen = 0.0
        lr_epoch = optimizer.param_groups[0]["lr"]
        with _Progress(show_progress) as prog:
            task = prog.task(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch)
            for step, (x, y) in enumerate(train_loader):
                optimizer.zero_grad(set_to_none=True)
                loss, logits = strategy.train_step(module, ddp_module, x, y, criterion)
                bad = 0.0 if math.isfinite(loss) else 1.0
                if info.enabled:
                    bad = _all_reduce([bad], info, device)[0]
                if bad:
                    kept = (f"the last good checkpoint (epoch {epoch}) is kept in "
                            f"{out / 'checkpoint.pt'}" if epoch > 0 else
                            "no checkpoint had been written yet")
                    raise DivergedError(
                        f"loss became {loss if not math.isfinite(loss) else 'nan/inf on another rank'}"
                        f" at epoch {epoch + 1} step {step + 1} (lr "
                        f"{optimizer.param_groups[0]['lr']:.4g}); training stopped, {kept}; "
                        f"try a lower --lr")
                optimizer.step()
                scheduler.step()
                n = len(y)
                loss_sum += loss * n
                correct += float((logits.argmax(1) == y).sum())
                seen += n
                if show_progress and (step % 5 == 0 or step == steps_per_epoch - 1):
                    prog.update(task, completed=step + 1,
                                stats=f"loss {loss_sum / seen:.4f} acc {100 * correct / seen:5.2f}%")
        loss_sum, correct, seen = _all_reduce([loss_sum, correct, seen], info, device)
        if info.enabled:  # DDP broadcasts buffers before each forward; make the last one count
            for b in module.buffers():
                dist.broadcast(b, src=0)
        strategy.before_eval(module, calib_batches)
        eval_net = strategy.eval_model(module)
        val_acc, val_loss = evaluate(eval_net, val_loader, info, device)
        is_best = val_acc > best_acc or not math.isfinite(val_acc)  # no val split: keep latest
        plain = strategy.export(module) if is_best else None
        if is_best:
            best_acc, best_epoch = val_acc, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in plain.state_dict().items()}
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        rec = {"epoch": epoch + 1, "lr": lr_epoch, "train_loss": loss_sum / seen,
               "train_acc": 100.0 * correct / seen, "val_acc": _num(val_acc),
               "val_loss": _num(val_loss),
               "epoch_seconds": round(seconds, 3), "best": is_best}
        history.append(rec)
        if main:
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {rec['train_loss']:.4f} acc "
                f"{rec['train_acc']:.2f}% | val acc {_pct(val_acc)}"
                f"{' (best)' if is_best and math.isfinite(val_acc) else ''}"
                f" | {seconds:.1f}s")
            if is_best and cfg.select == "best":
                metrics = {"val_top1": _num(val_acc), "best_epoch": best_epoch + 1,
                           "epochs_done": epoch + 1}
                atomic_save(model_payload(plain, cfg, ds, metrics, train_config), out / "model.pt")
            try:
                plot_curves(history, out / "curves.png",
                            f"{cfg.model} on {ds.name} ({strategy.describe().get('strategy')})")
            except Exception as exc:  # noqa: BLE001 - a plot must never kill a training run
                say(f"warning: could not draw curves.png: {_first_line(exc)}")
            ck = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "module": module.state_dict(),
                  "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                  "strategy": strategy.state_dict(), "rng": rng_state(), "best_acc": best_acc,
                  "best_epoch": best_epoch, "best_state": best_state, "history": history,
                  "config": cfg.training_fields(), "config_digest": cfg.digest(),
                  "world_size": info.world, "train_seconds": train_seconds}
            atomic_save(ck, out / "checkpoint.pt")
        if on_epoch_end is not None:
            on_epoch_end(epoch, rec)

    # ---- final: consistency across ranks, export, test accuracy
    if info.enabled:
        s = sum(float(p.detach().double().sum()) for p in module.parameters())
        sums: list[Any] = [None] * info.world
        dist.all_gather_object(sums, s)
        if any(v != sums[0] for v in sums):
            raise TrainError(f"internal error: DDP ranks ended with different weights ({sums})")
    last_plain = strategy.export(module)
    final_state = best_state if cfg.select == "best" else \
        {k: v.detach().cpu().clone() for k, v in last_plain.state_dict().items()}
    result: dict[str, Any] = {"out": str(out), "module": module, "best_val_acc": best_acc,
                              "best_epoch": best_epoch + 1, "history": history,
                              "world_size": info.world, "train_seconds": train_seconds}
    test_acc = last_test = None
    if ds.test is not None and ds.test_idx is not None:
        test_loader = data_mod.Loader(ds.test, ds.test_idx, pre, batch_size=256, train=False,
                                      rank=info.rank, world=info.world, workers=cfg.workers,
                                      device=device)
        export_copy = strategy.export(module)
        export_copy.load_state_dict(final_state)
        test_acc, _ = evaluate(export_copy.to(device), test_loader, info, device)
        last_test, _ = evaluate(last_plain.to(device), test_loader, info, device)
    if main:
        counts = {}
        with contextlib.suppress(Exception):
            from . import zoo

            p, m = zoo.count(last_plain, cfg.resolution, cfg.channels)
            counts = {"params": p, "macs": m}
        final_hist = history[-1]
        sel_epoch = best_epoch if cfg.select == "best" else cfg.epochs - 1
        metrics = {"val_top1": _num(best_acc) if cfg.select == "best" else final_hist["val_acc"],
                   "test_top1": test_acc, "selected_epoch": sel_epoch + 1, "select": cfg.select,
                   "best_val_top1": _num(best_acc), "best_epoch": best_epoch + 1,
                   "last_val_top1": final_hist["val_acc"], "last_test_top1": last_test,
                   "last_train_top1": final_hist["train_acc"], "epochs": cfg.epochs,
                   "train_seconds": round(train_seconds, 2),
                   "test_samples": 0 if ds.test_idx is None else len(ds.test_idx), **counts}
        if cfg.select == "best":
            plain_best = strategy.export(module)
            plain_best.load_state_dict(final_state)
            atomic_save(model_payload(plain_best, cfg, ds, metrics, train_config), out / "model.pt")
            atomic_save(model_payload(last_plain, cfg, ds, dict(metrics, test_top1=last_test,
                                                                 selected_epoch=cfg.epochs),
                                      train_config), out / "model_last.pt")
        else:
            atomic_save(model_payload(last_plain, cfg, ds, metrics, train_config), out / "model.pt")
        atomic_write_text(out / "summary.json", json.dumps(metrics, indent=2) + "\n")
        result["metrics"] = metrics
        t = f", test {test_acc:.2f}%" if test_acc is not None else ""
        say(f"done: model.pt = epoch {sel_epoch + 1} (val {_pct(metrics['val_top1'])}{t})")
    result["test_acc"] = test_acc
    return result


def _raise_rank_error(err: tuple[str, int] | None) -> None:
    """Re-raise a (message, exit_code) TrainError collected from some rank."""
    if err:
        exc = TrainError(err[0])
        exc.exit_code = err[1]
        raise exc


def _rank0_first(fn: Callable[[], None], info: DistInfo) -> None:
    """Run `fn` on rank 0 only; a TrainError there stops every rank with the same message."""
    err = None
    if info.main:
        try:
            fn()
        except TrainError as exc:
            if not info.enabled:
                raise
            err = (str(exc), getattr(exc, "exit_code", 2))
    if info.enabled:
        box = [err]
        dist.broadcast_object_list(box, src=0)
        err = box[0]
    _raise_rank_error(err)


def _all_ranks_ok(fn: Callable[[], None], info: DistInfo) -> None:
    """Run `fn` on every rank; if any rank fails with a TrainError, every rank raises it."""
    err = None
    try:
        fn()
    except TrainError as exc:
        if not info.enabled:
            raise
        err = (str(exc), getattr(exc, "exit_code", 2))
    if info.enabled:
        errs: list[Any] = [None] * info.world
        dist.all_gather_object(errs, err)
        err = next((e for e in errs if e), None)
    _raise_rank_error(err)


def _load_checkpoint(path: Path, info: DistInfo) -> dict[str, Any] | None:
    """Rank 0 reads the checkpoint and broadcasts it (no shared file system needed)."""
    ck = None
    if info.main:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001
            if not info.enabled:
                raise TrainError(f"--resume: cannot read {path}: {_first_line(exc)}") from None
            ck = None
        if ck is not None and (not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT):
            if not info.enabled:
                raise TrainError(f"--resume: {path} is not a netaug-mcu checkpoint")
            ck = None
    if info.enabled:
        box = [ck]
        dist.broadcast_object_list(box, src=0)
        ck = box[0]
    return ck
