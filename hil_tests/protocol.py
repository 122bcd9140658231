"""The device serial protocol (hil_tests/PROTOCOL.md): the one host-side definition of its commands,
reply and error strings, limits and semantics (MLPerf Tiny `api/internally_implemented.cpp`), used by the
virtual board, the HIL client and the conformance tests. Builders and parsers. Stdlib only."""
from __future__ import annotations

import re
import struct
import zlib

TERMINATOR = "%"
MAX_COMMAND = 80            # EE_CMD_SIZE: characters kept before the terminator (the rest is dropped)
DB_CHUNK = 38               # bytes per `db <hex>%` command (3 + 76 + 1 = 80 characters)
BLOAD_TIMEOUT_S = 0.5       # device aborts a binary frame after this long without a byte
DEFAULT_INFER_N = 1         # `infer` without arguments (reference)
DEFAULT_WARMUP = 10         # `infer N` without W (reference code; its help text says 0)
DUT_NAME = "netaug-mcu"
PROFILE = "netaug-mcu 0.1"

# ---- MLPerf Tiny benchmarks: the model name the runner keys its scripts by, and how the device turns the
# dataset file bytes into the int8 input tensor (reference submitters' th_load_tensor).
from ..common.mlperf import INPUT_FORMATS, MLPERF_BENCHMARKS, db_bytes_needed  # noqa: E402,F401  (one home for the facts)

# ---- messages (every reply ends with READY)
READY = "m-ready"
INIT_DONE = "m-init-done"
BANNER_FIRST = "m-timestamp-mode-performance"
BANNER_ENERGY = "m-timestamp-mode-energy"
BANNERS = (BANNER_FIRST, BANNER_ENERGY)
BLOAD_READY = "m-bload-ready"
LOAD_DONE = "m-load-done"
INFER_DONE = "m-infer-done"
WARMUP_DONE = "m-warmup-done"
MSG_NAME = "m-name-dut-[{name}]"
MSG_PROFILE = "m-profile-[{profile}]"
MSG_MODEL = "m-model-[{model}]"
MSG_EXPECTING = "m-[Expecting {n} bytes]"
MSG_LAP = "m-lap-us-{us}"
MSG_ENERGY_TIMESTAMP = "m-timestamp-pin-{us}"   # energy mode without a pin (QEMU, virtual board): logged
MSG_WARMUP_START = "m-warmup-start-{w}"
MSG_INFER_START = "m-infer-start-{n}"
MSG_CYCLES = "m-infer-cycles-{ticks}"
BUFFER_LINE_BYTES = 8       # `db print`: m-buffer-xx-xx-... lines of 8 bytes

# ---- errors (reference spellings kept, "Insufficent" included)
ERR_UNKNOWN = "e-[Unknown command: {tok}]"
ERR_DB_SUBCOMMAND = "e-[Command 'db' requires a subcommand]"
ERR_DB_LOAD_BYTES = "e-[Command 'db load' requires the # of bytes]"
ERR_DB_LOAD_ZERO = "e-[Command 'db load' must be >0 bytes]"
ERR_DB_TOO_BIG = "e-[Supplied buffer size {n} exceeds maximum of {max}]"   # reference: same text, no e-[]
ERR_HEX_ODD = "e-[Insufficent number of hex digits]"
ERR_HEX_DIGIT = "e-[Invalid hex digit '{pair}']"
ERR_INFER_N = "e-[Inference iterations must be >0]"
ERR_INFER_W = "e-[Inference warmup must be >=0]"
ERR_NOT_LOADED = "e-[input not loaded: {have} of {need} bytes]"
ERR_NO_RESULTS = "e-[no results yet]"
ERR_BLOAD_USAGE = "e-[usage: bload <N> <crc32 hex>]"
ERR_BLOAD_SIZE = "e-[bload size {n} != input bytes {need}]"
ERR_BLOAD_CRC = "e-[bload crc mismatch]"
ERR_BLOAD_TIMEOUT = "e-[bload timeout]"

