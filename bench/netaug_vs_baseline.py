#!/usr/bin/env python3
"""NetAug vs baseline on Fashion-MNIST: same architecture, same initial weights, same data order,
same schedule; several seeds; equal epochs and equal wall-clock.

Arms (per seed):
  baseline      trainer.strategy.BaselineStrategy, E epochs
  netaug        trainer.netaug.strategy.NetAugStrategy (reference width/expand lists), E epochs
  netaug_short  NetAug with E / epoch_time_ratio epochs (its own full schedule): the NetAug run
                that costs the same wall-clock as the baseline (equal wall-clock comparison)

Both arms start from the same plain model (``torch.manual_seed(seed)`` + zoo init; NetAug embeds
it as the leading slice of its super-net and initialises the rest kaiming-uniform, as the
reference) and see the same mini-batches (order from a generator seeded by (seed, epoch)).
Recipe (reference, scaled down): SGD Nesterov 0.9, no weight decay on BN/bias, label smoothing
0.1, 1 warm-up epoch then cosine, stepped per iteration; horizontal flips only. The NetAug arm
re-calibrates the base model's BN on a fixed 2000-image training subset before every evaluation
(reference); by default the baseline gets the same re-calibration (``--no-baseline-reset-bn`` to
evaluate it with its running statistics as the reference does), so that short schedules do not
favour NetAug through better-estimated BN statistics alone.
Accuracy = top-1 of the base/plain model on a fixed test subset, after every epoch; the reported
figure is the LAST epoch's (no selection on the test set).

Data: preloaded tensors (uint8 -> [0,1] -> bilinear resize -> (x-mean)/std), on ``--device``.
Resumable: every run checkpoints after each epoch under ``--work``; finished runs are kept; rerun
the same command to continue. Outputs: ``--out`` .json, .md, .png.

Usage:
  python bench/netaug_vs_baseline.py                       # the protocol in the JSON's `protocol`
  python bench/netaug_vs_baseline.py --quick --out /tmp/q  # smoke test (< 1 min)
  python bench/netaug_vs_baseline.py --device cuda --train-images 60000 --epochs 60 --resolution 28
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    exit_code = 2


# Micro MobileNetV2-style model in the zoo's architecture notation (trainer/zoo.py):
# stem 8 (s2), DSConv 8->8, MB 16 (e3, s2), MB 16 (e3, res), MB 24 (e3, s2), MB 24 (e3, res),
# 1x1 head 64, FC. ~12k params: small enough to under-fit Fashion-MNIST.
MICRO_ARCH = "stem_k3_s2_c8 ds_k3_c8_noskip ir_r2_k3_s2_e3_c16 ir_r2_k3_s2_e3_c24 head_c64"


def build_model(name: str, resolution: int):
    from netaug_mcu.trainer import zoo

    if name == "micro":
        return zoo.build_arch(MICRO_ARCH, 1, 10, resolution, name="micro")
    if name not in zoo.MODELS:
        raise BenchError(f"unknown model {name!r} (micro or one of {', '.join(zoo.MODELS)})")
    return zoo.build(name, in_channels=1, num_classes=10, resolution=resolution)


def load_data(args, device):
    import torch
    import torch.nn.functional as F

    try:
        from netaug_mcu.trainer.data import load_fashion_mnist
        tr_x, tr_y, te_x, te_y = load_fashion_mnist(args.data_dir, download=False, quiet=True)
    except Exception as exc:  # noqa: BLE001 - one-line error
        raise BenchError(f"Fashion-MNIST not found/readable ({str(exc).splitlines()[0]}); install the "
                         f"Debian package dataset-fashion-mnist or set NETAUG_MCU_DATA") from None
    g = torch.Generator().manual_seed(1234)  # fixed subsets, identical for every arm and seed
    tr_idx = torch.randperm(len(tr_x), generator=g)[:args.train_images]
    te_idx = torch.randperm(len(te_x), generator=g)[:args.test_images]

    def prep(x):
        x = x.float().div_(255).unsqueeze(1)
        if x.shape[-1] != args.resolution:
            x = F.interpolate(x, size=(args.resolution, args.resolution), mode="bilinear",
                              align_corners=False, antialias=False)
        return x

    xtr, xte = prep(tr_x[tr_idx]), prep(te_x[te_idx])
    mean, std = xtr.mean().item(), xtr.std().item()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    calib_idx = torch.randperm(len(xtr), generator=g)[:args.calib_images]
    # fixed training images scored like the test set (eval mode, no flips): the train-test gap
    # compares like with like (drawn last, so the subsets above are unchanged)
    fit_idx = torch.randperm(len(xtr), generator=g)[:min(len(xtr), len(xte))]
    ytr = tr_y[tr_idx]
    return dict(xtr=xtr.to(device), ytr=ytr.to(device), xte=xte.to(device), yte=te_y[te_idx].to(device),
                calib=xtr[calib_idx].to(device), xfit=xtr[fit_idx].to(device), yfit=ytr[fit_idx].to(device),
                mean=mean, std=std)


def param_groups(module, wd):
    decay, no_decay = [], []
    for n, p in module.named_parameters():
        (no_decay if p.ndim <= 1 or "bias" in n or ".bn." in n else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def lr_at(step, total, warm, lr):
    if step < warm:
        return lr * (0.1 + 0.9 * step / max(1, warm))
    t = (step - warm) / max(1, total - warm)
    return 0.5 * lr * (1 + math.cos(math.pi * t))


def recalibrate_bn(model, batches) -> None:
    """BN re-calibration of a plain model (cumulative average of batch statistics over the fixed
    calibration subset), so both arms are evaluated with equally well-estimated BN statistics."""
    import torch
    import torch.nn as nn

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    was = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    for m, mo in zip(bns, saved):
        m.momentum = mo
    model.train(was)


def evaluate(model, x, y, bs=1000):
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), bs):
            correct += int((model(x[i:i + bs]).argmax(1) == y[i:i + bs]).sum())
    return 100.0 * correct / len(x)


def run_files(work: Path, arm: str, seed: int, epochs: int) -> tuple[Path, Path]:
    """(finished record, per-epoch checkpoint) of one run."""
    tag = f"{arm}_s{seed}_e{epochs}"
    return work / f"{tag}.json", work / f"{tag}.pt"


def run_arm(arm: str, seed: int, epochs: int, args, data, device, work: Path, log, teacher=None) -> dict:
    """Train one arm; resumable from ``work/<arm>_s<seed>_e<epochs>.pt``; returns its record.
    Arms: baseline, netaug, and with `teacher` (a frozen model) kd and netaug_kd (+ KD loss, T=1)."""
    import torch
    import torch.nn as nn
    from netaug_mcu.trainer.netaug.strategy import NetAugStrategy
    from netaug_mcu.trainer.strategy import BaselineStrategy

    tag = f"{arm}_s{seed}_e{epochs}"
    done_f, ck_f = run_files(work, arm, seed, epochs)
    if done_f.exists():
        return json.loads(done_f.read_text())
    torch.manual_seed(seed)
    plain = build_model(args.model, args.resolution).to(device)
    if arm in ("kd", "netaug_kd") and teacher is None:
        raise BenchError(f"arm {arm} needs a teacher")
    if arm in ("baseline", "kd"):
        strat = BaselineStrategy(teacher=teacher if arm == "kd" else None)
    else:
        strat = NetAugStrategy(None, aug_width=args.aug_width, aug_expand=args.aug_expand,
                               alpha=args.alpha, seed=seed, teacher=teacher if arm == "netaug_kd" else None)
    torch.manual_seed(seed + 1000)  # super-net init (identical across resumes)
    module = strat.prepare(plain).to(device)
    opt = torch.optim.SGD(param_groups(module, args.wd), lr=args.lr, momentum=0.9, nesterov=True)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    n = len(data["xtr"])
    spe = n // args.batch_size
    total, warm = epochs * spe, spe
    hist: list[dict] = []
    start = 0
    if ck_f.exists():
        ck = torch.load(ck_f, map_location=device, weights_only=False)
        module.load_state_dict(ck["module"])
        opt.load_state_dict(ck["opt"])
        strat.load_state_dict(ck["strategy"])
        hist, start = ck["hist"], ck["epoch"]
        log(f"  {tag}: resumed after epoch {start}")
    calib = data["calib"]

    def calib_batches():
        return [(calib[i:i + 500], None) for i in range(0, len(calib), 500)]

    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        strat.on_epoch_start(epoch, epochs)
        g = torch.Generator().manual_seed(seed * 100003 + epoch)
        perm = torch.randperm(n, generator=g).to(device)
        flip = (torch.rand(n, generator=g) < 0.5).to(device)
        module.train()
        loss_sum = correct = seen = 0.0
        for i in range(spe):
            idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
            x, y = data["xtr"][idx], data["ytr"][idx]
            f = flip[idx].view(-1, 1, 1, 1)
            x = torch.where(f, x.flip(-1), x)
            for gr in opt.param_groups:
                gr["lr"] = lr_at(epoch * spe + i, total, warm, args.lr)
            opt.zero_grad(set_to_none=True)
            loss, logits = strat.train_step(module, module, x, y, crit)
            if not math.isfinite(loss):
                raise BenchError(f"{tag}: loss became {loss} at epoch {epoch + 1}; lower --lr")
            opt.step()
            loss_sum += loss * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
        if arm in ("baseline", "kd"):
            if args.baseline_reset_bn:
                recalibrate_bn(module, calib_batches())
        else:
            strat.before_eval(module, calib_batches)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_train = time.perf_counter() - t0
        test_acc = evaluate(strat.eval_model(module), data["xte"], data["yte"])
        fit_acc = evaluate(strat.eval_model(module), data["xfit"], data["yfit"])
        hist.append(dict(epoch=epoch + 1, seconds=round(t_train, 3), train_loss=loss_sum / seen,
                         train_acc=100 * correct / seen, train_eval_acc=fit_acc, test_acc=test_acc))
        log(f"  {tag} epoch {epoch + 1}/{epochs}: loss {loss_sum / seen:.4f} train {100 * correct / seen:.2f}% "
            f"(eval {fit_acc:.2f}%) test {test_acc:.2f}% ({t_train:.1f}s)")
        tmp = ck_f.with_suffix(".tmp")
        torch.save(dict(module=module.state_dict(), opt=opt.state_dict(), strategy=strat.state_dict(),
                        hist=hist, epoch=epoch + 1), tmp)
        os.replace(tmp, ck_f)
    # final: the exported plain model must reproduce the reported accuracy (zero-overhead export)
    plain_final = strat.export(module).to(device)
    final_acc = evaluate(plain_final, data["xte"], data["yte"])
    final_fit = evaluate(plain_final, data["xfit"], data["yfit"])
    from netaug_mcu.trainer import zoo
    params, macs = zoo.count(plain_final, args.resolution, 1)
    rec = dict(arm=arm, seed=seed, epochs=epochs, history=hist, final_test_top1=final_acc,
               last_epoch_test_top1=hist[-1]["test_acc"], final_train_top1=hist[-1]["train_acc"],
               final_train_eval_top1=final_fit,
               epoch_seconds_mean=statistics.mean(h["seconds"] for h in hist),
               train_seconds=sum(h["seconds"] for h in hist), params=params, macs=macs)
    if getattr(args, "save_models", False):  # e.g. a KD teacher, reloaded by bench/netaug_underfit.py
        torch.save(plain_final.state_dict(), work / f"{tag}.model.pt")
    done_f.write_text(json.dumps(rec, indent=1))
    ck_f.unlink(missing_ok=True)
    return rec


def mean_sd(v):
    return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)


def summarise(args, runs: dict, protocol: dict) -> dict:
    seeds = [s for s in args.seeds if ("baseline", s) in runs and ("netaug", s) in runs]
    res: dict = dict(protocol=protocol, seeds=seeds, epochs=args.epochs, model=args.model,
                     complete=len(seeds) == len(args.seeds))
    if not seeds:
        return res
    b = [runs[("baseline", s)]["final_test_top1"] for s in seeds]
    a = [runs[("netaug", s)]["final_test_top1"] for s in seeds]
    gains = [x - y for x, y in zip(a, b)]
    bm, bsd = mean_sd(b)
    am, asd = mean_sd(a)
    gm, gsd = mean_sd(gains)
    gse = gsd / math.sqrt(len(gains)) if len(gains) > 1 else float("nan")
    E = args.epochs
    k = max(1, E // 5)

    def converged(rec):
        acc = [h["test_acc"] for h in rec["history"]]
        return acc[-1] - acc[-1 - k] < 0.2

    bcurve = [statistics.mean(runs[("baseline", s)]["history"][e]["test_acc"] for s in seeds) for e in range(E)]
    ncurve = [statistics.mean(runs[("netaug", s)]["history"][e]["test_acc"] for s in seeds) for e in range(E)]
    tb = statistics.mean(runs[("baseline", s)]["epoch_seconds_mean"] for s in seeds)
    tn = statistics.mean(runs[("netaug", s)]["epoch_seconds_mean"] for s in seeds)
    res.update(
        baseline_top1=b, netaug_top1=a, gains_pp=gains,
        baseline_top1_mean=round(bm, 3), baseline_top1_std=round(bsd, 3),
        netaug_top1_mean=round(am, 3), netaug_top1_std=round(asd, 3),
        gain_pp=round(gm, 3), gain_sd_pp=round(gsd, 3), gain_se_pp=round(gse, 3) if gse == gse else None,
        gain_over_2se=bool(gse == gse and gm > 2 * gse),
        baseline_train_top1_mean=round(statistics.mean(runs[("baseline", s)]["final_train_top1"] for s in seeds), 3),
        netaug_train_top1_mean=round(statistics.mean(runs[("netaug", s)]["final_train_top1"] for s in seeds), 3),
        baseline_converged=bool(bcurve[-1] - bcurve[-1 - k] < 0.2),
        baseline_converged_per_seed=[converged(runs[("baseline", s)]) for s in seeds],
        baseline_rise_last_fifth_pp=round(bcurve[-1] - bcurve[-1 - k], 3),
        netaug_rise_last_fifth_pp=round(ncurve[-1] - ncurve[-1 - k], 3),
        baseline_epoch_seconds=round(tb, 3), netaug_epoch_seconds=round(tn, 3),
        epoch_time_ratio=round(tn / tb, 3),
        baseline_curve=[round(v, 3) for v in bcurve], netaug_curve=[round(v, 3) for v in ncurve],
        params=runs[("baseline", seeds[0])]["params"], macs=runs[("baseline", seeds[0])]["macs"],
    )
    short = [s for s in seeds if ("netaug_short", s) in runs]
    if short:
        sa = [runs[("netaug_short", s)]["final_test_top1"] for s in short]
        sb = [runs[("baseline", s)]["final_test_top1"] for s in short]
        d = [x - y for x, y in zip(sa, sb)]
        dm, dsd = mean_sd(d)
        se = dsd / math.sqrt(len(d)) if len(d) > 1 else None
        res["equal_wall_clock"] = dict(
            description=("NetAug trained with its own full schedule for "
                         + (f"{args.short_epochs} epochs (fixed with --short-epochs; ~epochs / epoch_time_ratio)"
                            if args.short_epochs else "round(epochs / epoch_time_ratio) epochs")
                         + " so that it costs about the baseline's wall-clock, vs the baseline; compare the "
                         "train_seconds fields for the actual times"),
            netaug_epochs=runs[("netaug_short", short[0])]["epochs"], baseline_epochs=E, seeds=short,
            netaug_top1_mean=round(statistics.mean(sa), 3), baseline_top1_mean=round(statistics.mean(sb), 3),
            netaug_train_seconds_mean=round(statistics.mean(runs[("netaug_short", s)]["train_seconds"] for s in short), 2),
            baseline_train_seconds_mean=round(statistics.mean(runs[("baseline", s)]["train_seconds"] for s in short), 2),
            gain_pp=round(dm, 3), gain_se_pp=round(se, 3) if se is not None else None)
    # the baseline's curve at NetAug's wall-clock (a second, cheaper view: baseline epochs that fit
    # into NetAug's time are all of them; report NetAug's accuracy at the baseline's total time)
    tn_cum = 0.0
    acc_at = None
    for e in range(E):
        tn_cum += tn
        if tn_cum <= tb * E + 1e-9:
            acc_at = ncurve[e]
    res["netaug_curve_top1_at_baseline_wall_clock"] = None if acc_at is None else round(acc_at, 3)
    return res


def write_outputs(res: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    p = res["protocol"]
    lines = [f"# NetAug vs baseline on Fashion-MNIST ({res.get('model')})", "",
             f"Protocol: {p['description']}", ""] + ([f"Note: {p['note']}", ""] if p.get("note") else [])
    if "baseline_top1_mean" in res:
        lines += ["| arm | epochs | test top-1 (mean ± sd) | train top-1 | epoch s |", "|---|---|---|---|---|",
                  f"| baseline | {res['epochs']} | {res['baseline_top1_mean']:.2f} ± {res['baseline_top1_std']:.2f} | "
                  f"{res['baseline_train_top1_mean']:.2f} | {res['baseline_epoch_seconds']:.2f} |",
                  f"| NetAug | {res['epochs']} | {res['netaug_top1_mean']:.2f} ± {res['netaug_top1_std']:.2f} | "
                  f"{res['netaug_train_top1_mean']:.2f} | {res['netaug_epoch_seconds']:.2f} |"]
        ew = res.get("equal_wall_clock")
        if ew:
            lines.append(f"| NetAug, equal wall-clock | {ew['netaug_epochs']} | {ew['netaug_top1_mean']:.2f} "
                         f"(seeds {ew['seeds']}) | | |")
        lines += ["", f"- seeds: {res['seeds']}; per-seed gains (pp): {[round(g, 2) for g in res['gains_pp']]}",
                  f"- **gain at equal epochs: {res['gain_pp']:+.2f} pp ± {res['gain_se_pp']} (SE)**"
                  f" ({'> 2 SE' if res['gain_over_2se'] else 'not > 2 SE'})",
                  f"- baseline converged (test acc rose < 0.2 pp over the last fifth): {res['baseline_converged']}"
                  f" (rise {res['baseline_rise_last_fifth_pp']:+.2f} pp; per seed {res['baseline_converged_per_seed']})",
                  f"- epoch time ratio NetAug/baseline: {res['epoch_time_ratio']:.2f}"]
        if ew:
            lines.append(f"- equal wall-clock: NetAug {ew['netaug_epochs']} epochs vs baseline {ew['baseline_epochs']}:"
                         f" {ew['gain_pp']:+.2f} pp (SE {ew['gain_se_pp']})")
    lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    if "baseline_curve" in res:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ep = range(1, res["epochs"] + 1)
        ax[0].plot(ep, res["baseline_curve"], label="baseline")
        ax[0].plot(ep, res["netaug_curve"], label="NetAug")
        ax[0].set_xlabel("epoch"); ax[0].set_ylabel("test top-1 (%), mean over seeds"); ax[0].legend()
        ax[0].set_title("equal epochs")
        tb, tn = res["baseline_epoch_seconds"], res["netaug_epoch_seconds"]
        ax[1].plot([tb * e for e in ep], res["baseline_curve"], label="baseline")
        ax[1].plot([tn * e for e in ep], res["netaug_curve"], label="NetAug")
        ew = res.get("equal_wall_clock")
        if ew:
            ax[1].scatter([ew["netaug_train_seconds_mean"]], [ew["netaug_top1_mean"]], color="C2", zorder=3,
                          label=f"NetAug {ew['netaug_epochs']} ep (own schedule)")
        ax[1].set_xlabel("training seconds"); ax[1].set_title("wall-clock"); ax[1].legend()
        lo = min(min(res["baseline_curve"][1:] or [0]), min(res["netaug_curve"][1:] or [0]))
        for a in ax:
            a.set_ylim(max(0, lo - 1), None); a.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=110)
        plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="micro", help="'micro' (default, ~12k params) or a zoo model name")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--train-images", type=int, default=20000)
    ap.add_argument("--test-images", type=int, default=5000)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--wd", type=float, default=4e-5)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--aug-width", default="1,1.8,2.6")
    ap.add_argument("--aug-expand", default="1,1.6,2.2,2.8")
    ap.add_argument("--no-baseline-reset-bn", dest="baseline_reset_bn", action="store_false",
                    help="evaluate the baseline with its running BN statistics (the reference does); by "
                    "default it gets the same BN re-calibration as NetAug")
    ap.add_argument("--no-equal-wall-clock", action="store_true", help="skip the netaug_short arm")
    ap.add_argument("--short-epochs", type=int, default=None,
                    help="epochs of the equal-wall-clock NetAug arm (default: round(epochs / measured "
                    "epoch_time_ratio)); fix it when seeds run in separate processes")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default=str(ROOT / "bench/work/netaug"), help="resumable per-run state")
    ap.add_argument("--out", default=str(ROOT / "bench/results/netaug_fashion_mnist"),
                    help="output path stem (.json/.md/.png)")
    ap.add_argument("--report-only", action="store_true",
                    help="train nothing: summarise the finished runs found in --work (seeds with both arms)")
    ap.add_argument("--note", default=None, help="free text stored as protocol.note (how the run was executed)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 384 images at 12x12, 2 epochs, 2 seeds (< 1 min)")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except Exception as exc:  # noqa: BLE001 - user errors (exit_code) as one line
        code = getattr(exc, "exit_code", None)
        if not isinstance(code, int):
            raise
        print(f"netaug_vs_baseline: error: {exc}", file=sys.stderr)
        return code


def _main(args) -> int:
    import torch

    if args.quick:
        args.resolution, args.train_images, args.test_images, args.calib_images = 12, 384, 400, 256
        args.epochs, args.seeds, args.batch_size = 2, "0,1", 64
        if args.out == str(ROOT / "bench/results/netaug_fashion_mnist"):
            args.out = str(ROOT / "bench/work/netaug_quick/netaug_quick")
        if args.work == str(ROOT / "bench/work/netaug"):
            args.work = str(Path(args.out).parent / "work")
    try:
        args.seeds = [int(s) for s in str(args.seeds).split(",") if s != ""]
        args.aug_width = [float(v) for v in args.aug_width.split(",")]
        args.aug_expand = [float(v) for v in args.aug_expand.split(",")]
    except ValueError:
        raise BenchError("--seeds, --aug-width and --aug-expand take comma-separated numbers") from None
    if not args.seeds or args.epochs < 2 or args.train_images < args.batch_size:
        raise BenchError("need >= 1 seed, >= 2 epochs and at least one batch of training images")
    from netaug_mcu.trainer.netaug.strategy import validate_list
    validate_list("--aug-width", args.aug_width)
    validate_list("--aug-expand", args.aug_expand)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device available")
    device = torch.device(args.device)
    torch.set_num_threads(max(1, args.threads))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    data = load_data(args, device)
    m = build_model(args.model, args.resolution)
    from netaug_mcu.trainer import zoo
    params, macs = zoo.count(m, args.resolution, 1)
    protocol = dict(
        description=(f"{args.model} ({params} params, {macs} MACs) at {args.resolution}x{args.resolution}, "
                     f"{args.train_images} train / {args.test_images} test Fashion-MNIST images (fixed subsets), "
                     f"{args.epochs} epochs, batch {args.batch_size}, SGD nesterov lr {args.lr} (1 warm-up epoch, "
                     f"cosine), wd {args.wd}, label smoothing 0.1, flips only; NetAug width {args.aug_width} "
                     f"expand {args.aug_expand} alpha {args.alpha}, width aug for the first half, BN "
                     f"re-calibration on {args.calib_images} train images before every evaluation "
                     f"({'both arms' if args.baseline_reset_bn else 'NetAug only'}); seeds {args.seeds}; device "
                     f"{args.device}, {args.threads} thread(s)" + (" [QUICK smoke test]" if args.quick else "")),
        reduced=not args.quick and (args.train_images < 60000 or args.resolution < 28),
        model=args.model, resolution=args.resolution, train_images=args.train_images,
        test_images=args.test_images, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        aug_width=args.aug_width, aug_expand=args.aug_expand, alpha=args.alpha, device=args.device,
        baseline_reset_bn=bool(args.baseline_reset_bn), short_epochs_fixed=args.short_epochs,
        quick=bool(args.quick))
    if args.note:
        protocol["note"] = args.note
    t_start = time.perf_counter()

    def log(s):
        print(f"[{time.perf_counter() - t_start:7.1f}s] {s}", flush=True)

    log(f"protocol: {protocol['description']}")
    runs: dict = {}
    if args.report_only:
        for s in args.seeds:
            for arm in ("baseline", "netaug"):
                f = work / f"{arm}_s{s}_e{args.epochs}.json"
                if f.exists():
                    runs[(arm, s)] = json.loads(f.read_text())
            if args.short_epochs and (work / f"netaug_s{s}_e{args.short_epochs}.json").exists():
                runs[("netaug_short", s)] = json.loads((work / f"netaug_s{s}_e{args.short_epochs}.json").read_text())
        res = summarise(args, runs, protocol)
        if "baseline_top1_mean" not in res:
            raise BenchError(f"no seed has both arms finished in {work}")
        res["seeds_requested"] = args.seeds
        write_outputs(res, out)
        log(f"seeds {res['seeds']}: baseline {res['baseline_top1_mean']:.2f} netaug {res['netaug_top1_mean']:.2f} "
            f"gain {res['gain_pp']:+.2f} (SE {res['gain_se_pp']}) -> {out.with_suffix('.json')}")
        return 0
    for s in args.seeds:
        for arm in ("baseline", "netaug"):
            runs[(arm, s)] = run_arm(arm, s, args.epochs, args, data, device, work, log)
        res = summarise(args, runs, protocol)
        write_outputs(res, out)
        log(f"seed {s}: baseline {runs[('baseline', s)]['final_test_top1']:.2f}% netaug "
            f"{runs[('netaug', s)]['final_test_top1']:.2f}%")
    if not args.no_equal_wall_clock:
        ratio = summarise(args, runs, protocol)["epoch_time_ratio"]
        e_short = args.short_epochs or max(2, round(args.epochs / ratio))
        for s in args.seeds:
            runs[("netaug_short", s)] = run_arm("netaug", s, e_short, args, data, device, work, log) | \
                {"arm": "netaug_short"}
            write_outputs(summarise(args, runs, protocol), out)
    res = summarise(args, runs, protocol)
    res["wall_seconds_this_invocation"] = round(time.perf_counter() - t_start, 1)
    write_outputs(res, out)
    log(f"baseline {res['baseline_top1_mean']:.2f} ± {res['baseline_top1_std']:.2f}  netaug "
        f"{res['netaug_top1_mean']:.2f} ± {res['netaug_top1_std']:.2f}  gain {res['gain_pp']:+.2f} ± "
        f"{res['gain_se_pp']} pp (SE)  epoch time x{res['epoch_time_ratio']}  -> {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
