"""Fetches and builds TFLM: where the TFLM + CMSIS-NN sources come from, and the compiled-library cache.

TFLM and CMSIS-NN are never part of this repository. The firmware build needs a
*TFLM tree*: the standalone source tree made by TFLM's own
`tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py` with
`OPTIMIZED_KERNEL_DIR=cmsis_nn` (directories tensorflow/, signal/,
third_party/{cmsis,cmsis_nn,flatbuffers,gemmlowp,kissfft,ruy}).

Lookup order (`find_tree`):
1. `$TFLM_TREE` (any tree made by create_tflm_tree.py with cmsis_nn);
2. the per-user cache `<cache>/tflm/<tflm-rev>/` (cache = `$NETAUG_MCU_CACHE`, else
   `$XDG_CACHE_HOME/netaug-mcu`, else `~/.cache/netaug-mcu`);
3. `netaug-mcu firmware --fetch-deps` (`fetch_tree`) fills that cache: it gets the
   pinned upstream revisions below with `git` from GitHub, pre-populates TFLM's
   `tools/make/downloads/` with them (the TFLM Makefile skips any download whose
   directory exists, so no wget/zip is needed), applies TFLM's own patches
   (flatbuffers.patch, kissfft.patch), and runs create_tflm_tree.py.
   `$NETAUG_MCU_GIT_MIRROR` (e.g. `/srv/mirror/{owner}+{name}/repo`) makes it read
   bare git mirrors instead of GitHub (offline machines).

The compiled library (`libtflm.a`, every kernel, CMSIS-NN) is cached in
`<cache>/tflm-lib/<hash>/` where the hash covers the tree identity, the compiler
version and every flag, so changing the model rebuilds only the firmware's own files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..common.paths import cache_root
from .errors import FirmwareError

# Pinned upstream revisions (those TFLM 90b983c2 itself pins in its download scripts:
# third_party_downloads.inc, ext_libs/cmsis_download.sh, ext_libs/cmsis_nn_download.sh).
TFLM_REV = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
PINS = {
    # name: (github owner/name, commit, directory under tools/make/downloads, note)
    "tflite-micro": ("tensorflow/tflite-micro", TFLM_REV, None, "2026-08-20"),
    "cmsis": ("ARM-software/CMSIS_6", "5782d6f8057906d360f4b95ec08a2354afe5c9b9", "cmsis", ""),
    "cortex_dfp": ("ARM-software/Cortex_DFP", "c2c70a97a20fb355815e2ead3d4a40e35a4a3cdf",
                   "cmsis/Cortex_DFP", "ARMCM7.h"),
    "cmsis_nn": ("ARM-software/CMSIS-NN", "4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae", "cmsis_nn", ""),
    "flatbuffers": ("google/flatbuffers", "187240970746d00bbd26b0f5873ed54d2477f9f3", "flatbuffers",
                    "tag v25.9.23 + TFLM flatbuffers.patch"),
    "gemmlowp": ("google/gemmlowp", "719139ce755a0f31cbf1c37f7f98adcc7fc9f425", "gemmlowp", ""),
    "ruy": ("google/ruy", "d37128311b445e758136b8602d1bbd2a755e115d", "ruy", ""),
    "kissfft": ("mborgerding/kissfft", "918336beac80868ad3011cb283063bb224e3e5da", "kissfft",
                "tag v130 + TFLM kissfft.patch"),
}
PATCHES = {
    "flatbuffers": "tensorflow/lite/micro/tools/make/flatbuffers.patch",
    "kissfft": "third_party/kissfft/kissfft.patch",
}
STAMP = ".netaug-mcu-tree.json"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MAKE_OPTIONS = ("TARGET=cortex_m_generic TARGET_ARCH=project_generation OPTIMIZED_KERNEL_DIR=cmsis_nn "
                "TARGET_TOOLCHAIN_ROOT=/usr/bin/")

# Cortex-M7 of the STM32F746: single-precision FPv5 (not the default double-precision FPU).
CPU_FLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"]
# What TFLM's Makefile uses for TARGET=cortex_m_generic OPTIMIZED_KERNEL_DIR=cmsis_nn BUILD_TYPE=release
# (minus the core's own defines, CORES below).
BASE_FLAGS = [
    "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DCMSIS_NN", "-DKERNELS_OPTIMIZED_FOR_SPEED",
    "-DNDEBUG", "-DTF_LITE_STRIP_ERROR_STRINGS", "-DTF_LITE_MCU_DEBUG_LOG",
]
TAIL_FLAGS = [
    "-mlittle-endian", "-funsigned-char", "-fomit-frame-pointer",
    "-ffunction-sections", "-fdata-sections", "-fmessage-length=0", "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables", "-Wall", "-Wno-unused-parameter", "-Wno-type-limits",
]


def _core_defines(arm_cm: str, cpu_m: str, device_h: str) -> list[str]:
    # TFLM's cortex_m_generic_makefile.inc: -D<ARMCMx> -DCPU_<Mx>=1 and the CMSIS device header
    # (read by cortex_m_generic/micro_time.cc for the DWT cycle counter).
    return [f"-D{arm_cm}", f"-DCPU_{cpu_m}=1", f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE=\\"{device_h}\\"']


# One libtflm.a per core. CMSIS-NN picks its code path from the compiler's feature macros
# (arm_nn_math_types.h): __ARM_FEATURE_DSP -> ARM_MATH_DSP (M4, M7, M33), __ARM_FEATURE_MVE ->
# ARM_MATH_MVEI (M55: -mcpu=cortex-m55 = +mve.fp +fp.dp). The paths differ in scratch-buffer sizes.
CORES = {
    "cortex-m7": {"cpu": CPU_FLAGS, "device_h": "cm7_device.h", "defines": _core_defines("ARMCM7", "M7", "cm7_device.h"),
                  "cmsis_nn_path": "dsp"},
    "cortex-m4": {"cpu": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
                  "device_h": "cm4_device.h", "defines": _core_defines("ARMCM4_FP", "M4", "cm4_device.h"),
                  "cmsis_nn_path": "dsp"},
    "cortex-m33": {"cpu": ["-mcpu=cortex-m33", "-mthumb", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"],
                   "device_h": "cm33_device.h", "defines": _core_defines("ARMCM33_DSP_FP", "M33", "cm33_device.h"),
                   "cmsis_nn_path": "dsp"},
    "cortex-m55": {"cpu": ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"],
                   "device_h": "cm55_device.h", "defines": _core_defines("ARMCM55", "M55", "cm55_device.h"),
                   "cmsis_nn_path": "mve"},
}
DEFAULT_CORE = "cortex-m7"


def core_spec(core: str = DEFAULT_CORE) -> dict:
    if core not in CORES:
        raise FirmwareError(f"no TFLM build for core '{core}' (choose from {', '.join(CORES)})")
    return CORES[core]


def cpu_flags(core: str = DEFAULT_CORE) -> list[str]:
    return list(core_spec(core)["cpu"])


def common_flags(core: str = DEFAULT_CORE) -> list[str]:
    return BASE_FLAGS + core_spec(core)["defines"] + TAIL_FLAGS


# The Cortex-M7 flags (kept: the generated Makefiles and the M7 library cache key use them).
COMMON_FLAGS = common_flags("cortex-m7")
CXX_ONLY = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-Wno-unused-private-field"]
C_ONLY = ["-std=c17"]


def cache_tree_dir() -> Path:
    return cache_root() / "tflm" / TFLM_REV[:12]


def is_tree(path: Path) -> bool:
    p = Path(path)
    return ((p / "tensorflow/lite/micro/micro_interpreter.h").is_file()
            and (p / "third_party/cmsis_nn/Include/arm_nnfunctions.h").is_file()
            and (p / "tensorflow/lite/micro/kernels/cmsis_nn").is_dir()
            and (p / "third_party/cmsis/CMSIS/Core/Include/m-profile").is_dir())


def find_tree() -> tuple[Path | None, str]:
    """(tree, how it was found) or (None, why not)."""
    env = os.environ.get("TFLM_TREE")
    if env:
        p = Path(env).expanduser()
        if is_tree(p):
            return p.resolve(), "TFLM_TREE"
        return None, (f"TFLM_TREE={env} is not a TFLM tree made by create_tflm_tree.py with "
                      f"OPTIMIZED_KERNEL_DIR=cmsis_nn")
    p = cache_tree_dir()
    if is_tree(p) and (p / STAMP).is_file():
        return p, "cache"
    return None, (f"no TFLM tree: TFLM_TREE is not set and the cache {p} is empty "
                  f"(run `netaug-mcu firmware --fetch-deps` once, it needs GitHub access)")


def require_tree(fetch: bool = False, log=print) -> Path:
    tree, why = find_tree()
    if tree is not None:
        return tree
    if not fetch:
        raise FirmwareError(why)
    return fetch_tree(log=log)


def toolchain(name: str = "arm-none-eabi-gcc") -> str | None:
    return shutil.which(name)


def require_toolchain() -> None:
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-ar", "arm-none-eabi-size",
                           "make") if not shutil.which(t)]
    if missing:
        raise FirmwareError(f"missing {', '.join(missing)} (Debian: sudo apt-get install gcc-arm-none-eabi "
                            f"libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib make)")


# ---------------------------------------------------------------------------------------------
# --fetch-deps


def _run(cmd, cwd=None, env=None, log=None):
    res = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = "\n".join(res.stdout.strip().splitlines()[-15:])
        raise FirmwareError(f"`{' '.join(map(str, cmd))}` failed (exit {res.returncode}): {tail}")
    return res.stdout


def _get_source(repo: str, rev: str, dest: Path, log=print) -> None:
    """Put the files of `repo` at commit `rev` into dest (no .git)."""
    owner, name = repo.split("/")
    mirror_tpl = os.environ.get("NETAUG_MCU_GIT_MIRROR")
    dest.mkdir(parents=True, exist_ok=True)
    if mirror_tpl:
        mirror = Path(mirror_tpl.format(owner=owner, name=name)).expanduser()
        if mirror.exists():
            log(f"  {repo}@{rev[:10]} from mirror {mirror}")
            archive = subprocess.Popen(["git", f"--git-dir={mirror}", "archive", "--format=tar", rev],
                                       stdout=subprocess.PIPE)
            tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout)
            archive.stdout.close()
            if archive.wait() != 0 or tar.returncode != 0:
                raise FirmwareError(f"could not extract {repo}@{rev} from {mirror}")
            return
    url = f"https://github.com/{repo}.git"
    log(f"  {repo}@{rev[:10]} from {url}")
    _run(["git", "init", "-q", str(dest)])
    _run(["git", "-C", str(dest), "fetch", "-q", "--depth", "1", url, rev])
    _run(["git", "-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"])
    shutil.rmtree(dest / ".git")


def _apply_patch(folder: Path, patch: Path) -> None:
    _run(["patch", "-p1", "-s", "-d", str(folder), "-i", str(patch)])


def fetch_tree(log=print) -> Path:
    """Get the pinned sources and generate the TFLM tree into the cache (minutes)."""
    if not shutil.which("git"):
        raise FirmwareError("--fetch-deps needs git")
    out = cache_tree_dir()
    work = cache_root() / "src" / TFLM_REV[:12]
    t0 = time.time()
    if work.exists():
        shutil.rmtree(work)
    tflm = work / "tflite-micro"
    log(f"fetching pinned sources into {work}")
    _get_source(PINS["tflite-micro"][0], TFLM_REV, tflm, log)
    downloads = tflm / "tensorflow/lite/micro/tools/make/downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    for key, (repo, rev, sub, _) in PINS.items():
        if sub is None:
            continue
        _get_source(repo, rev, downloads / sub, log)
    for key, patch in PATCHES.items():
        _apply_patch(downloads / PINS[key][2], tflm / patch)
    for build in list((downloads / "flatbuffers").rglob("BUILD")) + list((downloads / "flatbuffers").rglob("BUILD.bazel")):
        build.unlink()
    (downloads / "pigweed").mkdir(exist_ok=True)  # only used by TFLM's own tests; empty = "already there"
    env = dict(os.environ)
    # generate_cc_arrays.py runs at Makefile parse time and needs Pillow + numpy: use this interpreter.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    tmp_out = Path(tempfile.mkdtemp(prefix="tflm-tree-", dir=str(cache_root())))
    shutil.rmtree(tmp_out)
    log("running create_tflm_tree.py (a few minutes)")
    _run([sys.executable, "tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py",
          f"--makefile_options={MAKE_OPTIONS}", str(tmp_out)], cwd=tflm, env=env)
    # create_tflm_tree.py copies only the CMSIS-Core headers its file lists name; core_cm7.h
    # (used by the board support) also needs m-profile/*.h, so copy the whole CMSIS-Core include dir.
    shutil.copytree(downloads / "cmsis/CMSIS/Core/Include", tmp_out / "third_party/cmsis/CMSIS/Core/Include",
                    dirs_exist_ok=True)
    if not is_tree(tmp_out):
        raise FirmwareError(f"create_tflm_tree.py produced no usable tree in {tmp_out}")
    (tmp_out / STAMP).write_text(json.dumps({
        "tflm_rev": TFLM_REV, "pins": {k: {"repo": v[0], "rev": v[1], "note": v[3]} for k, v in PINS.items()},
        "makefile_options": MAKE_OPTIONS, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=1))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    log(f"TFLM tree ready in {out} ({time.time() - t0:.0f} s)")
    return out


# ---------------------------------------------------------------------------------------------
# compiled library cache


def tree_identity(tree: Path) -> str:
    stamp = tree / STAMP
    if stamp.is_file():
        return json.loads(stamp.read_text()).get("tflm_rev", "unknown") + ":" + str(tree.resolve())
    # A user tree: identify it by its file list and sizes/mtimes (cheap, changes when it is regenerated).
    h = hashlib.sha1()
    for p in sorted(tree.rglob("*")):
        if p.suffix in (".c", ".cc", ".h", ".cpp"):
            st = p.stat()
            h.update(f"{p.relative_to(tree)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def library_sources(tree: Path) -> list[str]:
    """All library sources of the tree, relative paths; commonly used kernels first (so a partial
    build is useful early)."""
    srcs = []
    for top in ("tensorflow", "signal", "third_party/cmsis_nn/Source"):
        base = tree / top
        if not base.is_dir():
            continue
        for p in base.rglob("*"):
            if p.suffix in (".cc", ".c", ".cpp") and "examples" not in p.parts:
                srcs.append(str(p.relative_to(tree)))
    prio = ("tensorflow/lite/micro/micro_", "tensorflow/lite/micro/memory", "tensorflow/lite/micro/arena",
            "tensorflow/lite/micro/kernels/cmsis_nn/", "third_party/cmsis_nn/")

    def key(s):
        for i, p in enumerate(prio):
            if s.startswith(p):
                return (i, s)
        return (len(prio), s)
    return sorted(srcs, key=key)


def include_dirs(tree: Path) -> list[str]:
    inc = [".", "third_party/flatbuffers/include", "third_party/gemmlowp", "third_party/ruy",
           "third_party/kissfft", "third_party/cmsis/CMSIS/Core/Include", "third_party/cmsis_nn",
           "third_party/cmsis_nn/Include", "third_party/cmsis/Cortex_DFP/Device/ARMCM7/Include"]
    return [str(tree / i) for i in inc if (tree / i).is_dir()] + [str(TEMPLATES / "common")]


def compiler_version() -> str:
    try:
        return subprocess.run(["arm-none-eabi-gcc", "--version"], stdout=subprocess.PIPE,
                              text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "none"


def library_key(tree: Path, extra_flags: list[str] | None = None,
                core: str = DEFAULT_CORE) -> tuple[str, dict]:
    # The same description layout for every core, so the Cortex-M7 key (and its cached build) is unchanged.
    desc = {"tree": tree_identity(tree), "cc": compiler_version(), "cpu": cpu_flags(core),
            "common": common_flags(core), "cxx": CXX_ONLY, "c": C_ONLY, "extra": list(extra_flags or []),
            "opt": "core -Os, kernels -O2", "mk": (TEMPLATES / "tflm_lib.mk").read_text(),
            "dev": (TEMPLATES / "common" / core_spec(core)["device_h"]).read_text()}
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16], desc


def library_dir(tree: Path, extra_flags: list[str] | None = None, core: str = DEFAULT_CORE) -> Path:
    return cache_root() / "tflm-lib" / library_key(tree, extra_flags, core)[0]


def library_if_built(tree: Path, core: str = DEFAULT_CORE) -> Path | None:
    """The cached libtflm.a for this core when a complete build is there (tests use it to skip)."""
    libdir = library_dir(tree, core=core)
    return libdir / "libtflm.a" if (libdir / "complete").is_file() else None


def write_library_makefile(tree: Path, libdir: Path, extra_flags: list[str] | None = None,
                           core: str = DEFAULT_CORE) -> Path:
    libdir.mkdir(parents=True, exist_ok=True)
    key, desc = library_key(tree, extra_flags, core)
    srcs = library_sources(tree)
    cfg = libdir / "config.mk"
    cfg.write_text(
        "# generated by netaug_mcu.firmware.tflm_build\n"
        f"TREE := {tree}\n"
        f"CPU_FLAGS := {' '.join(cpu_flags(core))}\n"
        f"COMMON_FLAGS := {' '.join(common_flags(core) + list(extra_flags or []))}\n"
        f"CXX_ONLY := {' '.join(CXX_ONLY)}\n"
        f"C_ONLY := {' '.join(C_ONLY)}\n"
        f"INCLUDES := {' '.join('-I' + i for i in include_dirs(tree))}\n"
        "SRCS := \\\n" + "".join(f"  {s} \\\n" for s in srcs) + "\n")
    (libdir / "key.json").write_text(json.dumps(desc, indent=1, sort_keys=True))
    shutil.copy(Path(__file__).parent / "templates" / "tflm_lib.mk", libdir / "Makefile")
    return libdir / "Makefile"


def build_library(tree: Path, jobs: int = 2, extra_flags: list[str] | None = None, log=print,
                  nice: int = 5, core: str = DEFAULT_CORE) -> Path:
    """Compile (or reuse) libtflm.a for this tree + core + flags. Returns the .a path."""
    require_toolchain()
    libdir = library_dir(tree, extra_flags, core)
    lib = libdir / "libtflm.a"
    if lib.is_file() and (libdir / "complete").is_file():
        return lib
    libdir.mkdir(parents=True, exist_ok=True)
    import fcntl
    with open(libdir / ".lock", "w") as lock:   # one builder per library; others wait, then reuse it
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another process is building {lib}; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if lib.is_file() and (libdir / "complete").is_file():
            return lib
        return _build_library_locked(tree, libdir, lib, jobs, extra_flags, log, nice, core)


def _build_library_locked(tree: Path, libdir: Path, lib: Path, jobs: int, extra_flags, log, nice,
                          core: str) -> Path:
    mk = write_library_makefile(tree, libdir, extra_flags, core)
    n = len(library_sources(tree))
    log(f"building the {core} TFLM + CMSIS-NN library once ({n} sources, cached in {libdir}; "
        f"~15-30 min on 2 cores)")
    t0 = time.time()
    cmd = ["make", "-C", str(libdir), "-f", mk.name, f"-j{jobs}"]
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice)] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = 0
    tail: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        if line.startswith("CC ") or line.startswith("CXX "):
            done += 1
            if done % 10 == 0 or done == n:
                log(f"  [{done}/{n}] {line.split()[-1]} ({time.time() - t0:.0f} s)")
    if proc.wait() != 0:
        raise FirmwareError("TFLM library build failed: " + " | ".join(tail[-6:]))
    (libdir / "complete").write_text(f"{time.time() - t0:.1f}\n")
    log(f"library ready: {lib} ({lib.stat().st_size} B, {time.time() - t0:.0f} s)")
    return lib
