#!/usr/bin/env python3
"""Did `--netaug` help the demo's model? The demo's own training command, with and without NetAug.

For each seed, `make demo`'s exact `netaug-mcu train` command (netaug_mcu.demo.train_argv on the demo's
defaults: mbv2-tiny@32, Fashion-MNIST, its epochs / train-limit / threads / augmentation) is run once with
`--netaug` (what the demo does) and once without it (`demo --no-netaug`), adding only `--seed S`. The
figure is each run's test top-1 on all 10,000 test images of the model the run exports (summary.json's
`test_top1`), and its training wall time; the gain is paired per seed.

Resumable: finished runs (summary.json) are kept under --work, an interrupted one resumes from its
checkpoint. Writes --out .json and .md.

    nice -n 10 python bench/netaug_demo_seeds.py [--seeds 0,1,2,3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from netaug_mcu.cli import build_parser
from netaug_mcu.common.fsio import atomic_write
from netaug_mcu.demo import train_argv

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("baseline", "netaug")


def _run(arm: str, seed: int, work: Path, demo_args) -> dict:
    out = work / f"{arm}-seed{seed}"
    summary = out / "summary.json"
    if not summary.exists():
        arm_args = argparse.Namespace(**{**vars(demo_args), "no_netaug": arm == "baseline"})
        argv = train_argv(arm_args, out) + ["--seed", str(seed), "--no-progress"]
        argv.append("--resume" if (out / "checkpoint.pt").exists() else "--overwrite")
        print(f"[{arm} seed {seed}] netaug-mcu {' '.join(argv)}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call([sys.executable, "-m", "netaug_mcu", *argv])
        if rc != 0:
            raise SystemExit(f"error: {arm} seed {seed} failed (exit {rc}); rerun to resume")
        print(f"[{arm} seed {seed}] done in {time.monotonic() - t0:.0f} s", flush=True)
    s = json.loads(summary.read_text())
    return {"arm": arm, "seed": seed, "test_top1": s["test_top1"], "test_samples": s["test_samples"],
            "last_train_top1": s.get("last_train_top1"), "train_seconds": s["train_seconds"],
            "epochs": s["epochs"]}


def _stats(xs: list[float]) -> dict:
    return {"mean": round(statistics.mean(xs), 3),
            "sd": round(statistics.stdev(xs), 3) if len(xs) > 1 else None,
            "se": round(statistics.stdev(xs) / len(xs) ** 0.5, 3) if len(xs) > 1 else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--work", default=str(ROOT / "bench/work/netaug_demo_seeds"))
    ap.add_argument("--out", default=str(ROOT / "bench/results/netaug_demo_seeds"))
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"error: --seeds wants integers separated by commas, got '{a.seeds}'") from None
    demo_args = build_parser().parse_args(["demo"])
    work = Path(a.work)
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: cannot create --work {work}: {exc.strerror}") from None
    runs = [_run(arm, s, work, demo_args) for s in seeds for arm in ARMS]
    by = {(r["arm"], r["seed"]): r for r in runs}
    gains = [round(by["netaug", s]["test_top1"] - by["baseline", s]["test_top1"], 3) for s in seeds]
    res = {
        "protocol": {"command": "netaug-mcu " + " ".join(train_argv(demo_args, Path("OUT"))) + " --seed S",
                     "baseline": "the same without --netaug", "seeds": seeds,
                     "metric": "test top-1 (%) on the official test set of the exported model"},
        "runs": runs,
        "arms": {arm: {**_stats([by[arm, s]["test_top1"] for s in seeds]),
                       "train_seconds_mean": round(statistics.mean(by[arm, s]["train_seconds"] for s in seeds), 1)}
                 for arm in ARMS},
        "netaug_minus_baseline_pp": {**_stats(gains), "per_seed": gains,
                                     "positive_seeds": sum(g > 0 for g in gains)},
    }
    res["time_ratio"] = round(res["arms"]["netaug"]["train_seconds_mean"]
                              / res["arms"]["baseline"]["train_seconds_mean"], 2)
    out = Path(a.out)
    atomic_write(out.with_suffix(".json"), json.dumps(res, indent=1) + "\n")
    g = res["netaug_minus_baseline_pp"]
    lines = ["# NetAug at the demo's schedule (mbv2-tiny@32, Fashion-MNIST)", "",
             f"Command: `{res['protocol']['command']}`; baseline without `--netaug`. Seeds {seeds}.", "",
             "| arm | test top-1 (mean ± sd) | per seed | train s (mean) |", "|---|---|---|---|"]
    for arm in ARMS:
        st = res["arms"][arm]
        per = ", ".join(f"{by[arm, s]['test_top1']:.2f}" for s in seeds)
        lines.append(f"| {arm} | {st['mean']:.2f} ± {st['sd'] or 0:.2f} | {per} | {st['train_seconds_mean']} |")
    lines += ["", f"NetAug − baseline: **{g['mean']:+.2f} pp** (SE {g['se']}), per seed {g['per_seed']}, "
              f"{g['positive_seeds']}/{len(seeds)} seeds positive; training time ×{res['time_ratio']}.", ""]
    atomic_write(out.with_suffix(".md"), "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
