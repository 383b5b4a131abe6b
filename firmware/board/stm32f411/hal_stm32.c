/* The HAL on the STM32F411CE "Black Pill" (25 MHz crystal), register level:
 *   clock      HSE 25 MHz -> PLL 96 MHz (APB1 48 MHz, APB2 96 MHz), flash 3 wait states
 *   SysTick    1 kHz millisecond counter, microseconds from its current value
 *   USART1     host link, PA9 TX / PA10 RX, 1 Mbit/s 8N1, RX interrupt -> ring buffer, TX ring + TXE irq
 *   USART2     Feetech bus, half duplex on PA2 (open drain, pull-up), 1 Mbit/s, polled
 *   PB0        e-stop input, pull-up: a normally-closed switch to ground reads low when released;
 *              pressed or a broken wire reads high = pressed
 *   TIM4/TIM3  50 Hz servo PWM: ch0..3 = PB6..PB9 (TIM4 CH1..4), ch4..5 = PA6, PA7 (TIM3 CH1..2)
 *   IWDG       ~100 ms: a main loop that stops kicking it resets the MCU (which boots torque-off) */
#include <stdbool.h>
#include <stdint.h>
#include "../../hal/hal.h"
#include "board.h"
#include "stm32f411.h"

#define SYSCLK_HZ 96000000u
#define APB1_HZ 48000000u
#define APB2_HZ 96000000u
#define LINK_BAUD 1000000u
#define BUS_BAUD 1000000u

static volatile uint32_t ms_ticks;

/* ------------------------------------------------------------------ clock, SysTick, IWDG */
static void clock_init(void)
{
    RCC_APB1ENR |= RCC_APB1ENR_PWR;
    PWR_CR = (PWR_CR & ~(3u << 14)) | PWR_CR_VOS_SCALE1; /* up to 100 MHz */
    RCC_CR |= RCC_CR_HSEON;
    for (uint32_t i = 0; !(RCC_CR & RCC_CR_HSERDY); i++)
        if (i > 1000000u)
            return; /* no crystal: stay on the 16 MHz HSI (the timings below would be wrong: see README) */
    /* VCO in = 25 MHz / 25 = 1 MHz; VCO = 192 MHz; SYSCLK = /2 = 96 MHz; USB clock = /4 = 48 MHz */
    RCC_PLLCFGR = 25u | (192u << 6) | (0u << 16) | RCC_PLLCFGR_PLLSRC_HSE | (4u << 24);
    RCC_CR |= RCC_CR_PLLON;
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    FLASH_ACR = FLASH_ACR_LATENCY_3WS | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    while ((FLASH_ACR & 0xFu) != FLASH_ACR_LATENCY_3WS) {
    }
    RCC_CFGR = RCC_CFGR_PPRE1_DIV2 | RCC_CFGR_SW_PLL; /* AHB /1, APB1 /2, APB2 /1 */
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}

void SysTick_Handler(void) { ms_ticks++; }

uint32_t hal_time_ms(void) { return ms_ticks; }

uint32_t hal_time_us(void)
{
    uint32_t ms, val;
    do {
        ms = ms_ticks;
        val = SYST_CVR;
    } while (ms != ms_ticks);
    return ms * 1000u + (SYST_RVR - val) / (SYSCLK_HZ / 1000000u);
}

static void iwdg_init(void)
{
    IWDG_KR = 0xCCCCu;  /* start (LSI ~32 kHz) */
    IWDG_KR = 0x5555u;  /* unlock PR/RLR */
    IWDG_PR = 3u;       /* /32: ~1 kHz */
    IWDG_RLR = 100u;    /* ~100 ms */
    while (IWDG_SR & 3u) {
    }
    IWDG_KR = 0xAAAAu;
}

void board_kick_watchdog(void) { IWDG_KR = 0xAAAAu; }

bool board_reset_by_watchdog(void)
{
    bool w = (RCC_CSR & RCC_CSR_IWDGRSTF) != 0;
    RCC_CSR |= RCC_CSR_RMVF;
    return w;
}

void board_wait_for_interrupt(void) { __asm volatile("wfi"); }

