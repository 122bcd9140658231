"""How analyses and budget verdicts are shown: the per-op table, the JSON summary, the memory plot,
the `check` text and the JUnit report."""
from __future__ import annotations

import json
from pathlib import Path

from ..common.fsio import atomic_write, atomic_write_with


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def summary_json(a) -> dict:
    return {
        "arena_bytes": a.arena_bytes, "head_bytes": a.head_bytes, "tail_bytes": a.tail_bytes,
        "flash_bytes": a.flash_bytes, "peak_op": a.peak_op,
        "ops": [{"index": o.index, "op": o.op, "output_shape": o.output_shape, "live_bytes": o.live_bytes,
                 "scratch_bytes": o.scratch_bytes, "high_water": o.high_water} for o in a.ops],
    }


def print_table(a, path: str, budget=None) -> None:
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
    con.print(f"arena_bytes {a.arena_bytes:,} ({kib(a.arena_bytes)}) = head {a.head_bytes:,} + tail {a.tail_bytes:,};"
              f" min arena {a.min_arena_bytes:,}")
    con.print(f"  tail: {tb}")
    con.print(f"  scratch requests: {len(a.scratch)} ({sum(s['bytes'] for s in a.scratch):,} B)")
    con.print(f"flash_bytes {a.flash_bytes:,} ({kib(a.flash_bytes)}): {fb}")
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
    atomic_write_with(out, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    plt.close(fig)


def write_junit(results: list[dict], path: str) -> None:
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
    atomic_write(path, xml)


def write_junit_sweep(docs: list[dict], path: str) -> None:
    """`check --all-boards --junit`: one test case per (model, board); over budget = failure,
    unsupported core = skipped."""
    from xml.sax.saxutils import escape, quoteattr
    from .board_sweep import verdict_text
    cases, fails, skips = [], 0, 0
    for doc in docs:
        for r in doc["boards"]:
            body = ""
            if r["verdict"] == "over":
                fails += 1
                body = f"<failure message={quoteattr(verdict_text(r))}>{escape(json.dumps(r, indent=1))}</failure>"
            elif r["verdict"] == "unsupported core":
                skips += 1
                body = f"<skipped message={quoteattr(verdict_text(r))}/>"
            cases.append(f'<testcase classname={quoteattr(Path(doc["model"]).name)} '
                         f'name={quoteattr("fits " + r["board"])}>{body}'
                         f'<system-out>{escape(json.dumps(r))}</system-out></testcase>')
    n = len(cases)
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="netaug-mcu check --all-boards" '
           f'tests="{n}" failures="{fails}" skipped="{skips}" errors="0">{"".join(cases)}</testsuite></testsuites>\n')
    atomic_write(path, xml)


def plan_line(plan: dict) -> str:
    """The placement planner's layout (common.placement.Plan.to_json()) in one line."""
    if not plan["fits"]:
        return plan["reason"]
    return f"{plan['layout']}: " + "; ".join(
        f"{r['name']} {' + '.join(f'{k} {v[1]:,}' for k, v in r['items'].items())} = {r['used']:,} of "
        f"{r['bytes']:,} B" for r in plan["regions"] if r["items"])


def print_check(res: dict) -> None:
    status = "FITS" if res["fits"] else "OVER BUDGET"
    print(f"{status}: {Path(res['model']).name} on {res['board']} (target {res['target']})")
    print(f"  RAM  : arena {res['min_arena_bytes']:,} B of {res['arena_budget']:,} B "
          f"(SRAM {res['sram_bytes']:,} - reserve {res['reserve_bytes']:,}); margin {res['ram_margin_bytes']:,} B")
    print(f"  flash: {res['flash_bytes']:,} B of {res['flash_budget']:,} B; margin {res['flash_margin_bytes']:,} B")
    plan = res.get("placement")
    if plan:
        print(f"  place: {plan_line(plan)}")
        for n in res["notes"]:
            if n.startswith("off-chip:"):
                print(f"  {n}")
    print(f"  peak op: {res['peak_op']}")
    for s_ in res["suggestions"]:
        print(f"  help: {s_}")
    for n in res.get("notes", []):
        if n.startswith("figure derived"):
            print(f"  note: {n}")
