#!/usr/bin/env python3
"""Training throughput: the trainer's baseline and NetAug steps side by side with a plain eager
PyTorch loop of the same model, in one run, on 1 and 2 threads.

Arms (per model and thread count), timed interleaved (plain, baseline, netaug, plain, ...) so that
a busy machine slows all of them alike; the figure per arm is the median over ``--reps`` rounds of
``--steps`` steps each:
  plain     zoo model in the default NCHW layout, every conv through F.conv2d (no trainer fast
            path), SGD Nesterov + label-smoothed CE, nothing else: what a user writes first
  baseline  the trainer's own step (engine._Run.step: channels_last, the trainer's kernels, its
            optimiser, scheduler and divergence check) with the baseline strategy
  netaug    the same with the NetAug strategy (base pass + one sampled augmented pass), in the
            schedule's first phase (width and expand augmented: "random")
  netaug_min_w  the same in the second phase (width at 1.0, expand augmented: the last
            stop_aug_w_frac = 50 % of the epochs)
All arms see the same preloaded batches (the trainer's own loader output: augmentation on tensors),
so the step figures exclude data loading; the loader's own rate is reported as ``loader_img_s``.
Per model the NetAug epoch / baseline epoch ratio adds the per-epoch costs (channel sorting, BN
re-calibration on ``calib_images``) to steps_per_epoch x step time, for the demo's 20k images, per
phase and averaged over the schedule (half the epochs in each phase).

GFLOP/s: multiply-accumulates counted by forward hooks on every conv/linear over the timed
configurations (NetAug: the sampled augmented sub-nets, averaged over the sampled steps),
x 2 FLOPs/MAC x 3 (forward + backward ~ 2x forward).

Usage:
  python bench/train_throughput.py                          # full run -> bench/results/train_throughput.json
  python bench/train_throughput.py --models micro --reps 3  # a subset
  python bench/train_throughput.py --profile mbv2-tiny      # torch.profiler table of one NetAug step
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"mbv2-tiny": 32, "mcunet-in0": 48, "micro": 16}
MICRO_ARCH = "stem_k3_s2_c8 ds_k3_c8_noskip ir_r2_k3_s2_e3_c16 ir_r2_k3_s2_e3_c24 head_c64"  # = netaug_vs_baseline.py


class BenchError(Exception):
    pass


def build_plain(name: str, res: int):
    from netaug_mcu.trainer import zoo

    if name == "micro":
        return zoo.build_arch(MICRO_ARCH, 1, 10, res, name="micro")
    return zoo.build(name, in_channels=1, num_classes=10, resolution=res)


def make_run(name: str, res: int, strategy: str, batch: int, images: int, tmp: Path):
    """An engine._Run built exactly as `netaug-mcu train` builds it (no epoch run)."""
    from netaug_mcu.trainer import distributed, engine
    from netaug_mcu.trainer.config import make_config

    cfg = make_config(overrides=dict(model="mbv2-tiny" if name == "micro" else name, dataset="fashion-mnist",
                                     resolution=res, channels=1, train_limit=images, val_limit=256,
                                     test_limit=256, epochs=2, batch_size=batch, netaug=strategy == "netaug",
                                     out=str(tmp / f"{name}-{strategy}"), overwrite=True, progress=False,
                                     download=False, seed=0, device="cpu"))
    run = engine._Run(cfg, distributed.DistInfo(), torch.device("cpu"), lambda s: None)
    factory = (lambda n: build_plain("micro", res)) if name == "micro" else None
    strat = None
    if name == "micro" and strategy == "netaug":
        from netaug_mcu.trainer.netaug.strategy import NetAugStrategy
        strat = NetAugStrategy(arch_name=None, seed=0)
    run.setup(factory, None)
    run.build(factory, strat)
    run.strategy.on_epoch_start(0, cfg.epochs)
    return run


def count_macs(module, fn) -> float:
    """MACs of the convs/linears that `fn()` runs through `module` (hooks see the active shapes)."""
    from torch import nn

    total = [0.0]

    def hook(m, inp, out):
        x = inp[0]
        if isinstance(m, nn.Conv2d):
            k = m.weight.shape[-2] * m.weight.shape[-1]
            per_out = k if (m.weight.shape[1] == 1 and m.groups > 1) else x.shape[1] * k
            total[0] += out.numel() * per_out
        else:
            total[0] += out.numel() * x.shape[-1]

    hs = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        fn()
    finally:
        for h in hs:
            h.remove()
    return total[0]


class PlainLoop:
    """The reference: NCHW, F.conv2d everywhere, torch's SGD, CE with label smoothing."""

    def __init__(self, name, res, lr=0.05):
        torch.manual_seed(0)
        self.model = build_plain(name, res).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9, nesterov=True)
        self.crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step(self, x, y):
        from netaug_mcu.trainer import zoo

        with zoo.plain_kernels():
            self.opt.zero_grad(set_to_none=True)
            loss = self.crit(self.model(x), y)
            loss.backward()
            self.opt.step()
        return float(loss.detach())


