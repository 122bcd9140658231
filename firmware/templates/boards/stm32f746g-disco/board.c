/* STM32F746G-DISCO register-level board support (no ST HAL):
 * - 216 MHz SYSCLK from the 25 MHz HSE: PLL M=25 N=432 P=2 (Q=9), voltage scale 1 + over-drive,
 *   7 flash wait states, ART accelerator + prefetch, AHB /1, APB1 /4 (54 MHz), APB2 /2 (108 MHz).
 *   Falls back to the 16 MHz HSI (PLL M=16) if the HSE does not start.
 * - L1 I-cache and D-cache on (CMSIS core_cm7.h).
 * - USART1 on PA9 (TX) / PB7 (RX), AF7 = the ST-LINK virtual COM port; RX by interrupt into a ring
 *   buffer so no byte is lost while the main loop is busy printing.
 * - DWT CYCCNT (unlocked through DWT->LAR, DEMCR.TRCENA) extended to 64 bit from SysTick. */
#include <stdint.h>

#include "board.h"
#include "board_config.h" /* generated from the board database */
#include "cm7_device.h"

#define REG(addr) (*(volatile uint32_t*)(addr))

/* RCC @ 0x40023800 */
#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00)
#define RCC_PLLCFGR REG(RCC_BASE + 0x04)
#define RCC_CFGR REG(RCC_BASE + 0x08)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30)
#define RCC_APB1ENR REG(RCC_BASE + 0x40)
#define RCC_APB2ENR REG(RCC_BASE + 0x44)
#define RCC_DCKCFGR2 REG(RCC_BASE + 0x90)
#define RCC_CR_HSION (1u << 0)
#define RCC_CR_HSIRDY (1u << 1)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
/* FLASH @ 0x40023C00 */
#define FLASH_ACR REG(0x40023C00u)
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)
#define FLASH_ACR_ARTRST (1u << 11)
/* PWR @ 0x40007000 */
#define PWR_CR1 REG(0x40007000u)
#define PWR_CSR1 REG(0x40007004u)
#define PWR_CR1_VOS_SCALE1 (3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)
/* GPIO */
#define GPIOA_BASE 0x40020000u
#define GPIOB_BASE 0x40020400u
#define GPIO_MODER(b) REG((b) + 0x00)
#define GPIO_OSPEEDR(b) REG((b) + 0x08)
#define GPIO_PUPDR(b) REG((b) + 0x0C)
#define GPIO_AFRL(b) REG((b) + 0x20)
#define GPIO_AFRH(b) REG((b) + 0x24)
/* USART1 @ 0x40011000 (APB2) */
#define USART1_BASE 0x40011000u
#define USART_CR1 REG(USART1_BASE + 0x00)
#define USART_CR2 REG(USART1_BASE + 0x04)
#define USART_CR3 REG(USART1_BASE + 0x08)
#define USART_BRR REG(USART1_BASE + 0x0C)
#define USART_ISR REG(USART1_BASE + 0x1C)
#define USART_ICR REG(USART1_BASE + 0x20)
#define USART_RDR REG(USART1_BASE + 0x24)
#define USART_TDR REG(USART1_BASE + 0x28)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_ISR_FE (1u << 1)
#define USART_ISR_NE (1u << 2)
#define USART_ISR_ORE (1u << 3)
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART1_IRQn 37

#define HSE_HZ 25000000u
#define HSI_HZ 16000000u
#define CORE_HZ BOARD_CORE_HZ           /* = the PLL setting below (board database) */
#define APB2_HZ BOARD_UART_CLOCK_HZ     /* USART1 clock = APB2 = SYSCLK / 2 */

const char board_timer_name[] = BOARD_TIMER_NAME;
const char board_name[] = BOARD_NAME;

static void clock_init(void) {
  RCC_APB1ENR |= 1u << 28; /* PWREN */
  (void)RCC_APB1ENR;
  PWR_CR1 = (PWR_CR1 & ~(3u << 14)) | PWR_CR1_VOS_SCALE1;

  uint32_t pllm = 25u, src = 1u << 22; /* PLLSRC = HSE */
#ifdef NETAUG_HSE_BYPASS
  RCC_CR |= RCC_CR_HSEBYP;
#endif
  RCC_CR |= RCC_CR_HSEON;
  uint32_t n = 0;
  while (!(RCC_CR & RCC_CR_HSERDY) && ++n < 2000000u) {
  }
  if (!(RCC_CR & RCC_CR_HSERDY)) { /* no crystal: HSI (16 MHz) -> same 216 MHz with M=16 */
    RCC_CR &= ~RCC_CR_HSEON;
    RCC_CR |= RCC_CR_HSION;
    while (!(RCC_CR & RCC_CR_HSIRDY)) {
    }
    pllm = 16u;
    src = 0u;
  }
  RCC_CR &= ~RCC_CR_PLLON;
  while (RCC_CR & RCC_CR_PLLRDY) {
  }
  /* PLLM [5:0], PLLN [14:6] = 432, PLLP [17:16] = 0 (/2), PLLSRC [22], PLLQ [27:24] = 9 (48 MHz) */
  /* reserved bits keep their reset value (RM0385: "must be kept at reset value") */
  RCC_PLLCFGR = (RCC_PLLCFGR & ~0x0F437FFFu) | pllm | (432u << 6) | (0u << 16) | src | (9u << 24);
  RCC_CR |= RCC_CR_PLLON;

  /* Over-drive (needed above 180 MHz), while the PLL locks. */
  PWR_CR1 |= PWR_CR1_ODEN;
  while (!(PWR_CSR1 & PWR_CSR1_ODRDY)) {
  }
  PWR_CR1 |= PWR_CR1_ODSWEN;
  while (!(PWR_CSR1 & PWR_CSR1_ODSWRDY)) {
  }
  while (!(RCC_CR & RCC_CR_PLLRDY)) {
  }

  /* 7 wait states at 216 MHz / 2.7-3.6 V; ART accelerator and prefetch on. */
  FLASH_ACR = FLASH_ACR_ARTRST;
  FLASH_ACR = 7u | FLASH_ACR_PRFTEN | FLASH_ACR_ARTEN;
  while ((FLASH_ACR & 0xFu) != 7u) {
  }

  /* HPRE /1, PPRE1 /4 (101), PPRE2 /2 (100), then SW = PLL. */
  RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) | (5u << 10) | (4u << 13);
  RCC_CFGR = (RCC_CFGR & ~3u) | 2u;
  while (((RCC_CFGR >> 2) & 3u) != 2u) {
  }
}

