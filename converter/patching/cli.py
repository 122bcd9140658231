"""The `optimize --patch/--offline-plan` handler (argument checks first, then the work, then the report)."""
from __future__ import annotations

import json
from pathlib import Path

from ...common.fsio import atomic_write
from .stage import PatchError


def _print_patch(rep: dict, name: str) -> None:
    a = rep["arena"]
    print(f"{name}: patched the first stage up to op {rep['split_op']} ({rep['split_op_name']}, output "
          f"{'x'.join(map(str, rep['split_tensor']))}) with a {rep['patch_grid']} grid: "
          f"{rep['ops_before']} -> {rep['ops_after']} ops")
    for t in ("cortex-m7", "host"):
        b, f = a[t]["before"], a[t]["after"]
        print(f"  arena {t:9s}: {b:,} -> {f:,} B ({b / max(f, 1):.2f}x smaller)")
    print(f"  MACs: {rep['macs_before']:,} -> {rep['macs_after']:,} (+{rep['mac_overhead']:.1%} halo recomputation)")
    if rep.get("floor_split_op") is not None:
        print(f"  floor for any split/grid within the MAC limit: {rep['arena_floor']:,} B on {rep['target']} (at most "
              f"{rep['reduction_ceiling']:.2f}x smaller: original tail + the larger of the input and the live bytes "
              f"after op {rep['floor_split_op']})")
    v = rep["verified"]
    st = v.get("stage", {})
    print(f"  bit-exact in host TFLM on {v['inputs']} inputs (model outputs and the stage output "
          f"'{st.get('tensor', '?')}', {st.get('distinct_outputs', 0)} distinct); measured host arena "
          f"{v['arena_measured_before']:,} -> {v['arena_measured_after']:,} B")


def _print_plan(rep: dict) -> None:
    print(f"offline arena plan ({rep['method']}, {rep['planned_buffers']} buffers, live-bytes bound "
          f"{rep['live_bound']:,} B), verified on {rep['verified']['inputs']} inputs in host TFLM:")
    for t, r in rep["targets"].items():
        print(f"  offline plan {t:9s}: head {r['greedy_head']:,} -> {r['planned_head']:,} B "
              f"(arena {r['arena_greedy']:,} -> {r['arena_planned']:,} B)")


def run_optimize(args) -> int:
    if not Path(args.model).is_file():
        raise PatchError(f"no such file: {args.model}")
    data = Path(args.model).read_bytes()
    rep: dict = {"model": args.model}
    if args.patch:
        from .optimize import patch_bytes
        data, prep = patch_bytes(data, grid=args.patch, max_overhead=args.max_overhead, target=args.target)
        rep.update(prep)
    if args.offline_plan:
        from ..offline_plan import PlanError, plan_bytes
        from .verify import bit_exact
        planned, orep = plan_bytes(data)
        v = bit_exact(data, planned)   # a wrong plan (overlapping live tensors) would corrupt outputs
        if v["mismatches"]:
            raise PlanError(f"offline-planned model differs on {v['mismatches']} of {v['inputs']} inputs; not written")
        orep["verified"] = {k: v[k] for k in ("inputs", "mismatches", "arena_measured_after")}
        data = planned
        rep["offline_plan"] = orep
    atomic_write(args.out, data)
    rep["out"] = args.out
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    if args.patch:
        _print_patch(rep, Path(args.model).name)
    if args.offline_plan:
        _print_plan(rep["offline_plan"])
    print(f"wrote {args.out}")
    return 0