def time_steps(step, batches, n) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        x, y = batches[i % len(batches)]
        step(x, y)
    return (time.perf_counter() - t0) / n


def bench_model(name: str, threads: int, args, tmp: Path, log) -> dict:
    res = MODELS[name]
    torch.set_num_threads(threads)
    runs = {s: make_run(name, res, s, args.batch, args.images, tmp) for s in ("baseline", "netaug")}
    runs["netaug_min_w"] = make_run(name, res, "netaug", args.batch, args.images, tmp)
    runs["netaug_min_w"].strategy.on_epoch_start(1, 2)  # the last epoch of two: width augmentation off
    assert runs["netaug_min_w"].strategy.mode == "min_w"
    t0 = time.perf_counter()
    batches = [(x.contiguous(), y) for x, y in runs["baseline"].train_loader]
    loader_img_s = len(batches) * args.batch / (time.perf_counter() - t0)
    plain = PlainLoop(name, res)
    steps = {"plain": plain.step,
             "baseline": lambda x, y: runs["baseline"].step(x, y),
             "netaug": lambda x, y: runs["netaug"].step(x, y),
             "netaug_min_w": lambda x, y: runs["netaug_min_w"].step(x, y)}
    for f in steps.values():  # warm-up (oneDNN primitive caches, allocator)
        time_steps(f, batches, 3)
    times = {k: [] for k in steps}
    for _ in range(args.reps):
        for k, f in steps.items():
            times[k].append(time_steps(f, batches, args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    x0, y0 = batches[0]
    macs = {"plain": count_macs(plain.model, lambda: plain.step(x0, y0)),
            "baseline": count_macs(runs["baseline"].module, lambda: runs["baseline"].step(x0, y0))}
    for k in ("netaug", "netaug_min_w"):  # the sampled sub-nets vary: average over 8 steps
        r = runs[k]
        macs[k] = statistics.mean(count_macs(r.module, lambda: r.step(x, y)) for x, y in batches[:8])
    epoch = epoch_costs(runs, med, args)
    out = {"model": name, "resolution": res, "threads": threads, "batch": args.batch,
           "loader_img_s": round(loader_img_s, 1)}
    for k in steps:
        out[k] = {"step_s_median": round(med[k], 5), "step_s_all": [round(t, 5) for t in times[k]],
                  "img_s": round(args.batch / med[k], 1),
                  "macs_per_step": int(macs[k]), "gflop_s": round(6 * macs[k] / med[k] / 1e9, 2)}
    out["baseline_speedup_vs_plain"] = round(med["plain"] / med["baseline"], 2)
    out["netaug_step_over_baseline_step"] = round(med["netaug"] / med["baseline"], 2)
    out["netaug_min_w_step_over_baseline_step"] = round(med["netaug_min_w"] / med["baseline"], 2)
    out["netaug_macs_over_baseline_macs"] = round(macs["netaug"] / macs["baseline"], 2)
    out.update(epoch)
    log(f"{name}@{res} {threads} thr: plain {med['plain']*1e3:.1f} ms, baseline {med['baseline']*1e3:.1f} ms "
        f"({out['baseline_speedup_vs_plain']}x), netaug {med['netaug']*1e3:.1f} / min_w "
        f"{med['netaug_min_w']*1e3:.1f} ms; netaug epoch / baseline epoch {epoch['netaug_epoch_over_baseline_epoch']} "
        f"(schedule mean {epoch['netaug_schedule_epoch_over_baseline_epoch']})")
    return out


def epoch_costs(runs, med, args) -> dict:
    """Per-epoch overheads measured once each, and the demo-sized epoch ratio."""
    na = runs["netaug"]
    t0 = time.perf_counter()
    na.strategy.on_epoch_start(0, 2)  # channel sorting
    sort_s = time.perf_counter() - t0
    calib = na.calib_batches()  # the first call builds the cache (augmented subset)
    t0 = time.perf_counter()
    na.strategy.before_eval(na.module, calib)
    recal_s = time.perf_counter() - t0
    steps = args.epoch_images // args.batch
    base_epoch = steps * med["baseline"]
    na_epoch = steps * med["netaug"] + sort_s + recal_s
    na_w_epoch = steps * med["netaug_min_w"] + recal_s  # no sorting in the second phase
    return {"sort_s": round(sort_s, 4), "bn_recal_s": round(recal_s, 3),
            "calib_images": na.cfg.calib_images, "epoch_images": args.epoch_images,
            "baseline_epoch_s_est": round(base_epoch, 2), "netaug_epoch_s_est": round(na_epoch, 2),
            "netaug_min_w_epoch_s_est": round(na_w_epoch, 2),
            "netaug_epoch_over_baseline_epoch": round(na_epoch / base_epoch, 2),
            "netaug_schedule_epoch_over_baseline_epoch": round((na_epoch + na_w_epoch) / 2 / base_epoch, 2)}


def profile(name: str, args) -> None:
    from torch.profiler import ProfilerActivity, profile as prof
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        torch.set_num_threads(args.threads[0])
        for strategy in ("baseline", "netaug"):
            run = make_run(name, MODELS[name], strategy, args.batch, args.images, Path(d))
            batches = [b for b, _ in zip(run.train_loader, range(6))]
            for x, y in batches[:3]:
                run.step(x, y)
            with prof(activities=[ProfilerActivity.CPU]) as p:
                for x, y in batches[3:]:
                    run.step(x, y)
            print(f"== {name} {strategy} (3 steps)")
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed round")
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds (median reported)")
    ap.add_argument("--images", type=int, default=2048, help="training images preloaded for the steps")
    ap.add_argument("--epoch-images", type=int, default=20000, help="epoch size for the epoch ratio")
    ap.add_argument("--profile", metavar="MODEL", help="print a torch.profiler table and exit")
    ap.add_argument("--out", default=str(ROOT / "bench/results/train_throughput.json"))
    args = ap.parse_args(argv)
    try:
        args.models = [m for m in args.models.split(",") if m]
        args.threads = [int(t) for t in args.threads.split(",") if t]
        bad = [m for m in args.models + ([args.profile] if args.profile else []) if m not in MODELS]
        if bad or not args.models:
            raise BenchError(f"unknown model(s) {bad}: choose from {', '.join(MODELS)}")
        if min(args.threads, default=0) < 1 or min(args.batch, args.steps, args.reps) < 1:
            raise BenchError("--threads, --batch, --steps and --reps must be >= 1")
        if args.images < args.batch:
            raise BenchError("--images must be >= --batch")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    global torch
    import torch
    torch.set_num_interop_threads(1)
    if args.profile:
        profile(args.profile, args)
        return 0
    import tempfile

    from netaug_mcu.common import fsio

    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models:
            for t in args.threads:
                results.append(bench_model(name, t, args, Path(d), lambda s: print(s, flush=True)))
    doc = {"what": "images/s of one training step (batch preloaded), plain eager NCHW loop vs the trainer",
           "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
           "cores": os.cpu_count(), "loadavg_before": [round(v, 2) for v in load],
           "loadavg_after": [round(v, 2) for v in os.getloadavg()],
           "steps_per_round": args.steps, "reps": args.reps, "results": results}
    fsio.atomic_write_json(Path(args.out), doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
