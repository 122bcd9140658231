/* CMSIS device header for a generic Cortex-M7 with single-precision FPU and caches
 * (STM32F746: r1p0/r1p1 silicon, 4 priority bits; QEMU mps2-an500 reports r1p2).
 * Only the core peripherals (SCB, SysTick, NVIC, DWT, caches) are used through CMSIS;
 * STM32 and CMSDK peripherals are defined by the board files themselves. */
#ifndef NETAUG_CM7_DEVICE_H
#define NETAUG_CM7_DEVICE_H
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

#define __CM7_REV 0x0101U
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
