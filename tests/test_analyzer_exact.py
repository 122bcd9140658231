"""Exactness of the TFLM arena analyzer against the tflite-micro wheel (x86-64, recording allocator).

Test models: 11 Keras/TFLiteConverter full-int8 models (plain CNN, residual adds, average and
max pooling, FC-only, depthwise, concat/reshape/softmax, branches, several resolutions) and zoo
models converted through onnx2tf (mcunet-in1 at two resolutions, mbv2-tiny), all cached on
disk by hash so TensorFlow runs once per machine.
"""
from __future__ import annotations

import pytest

from netaug_mcu.converter import analyzer
from netaug_mcu.converter.analyzer_measure import allocations, min_arena
from keras_models import BUILDERS, model_path

ZOO = [("mcunet-in1", 64), ("mcunet-in1", 96), ("mbv2-tiny", 32)]


@pytest.fixture(scope="session")
def keras_models():
    return {name: model_path(name) for name in BUILDERS}


@pytest.fixture(scope="session")
def zoo_models(tmp_path_factory):
    from netaug_mcu.converter.convert import convert_zoo
    d = tmp_path_factory.mktemp("zoo")
    out = {}
    for name, res in ZOO:
        p = d / f"{name}-{res}.tflite"
        convert_zoo(name, res, 3, 10, p, quiet=True)
        out[f"{name}@{res}"] = p
    return out


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_host_arena_equals_wheel_keras(keras_models, name):
    data = keras_models[name].read_bytes()
    a = analyzer.analyze(data, "host")
    m = allocations(data)
    assert (a.arena_bytes, a.head_bytes, a.tail_bytes) == (m["total"], m["head"], m["tail"])


@pytest.mark.timeout(900)
def test_host_arena_equals_wheel_zoo(zoo_models):
    rows = []
    for key, p in zoo_models.items():
        data = p.read_bytes()
        a = analyzer.analyze(data, "host")
        m = allocations(data)
        rows.append((key, a.arena_bytes, m["total"], a.head_bytes, m["head"]))
    assert all(r[1] == r[2] and r[3] == r[4] for r in rows), rows
    # two resolutions of the same architecture: same tail, larger head
    assert rows[1][3] > rows[0][3]


@pytest.mark.parametrize("name", ["fc_only", "fc_wide", "plain_cnn", "residual", "branchy"])
def test_min_arena_within_16_bytes(keras_models, name):
    data = keras_models[name].read_bytes()
    a = analyzer.analyze(data, "host")
    measured_min = min_arena(data, hi=a.min_arena_bytes + 4096, lo=max(a.arena_bytes - 4096, 16), step=16)
    assert measured_min <= a.min_arena_bytes
    assert a.min_arena_bytes - measured_min <= 16, (a.min_arena_bytes, measured_min)


def test_greedy_planner_tie_break_higher_id_first():
    # two equal-size buffers alive at different times + one overlapping both
    bufs = [(32, 0, 1), (32, 2, 3), (48, 1, 2)]
    offsets, high = analyzer.greedy_plan(bufs)
    assert offsets[2] == 0            # largest first
    assert offsets[1] == 48 and offsets[0] == 48
    assert high == 80
    # equal sizes, all overlapping: higher id is placed first (lower offset)
    offsets, high = analyzer.greedy_plan([(16, 0, 5), (16, 0, 5), (16, 0, 5)])
    assert offsets == [32, 16, 0] and high == 48


def test_greedy_first_fit_reuses_gap():
    bufs = [(64, 0, 1), (16, 2, 3), (64, 1, 2), (32, 3, 3)]
    offsets, high = analyzer.greedy_plan(bufs)
    # order: id2 (64, higher id first) at 0; id0 overlaps it -> 64; id3 (32@[3]) overlaps nothing -> 0;
    # id1 (16@[2,3]) overlaps id2 (0..64) and id3 (0..32) -> 64, reusing id0's range (dead by then)
    assert offsets == [64, 64, 0, 0] and high == 128


def test_cortex_m7_tail_smaller_and_cmsis_scratch(keras_models):
    wide = analyzer.analyze(keras_models["wide_first_layer"], "cortex-m7")
    host = analyzer.analyze(keras_models["wide_first_layer"], "host")
    assert wide.tail_bytes < host.tail_bytes
    # 5x5x16 conv: im2col 2 columns int16 = 4*ceil4(400); 3x3x32 conv: 4*288
    assert [s["bytes"] for s in wide.scratch] == [1600, 1152]
    assert host.scratch == []
    dw = analyzer.analyze(keras_models["depthwise"], "cortex-m7")
    # DW 3x3 pad<=1: 0; DW 5x5 (24 ch): 24*25*2; the 3x3 depth-multiplier-2 DW: generic (0); conv 3x3x3: 4*28
    by_op = [(s["op_name"], s["bytes"]) for s in dw.scratch]
    assert ("DEPTHWISE_CONV_2D", 24 * 25 * 2) in by_op
    assert ("CONV_2D", 4 * 28) in by_op
    ap = analyzer.analyze(keras_models["avgpool"], "cortex-m7")
    assert [s["bytes"] for s in ap.scratch if s["op_name"] == "AVERAGE_POOL_2D"] == [4 * 12, 4 * 24]


def test_cortex_m7_struct_sizes_are_32bit():
    f = analyzer.target_facts("cortex-m7")["structs"]
    assert f["TfLiteEvalTensor"][0] == 12 and f["NodeAndRegistration"][0] == 32
    assert f["TfLiteTensor"][0] == 32 and f["AllocationInfo"][0] == 24 and f["ScratchBufferRequest"][0] == 12
    h = analyzer.target_facts("host")["structs"]
    assert h["TfLiteEvalTensor"][0] == 24 and h["NodeAndRegistration"][0] == 64 and h["TfLiteTensor"][0] == 64


def test_analyze_speed_1mb_model(keras_models, tmp_path):
    """analyze must take < 1 s for a ~1 MB model (padding the flatbuffer with metadata bytes)."""
    import time

    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as sch
    import flatbuffers
    buf = keras_models["mobilenet_like_64"].read_bytes()
    m = sch.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    pad = sch.BufferT()
    pad.data = bytes(1_000_000)
    m.buffers.append(pad)
    md = sch.MetadataT()
    md.name = "padding"
    md.buffer = len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [md]
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    big = bytes(b.Output())
    assert len(big) > 1_000_000
    t = time.perf_counter()
    a = analyzer.analyze(big, "cortex-m7")
    dt = time.perf_counter() - t
    assert dt < 1.0, dt
    assert a.head_bytes == analyzer.analyze(buf, "cortex-m7").head_bytes
