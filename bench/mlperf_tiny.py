#!/usr/bin/env python3
"""MLPerf Tiny reference models through the netaug-mcu flow -> bench/results/mlperf_tiny.json.

    nice -n 10 python bench/mlperf_tiny.py [--models ic01,kws01,vww01,ad01] [--runner-dir DIR] [--perf-script Y]

Per model (fetched first by bench/fetch_mlperf_models.py into the user cache):
  analyze   the memory analyzer's arena and flash prediction (converter.analyzer, cortex-m7)
  firmware  `firmware --mlperf BENCH --board mps2-an500 --build`: the ELF's flash (text+data)
  QEMU      info%: the device's arena_used_bytes()
  runner    the official runner (unmodified, via netaug_mcu.hil.mlperf_runner) in performance mode on QEMU:
            its median throughput and 1/throughput. QEMU's timer is an instruction-count proxy
            (-icount shift=0: 1 instruction = 1 ns), NOT Cortex-M7 time.
  accuracy  the official runner in accuracy mode on the virtual board (--mlperf BENCH), on inputs generated
            here: the official datasets are not redistributable, so inputs are labelled with host TFLM's own
            prediction; its Top-1 is then device-vs-host agreement (100 % = every result vector, normalised
            by the runner, keeps host TFLM's argmax), not model quality. The runner's multi-class AUC needs
            every class in the labels: classes no random input reaches are searched for by a hill climb on
            the pre-softmax logits; a class still unreached gets its closest input labelled with it
            (`forced_labels`), a miss by construction, so Top-1 = 100 * (files - forced) / files at best.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netaug_mcu.common.fsio import atomic_write_json  # noqa: E402
from netaug_mcu.common.paths import cache_root  # noqa: E402
from netaug_mcu.hil import protocol as P  # noqa: E402

OUT = ROOT / "bench" / "results" / "mlperf_tiny.json"


def analyze(path: Path) -> dict:
    from netaug_mcu.firmware.generate import analyze_model, read_model
    a = analyze_model(read_model(path))
    return {"arena_bytes": a.arena_bytes, "min_arena_bytes": a.min_arena_bytes, "flash_bytes": a.flash_bytes}


def build_firmware(path: Path, bench: str, out: Path) -> dict:
    from netaug_mcu.firmware import build, generate, tflm_build
    tree, why = tflm_build.find_tree()
    if tree is None:
        raise RuntimeError(why)
    proj = generate.generate(path, board="mps2-an500", out=out, tree=tree, mlperf=bench, log=lambda *_: None)
    res = build.build(out, tree=tree, log=lambda *_: None)
    return {"elf": res.elf, "elf_flash_bytes": res.flash, "elf_ram_bytes": res.ram, "arena_bytes": proj.arena_bytes}


def device_info(url: str) -> dict:
    from netaug_mcu.hil.client import Client
    with Client(url, timeout=20.0).connect() as c:
        return dict(c.info)


def logits_reference(m):
    """Host TFLM of the model cut before a final SOFTMAX (its int8 output saturates at -128 for every class
    but the winner, a plateau no search climbs), else of the model itself."""
    from netaug_mcu.common.tflite_model import load
    from netaug_mcu.converter.patching.rewrite import truncate_at
    from netaug_mcu.common.host_tflm import HostTFLM
    t = load(m.data)
    last = t.operators[-1]
    if last.name != "SOFTMAX" or not last.inputs:
        return HostTFLM(m.data)
    return HostTFLM(truncate_at(m.data, t.tensors[last.inputs[0]].name))


def _margin(q: np.ndarray, c: int) -> int:
    q = q.astype(np.int32).reshape(-1)
    return int(q[c] - np.max(np.delete(q, c)))


def cover_classes(ref, pool, n_classes: int, n: int, rng, steps: int = 3000, attempts: int = 3, logits=None):
    """Inputs for every class (the runner's multi-class AUC needs them all): for a class no random input
    reaches, a hill climb on that class's logit margin (`logits`: the pre-softmax reference) from the pool
    input closest to it (then the next ones), adding noise to a shrinking share of the bytes; the label is
    always `ref`'s argmax."""
    logits = logits or ref
    out, by_class, forced = [], {}, {}
    for x in pool:
        by_class.setdefault(int(np.argmax(ref.run(x))), []).append(x)
    scores = [logits.run(x) for x in pool]
    for c in range(n_classes):
        if c in by_class:
            continue
        closest = None
        for k in np.argsort([-_margin(q, c) for q in scores])[:attempts]:   # restarts: the next-closest input
            x, margin = pool[k].copy(), _margin(scores[k], c)
            for step in range(steps):
                share = max(1, int(x.size * (0.2 if step < steps // 3 else 0.05)))
                y = x.copy()
                idx = rng.integers(0, y.size, share)
                y[idx] = (y[idx].astype(np.int32) + rng.integers(-48, 49, share)).clip(-128, 127).astype(np.int8)
                my = _margin(logits.run(y), c)
                if my >= margin:
                    x, margin = y, my
                    if margin > 0 and int(np.argmax(ref.run(x))) == c:
                        by_class[c] = [x]
                        break
            if c in by_class:
                break
            if closest is None or margin > closest[1]:
                closest = (x, margin)
        if c not in by_class:
            forced[c] = closest[0]
    per = max(1, n // max(1, len(by_class)))
    for c, xs in sorted(by_class.items()):
        out += [(x, c) for x in xs[:per]]
    # A class no search reached: its closest input labelled with it, so that the runner's multi-class AUC
    # can run; that file is a miss by construction (recorded as forced_labels in the results).
    out += [(x, c) for c, x in sorted(forced.items())]
    return out, sorted(forced)


def generate_dataset(path: Path, bench: str, root: Path, n: int, seed: int = 0) -> list[int]:
    """n dataset files in the benchmark's file format, labelled with host TFLM's class (ad01: by construction,
    normal = features reconstructed well, anomaly = scaled noise). Returns the forced labels (cover_classes)."""
    from netaug_mcu.hil.model import host_reference, load_model
    m = load_model(path)
    ref = host_reference(m)
    d = root / bench
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fmt = P.MLPERF_BENCHMARKS[bench]["input"]
    i = m.input
    rows, pool, forced = [], [], []
    for k in range(n):
        x = (rng.normal(0, rng.uniform(5, 90), i.nbytes) + rng.integers(-100, 100)).clip(-128, 127).astype(np.int8)
        if bench == "ad01":
            label = k % 2
            feats = P.encode_input(x.tobytes(), "float32", i.scale, i.zero_point)
            # five 128-float windows per "file" as the runner slices (bytes_to_send 2560, stride 512)
            data = feats if not label else (np.frombuffer(feats, "<f4") * np.float32(3.0)).astype("<f4").tobytes()
            (d / f"gen_{k:04d}.bin").write_bytes(data)
            rows.append(f"gen_{k:04d}.bin,2,{label},{len(data)},{len(data)}")
            continue
        pool.append(x)
    if bench != "ad01":
        # flat inputs too (a constant image, an all-quiet spectrogram: kws01's "silence" is reached by no noise)
        pool += [np.full(i.nbytes, v, np.int8) for v in (-128, -96, -64, -32, 0, 32, 64, 127)]
        files, forced = cover_classes(ref, pool, m.output.nbytes, n, rng, logits=logits_reference(m))
        for k, (x, label) in enumerate(files):
            (d / f"gen_{k:04d}.bin").write_bytes(P.encode_input(x.tobytes(), fmt, i.scale, i.zero_point))
            rows.append(f"gen_{k:04d}.bin,{m.output.nbytes},{label}")
    (d / "y_labels.csv").write_text("\n".join(rows) + "\n")
    return forced


def run_runner(url: str, mode: str, dataset: Path, out: Path, runner_dir: str | None, script: str | None) -> dict:
    from netaug_mcu.hil.mlperf_runner import run, summary
    t0 = time.monotonic()
    rc, lines = run(url, mode, str(dataset), str(out), runner_dir=runner_dir, test_script=script,
                    echo=lambda *_: None, timeout=1800)
    s = summary(lines)
    s.update(rc=rc, seconds=round(time.monotonic() - t0, 1))
    if rc != 0:
        s["tail"] = lines[-8:]
    return s


def one_model(bench: str, path: Path, work: Path, args) -> dict:
    from netaug_mcu.hil.targets import start_qemu
    from netaug_mcu.hil.virtual_board import VirtualBoard
    rec: dict = {"model": str(path), "bytes": path.stat().st_size}
    rec["analyzer"] = analyze(path)
    fw = build_firmware(path, bench, work / f"fw-{bench}")
    rec["firmware"] = {k: v for k, v in fw.items() if k != "elf"}
    rec["flash_predicted_vs_elf"] = rec["analyzer"]["flash_bytes"] - fw["elf_flash_bytes"]
    ds = work / "datasets"
    forced = generate_dataset(path, bench, ds, args.files)
    url, stop = start_qemu(fw["elf"])
    try:
        info = device_info(url)
        rec["device"] = {k: info.get(k) for k in ("model", "arena", "arena_used", "input", "output", "timer",
                                                   "input_format", "results")}
        rec["arena_predicted_minus_used"] = rec["analyzer"]["arena_bytes"] - int(info["arena_used"])
        # the runner's own script, and (--perf-script) a second run with ours, side by side
        runs = [("runner_performance_qemu", None)]
        if args.perf_script:
            runs.append(("runner_performance_qemu_perf_script", args.perf_script))
        for key, script in runs:
            rec[key] = run_runner(url, "p", ds, work / f"{key}-{bench}", args.runner_dir, script)
            rec[key]["timer"] = "QEMU -icount instruction-count proxy, not Cortex-M7 time"
            rec[key]["script"] = script or "the runner's tests_performance.yaml"
    finally:
        stop()
    with VirtualBoard(path, mlperf=bench, transport="tcp") as vb:
        rec["runner_accuracy_virtual"] = run_runner(vb.url, "a", ds, work / f"acc-{bench}", args.runner_dir,
                                                    None)
    rec["runner_accuracy_virtual"]["labels"] = "host TFLM predictions on generated inputs (agreement, not quality)"
    rec["runner_accuracy_virtual"]["forced_labels"] = forced   # classes no input reached: one file each, a miss
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ic01,kws01,vww01,ad01")
    ap.add_argument("--runner-dir", default=None, help="mlcommons/tiny benchmark/runner (or $MLPERF_TINY_DIR)")
    ap.add_argument("--perf-script", default=None,
                    help="also run performance mode with this test script (after the runner's own)")
    ap.add_argument("--files", type=int, default=20, help="generated dataset files per model")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mlperf-bench"))
    args = ap.parse_args()
    src = cache_root() / "mlperf-tiny"
    results = json.loads(OUT.read_text()) if OUT.is_file() else {}
    results.setdefault("models", {})
    for bench in args.models.split(","):
        path = src / f"{bench}.tflite"
        if not path.is_file():
            results["models"][bench] = {"skipped": f"{path} missing (run bench/fetch_mlperf_models.py)"}
            continue
        try:
            results["models"][bench] = one_model(bench, path, args.work, args)
        except Exception as exc:  # noqa: BLE001 - record and go on with the next model
            results["models"][bench] = {"error": f"{type(exc).__name__}: {exc}",
                                        "where": traceback.format_exc().splitlines()[-3:]}
        results["note"] = __doc__.split("\n\n", 2)[2].strip()
        atomic_write_json(OUT, results, indent=1)
        print(bench, json.dumps(results["models"][bench])[:600], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
