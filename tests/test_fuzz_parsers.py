"""Hypothesis fuzzing of every parser, a small deterministic share in the default suite (the >= 10,000-input
runs are bench/fuzz_parsers.py, results in bench/results/fuzz_parsers.json).

Property (tests/fuzz_targets.py): every input is accepted or rejected with the project's bad-input error
(UserError, exit 2, one line). Any other exception fails the test; Hypothesis shrinks it to a minimal input.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import fuzz_targets as F

# examples per parser in the suite (the whole file runs in well under a minute on one core)
EXAMPLES = {"tflite": 150}


def _fuzz(name: str):
    target = F.targets()[name]

    @settings(max_examples=EXAMPLES.get(name, 100), derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(target.strategy())
    def prop(value):
        F.classify(target, value)   # raises Finding on an uncaught exception

    prop()


@pytest.mark.parametrize("name", sorted(F.targets()))
def test_parser_accepts_or_rejects_cleanly(name):
    _fuzz(name)


def test_flatbuffer_sites_cover_the_model():
    """The flatbuffer-aware mutator finds the offsets, vector lengths and index vectors of a real model."""
    data = F.TINY_MODELS[0].read_bytes()
    sites = F.flatbuffer_sites(data)
    kinds = {s.kind for s in sites}
    assert {"root", "soffset", "vtable", "slot", "uoffset", "vlen", "scalar", "elem"} <= kinds
    assert all(0 <= s.pos < len(data) for s in sites)
    from netaug_mcu.common.tflite_model import load
    m = load(data)
    # one vector length site per tensor shape at least
    assert sum(s.kind == "vlen" for s in sites) >= len(m.tensors)


def test_classify_flags_uncaught_exceptions():
    """The oracle itself: a clean UserError is a rejection, anything else (or a multi-line message) a finding."""
    from netaug_mcu.common.errors import UserError

    def runner(exc):
        def run(_):
            raise exc
        return F.Target("x", "x", "x", lambda: None, run)

    assert F.classify(runner(UserError("bad input")), 0)[0] == "rejected"
    for exc in (ValueError("x"), UserError("two\nlines"), UserError(""), KeyError("k")):
        with pytest.raises(F.Finding):
            F.classify(runner(exc), 0)
