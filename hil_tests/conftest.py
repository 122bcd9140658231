"""HIL suite configuration: run the same tests against any target.

    pytest hil_tests                                   # virtual board on the bundled tiny model (default)
    pytest hil_tests --model m.tflite                  # virtual board on your model
    pytest hil_tests --port /dev/ttyACM0 --model m.tflite      # a real board flashed with m.tflite
    pytest hil_tests --port socket://host:4000 --model m.tflite
    pytest hil_tests --qemu-elf build/fw/.../fw.elf --model m.tflite   # QEMU mps2-an500
    (env NETAUG_MCU_QEMU_ELF / NETAUG_MCU_QEMU_MODEL add the QEMU target to a plain `pytest` run)
When the firmware stage can build quickly (TFLM library already compiled in its cache, arm-none-eabi-gcc and
qemu-system-arm installed), a plain run also builds the firmware for the bundled model and runs the suite on
QEMU mps2-an500 (NETAUG_MCU_HIL_QEMU=0 turns that off).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

DATA = Path(__file__).resolve().parent / "data"
TINY_MODEL = DATA / "tiny_fmnist32.tflite"


def pytest_addoption(parser):
    g = parser.getgroup("hil", "netaug-mcu hardware-in-the-loop target")
    g.addoption("--port", default=None, metavar="URL",
                help="device port / pyserial URL to test (default: start a virtual board)")
    g.addoption("--model", default=None, metavar="TFLITE",
                help="the int8 .tflite the target runs (default: hil_tests/data/tiny_fmnist32.tflite)")
    g.addoption("--qemu-elf", default=os.environ.get("NETAUG_MCU_QEMU_ELF"), metavar="ELF",
                help="also test this firmware ELF on QEMU mps2-an500 (env NETAUG_MCU_QEMU_ELF)")
    g.addoption("--limit", type=int, default=20, metavar="N",
                help="test images for the bit-exactness / accuracy checks (default 20)")
    g.addoption("--hil-baud", type=int, default=115200, help="baud rate for --port (default 115200)")


@dataclass
class Target:
    kind: str            # virtual | port | qemu
    url: str
    model: "object"      # hil_tests.model.ModelInfo
    baud: int
    stop: Callable | None = None

    def client(self, **kw):
        from netaug_mcu.hil.client import Client
        kw.setdefault("timeout", 10.0 if self.kind == "qemu" else 5.0)
        kw.setdefault("infer_timeout", 120.0)
        return Client(self.url, baud=self.baud, **kw).connect()


def _firmware_toolchain():
    """(tree, lib) when the firmware for the bundled model can be built quickly (TFLM library already
    compiled and cached, arm-none-eabi-gcc and qemu-system-arm present), else None."""
    if os.environ.get("NETAUG_MCU_HIL_QEMU") == "0":
        return None
    import shutil
    if any(shutil.which(t) is None for t in ("qemu-system-arm", "arm-none-eabi-gcc", "make")):
        return None
    from netaug_mcu.firmware import tflm_build
    tree, _ = tflm_build.find_tree()
    if tree is None:
        return None
    libdir = tflm_build.library_dir(tree)
    lib = libdir / "libtflm.a"
    if not (lib.is_file() and (libdir / "complete").is_file()):
        return None
    return tree, lib


def _kinds(config) -> list[str]:
    if config.getoption("--port"):
        return ["port"]
    kinds = ["virtual"]
    if config.getoption("--qemu-elf"):
        kinds.append("qemu")
    elif not config.getoption("--model") and _firmware_toolchain() is not None:
        kinds.append("qemu-auto")   # build the firmware for the bundled model and test it on QEMU too
    return kinds


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        metafunc.parametrize("target", _kinds(metafunc.config), indirect=True, scope="session")


@pytest.fixture(scope="session")
def target(request):
    from netaug_mcu.hil.model import load_model
    from netaug_mcu.hil.targets import start_qemu, start_virtual_board
    cfg = request.config
    kind = request.param
    model_opt = cfg.getoption("--model")
    if kind == "qemu":
        model_opt = model_opt or os.environ.get("NETAUG_MCU_QEMU_MODEL")
    if kind in ("port", "qemu") and not model_opt:
        pytest.fail(f"--model is required with --{'port' if kind == 'port' else 'qemu-elf'} (the .tflite the "
                    f"target runs)", pytrace=False)
    model = load_model(model_opt or TINY_MODEL)
    if kind == "port":
        t = Target("port", cfg.getoption("--port"), model, cfg.getoption("--hil-baud"))
    elif kind == "qemu":
        url, stop = start_qemu(cfg.getoption("--qemu-elf"))
        t = Target("qemu", url, model, 115200, stop)
    elif kind == "qemu-auto":
        from netaug_mcu.firmware import build, generate
        tree, lib = _firmware_toolchain()
        out = request.getfixturevalue("tmp_path_factory").mktemp("hil-fw")
        generate.generate(TINY_MODEL, board="mps2-an500", out=out, tree=tree, lib=lib, log=lambda *_: None)
        res = build.build(out, tree=tree, lib=lib, log=lambda *_: None)
        url, stop = start_qemu(res.elf)
        t = Target("qemu", url, model, 115200, stop)
    else:
        url, stop = start_virtual_board(model)
        t = Target("virtual", url, model, 115200, stop)
    yield t
    if t.stop:
        t.stop()


@pytest.fixture
def client(target):
    c = target.client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def limit(request, target) -> int:
    n = max(1, int(request.config.getoption("--limit")))
    return min(n, 10) if target.kind == "qemu" and not request.config.getoption("--qemu-elf") else n
