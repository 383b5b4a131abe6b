#include "control.h"
#include "../hal/hal.h"

/* ------------------------------------------------------------------ little-endian helpers */
static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f32(uint8_t *p, float f)
{
    union { float f; uint32_t u; } v = {.f = f};
    put_u32(p, v.u);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static float get_f32(const uint8_t *p)
{
    union { float f; uint32_t u; } v;
    v.u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    return v.f;
}

/* Finite without libm: NaN fails both comparisons, +-inf fails one. */
static bool finite_f(float x) { return x >= -3.4028235e38f && x <= 3.4028235e38f; }

static float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* ------------------------------------------------------------------ replies */
static void send_ack(control_t *c, uint8_t seq, uint8_t msg_id, uint8_t result)
{
    uint8_t p[ACK_SIZE];
    p[ACK_OFF_ECHO_SEQ] = seq;
    p[ACK_OFF_MSG_ID] = msg_id;
    p[ACK_OFF_RESULT] = result;
    p[ACK_OFF_MODE] = c->mode;
    link_send(&c->link, MSG_ACK, p, sizeof p);
}

static void send_fault(control_t *c, uint8_t code, uint8_t joint, uint32_t detail)
{
    uint8_t p[FAULT_SIZE];
    p[FAULT_OFF_CODE] = code;
    p[FAULT_OFF_JOINT] = joint;
    put_u16(p + FAULT_OFF_DETAIL, (uint16_t)(detail > 0xFFFFu ? 0xFFFFu : detail));
    link_send(&c->link, MSG_FAULT, p, sizeof p);
}

static uint8_t state_flags(const control_t *c)
{
    uint8_t f = c->cmd_flags;
    if (c->estop_input)
        f |= FLAG_ESTOP_INPUT;
    if (c->torque)
        f |= FLAG_TORQUE;
    if (c->wd_tripped)
        f |= FLAG_WATCHDOG;
    return f;
}

static void send_state(control_t *c, uint8_t seq)
{
    uint8_t p[STATE_HEAD_SIZE + PROTO_MAX_JOINTS * STATE_JOINT_SIZE] = {0};
    p[STATE_HEAD_OFF_ECHO_SEQ] = seq;
    p[STATE_HEAD_OFF_MODE] = c->mode;
    p[STATE_HEAD_OFF_FLAGS] = state_flags(c);
    p[STATE_HEAD_OFF_FAULT] = c->fault;
    p[STATE_HEAD_OFF_N] = (uint8_t)c->n;
    put_u32(p + STATE_HEAD_OFF_TIME_MS, hal_time_ms());
    for (int i = 0; i < c->n; i++) {
        uint8_t *j = p + STATE_HEAD_SIZE + i * STATE_JOINT_SIZE;
        put_f32(j + STATE_JOINT_OFF_POS, c->meas[i].pos);
        put_f32(j + STATE_JOINT_OFF_VEL, c->meas[i].vel);
        put_u16(j + STATE_JOINT_OFF_LOAD, (uint16_t)c->meas[i].load);
        j[STATE_JOINT_OFF_TEMP] = c->meas[i].temp;
        j[STATE_JOINT_OFF_ERROR] = c->meas[i].err;
    }
    link_send(&c->link, MSG_STATE, p, STATE_HEAD_SIZE + c->n * STATE_JOINT_SIZE);
}

/* ------------------------------------------------------------------ actuators */
static void torque_off(control_t *c)
{
    c->act->torque(c->act, c->cfg, c->n, false);
    c->torque = false;
    c->ticks_since_torque_off = 0;
}

void control_torque_off(control_t *c)
{
    torque_off(c);
    if (c->mode == MODE_ARMED || c->mode == MODE_BOOT)
        c->mode = MODE_DISARMED;
}

/* Stores a bus read: valid replies replace the measurement, misses are counted. */
static void store_reading(control_t *c, const joint_meas_t *m, int i)
{
    if (m->ok) {
        c->meas[i] = *m;
        c->misses[i] = 0;
    } else {
        c->meas[i].ok = false;
        c->counters[CNT_BUS_ERRORS]++;
        if (c->misses[i] < 255)
            c->misses[i]++;
    }
}

static void read_all(control_t *c)
{
    joint_meas_t m[PROTO_MAX_JOINTS];
    c->act->read(c->act, c->cfg, c->n, m);
    for (int i = 0; i < c->n; i++)
        store_reading(c, &m[i], i);
}

static void latch_estop(control_t *c, uint8_t code)
{
    torque_off(c);
    if (c->mode == MODE_ESTOP)
        return;
    c->mode = MODE_ESTOP;
    c->fault = code;
    c->counters[CNT_ESTOPS]++;
    send_fault(c, code, 0xFF, 0);
}

static void latch_fault(control_t *c, uint8_t code, int joint, uint32_t detail)
{
    torque_off(c);
    c->mode = MODE_FAULT;
    c->fault = code;
    send_fault(c, code, (uint8_t)joint, detail);
}

/* ------------------------------------------------------------------ init */
void control_init(control_t *c, actuator_t *act, int n, uint32_t tick_hz)
{
    *c = (control_t){0};
    c->act = act;
    c->n = n < 1 ? 1 : (n > PROTO_MAX_JOINTS ? PROTO_MAX_JOINTS : n);
    c->dt = 1.0f / (float)(tick_hz ? tick_hz : FW_DEFAULT_TICK_HZ);
    c->mode = MODE_BOOT;
    c->fault = FAULT_NONE;
    c->watchdog_ms = FW_DEFAULT_WATCHDOG_MS;
    c->stop_action = STOP_HOLD;
    link_init(&c->link, c->counters);
    for (int i = 0; i < PROTO_MAX_JOINTS; i++) {
        /* Usable defaults so state can be read before CONFIG_JOINT; ARM stays refused until then. */
        c->cfg[i] = (joint_cfg_t){
            .servo_id = (uint8_t)(i + 1), .direction = 1, .offset_ticks = 2048, .ticks_per_rev = 4096,
            .pos_min = -3.14159265f, .pos_max = 3.14159265f, .vel_max = 1.0f, .step_max = 0.1f,
            .max_temp_c = 70.0f,
        };
    }
    act->init(act, c->cfg, c->n);
    torque_off(c);
    read_all(c); /* state is readable from the first frame on */
    c->mode = MODE_DISARMED;
}

void control_link_reset(control_t *c) { link_reset(&c->link); }

/* ------------------------------------------------------------------ messages */
static uint8_t do_config(control_t *c, const uint8_t *p, int len)
{
    if (c->mode == MODE_ARMED)
        return RESULT_REFUSED_ARMED;
    if (len != CONFIG_SIZE)
        return RESULT_BAD_PAYLOAD;
    uint16_t wd = get_u16(p + CONFIG_OFF_WATCHDOG_MS);
    uint8_t action = p[CONFIG_OFF_STOP_ACTION];
    if (wd < 10 || wd > 1000 || (action != STOP_HOLD && action != STOP_TORQUE_OFF))
        return RESULT_BAD_PAYLOAD;
    c->watchdog_ms = wd;
    c->stop_action = action;
    return RESULT_OK;
}

static uint8_t do_config_joint(control_t *c, const uint8_t *p, int len)
{
    if (c->mode == MODE_ARMED)
        return RESULT_REFUSED_ARMED;
    if (len != CONFIG_JOINT_SIZE)
        return RESULT_BAD_PAYLOAD;
    int j = p[CONFIG_JOINT_OFF_JOINT];
    joint_cfg_t k = {
        .servo_id = p[CONFIG_JOINT_OFF_SERVO_ID],
        .direction = (int8_t)p[CONFIG_JOINT_OFF_DIRECTION],
        .offset_ticks = get_u16(p + CONFIG_JOINT_OFF_OFFSET_TICKS),
        .ticks_per_rev = get_u16(p + CONFIG_JOINT_OFF_TICKS_PER_REV),
        .pos_min = get_f32(p + CONFIG_JOINT_OFF_POS_MIN),
        .pos_max = get_f32(p + CONFIG_JOINT_OFF_POS_MAX),
        .vel_max = get_f32(p + CONFIG_JOINT_OFF_VEL_MAX),
        .step_max = get_f32(p + CONFIG_JOINT_OFF_STEP_MAX),
        .max_temp_c = get_f32(p + CONFIG_JOINT_OFF_MAX_TEMP_C),
    };
    if (j >= c->n || (k.direction != 1 && k.direction != -1) || k.servo_id > 253 || k.ticks_per_rev == 0)
        return RESULT_BAD_PAYLOAD;
    if (!finite_f(k.pos_min) || !finite_f(k.pos_max) || !finite_f(k.vel_max) || !finite_f(k.step_max) ||
        !finite_f(k.max_temp_c))
        return RESULT_BAD_PAYLOAD;
    if (!(k.pos_min < k.pos_max) || !(k.vel_max > 0.0f) || !(k.step_max > 0.0f))
        return RESULT_BAD_PAYLOAD;
    c->cfg[j] = k;
    c->configured[j] = true;
    c->misses[j] = 0;
    return RESULT_OK;
}

static uint8_t do_arm(control_t *c, const uint8_t *p, int len)
{
    if (len != ARM_SIZE || p[0] > 1)
        return RESULT_BAD_PAYLOAD;
    if (p[0] == 0) {
        if (c->mode == MODE_ARMED) {
            torque_off(c);
            c->mode = MODE_DISARMED;
        }
        return RESULT_OK;
    }
    if (c->mode == MODE_ESTOP || hal_estop_pressed())
        return RESULT_REFUSED_ESTOP;
    if (c->mode == MODE_FAULT)
        return RESULT_REFUSED_FAULT;
    if (c->mode == MODE_ARMED)
        return RESULT_OK;
    for (int i = 0; i < c->n; i++) {
        if (!c->configured[i])
            return RESULT_NOT_CONFIGURED;
        for (int k = 0; k < i; k++)
            if (c->cfg[k].servo_id == c->cfg[i].servo_id)
                return RESULT_NOT_CONFIGURED; /* two joints on one servo */
    }
    /* Fresh positions under the current calibration (retrying joints whose reply was lost). */
    bool have[PROTO_MAX_JOINTS] = {false};
    for (int t = 0; t < FW_ARM_READ_TRIES; t++) {
        joint_meas_t m[PROTO_MAX_JOINTS];
        bool all = true;
        c->act->read(c->act, c->cfg, c->n, m);
        for (int i = 0; i < c->n; i++) {
            if (have[i])
                continue;
            store_reading(c, &m[i], i);
            have[i] = m[i].ok;
            all = all && have[i];
        }
        if (all)
            break;
    }
    for (int i = 0; i < c->n; i++)
        if (!have[i])
            return RESULT_REFUSED_FAULT; /* a servo does not answer */
    for (int i = 0; i < c->n; i++)
        c->target[i] = c->setpoint[i] = c->meas[i].pos;
    /* goals first, so that torque-on holds where the joints are */
    c->act->write(c->act, c->cfg, c->n, c->setpoint);
    c->act->torque(c->act, c->cfg, c->n, true);
    c->torque = true;
    c->mode = MODE_ARMED;
    c->wd_tripped = false;
    c->cmd_flags = 0;
    c->last_valid_ms = hal_time_ms();
    return RESULT_OK;
}

static uint8_t do_clear(control_t *c)
{
    if (hal_estop_pressed())
        return RESULT_REFUSED_ESTOP;
    if (c->mode == MODE_ESTOP || c->mode == MODE_FAULT) {
        torque_off(c);
        c->mode = MODE_DISARMED;
        c->fault = FAULT_NONE;
        c->wd_tripped = false;
    }
    return RESULT_OK;
}

static void feed_watchdog(control_t *c)
{
    c->last_valid_ms = hal_time_ms();
    c->wd_tripped = false;
}

static void do_joint_command(control_t *c, const uint8_t *p, int len)
{
    bool ok = c->mode == MODE_ARMED && len >= JOINT_COMMAND_HEAD_SIZE && p[JOINT_COMMAND_HEAD_OFF_N] == c->n &&
              len == JOINT_COMMAND_HEAD_SIZE + 4 * c->n;
    float t[PROTO_MAX_JOINTS];
    for (int i = 0; ok && i < c->n; i++) {
        t[i] = get_f32(p + JOINT_COMMAND_HEAD_SIZE + 4 * i);
        ok = finite_f(t[i]);
    }
    if (!ok) {
        c->counters[CNT_REJECTED]++;
        c->cmd_flags = FLAG_REJECTED;
        return;
    }
    feed_watchdog(c);
    c->cmd_flags = 0;
    for (int i = 0; i < c->n; i++) {
        const joint_cfg_t *k = &c->cfg[i];
        float v = clampf(t[i], k->pos_min, k->pos_max);
        v = clampf(v, c->target[i] - k->step_max, c->target[i] + k->step_max);
        if (v != t[i]) {
            c->counters[CNT_CLAMPED]++;
            c->cmd_flags |= FLAG_CLAMPED;
        }
        c->target[i] = v;
    }
}

void control_handle_frame(control_t *c, uint8_t msg_id, uint8_t seq, const uint8_t *p, int len)
{
    switch (msg_id) {
    case MSG_HELLO: {
        uint8_t r[HELLO_REPLY_SIZE];
        put_u16(r + HELLO_REPLY_OFF_PROTOCOL_VERSION, PROTO_VERSION);
        put_u16(r + HELLO_REPLY_OFF_FIRMWARE_VERSION, (FW_VERSION_MAJOR << 8) | FW_VERSION_MINOR);
        r[HELLO_REPLY_OFF_N_JOINTS] = (uint8_t)c->n;
        r[HELLO_REPLY_OFF_BACKEND] = c->act->backend;
        put_u16(r + HELLO_REPLY_OFF_WATCHDOG_MS, c->watchdog_ms);
        link_send(&c->link, MSG_HELLO_REPLY, r, sizeof r);
        break;
    }
    case MSG_JOINT_COMMAND:
        do_joint_command(c, p, len);
        send_state(c, seq);
        break;
    case MSG_HEARTBEAT:
        if (c->mode == MODE_ARMED)
            feed_watchdog(c);
        send_state(c, seq);
        break;
    case MSG_GET_COUNTERS: {
        uint8_t r[COUNTERS_SIZE];
        for (int i = 0; i < COUNTERS_N; i++)
            put_u32(r + 4 * i, c->counters[i]);
        link_send(&c->link, MSG_COUNTERS, r, sizeof r);
        break;
    }
    case MSG_CONFIG:
        send_ack(c, seq, msg_id, do_config(c, p, len));
        break;
    case MSG_CONFIG_JOINT:
        send_ack(c, seq, msg_id, do_config_joint(c, p, len));
        break;
    case MSG_ARM:
        send_ack(c, seq, msg_id, do_arm(c, p, len));
        break;
    case MSG_ESTOP:
        latch_estop(c, FAULT_ESTOP_COMMAND);
        send_ack(c, seq, msg_id, RESULT_OK);
        break;
    case MSG_CLEAR:
        send_ack(c, seq, msg_id, do_clear(c));
        break;
    default:
        send_ack(c, seq, msg_id, RESULT_UNKNOWN_MESSAGE);
        break;
    }
}

static void on_frame(void *user, uint8_t msg_id, uint8_t seq, const uint8_t *payload, int len)
{
    control_handle_frame((control_t *)user, msg_id, seq, payload, len);
}

void control_feed(control_t *c, const uint8_t *data, int n) { link_feed(&c->link, data, n, on_frame, c); }

void control_poll_link(control_t *c)
{
    uint8_t buf[64];
    int n;
    while ((n = hal_link_read(buf, (int)sizeof buf)) > 0)
        control_feed(c, buf, n);
}

/* ------------------------------------------------------------------ tick */
static void check_faults(control_t *c)
{
    for (int i = 0; i < c->n; i++) {
        const joint_meas_t *m = &c->meas[i];
        if (c->misses[i] >= FW_BUS_MISSES_FAULT) {
            latch_fault(c, FAULT_BUS_TIMEOUT, i, c->misses[i]);
            return;
        }
        if (!m->ok)
            continue;
        if ((float)m->temp > c->cfg[i].max_temp_c || (m->err & SERVO_ERR_TEMPERATURE)) {
            latch_fault(c, FAULT_OVER_TEMPERATURE, i, m->temp);
            return;
        }
        if (m->err & SERVO_ERR_OVERLOAD) {
            latch_fault(c, FAULT_OVERLOAD, i, (uint32_t)(m->load < 0 ? -m->load : m->load));
            return;
        }
    }
}

void control_tick(control_t *c)
{
    uint32_t now = hal_time_ms();
    c->counters[CNT_TICKS]++;
    c->estop_input = hal_estop_pressed();
    if (c->estop_input)
        latch_estop(c, FAULT_ESTOP_INPUT);
    read_all(c);
    if (c->mode != MODE_ARMED) {
        /* a lost torque-off packet must not leave a servo powered */
        if (++c->ticks_since_torque_off >= FW_TORQUE_OFF_REPEAT_TICKS)
            torque_off(c);
        return;
    }
    check_faults(c);
    if (c->mode != MODE_ARMED)
        return;
    /* Trip at the last tick before the period ends (the next one would be late): the arm stops within
     * watchdog_ms of the last valid command, never a tick after it. */
    uint32_t since = now - c->last_valid_ms;
    uint32_t tick_ms = (uint32_t)(c->dt * 1000.0f + 0.5f);
    if (!c->wd_tripped && since + tick_ms > c->watchdog_ms) {
        c->wd_tripped = true;
        c->counters[CNT_WATCHDOG]++;
        send_fault(c, FAULT_WATCHDOG, 0xFF, since);
        if (c->stop_action == STOP_TORQUE_OFF) {
            torque_off(c);
            c->mode = MODE_DISARMED;
            return;
        }
        for (int i = 0; i < c->n; i++)
            c->target[i] = c->setpoint[i] = c->meas[i].pos;
    }
    for (int i = 0; i < c->n; i++) {
        float step = c->cfg[i].vel_max * c->dt;
        c->setpoint[i] += clampf(c->target[i] - c->setpoint[i], -step, step);
    }
    c->act->write(c->act, c->cfg, c->n, c->setpoint);
}
