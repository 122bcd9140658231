/* Fault reporting, MPU set-up and stack high-water mark, shared by every board.
 *
 * - Usage, bus and memory-management faults are enabled (SHCSR), so each has its own handler and
 *   the CFSR says why; all four fault handlers enter fault_entry, which switches to a dedicated
 *   fault stack *before* pushing anything (the main stack may be the one that overflowed) and prints
 *   one line:  e-[fault <name> cfsr=0x.. hfsr=0x.. mmfar=0x.. bfar=0x.. pc=0x.. lr=0x.. psr=0x.. sp=0x..]
 *   pc/lr/psr come from the stacked exception frame; when stacking itself failed (CFSR MSTKERR or
 *   STKERR: a stack overflow) the frame was never written and they read "unknown". The core then
 *   waits (WFI loop) for a debugger or a reset.
 * - Cortex-M4/M7 (PMSAv7 MPU): region 0 = ST AN4838's background region (4 GB, no access, execute
 *   never, sub-regions 0x00000000-0x5FFFFFFF and 0xE0000000- left to the default map), so the core
 *   cannot speculatively read the unconfigured FMC/QSPI windows 0x60000000-0xDFFFFFFF; region 1 =
 *   the SDRAM window when the firmware initialised it (--sdram); region 7 = the stack guard: the
 *   lowest NETAUG_STACK_GUARD bytes of the stack, no access, so an overflow faults at once.
 *   ARMv8-M (M33/M55): MSPLIM does the same job without the MPU.
 * - The stack is painted at start-up; board_stack_used() reports its high-water mark (info%). */
#include <stdint.h>

#include "board.h"
#include "board_config.h"
#include "model_config.h"
#include CMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE /* the core's device header (tflm_build.CORES) */

#define NETAUG_STACK_GUARD 256u
#define STACK_PAINT 0x5AA5F00Du

extern uint32_t _sstack, _estack;
static uint32_t g_fault_stack[256] __attribute__((aligned(8)));  /* 1 KB, in .bss (never the main stack) */
uint32_t* const g_fault_stack_top = &g_fault_stack[256];

/* ---------------------------------------------------------------- output (polling UART only) */
static void fput(const char* s) {
  while (*s) board_putc(*s++);
}
static void fhex(const char* key, uint32_t v) {
  static const char digits[] = "0123456789abcdef";
  fput(key);
  fput("=0x");
  for (int i = 28; i >= 0; i -= 4) board_putc(digits[(v >> i) & 0xFu]);
}

static const char* fault_name(uint32_t exc) {
  switch (exc) {
    case 3: return "hardfault";
    case 4: return "memmanage";
    case 5: return "busfault";
    case 6: return "usagefault";
    default: return "exception";
  }
}

/* Called on the fault stack with the faulting stack pointer and EXC_RETURN. */
__attribute__((used, noreturn)) void fault_report(uint32_t* frame, uint32_t exc_return) {
  const uint32_t cfsr = SCB->CFSR, hfsr = SCB->HFSR, mmfar = SCB->MMFAR, bfar = SCB->BFAR;
  const uint32_t stacking_failed = cfsr & ((1u << 4) | (1u << 12)); /* MSTKERR | STKERR */
  fput("\r\ne-[fault ");
  fput(fault_name(__get_IPSR() & 0x1FFu));
  fhex(" cfsr", cfsr);
  fhex(" hfsr", hfsr);
  fhex(" mmfar", mmfar);
  fhex(" bfar", bfar);
  if (stacking_failed) {
    fput(" pc=unknown lr=unknown psr=unknown");
  } else {
    fhex(" pc", frame[6]);
    fhex(" lr", frame[5]);
    fhex(" psr", frame[7]);
  }
  fhex(" sp", (uint32_t)frame);
  fhex(" exc_return", exc_return);
  fput("]\r\n");
  /* Stay here (no reset, no exit): the state survives for a debugger (`netaug-mcu debug`, then
   * `info registers`/`bt`), and the host has the line; RESET (the black button) restarts. */
  for (;;) {
    __WFI();
  }
}

/* Naked: no prologue may touch the (possibly overflowed) stack before SP moves to the fault stack. */
__attribute__((naked, used)) void fault_entry(void) {
  __asm volatile(
      "tst lr, #4\n\t"
      "ite eq\n\t"
      "mrseq r0, msp\n\t"
      "mrsne r0, psp\n\t"
      "mov r1, lr\n\t"
      "ldr r2, =g_fault_stack_top\n\t"
      "ldr r2, [r2]\n\t"
      "mov sp, r2\n\t"
      "b fault_report\n\t"
      ".ltorg\n");
}

