/* The control core: message dispatch, arming state machine, limits, watchdog, e-stop, faults. */
#ifndef FW_CONTROL_H
#define FW_CONTROL_H
#include <stdbool.h>
#include <stdint.h>
#include "actuator.h"
#include "link.h"
#include "protocol_gen.h"

#define FW_VERSION_MAJOR 1
#define FW_VERSION_MINOR 0
#define FW_DEFAULT_WATCHDOG_MS 100
#define FW_DEFAULT_TICK_HZ 200
#define FW_BUS_MISSES_FAULT 3 /* consecutive missing replies that latch BUS_TIMEOUT */
#define FW_ARM_READ_TRIES 3   /* bus reads ARM may take to get every joint's position */
#define FW_TORQUE_OFF_REPEAT_TICKS 50 /* torque-off is resent this often while not armed */

/* Servo status error bits (Feetech). */
#define SERVO_ERR_VOLTAGE 0x01
#define SERVO_ERR_ANGLE 0x02
#define SERVO_ERR_TEMPERATURE 0x04
#define SERVO_ERR_CURRENT 0x08
#define SERVO_ERR_OVERLOAD 0x20

typedef struct {
    actuator_t *act;
    link_t link;
    uint32_t counters[COUNTERS_N];
    int n;         /* joints */
    float dt;      /* control period, s */
    uint8_t mode;  /* MODE_* */
    uint8_t fault; /* latched FAULT_* (FAULT_NONE when none) */
    bool torque;
    bool estop_input;   /* the input as read by the latest tick */
    bool wd_tripped;    /* FLAG_WATCHDOG */
    uint8_t cmd_flags;  /* FLAG_CLAMPED / FLAG_REJECTED of the last JOINT_COMMAND */
    uint16_t watchdog_ms;
    uint8_t stop_action;
    uint32_t last_valid_ms; /* the last valid JOINT_COMMAND / HEARTBEAT (or ARM) */
    uint32_t ticks_since_torque_off;
    joint_cfg_t cfg[PROTO_MAX_JOINTS];
    bool configured[PROTO_MAX_JOINTS];
    joint_meas_t meas[PROTO_MAX_JOINTS]; /* latest values (the last valid reply's, ok = this read's) */
    uint8_t misses[PROTO_MAX_JOINTS];    /* consecutive missing replies */
    float target[PROTO_MAX_JOINTS];      /* the last accepted (clamped) target, rad */
    float setpoint[PROTO_MAX_JOINTS];    /* what the servos are sent, moving toward target at vel_max */
} control_t;

/* BOOT: probe the actuators, torque off, then DISARMED. n in 1..PROTO_MAX_JOINTS. */
void control_init(control_t *c, actuator_t *act, int n, uint32_t tick_hz);
/* Reads every pending link byte (hal_link_read) and handles each complete frame at once. */
void control_poll_link(control_t *c);
/* Handles received link bytes (what control_poll_link does with the bytes it reads). */
void control_feed(control_t *c, const uint8_t *data, int n);
/* One control tick: e-stop input, bus read, fault checks, watchdog, setpoint motion, bus write. */
void control_tick(control_t *c);
/* The host link was reconnected: drop a partial frame, restart sequence-gap tracking. */
void control_link_reset(control_t *c);
/* Torque off (shutdown); the mode becomes DISARMED unless ESTOP/FAULT is latched. */
void control_torque_off(control_t *c);
/* Handles one decoded host frame (exposed for tests). */
void control_handle_frame(control_t *c, uint8_t msg_id, uint8_t seq, const uint8_t *payload, int len);

#endif
