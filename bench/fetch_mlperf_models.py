#!/usr/bin/env python3
"""Copy the four MLPerf Tiny reference int8 models into the user cache (never into the repository).

    python bench/fetch_mlperf_models.py [--mirror GITDIR] [--dest DIR]

Source: a local git copy of mlcommons/tiny (default: $MLPERF_TINY_GIT, else /work/.mirror/mlcommons+tiny/repo,
else $MLPERF_TINY_DIR as a checkout). Destination: <cache>/mlperf-tiny/<benchmark>.tflite plus a
manifest.json (path in the upstream tree, commit, sha256). A file stored as a Git LFS pointer (or missing)
is skipped with that reason; the exit status is 1 when any model is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netaug_mcu.common.fsio import atomic_write  # noqa: E402
from netaug_mcu.common.paths import cache_root  # noqa: E402

# benchmark -> path in mlcommons/tiny. ic01: the reference submission's ResNet-8 (pretrainedResnet_quant,
# the model the L4R5ZI reference results were measured with); kws01: the DS-CNN reference (int8 although its
# name has no "int8"); vww01 / ad01: the *_int8 files.
MODELS = {
    "ic01": "benchmark/training/image_classification/trained_models/pretrainedResnet_quant.tflite",
    "kws01": "benchmark/training/keyword_spotting/trained_models/kws_ref_model.tflite",
    "vww01": "benchmark/training/visual_wake_words/trained_models/vww_96_int8.tflite",
    "ad01": "benchmark/training/anomaly_detection/trained_models/ad01_int8.tflite",
}
DEFAULT_MIRROR = "/work/.mirror/mlcommons+tiny/repo"


def default_dest() -> Path:
    return cache_root() / "mlperf-tiny"


def _git(gitdir: str, *args: str) -> bytes:
    return subprocess.run(["git", "-C", gitdir, *args], check=True, capture_output=True).stdout


def read_upstream(source: str, path: str) -> tuple[bytes | None, str]:
    """(bytes, '') or (None, reason)."""
    p = Path(source)
    if (p / path).is_file():                       # a checkout
        data = (p / path).read_bytes()
    else:
        try:
            data = _git(source, "show", f"HEAD:{path}")
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            return None, f"not in {source}: {getattr(exc, 'stderr', b'') or exc}".strip()
    if data.startswith(b"version https://git-lfs"):
        return None, "stored as a Git LFS pointer (content absent)"
    if data[4:8] != b"TFL3":
        return None, "not a .tflite flatbuffer"
    return data, ""


def fetch(source: str, dest: Path) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        commit = _git(source, "rev-parse", "HEAD").decode().strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        commit = None
    manifest = {"source": source, "commit": commit, "models": {}}
    for bench, path in MODELS.items():
        data, why = read_upstream(source, path)
        if data is None:
            manifest["models"][bench] = {"path": path, "skipped": why}
            continue
        out = dest / f"{bench}.tflite"
        atomic_write(out, data)
        manifest["models"][bench] = {"path": path, "file": str(out), "bytes": len(data),
                                     "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write(dest / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", default=os.environ.get("MLPERF_TINY_GIT") or
                    (DEFAULT_MIRROR if Path(DEFAULT_MIRROR).exists() else os.environ.get("MLPERF_TINY_DIR")),
                    help="git dir or checkout of mlcommons/tiny")
    ap.add_argument("--dest", type=Path, default=default_dest(), help="destination directory")
    args = ap.parse_args(argv)
    if not args.mirror or not Path(args.mirror).exists():
        print("error: no mlcommons/tiny copy (pass --mirror, or set MLPERF_TINY_GIT / MLPERF_TINY_DIR)",
              file=sys.stderr)
        return 2
    m = fetch(args.mirror, args.dest)
    missing = 0
    for bench, rec in m["models"].items():
        if "skipped" in rec:
            missing += 1
            print(f"{bench}: skipped ({rec['skipped']})")
        else:
            print(f"{bench}: {rec['file']} ({rec['bytes']} B)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
