/* CMSIS device header of the STM32F746 firmware's own sources (board.c, startup.c, fault.c, main.cc):
 * cm7_device.h with the core macros of ST's stm32f746xx.h (cmsis_device_f7 v1.2.9, b01bc43f):
 * __CM7_REV 0x0001 = "Cortex-M7 revision r0p1", 4 priority bits, MPU, FPU (SP), I/D-cache.
 * The cached libtflm.a is compiled against the generic cm7_device.h (its cache key covers that file);
 * __CM7_REV generates no code, so both agree on everything that does.
 * Only the core peripherals (SCB, SysTick, NVIC, DWT, caches) are used through CMSIS;
 * STM32 and CMSDK peripherals are defined by the board files themselves. */
#ifndef NETAUG_STM32F746_DEVICE_H
#define NETAUG_STM32F746_DEVICE_H
#ifdef __cplusplus
extern "C" {
#endif

typedef enum IRQn {
  NonMaskableInt_IRQn = -14,
  HardFault_IRQn = -13,
  MemoryManagement_IRQn = -12,
  BusFault_IRQn = -11,
  UsageFault_IRQn = -10,
  SVCall_IRQn = -5,
  DebugMonitor_IRQn = -4,
  PendSV_IRQn = -2,
  SysTick_IRQn = -1,
  Device0_IRQn = 0
} IRQn_Type;

#define __CM7_REV 0x0001U /* r0p1, as stm32f746xx.h */
#define __MPU_PRESENT 1U
#define __VTOR_PRESENT 1U
#define __NVIC_PRIO_BITS 4U
#define __Vendor_SysTickConfig 0U
#define __FPU_PRESENT 1U
#define __FPU_DP 0U
#define __ICACHE_PRESENT 1U
#define __DCACHE_PRESENT 1U
#define __DTCM_PRESENT 1U

#include "core_cm7.h"

#ifdef __cplusplus
}
#endif
#endif
