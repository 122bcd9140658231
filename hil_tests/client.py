"""Host client for the device protocol over any pyserial URL (/dev/ttyACM0, a pty path, socket://host:port,
rfc2217://host:port). MLPerf Tiny text mode always; binary `bload` when `info%` advertises `bin=1`.

Reliability: every command has a timeout; a boot banner seen mid-command (device reset) raises DeviceReset;
noise before a message on a line is dropped; a sample (load + infer) is retried as a whole after a reset,
a timeout, a CRC reject or a garbled reply, after re-synchronising on a `name%` round trip.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..common.errors import UserError
from . import protocol as P


class HilError(UserError):
    """User-facing HIL error: one line, non-zero exit."""
    exit_code = 2


class PortError(HilError):
    pass


class DeviceTimeout(HilError):
    pass


class DeviceReset(HilError):
    pass


class ProtocolError(HilError):
    pass


class WrongDevice(HilError):
    pass


@dataclass
class Reply:
    lines: list[str]

    @property
    def errors(self) -> list[str]:
        return [ln for ln in self.lines if P.is_error(ln)]

    def find(self, prefix: str) -> str | None:
        return next((ln for ln in self.lines if ln.startswith(prefix)), None)


@dataclass
class Stats:
    commands: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    resets: int = 0
    timeouts: int = 0
    crc_retries: int = 0
    garbled: int = 0
    resyncs: int = 0
    noise_lines: int = 0
    events: list[str] = field(default_factory=list)


def _open_serial(url: str, baud: int, exclusive: bool):
    import serial
    try:
        ser = serial.serial_for_url(url, do_not_open=True, baudrate=baud, timeout=0.05,
                                     write_timeout=max(5.0, 700000.0 / max(baud, 1)))  # a 64 KB frame at 10 bits/byte
        if hasattr(ser, "exclusive") and "://" not in url:
            ser.exclusive = exclusive
        ser.open()
        sock = getattr(ser, "_socket", None)
        if sock is not None:   # small request/reply protocol: no Nagle delays
            import socket
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ser
    except serial.SerialException as exc:
        msg = str(exc)
        low = msg.lower()
        if "no such file" in low or "could not open port" in low and "errno 2" in low:
            raise PortError(f"no such port: {url}") from None
        if "exclusively lock" in low or "resource temporarily unavailable" in low or "busy" in low:
            raise PortError(f"port busy (opened by another program): {url}") from None
        if "refused" in low:
            raise PortError(f"connection refused: {url} (is the board/QEMU/virtual board running?)") from None
        if "permission denied" in low:
            raise PortError(f"permission denied opening {url} (add yourself to the dialout group?)") from None
        raise PortError(f"cannot open {url}: {msg.splitlines()[0] if msg else type(exc).__name__}") from None
    except ValueError as exc:
        raise PortError(f"cannot open {url}: {exc}") from None


# info% fields the host computes with: integers in a sane range (a garbled `max_frame=10**12` would
# otherwise become a 1 TB filler write in resync, `bin=x` a ValueError)
_INFO_INTS = {"bin": 1, "input": 1 << 24, "output": 1 << 24, "max_frame": 1 << 24, "clock_hz": 1 << 40,
              "arena": 1 << 32, "arena_used": 1 << 32}


def _checked_info(info: dict) -> dict:
    for key, top in _INFO_INTS.items():
        v = info.get(key)
        if v is not None and (not isinstance(v, int) or not 0 <= v <= top):
            raise ValueError(f"{key}={str(v)[:20]} is not an integer in 0..{top}")
    return info


class Client:
    def __init__(self, url: str, baud: int = 115200, timeout: float = 5.0, infer_timeout: float = 60.0,
                 exclusive: bool = True, binary: bool | None = None, retries: int = 5,
                 resync_quiet: float = 0.6):
        self.url, self.baud = url, baud
        self.timeout, self.infer_timeout = timeout, infer_timeout
        self.exclusive = exclusive
        self.want_binary = binary       # None: use it when the device offers it
        self.retries = retries
        self.resync_quiet = resync_quiet
        self.ser = None
        self.buf = bytearray()
        self.info: dict = {}
        self.name: str | None = None
        self.binary = False
        self.stats = Stats()

    # ---- low level ---------------------------------------------------------------------------
    def open(self) -> "Client":
        self.ser = _open_serial(self.url, self.baud, self.exclusive)
        return self

    def close(self) -> None:
        if self.ser is not None:
            try:
                self.ser.close()
            except Exception:  # noqa: BLE001
                pass
            self.ser = None

    def __enter__(self) -> "Client":
        if self.ser is None:
            self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _io_error(self, exc: Exception) -> PortError:
        return PortError(f"port {self.url} vanished or failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")

    def write(self, data: bytes) -> None:
        import serial
        try:
            self.ser.write(data)
            self.ser.flush()
        except serial.SerialTimeoutException:
            self.stats.timeouts += 1
            raise DeviceTimeout(f"device {self.url} does not take input (write timed out)") from None
        except Exception as exc:  # noqa: BLE001 - SerialException, OSError, termios.error (EIO on a dead pty)
            raise self._io_error(exc) from None
        self.stats.bytes_out += len(data)

    def _write_filler(self, data: bytes) -> bool:
        """Write that reports (False) instead of raising when the device does not take the bytes."""
        import serial
        old = self.ser.write_timeout
        try:
            self.ser.write_timeout = 2.0
            self.ser.write(data)
            self.stats.bytes_out += len(data)
            return True
        except serial.SerialTimeoutException:
            return False
        except Exception as exc:  # noqa: BLE001
            raise self._io_error(exc) from None
        finally:
            try:
                self.ser.write_timeout = old
            except Exception:  # noqa: BLE001
                pass

    def _fill(self, wait: float) -> bool:
        """Read what is there (waiting up to the port's 0.05 s for the first byte). True if bytes arrived."""
        try:
            # (setting ser.timeout per call would re-run tcsetattr on every read; the port keeps 0.05 s)
            n = self.ser.in_waiting
            data = self.ser.read(n if n else 1)
            sock = getattr(self.ser, "_socket", None)   # socket:// (in_waiting is only 0/1 there)
            if data and sock is not None:
                try:
                    data += sock.recv(65536)                # non-blocking socket: what has arrived
                except (BlockingIOError, InterruptedError):
                    pass
            elif data and self.ser.in_waiting:
                data += self.ser.read(self.ser.in_waiting)
        except Exception as exc:  # noqa: BLE001 - SerialException, OSError, termios.error (EIO on a dead pty)
            raise self._io_error(exc) from None
        if data:
            self.stats.bytes_in += len(data)
            self.buf += data
            return True
        return False

    def readline(self, deadline: float) -> str:
        """Next protocol message (noise skipped). DeviceTimeout at the deadline."""
        while True:
            nl = self.buf.find(b"\n")
            while nl >= 0:
                raw = bytes(self.buf[:nl + 1])
                del self.buf[:nl + 1]
                line = P.clean_line(raw)
                if line is not None:
                    return line
                if raw.strip(b"\r\n"):
                    self.stats.noise_lines += 1
                    self.last_noise = raw[:48]  # quoted when the device never answers properly
                nl = self.buf.find(b"\n")
            now = time.monotonic()
            if now >= deadline:
                raise DeviceTimeout(f"no reply from {self.url} within the timeout")
            self._fill(min(0.1, deadline - now))

    def command(self, cmd: str, timeout: float | None = None, payload: bytes | None = None) -> Reply:
        """Send one command, collect its reply up to `m-ready`.

        For `bload`, `payload` is sent after `m-bload-ready`. A boot banner in the reply -> DeviceReset
        (after consuming the banner's own m-ready)."""
        timeout = self.timeout if timeout is None else timeout
        self.write(P.command_bytes(cmd))
        self.stats.commands += 1
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        banner = False
        while True:
            try:
                line = self.readline(deadline)
            except DeviceTimeout:
                self.stats.timeouts += 1
                raise DeviceTimeout(f"no complete reply to '{cmd.split()[0]}' from {self.url} within "
                                    f"{timeout:g} s") from None
            if line in P.BANNERS or line == P.INIT_DONE:
                banner = True
            if banner:
                if line == P.READY:
                    self.stats.resets += 1
                    self.stats.events.append(f"reset during '{cmd.split()[0]}'")
                    raise DeviceReset(f"device {self.url} reset during '{cmd.split()[0]}'")
                continue
            if line == P.READY:
                return Reply(lines)
            lines.append(line)
            if line == P.BLOAD_READY and payload is not None:
                self.write(payload)
                payload = None
                deadline = time.monotonic() + timeout

    # ---- session -----------------------------------------------------------------------------
    def drain(self, quiet: float, limit: float) -> None:
        """Discard input until the line has been quiet for `quiet` s (at most `limit` s)."""
        end = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < end:
            if self._fill(min(0.05, quiet)):
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                break
        if self.buf.strip():
            self.last_noise = bytes(self.buf[:48])
        self.buf.clear()

    def resync(self, what: str = "resync") -> None:
        """Bring host and device back in step: flush the device's command buffer, wait for quiet, then one
        `name%` round trip whose reply must be complete and well-formed."""
        self.stats.resyncs += 1
        heard_before, self.last_noise = self.stats.bytes_in, b""
        last_exc: Exception | None = None
        for attempt in range(4):
            # '%' ends any partial command on the device; the quiet period outlasts a 500 ms bload timeout.
            # If that did not work twice the device may still be inside a binary frame (QEMU under -icount counts
            # the timeout in slow virtual time): spaces complete the frame (-> CRC reject) and otherwise
            # only overflow the command buffer (-> one `command too long`), whatever state it is in.
            if attempt >= 2:
                frame = int(self.info.get("max_frame") or 0)
                if not self._write_filler(b" " * (frame + 1 if frame else 8192 * (attempt - 1))):
                    last_exc = DeviceTimeout("device does not take input")
                    break
            try:
                self.write(b"%")
                # a short quiet first (a stale reply arriving later only fails this attempt's check)
                quiet = min(0.2, self.resync_quiet) if attempt == 0 else self.resync_quiet
                self.drain(quiet, limit=max(self.timeout, 3 * self.resync_quiet))
                # first try short: a device stuck in a frame is then freed by the filler of the next attempt
                rep = self.command("name", timeout=min(self.timeout, 3.0) if attempt < 2 else self.timeout)
            except DeviceReset as exc:   # banner arrived during sync: sync again
                last_exc = exc
                continue
            except DeviceTimeout as exc:
                last_exc = exc
                continue
            if rep.find("m-name-dut-") is not None:
                self.name = P.bracket(rep.find("m-name-dut-"), "m-name-dut")
                return
            if any(ln.startswith("m-name-") for ln in rep.lines):
                raise WrongDevice(f"{self.url} is not an MLPerf Tiny/netaug-mcu device: it answered "
                                  f"'{next(ln for ln in rep.lines if ln.startswith('m-name-'))}' to name% "
                                  f"(expected m-name-dut-[...])")
            last_exc = ProtocolError(f"unexpected reply to name%: {rep.lines[:3]}")
        heard = self.stats.bytes_in - heard_before
        if isinstance(last_exc, DeviceTimeout) and heard and self.last_noise:  # garbage is not silence
            sample = self.last_noise
            raise DeviceTimeout(f"device {self.url} sent {heard} B but no protocol reply to name% "
                                f"within {self.timeout:g} s, e.g. {sample!r} ({what}; wrong baud rate or not "
                                f"a netaug-mcu/MLPerf Tiny firmware?)")
        if isinstance(last_exc, DeviceTimeout):
            raise DeviceTimeout(f"device {self.url} is silent: no answer to name% within {self.timeout:g} s "
                                f"({what}; wrong port, wrong baud rate, or the firmware is not running?)")
        raise WrongDevice(f"no m-name-dut- answer from {self.url} ({what}): {last_exc}")

    def connect(self) -> "Client":
        """Open, sync, check identity, read `info%`. Raises WrongDevice for a device not speaking the protocol."""
        if self.ser is None:
            self.open()
        try:
            self.resync("connect")
            rep = self.command("info")
            body = P.bracket(rep.find("m-info-") or "", "m-info")
            if body is None:
                raise WrongDevice(f"{self.url} answers name% but not info% (needs the netaug-mcu firmware): "
                                  f"{rep.lines[:2]}")
            try:
                self.info = _checked_info(P.parse_info(body))
            except ValueError as exc:
                raise ProtocolError(f"{self.url}: bad info% reply: {exc}") from None
            offered = int(self.info.get("bin", 0)) == 1
            self.binary = offered if self.want_binary is None else (self.want_binary and offered)
        except BaseException:
            self.close()
            raise
        return self

    def check_model(self, model) -> None:
        """Model and device must agree on input/output sizes."""
        dev_in, dev_out = self.info.get("input"), self.info.get("output")
        if dev_in is not None and int(dev_in) != model.input.nbytes:
            raise HilError(f"model and device disagree on the input: {model.path.name} has input "
                           f"{'x'.join(map(str, model.input.shape))} int8 = {model.input.nbytes} bytes, the device "
                           f"on {self.url} (model '{self.info.get('model')}') expects {dev_in} bytes")
        if dev_out is not None and int(dev_out) != model.output.nbytes:
            raise HilError(f"model and device disagree on the output: {model.path.name} has "
                           f"{model.output.nbytes} output bytes, the device on {self.url} has {dev_out}")
        self.input_quant = (model.input.scale, model.input.zero_point)

    @property
    def input_format(self) -> str:
        """How the device reads its db buffer (info% input_format; int8 tensor bytes when not given)."""
        return str(self.info.get("input_format", "int8"))

    def wire_input(self, tensor: bytes) -> bytes:
        """int8 input tensor bytes -> the buffer bytes this device converts back to them (--mlperf builds
        read uint8 or float32 dataset files)."""
        if self.input_format == "int8":
            return tensor
        if self.input_format not in P.INPUT_FORMATS:
            raise ProtocolError(f"{self.url}: unknown input_format {self.input_format!r} in info%")
        scale, zp = getattr(self, "input_quant", (None, None))
        if scale is None:
            raise HilError(f"{self.url} reads {self.input_format} input: check_model() first")
        return P.encode_input(tensor, self.input_format, scale, zp)

    # ---- loading and inference ---------------------------------------------------------------
    def load(self, data: bytes) -> None:
        """Load the input buffer (binary with CRC retries, else hex)."""
        if self.binary:
            for attempt in range(self.retries):
                rep = self.command(P.bload_command(data), payload=data)
                if rep.find(P.LOAD_DONE) is not None and not rep.errors:
                    return
                if any("crc" in e for e in rep.errors):
                    self.stats.crc_retries += 1
                    self.stats.events.append("bload crc mismatch, retried")
                    continue
                raise ProtocolError(f"bload rejected: {rep.errors or rep.lines}")
            raise ProtocolError(f"bload failed {self.retries} times (CRC mismatch)")
        cmds = P.db_commands(data)
        rep = self.command(cmds[0])
        if rep.errors or not any(ln.startswith("m-[Expecting") for ln in rep.lines):
            raise ProtocolError(f"db load rejected: {rep.errors or rep.lines}")
        for i, c in enumerate(cmds[1:]):
            rep = self.command(c)
            if rep.errors:
                raise ProtocolError(f"db rejected: {rep.errors}")
        if rep.find(P.LOAD_DONE) is None:
            raise ProtocolError("db: no m-load-done after the last chunk")

    def infer(self, n: int = 1, warmup: int = 0) -> dict:
        """`infer n w%` on the loaded buffer -> {'q': int8 array, 'values', 't0','t1','cycles'}."""
        rep = self.command(f"infer {n} {warmup}", timeout=self.infer_timeout)
        if rep.errors:
            raise ProtocolError(f"infer failed: {rep.errors[0]}")
        laps = [v for v in (P.parse_lap(ln) for ln in rep.lines) if v is not None]
        cyc = next((v for v in (P.parse_cycles(ln) for ln in rep.lines) if v is not None), None)
        q_line = rep.find("m-results-q-[")
        if rep.find(P.INFER_DONE) is None or q_line is None or len(laps) < 2:
            raise ProtocolError(f"incomplete infer reply ({len(rep.lines)} lines)")
        try:
            body = P.bracket(q_line, "m-results-q")
            if body is None:           # 'm-results-q-[1,2' without its closing bracket
                raise ValueError("no closing bracket")
            q = P.parse_int_list(body)
        except (ValueError, TypeError):
            raise ProtocolError(f"garbled results line: {q_line[:60]}") from None
        out_n = self.info.get("output")
        if out_n is not None and len(q) != int(out_n) or any(v < -128 or v > 127 for v in q):
            raise ProtocolError(f"results-q has {len(q)} values / out of int8 range")
        return {"q": np.asarray(q, dtype=np.int8), "t0": laps[-2], "t1": laps[-1], "cycles": cyc}

    def classify(self, data: bytes) -> np.ndarray:
        """One sample: load + infer + raw int8 outputs, retried as a whole on reset/timeout/CRC/garble."""
        last: Exception | None = None
        for attempt in range(self.retries):
            try:
                self.load(self.wire_input(data))
                return self.infer(1, 0)["q"]
            except (DeviceReset, DeviceTimeout, ProtocolError) as exc:
                last = exc
                if isinstance(exc, ProtocolError):
                    self.stats.garbled += 1
                    self.stats.events.append(f"retry after: {exc}")
                try:
                    self.resync(f"after {type(exc).__name__}")
                except DeviceTimeout:
                    raise DeviceTimeout(f"device {self.url} went silent: {exc}, and no answer to name% within "
                                        f"{self.timeout:g} s afterwards") from None
        raise HilError(f"{self.url}: sample failed {self.retries} times, last: {last}")