void HardFault_Handler(void) __attribute__((alias("fault_entry")));
void MemManage_Handler(void) __attribute__((alias("fault_entry")));
void BusFault_Handler(void) __attribute__((alias("fault_entry")));
void UsageFault_Handler(void) __attribute__((alias("fault_entry")));

/* ---------------------------------------------------------------- MPU (PMSAv7: Cortex-M4/M7) */
#if defined(__ARM_ARCH_7EM__) && defined(__MPU_PRESENT) && __MPU_PRESENT
static void mpu_region(uint32_t number, uint32_t base, uint32_t rasr) {
  MPU->RNR = number;
  MPU->RBAR = base;
  MPU->RASR = rasr;
}
#define RASR_SIZE(log2) ((uint32_t)((log2) - 1u) << MPU_RASR_SIZE_Pos)
#define RASR_XN MPU_RASR_XN_Msk
#define RASR_EN MPU_RASR_ENABLE_Msk

static void mpu_init(void) {
  __DMB();
  MPU->CTRL = 0;
  /* AN4838 background: 4 GB no-access XN, sub-regions 0,1,2,7 disabled (SRD 0x87) -> covers
   * 0x60000000-0xDFFFFFFF only; strongly ordered (TEX 0, C 0, B 0), shareable. */
  mpu_region(0, 0x00000000u, RASR_XN | (0x87u << MPU_RASR_SRD_Pos) | MPU_RASR_S_Msk | RASR_SIZE(32) | RASR_EN);
#if defined(NETAUG_SDRAM) && NETAUG_SDRAM
  /* SDRAM 8 MB at 0xC0000000: normal memory, write-back read/write-allocate (TEX 1 C 1 B 1), full
   * access, execute never (data only). */
  mpu_region(1, 0xC0000000u, RASR_XN | (3u << MPU_RASR_AP_Pos) | (1u << MPU_RASR_TEX_Pos) | MPU_RASR_C_Msk |
                                 MPU_RASR_B_Msk | RASR_SIZE(23) | RASR_EN);
#endif
  /* Stack guard: lowest 256 B of the stack (the linker script aligns _sstack to 256), no access. */
  mpu_region(7, (uint32_t)&_sstack, RASR_XN | (0u << MPU_RASR_AP_Pos) | RASR_SIZE(8) | RASR_EN);
  MPU->CTRL = MPU_CTRL_PRIVDEFENA_Msk | MPU_CTRL_ENABLE_Msk;
  __DSB();
  __ISB();
}
#else
static void mpu_init(void) {
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
  __set_MSPLIM((uint32_t)&_sstack + NETAUG_STACK_GUARD);  /* stack overflow -> UsageFault STKOF */
#endif
}
#endif

/* Paint the unused stack below the current SP so board_stack_used() can find the high-water mark. */
static void stack_paint(void) {
  uint32_t* sp = (uint32_t*)__get_MSP();
  for (uint32_t* p = &_sstack + NETAUG_STACK_GUARD / 4u; p < sp - 16; ++p) *p = STACK_PAINT;
}

void fault_init(void) {
  stack_paint();
  SCB->SHCSR |= SCB_SHCSR_MEMFAULTENA_Msk | SCB_SHCSR_BUSFAULTENA_Msk | SCB_SHCSR_USGFAULTENA_Msk;
  mpu_init();
  __DSB();
  __ISB();
}

uint32_t board_stack_size(void) { return (uint32_t)((uint8_t*)&_estack - (uint8_t*)&_sstack); }

uint32_t board_stack_used(void) {
  const uint32_t* p = &_sstack + NETAUG_STACK_GUARD / 4u;
  while (p < &_estack && *p == STACK_PAINT) ++p;
  return (uint32_t)((const uint8_t*)&_estack - (const uint8_t*)p);
}

/* ---------------------------------------------------------------- deliberate faults (debug builds) */
#if NETAUG_FAULT_TEST
static volatile uint32_t g_sink;

__attribute__((noinline)) static uint32_t recurse(uint32_t n) {
  volatile uint32_t pad[32];
  pad[n % 32u] = n;
  return recurse(n + 1u) + pad[(n + 7u) % 32u];   /* not a tail call: every level keeps its frame */
}

int fault_test(const char* kind) {
  if (kind[0] == 's') {                       /* "stack": run off the bottom of the main stack */
    g_sink = recurse(0);
#ifdef BOARD_UNMAPPED_ADDR
  } else if (kind[0] == 'b') {                /* "bus": read a reserved address (board_config.h) */
    g_sink = *(volatile uint32_t*)BOARD_UNMAPPED_ADDR;
#endif
  } else {
    return -1;
  }
  return 0;
}
#endif
