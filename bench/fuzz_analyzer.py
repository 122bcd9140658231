"""Fuzz the memory analyzer with mutated real models (>= 10,000 inputs by default).

Every input must either analyze or raise TFLiteError/AnalyzerError (exit_code 2, one line);
anything else (uncaught exception type, multi-line message, a run slower than --slow seconds)
is a finding. Writes bench/results/analyzer_fuzz.json.

    python bench/fuzz_analyzer.py [-n 10000] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the Keras test models

from netaug_mcu.converter import analyzer  # noqa: E402
from keras_models import BUILDERS, model_path  # noqa: E402
from netaug_mcu.common.tflite_model import TFLiteError  # noqa: E402


def mutate(rng: np.random.Generator, base: bytes) -> tuple[str, bytes]:
    b = bytearray(base)
    kind = rng.choice(["flip", "byte", "word", "truncate", "splice", "zero", "dup", "int32"])
    n = len(b)
    if kind == "flip":
        for _ in range(int(rng.integers(1, 32))):
            i = int(rng.integers(0, n)); b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "byte":
        for _ in range(int(rng.integers(1, 8))):
            b[int(rng.integers(0, n))] = int(rng.integers(0, 256))
    elif kind == "word":
        i = int(rng.integers(0, n - 4)) & ~3
        b[i:i + 4] = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, int(rng.integers(0, 2**32))]).item().to_bytes(4, "little")
    elif kind == "int32":  # plausible small offsets/lengths
        i = int(rng.integers(0, n - 4)) & ~3
        b[i:i + 4] = int(rng.integers(-64, 4096)).to_bytes(4, "little", signed=True)
    elif kind == "truncate":
        b = b[: int(rng.integers(0, n))]
    elif kind == "splice":
        i = int(rng.integers(0, n)); b[i:i] = rng.integers(0, 256, int(rng.integers(1, 256)), dtype=np.uint8).tobytes()
    elif kind == "zero":
        i = int(rng.integers(0, n)); b[i:i + int(rng.integers(1, 512))] = bytes(min(512, n - i))
    else:
        i, j = sorted(int(x) for x in rng.integers(0, n, 2)); b[i:i] = b[i:j][:1024]
    return str(kind), bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow", type=float, default=2.0, help="seconds above which one analysis is a finding")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "analyzer_fuzz.json"))
    args = ap.parse_args()
    from rich.progress import Progress
    seeds = {n: model_path(n).read_bytes() for n in ("fc_only", "avgpool", "residual", "concat_reshape_softmax",
                                                     "depthwise", "fc_wide")}
    names = list(seeds)
    rng = np.random.default_rng(args.seed)
    counts = {"analyzed": 0, "clean_error": 0, "finding": 0}
    kinds: dict[str, int] = {}
    messages: dict[str, int] = {}
    findings = []
    t0 = time.time()
    worst = 0.0
    with Progress() as prog:
        task = prog.add_task("fuzzing analyzer", total=args.n)
        for k in range(args.n):
            name = names[k % len(names)]
            kind, data = mutate(rng, seeds[name])
            kinds[kind] = kinds.get(kind, 0) + 1
            target = "cortex-m7" if k % 2 == 0 else "host"
            t = time.perf_counter()
            try:
                a = analyzer.analyze(data, target)
                assert a.arena_bytes == a.head_bytes + a.tail_bytes
                counts["analyzed"] += 1
            except (TFLiteError, analyzer.AnalyzerError) as exc:
                msg = str(exc)
                if exc.exit_code != 2 or "\n" in msg or not msg:
                    counts["finding"] += 1
                    findings.append({"i": k, "seed_model": name, "kind": kind, "error": repr(exc)})
                else:
                    counts["clean_error"] += 1
                    key = msg.split(":")[0][:60]
                    messages[key] = messages.get(key, 0) + 1
            except Exception as exc:  # noqa: BLE001
                counts["finding"] += 1
                findings.append({"i": k, "seed_model": name, "kind": kind, "error": f"{type(exc).__name__}: {exc}",
                                 "trace": traceback.format_exc()[-800:]})
            dt = time.perf_counter() - t
            worst = max(worst, dt)
            if dt > args.slow:
                counts["finding"] += 1
                findings.append({"i": k, "seed_model": name, "kind": kind, "error": f"slow: {dt:.2f} s"})
            prog.advance(task)
    res = {"inputs": args.n, "seed": args.seed, "seed_models": names, "mutations": kinds, **counts,
           "uncaught_exceptions": sum(1 for f in findings if not f["error"].startswith(("slow", "TFLiteError",
                                                                                          "AnalyzerError"))),
           "error_messages": dict(sorted(messages.items(), key=lambda kv: -kv[1])[:25]),
           "findings": findings[:50], "seconds": round(time.time() - t0, 1), "worst_seconds": round(worst, 3),
           "python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("inputs", "analyzed", "clean_error", "finding", "seconds", "worst_seconds")}))
    return 1 if counts["finding"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
