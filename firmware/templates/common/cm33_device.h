/* CMSIS device header for a generic Cortex-M33 with FPv5-SP, the DSP extension and TrustZone
 * (QEMU mps2-an505 = Arm AN505; the firmware runs in the Secure state it starts in). */
#ifndef NETAUG_CM33_DEVICE_H
#define NETAUG_CM33_DEVICE_H
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

#define __CM33_REV 0x0000U
#define __MPU_PRESENT 1U
#define __VTOR_PRESENT 1U
#define __NVIC_PRIO_BITS 3U
#define __Vendor_SysTickConfig 0U
#define __FPU_PRESENT 1U
#define __DSP_PRESENT 1U
#define __SAUREGION_PRESENT 1U

#include "core_cm33.h"

#ifdef __cplusplus
}
#endif
#endif
