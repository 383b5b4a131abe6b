#include "feetech_emu.h"
#include "../drivers/feetech.h"

static uint32_t rnd(feetech_emu_t *e)
{
    /* xorshift64* */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return (uint32_t)((e->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static float rnd01(feetech_emu_t *e) { return (float)(rnd(e) >> 8) / 16777216.0f; }

int32_t emu_goal(const emu_servo_t *s) { return fts_from_sm((uint16_t)(s->mem[42] | (s->mem[43] << 8)), 15); }

bool emu_torque(const emu_servo_t *s) { return s->mem[40] != 0; }

emu_servo_t *emu_servo(feetech_emu_t *e, uint8_t id)
{
    for (int i = 0; i < e->n; i++)
        if (e->s[i].id == id)
            return &e->s[i];
    return 0;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static int32_t round_i(float x) { return (int32_t)(x >= 0.0f ? x + 0.5f : x - 0.5f); }

static void update_registers(emu_servo_t *s)
{
    put16(s->mem + 56, fts_to_sm(round_i(s->pos), 15));
    put16(s->mem + 58, fts_to_sm(round_i(s->vel), 15));
    put16(s->mem + 60, fts_to_sm(round_i(s->load), 10));
    s->mem[62] = 74; /* 7.4 V */
    float t = s->temp < 0.0f ? 0.0f : (s->temp > 255.0f ? 255.0f : s->temp);
    s->mem[63] = (uint8_t)t;
    uint8_t err = s->err_inject;
    if (s->temp > 80.0f)
        err |= 0x04;
    if (s->overload_s > 1.0f)
        err |= 0x20;
    s->mem[65] = err;
}

void emu_init(feetech_emu_t *e, int n, uint8_t first_id, uint64_t seed)
{
    *e = (feetech_emu_t){0};
    e->n = n > EMU_MAX_SERVOS ? EMU_MAX_SERVOS : n;
    e->rng = seed * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
    e->tau_s = 0.030f;
    e->max_speed = 3000.0f; /* ticks/s (about 4.6 rad/s) */
    e->ambient_c = 25.0f;
    e->heat_c_per_s = 1.0f; /* at full load */
    e->cool_tau_s = 60.0f;
    e->load_per_tick = 8.0f; /* per mille per tick of tracking error */
    for (int i = 0; i < e->n; i++) {
        emu_servo_t *s = &e->s[i];
        s->id = (uint8_t)(first_id + i);
        s->pos = 2048.0f + (float)((int)(rnd(e) % 201) - 100);
        s->temp = e->ambient_c + (float)(rnd(e) % 5);
        put16(s->mem + 42, fts_to_sm(round_i(s->pos), 15));
        update_registers(s);
    }
}

void emu_step(feetech_emu_t *e, uint32_t now_us)
{
    if (!e->started) {
        e->started = true;
        e->last_us = now_us;
        return;
    }
    uint32_t d_us = now_us - e->last_us;
    e->last_us = now_us;
    while (d_us > 0) {
        uint32_t step_us = d_us > 2000 ? 2000 : d_us; /* integrate in steps of at most 2 ms */
        d_us -= step_us;
        float dt = (float)step_us * 1e-6f;
        for (int i = 0; i < e->n; i++) {
            emu_servo_t *s = &e->s[i];
            if (s->dead)
                continue;
            if (emu_torque(s)) {
                float err = (float)emu_goal(s) - s->pos;
                float v = err / (e->tau_s + dt); /* implicit Euler of the first-order lag */
                if (v > e->max_speed)
                    v = e->max_speed;
                if (v < -e->max_speed)
                    v = -e->max_speed;
                s->vel = v;
                s->pos += v * dt;
                float load = err * e->load_per_tick;
                s->load = load > 1000.0f ? 1000.0f : (load < -1000.0f ? -1000.0f : load);
            } else {
                s->vel = 0.0f;
                s->load = 0.0f;
            }
            float a = s->load < 0 ? -s->load : s->load;
            s->overload_s = a >= 1000.0f ? s->overload_s + dt : 0.0f;
            s->temp += dt * (e->heat_c_per_s * a / 1000.0f + s->extra_heat - (s->temp - e->ambient_c) / e->cool_tau_s);
            update_registers(s);
        }
    }
}

static void reply(feetech_emu_t *e, emu_servo_t *s, const uint8_t *params, int n)
{
    if (s->dead)
        return;
    e->replies++;
    if (e->drop_p > 0.0f && rnd01(e) < e->drop_p) {
        e->dropped++;
        return;
    }
    uint8_t pkt[FTS_MAX_PACKET];
    int m = fts_packet(pkt, s->id, s->mem[65], params, n); /* a status packet: ERR where INSTR goes */
    if (e->corrupt_p > 0.0f && rnd01(e) < e->corrupt_p) {
        e->corrupted++;
        pkt[rnd(e) % (uint32_t)m] ^= (uint8_t)(1u << (rnd(e) % 8));
    }
    for (int i = 0; i < m && e->out_len < (int)sizeof e->out; i++)
        e->out[e->out_len++] = pkt[i];
}

static void write_mem(emu_servo_t *s, uint8_t addr, const uint8_t *data, int n)
{
    int32_t old = emu_goal(s);
    for (int i = 0; i < n && addr + i < 256; i++)
        s->mem[addr + i] = data[i];
    if (emu_goal(s) != old)
        s->goal_changes++;
}

static void handle(feetech_emu_t *e, uint8_t id, uint8_t instr, const uint8_t *p, int n)
{
    emu_servo_t *s = emu_servo(e, id);
    e->packets++;
    switch (instr) {
    case FTS_PING:
        if (s)
            reply(e, s, 0, 0);
        break;
    case FTS_READ:
        if (s && n == 2 && p[0] + p[1] <= 256)
            reply(e, s, s->mem + p[0], p[1]);
        break;
    case FTS_WRITE:
        if (n >= 1) {
            if (id == FTS_BROADCAST) {
                for (int i = 0; i < e->n; i++)
                    if (!e->s[i].dead)
                        write_mem(&e->s[i], p[0], p + 1, n - 1);
            } else if (s && !s->dead) {
                write_mem(s, p[0], p + 1, n - 1);
                reply(e, s, 0, 0);
            }
        }
        break;
    case FTS_SYNC_WRITE:
        if (id == FTS_BROADCAST && n >= 2 && p[1] > 0) {
            int rec = 1 + p[1];
            for (int off = 2; off + rec <= n; off += rec) {
                emu_servo_t *t = emu_servo(e, p[off]);
                if (t && !t->dead)
                    write_mem(t, p[0], p + off + 1, p[1]);
            }
        }
        break;
    case FTS_SYNC_READ:
        if (id == FTS_BROADCAST && n >= 2 && p[0] + p[1] <= 256) {
            for (int off = 2; off < n; off++) {
                emu_servo_t *t = emu_servo(e, p[off]);
                if (t)
                    reply(e, t, t->mem + p[0], p[1]);
            }
        }
        break;
    default:
        break;
    }
}

void emu_rx(feetech_emu_t *e, const uint8_t *buf, int len, uint32_t now_us)
{
    emu_step(e, now_us);
    e->out_len = e->out_pos = 0;
    for (int i = 0; i < len; i++) {
        if (e->in_len >= (int)sizeof e->in)
            e->in_len = 0;
        e->in[e->in_len++] = buf[i];
    }
    int pos = 0;
    for (;;) {
        while (pos + 1 < e->in_len && !(e->in[pos] == 0xFF && e->in[pos + 1] == 0xFF))
            pos++;
        if (pos + 4 > e->in_len)
            break;
        if (e->in[pos + 2] == 0xFF) { /* FF FF FF: the header starts one byte later */
            pos++;
            continue;
        }
        int l = e->in[pos + 3];
        if (l < 2) {
            e->bad_packets++;
            pos += 2;
            continue;
        }
        if (pos + 4 + l > e->in_len)
            break; /* wait for the rest */
        const uint8_t *pkt = e->in + pos;
        if (fts_checksum(pkt + 2, l + 1) != pkt[3 + l]) {
            e->bad_packets++;
            pos += 2;
            continue;
        }
        handle(e, pkt[2], pkt[4], pkt + 5, l - 2);
        pos += 4 + l;
    }
    /* keep an incomplete packet */
    int keep = e->in_len - pos;
    for (int i = 0; i < keep; i++)
        e->in[i] = e->in[pos + i];
    e->in_len = keep;
}

int emu_tx(feetech_emu_t *e, uint8_t *buf, int max)
{
    int n = 0;
    while (n < max && e->out_pos < e->out_len)
        buf[n++] = e->out[e->out_pos++];
    return n;
}
