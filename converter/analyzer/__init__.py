"""The exact TFLM arena model (see `analysis` for what it reproduces) and the flash estimate.

analysis  analyze() -> Analysis: the whole simulation, per-op memory table
tail      the persistent allocations and Prepare/planning transients, in TFLM's order
planner   GreedyMemoryPlanner and the buffer lifetimes
kernels   per-op kernel OpData and scratch requests (reference kernels, CMSIS-NN)
flash     the firmware's flash footprint from measured kernel code sizes
facts     the measured struct sizes per target (data/targets.json, data/flash.json)
"""
from ...common.tflite_model import TFLiteError, validate_for_tflm  # noqa: F401
from .analysis import Analysis, OpMemory, analyze  # noqa: F401
from .facts import ALIGN, TARGETS, AnalyzerError, align_up, flash_facts, target_facts  # noqa: F401
from .flash import estimate_flash  # noqa: F401
from .kernels import kernel_allocations  # noqa: F401
from .planner import greedy_plan, lifetimes, planned_buffers  # noqa: F401
