"""Patched and offline-planned models on the Cortex-M7 firmware in QEMU (mps2-an500, CMSIS-NN):
the device's arena_used_bytes() equals the analyzer, and the patched stage's outputs are bit-exact with
the original's in host TFLM. Needs the toolchain, QEMU and a built TFLM library (skips otherwise)."""
from __future__ import annotations

import numpy as np
import pytest

from netaug_mcu.common.qemu import Qemu
from netaug_mcu.common.tflite_model import load
from netaug_mcu.converter import analyzer
from netaug_mcu.converter.offline_plan import plan_bytes
from netaug_mcu.converter.patching.rewrite import rewrite, truncate_at
from netaug_mcu.converter.patching.stage import split_candidates
from test_firmware_qemu import Wire, _bload, _bracket, _host_tflm, _info, _model, _need_qemu, build, toolchain  # noqa: F401

pytestmark = pytest.mark.firmware


def _patched(tmp_path, name: str, grid=(2, 2)):
    src = _model(name)
    data = src.read_bytes()
    m = load(data)
    split = split_candidates(m)[0][-1]
    stage_t = m.tensors[m.operators[split].outputs[0]].name
    out = {"orig_stage": truncate_at(data, stage_t), "patched": rewrite(data, split, grid)}
    out["patched_stage"] = truncate_at(out["patched"], stage_t)
    out["planned"] = plan_bytes(data)[0]
    paths = {}
    for k, b in out.items():
        paths[k] = tmp_path / f"{name}-{k}.tflite"
        paths[k].write_bytes(b)
    return paths


@pytest.mark.parametrize("name", ["residual"])
def test_device_patched_and_planned(build, tmp_path, name):
    _need_qemu()
    paths = _patched(tmp_path, name)
    for key in ("patched", "planned"):
        predicted = analyzer.analyze(str(paths[key]), target="cortex-m7").arena_bytes
        _, res = build(paths[key])
        with Qemu(res.elf) as q:
            w = Wire(q.url)
            w.until_ready(30)
            info = _info(w)
            w.close()
        assert info["arena_used"] == predicted, f"{key}: device {info['arena_used']} B, analyzer {predicted} B"
    _, res = build(paths["patched_stage"])
    shape = load(paths["orig_stage"].read_bytes()).tensors[0].shape
    x_shape = load(paths["orig_stage"].read_bytes()).io_tensor("input").shape
    rng = np.random.default_rng(7)
    distinct = set()
    with Qemu(res.elf) as q:
        w = Wire(q.url)
        w.until_ready(30)
        for i in range(100):
            x = rng.integers(-128, 128, size=x_shape, dtype=np.int8)
            assert _bload(w, x.tobytes()) == ["m-load-done"]
            q_dev = [int(v) for v in _bracket(w.cmd("infer 1 0"), "m-results-q").split(",")]
            ref = _host_tflm(paths["orig_stage"], x).reshape(-1).tolist()
            assert q_dev == ref, f"input {i}: patched stage on the device differs from the original in host TFLM"
            distinct.add(tuple(ref))
        w.close()
    assert len(distinct) > 50 and shape is not None
