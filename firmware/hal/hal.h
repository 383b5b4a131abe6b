/* The hardware abstraction layer the portable core and drivers run on.
 * Implemented by host/hal_linux.c (pseudo-terminal link, emulated or tty servo bus, control files),
 * tests/test_hal.c (fake clock, in-process emulator) and board/stm32f411/hal_stm32.c. */
#ifndef FW_HAL_H
#define FW_HAL_H
#include <stdbool.h>
#include <stdint.h>

/* Monotonic time since boot (wraps). */
uint32_t hal_time_ms(void);
uint32_t hal_time_us(void);

/* Host link: non-blocking. hal_link_read returns the number of bytes copied (0: none pending).
 * hal_link_write queues len bytes; bytes that cannot be queued (link unplugged, buffer full) are lost. */
int hal_link_read(uint8_t *buf, int max);
void hal_link_write(const uint8_t *buf, int len);

/* Servo bus (half duplex). hal_bus_write transmits len bytes (and discards anything still pending
 * in the receiver first). hal_bus_read copies up to max received bytes, waiting at most timeout_us
 * for the first one; returns the count (0: timeout). */
void hal_bus_write(const uint8_t *buf, int len);
int hal_bus_read(uint8_t *buf, int max, uint32_t timeout_us);

/* The e-stop input: true = pressed (or its wire broken). */
bool hal_estop_pressed(void);

/* PWM outputs for hobby servos: pulse width in microseconds, 0 = no pulses (servo limp). */
int hal_pwm_channels(void);
void hal_pwm_write_us(int channel, uint16_t pulse_us);

#endif
