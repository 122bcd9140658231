/* STM32F746G-DISCO register-level board support (no ST HAL):
 * - 216 MHz SYSCLK from the 25 MHz HSE: PLL M=25 N=432 P=2 (Q=9), voltage scale 1 + over-drive,
 *   7 flash wait states, AHB /1, APB1 /4 (54 MHz), APB2 /2 (108 MHz). The image runs from
 *   0x08000000 (AXIM): instructions come through the 4 KB L1 I-cache; the ART accelerator and the
 *   flash prefetch only serve the ITCM path (0x00200000), so they are switched on for completeness
 *   but do not speed up this image (RM0385 3.3.2, AN4667).
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

#include "model_config.h" /* NETAUG_SDRAM */

#if NETAUG_SDRAM
/* ---- External SDRAM (--sdram): ISSI IS42S32400F on FMC SDRAM bank 1 (SDCKE0/SDNE0), 0xC0000000,
 * 16 data lines wired -> 8 MB (UM1907). Pins and timings as Zephyr's stm32f746g_disco.dts @0651d31b:
 * 8 column / 12 row bits, 16-bit bus, 4 banks, CAS 2, SDCLK = HCLK/2 = 108 MHz, read burst on, read
 * pipe 0; power-up 100 us, 8 auto-refresh cycles, mode register 0x220 (burst 1, sequential, CAS 2,
 * single write burst). Timings (SDCLK cycles) TMRD 2, TXSR 7, TRAS 4, TRC 7, TWR 2, TRP 2, TRCD 2:
 * Zephyr uses TXSR/TRC 6, ST's BSP-derived code 7 - the longer (always safe) values are used; the
 * refresh count 1539 (ST BSP's 0x0603) refreshes more often than Zephyr's 1667 = 15.625 us x 108 MHz
 * - 20, also on the safe side. Register layout: RM0385 13.8. The MPU (fault.c) maps the window as
 * normal write-back memory: the default map makes 0xC0000000 Device memory, where CMSIS-NN's
 * unaligned accesses would fault. */
#define RCC_AHB3ENR REG(RCC_BASE + 0x38)
#define FMC_SDCR1 REG(0xA0000140u)
#define FMC_SDTR1 REG(0xA0000148u)
#define FMC_SDCMR REG(0xA0000150u)
#define FMC_SDRTR REG(0xA0000154u)
#define FMC_SDSR REG(0xA0000158u)
#define FMC_SDSR_BUSY (1u << 5)
#define SDCMR_CTB1 (1u << 4)

static void sdram_pins(uint32_t port, uint32_t pins) {
  const uint32_t base = 0x40020000u + port * 0x400u; /* GPIOA + n * 0x400 */
  for (uint32_t n = 0; n < 16u; ++n) {
    if (!(pins & (1u << n))) continue;
    GPIO_MODER(base) = (GPIO_MODER(base) & ~(3u << (2 * n))) | (2u << (2 * n));     /* alternate */
    GPIO_OSPEEDR(base) |= 3u << (2 * n);                                             /* very high */
    GPIO_PUPDR(base) = (GPIO_PUPDR(base) & ~(3u << (2 * n))) | (1u << (2 * n));     /* pull-up */
    if (n < 8u) {
      GPIO_AFRL(base) = (GPIO_AFRL(base) & ~(0xFu << (4 * n))) | (12u << (4 * n));  /* AF12 = FMC */
    } else {
      GPIO_AFRH(base) = (GPIO_AFRH(base) & ~(0xFu << (4 * (n - 8u)))) | (12u << (4 * (n - 8u)));
    }
  }
}

static void sdram_command(uint32_t cmd) {
  while (FMC_SDSR & FMC_SDSR_BUSY) {
  }
  FMC_SDCMR = cmd | SDCMR_CTB1;
  while (FMC_SDSR & FMC_SDSR_BUSY) {
  }
}

