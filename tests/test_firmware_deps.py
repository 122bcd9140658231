"""TFLM tree lookup, --fetch-deps and the compiled-library cache key (firmware/tflm_build.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from netaug_mcu.firmware import tflm_build
from netaug_mcu.firmware.errors import FirmwareError


def test_cache_location_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NETAUG_MCU_CACHE", str(tmp_path / "c"))
    assert tflm_build.cache_tree_dir() == tmp_path / "c" / "tflm" / tflm_build.TFLM_REV[:12]
    monkeypatch.delenv("NETAUG_MCU_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert tflm_build.cache_root() == tmp_path / "x" / "netaug-mcu"


def test_bad_tflm_tree_env_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("TFLM_TREE", str(tmp_path))
    tree, why = tflm_build.find_tree()
    assert tree is None and "TFLM_TREE" in why and "create_tflm_tree.py" in why
    with pytest.raises(FirmwareError, match="TFLM_TREE"):
        tflm_build.require_tree(fetch=False)


def test_empty_cache_says_how_to_fill_it(monkeypatch, tmp_path):
    monkeypatch.delenv("TFLM_TREE", raising=False)
    monkeypatch.setenv("NETAUG_MCU_CACHE", str(tmp_path))
    tree, why = tflm_build.find_tree()
    assert tree is None and "--fetch-deps" in why


def _fake_tree(root: Path) -> Path:
    for rel in ("tensorflow/lite/micro/micro_interpreter.h", "third_party/cmsis_nn/Include/arm_nnfunctions.h",
                "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc", "third_party/cmsis/CMSIS/Core/Include/m-profile/x.h",
                "tensorflow/lite/micro/kernels/add.cc", "third_party/cmsis_nn/Source/A/arm_a.c",
                "tensorflow/lite/micro/examples/hello/main.cc", "signal/src/window.cc"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("// x\n")
    return root


def test_tree_env_and_library_sources(monkeypatch, tmp_path):
    tree = _fake_tree(tmp_path / "t")
    monkeypatch.setenv("TFLM_TREE", str(tree))
    found, how = tflm_build.find_tree()
    assert found == tree.resolve() and how == "TFLM_TREE"
    srcs = tflm_build.library_sources(tree)
    assert "tensorflow/lite/micro/examples/hello/main.cc" not in srcs          # examples are not library
    assert srcs.index("tensorflow/lite/micro/kernels/cmsis_nn/conv.cc") < srcs.index(
        "tensorflow/lite/micro/kernels/add.cc")                                  # CMSIS-NN kernels first
    assert "third_party/cmsis_nn/Source/A/arm_a.c" in srcs and "signal/src/window.cc" in srcs


def test_library_key_depends_on_flags(tmp_path):
    tree = _fake_tree(tmp_path / "t")
    k1, _ = tflm_build.library_key(tree)
    k2, _ = tflm_build.library_key(tree, ["-DEXTRA"])
    assert k1 != k2 and tflm_build.library_key(tree)[0] == k1
    assert tflm_build.library_dir(tree).name == k1


def test_fetch_deps_from_mirrors(monkeypatch, tmp_path):
    """--fetch-deps end to end, reading bare git mirrors (NETAUG_MCU_GIT_MIRROR) instead of GitHub."""
    tpl = os.environ.get("NETAUG_MCU_GIT_MIRROR")
    if not tpl:
        pytest.skip("NETAUG_MCU_GIT_MIRROR not set (the real --fetch-deps clones from GitHub)")
    for repo, *_ in tflm_build.PINS.values():
        owner, name = repo.split("/")
        if not Path(tpl.format(owner=owner, name=name)).exists():
            pytest.skip(f"no mirror for {repo}")
    if shutil.which("git") is None or shutil.which("patch") is None:
        pytest.skip("git/patch missing")
    monkeypatch.setenv("NETAUG_MCU_CACHE", str(tmp_path))
    monkeypatch.delenv("TFLM_TREE", raising=False)
    tree = tflm_build.fetch_tree(log=lambda *_: None)
    assert tflm_build.is_tree(tree) and tflm_build.find_tree() == (tree, "cache")
    assert (tree / "third_party/cmsis/CMSIS/Core/Include/core_cm7.h").is_file()
    assert (tree / "third_party/flatbuffers/include/flatbuffers/flatbuffers.h").is_file()
    assert len(tflm_build.library_sources(tree)) > 300


def test_op_table_matches_the_pinned_tflm_resolver():
    """common.tflm_ops lists exactly the builtin ops MicroMutableOpResolver of the pinned TFLM registers."""
    import re

    from netaug_mcu.common.tflm_ops import RESOLVER_METHODS
    tree, why = tflm_build.find_tree()
    if tree is None:
        pytest.skip(why)
    src = (tree / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    found = {}
    for chunk in src.split("TfLiteStatus ")[1:]:   # one public method per chunk
        method = re.match(r"(Add\w+)\(", chunk)
        for op in re.findall(r"AddBuiltin\(BuiltinOperator_(\w+)", chunk) if method else []:
            found[op] = method.group(1)
    assert found == RESOLVER_METHODS
