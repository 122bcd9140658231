"""The per-core analyzer targets (cortex-m4/m33/m55) and their QEMU boards load from the data files,
and CMSIS-NN's per-path buffer sizes follow its *_get_buffer_size functions (cheap: no toolchain)."""
from __future__ import annotations

import pytest

from netaug_mcu.common import boards
from netaug_mcu.converter.analyzer import facts, kernels

CORE_BOARDS = {"cortex-m4": "mps2-an386", "cortex-m33": "mps2-an505", "cortex-m55": "mps3-an547"}


@pytest.mark.parametrize("core", sorted(CORE_BOARDS))
def test_core_target_loads_with_m7_abi(core):
    m7, t = facts.target_facts("cortex-m7"), facts.target_facts(core)
    assert core in facts.TARGETS and "inherits" not in t
    assert t["kernels"] == "cmsis_nn" == m7["kernels"]
    # same 32-bit ABI: the interpreter's struct sizes are the M7's
    for key, value in m7.items():
        if key not in ("abi", "cores", "calibration", "cmsis_nn_path") and isinstance(value, (int, dict)):
            assert t[key] == value, key
    assert t["cmsis_nn_path"] == ("mve" if core == "cortex-m55" else "dsp")


@pytest.mark.parametrize("core,board", sorted(CORE_BOARDS.items()))
def test_core_board_in_database(core, board):
    b = boards.get(board)
    assert b.core == b.target == core and b.qemu["cpu"] == core and b.qemu["machine"] == board
    assert b.source and b.uart["base"].startswith("0x")
    assert dict((n, size) for n, _, size in b.linker_regions())["RAM"] >= 512 * 1024


def test_unknown_target_is_bad_input():
    with pytest.raises(facts.AnalyzerError, match="unknown target"):
        facts.target_facts("cortex-m85")


def test_conv_buffer_sizes_per_path():
    # 3x3 conv, Cin 16: DSP = 2 int16 im2col columns (2*2*ceil4(144)); MVE = 4 columns of 16-lane blocks
    args = dict(in_hwc=(8, 8, 16), k_hw=(3, 3), out_w=8, stride=(1, 1), pad=(1, 1), dil=(1, 1), filt_c=16)
    assert kernels.conv_s8_buffer_size("dsp", **args) == 2 * 144 * 2
    assert kernels.conv_s8_buffer_size("mve", **args) == 4 * 144
    args_odd = dict(args, in_hwc=(8, 8, 3), filt_c=3)   # 27 -> DSP ceil4 = 28, MVE ceil16 = 32
    assert kernels.conv_s8_buffer_size("dsp", **args_odd) == 2 * 28 * 2
    assert kernels.conv_s8_buffer_size("mve", **args_odd) == 4 * 32
    one = dict(args, k_hw=(1, 1), pad=(0, 0))           # 1x1: no buffer with GCC on any path
    assert kernels.conv_s8_buffer_size("dsp", **one) == kernels.conv_s8_buffer_size("mve", **one) == 0


def test_depthwise_buffer_sizes_per_path():
    conv = dict(in_hwc=(8, 8, 32), k_hw=(5, 5), out_w=8, stride=(1, 1), pad=(2, 2), dil=(1, 1))
    dw = dict(n=1, in_c=32, out_c=32, k_hw=(5, 5), pad=(2, 2), dil=(1, 1), conv_args=conv)
    assert kernels.depthwise_s8_buffer_size("dsp", **dw) == 32 * 25 * 2
    assert kernels.depthwise_s8_buffer_size("mve", **dw) == 4 * kernels.CH_IN_BLOCK_MVE * 25
    three = dict(dw, k_hw=(3, 3), pad=(1, 1), conv_args=dict(conv, k_hw=(3, 3), pad=(1, 1)))
    assert kernels.depthwise_s8_buffer_size("dsp", **three) == 0      # the 3x3 pad<=1 kernel
    assert kernels.depthwise_s8_buffer_size("mve", **three) == 4 * kernels.CH_IN_BLOCK_MVE * 9
