#!/usr/bin/env python3
"""NetAug where the tiny model under-fits: the paper's Table 2 arms on all of Fashion-MNIST.

Protocol (defaults = the full protocol):
  data      all 60,000 training images (SGD) and the 10,000 official test images
  student   ``nano`` (half the width of bench/netaug_vs_baseline.py's micro model, ~4k params) at
            16x16: small enough that its train-test gap stays <= 1 pp (reported as ``regime``)
  teacher   mbv2-tiny (a wider zoo model, ~0.4M params) at the same resolution, trained ONCE with
            the baseline recipe (seed 0); its exported weights are reused by every KD arm
  arms      baseline, kd, netaug, netaug_kd at equal epochs, plus the equal wall-clock arms
            netaug_short / netaug_kd_short: NetAug(+KD) on its own full schedule of
            round(epochs / epoch-time ratio) epochs, vs baseline / kd
  seeds     0,1,2,3 (the same init, data order and flips per seed in every arm)
  recipe    bench/netaug_vs_baseline.py's (SGD Nesterov, label smoothing 0.1, 1 warm-up epoch +
            cosine, flips, BN re-calibration on 2000 train images for every arm); KD: loss +=
            KL(student/T || teacher/T) * T^2 with T = 1, weight 1 (trainer.kd)
Accuracy = the LAST epoch's top-1 of the exported plain student (no selection on the test set).
Per-epoch train top-1 is the running accuracy during the epoch (with flips, in train mode).

Resumable: every run checkpoints each epoch under ``--work``; finished runs are kept; rerun the same
command to continue. Writes ``--out``.json/.md/.png (curves: train and test top-1 per arm).

Usage:
  python bench/netaug_underfit.py                                   # full protocol (~days on 2 CPU cores)
  python bench/netaug_underfit.py --train-images 10000 --epochs 6 --seeds 0 --teacher-epochs 6 \\
      --note "reduced: shared 2-core box"                           # a subset (say so in --note)
  python bench/netaug_underfit.py --device cuda                     # on a GPU
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("netaug_vs_baseline", ROOT / "bench/netaug_vs_baseline.py")
nvb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nvb)
BenchError = nvb.BenchError

# half of micro's widths: stem 4 (s2), DSConv 4->4, MB 8 (e3, s2) x2, MB 12 (e3, s2) x2, head 32
NANO_ARCH = "stem_k3_s2_c4 ds_k3_c4_noskip ir_r2_k3_s2_e3_c8 ir_r2_k3_s2_e3_c12 head_c32"
ARMS = ("baseline", "kd", "netaug", "netaug_kd")
PAIRS = {"netaug": "baseline", "kd": "baseline", "netaug_kd": "baseline"}
SHORT = {"netaug_short": ("netaug", "baseline"), "netaug_kd_short": ("netaug_kd", "kd")}


_build_micro_or_zoo = nvb.build_model


def build_model(name: str, resolution: int):
    from netaug_mcu.trainer import zoo

    if name == "nano":
        return zoo.build_arch(NANO_ARCH, 1, 10, resolution, name="nano")
    return _build_micro_or_zoo(name, resolution)


nvb.build_model = build_model  # run_arm builds students/teachers through this


def train_teacher(args, data, device, work: Path, log):
    import copy

    import torch

    targs = copy.copy(args)
    targs.model, targs.save_models = args.teacher_model, True
    tag = f"baseline_s0_e{args.teacher_epochs}"
    rec = nvb.run_arm("baseline", 0, args.teacher_epochs, targs, data, device, work / "teacher", log)
    teacher = build_model(args.teacher_model, args.resolution)
    teacher.load_state_dict(torch.load(work / "teacher" / f"{tag}.model.pt", map_location="cpu"))
    return teacher.to(device).eval(), rec


def mean_sd(v):
    return (round(statistics.mean(v), 3), round(statistics.stdev(v), 3) if len(v) > 1 else 0.0)


def gain(runs, a, b, seeds):
    d = [runs[(a, s)]["final_test_top1"] - runs[(b, s)]["final_test_top1"] for s in seeds]
    m, sd = mean_sd(d)
    se = round(sd / math.sqrt(len(d)), 3) if len(d) > 1 else None
    return {"vs": b, "gain_pp": m, "gain_se_pp": se, "per_seed_pp": [round(x, 3) for x in d],
            "over_2se": bool(se is not None and m > 2 * se)}


def summarise(args, runs, teacher_rec, protocol) -> dict:
    seeds = [s for s in args.seeds if all((a, s) in runs for a in ARMS)]
    res = {"protocol": protocol, "seeds": seeds, "seeds_requested": args.seeds,
           "complete": len(seeds) == len(args.seeds), "teacher": None}
    if teacher_rec:
        res["teacher"] = {k: teacher_rec[k] for k in ("final_test_top1", "final_train_top1", "params", "macs",
                                                      "epochs", "train_seconds")}
    if not seeds:
        return res
    arms = {}
    for a in ARMS + tuple(k for k in SHORT if all((k, s) in runs for s in seeds)):
        recs = [runs[(a, s)] for s in seeds]
        test, train = [r["final_test_top1"] for r in recs], [r["final_train_top1"] for r in recs]
        E = recs[0]["epochs"]
        arms[a] = {"epochs": E, "test_top1": mean_sd(test), "train_top1": mean_sd(train),
                   "train_minus_test_pp": round(statistics.mean(train) - statistics.mean(test), 3),
                   "epoch_seconds": round(statistics.mean(r["epoch_seconds_mean"] for r in recs), 3),
                   "train_seconds": round(statistics.mean(r["train_seconds"] for r in recs), 2),
                   "test_curve": [round(statistics.mean(r["history"][e]["test_acc"] for r in recs), 3) for e in range(E)],
                   "train_curve": [round(statistics.mean(r["history"][e]["train_acc"] for r in recs), 3) for e in range(E)],
                   "per_seed_test_top1": test}
    res["arms"] = arms
    res["gains_equal_epochs"] = {a: gain(runs, a, b, seeds) for a, b in PAIRS.items()}
    res["gains_equal_wall_clock"] = {k: gain(runs, k, b, seeds) | {"epochs": arms[k]["epochs"]}
                                     for k, (_, b) in SHORT.items() if k in arms}
    gap = arms["baseline"]["train_minus_test_pp"]
    res["regime"] = {"baseline_train_minus_test_pp": gap, "underfits": bool(gap <= 1.0),
                     "criterion": "baseline train top-1 - test top-1 <= 1 pp at the last epoch"}
    res["epoch_time_ratio"] = {"netaug/baseline": round(arms["netaug"]["epoch_seconds"] / arms["baseline"]["epoch_seconds"], 3),
                               "netaug_kd/kd": round(arms["netaug_kd"]["epoch_seconds"] / arms["kd"]["epoch_seconds"], 3)}
    return res


def write_outputs(res: dict, out: Path) -> None:
    from netaug_mcu.common import fsio

    out.parent.mkdir(parents=True, exist_ok=True)
    fsio.atomic_write_json(out.with_suffix(".json"), res)
    p = res["protocol"]
    L = ["# NetAug where the tiny model under-fits (Fashion-MNIST)", "", f"Protocol: {p['description']}", ""]
    if p.get("note"):
        L += [f"Note: {p['note']}", ""]
    if res.get("teacher"):
        t = res["teacher"]
        L += [f"Teacher ({p['teacher_model']}, {t['params']} params): test {t['final_test_top1']:.2f} %, "
              f"train {t['final_train_top1']:.2f} %, {t['epochs']} epochs", ""]
    if "arms" in res:
        L += ["| arm | epochs | test top-1 (mean ± sd) | train top-1 | train − test | epoch s |",
              "|---|---|---|---|---|---|"]
        for a, r in res["arms"].items():
            L.append(f"| {a} | {r['epochs']} | {r['test_top1'][0]:.2f} ± {r['test_top1'][1]:.2f} | "
                     f"{r['train_top1'][0]:.2f} | {r['train_minus_test_pp']:+.2f} | {r['epoch_seconds']:.2f} |")
        L += ["", f"Seeds: {res['seeds']} (requested {res['seeds_requested']}). Regime: baseline train − test = "
              f"{res['regime']['baseline_train_minus_test_pp']:+.2f} pp -> "
              f"{'under-fits (<= 1 pp)' if res['regime']['underfits'] else 'NOT under-fitting (> 1 pp)'}.", ""]
        for title, key in (("equal epochs", "gains_equal_epochs"), ("equal wall-clock", "gains_equal_wall_clock")):
            for a, g in res[key].items():
                L.append(f"- {title}: **{a} vs {g['vs']}: {g['gain_pp']:+.2f} pp** (SE {g['gain_se_pp']}; "
                         f"per seed {g['per_seed_pp']}){' > 2 SE' if g['over_2se'] else ''}")
        L.append(f"- epoch time ratios: {res['epoch_time_ratio']}")
    L.append("")
    fsio.atomic_write(out.with_suffix(".md"), "\n".join(L))
    if "arms" in res:
        _plot(res, out.with_suffix(".png"))


def _plot(res, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for i, (a, r) in enumerate(res["arms"].items()):
        ep = range(1, r["epochs"] + 1)
        ax[0].plot(ep, r["test_curve"], color=f"C{i}", label=f"{a} test")
        ax[0].plot(ep, r["train_curve"], color=f"C{i}", ls="--", alpha=0.7, label=f"{a} train")
        ax[1].plot([r["epoch_seconds"] * e for e in ep], r["test_curve"], color=f"C{i}", label=a)
    ax[0].set_xlabel("epoch"); ax[0].set_ylabel("top-1 (%), mean over seeds"); ax[0].set_title("train (dashed) / test")
    ax[1].set_xlabel("training seconds"); ax[1].set_title("test top-1 vs wall-clock")
    for a in ax:
        a.grid(alpha=0.3); a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="nano", help="student: nano (default), micro or a zoo model")
    ap.add_argument("--teacher-model", default="mbv2-tiny")
    ap.add_argument("--resolution", type=int, default=16)
    ap.add_argument("--train-images", type=int, default=60000)
    ap.add_argument("--test-images", type=int, default=10000)
    ap.add_argument("--calib-images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--wd", type=float, default=4e-5)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--aug-width", default="1,1.8,2.6")
    ap.add_argument("--aug-expand", default="1,1.6,2.2,2.8")
    ap.add_argument("--no-equal-wall-clock", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default=str(ROOT / "bench/work/netaug_underfit"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/netaug_underfit"))
    ap.add_argument("--note", default=None)
    args = ap.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
        args.aug_width = [float(v) for v in args.aug_width.split(",")]
        args.aug_expand = [float(v) for v in args.aug_expand.split(",")]
    except ValueError:
        raise BenchError("--seeds, --aug-width and --aug-expand take comma-separated numbers") from None
    if not args.seeds or min(args.epochs, args.teacher_epochs) < 2 or args.train_images < args.batch_size:
        raise BenchError("need >= 1 seed, >= 2 epochs and at least one batch of training images")
    if not 1 <= args.train_images <= 60000 or not 1 <= args.test_images <= 10000:
        raise BenchError("--train-images <= 60000 and --test-images <= 10000 (Fashion-MNIST)")
    args.baseline_reset_bn, args.save_models = True, False
    return args


def run(args) -> int:
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device available")
    device = torch.device(args.device)
    torch.set_num_threads(max(1, args.threads))
    work, out = Path(args.work), Path(args.out)
    (work / "teacher").mkdir(parents=True, exist_ok=True)
    from netaug_mcu.trainer import zoo

    params, macs = zoo.count(build_model(args.model, args.resolution), args.resolution, 1)
    full = args.train_images == 60000 and args.test_images == 10000 and len(args.seeds) >= 4
    protocol = dict(
        description=(f"student {args.model} ({params} params, {macs} MACs) at {args.resolution}x{args.resolution}; "
                     f"{args.train_images} train / {args.test_images} test images; {args.epochs} epochs, batch "
                     f"{args.batch_size}, lr {args.lr}, wd {args.wd}; teacher {args.teacher_model} "
                     f"({args.teacher_epochs} epochs); NetAug width {args.aug_width} expand {args.aug_expand} "
                     f"alpha {args.alpha}; seeds {args.seeds}; {args.device}, {args.threads} thread(s)"),
        full_protocol=full, model=args.model, teacher_model=args.teacher_model, resolution=args.resolution,
        train_images=args.train_images, test_images=args.test_images, epochs=args.epochs,
        teacher_epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr, seeds=args.seeds)
    if args.note:
        protocol["note"] = args.note
    t0 = time.perf_counter()

    def log(s):
        print(f"[{time.perf_counter() - t0:7.1f}s] {s}", flush=True)

    log(f"protocol: {protocol['description']}")
    data = nvb.load_data(args, device)
    teacher, trec = train_teacher(args, data, device, work, log)
    log(f"teacher {args.teacher_model}: test {trec['final_test_top1']:.2f}%")
    runs: dict = {}
    for s in args.seeds:
        for arm in ARMS:
            runs[(arm, s)] = nvb.run_arm(arm, s, args.epochs, args, data, device, work, log,
                                         teacher=teacher if "kd" in arm else None)
        write_outputs(summarise(args, runs, trec, protocol), out)
    if not args.no_equal_wall_clock:
        res = summarise(args, runs, trec, protocol)
        for short, (arm, ref) in SHORT.items():
            ratio = res["arms"][arm]["epoch_seconds"] / res["arms"][ref]["epoch_seconds"]
            e = max(2, round(args.epochs / ratio))
            for s in args.seeds:
                rec = nvb.run_arm(arm, s, e, args, data, device, work, log, teacher=teacher if "kd" in arm else None)
                runs[(short, s)] = dict(rec, arm=short)
            write_outputs(summarise(args, runs, trec, protocol), out)
    res = summarise(args, runs, trec, protocol)
    write_outputs(res, out)
    g = res["gains_equal_epochs"]
    log(f"equal epochs: " + ", ".join(f"{a} {v['gain_pp']:+.2f} pp" for a, v in g.items())
        + f"; regime gap {res['regime']['baseline_train_minus_test_pp']:+.2f} pp -> {out.with_suffix('.json')}")
    return 0


def main(argv=None) -> int:
    from netaug_mcu.common.errors import UserError

    try:
        return run(parse(argv))
    except (BenchError, UserError) as exc:
        print(f"netaug_underfit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