HELP_LINES = (
    "ULPMark for tinyML Firmware V0.0.1 (netaug-mcu)",
    "",
    "help         : Print this information",
    "name         : Print the name of the device",
    "timestsamp   : Generate a timetsamp",
    "db SUBCMD    : Manipulate a generic byte buffer",
    "  load N     : Allocate N bytes and set load counter",
    "  db HH[HH]* : Load 8-bit hex byte(s) until N bytes",
    "  print [N=16] [offset=0]",
    "             : Print N bytes at offset as hex",
    "infer N [W=10]: Load input, execute N inferences after W warmup loops",
    "results      : Return the result fp32 vector",
    "info         : netaug-mcu extension: model, arena, sizes, timer",
    "bload N CRC  : netaug-mcu extension: N raw bytes follow, CRC-32 checked",
)


def atoi(text: str | None) -> int:
    """C atoi(): optional sign and leading digits, 0 when there are none (the reference parses with it)."""
    m = re.match(r"\s*([+-]?\d+)", text or "")
    return int(m.group(1)) if m else 0


def truncate_command(raw: bytes) -> bytes:
    """What the reference parser keeps of one line: its first MAX_COMMAND characters."""
    return raw[:MAX_COMMAND]


def format_result(v: float) -> str:
    """One m-results value: %0.6f (an int8 step of a 1/256-scale softmax is 0.003906)."""
    return f"{v:0.6f}"


def buffer_lines(buf: bytes) -> list[str]:
    """`db print`: the announced buffer as m-buffer-xx-xx-... lines of 8 bytes."""
    return ["m-buffer-" + "-".join(f"{b:02x}" for b in buf[i:i + BUFFER_LINE_BYTES])
            for i in range(0, len(buf), BUFFER_LINE_BYTES)]


def quantize_float32(values, scale: float, zero_point: int):
    """float32 -> int8 as the reference ad01 th_load_tensor: round(x / scale) + zp (half away from zero),
    in float32, clamped to int8. Returns a numpy int8 array."""
    import numpy as np
    x = np.asarray(values, dtype=np.float32) / np.float32(scale)
    r = np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))
    return np.clip(r + zero_point, -128, 127).astype(np.int8)


def decode_input(buf: bytes, fmt: str, scale: float, zero_point: int) -> bytes:
    """Device side: db buffer bytes (exactly the needed ones) -> int8 input tensor bytes."""
    import numpy as np
    if fmt == "int8":
        return bytes(buf)
    if fmt == "uint8":
        return (np.frombuffer(buf, dtype=np.uint8).astype(np.int16) - 128).astype(np.int8).tobytes()
    if fmt == "float32":
        return quantize_float32(np.frombuffer(buf, dtype="<f4"), scale, zero_point).tobytes()
    raise ValueError(f"unknown input format {fmt!r}")


def encode_input(tensor: bytes, fmt: str, scale: float, zero_point: int) -> bytes:
    """Host side: int8 tensor bytes -> the db bytes a device with input format `fmt` decodes back to them."""
    import numpy as np
    q = np.frombuffer(tensor, dtype=np.int8)
    if fmt == "int8":
        return bytes(tensor)
    if fmt == "uint8":
        return (q.astype(np.int16) + 128).astype(np.uint8).tobytes()
    if fmt == "float32":
        return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype("<f4").tobytes()
    raise ValueError(f"unknown input format {fmt!r}")


def mse_result(out_q, out_scale: float, out_zp: int, in_float) -> float:
    """ad01 th_results: mean squared difference of the dequantized output and the float input (float32)."""
    import numpy as np
    deq = (np.asarray(out_q, dtype=np.float32) - np.float32(out_zp)) * np.float32(out_scale)
    d = deq - np.asarray(in_float, dtype=np.float32)[: deq.size]
    acc = np.float32(0)
    for v in d * d:                 # sequential float32 sum, as the C loop
        acc = np.float32(acc + v)
    return float(acc / np.float32(deq.size))


def floats_le(buf: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(buf) // 4}f", buf[: len(buf) // 4 * 4]))


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
    if len(cmd) > MAX_COMMAND:  # the device would truncate it: never send one
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
