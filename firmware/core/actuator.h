/* The actuator back-end interface the control core drives (Feetech bus servos, PWM hobby servos). */
#ifndef FW_ACTUATOR_H
#define FW_ACTUATOR_H
#include <stdbool.h>
#include <stdint.h>
#include "protocol_gen.h"

/* One joint's calibration and limits (CONFIG_JOINT). rad = (ticks - offset) * direction * 2pi / tpr. */
typedef struct {
    uint8_t servo_id;
    int8_t direction;
    uint16_t offset_ticks;
    uint16_t ticks_per_rev;
    float pos_min, pos_max; /* rad */
    float vel_max;          /* rad/s */
    float step_max;         /* rad per command */
    float max_temp_c;
} joint_cfg_t;

/* One joint's measurement from a bus read (in joint units). */
typedef struct {
    float pos;    /* rad */
    float vel;    /* rad/s */
    int16_t load; /* per mille, signed in joint direction */
    uint8_t temp; /* C */
    uint8_t err;  /* servo status error byte */
    bool ok;      /* a valid reply came this read */
} joint_meas_t;

typedef struct actuator actuator_t;
struct actuator {
    uint8_t backend; /* BACKEND_* */
    /* Boot: probe the actuators (e.g. PING each id); returns how many answered. */
    int (*init)(actuator_t *a, const joint_cfg_t *cfg, int n);
    /* Reads every joint; out[i].ok = false for a joint whose reply was missing or corrupt. */
    void (*read)(actuator_t *a, const joint_cfg_t *cfg, int n, joint_meas_t *out);
    /* Sends position setpoints (rad) to every joint. */
    void (*write)(actuator_t *a, const joint_cfg_t *cfg, int n, const float *setpoint);
    /* Torque on/off for every joint. */
    void (*torque)(actuator_t *a, const joint_cfg_t *cfg, int n, bool on);
    void *ctx;
};

#define TWO_PI_F 6.28318530717958647692f

static inline float joint_ticks_to_rad(const joint_cfg_t *c, float ticks)
{
    return (ticks - (float)c->offset_ticks) * (float)c->direction * TWO_PI_F / (float)c->ticks_per_rev;
}

/* ticks = offset + direction * rad * tpr / 2pi, rounded. */
static inline float joint_rad_to_ticks(const joint_cfg_t *c, float rad)
{
    return (float)c->offset_ticks + (float)c->direction * rad * (float)c->ticks_per_rev / TWO_PI_F;
}

#endif
