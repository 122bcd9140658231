"""Hypothesis fuzzing of every parser netaug-mcu has: the shared part of bench/fuzz_parsers.py
(>= 10,000 inputs per parser) and tests/test_fuzz_parsers.py (a small share in the default suite).

Each parser is a `Target`: a Hypothesis strategy producing adversarial inputs (mutated real seeds:
bit flips, truncation, splices, huge counts and offsets; plus structured generation) and a `run`
function feeding one input to the real code. The property is the CLI's promise:

  * the parser accepts the input, or
  * it raises the project's bad-input exception (a `UserError` with exit code 2 and a one-line,
    non-empty message: what `netaug-mcu` prints as one line and exit 2),

and nothing else: any other exception type, a multi-line message or another exit code is a bug.
`classify(target, value)` returns "accepted" / "rejected" or raises `Finding`.
"""
from __future__ import annotations

import json
import math
import struct
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from hypothesis import strategies as st

from netaug_mcu.common.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
HIL_DATA = ROOT / "hil_tests" / "data"
TINY_MODELS = (HIL_DATA / "tiny_fmnist32.tflite", HIL_DATA / "tiny_fmnist16.tflite")


class Finding(Exception):
    """An input the parser did not handle cleanly (the fuzzing's result: a bug)."""


@dataclass
class Target:
    name: str
    what: str                           # the code under test, for the results file
    clean: str                          # what a clean rejection is
    strategy: Callable[[], st.SearchStrategy]
    run: Callable[[Any], Any]           # returns normally = accepted; raises = rejected or a finding


def classify(target: Target, value) -> tuple[str, str]:
    """('accepted', '') or ('rejected', message), else raise Finding describing the uncaught failure."""
    try:
        target.run(value)
    except UserError as exc:
        msg = str(exc)
        if exc.exit_code != 2 or not msg or "\n" in msg:
            raise Finding(f"{type(exc).__name__} (exit {exc.exit_code}) with a bad message: {msg!r:.300}") from exc
        return "rejected", f"{type(exc).__name__}: {msg}"
    except Finding:
        raise
    except Exception as exc:  # noqa: BLE001 - the point: anything else is a bug
        raise Finding(f"uncaught {type(exc).__name__}: {str(exc)[:300]}") from exc
    return "accepted", ""


# ---- generic byte-level mutation of a seed ---------------------------------------------------------
BOUNDARY_U32 = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                0xFFFFFFFE)


