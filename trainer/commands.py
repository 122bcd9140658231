"""`netaug-mcu zoo` and `netaug-mcu train`. Only stdlib at import time (heavy imports in handlers)."""
from __future__ import annotations

import argparse
import json

from ..common import cliargs as ca

_FRACTION = ca.number(0, 1, hi_open=True)      # [0, 1)
_NONNEG = ca.number(0)
_POSITIVE_F = ca.number(0, lo_open=True)

TRAIN_EPILOG = """\
examples:
  netaug-mcu train --model mbv2-tiny --dataset fashion-mnist --epochs 10 --out runs/mbv2
  netaug-mcu train --model mbv2-tiny --netaug --epochs 30 --out runs/mbv2-netaug
  netaug-mcu train --model mcunet-in0 --dataset ~/data/flowers --channels 3 --resolution 96 \\
      --init-from runs/in0-imagenet/model.pt --out runs/in0-flowers
  netaug-mcu train --config run.yaml --seed 3          # YAML/JSON keys = long option names
  torchrun --nproc-per-node 4 -m netaug_mcu train ... # DDP (nccl on GPUs, gloo on CPU)
  netaug-mcu train --out runs/mbv2 --resume ...        # continue a killed run exactly

outputs in --out: model.pt (plain zoo model + preprocessing, what `convert` reads), model_last.pt,
metrics.jsonl, curves.png, checkpoint.pt, summary.json.
Under DDP --batch-size and --lr are per process: the peak lr is lr x world size (linear scaling);
the warm-up ramps from --warmup-lr (default: the unscaled --lr, as in the NetAug reference code).
"""


def _add_train_args(p: argparse.ArgumentParser) -> None:
    # Every default is None here: unset flags fall back to the config file, then to TrainConfig.
    g = p.add_argument_group("data and model")
    g.add_argument("--model", help="zoo model name (see `netaug-mcu zoo`; default mbv2-tiny)")
    g.add_argument("--dataset", help="'fashion-mnist' (default) or the path of an ImageFolder "
                   "directory (CLASS/IMAGE files; optional train/ val/ test/ subfolders)")
    g.add_argument("--data-dir", help="directory holding the Fashion-MNIST .gz files (default: "
                   "$NETAUG_MCU_DATA, /usr/share/datasets/fashion-mnist, ~/.cache/netaug-mcu)")
    g.add_argument("--no-download", dest="download", action="store_const", const=False,
                   help="never download Fashion-MNIST (fail if it is not on disk)")
    g.add_argument("--resolution", type=ca.RESOLUTION, help="input resolution (default 32)")
    g.add_argument("--channels", type=ca.integer(1, 3), help="input channels, 1 or 3 (default 1; grey "
                   "images are repeated for 3)")
    g.add_argument("--train-limit", type=ca.POSITIVE, help="use only the first N training images")
    g.add_argument("--val-limit", type=ca.POSITIVE, help="use only the first N held-out val images")
    g.add_argument("--test-limit", type=ca.POSITIVE, help="use only the first N test images")
    g.add_argument("--val-split", type=_NONNEG, help="held-out validation images taken from the "
                   "training data: a count or a fraction (default 5000 for Fashion-MNIST, 0.1 "
                   "for folders)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=ca.POSITIVE, help="total epochs, warm-up included (default 10)")
    g.add_argument("--batch-size", type=ca.POSITIVE, help="batch size per process (default 128)")
    g.add_argument("--lr", type=_POSITIVE_F, help="base learning rate per process (default 0.05)")
    g.add_argument("--wd", type=_NONNEG, help="weight decay on conv/linear weights; none on BN "
                   "and biases (default 4e-5)")
    g.add_argument("--warmup-epochs", type=_NONNEG, help="linear warm-up epochs (default 1; 0 for a "
                   "1-epoch run)")
    g.add_argument("--warmup-lr", type=_NONNEG, help="lr at the start of the warm-up (default: "
                   "--lr, i.e. the warm-up only matters with several processes)")
    g.add_argument("--label-smoothing", type=_FRACTION, help="default 0.1")
    g.add_argument("--dropout", type=_FRACTION, help="dropout before the classifier, in [0, 1) (default 0)")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                   help="no random-resized-crop/flip")
    g.add_argument("--crop-scale-min", type=ca.number(0, 1, lo_open=True), help="smallest random-resized-crop area "
                   "fraction (default 0.6)")
    g.add_argument("--seed", type=ca.integer(0, 2 ** 32 - 1), help="random seed (default 0)")
    g = p.add_argument_group("NetAug and knowledge distillation")
    g.add_argument("--netaug", action="store_const", const=True,
                   help="train with Network Augmentation (weight-shared augmented super-net)")
    g.add_argument("--aug-width", help="width multipliers, e.g. 1,1.8,2.6 (default: per model)")
    g.add_argument("--aug-expand", help="expand-ratio multipliers, e.g. 1,1.6,2.2,2.8")
    g.add_argument("--alpha", type=_NONNEG, help="weight of the augmented loss (default 1.0)")
    g.add_argument("--calib-images", type=ca.POSITIVE, help="training images for NetAug's BN "
                   "re-calibration (default 2000)")
    g.add_argument("--teacher", help="model.pt of a trained teacher for knowledge distillation")
    g.add_argument("--kd-weight", type=_NONNEG, help="weight of the KD loss (default 1.0)")
    g.add_argument("--kd-temperature", type=_POSITIVE_F, help="KD softmax temperature (default 1.0)")
    g = p.add_argument_group("run")
    g.add_argument("--out", help="output folder (default runs/train)")
    g.add_argument("--resume", action="store_const", const=True,
                   help="continue the run in --out from its checkpoint.pt")
    g.add_argument("--overwrite", action="store_const", const=True,
                   help="start over even if --out already holds a run")
    g.add_argument("--init-from", help="fine-tune from an earlier model.pt (a new classifier "
                   "when the class count differs)")
    g.add_argument("--select", choices=["best", "last"],
                   help="model.pt = the best-val epoch (default) or the last one")
    g.add_argument("--workers", type=ca.COUNT, help="data-loading processes for image folders "
                   "(default 0)")
    g.add_argument("--threads", type=ca.POSITIVE, help="CPU threads per process (default 1: faster than 2 "
                   "for these tiny nets, and immune to busy machines)")
    g.add_argument("--device", help="auto (default), cpu or cuda")
    g.add_argument("--amp", choices=["off", "bf16", "fp16"], help="mixed precision on CUDA: bf16 "
                   "or fp16 autocast (fp16 with loss scaling); default off (float32)")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False,
                   help="train in the NCHW layout instead of channels_last (slower; for comparisons)")
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                   help="no progress bars")
    g.add_argument("--config", help="YAML or JSON file of options (keys = long option names); "
                   "command-line flags override it")


