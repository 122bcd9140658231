"""Training configuration: defaults < config file (YAML/JSON) < command-line flags."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrainError


@dataclass
class TrainConfig:
    # what
    model: str = "mbv2-tiny"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = True
    resolution: int = 32
    channels: int = 1
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    val_split: float | None = None  # held-out count (>=1) or fraction (<1); default per dataset
    # optimisation (reference recipe: SGD nesterov 0.9, label smoothing 0.1, warm-up + cosine)
    epochs: int = 10  # total, warm-up included
    batch_size: int = 128  # per process
    lr: float = 0.05  # base lr per process; the peak lr is lr * world_size
    wd: float = 4e-5
    warmup_epochs: float | None = None  # None = 1 epoch (0 for a 1-epoch run)
    warmup_lr: float | None = None  # start of the warm-up; None = lr (as in the reference)
    label_smoothing: float = 0.1
    dropout: float = 0.0
    augment: bool = True
    crop_scale_min: float = 0.6
    seed: int = 0
    # NetAug / KD
    netaug: bool = False
    aug_width: list[float] | None = None
    aug_expand: list[float] | None = None
    alpha: float = 1.0
    calib_images: int = 2000
    teacher: str | None = None
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    # run
    out: str = "runs/train"
    resume: bool = False
    overwrite: bool = False
    init_from: str | None = None
    select: str = "best"  # model.pt = best val epoch ("best") or the last epoch ("last")
    workers: int = 0
    # CPU threads for torch. 1 by default, safe on a shared machine: a second OpenMP thread made a step
    # 4.6x slower on a busy 2-core box (spin-waiting); on idle cores 2 threads are 2.1x faster with
    # channels_last (bench/results/train_throughput.json), so the demo passes --threads <usable cores>.
    threads: int = 1
    device: str = "auto"
    progress: bool = True
    # speed (trainer.speed): NHWC weights/activations while training (exports stay NCHW; the
    # same function up to float reassociation), and mixed precision on CUDA
    channels_last: bool = True
    amp: str = "off"  # off | bf16 | fp16 (CUDA only)

    # Fields that must agree across DDP ranks and between a checkpoint and its --resume.
    RUN_ONLY = ("data_dir", "download", "out", "resume", "overwrite", "workers", "threads", "device",
                "progress", "channels_last")
    # Training fields added later: in the digest only when set, so older checkpoints still resume.
    DIGEST_IF_SET = {"amp": "off"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def training_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items()
                if k not in self.RUN_ONLY and self.DIGEST_IF_SET.get(k, object()) != v}

    def digest(self) -> str:
        blob = json.dumps(self.training_fields(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def validate(self) -> None:
        def bad(msg):
            raise TrainError(msg)

        if self.epochs < 1:
            bad(f"--epochs must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            bad(f"--batch-size must be >= 1 (got {self.batch_size})")
        if not self.lr > 0:
            bad(f"--lr must be > 0 (got {self.lr})")
        if self.wd < 0:
            bad(f"--wd must be >= 0 (got {self.wd})")
        if self.warmup_epochs is None:
            self.warmup_epochs = 1.0 if self.epochs > 1 else 0.0
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            bad(f"--warmup-epochs must be in [0, epochs) (got {self.warmup_epochs})")
        if not 0 <= self.label_smoothing < 1:
            bad(f"--label-smoothing must be in [0, 1) (got {self.label_smoothing})")
        if not 0 < self.crop_scale_min <= 1:
            bad(f"--crop-scale-min must be in (0, 1] (got {self.crop_scale_min})")
        if self.channels not in (1, 3):
            bad(f"--channels must be 1 or 3 (got {self.channels})")
        if not 8 <= self.resolution <= 1024:
            bad(f"--resolution must be in 8..1024 (got {self.resolution})")
        if self.select not in ("best", "last"):
            bad(f"--select must be 'best' or 'last' (got {self.select!r})")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad(f"--device must be auto, cpu or cuda (got {self.device!r})")
        if self.resume and self.init_from:
            bad("--resume and --init-from exclude each other")
        if self.kd_temperature <= 0 or self.kd_weight < 0:
            bad("--kd-temperature must be > 0 and --kd-weight >= 0")
        if self.amp not in ("off", "bf16", "fp16"):
            bad(f"--amp must be off, bf16 or fp16 (got {self.amp!r})")
        if self.amp != "off" and self.device == "cpu":
            bad(f"--amp {self.amp} needs --device cuda (on CPU the trainer runs float32)")
        if self.threads < 1:
            bad(f"--threads must be >= 1 (got {self.threads})")
        if self.workers < 0:
            bad(f"--workers must be >= 0 (got {self.workers})")
        for flag, path in (("--teacher", self.teacher), ("--init-from", self.init_from)):
            try:
                found = not path or Path(path).expanduser().is_file()
            except (OSError, ValueError) as exc:   # ENAMETOOLONG, a NUL byte, ...: is_file() only hides ENOENT
                bad(f"{flag} {str(path)[:60]}: unusable path ({getattr(exc, 'strerror', None) or exc})")
            if not found:
                bad(f"{flag} {str(path)[:60]}: file not found")
        for name in ("train_limit", "val_limit", "test_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                bad(f"--{name.replace('_', '-')} must be >= 1 (got {v})")
        self._validate_ranges(bad)

    def _validate_ranges(self, bad) -> None:
        """The ranges a config file can break too (the CLI flags are range-checked while parsing)."""
        for name, value in self.to_dict().items():
            if isinstance(value, float) and not math.isfinite(value):
                bad(f"--{name.replace('_', '-')} must be a finite number (got {value})")
        if not 0 <= self.dropout < 1:
            bad(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.calib_images < 1:
            bad(f"--calib-images must be >= 1 (got {self.calib_images})")
        if self.alpha < 0:
            bad(f"--alpha must be >= 0 (got {self.alpha})")
        if not 0 <= self.seed < 2 ** 32:
            bad(f"--seed must be in [0, 2**32) (got {self.seed})")
        if self.val_split is not None and self.val_split < 0:
            bad(f"--val-split must be >= 0 (got {self.val_split})")
        if self.warmup_lr is not None and self.warmup_lr < 0:
            bad(f"--warmup-lr must be >= 0 (got {self.warmup_lr})")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def parse_float_list(text: str | list | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    items = text if isinstance(text, list) else str(text).replace(" ", "").split(",")
    try:
        if any(isinstance(v, (bool, list, dict)) for v in items):   # a config file's [true, [1]]
            raise ValueError
        vals = [float(v) for v in items if v != ""]
    except (ValueError, TypeError, OverflowError):
        raise TrainError(f"{flag} expects comma-separated numbers like 1,1.8,2.6 "
                         f"(got {str(text)[:60]!r})") from None
    if not all(math.isfinite(v) for v in vals):
        raise TrainError(f"{flag} expects finite numbers (got {str(text)[:60]!r})")
    if not vals:
        raise TrainError(f"{flag} expects comma-separated numbers like 1,1.8,2.6 (got {text!r})")
    return vals


def load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TrainError(f"config file {path} not found")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not a text file (binary or not UTF-8)"
        raise TrainError(f"cannot read config file {path}: {why}") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            # libyaml when present: 10x faster, and it bounds the nesting depth (a clean ScannerError)
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception as exc:  # noqa: BLE001 - yaml/json errors -> one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainError(f"cannot parse config file {path}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TrainError(f"config file {path} must hold a mapping of option: value")
    out = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if key not in FIELDS:
            raise TrainError(f"unknown option {k!r} in config file {path} "
                             f"(known: {', '.join(sorted(FIELDS))})")
        out[key] = v
    return out


def _coerce(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in ("aug_width", "aug_expand"):
        return parse_float_list(value, "--" + key.replace("_", "-"))
    if isinstance(value, (list, dict)):
        # only the two list options take a list; str() of a YAML alias bomb would never return
        raise TrainError(f"option {key!r}: expected a single value, got a {type(value).__name__}")
    default = FIELDS[key].default
    typ = type(default) if default is not None else None
    if key in ("train_limit", "val_limit", "test_limit"):
        typ = int
    elif key in ("val_split", "warmup_lr", "warmup_epochs"):
        typ = float
    elif key in ("teacher", "init_from", "data_dir"):
        typ = str
    try:
        if typ is bool and isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return typ(value) if typ is not None else value
    except (TypeError, ValueError, OverflowError):   # OverflowError: int(1e400) from a config file
        raise TrainError(f"option {key!r}: cannot use {str(value)[:60]!r} as {typ.__name__}") from None


def make_config(file_values: dict[str, Any] | None = None,
                overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then `file_values`, then `overrides` (keys with value None are ignored)."""
    merged: dict[str, Any] = {}
    for src in (file_values or {}, overrides or {}):
        for k, v in src.items():
            if v is not None:
                merged[k] = _coerce(k, v)
    if isinstance(merged.get("val_split"), float) and merged["val_split"] >= 1:
        merged["val_split"] = int(merged["val_split"])
    cfg = TrainConfig(**merged)
    cfg.validate()
    return cfg
