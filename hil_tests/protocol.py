"""The device serial protocol (hil_tests/PROTOCOL.md): message formats, builders and parsers. Stdlib only."""
from __future__ import annotations

import re
import zlib

TERMINATOR = "%"
MAX_COMMAND = 80            # characters before the terminator
DB_CHUNK = 38               # bytes per `db <hex>%` command (3 + 76 + 1 = 80 characters)
BLOAD_TIMEOUT_S = 0.5       # device aborts a binary frame after this long without a byte
DUT_NAME = "netaug-mcu"
PROFILE = "netaug-mcu 0.1"

READY = "m-ready"
INIT_DONE = "m-init-done"
BANNER_FIRST = "m-timestamp-mode-performance"
BLOAD_READY = "m-bload-ready"
LOAD_DONE = "m-load-done"
INFER_DONE = "m-infer-done"

# at most 20 digits (a u64): int() of a garbled 5000-digit run raises ValueError (and takes time)
_LAP = re.compile(r"^m-lap-us-([0-9]{1,20})$")
_CYCLES = re.compile(r"^m-infer-cycles-([0-9]{1,20})$")
_BRACKET = re.compile(r"^(?P<key>[a-z][a-z0-9-]*?)-\[(?P<body>.*)\]$")
_MSG_START = re.compile(r"[me]-")


def crc32(data: bytes) -> int:
    """CRC-32 (IEEE 802.3), as zlib.crc32."""
    return zlib.crc32(data) & 0xFFFFFFFF


def command_bytes(cmd: str) -> bytes:
    cmd = cmd.rstrip(TERMINATOR)
    if len(cmd) > MAX_COMMAND:
        raise ValueError(f"command longer than {MAX_COMMAND} characters: {cmd[:20]}...")
    return (cmd + TERMINATOR).encode("ascii")


def bload_command(payload: bytes) -> str:
    return f"bload {len(payload)} {crc32(payload):08x}"


def db_commands(payload: bytes) -> list[str]:
    """`db load N` followed by `db <hex>` chunks of at most DB_CHUNK bytes."""
    cmds = [f"db load {len(payload)}"]
    for i in range(0, len(payload), DB_CHUNK):
        cmds.append("db " + payload[i:i + DB_CHUNK].hex())
    return cmds


def wire_bytes_binary(n: int) -> int:
    """Host->device bytes to load an n-byte input with `bload` (command + raw payload)."""
    return len(command_bytes(bload_command(b"\0" * n))) + n


def wire_bytes_hex(n: int) -> int:
    """Host->device bytes to load an n-byte input with `db load` + `db <hex>` commands."""
    return sum(len(command_bytes(c)) for c in db_commands(b"\0" * n))


def clean_line(raw: bytes) -> str | None:
    """One received line -> the protocol message in it, or None for line noise.

    Bytes before the first `m-`/`e-` (garbage on the wire, a partial line) are dropped."""
    text = raw.decode("latin-1").strip("\r\n")
    m = _MSG_START.search(text)
    if m is None:
        return None
    return text[m.start():].rstrip("\r")


def bracket(line: str, key: str) -> str | None:
    """`m-info-[...]` with key 'm-info' -> body inside the brackets, else None."""
    m = _BRACKET.match(line)
    if m and m.group("key") == key:
        return m.group("body")
    return None


def parse_lap(line: str) -> int | None:
    m = _LAP.match(line)
    return int(m.group(1)) if m else None


def parse_cycles(line: str) -> int | None:
    m = _CYCLES.match(line)
    return int(m.group(1)) if m else None


def parse_info(body: str) -> dict:
    """`model=x,arena=1,...` -> dict with ints where the value is an integer."""
    out: dict = {}
    for item in body.split(","):
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"malformed info field {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = int(v) if re.fullmatch(r"-?[0-9]{1,20}", v.strip()) else v.strip()
    return out


def format_info(info: dict) -> str:
    return "m-info-[" + ",".join(f"{k}={v}" for k, v in info.items()) + "]"


def parse_int_list(body: str) -> list[int]:
    return [int(v) for v in body.split(",") if v.strip() != ""]


def parse_float_list(body: str) -> list[float]:
    return [float(v) for v in body.split(",") if v.strip() != ""]


def is_error(line: str) -> bool:
    return line.startswith("e-")


TIMER_LABELS = {
    "dwt": "core cycles (DWT CYCCNT) converted with the board clock",
    "systick-icount": "QEMU instruction-count proxy (-icount shift=0; not real core cycles)",
    "host": "virtual board: host wall-clock time of host TFLM (not MCU time)",
}


def timer_label(timer: str | None) -> str:
    return TIMER_LABELS.get(timer or "", f"unknown timer {timer!r}")
