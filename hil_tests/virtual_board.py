"""Virtual board: the device protocol (PROTOCOL.md) answered by host TFLM behind a pty or a TCP socket.

`BoardEngine` is the transport-free protocol state machine (bytes in -> bytes out); `VirtualBoard` runs it
in a thread behind a pseudo-terminal (url = the slave path, like /dev/ttyACM0) or a TCP server
(url = socket://127.0.0.1:PORT). Deterministic fault injection for the reliability tests:

  silent-after=N         after N answered `infer` commands the device stops answering anything
  reset-after=N          the device resets once, at the `infer` after N answered ones (command lost, banner)
  reset-every=N          ... at every N-th answered `infer`
  garbage-every=N        noise bytes (no newline) before every N-th output line
  garbage-lines-every=N  a whole line of noise before every N-th output line
  corrupt-bload-every=N  every N-th received binary frame has a bit flipped (CRC mismatch)
  vanish-after=N         after N answered `infer` commands the port disappears (pty/socket closed)
  reset-in-bload=N       the device resets once in the middle of the N-th binary frame (the rest of the
                         frame then reaches the fresh command parser as garbage)
  wrong-name             answers `name%` like some other device (no `m-name-dut-`)
  seed=S                 seed of the noise generator
"""
from __future__ import annotations

import errno
import os
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, fields

import numpy as np

from ..common.errors import UserError
from . import protocol as P
from .model import ModelInfo, host_reference, load_model


class BoardError(UserError):
    pass


@dataclass
class Faults:
    silent_after: int | None = None
    reset_after: int | None = None
    reset_every: int | None = None
    garbage_every: int | None = None
    garbage_lines_every: int | None = None
    corrupt_bload_every: int | None = None
    vanish_after: int | None = None
    reset_in_bload: int | None = None
    wrong_name: bool = False
    seed: int = 0

    @classmethod
    def parse(cls, specs: list[str] | None) -> "Faults":
        f = cls()
        names = {fl.name.replace("_", "-"): fl.name for fl in fields(cls)}
        for spec in specs or []:
            for item in spec.split(","):
                item = item.strip()
                if not item:
                    continue
                key, _, val = item.partition("=")
                if key not in names:
                    raise BoardError(f"unknown fault {key!r} (known: {', '.join(sorted(names))})")
                attr = names[key]
                if attr == "wrong_name":
                    f.wrong_name = val.lower() not in ("0", "false", "no")
                    continue
                try:
                    n = int(val)
                except ValueError:
                    raise BoardError(f"fault {key} needs an integer: {item!r}") from None
                if n < 0 or (n == 0 and attr not in ("seed", "silent_after", "vanish_after", "reset_after")):
                    raise BoardError(f"fault {key} must be positive: {item!r}")
                setattr(f, attr, n)
        return f


def _printable(text: str) -> str:
    """Received bytes echoed in an error line: printable ASCII only (the reply must stay one ASCII line)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _u32(tok: str) -> int:
    """The firmware's parse_u32: decimal digits only, at most 0x7FFFFFFF (int() would take '+1', '1_0',
    ' 1' and any size: `infer 99999999999` would then keep the board busy for hours)."""
    if not tok or not tok.isascii() or not tok.isdigit() or len(tok) > 10 or int(tok) > 0x7FFFFFFF:
        raise ValueError(f"not a count: {tok[:12]!r}")
    return int(tok)


def _hex32(tok: str) -> int:
    """The firmware's parse_hex32: 1 to 8 hex digits."""
    if not tok or len(tok) > 8 or any(c not in "0123456789abcdefABCDEF" for c in tok):
        raise ValueError(f"not a crc32: {tok[:12]!r}")
    return int(tok, 16)


