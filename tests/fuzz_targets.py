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


# ---- the registry --------------------------------------------------------------------------------
TFLITE_EXTRA: tuple[str, ...] = ()   # set by the bench before building the targets


def targets() -> dict[str, Target]:
    return {
        "tflite": Target(
            "tflite", "common.tflite_model.load + validate_for_tflm + converter.analyzer.analyze (cortex-m7, host)",
            "TFLiteError / AnalyzerError (UserError, exit 2, one line)",
            lambda: tflite_inputs(tflite_seeds(TFLITE_EXTRA)), run_tflite),
    }
