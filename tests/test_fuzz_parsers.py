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
EXAMPLES = {"tflite": 150, "tflite_optimize": 60, "model_json": 100, "hil_journal": 120, "hil_results": 100, "train_config": 60,
            "serial_host": 100, "serial_device": 120}


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


def _rec(**kw) -> str:
    r = {"i": 0, "y": 0, "pred": 0, "ref_pred": 0, "exact": True, "q": [0] * F.N_CLASSES}
    r.update(kw)
    return F.json.dumps(r)


_LAT = F.latency_seed()
# Inputs the fuzzing found (or that its input classes cover) which escaped as uncaught exceptions before
# the fixes; each must now be a clean rejection (or acceptance).
REGRESSIONS = [
    ("hil_journal", (b'{"i": Infinity}\n' + _rec().encode() + b"\n", None)),            # OverflowError
    ("hil_journal", (b'{"i": 0}\n{"i": 0}\n' + _rec().encode() + b"\n", None)),        # KeyError 'q'
    ("hil_journal", (b"[" * 100_000 + b"\n" + _rec().encode() + b"\n", None)),           # RecursionError
    ("hil_journal", (_rec(y=12).encode() + b"\n", None)),                                # IndexError in summarize
    ("hil_journal", (_rec(y=-1).encode() + b"\n", None)),                                # silently counted as class 9
    ("hil_journal", (_rec().encode() + b"\n", b"[1]")),                                  # run.json not an object
    ("model_json", b'{"input": {"scale": "abc"}}'),                                      # ValueError in load_model
    ("model_json", b"[" * 100_000),                                                      # RecursionError
    ("model_json", b'{"preprocess": {"resolution": 4096}}'),                             # a 671 GB resize first
    ("model_json", b'{"classes": 5}'),
    ("model_json", b'{"preprocess": {"channels": 1000000000000}}'),                       # MemoryError ([0.0] * ch)
    ("model_json", b'{"preprocess": {"channels": null, "resolution": 32}}'),                # TypeError int(None)
    ("model_json", b'{"preprocess": [1]}'),                                              # AttributeError (evaluate)
    ("model_json", b'{"preprocess": {"resolution": "abc"}}'),                            # ValueError (evaluate)
    ("hil_results", (b"[]", None)),                                                      # AttributeError
    ("hil_results", (None, F.json.dumps(dict(_LAT, min_ms=None)).encode())),             # TypeError in format
    ("hil_results", (None, F.json.dumps(dict(_LAT, median_ms="2")).encode())),           # ValueError in format
    ("hil_results", (b'{"boards": [1]}', None)),
    ("train_config", (".yaml", b"\xff\xfe epochs: 3")),                                   # UnicodeDecodeError
    ("train_config", (".yaml", b"epochs: 1e400\n")),                                     # OverflowError
    ("train_config", (".json", b'{"aug_width": [1, {}]}')),                              # TypeError
    ("train_config", (".yaml", b"teacher: " + b"x" * 5000 + b"\n")),                     # OSError ENAMETOOLONG
    ("train_config", (".yaml", F.YAML_SPECIALS[1].encode())),                            # alias bomb
    ("serial_device", [(b"db load 1024%db \xff\xff%", 0.0)]),                            # UnicodeEncodeError
    ("serial_device", [(b"infer 99999999999 0%infer +1%", 0.0)]),                        # int() took any size
    ("serial_host", {"binary": None, "plan": {3: ("replace", 0, b"m-info-[bin=x,input=1024]\r\nm-ready\r\n", b"")}}),
    ("serial_host", {"binary": True, "plan": {3: ("replace", 0, b"m-info-[bin=1,max_frame=999999999999]\r\n"
                                                                 b"m-ready\r\n", b"")}}),
    ("serial_host", {"binary": True, "plan": {6: ("line", 0, b"m-lap-us-" + b"9" * 5000 + b"\r\n", b"")}}),
    ("serial_host", {"binary": True, "plan": {6: ("replace", 0, b"m-lap-us-1\r\nm-lap-us-2\r\nm-infer-done\r\n"
                                                                 b"m-results-q-[1,2\r\nm-ready\r\n", b"")}}),  # 10k run
]


def test_optimize_rejects_a_cyclic_graph():
    """Found by the 10k tflite_optimize run: an operator consuming a later operator's output (KeyError before)."""
    from netaug_mcu.common.tflite_model import load
    from netaug_mcu.converter.reorder import ReorderError, optimal_orders
    m = load(F.TINY_MODELS[0].read_bytes())
    m.operators[0].inputs = list(m.operators[0].inputs) + [m.operators[-1].outputs[0]]
    with pytest.raises(ReorderError, match="cycle"):
        optimal_orders(m)


@pytest.mark.parametrize("name,value", REGRESSIONS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(REGRESSIONS)])
def test_found_inputs_are_handled(name, value):
    F.classify(F.targets()[name], value)


def test_names_with_control_characters_stay_one_line():
    """A corrupt tensor name with a newline must not split the error messages that quote it."""
    from netaug_mcu.common.tflite_model import load
    data = F.TINY_MODELS[0].read_bytes()
    name = load(data).tensors[0].name.encode()
    bad = data.replace(name, b"\n" + name[1:], 1)
    assert all("\n" not in t.name and t.name.isprintable() for t in load(bad).tensors)


def test_intact_serial_session_is_accepted():
    """The host decoder target is not vacuous: an uncorrupted session completes (bit-exact with host TFLM)."""
    for binary in (True, False):
        assert F.classify(F.targets()["serial_host"], {"binary": binary, "plan": {}}) == ("accepted", "")
