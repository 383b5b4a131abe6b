/* The few STM32F411 registers this port uses (RM0383), written out by hand: no vendor headers. */
#ifndef STM32F411_REGS_H
#define STM32F411_REGS_H
#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

/* RCC */
#define RCC_BASE 0x40023800u
#define RCC_CR REG(RCC_BASE + 0x00)
#define RCC_PLLCFGR REG(RCC_BASE + 0x04)
#define RCC_CFGR REG(RCC_BASE + 0x08)
#define RCC_AHB1ENR REG(RCC_BASE + 0x30)
#define RCC_APB1ENR REG(RCC_BASE + 0x40)
#define RCC_APB2ENR REG(RCC_BASE + 0x44)
#define RCC_CSR REG(RCC_BASE + 0x74)
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR_PLLSRC_HSE (1u << 22)
#define RCC_CFGR_SW_PLL 2u
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_PPRE1_DIV2 (4u << 10)
#define RCC_AHB1ENR_GPIOA (1u << 0)
#define RCC_AHB1ENR_GPIOB (1u << 1)
#define RCC_APB1ENR_TIM3 (1u << 1)
#define RCC_APB1ENR_TIM4 (1u << 2)
#define RCC_APB1ENR_USART2 (1u << 17)
#define RCC_APB1ENR_PWR (1u << 28)
#define RCC_APB2ENR_USART1 (1u << 4)
#define RCC_CSR_IWDGRSTF (1u << 29)
#define RCC_CSR_RMVF (1u << 24)

/* PWR */
#define PWR_CR REG(0x40007000u)
#define PWR_CR_VOS_SCALE1 (3u << 14)

/* FLASH */
#define FLASH_ACR REG(0x40023C00u)
#define FLASH_ACR_LATENCY_3WS 3u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* GPIO */
#define GPIOA_BASE 0x40020000u
#define GPIOB_BASE 0x40020400u
#define GPIO_MODER(b) REG((b) + 0x00)
#define GPIO_OTYPER(b) REG((b) + 0x04)
#define GPIO_OSPEEDR(b) REG((b) + 0x08)
#define GPIO_PUPDR(b) REG((b) + 0x0C)
#define GPIO_IDR(b) REG((b) + 0x10)
#define GPIO_AFRL(b) REG((b) + 0x20)
#define GPIO_AFRH(b) REG((b) + 0x24)

/* USART */
#define USART1_BASE 0x40011000u
#define USART2_BASE 0x40004400u
#define USART_SR(b) REG((b) + 0x00)
#define USART_DR(b) REG((b) + 0x04)
#define USART_BRR(b) REG((b) + 0x08)
#define USART_CR1(b) REG((b) + 0x0C)
#define USART_CR2(b) REG((b) + 0x10)
#define USART_CR3(b) REG((b) + 0x14)
#define USART_SR_ORE (1u << 3)
#define USART_SR_RXNE (1u << 5)
#define USART_SR_TC (1u << 6)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR1_TXEIE (1u << 7)
#define USART_CR1_UE (1u << 13)
#define USART_CR3_HDSEL (1u << 3)

/* General-purpose timers (TIM3, TIM4) */
#define TIM3_BASE 0x40000400u
#define TIM4_BASE 0x40000800u
#define TIM_CR1(b) REG((b) + 0x00)
#define TIM_EGR(b) REG((b) + 0x14)
#define TIM_CCMR1(b) REG((b) + 0x18)
#define TIM_CCMR2(b) REG((b) + 0x1C)
#define TIM_CCER(b) REG((b) + 0x20)
#define TIM_PSC(b) REG((b) + 0x28)
#define TIM_ARR(b) REG((b) + 0x2C)
#define TIM_CCR(b, ch) REG((b) + 0x34 + 4u * (ch)) /* ch 0..3 */
#define TIM_CR1_CEN (1u << 0)
#define TIM_CR1_ARPE (1u << 7)
#define TIM_EGR_UG (1u << 0)

/* Independent watchdog */
#define IWDG_KR REG(0x40003000u)
#define IWDG_PR REG(0x40003004u)
#define IWDG_RLR REG(0x40003008u)
#define IWDG_SR REG(0x4000300Cu)

/* Cortex-M4 core */
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define NVIC_ISER(n) REG(0xE000E100u + 4u * (n))
#define SCB_CPACR REG(0xE000ED88u)
#define SCB_AIRCR REG(0xE000ED0Cu)

#define IRQ_USART1 37
#define IRQ_USART2 38

#endif