@st.composite
def byte_mutation(draw, data: bytes, others: tuple[bytes, ...] = ()) -> bytes:
    """One to four byte-level edits of `data`: flips, overwrites, truncation, splices, cross-seed splices."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        n = len(b)
        kind = draw(st.sampled_from(["flip", "byte", "word", "truncate", "insert", "delete", "dup", "zero",
                                     "cross", "ff"]))
        if n == 0:
            kind = "insert"
        i = draw(st.integers(0, max(n - 1, 0)))
        if kind == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            b[i] = draw(st.integers(0, 255))
        elif kind == "word":
            v = draw(st.sampled_from(BOUNDARY_U32) | st.integers(0, 2**32 - 1))
            b[i:i + 4] = v.to_bytes(4, "little")
        elif kind == "truncate":
            b = b[:i]
        elif kind == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del b[i:i + draw(st.integers(1, 64))]
        elif kind == "dup":
            j = draw(st.integers(i, n))
            b[i:i] = b[i:j][:4096]
        elif kind == "zero":
            k = draw(st.integers(1, 256))
            b[i:i + k] = bytes(len(b[i:i + k]))
        elif kind == "ff":
            k = draw(st.integers(1, 16))
            b[i:i + k] = b"\xff" * len(b[i:i + k])
        elif kind == "cross" and others:
            o = draw(st.sampled_from(others))
            j = draw(st.integers(0, len(o)))
            b = b[:i] + o[j:]
    return bytes(b)


# ---- .tflite: flatbuffer-aware sites ----------------------------------------------------------------
# vtable slot (4 + 2 * field id) -> field kind, for the parts of the TFLite schema the reader touches.
#   ("scalar", size) | ("string",) | ("table", type) | ("tables", type) | ("scalars", element size)
_FB_SCHEMA: dict[str, dict[int, tuple]] = {
    "Model": {4: ("scalar", 4), 6: ("tables", "OperatorCode"), 8: ("tables", "SubGraph"), 10: ("string",),
              12: ("tables", "Buffer"), 14: ("scalars", 4), 16: ("tables", "Metadata"), 18: ("tables", None)},
    "OperatorCode": {4: ("scalar", 1), 6: ("string",), 8: ("scalar", 4), 10: ("scalar", 4)},
    "SubGraph": {4: ("tables", "Tensor"), 6: ("scalars", 4), 8: ("scalars", 4), 10: ("tables", "Operator"),
                 12: ("string",)},
    "Tensor": {4: ("scalars", 4), 6: ("scalar", 1), 8: ("scalar", 4), 10: ("string",),
               12: ("table", "Quantization"), 14: ("scalar", 1), 16: ("table", None), 18: ("scalars", 4)},
    "Quantization": {4: ("scalars", 4), 6: ("scalars", 4), 8: ("scalars", 4), 10: ("scalars", 8),
                     12: ("scalar", 1), 14: ("table", None), 16: ("scalar", 4)},
    "Operator": {4: ("scalar", 4), 6: ("scalars", 4), 8: ("scalars", 4), 10: ("scalar", 1),
                 12: ("table", "Options"), 14: ("scalars", 1), 16: ("scalar", 1), 18: ("scalars", 1),
                 20: ("scalars", 4)},
    "Buffer": {4: ("scalars", 1), 6: ("scalar", 8), 8: ("scalar", 8)},
    "Metadata": {4: ("string",), 6: ("scalar", 4)},
    "Options": {},   # builtin options: every present field is a scalar (its low byte is mutated)
}


@dataclass(frozen=True)
class Site:
    pos: int
    kind: str     # root | soffset | vtable | slot | uoffset | vlen | scalar | elem
    size: int
    value: int    # the seed's value there


def flatbuffer_sites(buf: bytes) -> tuple[Site, ...]:
    """Every offset, vtable entry, vector length and index/shape element of a valid .tflite."""
    sites: list[Site] = []

    def u(fmt: str, pos: int) -> int:
        return struct.unpack_from(fmt, buf, pos)[0]

    def add(pos, kind, size, fmt):
        sites.append(Site(pos, kind, size, u(fmt, pos)))

    def table(pos: int, typ: str | None, depth: int) -> None:
        if typ is None or depth > 6:
            return
        add(pos, "soffset", 4, "<i")
        vt = pos - u("<i", pos)
        add(vt, "vtable", 2, "<H")
        fields = _FB_SCHEMA[typ]
        for slot in range(4, u("<H", vt), 2):
            off = u("<H", vt + slot)
            if not off:
                continue
            add(vt + slot, "slot", 2, "<H")
            fpos = pos + off
            spec = fields.get(slot, ("scalar", 1))
            if spec[0] == "scalar":
                fmt = {1: "<B", 4: "<I", 8: "<Q"}[spec[1]]
                add(fpos, "scalar", spec[1], fmt)
                continue
            add(fpos, "uoffset", 4, "<I")
            tgt = fpos + u("<I", fpos)
            if spec[0] == "table":
                table(tgt, spec[1], depth + 1)
                continue
            add(tgt, "vlen", 4, "<I")
            n = u("<I", tgt)
            if spec[0] == "tables":
                for j in range(n):
                    ep = tgt + 4 + 4 * j
                    add(ep, "uoffset", 4, "<I")
                    table(ep + u("<I", ep), spec[1], depth + 1)
            elif spec[0] == "scalars" and spec[1] >= 4:
                for j in range(min(n, 8)):
                    add(tgt + 4 + spec[1] * j, "elem", 4, "<i")

    add(0, "root", 4, "<I")
    table(u("<I", 0), "Model", 0)
    return tuple(sites)


@st.composite
def site_value(draw, site: Site, n: int) -> int:
    """A value for one flatbuffer site: boundaries, the file size, near the seed's value, or random."""
    if site.size == 1:
        return draw(st.integers(0, 255))
    if site.kind == "elem":   # shape dims, tensor indices
        return draw(st.sampled_from([-2, -1, 0, 1, 2, 3, 255, 2**15, 2**31 - 1, -2**31])
                    | st.integers(site.value - 4, site.value + 4) | st.integers(-2**31, 2**31 - 1)) & 0xFFFFFFFF
    top = (1 << (8 * site.size)) - 1
    near = st.integers(site.value - 64, site.value + 64).map(lambda v: v & top)
    sized = st.sampled_from([n, n - site.pos, n - site.pos - 4, n + 1, 2 * n, site.value * 2, site.value // 2])
    return draw(near | sized.map(lambda v: v & top) | st.sampled_from([v & top for v in BOUNDARY_U32])
                | st.integers(0, top))


@st.composite
def tflite_inputs(draw, seeds: tuple[tuple[bytes, tuple[Site, ...]], ...]) -> bytes:
    data, sites = draw(st.sampled_from(seeds))
    mode = draw(st.sampled_from(["fb", "fb", "fb", "bytes", "fb+bytes", "garbage"]))
    if mode == "garbage":   # random bytes, sometimes with the TFL3 identifier
        raw = draw(st.binary(max_size=256))
        return raw[:4] + b"TFL3" + raw[8:] if draw(st.booleans()) and len(raw) >= 8 else raw
    b = bytearray(data)
    if mode.startswith("fb"):
        for _ in range(draw(st.integers(1, 3))):
            s = draw(st.sampled_from(sites))
            b[s.pos:s.pos + s.size] = draw(site_value(s, len(b))).to_bytes(s.size, "little")
    if mode.endswith("bytes"):
        b = bytearray(draw(byte_mutation(bytes(b), tuple(d for d, _ in seeds))))
    return bytes(b)


@lru_cache(maxsize=None)
def tflite_seeds(extra: tuple[str, ...] = ()) -> tuple[tuple[bytes, tuple[Site, ...]], ...]:
    """The bundled HIL tiny models, plus any extra .tflite paths (the bench adds the analyzer's test models)."""
    paths = list(TINY_MODELS) + [Path(p) for p in extra]
    out = []
    for p in paths:
        data = p.read_bytes()
        out.append((data, flatbuffer_sites(data)))
    return tuple(out)


def run_tflite(data: bytes) -> None:
    """The reader, the TFLM validation and the exact arena analysis (both targets), as `analyze` runs them."""
    from netaug_mcu.common.tflite_model import load, validate_for_tflm
    from netaug_mcu.converter import analyzer

    model = load(data)
    validate_for_tflm(model)
    for target in ("cortex-m7", "host"):
        a = analyzer.analyze(model, target)
        if a.arena_bytes != a.head_bytes + a.tail_bytes:
            raise Finding(f"inconsistent analysis: arena {a.arena_bytes} != head + tail")


def run_tflite_all(data: bytes) -> None:
    """Every reader of a .tflite: the analyzer chain and the HIL host's model loader, each independently."""
    from netaug_mcu.hil.model import load_model

    path = _scratch("tflite") / "model.tflite"
    path.write_bytes(data)
    _each(lambda: run_tflite(data), lambda: load_model(path))


def run_tflite_optimize(data: bytes) -> None:
    from netaug_mcu.converter.reorder import optimize_bytes
    optimize_bytes(data)


def _each(*steps: Callable[[], Any]) -> None:
    """Run every step; a clean rejection of one does not skip the others; the first rejection is re-raised."""
    first: UserError | None = None
    for step in steps:
        try:
            step()
        except UserError as exc:
            first = first or exc
    if first is not None:
        raise first


@lru_cache(maxsize=None)
def _scratch(target: str) -> Path:
    """One scratch folder per target and process for the files a parser reads (removed at exit)."""
    import atexit
    import shutil
    d = Path(tempfile.mkdtemp(prefix=f"netaug-fuzz-{target}-"))
    atexit.register(shutil.rmtree, d, True)
    return d


# ---- JSON documents: structured mutation of real seeds -----------------------------------------------
HUGE_INTS = st.sampled_from([2**31, 2**32, 2**63, -2**63 - 1, 10**30, -10**30, -1, 0])
JSON_SCALAR = (st.none() | st.booleans() | st.integers(-300, 300) | HUGE_INTS
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
               | st.sampled_from(["x" * 300, "a/" * 3000, "\x00", "~nobody/x", "-1", "1e400", "nan", "NaN"]))
JSON_VALUE = st.recursive(JSON_SCALAR, lambda ch: st.lists(ch, max_size=4)
                          | st.dictionaries(st.text(max_size=8), ch, max_size=4), max_leaves=10)


def _slots(doc, out: list) -> list:
    if isinstance(doc, dict):
        for k in list(doc):
            out.append((doc, k))
            _slots(doc[k], out)
    elif isinstance(doc, list):
        for i in range(len(doc)):
            out.append((doc, i))
            _slots(doc[i], out)
    return out


@st.composite
def mutated_doc(draw, seed, keys: tuple[str, ...] = ()):
    """A deep copy of `seed` with one to three edits: a value replaced (wrong type, NaN, huge int, nested),
    retyped, deleted, a key added, or the whole document wrapped."""
    doc = json.loads(json.dumps(seed))
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        op = draw(st.sampled_from(["replace", "replace", "retype", "delete", "add", "wrap"]))
        if op == "wrap" or not slots:
            doc = draw(st.sampled_from([[doc], {"doc": doc}, [], "", 0, None]))
            continue
        c, k = slots[draw(st.integers(0, len(slots) - 1))]
        if op == "replace":
            c[k] = draw(JSON_VALUE)
        elif op == "retype":
            v = c[k]
            c[k] = draw(st.sampled_from([str(v), [v], {"v": v}, None, True, -1,
                                         v * 10**12 if isinstance(v, (int, float)) and not isinstance(v, bool) else v,
                                         -v if isinstance(v, (int, float)) and not isinstance(v, bool) else v]))
        elif op == "delete":
            del c[k]
        elif isinstance(c, dict):
            c[draw(st.sampled_from(keys) | st.text(max_size=8)) if keys else draw(st.text(max_size=8))] = draw(JSON_VALUE)
        else:
            c.append(draw(JSON_VALUE))
    return doc


def _dumps(doc) -> bytes:
    return json.dumps(doc, indent=1, allow_nan=True).encode()


@st.composite
def deep_or_huge(draw) -> bytes:
    """Nesting deeper than the JSON parser's recursion limit, or integers with thousands of digits."""
    n = draw(st.sampled_from([50, 1000, 100_000]))
    kind = draw(st.sampled_from(["list", "dict", "int"]))
    if kind == "int":
        return b'{"i": ' + b"9" * n + b"}"
    o, c = ("[", "]") if kind == "list" else ('{"a":', "}")
    text = o * n + "1" + c * n
    return text[: draw(st.integers(0, len(text)))].encode() if draw(st.booleans()) else text.encode()


@st.composite
def json_file(draw, seeds: tuple, keys: tuple[str, ...] = ()) -> bytes:
    seed = draw(st.sampled_from(seeds))
    mode = draw(st.sampled_from(["doc", "doc", "doc", "bytes", "deep", "value", "binary"]))
    if mode == "doc":
        return _dumps(draw(mutated_doc(seed, keys)))
    if mode == "bytes":
        return draw(byte_mutation(_dumps(seed)))
    if mode == "deep":
        return draw(deep_or_huge())
    if mode == "value":
        return _dumps(draw(JSON_VALUE))
    return draw(st.binary(max_size=200))


# ---- model.json (converter -> hil) -------------------------------------------------------------------
def _images():
    import numpy as np
    return (np.arange(2 * 28 * 28, dtype=np.int64) % 251).astype(np.uint8).reshape(2, 28, 28)


def run_model_json(data: bytes) -> None:
    """The HIL host reading a model.json next to its model, and preparing inputs with its preprocessing."""
    from netaug_mcu.hil.model import load_model
    from netaug_mcu.hil.runner import quantize_inputs, resolve_preprocess

    path = _scratch("model_json") / "model.json"
    path.write_bytes(data)
    m = load_model(TINY_MODELS[0], path)
    xq = quantize_inputs(m, _images(), resolve_preprocess(m))
    if tuple(xq.shape[1:]) != tuple(m.input.shape[1:]):
        raise Finding(f"inputs of shape {xq.shape} for a model input {m.input.shape}")
    [m.accuracy(k) for k in ("float_top1", "int8_top1", "tflm_top1")]


def run_model_json_all(data: bytes) -> None:
    """Both readers of a model.json's preprocessing: the HIL host and `evaluate` (up to the evaluation)."""
    _each(lambda: run_model_json(data), lambda: run_model_json_evaluate(data))


def run_model_json_evaluate(data: bytes) -> None:
    """converter.convert.evaluate_model's reading of --preprocess FILE, then its shape check."""
    from netaug_mcu.converter.convert import check_preprocess, preprocess_from_json

    path = _scratch("model_json") / "model.json"
    path.write_bytes(data)
    check_preprocess(preprocess_from_json(path), [1, 32, 32, 1])


def model_json_seeds() -> tuple:
    return tuple(json.loads(p.with_suffix(".json").read_text()) for p in TINY_MODELS[:1])


# ---- HIL journal + run.json (hil accuracy --resume) --------------------------------------------------
N_SAMPLES, N_CLASSES = 8, 10


def journal_records() -> list[dict]:
    out = []
    for i in range(N_SAMPLES):
        q = [((i * 7 + j * 13) % 256) - 128 for j in range(N_CLASSES)]
        pred = max(range(N_CLASSES), key=lambda j: q[j])
        out.append({"i": i, "y": i % N_CLASSES, "pred": pred, "ref_pred": pred, "exact": True, "q": q,
                    "board": "socket://127.0.0.1:4000"})
    return out


def _run_meta() -> dict:
    return {"format": "netaug-mcu/hil-run/1", "model": str(TINY_MODELS[0]), "model_sha256": "0" * 64,
            "dataset": "fashion-mnist", "preprocess": {"resolution": 32, "channels": 1, "mean": [0.286],
                                                       "std": [0.353]}, "input_scale": 0.0111, "input_zero_point": -55}


def _jsonl(recs) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":"), allow_nan=True).encode() + b"\n" for r in recs)


