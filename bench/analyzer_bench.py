"""Memory analyzer benchmark: exactness vs the tflite-micro wheel, timings, reordering savings.

For every test model (11 Keras full-int8 models + zoo models converted through onnx2tf):
  * host: analyzer arena/head/tail vs the wheel's print_allocations() totals (error in bytes),
    analyzer min arena vs the binary-searched smallest working arena (16-byte steps);
  * cortex-m7: the analyzer's arena (device figures are in notes/m7_calibration.md);
  * analyze() wall time (median of 5) and the operator-reordering saving.
Writes bench/results/analyzer.json (+ analyzer.md table).

    python bench/analyzer_bench.py [--no-zoo] [--no-reorder]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the Keras test models

from netaug_mcu.converter import analyzer, reorder  # noqa: E402
from netaug_mcu.converter.analyzer_measure import allocations, min_arena  # noqa: E402
from keras_models import BUILDERS, model_path  # noqa: E402

ZOO = [("mcunet-in1", 64), ("mcunet-in1", 96), ("mbv2-tiny", 32), ("mbv2-tiny", 64), ("mbv3-w0.35", 47),
       ("mbv2-w0.35", 160), ("proxyless-w0.35", 160), ("mcunet-in2", 160), ("mcunet-in3", 176), ("mcunet-in4", 160)]


def timed(fn, n=5):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        r = fn()
        ts.append(time.perf_counter() - t)
    return r, statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-zoo", action="store_true")
    ap.add_argument("--no-reorder", action="store_true")
    ap.add_argument("--no-min", action="store_true", help="skip the binary search of the minimum arena")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "analyzer.json"))
    args = ap.parse_args()
    from rich.progress import Progress
    models = [(f"keras/{n}", model_path(n)) for n in BUILDERS]
    tmp = Path(tempfile.mkdtemp(prefix="analyzer-bench-"))
    if not args.no_zoo:
        from netaug_mcu.converter.convert import convert_zoo
        for name, res in ZOO:
            p = tmp / f"{name}-{res}.tflite"
            try:
                convert_zoo(name, res, 3, 10, p, quiet=True)
                models.append((f"zoo/{name}@{res}", p))
            except Exception as exc:  # noqa: BLE001 - record and go on
                print(f"skip {name}@{res}: {exc}", file=sys.stderr)
    rows = []
    models_by_key = dict(models)
    with Progress() as prog:
        task = prog.add_task("analyzer bench", total=len(models))
        for key, p in models:
            data = Path(p).read_bytes()
            a_host, t_host = timed(lambda: analyzer.analyze(data, "host"))
            a_m7, t_m7 = timed(lambda: analyzer.analyze(data, "cortex-m7"))
            m = allocations(data)
            row = {"model": key, "file_bytes": len(data), "ops": len(a_host.ops),
                   "host_predicted": a_host.arena_bytes, "host_measured": m["total"],
                   "host_error": a_host.arena_bytes - m["total"],
                   "host_head_predicted": a_host.head_bytes, "host_head_measured": m["head"],
                   "host_tail_predicted": a_host.tail_bytes, "host_tail_measured": m["tail"],
                   "host_min_predicted": a_host.min_arena_bytes,
                   "m7_arena_bytes": a_m7.arena_bytes, "m7_head_bytes": a_m7.head_bytes,
                   "m7_tail_bytes": a_m7.tail_bytes, "m7_min_arena_bytes": a_m7.min_arena_bytes,
                   "m7_scratch_bytes": sum(s["bytes"] for s in a_m7.scratch), "m7_flash_bytes": a_m7.flash_bytes,
                   "analyze_seconds_host": round(t_host, 4), "analyze_seconds_m7": round(t_m7, 4)}
            if not args.no_min:
                lo = max(a_host.arena_bytes - 2048, 16)
                row["host_min_measured"] = min_arena(data, hi=a_host.min_arena_bytes + 2048, lo=lo, step=16)
                row["host_min_error"] = a_host.min_arena_bytes - row["host_min_measured"]
            if not args.no_reorder:
                try:
                    t = time.perf_counter()
                    nd, rep = reorder.optimize_bytes(data, "cortex-m7")
                    row["reorder_seconds"] = round(time.perf_counter() - t, 3)
                    row["reorder_m7_before"], row["reorder_m7_after"] = rep["arena_before"], rep["arena_after"]
                    row["reorder_saving_bytes"] = rep["arena_before"] - rep["arena_after"]
                    if rep["changed"]:
                        v = reorder.verify_tflm(data, nd)
                        row["reorder_host_measured_before"] = v["measured_before"]
                        row["reorder_host_measured_after"] = v["measured_after"]
                        row["reorder_outputs_identical"] = True
                except reorder.ReorderError as exc:
                    row["reorder_error"] = str(exc)
            rows.append(row)
            prog.advance(task)
    # Cortex-M7 device figures (firmware build in QEMU, arena_used_bytes()) from the firmware notes
    notes = Path("/work/notes/m7_calibration.md")
    device = {}
    elf_flash = {}
    if notes.is_file():
        import re
        for line in notes.read_text().splitlines():
            m = re.match(r"\|\s*([\w.-]+)(?:\s*\(test-models\))?\s*\|\s*[A-Z][A-Z_0-9 ]*\|\s*(\d+)\s*\|", line)
            if m and m.group(1) in BUILDERS:
                device[f"keras/{m.group(1)}"] = int(m.group(2))
            mf = re.match(r"\|\s*([\w.-]+)\s*\|\s*[A-Z][A-Z_0-9 ]*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*0\s*\|\s*(\d+)\s*\|", line)
            if mf and mf.group(1) in BUILDERS:
                elf_flash[f"keras/{mf.group(1)}"] = int(mf.group(4))
    for r in rows:
        if r["model"] in device:
            r["m7_device_arena_used"] = device[r["model"]]
            r["m7_error"] = r["m7_arena_bytes"] - device[r["model"]]
        if r["model"] in elf_flash:  # mps2-an500 ELF (QEMU board): compare with that board's estimate
            pred = analyzer.analyze(models_by_key[r["model"]], "cortex-m7", board="mps2-an500").flash_bytes
            r["m7_elf_flash_measured"] = elf_flash[r["model"]]
            r["m7_elf_flash_predicted"] = pred
            r["m7_flash_error_pct"] = round(100 * (pred - elf_flash[r["model"]]) / elf_flash[r["model"]], 2)
    big = [r for r in rows if r["file_bytes"] >= 1_000_000]
    summary = {
        "models": len(rows),
        "host_exact": sum(r["host_error"] == 0 for r in rows),
        "host_max_abs_error": max(abs(r["host_error"]) for r in rows),
        "min_arena_max_error": max((abs(r.get("host_min_error", 0)) for r in rows), default=None),
        "max_analyze_seconds": max(max(r["analyze_seconds_host"], r["analyze_seconds_m7"]) for r in rows),
        "analyze_seconds_1mb_models": {r["model"]: r["analyze_seconds_m7"] for r in big},
        "m7_device_compared": sum("m7_error" in r for r in rows),
        "m7_max_abs_error": max((abs(r["m7_error"]) for r in rows if "m7_error" in r), default=None),
        "flash_models_compared": sum("m7_flash_error_pct" in r for r in rows),
        "flash_max_abs_error_pct": max((abs(r["m7_flash_error_pct"]) for r in rows if "m7_flash_error_pct" in r),
                                       default=None),
        "cpu_count": os.cpu_count(),
        "tflite_micro_wheel": "0.dev20261023182759 (8f6596d)",
    }
    res = {"summary": summary, "rows": rows,
           "note": "host_* = x86-64 tflite-micro wheel (RecordingMicroAllocator 'Arena allocation total'); m7_* = "
                   "analyzer for the Cortex-M7 firmware (TFLM 90b983c2 + CMSIS-NN 4ab83cc3), whose device "
                   "arena_used_bytes() agreement is recorded in notes/m7_calibration.md by the firmware build."}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    md = ["| model | file B | host predicted | host measured | error | min pred | min measured | M7 arena | "
          "M7 scratch | reorder saving (M7) | analyze s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['file_bytes']} | {r['host_predicted']} | {r['host_measured']} | "
                  f"{r['host_error']} | {r['host_min_predicted']} | {r.get('host_min_measured', '')} | "
                  f"{r['m7_arena_bytes']} | {r['m7_scratch_bytes']} | {r.get('reorder_saving_bytes', '')} | "
                  f"{r['analyze_seconds_m7']} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n\n" + json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if summary["host_exact"] == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
