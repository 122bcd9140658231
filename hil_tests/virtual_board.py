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
    """Protocol state machine of one device. feed() takes received bytes, returns bytes to send."""

    def __init__(self, model: ModelInfo, faults: Faults | None = None, arena_size: int | None = None):
        self.model = model
        self.faults = faults or Faults()
        self.ref = host_reference(model, arena_size=arena_size)
        self.arena_used = self.ref.arena_used() or 0
        self.in_bytes = model.input.nbytes
        self.out_bytes = model.output.nbytes
        self.rng = random.Random(self.faults.seed)
        self.t_boot = time.perf_counter_ns()
        self.mode = "cmd"          # cmd | bload | silent | gone
        self.infers = 0            # answered infer commands (fault counters)
        self.bloads = 0            # received binary frames
        self.lines_out = 0
        self.resets = 0
        self.noise_bursts = 0      # injected garbage bursts
        self._reset_done_at: set[int] = set()
        self._resets_done: set[str] = set()
        self.log: list[str] = []   # received commands (tests inspect it)
        self._clear()

    # ---- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.cmd = bytearray()
        self.cmd_overflow = False
        self.db_expect: int | None = None
        self.db_buf = bytearray()
        self.input: bytes | None = None
        self.bl_n = 0
        self.bl_crc = 0
        self.bl_buf = bytearray()
        self.bl_last = 0.0
        self.last_out: np.ndarray | None = None

    def boot(self) -> bytes:
        self._clear()
        self.mode = "cmd"
        return self._lines([P.BANNER_FIRST, f"m-lap-us-{self._us()}", P.INIT_DONE, P.READY])

    def _us(self) -> int:
        return (time.perf_counter_ns() - self.t_boot) // 1000

    def _lines(self, lines: list[str]) -> bytes:
        out = bytearray()
        f = self.faults
        for line in lines:
            self.lines_out += 1
            if f.garbage_lines_every and self.lines_out % f.garbage_lines_every == 0:
                out += self._noise() + b"\r\n"
            if f.garbage_every and self.lines_out % f.garbage_every == 0:
                out += self._noise()
            out += line.encode("ascii", "replace") + b"\r\n"   # the protocol is ASCII (echoes are sanitised)
        return bytes(out)

    def _noise(self) -> bytes:
        # Line noise: high bytes and control characters, never a line end or the `m-`/`e-` markers.
        self.noise_bursts += 1
        alphabet = [b for b in range(256) if b not in (0x0A, 0x0D, ord("m"), ord("e"), ord("-"))]
        return bytes(self.rng.choice(alphabet) for _ in range(self.rng.randint(3, 12)))

    # ---- input -------------------------------------------------------------------------------
    def feed(self, data: bytes, now: float | None = None) -> bytes:
        now = time.monotonic() if now is None else now
        out = bytearray()
        i = 0
        while i < len(data):
            if self.mode in ("silent", "gone"):
                break
            if self.mode == "bload":
                take = min(self.bl_n - len(self.bl_buf), len(data) - i)
                rb = self.faults.reset_in_bload
                if rb and self.bloads + 1 == rb and "bload" not in self._resets_done:
                    take = min(take, max(0, self.bl_n // 2 - len(self.bl_buf)))
                    if len(self.bl_buf) + take >= self.bl_n // 2:
                        self.bl_buf += data[i:i + take]
                        i += take
                        self._resets_done.add("bload")
                        self.resets += 1
                        out += self.boot()
                        continue
                self.bl_buf += data[i:i + take]
                i += take
                self.bl_last = now
                if len(self.bl_buf) == self.bl_n:
                    out += self._bload_done()
                continue
            b = data[i]
            i += 1
            if b == ord(P.TERMINATOR):
                line = self.cmd.decode("latin-1")
                overflow = self.cmd_overflow
                self.cmd.clear()
                self.cmd_overflow = False
                if overflow:
                    out += self._lines(["e-[command too long]", P.READY])
                else:
                    out += self._command(line, now)
            elif len(self.cmd) >= P.MAX_COMMAND:
                self.cmd_overflow = True
            else:
                self.cmd.append(b)
        return bytes(out)

    def poll(self, now: float | None = None) -> bytes:
        now = time.monotonic() if now is None else now
        if self.mode == "bload" and now - self.bl_last > P.BLOAD_TIMEOUT_S:
            self.mode = "cmd"
            self.input = None
            return self._lines(["e-[bload timeout]", P.READY])
        return b""

    def _bload_done(self) -> bytes:
        self.mode = "cmd"
        self.bloads += 1
        frame = bytearray(self.bl_buf)
        f = self.faults
        if f.corrupt_bload_every and self.bloads % f.corrupt_bload_every == 0:
            frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
        if P.crc32(bytes(frame)) != self.bl_crc:
            self.input = None
            return self._lines(["e-[bload crc mismatch]", P.READY])
        self.input = bytes(frame)
        self.db_expect = None
        return self._lines([P.LOAD_DONE, P.READY])

    # ---- commands ----------------------------------------------------------------------------
    def _command(self, line: str, now: float) -> bytes:
        toks = line.split()
        self.log.append(line)
        cmd = toks[0] if toks else ""
        handler = getattr(self, f"_cmd_{cmd}", None) if cmd.isalpha() else None
        if handler is None:
            return self._lines([f"e-[Unknown command: {_printable(cmd[:24])}]", P.READY])
        return handler(toks[1:], now)

    def _cmd_name(self, args, now):
        if self.faults.wrong_name:
            return self._lines(["m-name-acme-[modem 2.0]", P.READY])
        return self._lines([f"m-name-dut-[{P.DUT_NAME}]", P.READY])

    def _cmd_profile(self, args, now):
        return self._lines([f"m-profile-[{P.PROFILE}]", f"m-model-[{self.model.name}]", P.READY])

    def _cmd_timestamp(self, args, now):
        return self._lines([f"m-lap-us-{self._us()}", P.READY])

    def _cmd_info(self, args, now):
        info = {"model": self.model.name, "arena": self.ref.arena_size, "arena_used": self.arena_used,
                "input": self.in_bytes, "output": self.out_bytes, "clock_hz": 1_000_000_000,
                "timer": "host", "bin": 1, "max_frame": self.in_bytes}
        return self._lines([P.format_info(info), P.READY])

    def _cmd_db(self, args, now):
        if len(args) == 2 and args[0] == "load":
            try:
                n = _u32(args[1])
            except ValueError:
                return self._lines(["e-[Command 'db load' requires the # of bytes]", P.READY])
            if n != self.in_bytes:
                return self._lines([f"e-[db load size {n} != input bytes {self.in_bytes}]", P.READY])
            self.db_expect, self.db_buf, self.input = n, bytearray(), None
            return self._lines([f"m-[Expecting {n} bytes]", P.READY])
        if len(args) != 1:
            return self._lines(["e-[Command 'db' needs 'load <N>' or hex data]", P.READY])
        if self.db_expect is None:
            return self._lines(["e-[db: no 'db load' in progress]", P.READY])
        hexs = args[0]
        if len(hexs) % 2:
            return self._lines(["e-[Insufficent number of hex digits]", P.READY])
        try:
            data = bytes.fromhex(hexs)
        except ValueError:
            bad = next(hexs[i:i + 2] for i in range(0, len(hexs), 2)
                       if any(c not in "0123456789abcdefABCDEF" for c in hexs[i:i + 2]))
            return self._lines([f"e-[Invalid hex digit '{_printable(bad)}']", P.READY])
        if len(self.db_buf) + len(data) > self.db_expect:
            return self._lines([f"e-[db data beyond {self.db_expect} bytes]", P.READY])
        self.db_buf += data
        if len(self.db_buf) == self.db_expect:
            self.input, self.db_expect = bytes(self.db_buf), None
            return self._lines([P.LOAD_DONE, P.READY])
        return self._lines([P.READY])

    def _cmd_bload(self, args, now):
        try:
            n, crc = _u32(args[0]), _hex32(args[1])
            if len(args) != 2:
                raise ValueError
        except (ValueError, IndexError):
            return self._lines(["e-[bload needs <N> <crc32 hex>]", P.READY])
        if n != self.in_bytes:
            return self._lines([f"e-[bload size {n} != input bytes {self.in_bytes}]", P.READY])
        self.mode, self.bl_n, self.bl_crc, self.bl_buf, self.bl_last = "bload", n, crc, bytearray(), now
        self.input = None
        return self._lines([P.BLOAD_READY])

    def _cmd_infer(self, args, now):
        f = self.faults
        if f.vanish_after is not None and self.infers >= f.vanish_after:
            self.mode = "gone"
            return b""
        if f.silent_after is not None and self.infers >= f.silent_after:
            self.mode = "silent"
            return b""
        reset_due = (f.reset_after is not None and self.infers == f.reset_after) or \
                    (f.reset_every and self.infers > 0 and self.infers % f.reset_every == 0)
        if reset_due and self.infers not in self._reset_done_at:
            self._reset_done_at.add(self.infers)
            self.resets += 1
            return self.boot()
        try:
            n = _u32(args[0]) if args else 1
            w = _u32(args[1]) if len(args) > 1 else 0
            if len(args) > 2:
                raise ValueError("too many arguments")
        except ValueError:
            return self._lines(["e-[infer needs <N> [<W>]]", P.READY])
        if n < 1:
            return self._lines(["e-[Inference iterations must be >0]", P.READY])
        if w < 0:
            return self._lines(["e-[Inference warmup must be >=0]", P.READY])
        if self.input is None:
            return self._lines(["e-[input buffer empty]", P.READY])
        x = np.frombuffer(self.input, dtype=np.int8)
        out = [f"m-warmup-start-{w}"]
        for _ in range(w):
            self.last_out = self.ref.run(x)
        out += ["m-warmup-done", f"m-infer-start-{n}", f"m-lap-us-{self._us()}"]
        t0 = time.perf_counter_ns()
        for _ in range(n):
            self.last_out = self.ref.run(x)
        ticks = time.perf_counter_ns() - t0
        out += [f"m-lap-us-{self._us()}", f"m-infer-cycles-{ticks}", P.INFER_DONE]
        self.infers += 1
        return self._lines(out + self._results() + [P.READY])

    def _cmd_prof(self, args, now):
        """Per-op host time (ns at clock_hz 1e9): each op as a one-op model (common.host_tflm)."""
        if args:
            return self._lines(["e-[usage: prof]", P.READY])
        if self.input is None:
            return self._lines(["e-[input buffer empty]", P.READY])
        from ..common.host_tflm import op_host_times
        x = np.frombuffer(self.input, dtype=np.int8)
        self.ref.run(x)   # warm-up, as the firmware does
        t0 = time.perf_counter_ns()
        self.last_out = self.ref.run(x)
        total = time.perf_counter_ns() - t0
        ticks = op_host_times(self.model.data, x)
        return self._lines([f"m-prof-ops-{len(ticks)}", f"m-prof-ticks-[{','.join(map(str, ticks))}]",
                            f"m-prof-total-{total}", "m-prof-done", P.READY])

    def _results(self) -> list[str]:
        q = self.last_out.astype(np.int32)
        o = self.model.output
        deq = (q - o.zero_point) * o.scale
        return ["m-results-[" + ",".join(f"{v:0.3f}" for v in deq) + "]",
                "m-results-q-[" + ",".join(str(int(v)) for v in q) + "]"]

    def _cmd_results(self, args, now):
        if self.last_out is None:
            return self._lines(["e-[no results yet]", P.READY])
        return self._lines(self._results() + [P.READY])


class VirtualBoard:
    """A BoardEngine served in a background thread over a pty (default) or TCP.

    with VirtualBoard("m.tflite", faults=Faults(reset_after=3)) as vb:  url = vb.url
    """

    def __init__(self, model: str | os.PathLike | ModelInfo, faults: Faults | None = None,
                 transport: str = "pty", baud: int = 0, tcp_port: int = 0, arena_size: int | None = None):
        self.model = model if isinstance(model, ModelInfo) else load_model(model)
        self.engine = BoardEngine(self.model, faults, arena_size=arena_size)
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
            self._pending = bytearray(self.engine.boot())
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

    # ---- pty ---------------------------------------------------------------------------------
    def _run_pty(self) -> None:
        m = self._master
        try:
            while not self._stop.is_set():
                wl = [m] if self._pending else []
                r, w, _ = select.select([m], wl, [], 0.02)
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
                        self._pending += self.engine.feed(data)
                self._pending += self.engine.poll()
                if self.engine.mode == "gone":
                    break
                if self._pending and (w or not wl):
                    self._pace(len(self._pending))
                    try:
                        k = os.write(m, bytes(self._pending))
                        del self._pending[:k]
                    except BlockingIOError:
                        pass
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
                    continue
                except OSError:
                    break
                with conn:
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    pending = bytearray(self.engine.boot())
                    while not self._stop.is_set():
                        r, _, _ = select.select([conn], [], [], 0.02)
                        if r:
                            try:
                                data = conn.recv(65536)
                            except OSError:
                                data = b""
                            if not data:
                                break
                            self._pace(len(data))
                            pending += self.engine.feed(data)
                        pending += self.engine.poll()
                        if self.engine.mode == "gone":
                            break
                        if pending:
                            self._pace(len(pending))
                            try:
                                conn.sendall(bytes(pending))
                            except OSError:
                                break
                            pending.clear()
        finally:
            if self.engine.mode == "gone":
                self._close()
                self.gone.set()


def serve_forever(model: str, port_file: str | None = None, faults: list[str] | None = None, baud: int = 0,
                  tcp_port: int | None = None, quiet: bool = False) -> int:
    """`netaug-mcu virtual-board`: run until SIGINT/SIGTERM (or until a vanish fault closes the port)."""
    import signal
    fl = Faults.parse(faults)
    vb = VirtualBoard(model, faults=fl, transport="tcp" if tcp_port is not None else "pty", baud=baud,
                      tcp_port=tcp_port or 0)
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
        print(f"virtual board stopped: {e.infers} inferences, {e.bloads} binary frames, {e.resets} resets",
              flush=True)
    return 0