@st.composite
def journal_inputs(draw) -> tuple[bytes, bytes | None]:
    recs = journal_records()[: draw(st.integers(0, N_SAMPLES))]
    mode = draw(st.sampled_from(["record", "record", "lines", "bytes", "deep"]))
    if mode == "record" and recs:
        k = draw(st.integers(0, len(recs) - 1))
        recs[k] = draw(mutated_doc(recs[k], ("i", "y", "pred", "ref_pred", "exact", "q")))
        data = _jsonl(recs)
    elif mode == "lines":
        lines = _jsonl(recs).split(b"\n")[:-1]
        op = draw(st.sampled_from(["dup", "swap", "torn", "no_newline", "blank", "crlf"]))
        if op == "dup" and lines:
            lines.insert(draw(st.integers(0, len(lines))), lines[draw(st.integers(0, len(lines) - 1))])
        elif op == "swap" and len(lines) > 1:
            lines[0], lines[-1] = lines[-1], lines[0]
        elif op == "blank":
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from([b"", b"  ", b"\t", b"\x00"])))
        data = b"\n".join(lines) + b"\n"
        if op == "torn" and data:
            data = data[: len(data) - draw(st.integers(1, min(len(data), 40)))]
        elif op == "no_newline":
            data = data.rstrip(b"\n")
        elif op == "crlf":
            data = data.replace(b"\n", b"\r\n")
    elif mode == "deep":
        data = _jsonl(recs) + draw(deep_or_huge()) + b"\n" + _jsonl(recs[:1])
    else:
        data = draw(byte_mutation(_jsonl(recs)))
    meta = draw(st.none() | json_file((_run_meta(),), ("model_sha256", "dataset", "preprocess")))
    return data, meta


