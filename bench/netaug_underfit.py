#!/usr/bin/env python3
"""NetAug where the tiny model under-fits: the paper's Table 2 arms on all of Fashion-MNIST.

Protocol (defaults = the full protocol):
  data      all 60,000 training images (SGD) and the 10,000 official test images
  student   ``femto`` (~0.9k params: nano with one block per stage, expand 2 and 6/8/16 channels)
            at 16x16 for 30 epochs: trained to convergence, its train-test gap stays <= 1 pp
            (reported as ``regime``) by both measures below. Fashion-MNIST's test set is harder than
            its training set, so the running-accuracy gap grows with the schedule: ``pico`` (~1.7k
            params) passes 1 pp after ~10 epochs, ``nano`` (~4k) by 6. Probe a choice with
            ``--arms baseline --epochs N`` (bench/results/netaug_underfit_regime_*)
  teacher   mbv2-tiny (a wider zoo model, ~0.4M params) at the same resolution, trained ONCE with
            the baseline recipe (seed 0); its exported weights are reused by every KD arm
  arms      baseline, kd, netaug, netaug_kd at equal epochs, plus the equal wall-clock arms
            netaug_short / netaug_kd_short: NetAug(+KD) on its own full schedule of
            round(epochs / epoch-time ratio) epochs, vs baseline / kd
  seeds     0-7 (the same init, data order and flips per seed in every arm)
  recipe    bench/netaug_vs_baseline.py's (SGD Nesterov, label smoothing 0.1, 1 warm-up epoch +
            cosine, flips, BN re-calibration on 2000 train images for every arm); KD: loss +=
            KL(student/T || teacher/T) * T^2 with T = 1, weight 1 (trainer.kd)
Accuracy = the LAST epoch's top-1 of the exported plain student (no selection on the test set).
Train top-1 is measured like the test: eval mode, no flips, on a fixed subset of the training images
as large as the test set (``train_eval``); the running accuracy during the epoch (flips, train mode)
is reported beside it. The regime criterion uses the eval-mode gap (like with like).

Resumable: every run checkpoints each epoch under ``--work``; finished runs are kept; rerun the same
command to continue. ``--jobs N`` trains N runs at once in child processes (``--threads`` each).
Writes ``--out``.json/.md/.png (curves: train and test top-1 per arm).

Usage:
  python bench/netaug_underfit.py --jobs 2                          # full protocol (~1 h on 2 CPU cores)
  python bench/netaug_underfit.py --jobs 2 --model pico --epochs 10 --seeds 0,1,2,3 \
      --out bench/results/netaug_underfit_pico10                    # the wider student, short schedule
  python bench/netaug_underfit.py --arms baseline --seeds 0 --epochs 30 --out /tmp/probe  # the regime
  python bench/netaug_underfit.py --train-images 10000 --epochs 6 --seeds 0 --teacher-epochs 6 \\
      --note "reduced: shared 2-core box"                           # a subset (say so in --note)
  python bench/netaug_underfit.py --device cuda                     # on a GPU
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import math
import statistics
import subprocess
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
# nano with one block per stage and a 24-channel head
PICO_ARCH = "stem_k3_s2_c4 ds_k3_c4_noskip ir_r1_k3_s2_e3_c8 ir_r1_k3_s2_e3_c12 head_c24"
# pico with expand 2, stages of 6 and 8 channels and a 16-channel head (~0.9k params)
FEMTO_ARCH = "stem_k3_s2_c4 ds_k3_c4_noskip ir_r1_k3_s2_e2_c6 ir_r1_k3_s2_e2_c8 head_c16"
STUDENTS = {"nano": NANO_ARCH, "pico": PICO_ARCH, "femto": FEMTO_ARCH}
ARMS = ("baseline", "kd", "netaug", "netaug_kd")
PAIRS = {"netaug": "baseline", "kd": "baseline", "netaug_kd": "baseline"}
SHORT = {"netaug_short": ("netaug", "baseline"), "netaug_kd_short": ("netaug_kd", "kd")}


_build_micro_or_zoo = nvb.build_model


def build_model(name: str, resolution: int):
    from netaug_mcu.trainer import zoo

    if name in STUDENTS:
        return zoo.build_arch(STUDENTS[name], 1, 10, resolution, name=name)
    return _build_micro_or_zoo(name, resolution)


nvb.build_model = build_model  # run_arm builds students/teachers through this


def train_teacher(args, data, device, work: Path, log):
    import copy

    import torch

    targs = copy.copy(args)
    targs.model, targs.save_models = args.teacher_model, True
    tag = f"baseline_s0_e{args.teacher_epochs}"
    rec = nvb.run_arm("baseline", 0, args.teacher_epochs, targs, data, device, work, log)
    teacher = build_model(args.teacher_model, args.resolution)
    teacher.load_state_dict(torch.load(work / f"{tag}.model.pt", map_location="cpu"))
    return teacher.to(device).eval(), rec


def mean_sd(v):
    return (round(statistics.mean(v), 3), round(statistics.stdev(v), 3) if len(v) > 1 else 0.0)


def gain(runs, a, b, seeds):
    d = [runs[(a, s)]["final_test_top1"] - runs[(b, s)]["final_test_top1"] for s in seeds]
    m, sd = mean_sd(d)
    se = round(sd / math.sqrt(len(d)), 3) if len(d) > 1 else None
    return {"vs": b, "gain_pp": m, "gain_se_pp": se, "per_seed_pp": [round(x, 3) for x in d],
            "over_2se": bool(se is not None and m > 2 * se)}


def _shorts(arms) -> tuple:
    return tuple(k for k, (a, b) in SHORT.items() if a in arms and b in arms)


def summarise(args, runs, teacher_rec, protocol) -> dict:
    seeds = [s for s in args.seeds if all((a, s) in runs for a in args.arms)]
    res = {"protocol": protocol, "seeds": seeds, "seeds_requested": args.seeds,
           "complete": len(seeds) == len(args.seeds), "teacher": None}
    if teacher_rec:
        res["teacher"] = {k: teacher_rec[k] for k in ("final_test_top1", "final_train_top1", "final_train_eval_top1",
                                                      "params", "macs", "epochs", "train_seconds")}
    if not seeds:
        return res
    arms = {}
    for a in args.arms + tuple(k for k in _shorts(args.arms) if all((k, s) in runs for s in seeds)):
        recs = [runs[(a, s)] for s in seeds]
        test, train = [r["final_test_top1"] for r in recs], [r["final_train_top1"] for r in recs]
        fit = [r["final_train_eval_top1"] for r in recs]
        E = recs[0]["epochs"]

        def curve(key):
            return [round(statistics.mean(r["history"][e][key] for r in recs), 3) for e in range(E)]

        arms[a] = {"epochs": E, "test_top1": mean_sd(test), "train_eval_top1": mean_sd(fit),
                   "train_running_top1": mean_sd(train),
                   "train_minus_test_pp": round(statistics.mean(fit) - statistics.mean(test), 3),
                   "train_running_minus_test_pp": round(statistics.mean(train) - statistics.mean(test), 3),
                   "epoch_seconds": round(statistics.mean(r["epoch_seconds_mean"] for r in recs), 3),
                   "train_seconds": round(statistics.mean(r["train_seconds"] for r in recs), 2),
                   "test_curve": curve("test_acc"), "train_eval_curve": curve("train_eval_acc"),
                   "train_curve": curve("train_acc"), "per_seed_test_top1": test}
    res["arms"] = arms
    res["gains_equal_epochs"] = {a: gain(runs, a, b, seeds) for a, b in PAIRS.items() if a in arms and b in arms}
    res["gains_equal_wall_clock"] = {k: gain(runs, k, b, seeds) | {"epochs": arms[k]["epochs"]}
                                     for k, (_, b) in SHORT.items() if k in arms}
    if "baseline" in arms:
        gap = arms["baseline"]["train_minus_test_pp"]
        res["regime"] = {"baseline_train_minus_test_pp": gap, "underfits": bool(gap <= 1.0),
                         "baseline_train_running_minus_test_pp": arms["baseline"]["train_running_minus_test_pp"],
                         "criterion": "baseline train top-1 - test top-1 <= 1 pp after the last epoch, both measured "
                                      "the same way (exported model, eval mode, no flips)"}
    res["epoch_time_ratio"] = {f"{a}/{b}": round(arms[a]["epoch_seconds"] / arms[b]["epoch_seconds"], 3)
                               for a, b in (("netaug", "baseline"), ("netaug_kd", "kd"), ("kd", "baseline"))
                               if a in arms and b in arms}
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
        L += ["| arm | epochs | test top-1 (mean ± sd) | train top-1 (eval / running) | train − test (eval / running) "
              "| epoch s |", "|---|---|---|---|---|---|"]
        for a, r in res["arms"].items():
            L.append(f"| {a} | {r['epochs']} | {r['test_top1'][0]:.2f} ± {r['test_top1'][1]:.2f} | "
                     f"{r['train_eval_top1'][0]:.2f} / {r['train_running_top1'][0]:.2f} | "
                     f"{r['train_minus_test_pp']:+.2f} / {r['train_running_minus_test_pp']:+.2f} | "
                     f"{r['epoch_seconds']:.2f} |")
        L += ["", f"Seeds: {res['seeds']} (requested {res['seeds_requested']})."]
        if "regime" in res:
            L[-1] += (f" Regime: baseline train − test = {res['regime']['baseline_train_minus_test_pp']:+.2f} pp -> "
                      f"{'under-fits (<= 1 pp)' if res['regime']['underfits'] else 'NOT under-fitting (> 1 pp)'}.")
        L.append("")
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
        ax[0].plot(ep, r["train_eval_curve"], color=f"C{i}", ls="--", alpha=0.7, label=f"{a} train")
        ax[1].plot([r["epoch_seconds"] * e for e in ep], r["test_curve"], color=f"C{i}", label=a)
    ax[0].set_xlabel("epoch"); ax[0].set_ylabel("top-1 (%), mean over seeds"); ax[0].set_title("train (dashed, eval mode) / test")
    ax[1].set_xlabel("training seconds"); ax[1].set_title("test top-1 vs wall-clock")
    for a in ax:
        a.grid(alpha=0.3); a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="femto", help="student: femto (default), pico, nano, micro or a zoo model")
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
    ap.add_argument("--seeds", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"subset of {','.join(ARMS)}")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--aug-width", default="1,1.8,2.6")
    ap.add_argument("--aug-expand", default="1,1.6,2.2,2.8")
    ap.add_argument("--no-equal-wall-clock", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (child processes)")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)  # ARM:SEED:EPOCHS, a --jobs child
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default=str(ROOT / "bench/work/netaug_underfit"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/netaug_underfit"))
    ap.add_argument("--note", default=None)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s]
        args.aug_width = [float(v) for v in args.aug_width.split(",")]
        args.aug_expand = [float(v) for v in args.aug_expand.split(",")]
    except ValueError:
        raise BenchError("--seeds, --aug-width and --aug-expand take comma-separated numbers") from None
    raw = set(args.arms.split(","))
    args.arms = tuple(a for a in ARMS if a in raw)  # canonical order
    if not args.arms or raw - set(ARMS):
        raise BenchError(f"--arms takes a comma-separated subset of {','.join(ARMS)}")
    if not args.seeds or min(args.epochs, args.teacher_epochs) < 2 or args.train_images < args.batch_size:
        raise BenchError("need >= 1 seed, >= 2 epochs and at least one batch of training images")
    if not 1 <= args.train_images <= 60000 or not 1 <= args.test_images <= 10000:
        raise BenchError("--train-images <= 60000 and --test-images <= 10000 (Fashion-MNIST)")
    if not 1 <= args.jobs <= 64 or not 1 <= args.threads <= 256:
        raise BenchError("--jobs takes 1..64 and --threads 1..256")
    if args.only is not None:
        try:
            a, s, e = args.only.split(":")
            args.only = (a, int(s), int(e))
            if a not in ARMS:
                raise ValueError(a)
        except ValueError:
            raise BenchError("--only takes ARM:SEED:EPOCHS") from None
    args.baseline_reset_bn, args.save_models = True, False
    return args


def _data_key(args) -> str:
    return (f"r{args.resolution}_n{args.train_images}_t{args.test_images}_c{args.calib_images}_b{args.batch_size}"
            f"_lr{args.lr}_wd{args.wd}_{args.device}")


def teacher_dir(args) -> Path:
    """One teacher per (teacher, epochs, data, recipe), shared by every student."""
    return Path(args.work) / f"teacher_{args.teacher_model}_e{args.teacher_epochs}_{_data_key(args)}"


def work_dir(args) -> Path:
    """Runs are cached per protocol: a changed student, resolution, subset or recipe never reuses a
    finished run of another (run files are named by arm, seed and epochs only)."""
    return Path(args.work) / (f"{args.model}_{_data_key(args)}_a{args.alpha}_w{'-'.join(map(str, args.aug_width))}"
                              f"_x{'-'.join(map(str, args.aug_expand))}_T{args.teacher_model}-{args.teacher_epochs}")


def _run_children(plan, args, work: Path, log) -> None:
    """Trains the runs of `plan` not yet finished, `args.jobs` at a time, each in a child process of
    this script (one data load each; the teacher is already trained and saved)."""
    todo = [(a, s, e) for a, s, e in plan if not nvb.run_files(work, a, s, e)[0].exists()]

    def one(run):
        a, s, e = run
        cmd = [sys.executable, str(Path(__file__).resolve()), *args.argv, "--jobs", "1", "--only", f"{a}:{s}:{e}"]
        r = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        if r.returncode:
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"run {a} seed {s} ({e} epochs) failed: {tail}")

    log(f"{len(todo)} run(s) to train, {args.jobs} at a time")
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        try:
            for f in concurrent.futures.as_completed([pool.submit(one, r) for r in todo]):
                f.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # the runs not yet started never start
            raise


def run(args) -> int:
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device available")
    device = torch.device(args.device)
    torch.set_num_threads(max(1, args.threads))
    work, out = work_dir(args), Path(args.out)
    try:
        work.mkdir(parents=True, exist_ok=True)
        teacher_dir(args).mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create {exc.filename}: {exc.strerror}") from None
    from netaug_mcu.trainer import zoo

    params, macs = zoo.count(build_model(args.model, args.resolution), args.resolution, 1)
    full = (args.train_images == 60000 and args.test_images == 10000 and len(args.seeds) >= 4
            and args.arms == ARMS and not args.no_equal_wall_clock)
    protocol = dict(
        description=(f"student {args.model} ({params} params, {macs} MACs) at {args.resolution}x{args.resolution}; "
                     f"{args.train_images} train / {args.test_images} test images; {args.epochs} epochs, batch "
                     f"{args.batch_size}, lr {args.lr}, wd {args.wd}; teacher {args.teacher_model} "
                     f"({args.teacher_epochs} epochs); NetAug width {args.aug_width} expand {args.aug_expand} "
                     f"alpha {args.alpha}; seeds {args.seeds}; {args.device}, {args.threads} thread(s) x "
                     f"{args.jobs} job(s)"),
        full_protocol=full, model=args.model, teacher_model=args.teacher_model, resolution=args.resolution,
        train_images=args.train_images, test_images=args.test_images, epochs=args.epochs,
        teacher_epochs=args.teacher_epochs, batch_size=args.batch_size, lr=args.lr, seeds=args.seeds,
        arms=list(args.arms), jobs=args.jobs, threads=args.threads)
    if args.note:
        protocol["note"] = args.note
    t0 = time.perf_counter()

    def log(s):
        print(f"[{time.perf_counter() - t0:7.1f}s] {s}", flush=True)

    if args.only is None:
        log(f"protocol: {protocol['description']}")
    data = nvb.load_data(args, device)
    need_teacher = any("kd" in a for a in args.arms)
    if args.only is None:  # the teacher trains alone, on every core the jobs will share
        torch.set_num_threads(max(1, args.threads * args.jobs))
    teacher, trec = train_teacher(args, data, device, teacher_dir(args), log) if need_teacher else (None, None)
    torch.set_num_threads(max(1, args.threads))
    if args.only is not None:  # one run, for a parent with --jobs > 1
        a, s, e = args.only
        nvb.run_arm(a, s, e, args, data, device, work, log, teacher=teacher if "kd" in a else None)
        return 0
    if trec:
        log(f"teacher {args.teacher_model}: test {trec['final_test_top1']:.2f}%")
    runs: dict = {}

    def train(plan):
        """plan: (name, arm, seed, epochs); a --jobs parent trains in children, then loads the records."""
        if args.jobs > 1:
            _run_children([(a, x, e) for _, a, x, e in plan], args, work, log)
        for name, a, x, e in plan:
            runs[(name, x)] = dict(nvb.run_arm(a, x, e, args, data, device, work, log,
                                               teacher=teacher if "kd" in a else None), arm=name)

    # one seed at a time in-process (a summary after each); all at once across --jobs children
    for group in ([[x] for x in args.seeds] if args.jobs == 1 else [args.seeds]):
        train([(a, a, x, args.epochs) for x in group for a in args.arms])
        write_outputs(summarise(args, runs, trec, protocol), out)
    plan = []
    for short in () if args.no_equal_wall_clock else _shorts(args.arms):
        arm, ref = SHORT[short]
        res = summarise(args, runs, trec, protocol)
        e = max(2, round(args.epochs * res["arms"][ref]["epoch_seconds"] / res["arms"][arm]["epoch_seconds"]))
        if e >= args.epochs:
            log(f"{short}: {arm} is not slower than {ref} here; no equal wall-clock arm")
            continue
        plan += [(short, arm, x, e) for x in args.seeds]
    if plan:
        train(plan)
    res = summarise(args, runs, trec, protocol)
    write_outputs(res, out)
    g = res.get("gains_equal_epochs", {})
    log("equal epochs: " + (", ".join(f"{a} {v['gain_pp']:+.2f} pp" for a, v in g.items()) or "no pairs")
        + (f"; regime gap {res['regime']['baseline_train_minus_test_pp']:+.2f} pp" if "regime" in res else "")
        + f" -> {out.with_suffix('.json')}")
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
