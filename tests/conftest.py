"""Shared pytest configuration for the default suite (tests/)."""
from __future__ import annotations

import os

import pytest

# Keep CPU use predictable on 2-core CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NETAUG_MCU_HEAVY") == "1":
        return
    skip = pytest.mark.skip(reason="heavy test: set NETAUG_MCU_HEAVY=1 to run it")
    for item in items:
        if "opt_in" in item.keywords:
            item.add_marker(skip)
