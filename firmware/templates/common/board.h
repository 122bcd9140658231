/* Board support interface used by the application (main.cc). One implementation per board:
 * boards/stm32f746g-disco/board.c (USART1 + DWT CYCCNT) and boards/mps2-an500/board.c
 * (CMSDK UART0 + SysTick, QEMU). */
#ifndef NETAUG_BOARD_H
#define NETAUG_BOARD_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

void board_init(uint32_t baud);
void board_putc(char c);
/* Next received byte, or -1 when none arrived within timeout_us (0 = wait forever). */
int board_getc(uint32_t timeout_us);
/* Free-running 64-bit timer: DWT cycles on the STM32, SysTick ticks on QEMU. */
uint64_t board_ticks(void);
uint32_t board_ticks_per_second(void);
/* Exit the program: semihosting SYS_EXIT_EXTENDED on QEMU, a reset on the real board. */
void board_exit(int code);
/* Energy mode: pulse the timestamp GPIO (>= 1 us low). Optional: main.cc's weak default logs
 * m-timestamp-pin-<us> on the UART (QEMU); the STM32F746G-DISCO drives Arduino D7 = PI3. */
void board_timestamp_pulse(void);

/* fault.c: fault handlers, MPU, stack high-water mark (bytes of the main stack ever used). */
void fault_init(void);
uint32_t board_stack_used(void);
uint32_t board_stack_size(void);
/* Deliberate fault for tests (NETAUG_FAULT_TEST builds): "stack" or "bus"; returns -1 if unknown. */
int fault_test(const char* kind);

extern const char board_timer_name[]; /* "dwt" or "systick-icount" */
extern const char board_name[];

#ifdef __cplusplus
}
#endif
#endif