class BoardEngine:
    """Protocol state machine of one device (the reference semantics of protocol.py).

    feed() takes received bytes and returns the bytes to send; with a `sink` every reply line is handed to
    it as soon as it is produced instead (an `infer` streams its m-lap-us lines live)."""

    def __init__(self, model: ModelInfo, faults: Faults | None = None, arena_size: int | None = None,
                 name: str | None = None, input_format: str = "int8", results: str = "dequantized",
                 energy: bool = False, sink=None):
        if input_format not in P.INPUT_FORMATS:
            raise BoardError(f"unknown input format {input_format!r} (known: {', '.join(P.INPUT_FORMATS)})")
        if results == "mse" and model.output.nbytes != model.input.nbytes:
            raise BoardError(f"{model.path.name}: an ad01-style MSE result needs as many outputs as inputs "
                             f"({model.output.nbytes} != {model.input.nbytes})")
        self.model = model
        self.faults = faults or Faults()
        self.ref = host_reference(model, arena_size=arena_size)
        self.arena_used = self.ref.arena_used() or 0
        self.name = name or model.name
        self.input_format, self.results_kind, self.energy = input_format, results, energy
        self.in_bytes = model.input.nbytes
        self.need = P.db_bytes_needed(input_format, self.in_bytes)   # db bytes one inference reads
        self.db_max = self.need
        self.out_bytes = model.output.nbytes
        self.sink = sink
        self.rng = random.Random(self.faults.seed)
        self.t_boot = time.perf_counter_ns()
        self.mode = "cmd"          # cmd | bload | silent | gone
        self.infers = 0            # answered infer commands (fault counters)
        self.bloads = 0            # received binary frames
        self.lines_out = 0
        self.resets = 0
        self.noise_bursts = 0      # injected garbage bursts
        self.pin_log: list[int] = []   # energy mode: timestamp "pulses" (us), logged instead of toggled
        self._reset_done_at: set[int] = set()
        self._resets_done: set[str] = set()
        self.log: list[str] = []   # received commands (tests inspect it)
        self._out = bytearray()
        self._clear()

    # ---- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.cmd = bytearray()
        self.db_size = 0           # announced by `db load N` (reference g_buff_size)
        self.db_pos = 0            # bytes stored (reference g_buff_pos)
        self.db_buf = bytearray(self.db_max)
        self.bl_n = 0
        self.bl_crc = 0
        self.bl_buf = bytearray()
        self.bl_last = 0.0
        self.last_out: np.ndarray | None = None
        self.last_in: bytes | None = None

    @property
    def input(self) -> bytes | None:
        """The db bytes the next `infer` reads, None while fewer than needed are loaded."""
        return bytes(self.db_buf[:self.need]) if self.db_pos >= self.need else None

    def boot(self) -> bytes:
        self._boot()
        return self._take()

    def _boot(self) -> None:
        self._clear()
        self.mode = "cmd"
        self._emit([P.BANNER_ENERGY if self.energy else P.BANNER_FIRST, self._timestamp(),
                    P.INIT_DONE, P.READY])

    def _us(self) -> int:
        return (time.perf_counter_ns() - self.t_boot) // 1000

    def _timestamp(self) -> str:
        """th_timestamp(): m-lap-us in performance mode; in energy mode the pin pulse, logged."""
        us = self._us()
        if self.energy:
            self.pin_log.append(us)
            return P.MSG_ENERGY_TIMESTAMP.format(us=us)
        return P.MSG_LAP.format(us=us)

    def _emit(self, lines: list[str]) -> None:
        f = self.faults
        for line in lines:
            self.lines_out += 1
            if f.garbage_lines_every and self.lines_out % f.garbage_lines_every == 0:
                self._out += self._noise() + b"\r\n"
            if f.garbage_every and self.lines_out % f.garbage_every == 0:
                self._out += self._noise()
            self._out += line.encode("ascii", "replace") + b"\r\n"   # the protocol is ASCII (echoes are sanitised)
        if self.sink is not None and self._out:
            data = bytes(self._out)
            self._out.clear()
            self.sink(data)

    def _take(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def _noise(self) -> bytes:
        # Line noise: high bytes and control characters, never a line end or the `m-`/`e-` markers.
        self.noise_bursts += 1
        alphabet = [b for b in range(256) if b not in (0x0A, 0x0D, ord("m"), ord("e"), ord("-"))]
        return bytes(self.rng.choice(alphabet) for _ in range(self.rng.randint(3, 12)))

    # ---- input -------------------------------------------------------------------------------
    def feed(self, data: bytes, now: float | None = None) -> bytes:
        now = time.monotonic() if now is None else now
        i = 0
        while i < len(data):
            if self.mode in ("silent", "gone"):
                break
            if self.mode == "bload":
                i = self._feed_bload(data, i, now)
                continue
            b = data[i]
            i += 1
            if b == ord(P.TERMINATOR):
                line = self.cmd.decode("latin-1")
                self.cmd.clear()
                self._command(line, now)
            elif b in (0x0D, 0x0A):
                pass                    # line ends between commands are tolerated, never part of one
            elif len(self.cmd) < P.MAX_COMMAND:
                self.cmd.append(b)      # beyond MAX_COMMAND characters are dropped (reference: truncated)
        return self._take()

    def _feed_bload(self, data: bytes, i: int, now: float) -> int:
        take = min(self.bl_n - len(self.bl_buf), len(data) - i)
        rb = self.faults.reset_in_bload
        if rb and self.bloads + 1 == rb and "bload" not in self._resets_done:
            take = min(take, max(0, self.bl_n // 2 - len(self.bl_buf)))
            if len(self.bl_buf) + take >= self.bl_n // 2:
                self.bl_buf += data[i:i + take]
                self._resets_done.add("bload")
                self.resets += 1
                self._boot()
                return i + take
        self.bl_buf += data[i:i + take]
        self.bl_last = now
        if len(self.bl_buf) == self.bl_n:
            self._bload_done()
        return i + take

    def poll(self, now: float | None = None) -> bytes:
        now = time.monotonic() if now is None else now
        if self.mode == "bload" and now - self.bl_last > P.BLOAD_TIMEOUT_S:
            self.mode = "cmd"
            self.db_pos = 0
            self._emit([P.ERR_BLOAD_TIMEOUT, P.READY])
        return self._take()

    def _bload_done(self) -> None:
        self.mode = "cmd"
        self.bloads += 1
        frame = bytearray(self.bl_buf)
        f = self.faults
        if f.corrupt_bload_every and self.bloads % f.corrupt_bload_every == 0:
            frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
        if P.crc32(bytes(frame)) != self.bl_crc:
            self.db_pos = 0
            self._emit([P.ERR_BLOAD_CRC, P.READY])
            return
        self.db_buf[:len(frame)] = frame
        self.db_size = self.db_pos = len(frame)
        self._emit([P.LOAD_DONE, P.READY])

    # ---- commands ----------------------------------------------------------------------------
    def _command(self, line: str, now: float) -> None:
        toks = line.split(" ")
        toks = [t for t in toks if t]
        self.log.append(line)
        cmd = toks[0] if toks else ""
        handler = getattr(self, f"_cmd_{cmd}", None) if cmd.isalpha() else None
        if handler is None:
            shown = _printable(cmd)  # echo printable ASCII only
            self._emit([P.ERR_UNKNOWN.format(tok=shown), P.READY])
            return
        try:
            lines = handler(toks[1:], now)
        except Exception as exc:  # noqa: BLE001 - a bug in a handler answers one error line, never a silent board
            lines = [f"e-[virtual board internal error in {cmd}: {type(exc).__name__}: {_printable(str(exc))[:120]}]"]
        if lines is not None:
            self._emit(lines + [P.READY])

    def _cmd_name(self, args, now):
        if self.faults.wrong_name:
            return ["m-name-acme-[modem 2.0]"]
        return [P.MSG_NAME.format(name=P.DUT_NAME)]

    def _cmd_profile(self, args, now):
        return [P.MSG_PROFILE.format(profile=P.PROFILE), P.MSG_MODEL.format(model=self.name)]

    def _cmd_help(self, args, now):
        return list(P.HELP_LINES)

    def _cmd_timestamp(self, args, now):
        return [self._timestamp()]

    def _cmd_info(self, args, now):
        info = {"model": self.name, "arena": self.ref.arena_size, "arena_used": self.arena_used,
                "input": self.in_bytes, "output": self.out_bytes, "clock_hz": 1_000_000_000,
                "timer": "host", "bin": 1, "max_frame": self.need, "input_format": self.input_format,
                "db_max": self.db_max, "results": self.results_kind, "energy": int(self.energy)}
        return [P.format_info(info)]

    def _cmd_db(self, args, now):
        if not args:
            return [P.ERR_DB_SUBCOMMAND]
        if args[0] == "load":
            if len(args) < 2:
                return [P.ERR_DB_LOAD_BYTES]
            n = P.atoi(args[1])
            if n <= 0:
                return [P.ERR_DB_LOAD_ZERO]
            if n > self.db_max:     # reference: prints the text, then overruns its buffer; we load nothing
                self.db_size = self.db_pos = 0
                return [P.ERR_DB_TOO_BIG.format(n=n, max=self.db_max)]
            self.db_size, self.db_pos = n, 0
            return [P.MSG_EXPECTING.format(n=n)]
        if args[0] == "print":
            return P.buffer_lines(bytes(self.db_buf[:self.db_size]))
        return self._db_hex(args[0])

    def _db_hex(self, hexs: str) -> list[str]:
        if len(hexs) % 2:
            return [P.ERR_HEX_ODD]
        for k in range(0, len(hexs), 2):
            pair = hexs[k:k + 2]
            if any(c not in "0123456789abcdefABCDEF" for c in pair):
                return [P.ERR_HEX_DIGIT.format(pair=_printable(pair))]
            if self.db_pos >= self.db_size:
                return []           # nothing announced, or beyond N: ignored (never stored)
            self.db_buf[self.db_pos] = int(pair, 16)
            self.db_pos += 1
            if self.db_pos == self.db_size:
                return [P.LOAD_DONE]    # the rest of this command's digits is disregarded
        return []

    def _cmd_bload(self, args, now):
        try:
            if len(args) != 2:
                raise ValueError
            n, crc = int(args[0]), int(args[1], 16)
        except ValueError:
            return [P.ERR_BLOAD_USAGE]
        if n != self.need:
            return [P.ERR_BLOAD_SIZE.format(n=n, need=self.need)]
        self.mode, self.bl_n, self.bl_crc, self.bl_buf, self.bl_last = "bload", n, crc, bytearray(), now
        self.db_pos = 0
        self._emit([P.BLOAD_READY])
        return None

    def _fault_on_infer(self) -> bool:
        """Injected faults at an `infer`; True when the command is swallowed."""
        f = self.faults
        if f.vanish_after is not None and self.infers >= f.vanish_after:
            self.mode = "gone"
            return True
        if f.silent_after is not None and self.infers >= f.silent_after:
            self.mode = "silent"
            return True
        reset_due = (f.reset_after is not None and self.infers == f.reset_after) or \
                    (f.reset_every and self.infers > 0 and self.infers % f.reset_every == 0)
        if reset_due and self.infers not in self._reset_done_at:
            self._reset_done_at.add(self.infers)
            self.resets += 1
            self._boot()
            return True
        return False

    def _not_loaded(self) -> str:
        return P.ERR_NOT_LOADED.format(have=min(self.db_pos, self.need), need=self.need)

    def _input_tensor(self, raw: bytes) -> np.ndarray:
        """The int8 input tensor from the loaded dataset-file bytes (the benchmark's input format)."""
        o_in = self.model.input
        return np.frombuffer(P.decode_input(raw, self.input_format, o_in.scale, o_in.zero_point), dtype=np.int8)

    def _cmd_infer(self, args, now):
        if self._fault_on_infer():
            return None
        n, w = P.DEFAULT_INFER_N, P.DEFAULT_WARMUP
        if args:
            n = P.atoi(args[0])
            if n <= 0:
                return [P.ERR_INFER_N]
            if len(args) > 1:
                w = P.atoi(args[1])
                if w < 0:
                    return [P.ERR_INFER_W]
        raw = self.input
        if raw is None:
            return [self._not_loaded()]
        x = self._input_tensor(raw)
        self._emit([P.MSG_WARMUP_START.format(w=w)])
        for _ in range(w):
            self.last_out = self.ref.run(x)
        self._emit([P.WARMUP_DONE, P.MSG_INFER_START.format(n=n), self._timestamp()])
        t0 = time.perf_counter_ns()
        for _ in range(n):
            self.last_out = self.ref.run(x)
        ticks = time.perf_counter_ns() - t0
        self.last_in = raw
        self._emit([self._timestamp(), P.MSG_CYCLES.format(ticks=ticks), P.INFER_DONE])
        self.infers += 1
        return self._results()

    def _cmd_prof(self, args, now):
        """Per-op host time (ns at clock_hz 1e9): each op as a one-op model (common.host_tflm)."""
        if args:
            return ["e-[usage: prof]"]
        raw = self.input
        if raw is None:
            return [self._not_loaded()]
        from ..common.host_tflm import op_host_times
        x = self._input_tensor(raw)
        self.ref.run(x)   # warm-up, as the firmware does
        t0 = time.perf_counter_ns()
        self.last_out = self.ref.run(x)
        total = time.perf_counter_ns() - t0
        self.last_in = raw
        ticks = op_host_times(self.model.data, x)
        return [f"m-prof-ops-{len(ticks)}", f"m-prof-ticks-[{','.join(map(str, ticks))}]",
                f"m-prof-total-{total}", "m-prof-done"]

    def _results(self) -> list[str]:
        q = self.last_out.astype(np.int32)
        o = self.model.output
        if self.results_kind == "mse":
            x = np.frombuffer(self.last_in, dtype="<f4") if self.input_format == "float32" else \
                (np.frombuffer(P.decode_input(self.last_in, self.input_format, 1.0, 0), dtype=np.int8)
                 .astype(np.float32) - self.model.input.zero_point) * self.model.input.scale
            vals = [P.mse_result(q, o.scale, o.zero_point, x)]
        else:
            deq = (q.astype(np.float32) - np.float32(o.zero_point)) * np.float32(o.scale)
            vals = [float(v) for v in deq]
        return ["m-results-[" + ",".join(P.format_result(v) for v in vals) + "]",
                "m-results-q-[" + ",".join(str(int(v)) for v in q) + "]"]

    def _cmd_results(self, args, now):
        if self.last_out is None:
            return [P.ERR_NO_RESULTS]
        return self._results()


def device_profile(mlperf: str | None = None, name: str | None = None) -> dict:
    """BoardEngine keyword arguments for `--mlperf BENCH` / `--name`: model name, input format, results."""
    if mlperf is None:
        return {"name": name, "input_format": "int8", "results": "dequantized"}
    if mlperf not in P.MLPERF_BENCHMARKS:
        raise BoardError(f"unknown MLPerf Tiny benchmark {mlperf!r} (known: {', '.join(P.MLPERF_BENCHMARKS)})")
    b = P.MLPERF_BENCHMARKS[mlperf]
    return {"name": name or mlperf, "input_format": b["input"], "results": b["results"]}


class VirtualBoard:
    """A BoardEngine served in a background thread over a pty (default) or TCP.

    with VirtualBoard("m.tflite", faults=Faults(reset_after=3)) as vb:  url = vb.url

    Like a powered board, the device boots once: over TCP the banner goes to the first connection, and a
    reconnecting host finds the same session (no reboot, no banner); output while no host is connected is
    lost, as on a UART nobody listens to.
    """

    def __init__(self, model: str | os.PathLike | ModelInfo, faults: Faults | None = None,
                 transport: str = "pty", baud: int = 0, tcp_port: int = 0, arena_size: int | None = None,
                 mlperf: str | None = None, name: str | None = None, energy: bool = False):
        self.model = model if isinstance(model, ModelInfo) else load_model(model)
        self.engine = BoardEngine(self.model, faults, arena_size=arena_size, energy=energy,
                                  sink=self._send, **device_profile(mlperf, name))
        if transport not in ("pty", "tcp"):
            raise BoardError(f"unknown transport {transport!r}")
        self.transport, self.baud, self.tcp_port = transport, baud, tcp_port
        self.url: str | None = None
        self._stop = threading.Event()
        self.gone = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._fds: list[int] = []
        self._lsock: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._pending = bytearray()
        self.connections = 0

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> str:
        if self.transport == "pty":
            import tty
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self._fds = [master, slave]
            self.url = os.ttyname(slave)
            self.engine.boot()
            target = self._run_pty
        else:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                ls.bind(("127.0.0.1", self.tcp_port))
            except OSError as exc:
                ls.close()
                raise BoardError(f"cannot listen on 127.0.0.1:{self.tcp_port}: {exc.strerror}") from None
            ls.listen(1)
            self._lsock = ls
            self.url = f"socket://127.0.0.1:{ls.getsockname()[1]}"
            target = self._run_tcp
        self._thread = threading.Thread(target=self._guard, args=(target,), name=f"virtual-board {self.url}",
                                        daemon=True)
        self._thread.start()
        return self.url

    def _guard(self, target) -> None:
        """A failure of the serving thread is kept (`error`) and ends `serve_forever`, never silently."""
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the owner of the board
            self.error = exc
            self.gone.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close()

    def __enter__(self) -> "VirtualBoard":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _close(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        if self._lsock is not None:
            try:
                self._lsock.close()
            except OSError:
                pass
            self._lsock = None

    def _pace(self, nbytes: int) -> None:
        """Emulate the UART line rate (10 bits per byte) when a baud rate is set."""
        if self.baud:
            time.sleep(nbytes * 10.0 / self.baud)

    # ---- output: every reply line leaves as soon as the engine produces it ----------------------
    def _send(self, data: bytes) -> None:
        if self.transport == "tcp":
            conn = self._conn
            if conn is None:
                return                  # nobody connected: the bytes are lost, as on a UART
            self._pace(len(data))
            try:
                conn.sendall(data)
            except OSError:
                pass
            return
        self._pending += data
        self._flush_pty(block=True)

    def _flush_pty(self, block: bool) -> None:
        m = self._master
        while self._pending and not self._stop.is_set():
            try:
                k = os.write(m, bytes(self._pending[:4096]))
                self._pace(k)
                del self._pending[:k]
            except BlockingIOError:
                if not block:
                    return
                select.select([], [m], [], 0.05)
            except OSError:
                self._pending.clear()
                return

    # ---- pty ---------------------------------------------------------------------------------
    def _run_pty(self) -> None:
        m = self._master
        try:
            while not self._stop.is_set():
                wl = [m] if self._pending else []
                r, _, _ = select.select([m], wl, [], 0.02)
                if r:
                    try:
                        data = os.read(m, 65536)
                    except OSError as exc:
                        if exc.errno in (errno.EAGAIN, errno.EIO):
                            data = b""
                        else:
                            raise
                    if data:
                        self._pace(len(data))
                        self.engine.feed(data)
                self.engine.poll()
                if self.engine.mode == "gone":
                    break
                self._flush_pty(block=False)
        finally:
            if self.engine.mode == "gone":
                self._close()
                self.gone.set()

    # ---- tcp ---------------------------------------------------------------------------------
    def _run_tcp(self) -> None:
        ls = self._lsock
        ls.settimeout(0.05)
        try:
            while not self._stop.is_set() and self.engine.mode != "gone":
                try:
                    conn, _ = ls.accept()
                except socket.timeout:
                    self.engine.poll()
                    continue
                except OSError:
                    break
                with conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._conn = conn
                    self.connections += 1
                    if self.connections == 1:
                        self.engine.boot()      # power-on banner: only the first host sees it
                    self._serve_conn(conn)
                    self._conn = None
        finally:
            if self.engine.mode == "gone":
                self._close()
                self.gone.set()

    def _serve_conn(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([conn], [], [], 0.02)
            if r:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    return
                self._pace(len(data))
                self.engine.feed(data)
            self.engine.poll()
            if self.engine.mode == "gone":
                return


def serve_forever(model: str, port_file: str | None = None, faults: list[str] | None = None, baud: int = 0,
                  tcp_port: int | None = None, quiet: bool = False, mlperf: str | None = None,
                  name: str | None = None, energy: bool = False) -> int:
    """`netaug-mcu virtual-board`: run until SIGINT/SIGTERM (or until a vanish fault closes the port)."""
    import signal
    fl = Faults.parse(faults)
    vb = VirtualBoard(model, faults=fl, transport="tcp" if tcp_port is not None else "pty", baud=baud,
                      tcp_port=tcp_port or 0, mlperf=mlperf, name=name, energy=energy)
    url = vb.start()
    if port_file:
        from ..common.fsio import atomic_write
        try:
            atomic_write(port_file, url + "\n")
        except BaseException:
            vb.stop()
            raise
    print(url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and not vb.gone.is_set():
        stop.wait(0.1)
    vb.stop()
    if port_file and os.path.exists(port_file):
        try:
            os.unlink(port_file)
        except OSError:
            pass
    if vb.error is not None:
        raise BoardError(f"the virtual board's serving thread failed: {type(vb.error).__name__}: {vb.error}")
    if not quiet:
        e = vb.engine
        extra = f", {len(e.pin_log)} timestamp pulses (energy mode, logged)" if energy else ""
        print(f"virtual board stopped: {e.infers} inferences, {e.bloads} binary frames, {e.resets} resets{extra}",
              flush=True)
    return 0
