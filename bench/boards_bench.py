"""Board-database benchmark: the verdict of every model on every board, and the wall time of
`netaug-mcu check MODEL --all-boards`.

Models: the zoo models of bench/analyzer_bench.py (random weights, converted through onnx2tf; cached
under ~/.cache/netaug-mcu/zoo-models) and the MLPerf Tiny reference models when they are in the cache
(~/.cache/netaug-mcu/mlperf-tiny/manifest.json, fetched from mlcommons/tiny, never committed; skipped,
and said so, otherwise). Per model: the CLI run as a user runs it (a fresh process: interpreter start,
imports, parse, one analysis per target, every board), median of --repeat runs, and the in-process
sweep time. Writes bench/results/boards.json.

    python bench/boards_bench.py [--no-zoo] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netaug_mcu.common import boards
from netaug_mcu.common.fsio import atomic_write
from netaug_mcu.common.paths import cache_root
from netaug_mcu.converter import board_sweep

OUT = Path(__file__).resolve().parent / "results" / "boards.json"
ZOO = [("mcunet-in1", 64), ("mcunet-in1", 96), ("mbv2-tiny", 32), ("mbv2-tiny", 64), ("mbv3-w0.35", 47),
       ("mbv2-w0.35", 160), ("proxyless-w0.35", 160), ("mcunet-in2", 160), ("mcunet-in3", 176), ("mcunet-in4", 160)]
EXE = Path(sys.executable).with_name("netaug-mcu")


def zoo_models(tmp: Path) -> list[tuple[str, Path, str]]:
    from netaug_mcu.converter.convert import convert_zoo
    out = []
    for name, res in ZOO:
        p = tmp / f"{name}-{res}.tflite"
        convert_zoo(name, res, 3, 10, p, quiet=True)   # cached: same arguments as analyzer_bench
        out.append((f"zoo/{name}@{res}", p, "random weights, onnx2tf int8"))
    return out


def mlperf_models() -> tuple[list[tuple[str, Path, str]], str]:
    man = cache_root() / "mlperf-tiny" / "manifest.json"
    if not man.is_file():
        return [], f"skipped: no {man} (MLPerf Tiny reference models are fetched, never committed)"
    doc = json.loads(man.read_text())
    models = [(f"mlperf-tiny/{k}", Path(v["file"]), f"mlcommons/tiny@{doc['commit'][:12]} {v['path']}")
              for k, v in sorted(doc["models"].items()) if Path(v["file"]).is_file()]
    return models, f"{len(models)} models from {doc['source']} @ {doc['commit']}"


def cli_wall(model: Path, repeat: int, tmp: Path) -> tuple[float, list[float], dict]:
    times, doc = [], None
    for _ in range(repeat):
        out = tmp / "sweep.json"
        t = time.perf_counter()
        r = subprocess.run([str(EXE), "check", str(model), "--all-boards", "--json", str(out)],
                           capture_output=True, text=True, timeout=600)
        times.append(time.perf_counter() - t)
        if r.returncode not in (0, 1):
            raise SystemExit(f"check --all-boards failed on {model}: {r.stderr.strip()}")
        doc = json.loads(out.read_text())
    return statistics.median(times), times, doc


def verdict(r: dict) -> str:
    if r["verdict"] == "fits":
        return "fits" + ("*" if not r["exact"] else "")
    if r["verdict"] == "over":
        parts = [f"SRAM +{r['ram_over_bytes']}"] * bool(r["ram_over_bytes"]) + \
                [f"flash +{r['flash_over_bytes']}"] * bool(r["flash_over_bytes"])
        return "over " + ", ".join(parts) + ("*" if not r["exact"] else "")
    return "unsupported core"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-zoo", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="boards-bench-") as td:
        tmp = Path(td)
        models = [] if args.no_zoo else zoo_models(tmp)
        ml, ml_note = mlperf_models()
        models += ml
        rows = []
        for label, path, source in models:
            med, times, doc = cli_wall(path, args.repeat, tmp)
            t = time.perf_counter()
            board_sweep.sweep(str(path), allow_estimate=True)
            inproc = time.perf_counter() - t
            rows.append({"model": label, "source": source, "file_bytes": path.stat().st_size,
                         "arena_bytes": {k: v["arena_bytes"] for k, v in doc["targets"].items()},
                         "smallest_fit": doc["smallest_fit"], "counts": doc["counts"],
                         "cli_wall_s_median": round(med, 3), "cli_wall_s": [round(x, 3) for x in times],
                         "sweep_in_process_s": round(inproc, 3),
                         "verdicts": {r["board"]: verdict(r) for r in doc["boards"]}})
            print(f"{label:28s} smallest fit {str(doc['smallest_fit']):24s} {doc['counts']}  "
                  f"check --all-boards {med:.2f} s (in-process {inproc:.3f} s)")
    walls = [r["cli_wall_s_median"] for r in rows]
    res = {"command": "python bench/boards_bench.py" + (" --no-zoo" if args.no_zoo else ""),
           "boards": len(boards.names()),
           "exact_boards": sum(boards.get(n).exact for n in boards.names()),
           "derived_boards": sum(boards.get(n).supported and not boards.get(n).exact for n in boards.names()),
           "unsupported_boards": sum(not boards.get(n).supported for n in boards.names()),
           "mlperf_tiny": ml_note, "machine": "shared 2-core x86-64 (other jobs running)",
           "cli_wall_s_median_over_models": round(statistics.median(walls), 3) if walls else None,
           "cli_wall_s_max": max(walls) if walls else None,
           "legend": "fits* / over*: figure derived from the nearest exact target (core without its own model)",
           "per_core_exactness": "bench/results/core_exactness.json (bench/core_exactness_bench.py: predicted vs "
                                 "arena_used_bytes() in QEMU per core)",
           "models": rows}
    atomic_write(OUT, json.dumps(res, indent=1) + "\n")
    print(f"wrote {OUT}: {len(rows)} models x {res['boards']} boards; median check --all-boards "
          f"{res['cli_wall_s_median_over_models']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
