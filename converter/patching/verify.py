"""Bit-exactness of a rewritten model against its original in host TFLM (the tflite-micro wheel).

Both models run on the same N random int8 inputs (the extremes -128/127 and the zero point among
them, so SAME-padding borders are exercised with all values) in one child process (the wheel's
native library must not share a process with TensorFlow, and a crash cannot take the caller down);
the child also reports each model's measured arena ("Arena allocation total").
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from ...common.errors import UserError

MIN_INPUTS = 100


def _inputs(model, n: int, seed: int) -> list[np.ndarray]:
    t = model.tensors[model.inputs[0]]
    rng = np.random.default_rng(seed)
    zp = t.zero_point[0] if t.zero_point else 0
    xs = [np.full(t.shape, -128, np.int8), np.full(t.shape, 127, np.int8), np.full(t.shape, zp, np.int8)]
    while len(xs) < n:
        xs.append(rng.integers(-128, 128, size=t.shape, dtype=np.int8))
    return xs[:n]


def _compare(a: bytes, b: bytes, xs: list[np.ndarray]) -> dict:
    from ...common.host_tflm import HostTFLM
    ia, ib = HostTFLM(a, name="the original model"), HostTFLM(b, name="the rewritten model")
    bad, max_diff, distinct = 0, 0, set()
    for x in xs:
        ya, yb = ia(x), ib(x)
        distinct.add(ya.tobytes())
        if ya.shape != yb.shape or not np.array_equal(ya, yb):
            bad += 1
            if ya.shape == yb.shape:
                max_diff = max(max_diff, int(np.abs(ya.astype(np.int32) - yb.astype(np.int32)).max()))
    return {"inputs": len(xs), "mismatches": bad, "max_abs_diff": max_diff, "distinct_outputs": len(distinct),
            "arena_measured_before": ia.arena_used(), "arena_measured_after": ib.arena_used()}


def bit_exact(original: bytes, rewritten: bytes, n_inputs: int = MIN_INPUTS, seed: int = 0,
              stage_tensor: str | None = None, n_full: int | None = None) -> dict:
    """{'inputs', 'mismatches', 'max_abs_diff', 'arena_measured_before/after'} from host TFLM; with
    `stage_tensor`, also 'stage': the same comparison of both models cut at that tensor (the patched
    stage's output, compared directly)."""
    res = _bit_exact(original, rewritten, n_full or n_inputs, seed)
    if stage_tensor:
        from .rewrite import truncate_at
        st = _bit_exact(truncate_at(original, stage_tensor), truncate_at(rewritten, stage_tensor), n_inputs, seed)
        res["stage"] = {"tensor": stage_tensor, "mismatches": st["mismatches"], "max_abs_diff": st["max_abs_diff"],
                        "distinct_outputs": st["distinct_outputs"], "inputs": st["inputs"]}
        res["mismatches"] += st["mismatches"]
        res["max_abs_diff"] = max(res["max_abs_diff"], st["max_abs_diff"])
    return res


def _bit_exact(original: bytes, rewritten: bytes, n_inputs: int, seed: int) -> dict:
    from ...common.tflite_model import load
    model = load(original)
    if len(model.inputs) != 1 or model.tensors[model.inputs[0]].dtype != "int8":
        raise UserError("bit-exactness check needs a model with one int8 input")
    with tempfile.TemporaryDirectory(prefix="netaug-patch-verify-") as d:
        pa, pb = os.path.join(d, "a.tflite"), os.path.join(d, "b.tflite")
        with open(pa, "wb") as f:
            f.write(original)
        with open(pb, "wb") as f:
            f.write(rewritten)
        np.save(os.path.join(d, "x.npy"), np.stack(_inputs(model, n_inputs, seed)))
        env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
        r = subprocess.run([sys.executable, "-m", __name__, d], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"host TFLM verification failed: {tail[:300]}")
        return json.loads(r.stdout.strip().splitlines()[-1])


def _main(d: str) -> None:
    with open(os.path.join(d, "a.tflite"), "rb") as f:
        a = f.read()
    with open(os.path.join(d, "b.tflite"), "rb") as f:
        b = f.read()
    xs = list(np.load(os.path.join(d, "x.npy")))
    print(json.dumps(_compare(a, b, xs)))


if __name__ == "__main__":
    _main(sys.argv[1])
