#!/usr/bin/env python3
"""Conversion benchmark: int8 accuracy drop vs float and conversion wall time (issue 4).

It converts a trained model.pt (default runs/demo/model.pt). If that is missing it trains a short
mbv2-tiny with `netaug-mcu train` (3 epochs on 10k images, into bench/work/) unless --no-train is
given or the trainer is absent, in which case it falls back to a random-weight zoo model (timing
and op counts only, no accuracy).

Writes bench/results/convert.json: float_top1, int8_top1, tflm_top1 (percent), seconds
(conversion wall time: ONNX export + onnx2tf + int8 quantization + checks, excluding evaluation),
total_seconds (with evaluation), drop_pp, targets, and what was used.

  python bench/convert_bench.py                       # runs/demo/model.pt, all 10k test images
  python bench/convert_bench.py --model runs/x/model.pt --eval-samples 1000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent



def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / "runs" / "demo" / "model.pt"), help="trained model.pt")
    ap.add_argument("--calib-samples", type=int, default=300)
    ap.add_argument("--eval-samples", type=int, default=10000, help="test images (default: all 10k)")
    ap.add_argument("--no-train", action="store_true",
                    help="do not train a short mbv2-tiny when --model is missing (use the zoo fallback)")
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--zoo", default="mbv2-tiny", help="fallback zoo model when no checkpoint is available")
    ap.add_argument("--work", default=str(REPO / "bench" / "work" / "convert"), help="scratch folder (gitignored)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "convert.json"))
    ap.add_argument("--zoo-all", action="store_true",
                    help="instead: convert every zoo model at its default resolution (3 ch, 10 classes, random "
                    "weights) and write bench/results/convert_zoo.json (op histograms, bytes, MACs, seconds)")
    args = ap.parse_args(argv)
    if args.zoo_all:
        return zoo_all(Path(args.work), REPO / "bench" / "results" / "convert_zoo.json")

    from netaug_mcu.converter import convert as cv

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model_pt = Path(args.model)
    used: dict = {}
    import importlib.util

    trainer_cli = importlib.util.find_spec("trainer.cli") is not None
    run_dir = work / "train-mbv2-tiny"
    if not model_pt.is_file() and (run_dir / "model.pt").is_file() and args.model == ap.get_default("model"):
        model_pt = run_dir / "model.pt"          # trained by an earlier bench run
        used["training"] = "earlier bench run (bench/work/convert/train-mbv2-tiny)"
    if not model_pt.is_file() and not args.no_train and trainer_cli:
        cmd = [sys.executable, "-m", "netaug_mcu", "train", "--model", "mbv2-tiny", "--epochs",
               str(args.train_epochs), "--train-limit", str(args.train_limit), "--out", str(run_dir),
               "--overwrite"]
        print("training:", " ".join(cmd), file=sys.stderr)
        t0 = time.time()
        r = subprocess.run(cmd, cwd=REPO)
        if r.returncode != 0:
            print(f"training failed (exit {r.returncode})", file=sys.stderr)
            return r.returncode
        used["training"] = {"command": " ".join(cmd[2:]), "seconds": round(time.time() - t0, 1)}
        model_pt = run_dir / "model.pt"

    out_tflite = work / "model.tflite"
    if model_pt.is_file():
        rep = cv.convert_checkpoint(model_pt, out_tflite, calib_samples=args.calib_samples,
                                    eval_samples=args.eval_samples)
        used["model"] = str(model_pt.relative_to(REPO) if model_pt.is_relative_to(REPO) else model_pt)
    else:
        print(f"{model_pt} not found: converting random-weight zoo model {args.zoo} (no accuracy)", file=sys.stderr)
        rep = cv.convert_zoo(args.zoo, 32, 1, 10, out_tflite, check_samples=20, use_cache=False)
        used["model"] = f"zoo:{args.zoo} (random weights; accuracy not applicable)"

    res = {
        "float_top1": rep.get("float_top1"),
        "int8_top1": rep.get("int8_top1"),
        "tflm_top1": rep.get("tflm_top1"),
        "drop_pp": (round(rep["float_top1"] - rep["int8_top1"], 2)
                    if rep.get("float_top1") is not None and rep.get("int8_top1") is not None else None),
        "seconds": rep["conversion_seconds"],
        "total_seconds": rep.get("total_seconds"),
        "targets": {"drop_pp_max": 0.3, "seconds_max": 60},
        "agreement": rep.get("agreement"),
        "max_logit_diff": rep.get("max_logit_diff"),
        "tflm_vs_tflite_ref": rep.get("tflm_vs_tflite_ref"),
        "eval_samples": rep.get("eval_samples"),
        "calib_samples": rep.get("calib_samples"),
        "op_histogram": rep.get("op_histogram"),
        "macs": rep.get("macs"),
        "weight_bytes": rep.get("weight_bytes"),
        "file_bytes": rep.get("file_bytes"),
        "arch": rep.get("source", {}).get("arch"),
        "used": used,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "versions": rep.get("versions"),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: res[k] for k in ("float_top1", "int8_top1", "tflm_top1", "drop_pp", "seconds")}))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def zoo_all(work: Path, out: Path) -> int:
    from netaug_mcu.converter import convert as cv
    from netaug_mcu.trainer import zoo

    work.mkdir(parents=True, exist_ok=True)
    res = {}
    for name in zoo.MODELS:
        r = cv.convert_zoo(name, None, 3, 10, work / f"{name}.tflite", check_samples=3)
        res[name] = {"resolution": r["source"]["arch"]["resolution"], "op_histogram": r["op_histogram"],
                     "conversion_seconds": r["conversion_seconds"], "file_bytes": r["file_bytes"],
                     "weight_bytes": r["weight_bytes"], "macs": r["macs"],
                     "no_pad_transpose": not set(r["op_histogram"]) & {"PAD", "PADV2", "TRANSPOSE"},
                     "tflm_vs_tflite_ref": r["tflm_vs_tflite_ref"], "agreement_random_inputs": r["agreement"]}
        print(name, json.dumps(res[name]["op_histogram"]), file=sys.stderr)
    out.write_text(json.dumps({"models": res, "channels": 3, "classes": 10, "weights": "random",
                               "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "machine": {"cpus": os.cpu_count()}}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