def run_journal(value: tuple[bytes, bytes | None]) -> None:
    """What `hil accuracy --resume` reads: run.json, the journal (repaired in place), its summary."""
    from netaug_mcu.hil.runner import Journal, read_run_meta, summarize

    data, meta = value
    d = _scratch("hil_journal")
    jpath, mpath = d / "journal.jsonl", d / "run.json"
    jpath.write_bytes(data)
    if meta is None:
        mpath.unlink(missing_ok=True)
    else:
        mpath.write_bytes(meta)
        read_run_meta(mpath)
    recs = Journal.read(jpath, repair=True)
    again = Journal.read(jpath)
    if again != recs:   # the repaired journal must read back as exactly what was kept
        raise Finding(f"repaired journal reads back {len(again)} records, kept {len(recs)}")
    summarize(recs, N_SAMPLES, N_CLASSES)


# ---- accuracy.json / latency.json (hil report) -------------------------------------------------------
def accuracy_seed() -> dict:
    from netaug_mcu.hil.runner import summarize
    recs = {r["i"]: r for r in journal_records()}
    doc = summarize(recs, N_SAMPLES, N_CLASSES)
    doc.update({"model": str(TINY_MODELS[0]), "model_sha256": "0" * 64, "dataset": "fashion-mnist", "limit": 8,
                "requested": 8, "resumed_from": 0, "new_samples": 8, "wall_s": 0.5, "samples_per_s": 16.0,
                "boards": [{"url": "socket://127.0.0.1:4000", "samples": 8, "error": None,
                            "info": {"model": "tiny", "arena": 10000, "arena_used": 6000, "input": 1024,
                                     "output": 10, "clock_hz": 1000000000, "timer": "host", "bin": 1},
                            "resets": 0, "timeouts": 0, "crc_retries": 0, "resyncs": 1, "garbled": 0,
                            "bytes_out": 9000, "bytes_in": 3000, "transfer": "binary"}],
                "classes": [str(c) for c in range(N_CLASSES)]})
    return doc


