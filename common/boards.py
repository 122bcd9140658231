"""The board database (common/data/boards.json): memory regions, flash, core, clocks, console UART,
RAM reserve, and for the boards the firmware generator supports, its template, timer and (for
emulated boards) the QEMU machine. `check`, `fit`, `analyze --plot`, the firmware's linker script
and board configuration, and the QEMU launcher all read board facts from here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .errors import UserError

PATH = Path(__file__).with_name("data") / "boards.json"


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    bytes: int
    linker: str | None = None   # the firmware's linker region this block belongs to
    usage: str = "data"         # "code" (ITCM): never data; "data only, no DMA" (CCM) is still data
    kind: str = "sram"          # "sram" or "psram" (external RAM mapped into the address space)

    @property
    def end(self) -> int:
        return self.origin + self.bytes


@dataclass(frozen=True)
class Board:
    name: str
    mcu: str
    core: str
    target: str | None          # the analyzer's memory model for this core (None: no model)
    clock_mhz: int
    flash_origin: int
    flash_bytes: int
    regions: tuple[Region, ...]
    reserve: dict[str, int]
    uart: dict | None = None
    firmware: dict | None = None
    qemu: dict | None = None
    description: str = ""
    note: str = ""
    source: str = ""
    vendor: str = ""
    exact: bool = True          # target is the core's own model (False: derived from the nearest one)
    fpu: str | None = None      # "sp", "dp" or None
    dsp: bool = False
    mve: str | None = None      # None, "int" or "int+fp" (Helium)
    kernels: str = ""           # TFLM kernel set: cmsis_nn_dsp, cmsis_nn_mve, cmsis_nn_c, esp_nn, reference
    flash_kind: str = "internal"
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def supported(self) -> bool:
        """The analyzer has a memory model (exact or derived) for this core."""
        return self.target is not None

    @property
    def data_regions(self) -> tuple[Region, ...]:
        return tuple(r for r in self.regions if r.usage != "code")

    @property
    def ram_bytes(self) -> int:
        return sum(r.bytes for r in self.regions)

    @property
    def contiguous_runs(self) -> list[tuple[int, int]]:
        """(origin, bytes) of each run of address-contiguous regions."""
        runs: list[list[int]] = []
        for r in sorted(self.data_regions, key=lambda r: r.origin):
            if runs and runs[-1][0] + runs[-1][1] == r.origin:
                runs[-1][1] += r.bytes
            else:
                runs.append([r.origin, r.bytes])
        return [(o, n) for o, n in runs]

    def largest_run_regions(self) -> list[str]:
        """Names of the regions forming the largest contiguous run (where the arena goes)."""
        origin, n = max(self.contiguous_runs, key=lambda run: run[1])
        return [r.name for r in sorted(self.data_regions, key=lambda r: r.origin)
                if origin <= r.origin < origin + n]

    @property
    def sram_bytes(self) -> int:
        """The largest contiguous RAM: what one tensor arena (plus the reserve) can use."""
        return max((n for _, n in self.contiguous_runs), default=0)

    @property
    def reserve_bytes(self) -> int:
        return sum(self.reserve.values())

    @property
    def clock_hz(self) -> int:
        return self.clock_mhz * 1_000_000

    @property
    def max_baud(self) -> int | None:
        if not self.uart:
            return None
        return self.uart["clock_hz"] // self.uart.get("min_divider", 16)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise UserError(f"board {self.name} has no memory region {name}")

    def linker_regions(self) -> list[tuple[str, int, int]]:
        """(name, origin, bytes) of the firmware's linker regions: consecutive blocks with one `linker`
        name merged, plus RAM = the largest contiguous run (when it differs from them)."""
        out: list[list] = []
        for r in sorted(self.regions, key=lambda r: r.origin):
            if not r.linker:
                continue
            if out and out[-1][0] == r.linker and out[-1][1] + out[-1][2] == r.origin:
                out[-1][2] += r.bytes
            else:
                out.append([r.linker, r.origin, r.bytes])
        origin, n = max(self.contiguous_runs, key=lambda run: run[1])
        if not any(name == "RAM" for name, _, _ in out):
            out.append(["RAM", origin, n])
        return [tuple(x) for x in out]


def _int(v) -> int:
    return int(v, 0) if isinstance(v, str) else int(v)


@lru_cache(maxsize=None)
def _doc() -> dict:
    return json.loads(PATH.read_text())


_KNOWN = {"mcu", "core", "target", "clock_mhz", "flash", "regions", "reserve", "uart", "firmware", "qemu",
          "description", "note", "source", "vendor", "exact", "fpu", "dsp", "mve", "kernels"}


def _board(name: str, b: dict, default_reserve: dict) -> Board:
    reserve = b.get("reserve")
    return Board(
        name=name, mcu=b["mcu"], core=b["core"], target=b.get("target", b["core"]), clock_mhz=int(b["clock_mhz"]),
        flash_origin=_int(b["flash"]["origin"]), flash_bytes=int(b["flash"]["bytes"]),
        regions=tuple(Region(r["name"], _int(r["origin"]), int(r["bytes"]), r.get("linker"), r.get("usage", "data"),
                             r.get("kind", "sram")) for r in b["regions"]),
        reserve=dict(default_reserve if reserve in (None, "default") else reserve), uart=b.get("uart"),
        firmware=b.get("firmware"), qemu=b.get("qemu"), description=b.get("description", ""), note=b.get("note", ""),
        source=b.get("source", ""), vendor=b.get("vendor", ""), exact=bool(b.get("exact", True)), fpu=b.get("fpu"),
        dsp=bool(b.get("dsp", False)), mve=b.get("mve"), kernels=b.get("kernels", ""),
        flash_kind=b["flash"].get("kind", "internal"), extra={k: v for k, v in b.items() if k not in _KNOWN})


@lru_cache(maxsize=None)
def _all() -> dict[str, Board]:
    doc = _doc()
    default_reserve = dict(doc["default_reserve"])
    out = {}
    for name, b in doc["boards"].items():
        out[name] = _board(name, b, default_reserve)
    return out


def names() -> list[str]:
    return sorted(_all())


def firmware_boards() -> list[str]:
    """Boards the firmware generator has board support for."""
    return sorted(n for n, b in _all().items() if b.firmware)


def default_reserve() -> int:
    return sum(_doc()["default_reserve"].values())


def get(name: str) -> Board:
    b = _all().get(name)
    if b is None:
        raise UserError(f"unknown board '{name}' (known: {', '.join(names())})")
    return b