def register(sub) -> None:
    p = sub.add_parser("zoo", help="list the tiny-model zoo (params, MACs)",
                       description="List the zoo's models with parameters and MACs, counted at "
                       "their default resolution, 3 input channels, 1000 classes, BN folded.")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_zoo, extra="train")

    p = sub.add_parser("train", help="train a zoo model (baseline, NetAug, KD; DDP via torchrun)",
                       description="Train a zoo model on Fashion-MNIST or an ImageFolder "
                       "directory with the NetAug paper's recipe (SGD Nesterov, warm-up + cosine "
                       "per iteration, label smoothing 0.1), optionally with Network Augmentation "
                       "(--netaug) and/or knowledge distillation (--teacher). Writes model.pt "
                       "for `netaug-mcu convert`.",
                       epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_args(p)
    p.set_defaults(func=cmd_train, extra="train")
    ca.declare_paths(p, inputs=("config", "teacher", "init_from"), out_dirs=("out",))


def cmd_zoo(args) -> int:
    from . import zoo

    rows = zoo.describe_all()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="netaug-mcu model zoo (3 input channels, 1000 classes, BN folded)")
    t.add_column("model")
    t.add_column("resolution", justify="right")
    t.add_column("params", justify="right")
    t.add_column("MACs", justify="right")
    t.add_column("description")
    for r in rows:
        t.add_row(r["name"], str(r["resolution"]), f"{r['params'] / 1e6:.3f}M",
                  f"{r['macs'] / 1e6:.1f}M", r.get("description", ""))
    Console().print(t)
    return 0


TRAIN_KEYS = ("model", "dataset", "data_dir", "download", "resolution", "channels", "train_limit",
              "val_limit", "test_limit", "val_split", "epochs", "batch_size", "lr", "wd",
              "warmup_epochs", "warmup_lr", "label_smoothing", "dropout", "augment",
              "crop_scale_min", "seed", "netaug", "aug_width", "aug_expand", "alpha",
              "calib_images", "teacher", "kd_weight", "kd_temperature", "out", "resume",
              "overwrite", "init_from", "select", "workers", "threads", "device", "progress",
              "channels_last", "amp")


def _require_text(path: str) -> None:
    """A --config must be a UTF-8 text file (YAML/JSON): a binary file is bad input, not a crash."""
    from .config import TrainError
    try:
        with open(path, "rb") as fh:
            fh.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrainError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TrainError(f"cannot read config file {path}: {exc.strerror}") from None


def config_from_args(args):
    from .config import load_config_file, make_config

    if getattr(args, "config", None):
        _require_text(args.config)
    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    overrides = {k: getattr(args, k, None) for k in TRAIN_KEYS}
    return make_config(file_values, overrides)


def cmd_train(args) -> int:
    cfg = config_from_args(args)
    from ..common.locks import output_lock, rank0
    from .engine import run_training

    ca.check_output_dir(cfg.out, "--out")  # a config file's `out` too
    if rank0():
        with output_lock(cfg.out):
            result = run_training(cfg)
    else:
        result = run_training(cfg)
    m = result.get("metrics")
    if m is not None:  # rank 0
        from pathlib import Path

        out = Path(result["out"])
        files = [f for f in ("model.pt", "model_last.pt", "metrics.jsonl", "curves.png",
                             "checkpoint.pt", "summary.json") if (out / f).exists()]
        val, test = m["val_top1"], m.get("test_top1")
        acc = f"val {val:.2f}%" if val is not None else "no val split"
        if test is not None:
            acc += f", test {test:.2f}%"
        print(f"outputs in {out}/: {', '.join(files)} (model.pt: epoch {m['selected_epoch']}, "
              f"{acc})", flush=True)
    return 0