/* ------------------------------------------------------------------ GPIO helpers */
static void gpio_mode(uint32_t port, int pin, uint32_t mode, uint32_t af, bool open_drain, uint32_t pull)
{
    GPIO_MODER(port) = (GPIO_MODER(port) & ~(3u << (2 * pin))) | (mode << (2 * pin));
    GPIO_OTYPER(port) = (GPIO_OTYPER(port) & ~(1u << pin)) | ((open_drain ? 1u : 0u) << pin);
    GPIO_OSPEEDR(port) |= 3u << (2 * pin);
    GPIO_PUPDR(port) = (GPIO_PUPDR(port) & ~(3u << (2 * pin))) | (pull << (2 * pin));
    if (pin < 8)
        GPIO_AFRL(port) = (GPIO_AFRL(port) & ~(0xFu << (4 * pin))) | (af << (4 * pin));
    else
        GPIO_AFRH(port) = (GPIO_AFRH(port) & ~(0xFu << (4 * (pin - 8)))) | (af << (4 * (pin - 8)));
}
#define MODE_IN 0u
#define MODE_AF 2u
#define PULL_NONE 0u
#define PULL_UP 1u

/* ------------------------------------------------------------------ host link: USART1 */
#define RX_SIZE 1024u /* powers of two */
#define TX_SIZE 1024u
static volatile uint8_t rx_buf[RX_SIZE], tx_buf[TX_SIZE];
static volatile uint32_t rx_head, rx_tail, tx_head, tx_tail;
static volatile uint32_t rx_overflow;

void USART1_IRQHandler(void)
{
    uint32_t sr = USART_SR(USART1_BASE);
    if (sr & (USART_SR_RXNE | USART_SR_ORE)) {
        uint8_t b = (uint8_t)USART_DR(USART1_BASE); /* reading DR also clears ORE */
        uint32_t next = (rx_head + 1u) & (RX_SIZE - 1u);
        if (next != rx_tail) {
            rx_buf[rx_head] = b;
            rx_head = next;
        } else {
            rx_overflow++;
        }
    }
    if ((USART_CR1(USART1_BASE) & USART_CR1_TXEIE) && (sr & USART_SR_TXE)) {
        if (tx_tail != tx_head) {
            USART_DR(USART1_BASE) = tx_buf[tx_tail];
            tx_tail = (tx_tail + 1u) & (TX_SIZE - 1u);
        } else {
            USART_CR1(USART1_BASE) &= ~USART_CR1_TXEIE;
        }
    }
}

int hal_link_read(uint8_t *buf, int max)
{
    int n = 0;
    while (n < max && rx_tail != rx_head) {
        buf[n++] = rx_buf[rx_tail];
        rx_tail = (rx_tail + 1u) & (RX_SIZE - 1u);
    }
    return n;
}

void hal_link_write(const uint8_t *buf, int len)
{
    uint32_t free_bytes = (tx_tail - tx_head - 1u) & (TX_SIZE - 1u);
    if ((uint32_t)len > free_bytes)
        return; /* whole frames only: a frame that does not fit is dropped */
    for (int i = 0; i < len; i++) {
        tx_buf[tx_head] = buf[i];
        tx_head = (tx_head + 1u) & (TX_SIZE - 1u);
    }
    USART_CR1(USART1_BASE) |= USART_CR1_TXEIE;
}

static void link_init(void)
{
    RCC_APB2ENR |= RCC_APB2ENR_USART1;
    gpio_mode(GPIOA_BASE, 9, MODE_AF, 7, false, PULL_NONE);
    gpio_mode(GPIOA_BASE, 10, MODE_AF, 7, false, PULL_UP);
    USART_BRR(USART1_BASE) = (APB2_HZ + LINK_BAUD / 2u) / LINK_BAUD; /* oversampling 16: BRR = f / baud */
    USART_CR1(USART1_BASE) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE;
    NVIC_ISER(IRQ_USART1 / 32) = 1u << (IRQ_USART1 % 32);
}

/* ------------------------------------------------------------------ servo bus: USART2 half duplex */
static void bus_init(void)
{
    RCC_APB1ENR |= RCC_APB1ENR_USART2;
    gpio_mode(GPIOA_BASE, 2, MODE_AF, 7, true, PULL_UP); /* + an external 1k..4.7k pull-up: README */
    USART_BRR(USART2_BASE) = (APB1_HZ + BUS_BAUD / 2u) / BUS_BAUD;
    USART_CR3(USART2_BASE) = USART_CR3_HDSEL;
    USART_CR1(USART2_BASE) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
}

