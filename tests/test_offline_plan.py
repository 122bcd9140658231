"""Offline arena plans (OfflineMemoryAllocation): never larger than TFLM's greedy plan, the analyzer exact on
planned models (host wheel), outputs unchanged, and first fit over all orders reaching the optimum."""
from __future__ import annotations

import numpy as np
import pytest

from netaug_mcu.common.tflite_model import load
from netaug_mcu.converter import analyzer, offline_plan
from netaug_mcu.converter.analyzer.planner import greedy_plan
from netaug_mcu.converter.analyzer_measure import allocations
from keras_models import model_path

pytest.importorskip("tflite_micro")


@pytest.mark.parametrize("name", ["residual", "branchy", "mobilenet_like_64", "plain_cnn", "split_branches"])
def test_plan_never_worse_and_analyzer_exact(name):
    data = model_path(name).read_bytes()
    planned, rep = offline_plan.plan_bytes(data)
    assert offline_plan.METADATA_NAME in load(planned).metadata
    for t, r in rep["targets"].items():
        assert r["planned_head"] <= r["greedy_head"] and r["arena_planned"] <= r["arena_greedy"], (name, t, r)
        assert r["planned_head"] >= rep["live_bound"] or t == "host"
    a = analyzer.analyze(planned, "host")
    m = allocations(planned)
    assert (a.arena_bytes, a.head_bytes, a.tail_bytes) == (m["total"], m["head"], m["tail"])


def test_plan_saves_on_residual_and_keeps_outputs():
    from netaug_mcu.converter.patching.verify import bit_exact
    data = model_path("residual").read_bytes()
    planned, rep = offline_plan.plan_bytes(data)
    m7 = rep["targets"]["cortex-m7"]
    assert m7["planned_head"] < m7["greedy_head"]          # greedy fragments this graph; the plan does not
    assert m7["planned_head"] == rep["live_bound"]         # ... and reaches the live-bytes lower bound
    v = bit_exact(data, planned, 100)
    assert v["mismatches"] == 0 and v["distinct_outputs"] > 50
    assert v["arena_measured_after"] == rep["targets"]["host"]["arena_planned"]


def test_exhaustive_first_fit_beats_greedy_on_a_known_case():
    # sizes/lifetimes where size-descending greedy first fit leaves a hole; the best order does not
    bufs = [(32, 0, 1), (48, 1, 2), (32, 2, 3), (16, 0, 3), (48, 3, 4)]
    _, greedy = greedy_plan(bufs)
    order, best = offline_plan._best_order(bufs)
    offsets, high = offline_plan.first_fit(bufs, order)
    assert high == best <= greedy
    assert best == offline_plan.live_bound(bufs)
    for i, (s, f, l) in enumerate(bufs):   # no two time-overlapping buffers overlap in memory
        for j, (s2, f2, l2) in enumerate(bufs):
            if i < j and f <= l2 and f2 <= l:
                assert offsets[i] + s <= offsets[j] or offsets[j] + s2 <= offsets[i]


def test_plan_replaces_an_existing_plan():
    data = model_path("residual").read_bytes()
    once, _ = offline_plan.plan_bytes(data)
    twice, _ = offline_plan.plan_bytes(once)
    raw = load(twice).metadata[offline_plan.METADATA_NAME]
    arr = np.frombuffer(raw, dtype="<i4")
    assert list(load(twice).metadata).count(offline_plan.METADATA_NAME) == 1
    assert arr[2] == len(load(twice).tensors) and len(arr) == 3 + arr[2]


def test_cli_offline_plan(tmp_path):
    import json
    import subprocess
    import sys
    out = tmp_path / "p.tflite"
    r = subprocess.run([sys.executable, "-m", "netaug_mcu", "optimize", str(model_path("residual")), "--offline-plan",
                        "--out", str(out), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)["offline_plan"]
    assert rep["verified"]["mismatches"] == 0
    assert analyzer.analyze(out.read_bytes(), "cortex-m7").arena_bytes == rep["targets"]["cortex-m7"]["arena_planned"]
