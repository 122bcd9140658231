"""Flash footprint of the Cortex-M7 firmware from measured per-op kernel code sizes."""
from __future__ import annotations

from ...common.tflite_model import TFLiteModel
from .facts import flash_facts


def estimate_flash(model: TFLiteModel, hist: dict[str, int], target: str,
                   board: str | None = None) -> tuple[int, dict[str, int], list[str]]:
    """Flash of the Cortex-M7 firmware: model + fixed runtime/startup/libc + board support + kernels.

    Kernel code per op type was measured by linking (converter/data/flash.json); code is shared
    between kernels, so the first kernel counts with its shared helpers ('alone') and the others
    with what they add on top ('on_top').
    """
    f = flash_facts()
    alone, on_top = f["alone"], f["on_top"]
    ops = sorted(hist)
    unknown = [o for o in ops if o not in alone]
    if "FULLY_CONNECTED" in ops:
        first = "FULLY_CONNECTED"
    else:
        known = [o for o in ops if o in alone]
        first = max(known, key=lambda o: alone[o]) if known else None
    kernels = alone[first] if first else 0
    for o in ops:
        if o == first:
            continue
        if o in on_top:
            kernels += on_top[o]
        elif o in alone:
            kernels += max(alone[o] - 1500, 0)
        else:
            kernels += f["kernel_default"]
    bs = f["board_support"]
    brk = {"model": model.file_bytes, "kernels": kernels, "runtime": f["fixed"],
           "board_support": bs.get(board or "stm32f746g-disco", bs["_default"])}
    notes = []
    if f.get("provisional"):
        notes.append("flash code sizes are provisional estimates (see converter/data/flash.json)")
    if unknown:
        notes.append(f"no measured code size for {', '.join(unknown)}: {f['kernel_default']} B each assumed")
    return sum(brk.values()), brk, notes
