/* Board-level functions beyond the HAL (STM32F411 port). */
#ifndef BOARD_STM32F411_H
#define BOARD_STM32F411_H
#include <stdbool.h>

void board_init(void);
void board_kick_watchdog(void);
bool board_reset_by_watchdog(void);
void board_wait_for_interrupt(void);

#endif