def latency_seed() -> dict:
    return {"port": "virtual", "model": str(TINY_MODELS[0]), "input": "zeros", "runs": 5, "warmup": 1,
            "board": {"model": "tiny", "arena": 10000, "timer": "host", "clock_hz": 1000000000},
            "device_name": "netaug-mcu", "timer": "host", "timer_label": "virtual board", "clock_hz": 1000000000,
            "source": "m-infer-cycles / clock_hz", "min_ms": 0.1, "median_ms": 0.2, "p90_ms": 0.3, "max_ms": 0.4,
            "mean_ms": 0.25, "lap_median_ms": 0.2, "per_run_ms": [0.1, 0.2, 0.2, 0.3, 0.4],
            "note": "virtual board: host CPU time of host TFLM, not MCU time"}


@st.composite
def hil_results_inputs(draw) -> tuple[bytes | None, bytes | None]:
    acc, lat = _dumps(accuracy_seed()), _dumps(latency_seed())
    which = draw(st.sampled_from(["acc", "lat", "both"]))
    if which in ("acc", "both"):
        acc = draw(json_file((accuracy_seed(),), tuple(accuracy_seed())))
    if which in ("lat", "both"):
        lat = draw(json_file((latency_seed(),), tuple(latency_seed())))
    return (acc if draw(st.integers(0, 5)) else None), (lat if draw(st.integers(0, 5)) else None)


