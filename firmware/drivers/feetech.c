#include "feetech.h"
#include "../hal/hal.h"

uint8_t fts_checksum(const uint8_t *p, int n)
{
    unsigned sum = 0;
    for (int i = 0; i < n; i++)
        sum += p[i];
    return (uint8_t)(~sum & 0xFFu);
}

int fts_packet(uint8_t *out, uint8_t id, uint8_t instr, const uint8_t *params, int n_params)
{
    out[0] = 0xFF;
    out[1] = 0xFF;
    out[2] = id;
    out[3] = (uint8_t)(n_params + 2);
    out[4] = instr;
    for (int i = 0; i < n_params; i++)
        out[5 + i] = params[i];
    out[5 + n_params] = fts_checksum(out + 2, n_params + 3);
    return n_params + 6;
}

int32_t fts_from_sm(uint16_t raw, int sign_bit)
{
    int32_t mag = raw & ((1u << sign_bit) - 1u);
    return (raw & (1u << sign_bit)) ? -mag : mag;
}

uint16_t fts_to_sm(int32_t v, int sign_bit)
{
    int32_t lim = (int32_t)((1u << sign_bit) - 1u);
    int32_t mag = v < 0 ? -v : v;
    if (mag > lim)
        mag = lim;
    return (uint16_t)((uint32_t)mag | (v < 0 ? (1u << sign_bit) : 0u));
}

static int32_t round_i(float x) { return (int32_t)(x >= 0.0f ? x + 0.5f : x - 0.5f); }

/* Collects reply bytes until `want` arrived or the bus stays quiet for timeout_us. */
static int collect(const feetech_t *f, uint8_t *rx, int cap, int want)
{
    int len = 0;
    while (len < want && len < cap) {
        int got = hal_bus_read(rx + len, cap - len, f->timeout_us);
        if (got <= 0)
            break;
        len += got;
    }
    return len;
}

/* Parses in-order status replies of `data_len` bytes for ids[0..n): a reply whose id is a later
 * servo's means the ones between were missed; a corrupt reply (bad checksum, length, unknown id)
 * counts against the servo whose turn it was. ok[i] = a valid reply came; data[i] its params. */
static void parse_replies(const uint8_t *rx, int len, const uint8_t *ids, int n, int data_len,
                          uint8_t data[][FTS_READ_LEN], uint8_t *err, bool *ok)
{
    int pos = 0, k = 0;
    for (int i = 0; i < n; i++)
        ok[i] = false;
    while (k < n && pos + 6 <= len) {
        if (rx[pos] != 0xFF || rx[pos + 1] != 0xFF || rx[pos + 2] == 0xFF) {
            pos++;
            continue;
        }
        uint8_t id = rx[pos + 2], l = rx[pos + 3];
        if (l != data_len + 2 || pos + 4 + l > len) {
            k++; /* wrong length or cut short: that servo's reply is bad */
            pos += 2;
            continue;
        }
        const uint8_t *pkt = rx + pos;
        pos += 4 + l;
        if (fts_checksum(pkt + 2, l + 1) != pkt[3 + l]) {
            k++;
            continue;
        }
        int j = k;
        while (j < n && ids[j] != id)
            j++;
        if (j == n) {
            k++; /* a reply from a servo we did not ask */
            continue;
        }
        ok[j] = true;
        err[j] = pkt[4];
        for (int b = 0; b < data_len; b++)
            data[j][b] = pkt[5 + b];
        k = j + 1;
    }
}

static int fts_init(actuator_t *a, const joint_cfg_t *cfg, int n)
{
    feetech_t *f = a->ctx;
    uint8_t pkt[8], rx[32];
    f->pings_ok = 0;
    for (int i = 0; i < n; i++) {
        int m = fts_packet(pkt, cfg[i].servo_id, FTS_PING, 0, 0);
        hal_bus_write(pkt, m);
        int len = collect(f, rx, (int)sizeof rx, 6);
        for (int p = 0; p + 6 <= len; p++) {
            if (rx[p] == 0xFF && rx[p + 1] == 0xFF && rx[p + 2] == cfg[i].servo_id && rx[p + 3] == 2 &&
                fts_checksum(rx + p + 2, 3) == rx[p + 5]) {
                f->pings_ok++;
                break;
            }
        }
    }
    return (int)f->pings_ok;
}

