"""`analyze`, `check`, `optimize`, `fit`: exact TFLM arena/flash analysis and the budget gate.

Only stdlib at import time; the analyzer (numpy + tflite) is imported in the handlers.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

TARGET_HELP = ("memory model: 'cortex-m7' = 32-bit TFLM + CMSIS-NN (DSP, GCC) with the plain MicroInterpreter "
               "(firmware); 'host' = the x86-64 tflite-micro Python wheel (reference kernels, recording allocator)")


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def register(sub) -> None:
    p = sub.add_parser(
        "analyze", help="exact TFLM arena (head+tail), flash estimate and per-op memory of a .tflite",
        description="Simulate TFLM's AllocateTensors() for an int8 .tflite: greedy-planned activations and kernel "
                    "scratch (head), persistent structs (tail), plus a flash estimate. arena_bytes equals "
                    "MicroInterpreter::arena_used_bytes() for a 16-byte aligned arena.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--target", default="cortex-m7", choices=["cortex-m7", "host"], help=TARGET_HELP)
    p.add_argument("--json", action="store_true", help="print JSON (arena_bytes, head_bytes, tail_bytes, "
                                                       "flash_bytes, peak_op, ops) instead of the table")
    p.add_argument("--plot", metavar="PNG", help="write per-op memory as stacked bars with the budget line")
    p.add_argument("--board", default="stm32f746g-disco", help="board whose SRAM budget the plot shows "
                                                              "(default stm32f746g-disco)")
    p.add_argument("--reserve", help="RAM kept for stack/heap/firmware (default 16K+4K+8K)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "check", help="CI gate: does the model fit a board's SRAM and flash? exit 0 fits, 1 over, 2 invalid",
        description="Check a .tflite against a board budget: arena (exact TFLM model) + reserve <= SRAM and "
                    "model + code <= flash. Exit 0 = fits, 1 = over budget (by how much, the peak op, what "
                    "would help), 2 = invalid input.")
    p.add_argument("model", nargs="+", help=".tflite file(s) (several: e.g. from a pre-commit hook)")
    p.add_argument("--board", default=None, help="board profile (default stm32f746g-disco unless --sram/--flash "
                                                  "are both given); see --list-boards")
    p.add_argument("--sram", help="override SRAM available to the arena region, e.g. 320K")
    p.add_argument("--flash", help="override flash size, e.g. 1M")
    p.add_argument("--reserve", help="RAM kept for stack, heap and firmware .data/.bss (default 28K = 16K stack "
                                     "+ 4K heap + 8K firmware)")
    p.add_argument("--target", default=None, choices=["cortex-m7", "host"], help="memory model (default: the "
                                                                                  "board's)")
    p.add_argument("--json", dest="json_out", metavar="F", help="write the result as JSON to F ('-' = stdout)")
    p.add_argument("--junit", metavar="F", help="write a JUnit XML report to F (for CI test reporting)")
    p.add_argument("--list-boards", action="store_true", help="list board profiles and exit")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "optimize", help="reorder operators to minimise the TFLM arena (Liberis & Lane), verified",
        description="Find the operator order with the smallest peak memory (exact search over topological "
                    "orders, as in tflite-tools, extended to tensors with several consumers), pick the order "
                    "whose exact TFLM arena is smallest, rewrite the flatbuffer, and verify that TFLM outputs "
                    "are unchanged and the measured arena is not larger.")
    p.add_argument("model", help=".tflite file")
    p.add_argument("--out", required=True, help="output .tflite")
    p.add_argument("--target", default="cortex-m7", choices=["cortex-m7", "host"], help=TARGET_HELP)
    p.add_argument("--no-verify", action="store_true", help="skip running both models in the TFLM wheel")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser(
        "fit", help="largest input resolution of a zoo model that fits a board (SRAM and flash)",
        description="Convert a zoo model (random weights, int8, cached) at decreasing resolutions and report "
                    "the largest multiple of --step that fits the board.")
    p.add_argument("--zoo", required=True, help="zoo architecture name, e.g. mcunet-in1")
    p.add_argument("--board", default="stm32f746g-disco", help="board profile")
    p.add_argument("--sram"), p.add_argument("--flash"), p.add_argument("--reserve")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--step", type=int, default=16, choices=[8, 16], help="resolution multiple (default 16)")
    p.add_argument("--min-res", type=int, default=32)
    p.add_argument("--max-res", type=int, default=256)
    p.add_argument("--target", default=None, choices=["cortex-m7", "host"], help=TARGET_HELP)
    p.add_argument("--json", dest="json_out", metavar="F", help="write the search table as JSON")
    p.set_defaults(func=cmd_fit)


# ------------------------------------------------------------------------------------------

def _summary_json(a) -> dict:
    return {
        "arena_bytes": a.arena_bytes, "head_bytes": a.head_bytes, "tail_bytes": a.tail_bytes,
        "flash_bytes": a.flash_bytes, "peak_op": a.peak_op,
        "ops": [{"index": o.index, "op": o.op, "output_shape": o.output_shape, "live_bytes": o.live_bytes,
                 "scratch_bytes": o.scratch_bytes, "high_water": o.high_water} for o in a.ops],
    }


def _print_table(a, path: str, budget=None) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console()
    t = Table(title=f"{Path(path).name}  (target {a.target})", show_lines=False)
    for c in ("#", "op", "output shape", "live B", "scratch B", "high-water B"):
        t.add_column(c, justify="right" if c not in ("op", "output shape") else "left")
    for o in a.ops:
        style = "bold red" if o.index == a.peak_op_index else None
        t.add_row(str(o.index), o.op, "x".join(map(str, o.output_shape)), f"{o.live_bytes:,}", f"{o.scratch_bytes:,}",
                  f"{o.high_water:,}", style=style)
    con.print(t)
    tb = ", ".join(f"{k} {v:,}" for k, v in a.tail_breakdown.items())
    fb = ", ".join(f"{k} {v:,}" for k, v in a.flash_breakdown.items())
    con.print(f"arena_bytes {a.arena_bytes:,} ({_kib(a.arena_bytes)}) = head {a.head_bytes:,} + tail {a.tail_bytes:,};"
              f" min arena {a.min_arena_bytes:,}")
    con.print(f"  tail: {tb}")
    con.print(f"  scratch requests: {len(a.scratch)} ({sum(s['bytes'] for s in a.scratch):,} B)")
    con.print(f"flash_bytes {a.flash_bytes:,} ({_kib(a.flash_bytes)}): {fb}")
    con.print(f"peak op: {a.peak_op} (output {'x'.join(map(str, a.ops[a.peak_op_index].output_shape))})")
    if budget is not None:
        con.print(f"budget ({budget.board}): arena <= {budget.arena_budget:,} B "
                  f"(SRAM {budget.sram_bytes:,} - reserve {budget.reserve_bytes:,})")
    for n in a.notes:
        con.print(f"[dim]note: {n}[/dim]")


def plot_memory(a, out: str, budget=None, title: str | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    n = len(a.ops)
    x = np.arange(n)
    live = np.array([o.live_bytes for o in a.ops]) / 1024
    scr = np.array([o.scratch_bytes for o in a.ops]) / 1024
    frag = np.array([max(o.high_water - o.live_bytes - o.scratch_bytes, 0) for o in a.ops]) / 1024
    tail = np.full(n, a.tail_bytes / 1024)
    fig, ax = plt.subplots(figsize=(max(6, min(0.25 * n + 3, 24)), 4.5))
    ax.bar(x, tail, color="#999999", label="persistent tail")
    ax.bar(x, live, bottom=tail, color="#1f77b4", label="live activations")
    ax.bar(x, scr, bottom=tail + live, color="#ff7f0e", label="kernel scratch")
    ax.bar(x, frag, bottom=tail + live + scr, color="#d62728", alpha=0.35, label="planner gaps (to high-water)")
    if budget is not None:
        ax.axhline(budget.arena_budget / 1024, color="k", ls="--",
                   label=f"{budget.board} arena budget {budget.arena_budget / 1024:.0f} KiB")
    ax.axhline(a.arena_bytes / 1024, color="#2ca02c", ls=":", label=f"arena {a.arena_bytes / 1024:.1f} KiB")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{o.index}:{o.op[:10]}" for o in a.ops], rotation=90, fontsize=6)
    ax.set_ylabel("KiB")
    ax.set_title(title or f"TFLM arena per operator (target {a.target}), peak {a.peak_op}")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def cmd_analyze(args) -> int:
    from . import analyzer, boards
    a = analyzer.analyze(args.model, args.target, board=args.board)
    bud = boards.budget(args.board, reserve=args.reserve) if args.board else None
    if args.plot:
        plot_memory(a, args.plot, bud)
    if args.json:
        print(json.dumps(_summary_json(a), indent=1))
    else:
        _print_table(a, args.model, bud)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


# ------------------------------------------------------------------------------------------

def check_model(model_path: str, budget, target: str | None = None) -> dict:
    from . import analyzer
    tgt = target or budget.target
    a = analyzer.analyze(model_path, tgt, board=budget.board)
    arena_need = a.min_arena_bytes
    ram_over = arena_need - budget.arena_budget
    flash_over = a.flash_bytes - budget.flash_bytes
    fits = ram_over <= 0 and flash_over <= 0
    peak = a.ops[a.peak_op_index]
    helps: list[str] = []
    if ram_over > 0:
        share = a.head_bytes / max(a.arena_bytes, 1)
        if share > 0.5:
            scale = ((budget.arena_budget - a.tail_bytes) / max(a.head_bytes, 1)) if budget.arena_budget > a.tail_bytes else 0
            helps.append(f"activations dominate ({a.head_bytes:,} B head): shrink the tensors live at op {a.peak_op} "
                         f"(output {'x'.join(map(str, peak.output_shape))}); head scales with resolution^2, so about "
                         f"{max(scale, 0) ** 0.5:.2f}x the input resolution would fit")
            saving = 0
            try:
                from . import reorder
                _, rep = reorder.optimize_bytes(Path(model_path).read_bytes(), tgt)
                saving = rep["arena_before"] - rep["arena_after"]
            except Exception:  # noqa: BLE001 - a suggestion only
                saving = 0
            if saving > 0:
                helps.append(f"`netaug-mcu optimize` (operator reordering) saves {saving:,} B on this model")
            else:
                helps.append("operator reordering does not help this graph; avoid standalone PAD/TRANSPOSE ops "
                             "before the largest layers (onnx2tf inserts them for symmetric-padding stride-2 convs)")
        else:
            helps.append(f"the persistent tail ({a.tail_bytes:,} B) dominates: fewer layers/channels "
                         "(per-channel quantization costs 8 B per output channel)")
        helps.append(f"or a board with more SRAM, or a smaller --reserve (now {budget.reserve_bytes:,} B)")
    if flash_over > 0:
        helps.append(f"flash: the model is {a.model_bytes:,} B ({a.weight_bytes:,} B weights): fewer/narrower layers "
                     "or a board with more flash")
    return {
        "model": str(model_path), "board": budget.board, "target": tgt, "fits": fits,
        "arena_bytes": a.arena_bytes, "min_arena_bytes": arena_need, "head_bytes": a.head_bytes,
        "tail_bytes": a.tail_bytes, "flash_bytes": a.flash_bytes, "peak_op": a.peak_op,
        "sram_bytes": budget.sram_bytes, "reserve_bytes": budget.reserve_bytes, "arena_budget": budget.arena_budget,
        "flash_budget": budget.flash_bytes, "ram_over_bytes": max(ram_over, 0), "flash_over_bytes": max(flash_over, 0),
        "ram_margin_bytes": -ram_over, "flash_margin_bytes": -flash_over, "suggestions": helps,
        "notes": a.notes,
    }


def _junit(results: list[dict], path: str) -> None:
    from xml.sax.saxutils import escape, quoteattr
    cases = []
    for res in results:
        body = ""
        if not res["fits"]:
            msg = (f"over budget: RAM +{res['ram_over_bytes']} B, flash +{res['flash_over_bytes']} B; "
                   f"peak {res['peak_op']}")
            body = f"<failure message={quoteattr(msg)}>{escape(json.dumps(res, indent=1))}</failure>"
        cases.append(f'<testcase classname={quoteattr(Path(res["model"]).name)} name={quoteattr("fits " + res["board"])}>'
                     f'{body}<system-out>{escape(json.dumps(res))}</system-out></testcase>')
    fails = sum(not r["fits"] for r in results)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="netaug-mcu check" '
           f'tests="{len(results)}" failures="{fails}" errors="0">{"".join(cases)}</testsuite></testsuites>\n')
    Path(path).write_text(xml)


def cmd_check(args) -> int:
    from . import boards
    if args.list_boards:
        for n in boards.names():
            b = boards.budget(n)
            print(f"{n:18s} SRAM {b.sram_bytes // 1024:5d} KiB  flash {b.flash_bytes // 1024:5d} KiB  "
                  f"{b.clock_mhz} MHz  target {b.target}")
        return 0
    board = args.board
    if board is None and not (args.sram and args.flash):
        board = "stm32f746g-disco"
    bud = boards.budget(board, args.sram, args.flash, args.reserve)
    results = [check_model(m, bud, args.target) for m in args.model]
    doc = results[0] if len(results) == 1 else results
    if args.json_out == "-":
        print(json.dumps(doc, indent=1))
    elif args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=1) + "\n")
    if args.junit:
        _junit(results, args.junit)
    if args.json_out != "-":
        for res in results:
            status = "FITS" if res["fits"] else "OVER BUDGET"
            print(f"{status}: {Path(res['model']).name} on {res['board']} (target {res['target']})")
            print(f"  RAM  : arena {res['min_arena_bytes']:,} B of {res['arena_budget']:,} B "
                  f"(SRAM {res['sram_bytes']:,} - reserve {res['reserve_bytes']:,}); margin {res['ram_margin_bytes']:,} B")
            print(f"  flash: {res['flash_bytes']:,} B of {res['flash_budget']:,} B; margin {res['flash_margin_bytes']:,} B")
            print(f"  peak op: {res['peak_op']}")
            for s_ in res["suggestions"]:
                print(f"  help: {s_}")
    return 0 if all(r["fits"] for r in results) else 1


# ------------------------------------------------------------------------------------------

def cmd_optimize(args) -> int:
    from . import reorder
    rep = reorder.optimize_file(args.model, args.out, target=args.target, verify=not args.no_verify)
    print(f"{Path(args.model).name}: arena {rep['arena_before']:,} -> {rep['arena_after']:,} B "
          f"({rep['arena_before'] - rep['arena_after']:,} B saved, target {args.target}); "
          f"schedule peak {rep['peak_before']:,} -> {rep['peak_after']:,} B; order changed: {rep['changed']}")
    if rep.get("verified"):
        v = rep["verified"]
        print(f"verified in the TFLM wheel: outputs identical on {v['inputs']} inputs; measured arena "
              f"{v['measured_before']:,} -> {v['measured_after']:,} B")
    print(f"wrote {args.out}")
    return 0


def cmd_fit(args) -> int:
    from . import fit
    res = fit.fit_zoo(args.zoo, board=args.board, sram=args.sram, flash=args.flash, reserve=args.reserve,
                      channels=args.channels, classes=args.classes, step=args.step, min_res=args.min_res,
                      max_res=args.max_res, target=args.target)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=1) + "\n")
    if res["best_resolution"] is None:
        print(f"{args.zoo}: no resolution >= {args.min_res} fits {res['board']}", file=sys.stderr)
        return 1
    print(f"{args.zoo}: largest fitting resolution on {res['board']}: {res['best_resolution']} "
          f"(arena {res['best']['min_arena_bytes']:,} B of {res['arena_budget']:,} B, flash "
          f"{res['best']['flash_bytes']:,} B of {res['flash_budget']:,} B)")
    return 0