def run_hil_results(value: tuple[bytes | None, bytes | None]) -> None:
    """`netaug-mcu hil report`: accuracy.json and latency.json -> report.json + report.md."""
    from netaug_mcu.hil.report import build_report

    d = _scratch("hil_results")
    for name, data in zip(("accuracy.json", "latency.json"), value):
        if data is None:
            (d / name).unlink(missing_ok=True)
        else:
            (d / name).write_bytes(data)
    build_report(str(d))


# ---- training config (train --config) ----------------------------------------------------------------
CONFIG_SEED = {"model": "mbv2-tiny", "dataset": "fashion-mnist", "epochs": 3, "batch_size": 64, "lr": 0.05,
               "wd": 4e-5, "warmup_epochs": 1, "label_smoothing": 0.1, "netaug": True, "aug_width": [1.0, 1.8, 2.6],
               "aug_expand": [1.0, 2.0], "resolution": 32, "channels": 1, "train_limit": 512, "seed": 3,
               "select": "last", "device": "cpu"}
YAML_SPECIALS = (
    "epochs: &e 3\nbatch_size: *e\n",
    "model: &a [x, x, x, x, x, x, x, x, x]\n"      # an alias bomb: str() of it would never end
    "dataset: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nout: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "data_dir: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nteacher: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
    "model: &x [*x]\n", "lr: .nan\n", "lr: .inf\n", "epochs: 1e400\n", "seed: 2019-01-01\n",
    "!!python/object/apply:os.system ['true']\n", "epochs: !!binary aGVsbG8=\n", "? [a, b]\n: 1\n",
    "--- 1\n--- 2\n", "model: 'unterminated\n", "\t\tepochs: 3\n", "model: \"\\x00\"\n", "%YAML 9.9\n---\nlr: 1\n",
)


@st.composite
def config_inputs(draw) -> tuple[str, bytes]:
    import yaml

    suffix = draw(st.sampled_from([".yaml", ".yml", ".json", ".txt"]))
    mode = draw(st.sampled_from(["doc", "doc", "doc", "bytes", "special", "deep", "binary"]))
    if mode in ("doc", "bytes"):
        doc = draw(mutated_doc(CONFIG_SEED, tuple(CONFIG_SEED) + ("out", "teacher", "init_from", "resume")))
        if suffix == ".json":
            text = _dumps(doc)
        else:
            text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans())).encode()
        if mode == "bytes":
            text = draw(byte_mutation(text))
    elif mode == "special":
        text = draw(st.sampled_from(YAML_SPECIALS)).encode()
    elif mode == "deep":
        text = draw(deep_or_huge())
    else:
        text = draw(st.binary(max_size=200))
    return suffix, text


def run_config(value: tuple[str, bytes]) -> None:
    """`netaug-mcu train --config FILE`: the file's values merged over the defaults and validated."""
    from netaug_mcu.trainer.config import load_config_file, make_config

    suffix, data = value
    path = _scratch("train_config") / f"config{suffix}"
    path.write_bytes(data)
    cfg = make_config(load_config_file(str(path)), None)
    cfg.digest()   # the checkpoint identity of the run (json of every field)


# ---- the serial protocol: host decoder (client) and device parser (virtual board) --------------------
@lru_cache(maxsize=None)
def _engine():
    from netaug_mcu.hil.model import load_model
    from netaug_mcu.hil.virtual_board import BoardEngine
    m = load_model(TINY_MODELS[0])
    return m, BoardEngine(m)


def _input_bytes() -> bytes:
    m, _ = _engine()
    return bytes((i * 37) % 256 for i in range(m.input.nbytes))


class FakeClock:
    """The client's clock: advances only while the fake port is idle, so every timeout ends at once."""

    def __init__(self):
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t


class FakeSerial:
    """A pyserial port whose other end is a BoardEngine; `mutate(k, reply)` corrupts the k-th reply."""

    def __init__(self, engine, mutate, clock: FakeClock):
        self.engine, self.mutate, self.clock = engine, mutate, clock
        self.timeout, self.write_timeout = 0.05, 5.0
        self.k = 0
        self.rx = bytearray()
        self._push(engine.boot())

    def _push(self, out: bytes) -> None:
        if out:
            self.rx += self.mutate(self.k, out)
            self.k += 1

    @property
    def in_waiting(self) -> int:
        return len(self.rx)

    def write(self, data) -> int:
        self._push(self.engine.feed(bytes(data), now=self.clock.t))
        return len(data)

    def flush(self) -> None:
        pass

    def read(self, n: int = 1) -> bytes:
        if not self.rx:
            self.clock.t += 0.05
            self._push(self.engine.poll(now=self.clock.t))
            return b""
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def close(self) -> None:
        pass


