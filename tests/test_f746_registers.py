"""The STM32F746 board support's hand-written register addresses and bits equal ST's own CMSIS device
header (STMicroelectronics/cmsis_device_f7, pinned below): compiled as static assertions with
arm-none-eabi-gcc against the header taken from a local git mirror (`$NETAUG_MCU_GIT_MIRROR`, or
/work/.mirror); skipped with the reason when the toolchain, the mirror or a TFLM tree (CMSIS-Core) is
missing. Nothing is copied into the project."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from netaug_mcu.firmware import tflm_build

ROOT = Path(__file__).resolve().parents[1]
BOARD_C = ROOT / "firmware" / "templates" / "boards" / "stm32f746g-disco" / "board.c"
ST_REV = "b01bc43ffe13fc8fb12cd9a4bb342fd021b80524"   # cmsis_device_f7 v1.2.9 (2024-05-27)
REGS = ["RCC_CR", "RCC_PLLCFGR", "RCC_CFGR", "RCC_AHB1ENR", "RCC_APB1ENR", "RCC_APB2ENR", "RCC_DCKCFGR2",
        "FLASH_ACR", "PWR_CR1", "PWR_CSR1", "USART_CR1", "USART_CR2", "USART_CR3", "USART_BRR", "USART_ISR",
        "USART_ICR", "USART_RDR", "USART_TDR"]
BITS = ["RCC_CR_HSION", "RCC_CR_HSIRDY", "RCC_CR_HSEON", "RCC_CR_HSERDY", "RCC_CR_HSEBYP", "RCC_CR_PLLON",
        "RCC_CR_PLLRDY", "FLASH_ACR_PRFTEN", "FLASH_ACR_ARTEN", "FLASH_ACR_ARTRST", "PWR_CR1_ODEN",
        "PWR_CR1_ODSWEN", "PWR_CSR1_ODRDY", "PWR_CSR1_ODSWRDY", "USART_CR1_UE", "USART_CR1_RE", "USART_CR1_TE",
        "USART_CR1_RXNEIE", "USART_ISR_FE", "USART_ISR_NE", "USART_ISR_ORE", "USART_ISR_RXNE", "USART_ISR_TXE"]
ST_REG = {"FLASH_ACR": "FLASH->ACR", "PWR_CR1": "PWR->CR1", "PWR_CSR1": "PWR->CSR1", "RCC_AHB3ENR": "RCC->AHB3ENR",
          "FMC_SDCR1": "FMC_Bank5_6->SDCR[0]", "FMC_SDTR1": "FMC_Bank5_6->SDTR[0]", "FMC_SDCMR": "FMC_Bank5_6->SDCMR",
          "FMC_SDRTR": "FMC_Bank5_6->SDRTR", "FMC_SDSR": "FMC_Bank5_6->SDSR"}
REGS += list(ST_REG)[3:]


def _mirror() -> Path | None:
    pat = os.environ.get("NETAUG_MCU_GIT_MIRROR", "/work/.mirror/{owner}+{name}/repo")
    p = Path(pat.format(owner="STMicroelectronics", name="cmsis_device_f7"))
    return p if p.exists() else None


def test_board_registers_match_st_header(tmp_path):
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed")
    mirror = _mirror()
    if mirror is None:
        pytest.skip("no STMicroelectronics/cmsis_device_f7 git mirror (set NETAUG_MCU_GIT_MIRROR)")
    tree, why = tflm_build.find_tree()
    if tree is None:
        pytest.skip(why)
    inc = tmp_path / "st"
    inc.mkdir()
    for name in ("stm32f746xx.h", "system_stm32f7xx.h"):
        res = subprocess.run(["git", "-C", str(mirror), "show", f"{ST_REV}:Include/{name}"], stdout=subprocess.PIPE)
        if res.returncode:
            pytest.skip(f"revision {ST_REV[:8]} not in {mirror}")
        (inc / name).write_bytes(res.stdout)
    src = BOARD_C.read_text()
    defines = re.findall(r"^#define (\w+)(\(\w+\))? (.+)$", src, re.M)
    names = {n for n, _, _ in defines}
    ours = "\n".join(f"#define B_{n}{a} " + re.sub(r"\b(" + "|".join(names) + r")\b", r"B_\1", v)
                     for n, a, v in defines if n not in ("CORE_HZ", "APB2_HZ"))
    checks = [f"_Static_assert((uintptr_t)&B_{r} == (uintptr_t)&{ST_REG.get(r, r.replace('_', '->', 1).replace('USART->', 'USART1->'))}, \"{r}\");"
              for r in REGS]
    checks += [f"_Static_assert(B_{b} == {b}, \"{b}\");" for b in BITS]
    checks += ["_Static_assert(B_USART1_BASE == USART1_BASE && B_GPIOA_BASE == GPIOA_BASE && "
               "B_GPIOB_BASE == GPIOB_BASE && B_RCC_BASE == RCC_BASE, \"bases\");",
               "_Static_assert(B_USART1_IRQn == USART1_IRQn, \"USART1 IRQ\");",
               "_Static_assert(B_FMC_SDSR_BUSY == FMC_SDSR_BUSY && B_SDCMR_CTB1 == FMC_SDCMR_CTB1, \"FMC bits\");",
               "_Static_assert(RCC_AHB3ENR_FMCEN == 1u, \"FMCEN\");",
               "_Static_assert(1, \"\");"]
    c = tmp_path / "check.c"
    c.write_text("#include <stdint.h>\n#include \"stm32f746xx.h\"\n" + ours + "\n" + "\n".join(checks) + "\n")
    res = subprocess.run(["arm-none-eabi-gcc", *tflm_build.CPU_FLAGS, "-std=c17", "-fsyntax-only", f"-I{inc}",
                          f"-I{tree}/third_party/cmsis/CMSIS/Core/Include", str(c)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert res.returncode == 0, res.stdout[-3000:]


def test_f746_device_header_core_macros_match_st():
    mirror = _mirror()
    if mirror is None:
        pytest.skip("no STMicroelectronics/cmsis_device_f7 git mirror (set NETAUG_MCU_GIT_MIRROR)")
    res = subprocess.run(["git", "-C", str(mirror), "show", f"{ST_REV}:Include/stm32f746xx.h"],
                         stdout=subprocess.PIPE, text=True)
    if res.returncode:
        pytest.skip(f"revision {ST_REV[:8]} not in {mirror}")
    ours = (ROOT / "firmware" / "templates" / "boards" / "stm32f746g-disco" / "device.h").read_text()
    for macro in ("__CM7_REV", "__MPU_PRESENT", "__NVIC_PRIO_BITS", "__FPU_PRESENT", "__ICACHE_PRESENT",
                  "__DCACHE_PRESENT", "__Vendor_SysTickConfig"):
        st = re.search(rf"#define {macro}\s+(\w+)", res.stdout).group(1)
        mine = re.search(rf"#define {macro}\s+(\w+)", ours).group(1)
        assert int(st.rstrip("uUL"), 0) == int(mine.rstrip("uUL"), 0), macro
