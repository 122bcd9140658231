"""What a training run writes besides the checkpoint: metrics.jsonl (one line per epoch), curves.png,
model.pt / model_last.pt (netaug_mcu.trainer.model_file) and summary.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..common.fsio import atomic_write, atomic_write_with

METRICS = "metrics.jsonl"
OUTPUT_FILES = ("model.pt", "model_last.pt", METRICS, "curves.png", "checkpoint.pt", "summary.json")


def rewrite_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """metrics.jsonl = the epochs kept (a resumed run drops those after its checkpoint)."""
    atomic_write(out / METRICS, "".join(json.dumps(h) + "\n" for h in history))


def append_metrics(out: Path, rec: dict[str, Any]) -> None:
    with open(out / METRICS, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def write_summary(out: Path, metrics: dict[str, Any]) -> None:
    atomic_write(out / "summary.json", json.dumps(metrics, indent=2) + "\n")


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    from matplotlib.ticker import MaxNLocator

    panels = ((("train_loss", "train loss"), ("val_loss", "val loss (no smoothing)"), "loss"),
              (("train_acc", "train top-1"), ("val_acc", "val top-1"), "accuracy (%)"))
    for ax, (train, val, ylabel) in zip(axes, panels):
        ax.plot(ep, [h[train[0]] for h in history], "o-", label=train[1])
        ax.plot(ep, [h[val[0]] for h in history], "s-", label=val[1])
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend()
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write_with(path, lambda fh: fig.savefig(fh, dpi=100, format="png"))
    plt.close(fig)
