"""Firmware end-to-end: build for QEMU mps2-an500 (Cortex-M7) and the STM32F746G-DISCO, run on QEMU.

Needs arm-none-eabi-gcc, qemu-system-arm, a TFLM tree ($TFLM_TREE or the cache filled by
`netaug-mcu firmware --fetch-deps`) and the compiled libtflm.a in the cache (built once, 15-30 min
on 2 cores, by `netaug-mcu firmware MODEL --build`); otherwise every test here is skipped with the
reason. With NETAUG_MCU_HEAVY=1 a missing library is built by the test session itself.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.common import boards
from netaug_mcu.common.qemu import Qemu
from netaug_mcu.converter import analyzer
from netaug_mcu.firmware import build as fw_build
from netaug_mcu.firmware import generate as gen
from netaug_mcu.firmware import tflm_build as deps

pytestmark = pytest.mark.firmware

ROOT = Path(__file__).resolve().parents[1]
MODEL32 = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"


@pytest.fixture(scope="session")
def toolchain():
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi "
                        f"libstdc++-arm-none-eabi-newlib)")
    tree, why = deps.find_tree()
    if tree is None:
        pytest.skip(why)
    libdir = deps.library_dir(tree)
    lib = libdir / "libtflm.a"
    if not (lib.is_file() and (libdir / "complete").is_file()):
        if os.environ.get("NETAUG_MCU_HEAVY") != "1":
            pytest.skip(f"libtflm.a not built yet in {libdir} (run `netaug-mcu firmware MODEL --build` once, "
                        f"15-30 min; or set NETAUG_MCU_HEAVY=1)")
        lib = deps.build_library(tree, log=lambda *_: None)
    return tree, lib


@pytest.fixture(scope="session")
def build(toolchain, tmp_path_factory):
    tree, lib = toolchain
    cache: dict = {}

    def _build(model: Path, board: str = "mps2-an500", **kw):
        key = (str(model), board, tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"fw-{board}")
            proj = gen.generate(model, board=board, out=out, tree=tree, lib=lib, log=lambda *_: None, **kw)
            res = fw_build.build(out, tree=tree, lib=lib, log=lambda *_: None)
            cache[key] = (proj, res)
        return cache[key]
    return _build


def _need_qemu():
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")


class Wire:
    """Minimal protocol client over pyserial (raw access for the bad-input tests)."""

    def __init__(self, url: str):
        import serial
        self.s = serial.serial_for_url(url, timeout=0.05)
        self.buf = b""

    def readline(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if time.monotonic() > end:
                raise TimeoutError(f"no line within {timeout} s (partial {self.buf[:80]!r})")
            self.buf += self.s.read(4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("latin-1").rstrip("\r")

    def until_ready(self, timeout: float = 60.0) -> list[str]:
        lines = []
        while True:
            ln = self.readline(timeout)
            if ln == "m-ready":
                return lines
            lines.append(ln)

    def send(self, data: bytes) -> None:
        self.s.write(data)

    def cmd(self, text: str, timeout: float = 60.0) -> list[str]:
        self.send(text.encode() + b"%")
        return self.until_ready(timeout)

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def dev32(build):
    _need_qemu()
    if not MODEL32.is_file():
        pytest.skip(f"{MODEL32} missing")
    proj, res = build(MODEL32)
    q = Qemu(res.elf)
    q.start()
    w = Wire(q.url)
    banner = w.until_ready(30)
    yield proj, res, w, banner, q
    w.close()
    q.stop()


def _host_tflm(model: Path, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime
    it = runtime.Interpreter.from_bytes(model.read_bytes())
    it.set_input(x, 0)
    it.invoke()
    return it.get_output(0).copy()


def _bracket(lines, key):
    for ln in lines:
        m = re.match(rf"^{re.escape(key)}-\[(.*)\]$", ln)
        if m:
            return m.group(1)
    raise AssertionError(f"no {key}-[...] in {lines}")


def _info(w: Wire) -> dict:
    body = _bracket(w.cmd("info"), "m-info")
    return {k: (int(v) if re.fullmatch(r"\d+", v) else v) for k, v in (i.split("=", 1) for i in body.split(","))}


def _bload(w: Wire, payload: bytes, crc: int | None = None) -> list[str]:
    crc = zlib.crc32(payload) if crc is None else crc
    w.send(f"bload {len(payload)} {crc:08x}%".encode())
    assert w.readline(10) == "m-bload-ready"
    w.send(payload)
    return w.until_ready(30)


def test_boot_banner_and_identity(dev32):
    proj, res, w, banner, _ = dev32
    assert banner[0] == "m-timestamp-mode-performance"
    assert re.fullmatch(r"m-lap-us-\d+", banner[1])
    assert banner[2:] == ["m-init-done"]
    assert w.cmd("name") == ["m-name-dut-[netaug-mcu]"]
    assert w.cmd("profile") == ["m-profile-[netaug-mcu 0.1]", f"m-model-[{proj.model_name}]"]
    t1 = int(w.cmd("timestamp")[0].removeprefix("m-lap-us-"))
    t2 = int(w.cmd("timestamp")[0].removeprefix("m-lap-us-"))
    assert t2 > t1
    info = _info(w)
    assert info["model"] == proj.model_name
    assert info["arena"] == proj.arena_bytes
    assert 0 < info["arena_used"] <= info["arena"]
    assert info["input"] == proj.input_bytes == 1024 and info["output"] == proj.output_bytes
    assert info["timer"] == "systick-icount" and info["clock_hz"] == 25_000_000
    assert info["bin"] == 1 and info["max_frame"] == proj.input_bytes


def test_outputs_bit_exact_with_host_tflm(dev32):
    proj, res, w, _, _ = dev32
    rng = np.random.default_rng(1234)
    n_checked = 0
    for i in range(24):
        x = rng.integers(-128, 128, size=(1, 32, 32, 1), dtype=np.int8)
        payload = x.tobytes()
        if i % 4 == 3:   # every 4th input through the MLPerf hex path
            lines = w.cmd(f"db load {len(payload)}")
            assert lines == [f"m-[Expecting {len(payload)} bytes]"]
            for k in range(0, len(payload), 38):
                lines = w.cmd("db " + payload[k:k + 38].hex())
            assert lines == ["m-load-done"]
        else:
            assert _bload(w, payload) == ["m-load-done"]
        lines = w.cmd("infer 1 0")
        q_dev = [int(v) for v in _bracket(lines, "m-results-q").split(",")]
        f_dev = [float(v) for v in _bracket(lines, "m-results").split(",")]
        ref = _host_tflm(MODEL32, x).reshape(-1)
        assert q_dev == ref.tolist(), f"input {i}: device {q_dev} != host TFLM {ref.tolist()}"
        assert len(f_dev) == len(q_dev)
        n_checked += 1
    assert n_checked >= 20
    assert w.cmd("results")[1].startswith("m-results-q-[")


def test_infer_sequence_and_deterministic_ticks(dev32):
    proj, res, w, _, _ = dev32
    x = np.random.default_rng(7).integers(-128, 128, size=1024, dtype=np.int8).tobytes()
    assert _bload(w, x) == ["m-load-done"]
    runs = []
    for _ in range(2):
        lines = w.cmd("infer 3 1")
        assert lines[:3] == ["m-warmup-start-1", "m-warmup-done", "m-infer-start-3"]
        laps = [int(v.removeprefix("m-lap-us-")) for v in lines if v.startswith("m-lap-us-")]
        cycles = int(next(v for v in lines if v.startswith("m-infer-cycles-")).removeprefix("m-infer-cycles-"))
        assert len(laps) == 2 and laps[1] > laps[0]
        assert "m-infer-done" in lines
        runs.append(cycles)
    # -icount shift=0: an instruction-count proxy, identical run to run (SysTick quantisation aside)
    assert abs(runs[0] - runs[1]) <= 3, runs
    print(f"\nQEMU proxy: {runs[0] / 3:.0f} SysTick ticks per inference (~{runs[0] / 3 * 40:.0f} instructions)")


def test_wire_robustness(dev32):
    proj, res, w, _, _ = dev32
    n = proj.input_bytes
    # over-long command: cut to its first 80 characters and run (reference), still alive
    lines = w.cmd("x" * 200)
    assert lines == ["e-[Unknown command: " + "x" * 80 + "]"]
    assert w.cmd("name") == ["m-name-dut-[netaug-mcu]"]
    # exactly 80 characters is accepted (and unknown)
    assert w.cmd("y" * 80)[0].startswith("e-[Unknown command: y")
    assert w.cmd("frobnicate 1 2") == ["e-[Unknown command: frobnicate]"]
    assert w.cmd("")[0].startswith("e-[Unknown command")
    # db: size above the buffer, odd digits, bad digit, surplus data (ignored, reference)
    assert w.cmd(f"db load {n + 1}")[0].startswith("e-[Supplied buffer size")
    assert w.cmd(f"db load {n}") == [f"m-[Expecting {n} bytes]"]
    assert w.cmd("db abc")[0].startswith("e-[")
    assert w.cmd("db zz")[0].startswith("e-[Invalid hex digit")
    for k in range(0, n - 2, 38):
        w.cmd("db " + "11" * min(38, n - 2 - k))
    assert w.cmd("db " + "22" * 3) == ["m-load-done"]   # 3 > 2 remaining: the surplus is disregarded
    assert w.cmd("db 33") == []
    # infer argument errors
    assert w.cmd("infer 0")[0].startswith("e-[")
    assert w.cmd("infer abc")[0].startswith("e-[")
    # bload: wrong size, bad crc text, corrupt frame, truncated frame (timeout)
    assert w.cmd(f"bload {n - 1} 00000000")[0].startswith("e-[bload size")
    assert w.cmd(f"bload {n} xyz")[0].startswith("e-[")
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    assert _bload(w, payload, crc=zlib.crc32(payload) ^ 1) == ["e-[bload crc mismatch]"]
    assert w.cmd("infer 1")[0].startswith("e-[input not loaded")   # buffer marked empty
    w.send(f"bload {n} {zlib.crc32(payload):08x}%".encode())
    assert w.readline(10) == "m-bload-ready"
    w.send(payload[: n // 2])
    t0 = time.monotonic()
    assert w.until_ready(120) == ["e-[bload timeout]"]
    print(f"\nbload timeout (5 s virtual) took {time.monotonic() - t0:.1f} s wall under -icount")
    # binary payload with '%' and CR/LF inside is data, not commands
    assert _bload(w, payload) == ["m-load-done"]
    assert "m-infer-done" in w.cmd("infer 1 0")
    assert w.cmd("name") == ["m-name-dut-[netaug-mcu]"]


def test_semihosting_exit(build):
    _need_qemu()
    proj, res = build(MODEL32)
    with Qemu(res.elf) as q:
        w = Wire(q.url)
        w.until_ready(30)
        w.send(b"exit 3%")
        try:   # QEMU may exit before its socket backend flushes the last line
            assert w.readline(10) == "m-exit-3"
        except Exception as exc:  # noqa: BLE001
            assert "disconnected" in str(exc) or "closed" in str(exc).lower(), exc
        assert q.wait(20) == 3
        w.close()


ARENA_MODELS = ["tiny_fmnist32", "plain_cnn", "depthwise", "residual", "mobilenet_like_64", "zoo:mbv2-tiny:32",
                "zoo:mbv3-w0.35:47"]


def _zoo(name: str, res: int) -> Path | None:
    """A zoo model converted by `netaug-mcu convert --zoo` (converter cache), if present."""
    root = Path(os.environ.get("NETAUG_MCU_CACHE", Path.home() / ".cache" / "netaug-mcu")) / "zoo-models"
    for meta in sorted(root.glob("*/model.json")) if root.is_dir() else []:
        try:
            src = json.loads(meta.read_text()).get("source") or {}
        except ValueError:
            continue
        arch = src.get("arch") or {}
        if src.get("zoo") == name and arch.get("resolution") == res and (meta.parent / "model.tflite").is_file():
            return meta.parent / "model.tflite"
    return None


def _model(name: str) -> Path:
    if name.startswith("zoo:"):
        _, zname, res = name.split(":")
        p = _zoo(zname, int(res))
        if p is None:
            pytest.skip(f"zoo model {zname}@{res} not converted on this machine (netaug-mcu convert --zoo)")
        return p
    if name.startswith("tiny_fmnist"):
        return ROOT / "hil_tests" / "data" / f"{name}.tflite"
    import keras_models
    p = keras_models.CACHE_DIR
    hits = sorted(p.glob(f"{name}-*.tflite")) if p.is_dir() else []
    if not hits:
        pytest.skip(f"test model {name} not in {p} (generated by tests/keras_models.py with TensorFlow)")
    return hits[-1]


@pytest.mark.parametrize("name", ARENA_MODELS)
def test_device_arena_used_equals_analyzer(build, name):
    _need_qemu()
    model = _model(name)
    predicted = analyzer.analyze(str(model), target="cortex-m7").arena_bytes
    proj, res = build(model)
    with Qemu(res.elf) as q:
        w = Wire(q.url)
        banner = w.until_ready(30)
        assert not [ln for ln in banner if ln.startswith("e-")], banner
        info = _info(w)
        w.close()
    assert info["arena_used"] == predicted, f"{name}: device {info['arena_used']} B, analyzer {predicted} B"


@pytest.mark.parametrize("name", ["tiny_fmnist32", "plain_cnn", "residual"])
def test_flash_within_5_percent_of_analyzer(build, name):
    model = _model(name)
    est = analyzer.analyze(model, "cortex-m7").flash_bytes
    proj, res = build(model)
    assert abs(res.flash - est) <= 0.05 * res.flash, f"{name}: ELF flash {res.flash} B, analyzer {est} B"


def test_stm32f746_build_links_and_fits(build):
    if not MODEL32.is_file():
        pytest.skip(f"{MODEL32} missing")
    proj, res = build(MODEL32, board="stm32f746g-disco")
    b = boards.get("stm32f746g-disco")
    assert res.flash <= b.flash_bytes and res.ram <= b.ram_bytes
    assert res.sections[".arena"] == proj.arena_bytes
    import subprocess
    out = subprocess.run(["arm-none-eabi-size", "-A", "-x", res.elf], stdout=subprocess.PIPE, text=True).stdout
    addr = {p[0]: int(p[2], 16) for p in (ln.split() for ln in out.splitlines()) if len(p) == 3 and p[0][0] == "."}
    assert addr[".isr_vector"] == 0x08000000
    assert 0x20000000 <= addr[".stack"] < 0x20010000          # stack in DTCM
    lo, hi = (0x20000000, 0x20010000) if proj.arena_region == "DTCM" else (0x20010000, 0x20050000)
    assert lo <= addr[".arena"] and addr[".arena"] + proj.arena_bytes <= hi
    nm = subprocess.run(["arm-none-eabi-nm", res.elf], stdout=subprocess.PIPE, text=True).stdout
    assert "USART1_IRQHandler" in nm and "arm_convolve" in nm   # board UART + CMSIS-NN kernels linked
    meta = json.loads((Path(proj.out) / "project.json").read_text())
    assert meta["board"] == "stm32f746g-disco"


def test_real_over_budget_model_is_refused(tmp_path):
    """mcunet-in4 @160 (1.7 MB, ~500 KB arena) cannot fit the F746: refused with the budget gate's figures."""
    model = _model("zoo:mcunet-in4:160")
    from netaug_mcu.firmware.errors import ModelRefused
    with pytest.raises(ModelRefused, match="does not fit stm32f746g-disco") as ei:
        gen.generate(model, out=tmp_path / "fw", log=lambda *_: None)
    assert ei.value.exit_code == 1 and not (tmp_path / "fw" / "main.cc").exists()