static void fts_read(actuator_t *a, const joint_cfg_t *cfg, int n, joint_meas_t *out)
{
    feetech_t *f = a->ctx;
    uint8_t params[2 + PROTO_MAX_JOINTS], ids[PROTO_MAX_JOINTS], pkt[FTS_MAX_PACKET];
    uint8_t rx[PROTO_MAX_JOINTS * (6 + FTS_READ_LEN) + 32];
    uint8_t data[PROTO_MAX_JOINTS][FTS_READ_LEN], err[PROTO_MAX_JOINTS];
    bool ok[PROTO_MAX_JOINTS];
    params[0] = FTS_ADDR_PRESENT_POSITION;
    params[1] = FTS_READ_LEN;
    for (int i = 0; i < n; i++)
        params[2 + i] = ids[i] = cfg[i].servo_id;
    hal_bus_write(pkt, fts_packet(pkt, FTS_BROADCAST, FTS_SYNC_READ, params, 2 + n));
    int len = collect(f, rx, (int)sizeof rx, n * (6 + FTS_READ_LEN));
    parse_replies(rx, len, ids, n, FTS_READ_LEN, data, err, ok);
    for (int i = 0; i < n; i++) {
        joint_meas_t *m = &out[i];
        *m = (joint_meas_t){.ok = ok[i]};
        if (!ok[i])
            continue;
        const uint8_t *d = data[i];
        const joint_cfg_t *c = &cfg[i];
        int32_t ticks = fts_from_sm((uint16_t)(d[0] | (d[1] << 8)), 15);
        int32_t speed = fts_from_sm((uint16_t)(d[2] | (d[3] << 8)), 15);
        int32_t load = fts_from_sm((uint16_t)(d[4] | (d[5] << 8)), 10);
        if (load > 1000)
            load = 1000;
        if (load < -1000)
            load = -1000;
        m->pos = joint_ticks_to_rad(c, (float)ticks);
        m->vel = (float)speed * (float)c->direction * TWO_PI_F / (float)c->ticks_per_rev;
        m->load = (int16_t)(load * c->direction);
        m->temp = d[7];
        m->err = err[i];
    }
}

static void fts_write(actuator_t *a, const joint_cfg_t *cfg, int n, const float *setpoint)
{
    (void)a;
    uint8_t params[2 + 3 * PROTO_MAX_JOINTS], pkt[FTS_MAX_PACKET];
    params[0] = FTS_ADDR_GOAL_POSITION;
    params[1] = 2;
    for (int i = 0; i < n; i++) {
        int32_t t = round_i(joint_rad_to_ticks(&cfg[i], setpoint[i]));
        uint16_t raw = fts_to_sm(t, 15);
        params[2 + 3 * i] = cfg[i].servo_id;
        params[3 + 3 * i] = (uint8_t)raw;
        params[4 + 3 * i] = (uint8_t)(raw >> 8);
    }
    hal_bus_write(pkt, fts_packet(pkt, FTS_BROADCAST, FTS_SYNC_WRITE, params, 2 + 3 * n));
}

static void fts_torque(actuator_t *a, const joint_cfg_t *cfg, int n, bool on)
{
    (void)a;
    uint8_t params[2 + 2 * PROTO_MAX_JOINTS], pkt[FTS_MAX_PACKET];
    params[0] = FTS_ADDR_TORQUE_ENABLE;
    params[1] = 1;
    for (int i = 0; i < n; i++) {
        params[2 + 2 * i] = cfg[i].servo_id;
        params[3 + 2 * i] = on ? 1 : 0;
    }
    hal_bus_write(pkt, fts_packet(pkt, FTS_BROADCAST, FTS_SYNC_WRITE, params, 2 + 2 * n));
}

void feetech_actuator(actuator_t *a, feetech_t *f, uint32_t timeout_us)
{
    f->timeout_us = timeout_us;
    f->pings_ok = 0;
    *a = (actuator_t){
        .backend = BACKEND_FEETECH, .init = fts_init, .read = fts_read, .write = fts_write,
        .torque = fts_torque, .ctx = f,
    };
}
