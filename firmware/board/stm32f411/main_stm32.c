/* The firmware main loop on the STM32F411: link bytes are handled as they arrive, the control tick
 * runs every 1000/BOARD_TICK_HZ ms from SysTick, the independent watchdog is kicked once per loop. */
#include "../../core/control.h"
#include "../../drivers/feetech.h"
#include "../../drivers/pwm_servo.h"
#include "../../hal/hal.h"
#include "board.h"

#ifndef BOARD_TICK_HZ
#define BOARD_TICK_HZ 200
#endif
#ifndef BOARD_JOINTS
#define BOARD_JOINTS 6
#endif
#ifndef BOARD_BUS_TIMEOUT_US
#define BOARD_BUS_TIMEOUT_US 600
#endif

static control_t ctl;
static actuator_t act;
#ifdef BOARD_PWM
static pwm_servo_t pwm;
#else
static feetech_t fts;
#endif

int main(void)
{
    board_init();
#ifdef BOARD_PWM
    pwm_servo_actuator(&act, &pwm);
#else
    feetech_actuator(&act, &fts, BOARD_BUS_TIMEOUT_US);
#endif
    control_init(&ctl, &act, BOARD_JOINTS, BOARD_TICK_HZ);
    const uint32_t period_ms = 1000u / BOARD_TICK_HZ;
    uint32_t next = hal_time_ms() + period_ms;
    for (;;) {
        control_poll_link(&ctl);
        if ((int32_t)(hal_time_ms() - next) >= 0) {
            control_tick(&ctl);
            next += period_ms;
            if ((int32_t)(hal_time_ms() - next) > (int32_t)(10u * period_ms))
                next = hal_time_ms() + period_ms;
        }
        board_kick_watchdog();
        board_wait_for_interrupt(); /* SysTick (1 kHz) or a link byte wakes the loop */
    }
}
