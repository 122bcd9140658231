/* CMSIS device header for a generic Cortex-M55 with MVE (integer + float), FPv5-DP, the DSP extension,
 * caches and the PMU (QEMU mps3-an547 = Arm AN547; QEMU models no caches and no PMU counters). */
#ifndef NETAUG_CM55_DEVICE_H
#define NETAUG_CM55_DEVICE_H
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

#define __CM55_REV 0x0001U
#define __MPU_PRESENT 1U
#define __VTOR_PRESENT 1U
#define __NVIC_PRIO_BITS 3U
#define __Vendor_SysTickConfig 0U
#define __FPU_PRESENT 1U
#define __FPU_DP 1U
#define __DSP_PRESENT 1U
#define __SAUREGION_PRESENT 1U
#define __ICACHE_PRESENT 1U
#define __DCACHE_PRESENT 1U
#define __PMU_PRESENT 1U
#define __PMU_NUM_EVENTCNT 8U

#include "core_cm55.h"

#ifdef __cplusplus
}
#endif
#endif
