/* CMSIS device header for a generic Cortex-M4 with single-precision FPv4 and the DSP extension
 * (QEMU mps2-an386 = Arm AN386; STM32F4/L4, nRF52). Only the core peripherals (SCB, SysTick, NVIC, DWT)
 * are used through CMSIS; the CMSDK peripherals are defined by the board files themselves. */
#ifndef NETAUG_CM4_DEVICE_H
#define NETAUG_CM4_DEVICE_H
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

#define __CM4_REV 0x0001U
#define __MPU_PRESENT 1U
#define __VTOR_PRESENT 1U
#define __NVIC_PRIO_BITS 3U
#define __Vendor_SysTickConfig 0U
#define __FPU_PRESENT 1U

#include "core_cm4.h"

#ifdef __cplusplus
}
#endif
#endif
