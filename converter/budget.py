"""The budget gate: does an analyzed model fit a board's SRAM and flash? (`check`, `fit`, `firmware`)

`budget(board, sram, flash, reserve)` builds the budget from the board database
(netaug_mcu.common.boards) with optional overrides; `check(analysis, budget)` compares the exact
TFLM figures of one `Analysis` with it and returns a `BudgetResult` whose `to_json()` is the
documented `check --json` document.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from ..common import boards, placement
from ..common.errors import UserError
from .analyzer import Analysis, AnalyzerError


@dataclass
class Budget:
    board: str
    sram_bytes: int      # RAM available to the arena region (largest contiguous RAM)
    flash_bytes: int
    reserve_bytes: int   # stack + heap + firmware .data/.bss
    target: str
    clock_mhz: int | None = None
    # Firmware boards without --sram/--reserve overrides: RAM is judged by the placement planner
    # (common.placement), the same decision the generated linker script uses.
    placement: bool = False
    external: bool = False           # --sdram: the board's external RAM joins the plan

    @property
    def arena_budget(self) -> int:
        return max(self.sram_bytes - self.reserve_bytes, 0)


MAX_SIZE = 1 << 40


def parse_size(text: str) -> int:
    """'320K', '1M', '327680', '0x50000' -> bytes."""
    s = str(text).strip().upper()
    if not s.startswith("0X"):
        s = s.replace("IB", "").replace("B", "")
    mult = 1
    if s.endswith("K"):
        mult, s = 1024, s[:-1]
    elif s.endswith("M"):
        mult, s = 1024 * 1024, s[:-1]
    try:
        v = int(s, 16) if s.startswith("0X") else float(s)
    except ValueError:
        raise AnalyzerError(f"bad size '{text}' (use bytes or K/M suffixes, e.g. 320K)") from None
    if not math.isfinite(v) or v * mult > MAX_SIZE:
        raise AnalyzerError(f"bad size '{text}': not a finite size up to 1 TiB")
    if v < 0:
        raise AnalyzerError(f"bad size '{text}': negative")
    return int(v * mult)


def budget(board: str | None, sram: str | None = None, flash: str | None = None,
           reserve: str | None = None, external: bool = False) -> Budget:
    if external and not (board and boards.get(board).extra.get("external")):
        raise AnalyzerError(f"--sdram: board {board or 'custom'} has no external RAM in the board database")
    if board:
        b = boards.get(board)
        sram_b, flash_b, target, clock, res = b.sram_bytes, b.flash_bytes, b.target, b.clock_mhz, b.reserve_bytes
    else:
        if not sram or not flash:
            raise AnalyzerError("give --board or both --sram and --flash")
        sram_b, flash_b, target, clock, res = 0, 0, "cortex-m7", None, boards.default_reserve()
    if sram:
        sram_b = parse_size(sram)
    if flash:
        flash_b = parse_size(flash)
    if reserve is not None:
        res = parse_size(reserve)
    planned = bool(board) and bool(boards.get(board).firmware) and sram is None and reserve is None
    if external and not boards.get(board).firmware:
        raise AnalyzerError(f"--sdram: {board} has no generated firmware (no FMC set-up): only "
                            f"{', '.join(b for b in boards.firmware_boards() if boards.get(b).extra.get('external'))}")
    if external and not planned:
        raise AnalyzerError("--sdram needs the board's own memory map (no --sram/--reserve override)")
    return Budget(board or "custom", sram_b, flash_b, res, target, clock, planned, external)


@dataclass
class BudgetResult:
    model: str
    board: str
    target: str
    fits: bool
    arena_bytes: int
    min_arena_bytes: int
    head_bytes: int
    tail_bytes: int
    flash_bytes: int
    peak_op: str
    sram_bytes: int
    reserve_bytes: int
    arena_budget: int
    flash_budget: int
    ram_over_bytes: int
    flash_over_bytes: int
    ram_margin_bytes: int
    flash_margin_bytes: int
    suggestions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    placement: dict | None = None    # the planner's layout (firmware boards), see common.placement

    def to_json(self) -> dict:
        return asdict(self)

    def refusal(self) -> str:
        """Why the model does not fit, in one line (for `firmware`)."""
        parts = []
        if self.placement is not None and not self.placement["fits"]:
            parts.append(self.placement["reason"])
        elif self.ram_over_bytes:
            parts.append(f"arena {self.min_arena_bytes} B > {self.arena_budget} B (SRAM {self.sram_bytes} - "
                         f"reserve {self.reserve_bytes}), {self.ram_over_bytes} B over")
        if self.flash_over_bytes:
            parts.append(f"flash {self.flash_bytes} B > {self.flash_budget} B, {self.flash_over_bytes} B over")
        hint = f"; {self.suggestions[0]}" if self.suggestions else ""
        return f"{'; '.join(parts)} (peak op {self.peak_op}){hint}"


def _suggestions(a: Analysis, bud: Budget, ram_over: int, flash_over: int, model_bytes: bytes | None) -> list[str]:
    helps: list[str] = []
    peak = a.ops[a.peak_op_index]
    if ram_over > 0:
        share = a.head_bytes / max(a.arena_bytes, 1)
        if share > 0.5:
            room = bud.arena_budget - a.tail_bytes
            scale = room / max(a.head_bytes, 1) if room > 0 else 0
            helps.append(f"activations dominate ({a.head_bytes:,} B head): shrink the tensors live at op {a.peak_op} "
                         f"(output {'x'.join(map(str, peak.output_shape))}); head scales with resolution^2, so about "
                         f"{max(scale, 0) ** 0.5:.2f}x the input resolution would fit")
            saving = _reorder_saving(model_bytes, a.target) if model_bytes is not None else 0
            patch_help = _patch_suggestion(model_bytes, a.target) if model_bytes is not None else None
            if patch_help:
                helps.append(patch_help)
            if saving > 0:
                helps.append(f"`netaug-mcu optimize` (operator reordering) saves {saving:,} B on this model")
            else:
                helps.append("operator reordering does not help this graph; avoid standalone PAD/TRANSPOSE ops "
                             "before the largest layers (onnx2tf inserts them for symmetric-padding stride-2 convs)")
        else:
            helps.append(f"the persistent tail ({a.tail_bytes:,} B) dominates: fewer layers/channels "
                         "(per-channel quantization costs 8 B per output channel)")
        helps.append(f"or a board with more SRAM, or a smaller --reserve (now {bud.reserve_bytes:,} B)")
    if flash_over > 0:
        helps.append(f"flash: the model is {a.model_bytes:,} B ({a.weight_bytes:,} B weights) and the weights stay in "
                     f"the internal flash ({bud.flash_bytes:,} B): fewer/narrower layers or a board with more flash "
                     "(--sdram moves only RAM; executing or storing weights in the board's QSPI flash is not supported)")
    return helps


def _patch_suggestion(model_bytes: bytes, target: str) -> str | None:
    """The exact saving of patch-based inference (a quick search over a few grids), or None."""
    try:
        from .patching.search import search
        best, stats = search(model_bytes, "quick", 0.2, target)
    except UserError:  # a suggestion only: nothing when the first stage cannot be patched
        return None
    if best is None or best.arena >= stats["base_arena"]:
        return None
    return (f"`netaug-mcu optimize --patch auto` (patch-based inference of the first stage) saves at least "
            f"{stats['base_arena'] - best.arena:,} B here (grid {best.grid[0]}x{best.grid[1]} up to op {best.split}, "
            f"exact arena {best.arena:,} B; the full search may find more)")


def _reorder_saving(model_bytes: bytes, target: str) -> int:
    from . import reorder
    try:
        _, rep = reorder.optimize_bytes(model_bytes, target)
    except UserError:  # a suggestion only: no saving when the search cannot run
        return 0
    return rep["arena_before"] - rep["arena_after"]


def _planned(a: Analysis, bud: Budget, input_bytes: int) -> tuple[Budget, placement.Plan]:
    """The budget as the placement planner sees it: the arena may use what stack, runtime and the
    input buffer leave (reserve = the rest of on-chip RAM, so SRAM - reserve = arena budget)."""
    board = boards.get(bud.board)
    plan = placement.plan(board, placement.arena_array_bytes(a.min_arena_bytes), input_bytes,
                          external=bud.external)
    limit = placement.arena_used_limit(placement.max_arena_array(board, input_bytes, external=bud.external))
    sram = placement.onchip_bytes(board) + sum(r.bytes for r in placement.board_regions(board, bud.external)
                                               if r.external)
    return replace(bud, sram_bytes=sram, reserve_bytes=sram - limit), plan


def external_note(board_name: str, plan: placement.Plan) -> str | None:
    """On-chip/off-chip split of a plan and what the off-chip part costs (from the board's bus facts)."""
    off = plan.external_items
    if not plan.fits or not off:
        return None
    b = boards.get(board_name)
    ext = next(r for r in b.extra["external"] if r["linker"] in {plan.where[k] for k in off})
    axi = b.extra.get("axi_bus", {"bits": 32, "clock_mhz": b.clock_mhz})
    on_bytes = sum(n for k, n in plan.sizes.items() if k not in off)
    off_bytes = sum(plan.sizes[k] for k in off)
    ratio = (axi["bits"] * axi["clock_mhz"]) / (ext["bus_bits"] * ext["clock_mhz"])
    peak = ext["bus_bits"] / 8 * ext["clock_mhz"]          # MB/s
    where = (f"off-chip: {' + '.join(off)} ({off_bytes:,} B) in {ext['name']} at {ext['origin']}, on-chip "
             f"{on_bytes:,} B; {ext['name']}: {ext['bus_bits']}-bit bus at {ext['clock_mhz']} MHz ({peak:.0f} MB/s peak, "
             f"{ratio:.0f}x less than SRAM1/2 on the {axi['bits']}-bit {axi['clock_mhz']} MHz AXI)")
    if "arena" not in off:   # only the input buffer: one copy into the arena per inference
        return where + (f": expected slowdown = the input copy, >= {plan.sizes['input'] / peak:.0f} us per "
                        f"inference; the arena stays on-chip")
    return where + (f": every activation access goes off-chip; memory-bound layers (depthwise, add, pooling) can "
                    f"run up to ~{ratio:.0f}x slower where the 4 KB D-cache misses (not measured: needs the board)")


def check(a: Analysis, bud: Budget, model: str = "model", model_bytes: bytes | None = None,
          input_bytes: int | None = None) -> BudgetResult:
    """The gate's verdict for one analysis (`model_bytes` enables the reordering suggestion; `input_bytes`,
    the input buffer, enables the placement planner on firmware boards)."""
    plan = None
    if bud.placement and input_bytes is not None:
        bud, plan = _planned(a, bud, input_bytes)
    need = a.min_arena_bytes
    limit = bud.arena_budget
    ram_over = need - limit
    flash_over = a.flash_bytes - bud.flash_bytes
    ram_fits = plan.fits if plan is not None else ram_over <= 0
    return BudgetResult(
        model=str(model), board=bud.board, target=a.target, fits=ram_fits and flash_over <= 0,
        arena_bytes=a.arena_bytes, min_arena_bytes=need, head_bytes=a.head_bytes, tail_bytes=a.tail_bytes,
        flash_bytes=a.flash_bytes, peak_op=a.peak_op, sram_bytes=bud.sram_bytes, reserve_bytes=bud.reserve_bytes,
        arena_budget=limit, flash_budget=bud.flash_bytes, ram_over_bytes=max(ram_over, 0),
        flash_over_bytes=max(flash_over, 0), ram_margin_bytes=-ram_over, flash_margin_bytes=-flash_over,
        suggestions=_suggestions(a, bud, ram_over, flash_over, model_bytes),
        notes=list(a.notes) + [n for n in [plan and external_note(bud.board, plan)] if n],
        placement=plan.to_json() if plan is not None else None)
