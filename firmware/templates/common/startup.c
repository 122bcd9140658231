/* Cortex-M start-up shared by every board: vector table, .data/.bss init, FPU (and MVE) enable, C++ ctors.
 * NETAUG_NUM_IRQS and the IRQ handlers a board needs come from the board's board.c. */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE /* the core's device header (tflm_build.CORES) */

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern void __libc_init_array(void);
extern int main(void);

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void USART1_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));

#ifndef NETAUG_NUM_IRQS
#define NETAUG_NUM_IRQS 98 /* STM32F746: 98 IRQ lines; mps2-an500 uses fewer (harmless) */
#endif
#define USART1_IRQ 37

typedef void (*vector_t)(void);
__attribute__((section(".isr_vector"), used)) const vector_t g_vectors[16 + NETAUG_NUM_IRQS] = {
    [0] = (vector_t)&_estack,
    [1] = Reset_Handler,
    [2] = NMI_Handler,
    [3] = HardFault_Handler,
    [4] = MemManage_Handler,
    [5] = BusFault_Handler,
    [6] = UsageFault_Handler,
    [11] = SVC_Handler,
    [12] = DebugMon_Handler,
    [14] = PendSV_Handler,
    [15] = SysTick_Handler,
    [16 ... 16 + NETAUG_NUM_IRQS - 1] = Default_Handler,
    [16 + USART1_IRQ] = USART1_IRQHandler,
};

void Reset_Handler(void) {
  SCB->VTOR = (uint32_t)&g_vectors[0];
  SCB->CPACR |= (3UL << 20) | (3UL << 22); /* CP10, CP11 full access: the FPU (and MVE on M55) */
  __DSB();
  __ISB();
  uint32_t* src = &_sidata;
  for (uint32_t* dst = &_sdata; dst < &_edata;) *dst++ = *src++;
  for (uint32_t* dst = &_sbss; dst < &_ebss;) *dst++ = 0;
  fault_init(); /* fault.c: fault exceptions on, MPU background region + stack guard, stack paint */
  __libc_init_array();
  main();
  board_exit(0);
}

/* Unexpected exception: report it on the serial line (a host sees an e- line, then silence). */
void Default_Handler(void) {
  const char* msg = "\r\ne-[fatal exception]\r\n";
  uint32_t ipsr = __get_IPSR();
  (void)ipsr;
  while (*msg) board_putc(*msg++);
  board_exit(99);
  for (;;) {
  }
}

/* newlib stubs (nosys.specs gives the rest): nothing calls malloc, but keep _sbrk bounded. */
extern uint32_t _heap_start, _heap_end;
void* _sbrk(intptr_t incr) {
  static uint8_t* brk = 0;
  if (!brk) brk = (uint8_t*)&_heap_start;
  if (brk + incr > (uint8_t*)&_heap_end) return (void*)-1;
  uint8_t* prev = brk;
  brk += incr;
  return prev;
}
