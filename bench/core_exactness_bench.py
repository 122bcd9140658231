"""Per-core arena exactness: the analyzer's `--target <core>` arena vs the device's arena_used_bytes()
(`info%` of the generated firmware) in QEMU, one row per (model, core).

Cores and boards: cortex-m7 on mps2-an500, cortex-m4 on mps2-an386, cortex-m33 on mps2-an505,
cortex-m55 on mps3-an547 (CMSIS-NN's DSP path on the first three, MVE on the M55). Models: the set the
cortex-m7 target is proven on (tests/test_firmware_qemu.ARENA_MODELS). Every figure here is measured
on an emulator; a core without one is not listed (its figure would be derived, not measured).

Needs arm-none-eabi-gcc, qemu-system-arm, the TFLM tree and each core's libtflm.a (built and cached
on first use, ~5-30 min per core on 2 cores). Writes bench/results/core_exactness.json (+ .md).

    python bench/core_exactness_bench.py [--cores cortex-m4,cortex-m55] [--models tiny_fmnist32,depthwise]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the Keras test models

from netaug_mcu.common import boards  # noqa: E402
from netaug_mcu.common.fsio import atomic_write  # noqa: E402
from netaug_mcu.common.paths import cache_root  # noqa: E402
from netaug_mcu.common.qemu import Qemu  # noqa: E402
from netaug_mcu.converter import analyzer  # noqa: E402
from netaug_mcu.firmware import build as fw_build  # noqa: E402
from netaug_mcu.firmware import generate as gen  # noqa: E402
from netaug_mcu.firmware import tflm_build  # noqa: E402
from netaug_mcu.hil.client import Client  # noqa: E402

CORE_BOARDS = {"cortex-m7": "mps2-an500", "cortex-m4": "mps2-an386", "cortex-m33": "mps2-an505",
               "cortex-m55": "mps3-an547"}
MODELS = ["tiny_fmnist32", "plain_cnn", "depthwise", "residual", "mobilenet_like_64", "zoo:mbv2-tiny:32",
          "zoo:mbv3-w0.35:47"]   # = tests/test_firmware_qemu.ARENA_MODELS


def zoo_model(name: str, res: int) -> Path | None:
    """A zoo model converted by `netaug-mcu convert --zoo` (converter cache), if present."""
    root = cache_root() / "zoo-models"
    for meta in sorted(root.glob("*/model.json")) if root.is_dir() else []:
        try:
            src = json.loads(meta.read_text()).get("source") or {}
        except ValueError:
            continue
        if src.get("zoo") == name and (src.get("arch") or {}).get("resolution") == res \
                and (meta.parent / "model.tflite").is_file():
            return meta.parent / "model.tflite"
    return None


def model_file(name: str) -> Path | None:
    if name.startswith("zoo:"):
        _, zname, res = name.split(":")
        return zoo_model(zname, int(res))
    if name.startswith("tiny_fmnist"):
        return REPO / "hil_tests" / "data" / f"{name}.tflite"
    from keras_models import model_path   # builds + converts it with TensorFlow when missing
    return model_path(name)


def measure(model: Path, core: str, tree: Path, work: Path) -> dict:
    """Analyzer arena and device arena_used_bytes() of one model on one core's QEMU board."""
    board = CORE_BOARDS[core]
    lib = tflm_build.build_library(tree, core=core, log=lambda *_: None)
    t0 = time.perf_counter()
    predicted = analyzer.analyze(str(model), target=core, board=board).arena_bytes
    analyze_s = time.perf_counter() - t0
    gen.generate(model, board=board, out=work, tree=tree, lib=lib, log=lambda *_: None)
    res = fw_build.build(work, tree=tree, lib=lib, log=lambda *_: None)
    with Qemu(res.elf, board=board) as q, Client(q.url, timeout=30.0).connect() as c:
        info = dict(c.info)
    measured = int(info["arena_used"])
    return {"core": core, "board": board, "cmsis_nn_path": tflm_build.core_spec(core)["cmsis_nn_path"],
            "predicted": predicted, "measured": measured, "diff_bytes": predicted - measured,
            "source": "measured (QEMU " + boards.get(board).qemu["machine"] + ")",
            "arena_linked": int(info["arena"]), "flash_bytes": res.flash, "analyze_s": round(analyze_s, 4)}


def markdown(rows: list[dict]) -> str:
    out = ["| model | core | board | predicted B | measured B | diff B |", "|---|---|---|---:|---:|---:|"]
    out += [f"| {r['model']} | {r['core']} | {r['board']} | {r.get('predicted', '-')} | {r.get('measured', '-')} | "
            f"{r.get('diff_bytes', r.get('skipped', '-'))} |" for r in rows]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", default=",".join(CORE_BOARDS), help="comma-separated (default: all four)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: the M7 proof set)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "core_exactness.json"))
    args = ap.parse_args(argv)
    cores, names = args.cores.split(","), args.models.split(",")
    bad = [c for c in cores if c not in CORE_BOARDS]
    if bad:
        print(f"error: unknown core {bad[0]} (choose from {', '.join(CORE_BOARDS)})", file=sys.stderr)
        return 2
    tflm_build.require_toolchain()
    tree = tflm_build.require_tree(log=lambda *_: None)
    rows, t_start = [], time.time()
    for name in names:
        model = model_file(name)
        for core in cores:
            row = {"model": name}
            if model is None or not model.is_file():
                row.update(core=core, board=CORE_BOARDS[core], skipped="model not available on this machine")
            else:
                with tempfile.TemporaryDirectory(prefix="core-exact-") as tmp:
                    row.update(measure(model, core, tree, Path(tmp) / "fw"))
            rows.append(row)
            print(f"{name:22s} {core:11s} predicted {row.get('predicted', '-')} measured "
                  f"{row.get('measured', '-')} diff {row.get('diff_bytes', row.get('skipped'))}", flush=True)
    done = [r for r in rows if "measured" in r]
    doc = {"rows": rows, "exact": sum(r["diff_bytes"] == 0 for r in done), "measured": len(done),
           "max_abs_diff_bytes": max((abs(r["diff_bytes"]) for r in done), default=None),
           "wall_s": round(time.time() - t_start, 1), "host": platform.platform(),
           "qemu": os.popen("qemu-system-arm --version").read().splitlines()[0],
           "compiler": tflm_build.compiler_version(), "command": "python bench/core_exactness_bench.py "
           + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    atomic_write(out, json.dumps(doc, indent=1) + "\n")
    atomic_write(out.with_suffix(".md"), markdown(rows))
    print(f"{doc['exact']}/{doc['measured']} exact (max |diff| {doc['max_abs_diff_bytes']} B) -> {out}")
    return 0 if doc["exact"] == doc["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
