#include "pwm_servo.h"
#include "../hal/hal.h"

uint16_t pwm_servo_pulse_us(const joint_cfg_t *c, float rad)
{
    float span = c->pos_max - c->pos_min;
    float frac = span > 0.0f ? (rad - c->pos_min) / span : 0.5f;
    if (!(frac >= 0.0f))
        frac = 0.0f; /* also NaN */
    if (frac > 1.0f)
        frac = 1.0f;
    if (c->direction < 0)
        frac = 1.0f - frac;
    return (uint16_t)(PWM_SERVO_MIN_US + frac * (PWM_SERVO_MAX_US - PWM_SERVO_MIN_US) + 0.5f);
}

static float clamp_range(const joint_cfg_t *c, float x)
{
    return x < c->pos_min ? c->pos_min : (x > c->pos_max ? c->pos_max : x);
}

static int pwm_init(actuator_t *a, const joint_cfg_t *cfg, int n)
{
    pwm_servo_t *p = a->ctx;
    (void)cfg;
    for (int i = 0; i < n; i++)
        p->have[i] = false;
    p->torque = false;
    return n < hal_pwm_channels() ? n : hal_pwm_channels();
}

static void pwm_read(actuator_t *a, const joint_cfg_t *cfg, int n, joint_meas_t *out)
{
    pwm_servo_t *p = a->ctx;
    for (int i = 0; i < n; i++) {
        /* never driven: assume the middle of the range (clamped 0 rad) */
        float pos = p->have[i] ? p->est[i] : clamp_range(&cfg[i], 0.0f);
        out[i] = (joint_meas_t){.pos = pos, .vel = 0.0f, .load = 0, .temp = 0, .err = 0, .ok = true};
    }
}

static void pwm_write(actuator_t *a, const joint_cfg_t *cfg, int n, const float *sp)
{
    pwm_servo_t *p = a->ctx;
    for (int i = 0; i < n; i++) {
        p->est[i] = sp[i];
        p->have[i] = true;
        if (p->torque && i < hal_pwm_channels())
            hal_pwm_write_us(i, pwm_servo_pulse_us(&cfg[i], sp[i]));
    }
}

static void pwm_torque(actuator_t *a, const joint_cfg_t *cfg, int n, bool on)
{
    pwm_servo_t *p = a->ctx;
    p->torque = on;
    for (int i = 0; i < n && i < hal_pwm_channels(); i++) {
        float pos = p->have[i] ? p->est[i] : clamp_range(&cfg[i], 0.0f);
        hal_pwm_write_us(i, on ? pwm_servo_pulse_us(&cfg[i], pos) : 0);
    }
}

void pwm_servo_actuator(actuator_t *a, pwm_servo_t *p)
{
    *p = (pwm_servo_t){0};
    *a = (actuator_t){
        .backend = BACKEND_PWM, .init = pwm_init, .read = pwm_read, .write = pwm_write,
        .torque = pwm_torque, .ctx = p,
    };
}
