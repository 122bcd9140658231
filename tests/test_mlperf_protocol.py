"""MLPerf Tiny DUT protocol conformance (reference: mlcommons/tiny api/internally_implemented.cpp), against the
virtual board and the firmware on QEMU mps2-an500 (built here when arm-none-eabi-gcc, qemu-system-arm and the
cached TFLM library are present, else skipped with that reason). Every expected string comes from
netaug_mcu.hil.protocol, the one host-side definition."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from netaug_mcu.hil import protocol as P
from netaug_mcu.hil.model import host_reference, load_model
from netaug_mcu.hil.virtual_board import BoardEngine, VirtualBoard, device_profile

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "hil_tests" / "data" / "tiny_fmnist32.tflite"


class Wire:
    """Raw protocol access over pyserial: a command -> its lines up to m-ready."""

    def __init__(self, url: str):
        import serial
        self.s = serial.serial_for_url(url, timeout=0.05)
        self.buf = b""

    def readline(self, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if time.monotonic() > end:
                raise TimeoutError(f"no line within {timeout} s (partial {self.buf[:80]!r})")
            self.buf += self.s.read(4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("latin-1").rstrip("\r")

    def until_ready(self, timeout: float = 10.0) -> list[str]:
        lines = []
        while (ln := self.readline(timeout)) != P.READY:
            lines.append(ln)
        return lines

    def cmd(self, text: str, timeout: float = 30.0) -> list[str]:
        self.s.write(text.encode("latin-1") + b"%")
        return self.until_ready(timeout)

    def close(self):
        self.s.close()


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


@pytest.fixture(scope="module")
def toolchain():
    from netaug_mcu.hil.conftest import _firmware_toolchain
    tc = _firmware_toolchain()
    if tc is None:
        pytest.skip("QEMU target needs qemu-system-arm, arm-none-eabi-gcc and the cached libtflm.a "
                    "(`netaug-mcu firmware MODEL --build` once)")
    return tc


@pytest.fixture(scope="module")
def qemu_url(model, tmp_path_factory, toolchain):
    from netaug_mcu.firmware import build, generate
    from netaug_mcu.hil.targets import start_qemu
    tree, lib = toolchain
    out = tmp_path_factory.mktemp("mlperf-fw")
    generate.generate(MODEL, board="mps2-an500", out=out, tree=tree, lib=lib, log=lambda *_: None)
    res = build.build(out, tree=tree, lib=lib, log=lambda *_: None)
    url, stop = start_qemu(res.elf)
    yield url
    stop()


def _quiet_wire(url: str) -> Wire:
    """A connection to a running device with nothing pending: '%' ends whatever a previous user left."""
    w = Wire(url)
    time.sleep(0.2)
    w.s.write(b"%")
    time.sleep(0.5)
    w.s.read(65536)
    w.buf = b""
    return w


@pytest.fixture(params=["virtual", "qemu"])
def wire(request, model):
    if request.param == "qemu":
        w = _quiet_wire(request.getfixturevalue("qemu_url"))
        yield w
        w.close()
        return
    with VirtualBoard(model) as vb:
        w = Wire(vb.url)            # (pyserial flushes the pty's input on open: the banner is gone)
        yield w
        w.close()


def test_qemu_session_survives_reconnects(qemu_url):
    for _ in range(3):
        w = Wire(qemu_url)
        time.sleep(0.2)
        w.s.read(65536)
        w.buf = b""
        assert w.cmd("name") == [P.MSG_NAME.format(name=P.DUT_NAME)], "banner or stale reply on reconnect"
        w.close()


def _load(w: Wire, data: bytes) -> list[str]:
    out = w.cmd(f"db load {len(data)}")
    assert out == [P.MSG_EXPECTING.format(n=len(data))], out
    for c in P.db_commands(data)[1:]:
        out = w.cmd(c)
    return out


def test_identity_help_and_unknown(wire, model):
    assert wire.cmd("name") == [P.MSG_NAME.format(name=P.DUT_NAME)]
    assert wire.cmd("profile") == [P.MSG_PROFILE.format(profile=P.PROFILE), P.MSG_MODEL.format(model=model.name)]
    helptext = wire.cmd("help")
    assert any(ln.startswith("db SUBCMD") for ln in helptext) and any("infer N" in ln for ln in helptext)
    assert wire.cmd("frobnicate 1 2") == [P.ERR_UNKNOWN.format(tok="frobnicate")]
    # over-long: the first 80 characters are kept and run (reference), extra tokens are ignored
    assert wire.cmd("name" + " " * 100 + "junk") == [P.MSG_NAME.format(name=P.DUT_NAME)]
    assert wire.cmd("z" * 200) == [P.ERR_UNKNOWN.format(tok="z" * P.MAX_COMMAND)]
    assert P.parse_lap(wire.cmd("timestamp")[0]) is not None


def test_db_semantics(wire, model):
    n = model.input.nbytes
    assert wire.cmd("db") == [P.ERR_DB_SUBCOMMAND]
    assert wire.cmd("db load") == [P.ERR_DB_LOAD_BYTES]
    assert wire.cmd("db load 0") == [P.ERR_DB_LOAD_ZERO]
    assert wire.cmd("db load abc") == [P.ERR_DB_LOAD_ZERO]            # atoi
    assert wire.cmd(f"db load {n + 1}") == [P.ERR_DB_TOO_BIG.format(n=n + 1, max=n)]
    # any N up to the maximum
    assert wire.cmd("db load 3") == [P.MSG_EXPECTING.format(n=3)]
    assert wire.cmd("db 0a0") == [P.ERR_HEX_ODD]
    assert wire.cmd("db 0azz") == [P.ERR_HEX_DIGIT.format(pair="zz")]  # 0a stored before the bad pair
    assert wire.cmd("db 0b0c0d0e") == [P.LOAD_DONE]                    # 0b 0c complete it; 0d 0e ignored
    assert wire.cmd("db ffff") == []                                   # beyond N: ignored, not stored
    assert wire.cmd("db print") == ["m-buffer-0a-0b-0c"]
    assert wire.cmd("infer 1 0") == [P.ERR_NOT_LOADED.format(have=3, need=n)]
    data = bytes(range(256)) * (n // 256) + bytes(n % 256)
    assert _load(wire, data) == [P.LOAD_DONE]
    printed = wire.cmd("db print")
    assert len(printed) == -(-n // P.BUFFER_LINE_BYTES) and printed[:2] == P.buffer_lines(data)[:2]


def test_infer_defaults_errors_and_results(wire, model):
    n = model.input.nbytes
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, n, dtype=np.int8)
    _load(wire, x.tobytes())
    assert wire.cmd("infer 0") == [P.ERR_INFER_N]
    assert wire.cmd("infer abc") == [P.ERR_INFER_N]
    assert wire.cmd("infer 1 -1") == [P.ERR_INFER_W]
    out = wire.cmd("infer")                          # no arguments: N=1, W=10 (reference)
    assert out[:3] == [P.MSG_WARMUP_START.format(w=10), P.WARMUP_DONE, P.MSG_INFER_START.format(n=1)], out
    assert wire.cmd("infer 2")[0] == P.MSG_WARMUP_START.format(w=10)
    out = wire.cmd("infer 3 0")
    laps = [P.parse_lap(ln) for ln in out if P.parse_lap(ln) is not None]
    assert len(laps) == 2 and laps[1] >= laps[0] and P.INFER_DONE in out
    ref = host_reference(model).run(x)
    q = P.parse_int_list(P.bracket(next(ln for ln in out if ln.startswith("m-results-q-[")), "m-results-q"))
    assert q == [int(v) for v in ref]
    vals = P.parse_float_list(P.bracket(next(ln for ln in out if ln.startswith("m-results-[")), "m-results"))
    o = model.output
    # %0.6f: every int8 step of the output is visible (the old %0.3f merged neighbours of small scales)
    np.testing.assert_allclose(vals, (np.asarray(q) - o.zero_point) * o.scale, atol=6e-7)
    assert wire.cmd("results")[0] == next(ln for ln in out if ln.startswith("m-results-["))


def test_lap_lines_stream_live(model):
    chunks: list[tuple[float, bytes]] = []
    e = BoardEngine(model, sink=lambda b: chunks.append((time.monotonic(), b)))
    e.feed(f"db load {model.input.nbytes}%".encode())
    for c in P.db_commands(bytes(model.input.nbytes))[1:]:
        e.feed(P.command_bytes(c))
    chunks.clear()
    e.feed(b"infer 20 0%")
    text = [c.decode() for _, c in chunks]
    first_lap = next(i for i, t in enumerate(text) if "m-lap-us-" in t)
    done = next(i for i, t in enumerate(text) if P.INFER_DONE in t)
    assert first_lap < done, "m-lap-us must leave before the N inferences run"
    assert chunks[done][0] > chunks[first_lap][0]


def test_mlperf_ic01_uint8_input_and_name(model):
    prof = device_profile("ic01")
    e = BoardEngine(model, **prof)
    assert P.MSG_MODEL.format(model="ic01") in e.feed(b"profile%").decode()
    x = np.random.default_rng(1).integers(-128, 128, model.input.nbytes, dtype=np.int8)
    u8 = (x.astype(np.int16) + 128).astype(np.uint8).tobytes()          # a dataset file: uint8 pixels
    e.feed(f"db load {len(u8)}%".encode())
    for c in P.db_commands(u8)[1:]:
        e.feed(P.command_bytes(c))
    out = e.feed(b"infer 1 0%").decode().split("\r\n")
    q = P.parse_int_list(P.bracket(next(ln for ln in out if ln.startswith("m-results-q-[")), "m-results-q"))
    assert q == [int(v) for v in host_reference(model).run(x)]


def _feed_db(e: BoardEngine, data: bytes) -> None:
    e.feed(f"db load {len(data)}%".encode())
    for c in P.db_commands(data)[1:]:
        e.feed(P.command_bytes(c))


def _results(out: bytes, key: str = "m-results"):
    line = next(ln for ln in out.decode().split("\r\n") if ln.startswith(key + "-["))
    return P.parse_float_list(P.bracket(line, key))


def test_float32_input_is_quantized_on_the_device(model):
    e = BoardEngine(model, input_format="float32")
    i = model.input
    assert e.need == 4 * i.nbytes
    x = np.random.default_rng(2).integers(-128, 128, i.nbytes, dtype=np.int8)
    f = P.encode_input(x.tobytes(), "float32", i.scale, i.zero_point)
    assert P.decode_input(f, "float32", i.scale, i.zero_point) == x.tobytes()
    assert e.feed(f"db load {len(f) + 1}%".encode()).decode().startswith("e-[Supplied buffer size")
    _feed_db(e, f)
    q = _results(e.feed(b"infer 1 0%"), "m-results-q")
    assert q == [int(v) for v in host_reference(model).run(x)]


def test_mlperf_ad01_reports_the_mse():
    from netaug_mcu.common.paths import cache_root
    path = cache_root() / "mlperf-tiny" / "ad01.tflite"
    if not path.is_file():
        pytest.skip(f"{path} missing (python bench/fetch_mlperf_models.py)")
    m = load_model(path)
    e = BoardEngine(m, **device_profile("ad01"))
    feats = np.random.default_rng(3).normal(10.0, 4.0, m.input.nbytes).astype("<f4")
    _feed_db(e, feats.tobytes())
    out = e.feed(b"infer 1 0%")
    (mse,) = _results(out)
    q = np.asarray(_results(out, "m-results-q"))
    deq = (q - m.output.zero_point) * m.output.scale
    assert mse == pytest.approx(float(np.mean((deq - feats) ** 2)), rel=1e-4)
    assert e.feed(b"profile%").decode().count("m-model-[ad01]") == 1


def test_mse_result_refused_for_mismatched_io(model):
    from netaug_mcu.hil.virtual_board import BoardError
    with pytest.raises(BoardError, match="MSE"):
        BoardEngine(model, results="mse")


def test_tcp_session_survives_reconnects(model):
    with VirtualBoard(model, transport="tcp") as vb:
        w = Wire(vb.url)
        time.sleep(0.3)         # the boot banner (pyserial may already have flushed it on open)
        w.buf += w.s.read(4096)
        assert w.buf in (b"", ) or P.INIT_DONE.encode() in w.buf
        w.buf = b""
        assert w.cmd("db load 3") == [P.MSG_EXPECTING.format(n=3)]
        w.close()
        for _ in range(3):                          # the runner opens the port three times
            w = Wire(vb.url)
            assert w.cmd("name") == [P.MSG_NAME.format(name=P.DUT_NAME)], "banner or stale reply on reconnect"
            w.close()
        w = Wire(vb.url)
        assert w.cmd("db 010203") == [P.LOAD_DONE], "the db state of the session was lost"
        assert w.cmd("db print") == ["m-buffer-01-02-03"]
        w.close()
        assert vb.engine.resets == 0 and vb.connections == 5


def test_energy_mode_logs_the_timestamp(model):
    e = BoardEngine(model, energy=True)
    boot = e.boot().decode().split("\r\n")
    assert boot[0] == P.BANNER_ENERGY
    out = e.feed(b"timestamp%").decode()
    assert "m-lap-us-" not in out and "m-timestamp-pin-" in out and len(e.pin_log) == 2


def test_energy_mode_firmware_on_qemu(model, toolchain, tmp_path):
    """`firmware --energy` on QEMU: energy banner, each timestamp is the (logged) pin pulse instead of
    m-lap-us, results unchanged (host TFLM)."""
    from netaug_mcu.firmware import build, generate
    from netaug_mcu.hil.targets import start_qemu
    tree, lib = toolchain
    generate.generate(MODEL, board="mps2-an500", out=tmp_path, tree=tree, lib=lib, log=lambda *_: None,
                      energy=True)
    res = build.build(tmp_path, tree=tree, lib=lib, log=lambda *_: None)
    url, stop = start_qemu(res.elf)
    try:
        w = _quiet_wire(url)
        ts = w.cmd("timestamp")
        assert len(ts) == 1 and ts[0].startswith("m-timestamp-pin-") and "m-lap-us-" not in "".join(ts), ts
        info_line = w.cmd("info")[0]
        assert info_line.startswith("m-info-[") and P.parse_info(info_line[len("m-info-["):-1])["energy"] == 1
        x = np.random.default_rng(3).integers(-128, 128, model.input.nbytes, dtype=np.int8).tobytes()
        _load(w, x)
        out = w.cmd("infer 2 1")
        pins = [ln for ln in out if ln.startswith("m-timestamp-pin-")]
        assert len(pins) == 2 and not any(ln.startswith("m-lap-us-") for ln in out), out
        t0, t1 = (int(p.removeprefix("m-timestamp-pin-")) for p in pins)
        assert t1 > t0
        q = [int(v) for v in next(ln for ln in out if ln.startswith("m-results-q-["))[len("m-results-q-["):-1].split(",")]
        ref = host_reference(model).run(np.frombuffer(x, np.int8)).astype(int).reshape(-1).tolist()
        assert q == ref
        w.close()
    finally:
        stop()


def test_energy_mode_f746_links_the_gpio_pulse(model, toolchain, tmp_path):
    """`firmware --energy --board stm32f746g-disco` compiles and links at 9600 baud, and the timestamp is the
    board's GPIO pulse (a strong board_timestamp_pulse from board.c), not the weak serial fallback."""
    import subprocess
    from netaug_mcu.firmware import build, generate
    tree, lib = toolchain
    generate.generate(MODEL, board="stm32f746g-disco", out=tmp_path, tree=tree, lib=lib,
                             log=lambda *_: None, energy=True, baud=9600)
    res = build.build(tmp_path, tree=tree, lib=lib, log=lambda *_: None)
    syms = subprocess.run(["arm-none-eabi-nm", res.elf], stdout=subprocess.PIPE, text=True, check=True).stdout
    kinds = {ln.split()[1] for ln in syms.splitlines() if ln.split()[-1] == "board_timestamp_pulse"}
    assert kinds == {"T"}, f"board_timestamp_pulse symbol kinds {kinds} (W = the weak serial fallback)"
    assert "#define NETAUG_ENERGY_MODE 1" in "".join(p.read_text() for p in tmp_path.rglob("*.h"))
