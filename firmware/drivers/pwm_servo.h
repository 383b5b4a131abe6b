/* Hobby servos on PWM outputs (joint i on channel i): no feedback, the state reports the setpoint. */
#ifndef FW_PWM_SERVO_H
#define FW_PWM_SERVO_H
#include <stdint.h>
#include "../core/actuator.h"

#define PWM_SERVO_MIN_US 500
#define PWM_SERVO_MAX_US 2500

typedef struct {
    float est[PROTO_MAX_JOINTS]; /* the last setpoint sent (the estimated position) */
    bool have[PROTO_MAX_JOINTS];
    bool torque;
} pwm_servo_t;

void pwm_servo_actuator(actuator_t *a, pwm_servo_t *p);

/* The pulse for `rad`: pos_min..pos_max maps linearly onto 500..2500 us (2500..500 for direction -1),
 * clamped to that range. */
uint16_t pwm_servo_pulse_us(const joint_cfg_t *c, float rad);

#endif
