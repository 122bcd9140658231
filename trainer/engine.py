"""The training loop: single process or DDP under torchrun, any `trainer.strategy` strategy.

Recipe (reference: mit-han-lab/tinyml netaug/train.py): SGD, Nesterov momentum 0.9, weight decay
on conv/linear weights only (none on BN parameters and biases), label smoothing 0.1, lr = base_lr x
world_size with a linear warm-up from the unscaled base_lr (or --warmup-lr) followed by a cosine
decay to 0, both stepped per iteration.

Outputs (rank 0 only) in ``cfg.out``:
  metrics.jsonl   one JSON line per epoch: epoch, lr, train_loss, train_acc, val_acc, val_loss,
                  epoch_seconds (+ best flag)                                      (run_files)
  curves.png      loss and accuracy curves (matplotlib)                            (run_files)
  checkpoint.pt   everything needed by --resume, written atomically after every epoch (checkpoint)
  model.pt        the exported plain zoo model (common.artifacts.MODEL_PT, model_file): the best-val
                  epoch (--select best, default) or the last one
  model_last.pt   the exported model of the last epoch (when --select best)
Distributed concerns live in `trainer.distributed`.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import checkpoint, distributed, model_file, run_files, speed
from . import data as data_mod
from .config import TrainConfig
from .errors import DivergedError, TrainError
from .strategy import Strategy
from .strategy_factory import build_strategy


def param_groups(module: nn.Module, wd: float) -> list[dict[str, Any]]:
    """Weight decay on weights of convs/linears only (ndim > 1), none on BN params and biases."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step: int, *, peak: float, warmup_start: float, warmup_steps: int, decay_steps: int) -> float:
    """Reference CosineLRwithWarmup: linear warm-up, then 0.5*peak*(1+cos(pi*t/T))."""
    if step < warmup_steps:
        return warmup_start + (peak - warmup_start) * step / warmup_steps
    t = min(step - warmup_steps, decay_steps)
    return 0.5 * peak * (1 + math.cos(math.pi * t / max(1, decay_steps)))


def make_scheduler(optimizer, *, peak: float, warmup_start: float, warmup_steps: int, decay_steps: int):
    def factor(step: int) -> float:
        return lr_at(step, peak=peak, warmup_start=warmup_start, warmup_steps=warmup_steps,
                     decay_steps=decay_steps) / peak

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def evaluate(model: nn.Module, loader, info: distributed.DistInfo, device: torch.device) -> tuple[float, float]:
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
    correct, total, loss_sum = distributed.all_reduce([correct, total, loss_sum], info, device)
    if total == 0:
        return float("nan"), float("nan")
    return 100.0 * correct / total, loss_sum / total


def _num(v: float | None) -> float | None:
    """JSON-safe number: None instead of NaN/inf (e.g. no held-out val split)."""
    return v if v is not None and math.isfinite(v) else None


def _pct(v: float | None) -> str:
    return f"{v:.2f}%" if v is not None and math.isfinite(v) else "n/a (no val split)"


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    from . import zoo

    if cfg.model not in zoo.MODELS:
        raise TrainError(f"unknown model {cfg.model!r} (choose from: {', '.join(zoo.MODELS)})")
    return zoo.build(cfg.model, in_channels=cfg.channels, num_classes=num_classes,
                     resolution=cfg.resolution, dropout=cfg.dropout)


CALIB_CACHE_BYTES = 256 * 2 ** 20  # keep the BN calibration batches in memory up to this size


class _ProgressBar:
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
    _, _, local = distributed.dist_env()
    device = distributed.resolve_device(cfg.device, local)
    speed.check_amp(cfg.amp, device)
    if device.type == "cpu":
        speed.configure_threads(cfg.threads)
    info = distributed.init(device)
    run = None
    try:
        run = _Run(cfg, info, device, log)
        run.setup(model_factory, dataset)
        run.build(model_factory, strategy)
        run.start()
        for epoch in range(run.progress.start_epoch, cfg.epochs):
            run.epoch(epoch)
            if on_epoch_end is not None:
                on_epoch_end(epoch, run.progress.history[-1])
        return run.finish()
    finally:
        if run is not None:  # the DDP reducer must go before its process group (else gloo deadlocks)
            run.ddp_module = None
        distributed.shutdown(info)


