"""The placement planner: where every RAM object of the generated firmware goes on a board.

One decision, used twice: `check --board B` (the gate's verdict) and `firmware` (the generated
linker script's region aliases), so a model that `check` passes links, and one that cannot link is
refused by `check` with the reason.

Objects (sizes in bytes, in the order the linker script lays them out inside a region):
  stack     the main stack (board reserve `stack`), at the very start of the first region so an
            overflow runs into the MPU guard at its bottom, never into data
  runtime   the firmware's own .data + .bss (TFLM interpreter and resolver objects, UART ring buffer,
            fault stack): board reserve `firmware_ram`, an allowance that the linker script ASSERTs.
            Heap-free: nothing in the firmware calls malloc (_sbrk has an empty heap), so the
            board's `heap` reserve is not placed.
  input     the db/bload input buffer (the input tensor's bytes; `.input` section)
  arena     the TFLM tensor arena array (`arena_array_bytes(analyzer figure)`; `.arena` section).
            The output tensor lives inside the arena.
The model (weights) stays in flash.

Regions: the board's linker regions (common/data/boards.json, listed fastest first: DTCM before
SRAM1+2 on the STM32F746), the contiguous span of them (`RAM`), and with `external=True` the board's
external regions (SDRAM). Two layouts exist: *split* (stack and runtime in the fastest region, input
and arena each in any non-overlapping region) and *span* (everything on-chip laid out in one run
through the contiguous range). The planner picks the feasible layout that puts the arena, then the
input, in the fastest region.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

from .boards import Board

ARENA_ALIGN = 16
# The arena array is 16-byte aligned, so TFLM's own 16-byte re-alignment costs nothing; the slack
# covers the arena_used_bytes()+16 rule of micro_interpreter.h for an unaligned buffer.
ARENA_SLACK = 16
STACK_ALIGN = 256       # the MPU stack guard is the stack's lowest 256 B: region base must be aligned
ORDER = ("stack", "runtime", "input", "arena")
ALIGN = {"stack": STACK_ALIGN, "runtime": 4, "input": 16, "arena": ARENA_ALIGN}
SPAN = "RAM"
CODE_REGIONS = {"ITCM"}   # instruction TCM: vectors/code of the template, never data


def arena_array_bytes(arena_used: int) -> int:
    """Size of the firmware's arena array for an analyzer arena_used_bytes figure."""
    if arena_used <= 0:
        raise ValueError(f"invalid arena figure {arena_used}")
    return -(-arena_used // ARENA_ALIGN) * ARENA_ALIGN + ARENA_SLACK


def arena_used_limit(array_bytes: int) -> int:
    """The largest arena_used_bytes figure whose arena array fits in `array_bytes`."""
    return max((array_bytes - ARENA_SLACK) // ARENA_ALIGN * ARENA_ALIGN, 0)


def input_buffer_bytes(model) -> int:
    """The firmware's input buffer for a parsed .tflite: the bytes of every input tensor."""
    return sum(model.io_tensor("input", k).nbytes for k in range(len(model.inputs)))


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    bytes: int
    tier: float       # lower = faster
    external: bool = False


@dataclass
class RegionUse:
    name: str
    origin: int
    bytes: int
    used: int
    external: bool = False
    items: dict[str, list[int]] = field(default_factory=dict)   # name -> [address, bytes]

    @property
    def free(self) -> int:
        return self.bytes - self.used


@dataclass
class Plan:
    board: str
    fits: bool
    layout: str                      # "split", "span" or "" (no placement)
    where: dict[str, str]            # item -> region name
    sizes: dict[str, int]
    regions: list[RegionUse]
    reason: str = ""                 # why nothing fits (one line)

    @property
    def external_items(self) -> list[str]:
        return [k for r in self.regions if r.external for k in r.items]

    def region(self, name: str) -> RegionUse | None:
        return next((r for r in self.regions if r.name == name), None)

    def summary(self) -> str:
        if not self.fits:
            return self.reason
        return "; ".join(f"{r.name} {', '.join(f'{k} {v[1]:,}' for k, v in r.items.items())} "
                         f"({r.used:,} of {r.bytes:,} B)" for r in self.regions if r.items)

    def to_json(self) -> dict:
        d = asdict(self)
        d["regions"] = [{**asdict(r), "free": r.free} for r in self.regions]
        return d


def board_regions(board: Board, external: bool = False) -> list[Region]:
    """The board's linker regions, fastest first; the span `RAM` ranks just after its slowest part."""
    data = [(n, o, b) for n, o, b in board.linker_regions() if n not in CODE_REGIONS]
    out = [Region(n, o, b, float(i)) for i, (n, o, b) in enumerate(data) if n != SPAN]
    span = next(((o, b) for n, o, b in data if n == SPAN), None)
    if span and not out:
        out.append(Region(SPAN, span[0], span[1], 0.0))
    elif span:
        out.append(Region(SPAN, span[0], span[1], len(out) - 0.5))
    if external:
        for i, r in enumerate(board.extra.get("external", [])):
            out.append(Region(r["linker"], int(str(r["origin"]), 0), int(r["bytes"]), 10.0 + i, True))
    return out


def onchip_bytes(board: Board) -> int:
    """The largest on-chip RAM the planner lays data out in (F746: the 320 KB DTCM+SRAM1+SRAM2 run)."""
    return max(r.bytes for r in board_regions(board) if not r.external)


def _fill(region: Region, items: list[str], sizes: dict[str, int]) -> RegionUse:
    use = RegionUse(region.name, region.origin, region.bytes, 0, region.external)
    addr = region.origin
    for name in ORDER:
        if name in items:
            addr = _align(addr, ALIGN[name])
            use.items[name] = [addr, sizes[name]]
            addr += sizes[name]
    use.used = addr - region.origin
    return use


def _layouts(regions: list[Region]):
    """(layout, fixed region, regions the movable items may use)."""
    onchip = [r for r in regions if not r.external]
    ext = [r for r in regions if r.external]
    split = [r for r in onchip if r.name != SPAN] or onchip
    yield "split", split[0], split + ext
    span = [r for r in onchip if r.name == SPAN]
    if span and len(onchip) > 1:
        yield "span", span[0], span + ext


def plan(board: Board, arena_bytes: int, input_bytes: int, stack_bytes: int | None = None,
         runtime_bytes: int | None = None, external: bool = False) -> Plan:
    """Place stack, runtime, input buffer and the arena array (`arena_bytes`, already an array size)."""
    sizes = {"stack": int(stack_bytes if stack_bytes is not None else board.reserve.get("stack", 16384)),
             "runtime": int(runtime_bytes if runtime_bytes is not None else board.reserve.get("firmware_ram", 8192)),
             "input": int(input_bytes), "arena": int(arena_bytes)}
    regions = board_regions(board, external)
    best, best_key = None, None
    for layout, fixed, movable in _layouts(regions):
        for r_in, r_ar in itertools.product(movable, repeat=2):
            where = {"stack": fixed.name, "runtime": fixed.name, "input": r_in.name, "arena": r_ar.name}
            uses = []
            for r in regions:
                items = [k for k, v in where.items() if v == r.name]
                if items:
                    uses.append(_fill(r, items, sizes))
            if any(u.used > u.bytes for u in uses):
                continue
            key = (r_ar.tier, r_in.tier, layout != "split")
            if best_key is None or key < best_key:
                best, best_key = Plan(board.name, True, layout, where, sizes, uses), key
    if best is not None:
        return best
    return Plan(board.name, False, "", {}, sizes, [], _why_not(regions, sizes))


def _why_not(regions: list[Region], sizes: dict[str, int]) -> str:
    onchip = [r for r in regions if not r.external]
    total = max(onchip, key=lambda r: r.bytes)
    ext = [r for r in regions if r.external]
    need = sum(sizes.values())
    parts = " + ".join(f"{k} {sizes[k]:,}" for k in ORDER)
    msg = (f"no placement: {parts} = {need:,} B > {total.bytes:,} B of {total.name} "
           f"(0x{total.origin:08X})")
    if ext:
        big = max(ext, key=lambda r: r.bytes)
        msg += f"; the arena alone ({sizes['arena']:,} B) exceeds {big.name} ({big.bytes:,} B)" \
            if sizes["arena"] > big.bytes else ""
    return msg


def max_arena_array(board: Board, input_bytes: int, **kw) -> int:
    """The largest arena array (bytes, multiple of 16) that still places next to everything else."""
    hi = _align(sum(r.bytes for r in board_regions(board, kw.get("external", False))) + 1, ARENA_ALIGN)
    if not plan(board, ARENA_ALIGN, input_bytes, **kw).fits:
        return 0
    lo = ARENA_ALIGN
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2 // ARENA_ALIGN * ARENA_ALIGN
        if plan(board, mid, input_bytes, **kw).fits:
            lo = mid
        else:
            hi = mid
    return lo
