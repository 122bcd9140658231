"""Operator reordering (optimize): exact DP schedule, in-place operator permutation."""
from __future__ import annotations

import pytest

from netaug_mcu.converter import analyzer, reorder
from keras_models import model_path
from netaug_mcu.common.tflite_model import load


@pytest.fixture(scope="module")
def branchy():
    return model_path("branchy").read_bytes()


def _all_topo_orders(model):
    _, preds, _ = reorder._graph(model)
    n = len(model.operators)

    def rec(done: list[int]):
        if len(done) == n:
            yield list(done)
            return
        for i in range(n):
            if i not in done and preds[i] <= set(done):
                done.append(i)
                yield from rec(done)
                done.pop()
    yield from rec([])


def test_dp_matches_brute_force(branchy):
    m = load(branchy)
    peak, orders = reorder.optimal_orders(m)
    brute = min(reorder.schedule_peak(m, o) for o in _all_topo_orders(m))
    assert peak == brute
    assert all(reorder.is_topological(m, o) and reorder.schedule_peak(m, o) == peak for o in orders)
    assert peak < reorder.schedule_peak(m, list(range(len(m.operators))))


def test_multi_output_and_multi_consumer_graph():
    data = model_path("split_branches").read_bytes()
    m = load(data)
    assert any(len(op.outputs) > 1 for op in m.operators)
    peak, orders = reorder.optimal_orders(m)
    assert peak == min(reorder.schedule_peak(m, o) for o in _all_topo_orders(m))


def test_permute_identity_is_byte_identical_and_order_applies(branchy):
    m = load(branchy)
    n = len(m.operators)
    assert reorder.permute_operators(branchy, list(range(n))) == branchy
    _, orders = reorder.optimal_orders(m)
    new = reorder.permute_operators(branchy, orders[0])
    m2 = load(new)
    assert len(new) == len(branchy)
    assert [op.outputs for op in m2.operators] == [m.operators[i].outputs for i in orders[0]]
    assert analyzer.analyze(new, "host").arena_bytes < analyzer.analyze(branchy, "host").arena_bytes


def test_optimize_never_worse(branchy):
    for name in ("residual", "mobilenet_like_64"):
        data = model_path(name).read_bytes()
        nd, rep = reorder.optimize_bytes(data, "cortex-m7")
        assert rep["arena_after"] <= rep["arena_before"]
        assert rep["host_arena_after"] <= rep["host_arena_before"]
    with pytest.raises(reorder.ReorderError):
        reorder.permute_operators(branchy, [0, 0, 1])
