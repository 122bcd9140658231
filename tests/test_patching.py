"""Patch-based inference rewrite: bit-exact in host TFLM, the analyzer exact on patched models, refusals.

Models: mcunet-in1 at 64x64 converted through onnx2tf (cached by the converter) and Keras-built
int8 models (tests/keras_models.py, cached), so TensorFlow runs once per machine.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netaug_mcu.common.tflite_model import load
from netaug_mcu.converter import analyzer
from netaug_mcu.converter.analyzer_measure import allocations
from netaug_mcu.converter.patching import optimize, stage
from netaug_mcu.converter.patching.rewrite import rewrite
from netaug_mcu.converter.patching.verify import bit_exact
from keras_models import model_path

pytest.importorskip("tflite_micro")


@pytest.fixture(scope="module")
def in1_64(tmp_path_factory):
    from netaug_mcu.converter.convert import convert_zoo
    p = tmp_path_factory.mktemp("zoo") / "mcunet-in1-64.tflite"
    convert_zoo("mcunet-in1", 64, 3, 10, p, quiet=True)
    return p.read_bytes()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "netaug_mcu", *args], capture_output=True, text=True)


@pytest.mark.timeout(900)
def test_zoo_patch_auto_bit_exact_and_smaller(in1_64):
    data, rep = optimize.patch_bytes(in1_64, grid="auto", max_overhead=0.2)
    v = rep["verified"]
    assert v["inputs"] >= 100 and v["mismatches"] == 0
    assert v["stage"]["mismatches"] == 0 and v["stage"]["distinct_outputs"] > 50   # the stage output varies
    assert rep["mac_overhead"] <= 0.2 and rep["macs_after"] >= rep["macs_before"]
    assert rep["arena_after"] < rep["arena_before"]
    # the analyzer is exact on the patched model (host wheel = ground truth)
    a = analyzer.analyze(data, "host")
    m = allocations(data)
    assert (a.arena_bytes, a.head_bytes, a.tail_bytes) == (m["total"], m["head"], m["tail"])
    assert rep["arena"]["host"]["after"] == m["total"] == v["arena_measured_after"]
    ops = load(data).op_histogram
    assert {"STRIDED_SLICE", "CONCATENATION"} <= set(ops)
    # the floor bounds every candidate: what the search found is not below it, and it is above the
    # parts no rewrite removes (the original tail and the input image)
    m0, base = load(in1_64), analyzer.analyze(in1_64, "cortex-m7")
    assert base.tail_bytes + m0.tensors[m0.inputs[0]].bytes <= rep["arena_floor"] <= rep["arena_after"]
    assert rep["reduction_ceiling"] == round(rep["arena_before"] / rep["arena_floor"], 3)


def test_floor_is_a_lower_bound_on_every_grid():
    """No fixed grid of any split within the MAC limit goes below the floor (the search's space, sampled)."""
    from netaug_mcu.converter.patching.search import arena_floor, search
    data = model_path("mobilenet_like_64").read_bytes()
    f = arena_floor(data, 1.0)
    found = [search(data, g, 1.0)[0] for g in ((2, 2), (1, 3), (3, 1), (3, 3))]
    assert found and all(c is None or c.arena >= f["arena_floor"] for c in found)
    assert f["floor_split_op"] is not None and f["reduction_ceiling"] > 1


@pytest.mark.parametrize("name,grid", [("mobilenet_like_64", (3, 3)), ("residual", (2, 3)), ("maxpool", (2, 2))])
def test_keras_models_fixed_grid_bit_exact(name, grid):
    data = model_path(name).read_bytes()
    model = load(data)
    cands, _ = stage.split_candidates(model)
    assert cands
    for split in (cands[0], cands[-1]):
        try:
            nd = rewrite(data, split, grid)
        except stage.PatchError:
            continue   # e.g. a SAME max-pool at the image border: refused, never approximated
        v = bit_exact(data, nd, 100, stage_tensor=model.tensors[model.operators[split].outputs[0]].name)
        assert v["mismatches"] == 0 and v["stage"]["distinct_outputs"] > 50, (name, split, v)
        assert analyzer.analyze(nd, "host").arena_bytes == v["arena_measured_after"]


def test_same_maxpool_across_border_is_refused():
    data = model_path("maxpool").read_bytes()
    model = load(data)
    pools = [op.index for op in model.operators if op.name == "MAX_POOL_2D" and op.options["padding"] == 0]
    cands, _ = stage.split_candidates(model)
    later = [k for k in cands if k >= pools[0]]
    assert later
    with pytest.raises(stage.PatchError, match="pools across the image border"):
        rewrite(data, later[0], (2, 2))


def test_wrong_rewrite_is_caught_and_not_written(tmp_path, monkeypatch, in1_64):
    """A rewrite that ignores SAME padding gives different outputs: verification refuses to write it."""
    monkeypatch.setattr(stage, "_same_pad", lambda *a: 0)
    src = tmp_path / "m.tflite"
    src.write_bytes(in1_64)
    out = tmp_path / "out.tflite"
    with pytest.raises(stage.PatchError, match="differs from the original"):
        optimize.patch_file(str(src), str(out), grid="2x2", max_overhead=5.0)
    assert not out.exists()
    assert src.read_bytes() == in1_64


def test_unpatchable_first_stage_refused_cli(tmp_path):
    src = model_path("fc_only")
    out = tmp_path / "o.tflite"
    r = _cli("optimize", str(src), "--patch", "auto", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "first stage cannot be patched" in r.stderr and "FULLY_CONNECTED" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.parametrize("args,msg", [(["--patch", "0x3"], "bad --patch"), (["--patch", "axb"], "bad --patch"),
                                      (["--patch", "2x2", "--max-overhead", "-1"], "--max-overhead")])
def test_bad_patch_arguments(tmp_path, args, msg):
    out = tmp_path / "o.tflite"
    r = _cli("optimize", str(model_path("mobilenet_like_64")), *args, "--out", str(out))
    assert r.returncode == 2 and msg in r.stderr and not out.exists()


def test_cli_json_keys(tmp_path):
    out = tmp_path / "p.tflite"
    r = _cli("optimize", str(model_path("mobilenet_like_64")), "--patch", "2x2", "--max-overhead", "1", "--out",
             str(out), "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    for k in ("arena_before", "arena_after", "macs_before", "macs_after", "patch_grid", "split_op"):
        assert k in rep
    assert rep["patch_grid"] == "2x2" and out.is_file()
    assert load(out.read_bytes()).macs == rep["macs_after"]


def test_check_over_budget_suggests_patching_with_exact_saving():
    import re
    src = model_path("mobilenet_like_64")
    data = src.read_bytes()
    r = _cli("check", str(src), "--sram", "40K", "--flash", "4M", "--reserve", "0", "--json", "-")
    assert r.returncode == 1, r.stderr
    helps = [h for h in json.loads(r.stdout)["suggestions"] if "optimize --patch auto" in h]
    assert helps, json.loads(r.stdout)["suggestions"]
    m = re.search(r"saves at least ([\d,]+) B here \(grid (\d+)x(\d+) up to op (\d+)", helps[0])
    saving, R, C, split = int(m.group(1).replace(",", "")), int(m.group(2)), int(m.group(3)), int(m.group(4))
    before = analyzer.analyze(data, "cortex-m7").min_arena_bytes
    after = analyzer.analyze(rewrite(data, split, (R, C)), "cortex-m7").min_arena_bytes
    assert saving == before - after > 0


@pytest.mark.timeout(900)
def test_fit_patch_finds_a_larger_resolution(tmp_path, in1_64):
    # 95K: mcunet-in1@64 needs 97,312 B unpatched; patched (1x4 up to op 5) it needs less
    out = tmp_path / "fit.json"
    r = _cli("fit", "--zoo", "mcunet-in1", "--sram", "95K", "--flash", "4M", "--reserve", "0", "--min-res", "48",
             "--max-res", "64", "--patch", "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["best_resolution"] == 48 and res["best_resolution_patched"] == 64
    assert res["best_patched"]["patched"] and res["best_patched"]["mac_overhead"] <= 0.2
    assert "with patching: 64" in r.stdout