/* ---- 64-bit cycle counter: DWT CYCCNT (32 bit, wraps every 19.9 s) + SysTick every ~78 ms. */
static volatile uint32_t g_cyc_last;
static volatile uint64_t g_cyc_high;

static uint64_t cyc_update(void) {
  uint32_t now = DWT->CYCCNT;
  if (now < g_cyc_last) g_cyc_high += 1ull << 32;
  g_cyc_last = now;
  return g_cyc_high | now;
}

void SysTick_Handler(void) { (void)cyc_update(); }

uint64_t board_ticks(void) {
  uint32_t primask = __get_PRIMASK();
  __disable_irq();
  uint64_t t = cyc_update();
  __set_PRIMASK(primask);
  return t;
}

uint32_t board_ticks_per_second(void) { return CORE_HZ; }

/* ---- USART1 RX ring buffer */
#define RX_SIZE 1024u
static volatile uint8_t g_rx[RX_SIZE];
static volatile uint32_t g_rx_head, g_rx_tail;

void USART1_IRQHandler(void) {
  uint32_t isr = USART_ISR;
  if (isr & (USART_ISR_ORE | USART_ISR_FE | USART_ISR_NE)) {
    USART_ICR = USART_ISR_ORE | USART_ISR_FE | USART_ISR_NE;
  }
  if (isr & USART_ISR_RXNE) {
    uint8_t c = (uint8_t)USART_RDR;
    uint32_t next = (g_rx_head + 1u) % RX_SIZE;
    if (next != g_rx_tail) {
      g_rx[g_rx_head] = c;
      g_rx_head = next;
    }
  }
}

void board_init(uint32_t baud) {
  clock_init();
  SCB_EnableICache();
  SCB_EnableDCache();

  /* Cycle counter: unlock the DWT (Cortex-M7 lock access register), enable trace, start CYCCNT. */
  DCB->DEMCR |= DCB_DEMCR_TRCENA_Msk;
  DWT->LAR = 0xC5ACCE55u;
  DWT->CYCCNT = 0;
  DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;
  SysTick->LOAD = 0x00FFFFFFu;
  SysTick->VAL = 0;
  SysTick->CTRL = SysTick_CTRL_CLKSOURCE_Msk | SysTick_CTRL_TICKINT_Msk | SysTick_CTRL_ENABLE_Msk;

  /* GPIO: PA9 = USART1_TX, PB7 = USART1_RX, alternate function 7, high speed, RX pull-up. */
  RCC_AHB1ENR |= (1u << 0) | (1u << 1);
  RCC_APB2ENR |= 1u << 4; /* USART1EN */
  (void)RCC_APB2ENR;
  GPIO_MODER(GPIOA_BASE) = (GPIO_MODER(GPIOA_BASE) & ~(3u << 18)) | (2u << 18);
  GPIO_OSPEEDR(GPIOA_BASE) |= 3u << 18;
  GPIO_AFRH(GPIOA_BASE) = (GPIO_AFRH(GPIOA_BASE) & ~(0xFu << 4)) | (7u << 4);
  GPIO_MODER(GPIOB_BASE) = (GPIO_MODER(GPIOB_BASE) & ~(3u << 14)) | (2u << 14);
  GPIO_PUPDR(GPIOB_BASE) = (GPIO_PUPDR(GPIOB_BASE) & ~(3u << 14)) | (1u << 14);
  GPIO_AFRL(GPIOB_BASE) = (GPIO_AFRL(GPIOB_BASE) & ~(0xFu << 28)) | (7u << 28);

  /* USART1 kernel clock = PCLK2 (DCKCFGR2.USART1SEL = 00), 8N1, oversampling 16. */
  RCC_DCKCFGR2 &= ~3u;
  USART_CR1 = 0;
  USART_CR2 = 0;
  USART_CR3 = 0;
  USART_BRR = (APB2_HZ + baud / 2u) / baud;
  USART_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE | USART_CR1_UE;
  NVIC_SetPriority((IRQn_Type)USART1_IRQn, 1);
  NVIC_EnableIRQ((IRQn_Type)USART1_IRQn);
  __enable_irq();
}

void board_putc(char c) {
  while (!(USART_ISR & USART_ISR_TXE)) {
  }
  USART_TDR = (uint8_t)c;
}

int board_getc(uint32_t timeout_us) {
  uint64_t deadline = timeout_us ? board_ticks() + (uint64_t)timeout_us * (CORE_HZ / 1000000u) : 0;
  for (;;) {
    if (g_rx_tail != g_rx_head) {
      uint8_t c = g_rx[g_rx_tail];
      g_rx_tail = (g_rx_tail + 1u) % RX_SIZE;
      return c;
    }
    if (timeout_us && board_ticks() > deadline) return -1;
  }
}

void board_exit(int code) {
  (void)code;
  while (!(USART_ISR & (1u << 6))) { /* TC: let the last line leave */
  }
  NVIC_SystemReset();
}