REPLY_LINES = (b"m-ready\r\n", b"m-init-done\r\n", b"m-timestamp-mode-performance\r\n", b"m-bload-ready\r\n",
               b"m-load-done\r\n", b"m-infer-done\r\n", b"e-[bload crc mismatch]\r\n", b"m-name-dut-[x]\r\n",
               b"m-name-acme-[modem]\r\n", b"m-info-[bin=1,input=1024,output=10,max_frame=999999999999]\r\n",
               b"m-info-[bin=x,input=abc,output=-1]\r\n", b"m-info-[garbage]\r\n", b"m-results-q-[1,2,x]\r\n",
               b"m-results-q-[" + b"300," * 10 + b"]\r\n", b"m-lap-us-" + b"9" * 5000 + b"\r\n",
               b"m-infer-cycles-" + b"9" * 30 + b"\r\n", b"m-results-q-[]\r\n", b"\xff\xfe\r\n", b"m-[Expecting 1024 bytes]\r\n")


@st.composite
def reply_plan(draw) -> dict:
    """Which device replies get corrupted, and how (reply 0 is the boot banner)."""
    plan = {}
    for _ in range(draw(st.integers(0, 3))):
        k = draw(st.integers(0, 8) | st.integers(0, 40))   # connect + first sample, or anywhere
        kind = draw(st.sampled_from(["flip", "truncate", "drop", "dup", "noise", "line", "replace", "bytes"]))
        plan[k] = (kind, draw(st.integers(0, 2**16)), draw(st.sampled_from(REPLY_LINES)),
                   draw(st.binary(max_size=48)))
    return {"binary": draw(st.sampled_from([None, True, False])), "plan": plan}


def _corrupt(reply: bytes, kind: str, n: int, line: bytes, raw: bytes) -> bytes:
    b = bytearray(reply)
    if kind == "flip" and b:
        b[n % len(b)] ^= 1 << (n % 8)
    elif kind == "truncate":
        b = b[: n % (len(b) + 1)]
    elif kind == "drop":
        b = bytearray()
    elif kind == "dup":
        b = b + b
    elif kind == "noise":
        b[n % (len(b) + 1):n % (len(b) + 1)] = raw
    elif kind == "line":
        i = b.find(b"\n", n % (len(b) + 1)) + 1
        b[i:i] = line
    elif kind == "replace":
        b = bytearray(line)
    elif kind == "bytes":
        b = bytearray(raw)
    return bytes(b)


def run_serial_host(value: dict) -> None:
    """The host client against a device whose replies are corrupted: connect, check, classify, infer."""
    from unittest import mock

    import numpy as np

    from netaug_mcu.hil import client as client_mod

    model, engine = _engine()
    plan = value["plan"]
    clock = FakeClock()
    port = FakeSerial(engine, lambda k, out: _corrupt(out, *plan[k]) if k in plan else out, clock)
    c = client_mod.Client("fuzz://board", timeout=1.0, infer_timeout=2.0, retries=3, resync_quiet=0.2,
                          binary=value["binary"])
    c.ser = port
    with mock.patch.object(client_mod, "time", clock):
        c.connect()
        c.check_model(model)
        q = c.classify(_input_bytes())
        r = c.infer(2, 1)
    if not plan:   # an intact session must give the host reference's exact output
        from netaug_mcu.hil.model import host_reference
        ref = host_reference(model).run(np.frombuffer(_input_bytes(), np.int8))
        if not (np.array_equal(q, ref) and np.array_equal(r["q"], ref)):
            raise Finding("an intact session returned outputs that differ from host TFLM")


def host_session() -> list[bytes]:
    """What a real client writes in one session (hex and binary loads), recorded from the client itself."""
    from netaug_mcu.hil import protocol as P
    data = _input_bytes()
    cmds = ["", "name", "info", P.bload_command(data)]
    out = [P.command_bytes(c) for c in cmds] + [data, P.command_bytes("infer 1 0")]
    out += [P.command_bytes(c) for c in P.db_commands(data)] + [P.command_bytes("infer 3 1"),
                                                                 P.command_bytes("results")]
    return out


COMMAND_WORDS = ("name", "info", "profile", "timestamp", "db", "bload", "infer", "results", "", "db load",
                 "NAME", "reset", "infer\t1")
ARGS = st.sampled_from(["0", "1", "3", "-1", "+1", "1_0", " ", "00000000001", "2147483647", "2147483648",
                        "99999999999999999999", "1024", "ffffffff", "fffffffff", "zz", "0x10", "1e3", "nan",
                        "\xff", "load"]) | st.text(alphabet=st.characters(max_codepoint=255), max_size=12)


