"""Hypothesis fuzzing of every netaug-mcu parser (>= 10,000 inputs each by default).

Each input must be accepted or rejected cleanly (a UserError: exit code 2, one line); anything else is an
uncaught exception, counted and listed (the first few, with the input's class). The targets and their
strategies live in tests/fuzz_targets.py (shared with tests/test_fuzz_parsers.py). Results go to
bench/results/fuzz_parsers.json (written atomically; a run of some --parser entries updates only those).

    python bench/fuzz_parsers.py [--examples 10000] [--parser tflite --parser hil_journal] [--seed 0]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))   # fuzz_targets, keras_models (test helpers, not installed)

import hypothesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

import fuzz_targets as F  # noqa: E402
from netaug_mcu.common.fsio import atomic_write_json  # noqa: E402

RESULTS = HERE / "results" / "fuzz_parsers.json"
# Analyzer test models (built once by TensorFlow into the cache) widen the .tflite seeds when present.
EXTRA_TFLITE = ("fc_only", "avgpool", "residual", "concat_reshape_softmax", "depthwise", "branchy")


def _extra_tflite_seeds() -> tuple[str, ...]:
    try:
        from keras_models import model_path
        return tuple(str(model_path(n)) for n in EXTRA_TFLITE)
    except Exception as exc:  # noqa: BLE001 - no TensorFlow here: the bundled tiny models only
        print(f"note: analyzer test models unavailable ({type(exc).__name__}); .tflite seeds = bundled models")
        return ()


class _OutOfTime(Exception):
    pass


def fuzz_one(target: F.Target, n: int, seed: int, slow_s: float, max_s: float | None = None) -> dict:
    counts: Counter = Counter()
    messages: Counter = Counter()
    findings: list[dict] = []
    digests: set[bytes] = set()
    worst = [0.0]

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy())
    def prop(value):
        if max_s is not None and time.time() - t0 > max_s:
            raise _OutOfTime
        digests.add(hashlib.blake2b(repr(value).encode(), digest_size=12).digest())
        t = time.perf_counter()
        try:
            kind, msg = F.classify(target, value)
            counts[kind] += 1
            if msg:
                messages[msg.split(":")[0] + ":" + msg.split(":")[1][:50] if msg.count(":") else msg[:60]] += 1
        except F.Finding as f:
            counts["uncaught"] += 1
            if len(findings) < 20:
                findings.append({"error": str(f), "input": repr(value)[:400],
                                 "trace": "".join(traceback.format_exception(f.__cause__ or f))[-1500:]})
        dt = time.perf_counter() - t
        worst[0] = max(worst[0], dt)
        if dt > slow_s:
            counts["slow"] += 1
            if len(findings) < 20:
                findings.append({"error": f"slow: {dt:.2f} s", "input": repr(value)[:400]})

    t0 = time.time()
    stopped = False
    try:
        hypothesis.seed(seed)(prop)()
    except _OutOfTime:
        stopped = True
    inputs = counts["accepted"] + counts["rejected"] + counts["uncaught"]
    return {"what": target.what, "clean_rejection": target.clean, "inputs": inputs, "distinct_inputs": len(digests),
            "accepted": counts["accepted"], "clean_rejections": counts["rejected"],
            "uncaught_exceptions": counts["uncaught"], "slow_inputs": counts["slow"],
            "rejection_messages": dict(messages.most_common(15)), "findings": findings,
            "requested_inputs": n, "stopped_by_time_limit": stopped, "wall_s": round(time.time() - t0, 1), "worst_input_s": round(worst[0], 3), "seed": seed,
            "hypothesis": hypothesis.__version__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", "-n", type=int, default=10_000, help="inputs per parser (default 10000)")
    ap.add_argument("--parser", action="append", choices=sorted(F.targets()),
                    help="fuzz only this parser (repeatable; default: all)")
    ap.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    ap.add_argument("--slow", type=float, default=5.0, help="seconds above which one input counts as slow")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="stop a parser's run after this long (its entry then says stopped_by_time_limit)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.examples < 1:
        ap.error("--examples must be >= 1")
    F.TFLITE_EXTRA = _extra_tflite_seeds()
    todo = args.parser or sorted(F.targets())
    out = Path(args.out)
    command = "python bench/fuzz_parsers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    bad = 0
    for name in todo:
        res = fuzz_one(F.targets()[name], args.examples, args.seed, args.slow, args.max_seconds)
        if name == "tflite":
            res["seed_files"] = [Path(p).name for p in (*map(str, F.TINY_MODELS), *F.TFLITE_EXTRA)]
        res.update({"command": command, "python": sys.version.split()[0], "cpu_count": os.cpu_count()})
        print(json.dumps({name: {k: res[k] for k in ("inputs", "accepted", "clean_rejections",
                                                      "uncaught_exceptions", "slow_inputs", "wall_s")}}),
              flush=True)
        _store(out, name, res)
        bad += res["uncaught_exceptions"] + res["slow_inputs"]
    return 1 if bad else 0


def _store(out: Path, name: str, res: dict) -> None:
    """Update one parser's entry; runs for different --parser values may share the file (locked re-read)."""
    import fcntl
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out.parent, os.O_RDONLY)   # the folder is the lock: no lock file left behind
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        doc: dict = {}
        if out.is_file():
            try:
                doc = json.loads(out.read_text())
            except ValueError:
                doc = {}
        doc.setdefault("parsers", {})[name] = res
        doc["parsers"] = dict(sorted(doc["parsers"].items()))
        doc["uncaught_exceptions_total"] = sum(p["uncaught_exceptions"] for p in doc["parsers"].values())
        atomic_write_json(out, doc)
    finally:
        os.close(fd)


if __name__ == "__main__":
    raise SystemExit(main())
