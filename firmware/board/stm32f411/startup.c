/* Startup for the STM32F411CE: the vector table, Reset_Handler (copy .data, zero .bss, FPU on),
 * default handlers. */
#include <stdint.h>
#include "stm32f411.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void USART1_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));
void USART2_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access to the FPU */
    __asm volatile("dsb\n isb");
    main();
    for (;;) {
    }
}

/* An unexpected interrupt or fault: stop here; the independent watchdog resets the MCU, which boots
 * with torque off. */
void Default_Handler(void)
{
    for (;;) {
    }
}

void HardFault_Handler(void)
{
    for (;;) {
    }
}

#define N_IRQ 86 /* STM32F411: positions 0..85 */

#define D Default_Handler
#define D4 D, D, D, D
#define D16 D4, D4, D4, D4
#define D32 D16, D16

__attribute__((section(".isr_vector"), used)) void (*const vector_table[16 + N_IRQ])(void) = {
    (void (*)(void))(&_estack),
    Reset_Handler,
    D,                 /* NMI */
    HardFault_Handler, /* HardFault */
    D, D, D,           /* MemManage, BusFault, UsageFault */
    0, 0, 0, 0,        /* reserved */
    D, D,              /* SVCall, DebugMon */
    0,                 /* reserved */
    D,                 /* PendSV */
    SysTick_Handler,
    D32, D4, D,        /* IRQ 0..36 */
    USART1_IRQHandler, /* IRQ 37 */
    USART2_IRQHandler, /* IRQ 38 */
    D32, D4, D4, D4, D, D, D, /* IRQ 39..85 */
};

_Static_assert(sizeof vector_table / sizeof vector_table[0] == 16 + N_IRQ, "vector table size");