@st.composite
def device_inputs(draw) -> list[tuple[bytes, float]]:
    """Host->device byte chunks, each with the seconds that pass before it (bload timeouts)."""
    mode = draw(st.sampled_from(["session", "session", "grammar", "binary"]))
    if mode == "session":
        stream = draw(byte_mutation(b"".join(host_session())))
    elif mode == "grammar":
        parts = []
        for _ in range(draw(st.integers(1, 8))):
            words = [draw(st.sampled_from(COMMAND_WORDS))] + draw(st.lists(ARGS, max_size=3))
            parts.append(" ".join(words).encode("latin-1") + b"%")
            if "bload" in words[0] and draw(st.booleans()):
                parts.append(_input_bytes()[: draw(st.integers(0, 1100))])
        stream = b"".join(parts)
    else:
        stream = draw(st.binary(max_size=400))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    chunks, last = [], 0
    for c in cuts + [len(stream)]:
        chunks.append((stream[last:c], draw(st.sampled_from([0.0, 0.0, 0.01, 0.6]))))
        last = c
    return chunks


def run_serial_device(chunks: list[tuple[bytes, float]]) -> None:
    """The device's command parser (virtual board engine): never raises; every reply is whole lines of
    `m-`/`e-` messages; an `e-` line (the device rejecting input) counts as a clean rejection."""
    from netaug_mcu.hil.virtual_board import BoardError

    _, engine = _engine()
    now = 1000.0
    out = bytearray(engine.boot())
    for data, dt in chunks:
        now += dt
        out += engine.poll(now=now)
        out += engine.feed(data, now=now)
    now += 1.0
    out += engine.poll(now=now)
    if out and not out.endswith(b"\r\n"):
        raise Finding(f"device output ends mid-line: {bytes(out[-40:])!r}")
    lines = bytes(out).split(b"\r\n")[:-1]
    bad = [ln for ln in lines if not ln.startswith((b"m-", b"e-")) or not ln.isascii()]
    if bad:
        raise Finding(f"device sent a malformed line: {bad[0][:60]!r}")
    errors = [ln for ln in lines if ln.startswith(b"e-")]
    if errors:
        raise BoardError(errors[0].decode())


# ---- the registry --------------------------------------------------------------------------------
TFLITE_EXTRA: tuple[str, ...] = ()   # set by the bench before building the targets


def targets() -> dict[str, Target]:
    clean = "UserError (exit 2, one line)"
    return {
        "tflite": Target(
            "tflite", "common.tflite_model.load + validate_for_tflm + converter.analyzer.analyze (cortex-m7, "
            "host); hil.model.load_model", "TFLiteError / AnalyzerError / ModelError (" + clean + ")",
            lambda: tflite_inputs(tflite_seeds(TFLITE_EXTRA)), run_tflite_all),
        "tflite_optimize": Target(
            "tflite_optimize", "converter.reorder.optimize_bytes (optimize: exact schedule search, in-place "
            "operator-vector permutation of the raw flatbuffer, re-read and re-analysis)",
            "TFLiteError / AnalyzerError / ReorderError (" + clean + ")",
            lambda: tflite_inputs(tflite_seeds(TFLITE_EXTRA)), run_tflite_optimize),
        "model_json": Target(
            "model_json", "hil.model.load_model(model, model.json) + runner.resolve_preprocess + quantize_inputs; "
            "converter.convert.preprocess_from_json (evaluate --preprocess)",
            "ModelError / HilError / UserError from common.artifacts.read_model_json (" + clean + ")",
            lambda: json_file(model_json_seeds(), ("input", "output", "preprocess", "classes", "float_top1")),
            run_model_json_all),
        "hil_journal": Target(
            "hil_journal", "hil.runner.read_run_meta + Journal.read(repair=True) + summarize (hil accuracy --resume)",
            "JournalError (HilError, " + clean + ")", journal_inputs, run_journal),
        "hil_results": Target(
            "hil_results", "hil.report.build_report on accuracy.json + latency.json (hil report)",
            "HilError (" + clean + ")", hil_results_inputs, run_hil_results),
        "train_config": Target(
            "train_config", "trainer.config.load_config_file + make_config (train --config, YAML/JSON)",
            "TrainError (" + clean + ")", config_inputs, run_config),
        "serial_host": Target(
            "serial_host", "hil.client.Client connect/check_model/classify/infer against corrupted device replies",
            "HilError: DeviceTimeout / DeviceReset / ProtocolError / WrongDevice (" + clean + ")",
            reply_plan, run_serial_host),
        "serial_device": Target(
            "serial_device", "hil.virtual_board.BoardEngine.feed/poll on adversarial host bytes",
            "no exception at all; an e-[...] reply line (counted as a rejection)", device_inputs,
            run_serial_device),
    }
