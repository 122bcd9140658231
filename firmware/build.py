"""Compile a generated firmware project (arm-none-eabi-gcc against the cached libtflm.a) and read the
ELF's section sizes."""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..common import boards
from . import tflm_build
from .errors import FirmwareError


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


def project_core(project_dir: Path) -> str:
    """The core the generated project is for (its board's, from project.json; Cortex-M7 if absent)."""
    meta = Path(project_dir) / "project.json"
    try:
        board = json.loads(meta.read_text()).get("board")
    except (OSError, ValueError):
        return tflm_build.DEFAULT_CORE
    return boards.get(board).core if board in boards.names() else tflm_build.DEFAULT_CORE


def build(project_dir, jobs: int = 2, log=print, tree: Path | None = None, lib: Path | None = None,
          fetch: bool = False) -> BuildResult:
    """Build the generated project (compiles the TFLM library once per tree+core+flags, cached)."""
    project_dir = Path(project_dir)
    tflm_build.require_toolchain()
    if tree is None:
        tree = tflm_build.require_tree(fetch=fetch, log=log)
    if lib is None:
        lib = tflm_build.build_library(tree, jobs=jobs, log=log, core=project_core(project_dir))
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
