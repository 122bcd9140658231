"""The package extras (pyproject.toml [project.optional-dependencies]) and the modules each provides.

The `netaug-mcu` dispatcher checks a command's extra once before the command runs; a handler whose
need depends on its flags (`analyze --plot`, `optimize` with verification) checks with `require`.
"""
from __future__ import annotations

import importlib.util

from .errors import UserError

EXTRAS = {
    "train": ("torch", "matplotlib", "yaml", "PIL"),
    "convert": ("torch", "tensorflow", "onnx", "onnxruntime", "onnx2tf", "tflite_micro", "matplotlib"),
    "hil": ("serial", "tflite_micro"),
    "plot": ("matplotlib",),
    "tflm": ("tflite_micro",),
}
EXTRAS["all"] = tuple(dict.fromkeys(m for k in ("train", "convert", "hil") for m in EXTRAS[k]))
# Pseudo-extras name what they need; the message points at the real extras that provide it.
PROVIDED_BY = {"plot": "train, convert or all", "tflm": "hil, convert or all"}


def missing(extra: str | None) -> str | None:
    """The first module of `extra` that is not installed, or None."""
    for mod in EXTRAS.get(extra or "", ()):
        if importlib.util.find_spec(mod) is None:
            return mod
    return None


def require(extra: str, purpose: str) -> None:
    """One-line UserError when `extra`'s modules are missing, naming what to install."""
    mod = missing(extra)
    if mod:
        which = PROVIDED_BY.get(extra, extra)
        raise UserError(f"{purpose} needs the '{which}' extra (module '{mod}' is missing): "
                        f"pip install 'netaug-mcu[{which.split(',')[0].strip()}]' (or `make install`)")
