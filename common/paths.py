"""The per-user cache directory and where data sets are looked for."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$NETAUG_MCU_CACHE`, else `$XDG_CACHE_HOME/netaug-mcu`, else `~/.cache/netaug-mcu`."""
    if os.environ.get("NETAUG_MCU_CACHE"):
        return Path(os.environ["NETAUG_MCU_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netaug-mcu"