void hal_bus_write(const uint8_t *buf, int len)
{
    /* receiver off while sending (half duplex: it would hear our own bytes), stale bytes dropped */
    USART_CR1(USART2_BASE) &= ~USART_CR1_RE;
    (void)USART_SR(USART2_BASE);
    (void)USART_DR(USART2_BASE);
    for (int i = 0; i < len; i++) {
        while (!(USART_SR(USART2_BASE) & USART_SR_TXE)) {
        }
        USART_DR(USART2_BASE) = buf[i];
    }
    while (!(USART_SR(USART2_BASE) & USART_SR_TC)) {
    }
    USART_CR1(USART2_BASE) |= USART_CR1_RE;
}

int hal_bus_read(uint8_t *buf, int max, uint32_t timeout_us)
{
    int n = 0;
    uint32_t start = hal_time_us();
    while (n < max) {
        uint32_t sr = USART_SR(USART2_BASE);
        if (sr & (USART_SR_RXNE | USART_SR_ORE)) {
            buf[n++] = (uint8_t)USART_DR(USART2_BASE);
            start = hal_time_us(); /* an inter-byte timeout once bytes flow: return what came */
            timeout_us = 50u;
        } else if (hal_time_us() - start >= timeout_us) {
            break;
        }
    }
    return n;
}

/* ------------------------------------------------------------------ e-stop */
static void estop_init(void) { gpio_mode(GPIOB_BASE, 0, MODE_IN, 0, false, PULL_UP); }

bool hal_estop_pressed(void) { return (GPIO_IDR(GPIOB_BASE) & 1u) != 0; }

/* ------------------------------------------------------------------ PWM */
#define PWM_CHANNELS 6

static void pwm_timer_init(uint32_t tim, int channels)
{
    TIM_PSC(tim) = APB1_HZ * 2u / 1000000u - 1u; /* timer clock 96 MHz (APB1 x2) -> 1 MHz */
    TIM_ARR(tim) = 20000u - 1u;                  /* 20 ms period */
    TIM_CCMR1(tim) = (6u << 4) | (1u << 3) | (6u << 12) | (1u << 11); /* PWM mode 1, preload, CH1 CH2 */
    TIM_CCMR2(tim) = (6u << 4) | (1u << 3) | (6u << 12) | (1u << 11); /* CH3 CH4 */
    for (int ch = 0; ch < 4; ch++)
        TIM_CCR(tim, ch) = 0;
    TIM_CCER(tim) = channels >= 4 ? 0x1111u : 0x0011u;
    TIM_EGR(tim) = TIM_EGR_UG;
    TIM_CR1(tim) = TIM_CR1_ARPE | TIM_CR1_CEN;
}

static void pwm_init(void)
{
    RCC_APB1ENR |= RCC_APB1ENR_TIM3 | RCC_APB1ENR_TIM4;
    for (int pin = 6; pin <= 9; pin++)
        gpio_mode(GPIOB_BASE, pin, MODE_AF, 2, false, PULL_NONE);
    gpio_mode(GPIOA_BASE, 6, MODE_AF, 2, false, PULL_NONE);
    gpio_mode(GPIOA_BASE, 7, MODE_AF, 2, false, PULL_NONE);
    pwm_timer_init(TIM4_BASE, 4);
    pwm_timer_init(TIM3_BASE, 2);
}

int hal_pwm_channels(void) { return PWM_CHANNELS; }

void hal_pwm_write_us(int channel, uint16_t pulse_us)
{
    if (channel < 0 || channel >= PWM_CHANNELS)
        return;
    if (pulse_us > 19000u)
        pulse_us = 19000u;
    if (channel < 4)
        TIM_CCR(TIM4_BASE, channel) = pulse_us;
    else
        TIM_CCR(TIM3_BASE, channel - 4) = pulse_us;
}

/* ------------------------------------------------------------------ init */
void board_init(void)
{
    clock_init();
    SYST_RVR = SYSCLK_HZ / 1000u - 1u;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, interrupt, enable */
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOA | RCC_AHB1ENR_GPIOB;
    estop_init();
    pwm_init();
    bus_init();
    link_init();
    iwdg_init();
}
