"""Generate (and optionally build) the firmware project for one int8 .tflite model.

`generate()` writes a self-contained Make project into `out`:
  main.cc, board.h, cm7_device.h, startup.c      application + protocol (templates/common)
  board.c, link.ld, sections.ld                  board support (templates/boards/<board>)
  model_data.c                                   the model as a 16-byte aligned const array
  model_ops.h                                    MicroMutableOpResolver<N> with exactly the model's ops
  model_config.h                                 arena size (analyzer prediction + slack), I/O sizes, baud
  Makefile, project.json                         build (arm-none-eabi-gcc) and what was decided
TFLM itself is not copied: the Makefile points at the TFLM tree and the cached libtflm.a (deps.py).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import deps
from .errors import FirmwareError, ModelRefused

TEMPLATES = deps.TEMPLATES
ARENA_ALIGN = 16
# The arena array is 16-byte aligned, so TFLM's own 16-byte re-alignment costs nothing; the slack
# covers the arena_used_bytes()+16 rule of micro_interpreter.h for an unaligned buffer.
ARENA_SLACK = 16
STACK_BYTES = 16 * 1024
DEFAULT_BAUD = 115200

# BuiltinOperator name -> MicroMutableOpResolver method (tflite-micro 90b983c2,
# micro_mutable_op_resolver.h: every `AddXxx()` that calls AddBuiltin(BuiltinOperator_XXX)).
RESOLVER_METHODS = dict(item.split(":") for item in """
ABS:AddAbs ADD:AddAdd ADD_N:AddAddN ARG_MAX:AddArgMax ARG_MIN:AddArgMin ASSIGN_VARIABLE:AddAssignVariable
AVERAGE_POOL_2D:AddAveragePool2D BATCH_MATMUL:AddBatchMatMul BATCH_TO_SPACE_ND:AddBatchToSpaceNd
BROADCAST_ARGS:AddBroadcastArgs BROADCAST_TO:AddBroadcastTo CALL_ONCE:AddCallOnce CAST:AddCast CEIL:AddCeil
CONCATENATION:AddConcatenation CONV_2D:AddConv2D COS:AddCos CUMSUM:AddCumSum
DEPTHWISE_CONV_2D:AddDepthwiseConv2D DEPTH_TO_SPACE:AddDepthToSpace DEQUANTIZE:AddDequantize DIV:AddDiv
DYNAMIC_UPDATE_SLICE:AddDynamicUpdateSlice ELU:AddElu EMBEDDING_LOOKUP:AddEmbeddingLookup EQUAL:AddEqual
EXP:AddExp EXPAND_DIMS:AddExpandDims FILL:AddFill FLOOR:AddFloor FLOOR_DIV:AddFloorDiv FLOOR_MOD:AddFloorMod
FULLY_CONNECTED:AddFullyConnected GATHER:AddGather GATHER_ND:AddGatherNd GREATER:AddGreater
GREATER_EQUAL:AddGreaterEqual HARD_SWISH:AddHardSwish IF:AddIf L2_NORMALIZATION:AddL2Normalization
L2_POOL_2D:AddL2Pool2D LEAKY_RELU:AddLeakyRelu LESS:AddLess LESS_EQUAL:AddLessEqual LOG:AddLog
LOGICAL_AND:AddLogicalAnd LOGICAL_NOT:AddLogicalNot LOGICAL_OR:AddLogicalOr LOGISTIC:AddLogistic
LOG_SOFTMAX:AddLogSoftmax MAXIMUM:AddMaximum MAX_POOL_2D:AddMaxPool2D MEAN:AddMean MINIMUM:AddMinimum
MIRROR_PAD:AddMirrorPad MUL:AddMul NEG:AddNeg NOT_EQUAL:AddNotEqual PACK:AddPack PAD:AddPad PADV2:AddPadV2
PRELU:AddPrelu QUANTIZE:AddQuantize READ_VARIABLE:AddReadVariable REDUCE_ALL:AddReduceAll
REDUCE_MAX:AddReduceMax REDUCE_MIN:AddReduceMin RELU:AddRelu RELU6:AddRelu6 RESHAPE:AddReshape
RESIZE_BILINEAR:AddResizeBilinear RESIZE_NEAREST_NEIGHBOR:AddResizeNearestNeighbor REVERSE_V2:AddReverseV2
ROUND:AddRound RSQRT:AddRsqrt SELECT_V2:AddSelectV2 SHAPE:AddShape SIN:AddSin SLICE:AddSlice
SOFTMAX:AddSoftmax SPACE_TO_BATCH_ND:AddSpaceToBatchNd SPACE_TO_DEPTH:AddSpaceToDepth SPLIT:AddSplit
SPLIT_V:AddSplitV SQRT:AddSqrt SQUARE:AddSquare SQUARED_DIFFERENCE:AddSquaredDifference SQUEEZE:AddSqueeze
STRIDED_SLICE:AddStridedSlice SUB:AddSub SUM:AddSum SVDF:AddSvdf TANH:AddTanh TRANSPOSE:AddTranspose
TRANSPOSE_CONV:AddTransposeConv UNIDIRECTIONAL_SEQUENCE_LSTM:AddUnidirectionalSequenceLSTM
UNPACK:AddUnpack VAR_HANDLE:AddVarHandle WHILE:AddWhile ZEROS_LIKE:AddZerosLike
""".split())


@dataclass(frozen=True)
class Board:
    name: str
    flash_bytes: int
    ram_bytes: int
    dtcm_bytes: int          # 0 = no separate DTCM region
    has_exit: bool           # semihosting exit command (QEMU only)
    timer: str
    description: str


BOARDS = {
    "stm32f746g-disco": Board("stm32f746g-disco", 1024 * 1024, 320 * 1024, 64 * 1024, False, "dwt",
                              "STM32F746G-DISCO: Cortex-M7 216 MHz, 1 MB flash, 320 KB SRAM (64 KB DTCM), "
                              "USART1 = ST-LINK VCP"),
    "mps2-an500": Board("mps2-an500", 1024 * 1024, 320 * 1024, 0, True, "systick-icount",
                        "QEMU mps2-an500: Cortex-M7 25 MHz, CMSDK UART0, regions limited to the F746 budget"),
}
# RAM used besides the arena and the input buffer: stack + .data/.bss of TFLM objects and the app
# (interpreter, resolver, UART ring buffer). Measured on the built ELFs; used only for the refusal.
RAM_RESERVED = STACK_BYTES + 4 * 1024
# Flash used besides the model when the analyzer gives no estimate (TFLM runtime + protocol).
CODE_RESERVED = 96 * 1024


@dataclass
class Project:
    out: str
    board: str
    model_path: str
    model_name: str
    model_bytes: int
    ops: list[str]
    arena_bytes: int
    arena_predicted: int | None
    arena_source: str
    arena_region: str
    input_bytes: int
    output_bytes: int
    baud: int
    flash_estimate: int | None = None
    recording: bool = False
    analyzer: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ pieces


def c_identifier(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else "m_" + s


def c_string(s: str) -> str:
    safe = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\[],%' else "_" for ch in s)
    return '"' + safe[:40] + '"'


def model_c_array(data: bytes, symbol: str = "g_model_data") -> str:
    """C source for the model: a 16-byte aligned const array (flash) and its length."""
    lines = ["/* Generated by netaug-mcu firmware: the .tflite flatbuffer, in flash. */",
             "#include <stdint.h>", "",
             f"__attribute__((aligned(16))) const unsigned char {symbol}[{max(len(data), 1)}] = {{"]
    for i in range(0, len(data), 16):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",")
    lines.append("};")
    lines.append(f"const unsigned int {symbol}_len = {len(data)}u;")
    return "\n".join(lines) + "\n"


def unique_ops(op_names) -> list[str]:
    """Distinct builtin op names in a stable (sorted) order."""
    return sorted(set(op_names))


# int8-only CMSIS-NN registrations (kernels/*.h): used when every instance of the op in the model is
# int8 in / int8 out (and int8 weights), so the int16/int4 code paths are not linked (less flash).
INT8_REGISTRATIONS = {
    "CONV_2D": "Register_CONV_2D_INT8", "DEPTHWISE_CONV_2D": "Register_DEPTHWISE_CONV_2D_INT8",
    "FULLY_CONNECTED": "Register_FULLY_CONNECTED_INT8", "SOFTMAX": "Register_SOFTMAX_INT8",
    "ADD": "Register_ADD_INT8", "MUL": "Register_MUL_INT8",
    "AVERAGE_POOL_2D": "Register_AVERAGE_POOL_2D_INT8", "MAX_POOL_2D": "Register_MAX_POOL_2D_INT8",
}
_WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def int8_only_ops(summary) -> set[str]:
    """Ops (of INT8_REGISTRATIONS) whose every instance has int8 activations (and int8 weights)."""
    ok: dict[str, bool] = {}
    for op in summary.ops:
        if op.name not in INT8_REGISTRATIONS:
            continue
        t = summary.tensors
        acts = [op.inputs[0]] + ([op.inputs[1]] if op.name in ("ADD", "MUL") else []) + op.outputs[:1]
        good = all(i >= 0 and t[i].dtype == "int8" for i in acts)
        if op.name in _WEIGHTED:
            good = good and len(op.inputs) > 1 and op.inputs[1] >= 0 and t[op.inputs[1]].dtype == "int8"
        ok[op.name] = ok.get(op.name, True) and good
    return {k for k, v in ok.items() if v}


def resolver_source(op_names, int8_only=frozenset()) -> str:
    """model_ops.h: a MicroMutableOpResolver<N> registration with exactly these ops."""
    ops = unique_ops(op_names)
    bad = [o for o in ops if o not in RESOLVER_METHODS]
    if bad:
        raise ModelRefused(f"op {bad[0]} is not supported by TFLM's MicroMutableOpResolver")

    def reg(o):
        return f"tflite::{INT8_REGISTRATIONS[o]}()" if o in int8_only and o in INT8_REGISTRATIONS else ""
    body = "\n".join(f"  if (r.{RESOLVER_METHODS[o]}({reg(o)}) != kTfLiteOk) return kTfLiteError;  // {o}"
                     + (" (int8 kernel only)" if reg(o) else "") for o in ops)
    return (
        "/* Generated by netaug-mcu firmware: exactly the model's operators. */\n"
        "#pragma once\n#include \"tensorflow/lite/micro/micro_mutable_op_resolver.h\"\n"
        "#include \"tensorflow/lite/micro/kernels/add.h\"\n#include \"tensorflow/lite/micro/kernels/conv.h\"\n"
        "#include \"tensorflow/lite/micro/kernels/depthwise_conv.h\"\n"
        "#include \"tensorflow/lite/micro/kernels/fully_connected.h\"\n"
        "#include \"tensorflow/lite/micro/kernels/mul.h\"\n#include \"tensorflow/lite/micro/kernels/pooling.h\"\n"
        "#include \"tensorflow/lite/micro/kernels/softmax.h\"\n\n"
        f"#define NETAUG_NUM_OPS {max(len(ops), 1)}\n\n"
        "static inline TfLiteStatus netaug_register_ops(tflite::MicroMutableOpResolver<NETAUG_NUM_OPS>& r) {\n"
        f"{body}\n  (void)r;\n  return kTfLiteOk;\n}}\n")


def arena_size(predicted: int) -> int:
    """Arena array size from the analyzer's arena_used_bytes prediction."""
    if predicted <= 0:
        raise FirmwareError(f"invalid arena prediction {predicted}")
    return -(-predicted // ARENA_ALIGN) * ARENA_ALIGN + ARENA_SLACK


def arena_region(board: Board, arena: int, input_bytes: int) -> tuple[str, str]:
    """Linker region for the arena and the reason (stm32f746g-disco: DTCM when it fits)."""
    if not board.dtcm_bytes:
        return "RAM", "single RAM region"
    dtcm_free = board.dtcm_bytes - RAM_RESERVED - input_bytes
    if arena <= dtcm_free:
        return "DTCM", (f"arena {arena} B fits in DTCM next to the stack and data ({dtcm_free} B free): "
                        f"0-wait-state, no cache misses")
    sram = board.ram_bytes - board.dtcm_bytes
    if arena <= sram:
        return "SRAM", (f"arena {arena} B > {dtcm_free} B free in DTCM: placed in SRAM1+SRAM2 ({sram} B, "
                        f"D-cached); DTCM keeps the stack and data")
    return "RAM", (f"arena {arena} B > SRAM1+SRAM2 ({sram} B): it spans the contiguous DTCM+SRAM1+SRAM2 range "
                   f"above the stack and data")


def budget_check(model_path: Path, board: Board) -> None:
    """Refuse a model the analyzer's budget gate (`netaug-mcu check`) rejects, with its figures."""
    import importlib
    try:
        boards = importlib.import_module("converter.boards")
        check_model = importlib.import_module("converter.analyze_cli").check_model
    except (ModuleNotFoundError, AttributeError):
        return
    # mps2-an500's regions are limited to the F746 budget, so both boards use the F746 profile.
    res = check_model(str(model_path), boards.budget("stm32f746g-disco"))
    if not res.get("fits", True):
        parts = []
        if res.get("ram_over_bytes"):
            parts.append(f"arena {res['min_arena_bytes']} B > {res['arena_budget']} B (SRAM {res['sram_bytes']} - "
                         f"reserve {res['reserve_bytes']}), {res['ram_over_bytes']} B over")
        if res.get("flash_over_bytes"):
            parts.append(f"flash {res['flash_bytes']} B > {res['flash_budget']} B, {res['flash_over_bytes']} B over")
        hint = f"; {res['suggestions'][0]}" if res.get("suggestions") else ""
        raise ModelRefused(f"{model_path.name} does not fit {board.name}: {'; '.join(parts)} "
                           f"(peak op {res.get('peak_op')}){hint}")


# ------------------------------------------------------------------------------------------ analyzer


def analyzer_prediction(model_path: Path) -> dict:
    """Ask converter.analyzer for the cortex-m7 arena (and flash) prediction.

    Errors the analyzer raises for the model (unsupported op, ...) propagate with its message."""
    import importlib
    try:
        analyzer = importlib.import_module("converter.analyzer")
    except ModuleNotFoundError as exc:
        if exc.name in ("converter", "converter.analyzer"):
            raise FirmwareError("the memory analyzer (converter.analyzer) is not available in this "
                                "checkout; pass --arena-bytes N to size the arena by hand") from None
        raise
    rep = analyzer.analyze(str(model_path), target="cortex-m7")
    out = {"arena_bytes": int(getattr(rep, "arena_bytes"))}
    if isinstance(getattr(rep, "min_arena_bytes", None), int):
        # AllocateTensors can need more than the final arena_used_bytes() (Prepare/planning transients)
        out["min_arena_bytes"] = int(rep.min_arena_bytes)
    for attr in ("flash_bytes", "flash_estimate", "flash_total", "code_bytes", "weight_bytes"):
        val = getattr(rep, attr, None)
        if isinstance(val, (int, float)):
            out[attr] = int(val)
    for attr in ("fits", "message"):
        if hasattr(rep, attr):
            out[attr] = getattr(rep, attr)
    return out


def _flash_estimate(pred: dict) -> int | None:
    for key in ("flash_bytes", "flash_estimate", "flash_total"):
        if key in pred:
            return pred[key]
    return None


# ------------------------------------------------------------------------------------------ generate


def _summary(model_path: Path):
    from converter.tflm_ops import check_tflm_compatible, summarize
    from converter.errors import ConvertError

    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise FirmwareError(f"cannot read {model_path}: {exc.strerror}") from None
    summary = summarize(data)
    try:
        check_tflm_compatible(summary)
    except ConvertError as exc:
        raise ModelRefused(f"{model_path.name}: {exc}") from None
    return data, summary


def _tensor_bytes(t) -> int:
    size = {"int8": 1, "uint8": 1, "int16": 2, "float32": 4, "int32": 4, "float16": 2, "int64": 8}.get(t.dtype)
    if size is None:
        raise FirmwareError(f"unsupported tensor type {t.dtype} for tensor '{t.name}'")
    n = 1
    for d in t.shape:
        n *= max(int(d), 1)
    return n * size


def generate(model_path, board: str = "stm32f746g-disco", out="build/fw", baud: int = DEFAULT_BAUD,
             arena_bytes: int | None = None, recording: bool = False, name: str | None = None,
             tree: Path | None = None, lib: Path | None = None, log=print) -> Project:
    model_path = Path(model_path)
    if board not in BOARDS:
        raise FirmwareError(f"unknown board '{board}' (choose from {', '.join(BOARDS)})")
    if not model_path.is_file():
        raise FirmwareError(f"model not found: {model_path}")
    if baud <= 0 or baud > 12_000_000:
        raise FirmwareError(f"invalid baud rate {baud}")
    b = BOARDS[board]
    max_baud = 108_000_000 // 16 if board == "stm32f746g-disco" else 25_000_000 // 16
    if baud > max_baud:   # USART1 on the 108 MHz APB2 with 16x oversampling / CMSDK BAUDDIV >= 16
        raise FirmwareError(f"baud {baud} is above what {board}'s UART can do ({max_baud})")
    data, summary = _summary(model_path)
    ops = unique_ops(op.name for op in summary.ops)
    resolver = resolver_source(ops, int8_only_ops(summary))   # refuses ops without a resolver method
    if len(summary.inputs) != 1 or len(summary.outputs) != 1:
        raise FirmwareError(f"{model_path.name}: the firmware supports one input and one output tensor "
                            f"(model has {len(summary.inputs)} and {len(summary.outputs)})")
    tin, tout = summary.tensors[summary.inputs[0]], summary.tensors[summary.outputs[0]]
    input_bytes, output_bytes = _tensor_bytes(tin), _tensor_bytes(tout)

    pred: dict = {}
    if arena_bytes is None:
        pred = analyzer_prediction(model_path)
        predicted = pred["arena_bytes"]
        arena = arena_size(max(predicted, pred.get("min_arena_bytes", 0)))
        source = "analyzer (converter.analyzer, target cortex-m7)"
    else:
        predicted = None
        arena = arena_size(int(arena_bytes))
        source = "--arena-bytes"
    flash_est = _flash_estimate(pred)

    if arena_bytes is None:
        budget_check(model_path, b)
    ram_free = b.ram_bytes - RAM_RESERVED - input_bytes
    if arena > ram_free:
        raise ModelRefused(f"{model_path.name} needs a {arena} B tensor arena but {b.name} has {ram_free} B "
                           f"of SRAM left for it ({b.ram_bytes} B - {STACK_BYTES} B stack - buffers)")
    flash_need = flash_est if flash_est is not None else len(data) + CODE_RESERVED
    if flash_need > b.flash_bytes:
        raise ModelRefused(f"{model_path.name} needs ~{flash_need} B of flash (model {len(data)} B + code) "
                           f"but {b.name} has {b.flash_bytes} B")
    region, why = arena_region(b, arena, input_bytes)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model_name = name or model_path.stem
    for f in ("main.cc", "board.h", "cm7_device.h", "startup.c", "sections.ld"):
        shutil.copy(TEMPLATES / "common" / f, out / f)
    bdir = TEMPLATES / "boards" / board
    shutil.copy(bdir / "board.c", out / "board.c")
    if (bdir / "link.ld.in").is_file():
        text = (bdir / "link.ld.in").read_text().replace("@ARENA_REGION@", region).replace("@ARENA_NOTE@", why)
        text = text.replace("@DATA_REGION@", "RAM" if region == "RAM" else "DTCM")
        (out / "link.ld").write_text(text)
    else:
        shutil.copy(bdir / "link.ld", out / "link.ld")
    (out / "model_data.c").write_text(model_c_array(data))
    (out / "model_ops.h").write_text(resolver)
    (out / "model_config.h").write_text(
        "/* Generated by netaug-mcu firmware. */\n#pragma once\n"
        f"#define NETAUG_MODEL_NAME {c_string(model_name)}\n"
        f"#define NETAUG_ARENA_BYTES {arena}u  /* {source}: {predicted if predicted is not None else arena_bytes}"
        f" B + alignment slack */\n"
        f"#define NETAUG_INPUT_BYTES {input_bytes}u\n"
        f"#define NETAUG_OUTPUT_BYTES {output_bytes}u\n"
        f"#define NETAUG_BAUD {int(baud)}u\n"
        f"#define NETAUG_HAS_EXIT {1 if b.has_exit else 0}\n"
        f"#define NETAUG_RECORDING {1 if recording else 0}\n")
    if tree is None:
        tree, _ = deps.find_tree()
    if tree is not None and lib is None and deps.toolchain():
        lib = deps.library_dir(Path(tree)) / "libtflm.a"
    _write_makefile(out, b, Path(tree) if tree else None, lib)
    proj = Project(out=str(out), board=board, model_path=str(model_path), model_name=model_name,
                   model_bytes=len(data), ops=ops, arena_bytes=arena, arena_predicted=predicted,
                   arena_source=source, arena_region=region, input_bytes=input_bytes,
                   output_bytes=output_bytes, baud=int(baud), flash_estimate=flash_est,
                   recording=recording, analyzer=pred)
    (out / "project.json").write_text(json.dumps(asdict(proj), indent=1, default=str))
    log(f"generated {out} for {board}: {len(ops)} ops ({', '.join(ops)}), arena {arena} B in {region}, "
        f"model {len(data)} B")
    return proj


def _write_makefile(out: Path, board: Board, tree: Path | None, lib: Path | None) -> None:
    flags = " ".join(deps.COMMON_FLAGS).replace('\\"', '\\"')
    text = (TEMPLATES / "Makefile.in").read_text()
    rep = {
        "@BOARD@": board.name,
        "@TFLM_TREE@": str(tree) if tree else "",
        "@TFLM_LIB@": str(lib) if lib else "",
        "@CPU_FLAGS@": " ".join(deps.CPU_FLAGS),
        "@COMMON_FLAGS@": flags,
        "@CXX_ONLY@": " ".join(deps.CXX_ONLY),
        "@C_ONLY@": " ".join(deps.C_ONLY),
    }
    for k, v in rep.items():
        text = text.replace(k, v)
    (out / "Makefile").write_text(text)


# ------------------------------------------------------------------------------------------ build


@dataclass
class BuildResult:
    elf: str
    text: int
    data: int
    bss: int
    flash: int      # text + data (what is programmed)
    ram: int        # data + bss (stack and arena included)
    seconds: float
    sections: dict = field(default_factory=dict)


def size_of(elf: Path) -> dict:
    res = subprocess.run(["arm-none-eabi-size", "-A", "-d", str(elf)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"arm-none-eabi-size failed: {res.stderr.strip()}")
    sections = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = (int(parts[1]), int(parts[2]))
    return sections


def elf_sizes(elf: Path) -> tuple[int, int, int, dict]:
    """(text, data, bss) in the Berkeley sense + the per-section table."""
    res = subprocess.run(["arm-none-eabi-size", "-B", "-d", str(elf)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        raise FirmwareError(f"arm-none-eabi-size failed: {res.stderr.strip()}")
    text, data, bss = (int(v) for v in res.stdout.splitlines()[1].split()[:3])
    return text, data, bss, size_of(elf)


def build(project_dir, jobs: int = 2, log=print, tree: Path | None = None, lib: Path | None = None,
          fetch: bool = False) -> BuildResult:
    """Build the generated project (compiles the TFLM library once per tree+flags, cached)."""
    project_dir = Path(project_dir)
    deps.require_toolchain()
    if tree is None:
        tree = deps.require_tree(fetch=fetch, log=log)
    if lib is None:
        lib = deps.build_library(tree, jobs=jobs, log=log)
    t0 = time.time()
    cmd = ["make", "-C", str(project_dir), f"-j{jobs}", f"TFLM_TREE={tree}", f"TFLM_LIB={lib}"]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = [ln for ln in res.stdout.splitlines() if ln.strip()][-12:]
        raise FirmwareError("firmware build failed: " + " | ".join(tail))
    elf = project_dir / "fw.elf"
    text, data, bss, sections = elf_sizes(elf)
    r = BuildResult(str(elf), text, data, bss, text + data, data + bss, time.time() - t0,
                    {k: v[0] for k, v in sections.items()})
    log(f"built {elf}: text {text} data {data} bss {bss} -> flash {r.flash} B, RAM {r.ram} B "
        f"({r.seconds:.1f} s)")
    return r