class _Run:
    """One training run, step by step: setup (output folder, data), build (model, strategy, optimiser),
    start (resume), epoch (train, evaluate, write), finish (export, test accuracy)."""

    def __init__(self, cfg: TrainConfig, info: distributed.DistInfo, device: torch.device, log):
        self.cfg, self.info, self.device = cfg, info, device
        self.out = Path(cfg.out)
        self.say = (log or (lambda s: print(s, flush=True))) if info.main else (lambda s: None)
        self.show_progress = info.main and cfg.progress
        self.progress = checkpoint.Progress()

    # ---- setup: settings, output folder, data
    def setup(self, model_factory, dataset) -> None:
        cfg, info = self.cfg, self.info
        distributed.check_same_config(cfg, info)
        if model_factory is None:  # fail fast, before any data is read
            from . import zoo

            if cfg.model not in zoo.MODELS:
                raise TrainError(f"unknown model {cfg.model!r} (choose from: {', '.join(zoo.MODELS)})")
        distributed.rank0_first(lambda: checkpoint.check_out_dir(self.out, cfg.resume, cfg.overwrite), info)
        checkpoint.seed_everything(cfg.seed)
        self.ds = dataset if dataset is not None else self._load_dataset()
        self._make_loaders()

    def _load_dataset(self):
        cfg = self.cfg
        kw = dict(resolution=cfg.resolution, channels=cfg.channels, val_split=cfg.val_split,
                  train_limit=cfg.train_limit, val_limit=cfg.val_limit, test_limit=cfg.test_limit,
                  data_dir=cfg.data_dir, download=cfg.download)
        holder: dict[str, Any] = {}

        def load_main():  # rank 0 first: it may have to download
            holder["ds"] = data_mod.load_dataset(cfg.dataset, **kw)

        def load_others():  # other nodes may need their own copy (atomic writes: no race)
            holder["ds"] = data_mod.load_dataset(cfg.dataset, quiet=True, **kw)

        distributed.rank0_first(load_main, self.info)
        distributed.all_ranks_ok(load_others if "ds" not in holder else (lambda: None), self.info)
        return holder["ds"]

    def _make_loaders(self) -> None:
        cfg, info, ds, device = self.cfg, self.info, self.ds, self.device
        pre = ds.preprocess
        self.aug = data_mod.AugConfig(enabled=cfg.augment, scale_min=cfg.crop_scale_min)
        self.train_loader = data_mod.Loader(ds.train, ds.train_idx, pre, batch_size=cfg.batch_size, train=True,
                                            seed=cfg.seed, rank=info.rank, world=info.world, aug=self.aug,
                                            workers=cfg.workers, device=device)
        self.val_loader = data_mod.Loader(ds.val, ds.val_idx, pre, batch_size=max(256, cfg.batch_size),
                                          train=False, rank=info.rank, world=info.world, workers=cfg.workers,
                                          device=device)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise TrainError(f"training split has {len(ds.train_idx)} images: fewer than one batch of "
                             f"{cfg.batch_size} x {info.world} process(es); lower --batch-size")
        gen = torch.Generator().manual_seed(data_mod.CALIB_SEED)
        self.calib_idx = ds.train_idx[torch.randperm(len(ds.train_idx), generator=gen)][:cfg.calib_images]

    def calib_batches(self):
        """The fixed BN re-calibration subset (training augmentation, the same on every rank and
        in every epoch: fixed order and augmentation), kept in memory after the first epoch when
        it is small (it is re-read and re-augmented otherwise)."""
        cached = getattr(self, "_calib_cache", None)
        if cached is not None:
            return cached
        loader = data_mod.Loader(self.ds.train, self.calib_idx, self.ds.preprocess, batch_size=self.cfg.batch_size,
                                 train=True, aug=self.aug, workers=self.cfg.workers, device=self.device,
                                 fixed_params_seed=data_mod.CALIB_SEED)
        pre = self.ds.preprocess
        if len(self.calib_idx) * pre.channels * pre.resolution ** 2 * 4 > CALIB_CACHE_BYTES:
            return loader
        self._calib_cache = [(x.contiguous(memory_format=self.mem_fmt), y) for x, y in loader]
        return self._calib_cache

    # ---- build: model, strategy, DDP, optimiser
    def build(self, model_factory, strategy) -> None:
        cfg, info, device, ds = self.cfg, self.info, self.device, self.ds
        torch.manual_seed(cfg.seed)
        model = model_factory(ds.num_classes) if model_factory else build_model(cfg, ds.num_classes)
        self.init_info = model_file.init_from(model, cfg.init_from, cfg) if cfg.init_from else None
        model = model.to(device)
        self.strategy = strategy or build_strategy(cfg, ds.num_classes, device, ds.preprocess.as_dict())
        self.mem_fmt = speed.memory_format(cfg.channels_last)
        self.module = speed.to_training_layout(self.strategy.prepare(model).to(device), cfg.channels_last)
        teacher = getattr(self.strategy, "teacher", None)
        if isinstance(teacher, nn.Module):
            speed.to_training_layout(teacher, cfg.channels_last)
        self.strategy.forward_context = lambda: speed.autocast(cfg.amp, device)
        self.grad_scaler = speed.grad_scaler(cfg.amp, device)
        self.strategy.grad_scaler = self.grad_scaler
        self.ddp_module = self.module
        if info.enabled:
            ddp_kw = {"device_ids": [device.index]} if device.type == "cuda" else {}
            self.ddp_module = nn.parallel.DistributedDataParallel(
                self.module, find_unused_parameters=getattr(self.strategy, "find_unused_parameters", False),
                **ddp_kw)
        self.peak = cfg.lr * info.world
        warm_start = cfg.lr if cfg.warmup_lr is None else cfg.warmup_lr
        warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        # fused: one kernel for all parameters (~5x faster than the per-parameter loop on CPU; the
        # same update up to float rounding, the same state_dict)
        self.optimizer = torch.optim.SGD(param_groups(self.module, cfg.wd), lr=self.peak, momentum=0.9,
                                         nesterov=True, fused=True)
        self.scheduler = make_scheduler(self.optimizer, peak=self.peak, warmup_start=warm_start,
                                        warmup_steps=warmup_steps,
                                        decay_steps=cfg.epochs * self.steps_per_epoch - warmup_steps)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    # ---- start: resume or a fresh run
    def start(self) -> None:
        cfg, info = self.cfg, self.info
        if cfg.resume:
            self.progress = checkpoint.resume(self.out / checkpoint.NAME, cfg, info, self.module, self.optimizer,
                                              self.scheduler, self.strategy)
            p = self.progress
            self.say(f"resuming {self.out} at epoch {p.start_epoch + 1}/{cfg.epochs} (best val "
                     f"{p.best_acc:.2f}% at epoch {p.best_epoch + 1})")
        if info.main:
            run_files.rewrite_metrics(self.out, self.progress.history)
        self.train_config = dict(cfg.to_dict(), world_size=info.world, peak_lr=self.peak,
                                 steps_per_epoch=self.steps_per_epoch, **self.strategy.describe())
        if self.init_info:
            self.train_config.update(self.init_info)
        if self.progress.start_epoch == 0:
            self.say(f"training {cfg.model} on {self.ds.summary()}; {info.world} process(es) on {self.device}, "
                     f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch_size}"
                     f"{'/process' if info.enabled else ''}, peak lr {self.peak:g}, "
                     f"strategy {self.strategy.describe().get('strategy')}")

    # ---- one epoch
    def epoch(self, epoch: int) -> None:
        t0 = time.perf_counter()
        self.strategy.on_epoch_start(epoch, self.cfg.epochs)
        self.train_loader.set_epoch(epoch)
        lr_epoch = self.optimizer.param_groups[0]["lr"]
        loss, acc = self._train_steps(epoch)
        distributed.broadcast_buffers(self.module, self.info)
        self.strategy.before_eval(self.module, self.calib_batches)
        val_acc, val_loss = evaluate(self.strategy.eval_model(self.module), self.val_loader, self.info, self.device)
        p = self.progress
        is_best = val_acc > p.best_acc or not math.isfinite(val_acc)  # no val split: keep latest
        plain = self._export() if is_best else None
        if is_best:
            p.best_acc, p.best_epoch = val_acc, epoch
            p.best_state = speed.plain_state(plain)
        seconds = time.perf_counter() - t0
        p.train_seconds += seconds
        rec = {"epoch": epoch + 1, "lr": lr_epoch, "train_loss": loss, "train_acc": acc,
               "val_acc": _num(val_acc), "val_loss": _num(val_loss), "epoch_seconds": round(seconds, 3),
               "best": is_best}
        p.history.append(rec)
        if self.info.main:
            self._write_epoch(epoch, rec, plain if is_best else None)

    def _train_steps(self, epoch: int) -> tuple[float, float]:
        """One pass over the training split; (mean loss, top-1 %) over all ranks."""
        cfg, info = self.cfg, self.info
        self.module.train()
        loss_sum = correct = seen = 0.0
        with _ProgressBar(self.show_progress) as bar:
            task = bar.task(f"epoch {epoch + 1}/{cfg.epochs}", self.steps_per_epoch)
            for step, (x, y) in enumerate(self.train_loader):
                loss, logits = self.step(x, y, epoch, step)
                n = len(y)
                loss_sum += loss * n
                correct += float((logits.argmax(1) == y).sum())
                seen += n
                if self.show_progress and (step % 5 == 0 or step == self.steps_per_epoch - 1):
                    bar.update(task, completed=step + 1,
                               stats=f"loss {loss_sum / seen:.4f} acc {100 * correct / seen:5.2f}%")
        loss_sum, correct, seen = distributed.all_reduce([loss_sum, correct, seen], info, self.device)
        return loss_sum / seen, 100.0 * correct / seen

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int = 0, step: int = 0) -> tuple[float, torch.Tensor]:
        """One optimisation step on a batch (also what bench/train_throughput.py times)."""
        x = x.contiguous(memory_format=self.mem_fmt)
        self.optimizer.zero_grad(set_to_none=True)
        loss, logits = self.strategy.train_step(self.module, self.ddp_module, x, y, self.criterion)
        self._stop_if_diverged(loss, epoch, step)
        self._optimizer_step()
        self.scheduler.step()
        return loss, logits

    def _optimizer_step(self) -> None:
        if self.grad_scaler is None:
            self.optimizer.step()
        else:  # fp16: skips the step when the scaled gradients overflowed, then adapts the scale
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()

    def _export(self) -> nn.Module:
        """The strategy's plain model, its weights in the contiguous NCHW layout (as before the
        trainer trained in channels_last: model.pt holds the same tensors, bit for bit)."""
        return speed.to_plain_layout(self.strategy.export(self.module))

    def _stop_if_diverged(self, loss: float, epoch: int, step: int) -> None:
        bad = 0.0 if math.isfinite(loss) else 1.0
        if self.info.enabled:
            bad = distributed.all_reduce([bad], self.info, self.device)[0]
        if not bad:
            return
        ck = self.out / checkpoint.NAME
        kept = (f"the last good checkpoint (epoch {epoch}) is kept in {ck}" if epoch > 0
                else "no checkpoint had been written yet")
        raise DivergedError(
            f"loss became {loss if not math.isfinite(loss) else 'nan/inf on another rank'} at epoch "
            f"{epoch + 1} step {step + 1} (lr {self.optimizer.param_groups[0]['lr']:.4g}); training stopped, "
            f"{kept}; try a lower --lr")

    def _write_epoch(self, epoch: int, rec: dict[str, Any], best_plain: nn.Module | None) -> None:
        cfg, p = self.cfg, self.progress
        run_files.append_metrics(self.out, rec)
        val = rec["val_acc"]
        self.say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.2f}% | "
                 f"val acc {_pct(val)}{' (best)' if rec['best'] and val is not None else ''} | "
                 f"{rec['epoch_seconds']:.1f}s")
        if best_plain is not None and cfg.select == "best":
            metrics = {"val_top1": _num(val), "best_epoch": p.best_epoch + 1, "epochs_done": epoch + 1}
            self._save_model(best_plain, metrics, "model.pt")
        try:
            run_files.plot_curves(p.history, self.out / "curves.png",
                                  f"{cfg.model} on {self.ds.name} ({self.strategy.describe().get('strategy')})")
        except Exception as exc:  # noqa: BLE001 - a plot must never kill a training run
            self.say(f"warning: could not draw curves.png: {exc}")
        checkpoint.save(self.out / checkpoint.NAME, epoch=epoch, module=self.module, optimizer=self.optimizer,
                        scheduler=self.scheduler, strategy=self.strategy, progress=p, cfg=cfg, world=self.info.world)

    def _save_model(self, plain: nn.Module, metrics: dict[str, Any], name: str) -> None:
        cfg, ds = self.cfg, self.ds
        arch = {"name": cfg.model, "in_channels": cfg.channels, "num_classes": ds.num_classes,
                "resolution": cfg.resolution}
        checkpoint.atomic_save(model_file.payload(plain, arch, ds.preprocess.as_dict(), ds.classes, metrics,
                                                  self.train_config), self.out / name)

    # ---- finish: consistency across ranks, export, test accuracy
    def finish(self) -> dict[str, Any]:
        cfg, info, p = self.cfg, self.info, self.progress
        distributed.check_ranks_agree(self.module, info)
        last_plain = self._export()
        final_state = p.best_state if cfg.select == "best" else speed.plain_state(last_plain)
        test_acc, last_test = self._test_accuracy(final_state, last_plain)
        result: dict[str, Any] = {"out": str(self.out), "module": self.module, "best_val_acc": p.best_acc,
                                  "best_epoch": p.best_epoch + 1, "history": p.history, "world_size": info.world,
                                  "train_seconds": p.train_seconds, "test_acc": test_acc}
        if info.main:
            result["metrics"] = self._write_final(final_state, last_plain, test_acc, last_test)
        return result

    def _test_accuracy(self, final_state: dict, last_plain: nn.Module) -> tuple[float | None, float | None]:
        ds = self.ds
        if ds.test is None or ds.test_idx is None:
            return None, None
        loader = data_mod.Loader(ds.test, ds.test_idx, ds.preprocess, batch_size=256, train=False,
                                 rank=self.info.rank, world=self.info.world, workers=self.cfg.workers,
                                 device=self.device)
        selected = self._export()
        selected.load_state_dict(final_state)
        test_acc, _ = evaluate(selected.to(self.device), loader, self.info, self.device)
        last_test, _ = evaluate(last_plain.to(self.device), loader, self.info, self.device)
        return test_acc, last_test

    def _write_final(self, final_state: dict, last_plain: nn.Module, test_acc, last_test) -> dict[str, Any]:
        from . import zoo

        cfg, p = self.cfg, self.progress
        params, macs = zoo.count(last_plain, cfg.resolution, cfg.channels)
        last = p.history[-1]
        sel_epoch = p.best_epoch if cfg.select == "best" else cfg.epochs - 1
        metrics = {"val_top1": _num(p.best_acc) if cfg.select == "best" else last["val_acc"],
                   "test_top1": test_acc, "selected_epoch": sel_epoch + 1, "select": cfg.select,
                   "best_val_top1": _num(p.best_acc), "best_epoch": p.best_epoch + 1,
                   "last_val_top1": last["val_acc"], "last_test_top1": last_test,
                   "last_train_top1": last["train_acc"], "epochs": cfg.epochs,
                   "train_seconds": round(p.train_seconds, 2),
                   "test_samples": 0 if self.ds.test_idx is None else len(self.ds.test_idx),
                   "params": params, "macs": macs}
        if cfg.select == "best":
            best = self._export()
            best.load_state_dict(final_state)
            self._save_model(best, metrics, "model.pt")
            self._save_model(last_plain, dict(metrics, test_top1=last_test, selected_epoch=cfg.epochs),
                             "model_last.pt")
        else:
            self._save_model(last_plain, metrics, "model.pt")
        run_files.write_summary(self.out, metrics)
        t = f", test {test_acc:.2f}%" if test_acc is not None else ""
        self.say(f"done: model.pt = epoch {sel_epoch + 1} (val {_pct(metrics['val_top1'])}{t})")
        return metrics
