/* QEMU mps2-an500 (Cortex-M7, 25 MHz): CMSDK UART0 at 0x40004000, SysTick as the timer.
 * Under `qemu-system-arm -icount shift=0` every instruction takes 1 ns of virtual time, so
 * SysTick ticks (25 MHz) = instructions / 40: a deterministic instruction-count proxy, not
 * Cortex-M7 cycles (QEMU has no DWT CYCCNT, caches or wait states). */
#include <stdint.h>

#include "board.h"
#include "board_config.h" /* generated from the board database */
#include "cm7_device.h"

#define CORE_HZ BOARD_CORE_HZ /* CMSDK UART0 runs from the core clock */

typedef struct {
  volatile uint32_t DATA;     /* 0x00 */
  volatile uint32_t STATE;    /* 0x04 bit0 TX full, bit1 RX full */
  volatile uint32_t CTRL;     /* 0x08 bit0 TX enable, bit1 RX enable */
  volatile uint32_t INTSTATUS;/* 0x0C */
  volatile uint32_t BAUDDIV;  /* 0x10 */
} CmsdkUart;
#define UART0 ((CmsdkUart*)0x40004000u)

const char board_timer_name[] = BOARD_TIMER_NAME;
const char board_name[] = BOARD_NAME;

static volatile uint32_t g_wraps;

void SysTick_Handler(void) { g_wraps++; }

void board_init(uint32_t baud) {
  UART0->BAUDDIV = baud ? CORE_HZ / baud : 16u;
  UART0->CTRL = 3u;
  SysTick->LOAD = 0x00FFFFFFu;
  SysTick->VAL = 0;
  SysTick->CTRL = SysTick_CTRL_CLKSOURCE_Msk | SysTick_CTRL_TICKINT_Msk | SysTick_CTRL_ENABLE_Msk;
  __enable_irq();
}

void board_putc(char c) {
  while (UART0->STATE & 1u) {
  }
  UART0->DATA = (uint8_t)c;
}

uint64_t board_ticks(void) {
  uint32_t w1, w2, val;
  do {
    w1 = g_wraps;
    val = SysTick->VAL;
    w2 = g_wraps;
  } while (w1 != w2 || (SCB->ICSR & SCB_ICSR_PENDSTSET_Msk));
  return ((uint64_t)w1 << 24) + (0x00FFFFFFu - val);
}

uint32_t board_ticks_per_second(void) { return CORE_HZ; }

/* Under -icount virtual time advances per instruction, and MMIO polls are slow to emulate: between
 * polls run ~1000 plain instructions (1 us virtual) so the bload timeout (5 s virtual, board_config.h)
 * takes seconds, not minutes, of wall time. Costs at most 1 us of latency per received byte. */
static void spin_1us(void) {
  uint32_t n = 500u;
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

int board_getc(uint32_t timeout_us) {
  uint64_t deadline = timeout_us ? board_ticks() + (uint64_t)timeout_us * (CORE_HZ / 1000000u) : 0;
  for (;;) {
    if (UART0->STATE & 2u) return (int)(UART0->DATA & 0xFFu);
    if (timeout_us) {
      if (board_ticks() > deadline) return -1;
      spin_1us();
    }
  }
}

/* Semihosting SYS_EXIT_EXTENDED (0x20): qemu -semihosting-config enable=on,target=native exits
 * with `code` as its process status. */
void board_exit(int code) {
  static volatile uint32_t block[2];
  block[0] = 0x20026u; /* ADP_Stopped_ApplicationExit */
  block[1] = (uint32_t)code;
  register uint32_t r0 __asm__("r0") = 0x20u;
  register volatile uint32_t* r1 __asm__("r1") = block;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  for (;;) {
  }
}