static int sdram_init(void) {
  RCC_AHB1ENR |= 0xFCu; /* GPIOC..GPIOH */
  RCC_AHB3ENR |= 1u;    /* FMCEN */
  (void)RCC_AHB3ENR;
  sdram_pins(2, 1u << 3);                                                           /* PC3 SDCKE0 */
  sdram_pins(3, (1u << 0) | (1u << 1) | (7u << 8) | (3u << 14));                   /* PD0,1,8-10,14,15 */
  sdram_pins(4, (3u << 0) | (0x1FFu << 7));                                        /* PE0,1,7-15 */
  sdram_pins(5, 0x3Fu | (0x1Fu << 11));                                            /* PF0-5,11-15 */
  sdram_pins(6, (3u << 0) | (3u << 4) | (1u << 8) | (1u << 15));                   /* PG0,1,4,5,8,15 */
  sdram_pins(7, (1u << 3) | (1u << 5));                                            /* PH3 SDNE0, PH5 SDNWE */
  /* SDCR1: NC=00 (8), NR=01 (12), MWID=01 (16), NB=1 (4 banks), CAS=10, SDCLK=10 (HCLK/2), RBURST, RPIPE 0 */
  FMC_SDCR1 = (1u << 2) | (1u << 4) | (1u << 6) | (2u << 7) | (2u << 10) | (1u << 12);
  /* SDTR1 fields hold cycles - 1: TMRD 2, TXSR 7, TRAS 4, TRC 7, TWR 2, TRP 2, TRCD 2 */
  FMC_SDTR1 = (1u << 0) | (6u << 4) | (3u << 8) | (6u << 12) | (1u << 16) | (1u << 20) | (1u << 24);
  sdram_command(1u);                                 /* clock configuration enable */
  for (volatile uint32_t n = 0; n < CORE_HZ / 10000u; ++n) { /* >= 100 us power-up delay */
  }
  sdram_command(2u);                                 /* precharge all */
  sdram_command(3u | ((8u - 1u) << 5));              /* 8 auto-refresh cycles */
  sdram_command(4u | (0x220u << 9));                 /* load mode register */
  FMC_SDRTR = 1539u << 1;                            /* refresh timer count */
  /* Self-test: a walking pattern at both ends and the middle of the 8 MB window. */
  volatile uint32_t* const mem = (volatile uint32_t*)0xC0000000u;
  static const uint32_t probe[] = {0u, 1u, 0x1FFFFFu, 0x100000u, 0x0ABCDEu};
  for (uint32_t i = 0; i < sizeof(probe) / sizeof(probe[0]); ++i) mem[probe[i]] = 0xA5A50000u ^ probe[i];
  for (uint32_t i = 0; i < sizeof(probe) / sizeof(probe[0]); ++i) {
    if (mem[probe[i]] != (0xA5A50000u ^ probe[i])) return -1;
  }
  return 0;
}
#endif

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

  /* 7 wait states at 216 MHz / 2.7-3.6 V. ART + prefetch act on ITCM-path fetches only (not this
   * AXIM-linked image, which relies on the I-cache); harmless, and right if code moves to 0x00200000. */
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
#if NETAUG_SDRAM
  if (sdram_init() != 0) {
    const char* msg = "e-[sdram self-test failed at 0xC0000000: the arena cannot be used]\r\n";
    while (*msg) board_putc(*msg++);
  }
#endif
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

/* Energy-mode timestamp (main.cc with NETAUG_ENERGY_MODE): Arduino header D7 = PI3, push-pull, idle high;
 * each timestamp holds it low for 2 us (the energy monitor needs >= 1 us; the reference uses D7 too).
 * Configured on the first pulse (the boot timestamp), so the monitor may see one extra edge at boot, which
 * the runner tolerates (it uses the last two timestamps). */
#define GPIOI_BASE 0x40022000u
#define GPIO_BSRR(b) REG((b) + 0x18)
#define TIMESTAMP_PIN 3u
void board_timestamp_pulse(void) {
  static int configured = 0;
  if (!configured) {
    RCC_AHB1ENR |= 1u << 8; /* GPIOIEN */
    (void)RCC_AHB1ENR;
    GPIO_BSRR(GPIOI_BASE) = 1u << TIMESTAMP_PIN; /* high before it becomes an output */
    GPIO_MODER(GPIOI_BASE) = (GPIO_MODER(GPIOI_BASE) & ~(3u << (2 * TIMESTAMP_PIN))) | (1u << (2 * TIMESTAMP_PIN));
    configured = 1;
  }
  GPIO_BSRR(GPIOI_BASE) = 1u << (TIMESTAMP_PIN + 16); /* low */
  const uint64_t t0 = board_ticks();
  const uint64_t hold = board_ticks_per_second() / 500000u; /* 2 us */
  while (board_ticks() - t0 < hold) {
  }
  GPIO_BSRR(GPIOI_BASE) = 1u << TIMESTAMP_PIN;
}
