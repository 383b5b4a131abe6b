/* C unit tests of the firmware core, drivers and emulator (run by `make test`). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../core/cobs.h"
#include "../core/control.h"
#include "../core/crc16.h"
#include "../core/link.h"
#include "../drivers/feetech.h"
#include "../drivers/pwm_servo.h"
#include "test_hal.h"

static int failures, checks;
#define CHECK(cond)                                                                                        \
    do {                                                                                                   \
        checks++;                                                                                          \
        if (!(cond)) {                                                                                     \
            failures++;                                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                       \
        }                                                                                                  \
    } while (0)
#define CHECK_EQ(a, b)                                                                                     \
    do {                                                                                                   \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                              \
        checks++;                                                                                          \
        if (va_ != vb_) {                                                                                  \
            failures++;                                                                                    \
            fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, va_, #b, vb_); \
        }                                                                                                  \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                              \
    do {                                                                                                   \
        double va_ = (double)(a), vb_ = (double)(b);                                                       \
        checks++;                                                                                          \
        if (!(fabs(va_ - vb_) <= (tol))) {                                                                 \
            failures++;                                                                                    \
            fprintf(stderr, "%s:%d: %s == %g, expected %g (+-%g)\n", __FILE__, __LINE__, #a, va_, vb_, (double)(tol)); \
        }                                                                                                  \
    } while (0)

/* ------------------------------------------------------------------ helpers */
static uint64_t rng_state = 88172645463325252ULL;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)rng_state;
}

static void put_f32(uint8_t *p, float f) { memcpy(p, &f, 4); }
static float get_f32(const uint8_t *p)
{
    float f;
    memcpy(&f, p, 4);
    return f;
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* A host frame: COBS(id, seq, payload, crc) + 0x00. */
static int encode_host(uint8_t *out, uint8_t id, uint8_t seq, const uint8_t *payload, int len)
{
    uint8_t body[PROTO_MAX_FRAME + 64];
    body[0] = id;
    body[1] = seq;
    if (len > 0)
        memcpy(body + 2, payload, (size_t)len);
    uint16_t crc = crc16(body, (size_t)len + 2);
    body[len + 2] = (uint8_t)crc;
    body[len + 3] = (uint8_t)(crc >> 8);
    int m = (int)cobs_encode(body, (size_t)len + 4, out, 400);
    out[m++] = 0;
    return m;
}

static control_t C;
static feetech_t F;
static pwm_servo_t P;
static actuator_t A;
static uint8_t host_seq;
static t_frame replies[64];
static int n_replies;

static void setup_with(int n, bool pwm)
{
    t_now_us = 1000000;
    t_estop = false;
    t_bus_writes = 0;
    memset(t_pwm, 0, sizeof t_pwm);
    emu_init(&t_emu, n, 1, 42);
    if (pwm)
        pwm_servo_actuator(&A, &P);
    else
        feetech_actuator(&A, &F, 1000);
    control_init(&C, &A, n, 200);
    t_out_clear();
    host_seq = 0;
}
static void setup(int n) { setup_with(n, false); }

static void tick(int k)
{
    for (int i = 0; i < k; i++) {
        t_now_us += 5000;
        control_tick(&C);
    }
}

/* Sends one host message; the firmware's frames are collected into replies[]. */
static t_frame *send(uint8_t id, const uint8_t *payload, int len)
{
    uint8_t buf[512];
    t_out_clear();
    int m = encode_host(buf, id, host_seq++, payload, len);
    control_feed(&C, buf, m);
    n_replies = t_take_frames(replies, 64);
    return n_replies > 0 ? &replies[n_replies - 1] : NULL;
}

/* The Result of an ACKed message (-1 when the reply is not the ACK). */
static int ack(uint8_t id, const uint8_t *payload, int len)
{
    uint8_t seq = host_seq;
    t_frame *f = send(id, payload, len);
    if (!f || f->id != MSG_ACK || f->len != ACK_SIZE || f->payload[ACK_OFF_ECHO_SEQ] != seq ||
        f->payload[ACK_OFF_MSG_ID] != id)
        return -1;
    return f->payload[ACK_OFF_RESULT];
}

static int cfg_joint(int j, int id, int dir, int offset, int tpr, float lo, float hi, float vel, float step, float temp)
{
    uint8_t p[CONFIG_JOINT_SIZE] = {0};
    p[CONFIG_JOINT_OFF_JOINT] = (uint8_t)j;
    p[CONFIG_JOINT_OFF_SERVO_ID] = (uint8_t)id;
    p[CONFIG_JOINT_OFF_DIRECTION] = (uint8_t)(int8_t)dir;
    p[CONFIG_JOINT_OFF_OFFSET_TICKS] = (uint8_t)offset;
    p[CONFIG_JOINT_OFF_OFFSET_TICKS + 1] = (uint8_t)(offset >> 8);
    p[CONFIG_JOINT_OFF_TICKS_PER_REV] = (uint8_t)tpr;
    p[CONFIG_JOINT_OFF_TICKS_PER_REV + 1] = (uint8_t)(tpr >> 8);
    put_f32(p + CONFIG_JOINT_OFF_POS_MIN, lo);
    put_f32(p + CONFIG_JOINT_OFF_POS_MAX, hi);
    put_f32(p + CONFIG_JOINT_OFF_VEL_MAX, vel);
    put_f32(p + CONFIG_JOINT_OFF_STEP_MAX, step);
    put_f32(p + CONFIG_JOINT_OFF_MAX_TEMP_C, temp);
    return ack(MSG_CONFIG_JOINT, p, sizeof p);
}

static void configure_all(void)
{
    for (int j = 0; j < C.n; j++)
        CHECK_EQ(cfg_joint(j, j + 1, 1, 2048, 4096, -1.5f, 1.5f, 2.0f, 0.2f, 60.0f), RESULT_OK);
}

static int config(int wd, int action)
{
    uint8_t p[3] = {(uint8_t)wd, (uint8_t)(wd >> 8), (uint8_t)action};
    return ack(MSG_CONFIG, p, 3);
}

static int arm(int on)
{
    uint8_t p = (uint8_t)on;
    return ack(MSG_ARM, &p, 1);
}

/* Sends a JOINT_COMMAND; returns the STATE reply. */
static t_frame *command(const float *t, int n)
{
    uint8_t p[1 + 4 * PROTO_MAX_JOINTS];
    p[0] = (uint8_t)n;
    for (int i = 0; i < n; i++)
        put_f32(p + 1 + 4 * i, t[i]);
    return send(MSG_JOINT_COMMAND, p, 1 + 4 * n);
}

static uint32_t counter(int idx) { return C.counters[idx]; }

static float state_pos(const t_frame *f, int j) { return get_f32(f->payload + STATE_HEAD_SIZE + j * STATE_JOINT_SIZE); }

/* FAULT frames among replies / link output since the last clear. */
static int take_faults(t_frame *out, int max)
{
    t_frame fr[64];
    int n = t_take_frames(fr, 64), k = 0;
    for (int i = 0; i < n; i++)
        if (fr[i].id == MSG_FAULT && k < max)
            out[k++] = fr[i];
    return k;
}

static void arm_ready(int n)
{
    setup(n);
    configure_all();
    tick(2);
    CHECK_EQ(arm(1), RESULT_OK);
    CHECK_EQ(C.mode, MODE_ARMED);
}

/* ------------------------------------------------------------------ CRC, COBS */
static void test_crc(void)
{
    CHECK_EQ(crc16((const uint8_t *)"123456789", 9), 0x29B1);
    CHECK_EQ(crc16((const uint8_t *)"", 0), 0xFFFF);
    /* incremental == one shot */
    CHECK_EQ(crc16_update(crc16((const uint8_t *)"1234", 4), (const uint8_t *)"56789", 5), 0x29B1);
}

static void test_cobs(void)
{
    uint8_t enc[700], dec[600], src[600];
    /* known vectors */
    static const uint8_t v1[] = {0x11, 0x22, 0x00, 0x33};
    static const uint8_t e1[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    CHECK_EQ(cobs_encode(v1, 4, enc, sizeof enc), 5);
    CHECK(memcmp(enc, e1, 5) == 0);
    CHECK_EQ(cobs_encode(v1, 0, enc, sizeof enc), 1);
    CHECK_EQ(enc[0], 1);
    static const uint8_t z[] = {0};
    CHECK_EQ(cobs_encode(z, 1, enc, sizeof enc), 2);
    CHECK(enc[0] == 1 && enc[1] == 1);
    /* 254 non-zero bytes: one full block, no trailing code */
    memset(src, 1, 254);
    CHECK_EQ(cobs_encode(src, 254, enc, sizeof enc), 255);
    CHECK_EQ(enc[0], 0xFF);
    /* random round trips */
    for (int it = 0; it < 3000; it++) {
        int len = (int)(rnd() % 600);
        for (int i = 0; i < len; i++)
            src[i] = (rnd() % 4 == 0) ? 0 : (uint8_t)rnd();
        size_t m = cobs_encode(src, (size_t)len, enc, sizeof enc);
        CHECK(m > 0 && m <= (size_t)COBS_MAX_ENCODED(len));
        CHECK(memchr(enc, 0, m) == NULL);
        int d = cobs_decode(enc, m, dec, sizeof dec);
        CHECK_EQ(d, len);
        CHECK(d == len && memcmp(src, dec, (size_t)len) == 0);
    }
    /* malformed */
    static const uint8_t bad_zero[] = {0x03, 0x11, 0x00};
    CHECK_EQ(cobs_decode(bad_zero, 3, dec, sizeof dec), -1);
    static const uint8_t bad_run[] = {0x05, 0x11, 0x22};
    CHECK_EQ(cobs_decode(bad_run, 3, dec, sizeof dec), -1);
    static const uint8_t lead_zero[] = {0x00};
    CHECK_EQ(cobs_decode(lead_zero, 1, dec, sizeof dec), -1);
    /* output capacity respected */
    CHECK_EQ(cobs_decode(e1, 5, dec, 3), -1);
    CHECK_EQ(cobs_encode(v1, 4, enc, 4), 0);
}

/* ------------------------------------------------------------------ link */
static int cb_count;
static uint8_t cb_id, cb_seq;
static int cb_len;
static void count_cb(void *user, uint8_t id, uint8_t seq, const uint8_t *p, int len)
{
    (void)user;
    (void)p;
    cb_count++;
    cb_id = id;
    cb_seq = seq;
    cb_len = len;
}

static void test_link(void)
{
    uint32_t cnt[COUNTERS_N] = {0};
    link_t l;
    link_init(&l, cnt);
    uint8_t buf[600], pl[PROTO_MAX_PAYLOAD];
    memset(pl, 0xAB, sizeof pl);
    cb_count = 0;
    /* a valid frame, fed byte by byte */
    int m = encode_host(buf, MSG_HEARTBEAT, 7, pl, 3);
    for (int i = 0; i < m; i++)
        link_feed(&l, buf + i, 1, count_cb, NULL);
    CHECK_EQ(cb_count, 1);
    CHECK(cb_id == MSG_HEARTBEAT && cb_seq == 7 && cb_len == 3);
    CHECK_EQ(cnt[CNT_RX_FRAMES], 1);
    /* the largest payload passes */
    m = encode_host(buf, MSG_HEARTBEAT, 8, pl, PROTO_MAX_PAYLOAD);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cb_count, 2);
    CHECK_EQ(cb_len, PROTO_MAX_PAYLOAD);
    CHECK_EQ(cnt[CNT_SEQ_GAPS], 0);
    /* seq gap of 3 missing frames */
    m = encode_host(buf, MSG_HEARTBEAT, 12, pl, 0);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cnt[CNT_SEQ_GAPS], 3);
    /* wrap 12 -> ... consecutive frames across 255 -> 0 do not count */
    l.last_seq = 255;
    m = encode_host(buf, MSG_HEARTBEAT, 0, pl, 0);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cnt[CNT_SEQ_GAPS], 3);
    /* a repeated seq counts one */
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cnt[CNT_SEQ_GAPS], 4);
    /* HELLO starts a session: no gap */
    m = encode_host(buf, MSG_HELLO, 100, pl, 2);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cnt[CNT_SEQ_GAPS], 4);
    /* after a reset the first frame is not compared */
    link_reset(&l);
    m = encode_host(buf, MSG_HEARTBEAT, 50, pl, 0);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cnt[CNT_SEQ_GAPS], 4);
    int before = cb_count;
    /* bad CRC */
    m = encode_host(buf, MSG_HEARTBEAT, 51, pl, 4);
    buf[2] ^= 0x01;
    if (buf[2] == 0)
        buf[2] = 0x02;
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cnt[CNT_BAD_CRC], 1);
    /* bad COBS (code past the end) and too short */
    uint8_t bad1[] = {0x09, 0x01, 0x02, 0x00};
    link_feed(&l, bad1, 4, count_cb, NULL);
    CHECK_EQ(cnt[CNT_BAD_FRAME], 1);
    uint8_t shortf[] = {0x03, 0x10, 0x01, 0x00};
    link_feed(&l, shortf, 4, count_cb, NULL);
    CHECK_EQ(cnt[CNT_BAD_FRAME], 2);
    /* empty frames (0x00 0x00) are ignored */
    uint8_t zeros[] = {0, 0, 0};
    link_feed(&l, zeros, 3, count_cb, NULL);
    CHECK_EQ(cnt[CNT_BAD_FRAME], 2);
    /* overlong: discarded up to the next 0x00, counted, then the next frame decodes */
    memset(buf, 0x55, 300);
    buf[300] = 0;
    link_feed(&l, buf, 301, count_cb, NULL);
    CHECK_EQ(cnt[CNT_BAD_FRAME], 3);
    CHECK_EQ(cnt[CNT_DROPPED], 300);
    CHECK_EQ(cb_count, before);
    m = encode_host(buf, MSG_HEARTBEAT, 52, pl, 1);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cb_count, before + 1);
    /* a frame whose payload is one byte too long decodes to too many bytes */
    uint8_t big[PROTO_MAX_PAYLOAD + 1];
    memset(big, 1, sizeof big);
    m = encode_host(buf, MSG_HEARTBEAT, 53, big, PROTO_MAX_PAYLOAD + 1);
    link_feed(&l, buf, m, count_cb, NULL);
    CHECK_EQ(cb_count, before + 1);
    CHECK_EQ(cnt[CNT_BAD_FRAME], 4);
}

/* A reference decoder, written from the protocol text, for the fuzz oracle. */
static int ref_valid(const uint8_t *enc, int len)
{
    if (len < 1 || len > PROTO_MAX_ENCODED)
        return -1;
    uint8_t body[1024];
    int out = 0, in = 0;
    while (in < len) {
        int code = enc[in++];
        if (code == 0)
            return -1;
        for (int k = 1; k < code; k++) {
            if (in >= len || enc[in] == 0)
                return -1;
            body[out++] = enc[in++];
        }
        if (code < 0xFF && in < len)
            body[out++] = 0;
    }
    if (out < 4 || out > PROTO_MAX_FRAME)
        return -1;
    return crc16(body, (size_t)out - 2) == (uint16_t)(body[out - 2] | body[out - 1] << 8) ? body[0] : -1;
}

static void test_fuzz(void)
{
    arm_ready(6);
    tick(5);
    uint32_t goals0[6];
    for (int i = 0; i < 6; i++)
        goals0[i] = t_emu.s[i].goal_changes;
    float target0[6];
    memcpy(target0, C.target, sizeof target0);
    uint32_t rx0 = counter(CNT_RX_FRAMES);
    uint8_t stream[600], valid[400];
    uint8_t pl[PROTO_MAX_PAYLOAD];
    long expect_valid = 0, moving_valid = 0, unexplained = 0;
    int frames = 200000;
    for (int it = 0; it < frames; it++) {
        int kind = (int)(rnd() % 4), len = 0;
        if (rnd() % 16 == 0)
            kind = 4;
        /* start from a valid far-away JOINT_COMMAND */
        int n = 6;
        pl[0] = (uint8_t)n;
        for (int j = 0; j < n; j++)
            put_f32(pl + 1 + 4 * j, 1.4f);
        int vlen = encode_host(valid, MSG_JOINT_COMMAND, (uint8_t)rnd(), pl, 1 + 4 * n) - 1; /* without 0x00 */
        if (kind == 0) { /* random bytes */
            len = 1 + (int)(rnd() % 200);
            for (int i = 0; i < len; i++)
                stream[i] = (uint8_t)rnd();
        } else if (kind == 1) { /* bit flips */
            memcpy(stream, valid, (size_t)vlen);
            len = vlen;
            int flips = 1 + (int)(rnd() % 3), first = (int)(rnd() % (uint32_t)len);
            for (int f = 0; f < flips; f++) /* distinct bytes, so that flips cannot cancel */
                stream[(first + f * 7) % len] ^= (uint8_t)(1u << (rnd() % 8));
        } else if (kind == 2) { /* truncated */
            len = (int)(rnd() % (uint32_t)vlen);
            memcpy(stream, valid, (size_t)len);
        } else if (kind == 4) { /* an intact HEARTBEAT: must be executed */
            len = encode_host(stream, MSG_HEARTBEAT, (uint8_t)rnd(), NULL, 0) - 1;
        } else { /* overlong / random tail */
            memcpy(stream, valid, (size_t)vlen);
            len = vlen + 1 + (int)(rnd() % 300);
            for (int i = vlen; i < len; i++)
                stream[i] = (uint8_t)(rnd() | 1);
        }
        /* the oracle: split at zero bytes like the receiver */
        int start = 0, valid_here = 0;
        for (int i = 0; i <= len; i++) {
            if (i == len || stream[i] == 0) {
                int id = ref_valid(stream + start, i - start);
                if (id >= 0) {
                    expect_valid++;
                    valid_here++;
                    if (id == MSG_JOINT_COMMAND || id == MSG_ARM || id == MSG_ESTOP || id == MSG_CLEAR) {
                        moving_valid++;
                        if (getenv("FUZZ_DEBUG")) {
                            printf("kind %d len %d vlen %d chunk %d..%d:", kind, len, vlen, start, i);
                            for (int q = 0; q < len; q++) printf(" %02x", stream[q]);
                            printf("\n valid:");
                            for (int q = 0; q < vlen; q++) printf(" %02x", valid[q]);
                            printf("\n");
                        }
                    }
                }
                start = i + 1;
            }
        }
        stream[len] = 0;
        t_out_clear();
        float tb[6];
        uint8_t mode_before = C.mode;
        memcpy(tb, C.target, sizeof tb);
        control_feed(&C, stream, len + 1);
        if (kind == 4) {
            t_frame fr[4];
            CHECK(t_take_frames(fr, 4) == 1 && fr[0].id == MSG_STATE);
        }
        if (!valid_here && (memcmp(tb, C.target, sizeof tb) != 0 || C.mode != mode_before))
            unexplained++;
        if (it % 4096 == 0)
            tick(1);
    }
    t_out_clear();
    CHECK_EQ(counter(CNT_RX_FRAMES) - rx0, expect_valid);
    CHECK_EQ(unexplained, 0); /* targets and mode change only with a valid frame */
    if (moving_valid == 0) {
        /* no valid frame carried a command: the servo goals did not move */
        CHECK(memcmp(target0, C.target, sizeof target0) == 0);
        for (int i = 0; i < 6; i++)
            CHECK_EQ(t_emu.s[i].goal_changes, goals0[i]);
    }
    CHECK(counter(CNT_BAD_FRAME) + counter(CNT_BAD_CRC) > 100000);
    CHECK_EQ(moving_valid, 0);
    printf("  fuzz: %d frames, %ld valid by the oracle, bad_frame %u bad_crc %u dropped %u\n", frames,
           expect_valid, counter(CNT_BAD_FRAME), counter(CNT_BAD_CRC), counter(CNT_DROPPED));
}

/* ------------------------------------------------------------------ state machine */
static void test_boot_and_messages(void)
{
    setup(6);
    CHECK_EQ(C.mode, MODE_DISARMED);
    CHECK_EQ(F.pings_ok, 6);
    for (int i = 0; i < 6; i++)
        CHECK(!emu_torque(&t_emu.s[i]));
    tick(1);
    /* HELLO: own version even when the host's differs */
    uint8_t hv[2] = {99, 0};
    t_frame *f = send(MSG_HELLO, hv, 2);
    CHECK(f && f->id == MSG_HELLO_REPLY && f->len == HELLO_REPLY_SIZE);
    if (f) {
        CHECK_EQ(get_u16(f->payload + HELLO_REPLY_OFF_PROTOCOL_VERSION), PROTO_VERSION);
        CHECK_EQ(f->payload[HELLO_REPLY_OFF_N_JOINTS], 6);
        CHECK_EQ(f->payload[HELLO_REPLY_OFF_BACKEND], BACKEND_FEETECH);
        CHECK_EQ(get_u16(f->payload + HELLO_REPLY_OFF_WATCHDOG_MS), 100);
    }
    /* STATE for a heartbeat, with the measured positions (default calibration) */
    uint8_t seq = host_seq;
    f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && f->id == MSG_STATE && f->len == STATE_HEAD_SIZE + 6 * STATE_JOINT_SIZE);
    if (f) {
        CHECK_EQ(f->payload[STATE_HEAD_OFF_ECHO_SEQ], seq);
        CHECK_EQ(f->payload[STATE_HEAD_OFF_MODE], MODE_DISARMED);
        CHECK_EQ(f->payload[STATE_HEAD_OFF_N], 6);
        CHECK_EQ(get_u32(f->payload + STATE_HEAD_OFF_TIME_MS), t_now_us / 1000);
        float expect = (t_emu.s[2].pos - 2048.0f) * 6.2831853f / 4096.0f;
        CHECK_NEAR(state_pos(f, 2), expect, 2e-3);
        CHECK_EQ(f->payload[STATE_HEAD_SIZE + 2 * STATE_JOINT_SIZE + STATE_JOINT_OFF_TEMP], t_emu.s[2].mem[63]);
    }
    /* firmware frames number themselves */
    uint8_t s0 = replies[0].seq;
    send(MSG_HEARTBEAT, NULL, 0);
    CHECK_EQ(replies[0].seq, (uint8_t)(s0 + 1));
    /* COUNTERS */
    f = send(MSG_GET_COUNTERS, NULL, 0);
    CHECK(f && f->id == MSG_COUNTERS && f->len == COUNTERS_SIZE);
    if (f) {
        CHECK_EQ(get_u32(f->payload + COUNTERS_OFF_RX_FRAMES), 4); /* HELLO, 2 x HEARTBEAT, this one */
        CHECK_EQ(get_u32(f->payload + COUNTERS_OFF_TICKS), 1);
    }
    /* unknown ids */
    CHECK_EQ(ack(0x7E, NULL, 0), RESULT_UNKNOWN_MESSAGE);
    CHECK_EQ(ack(0x90, NULL, 0), RESULT_UNKNOWN_MESSAGE);
}

static void test_config_validation(void)
{
    setup(6);
    CHECK_EQ(config(100, STOP_HOLD), RESULT_OK);
    CHECK_EQ(config(10, STOP_TORQUE_OFF), RESULT_OK);
    CHECK_EQ(config(1000, STOP_HOLD), RESULT_OK);
    CHECK_EQ(config(9, STOP_HOLD), RESULT_BAD_PAYLOAD);
    CHECK_EQ(config(1001, STOP_HOLD), RESULT_BAD_PAYLOAD);
    CHECK_EQ(config(100, 2), RESULT_BAD_PAYLOAD);
    uint8_t p2[2] = {100, 0};
    CHECK_EQ(ack(MSG_CONFIG, p2, 2), RESULT_BAD_PAYLOAD);
    CHECK_EQ(C.watchdog_ms, 1000);

    float inf = INFINITY, nan = NAN;
    CHECK_EQ(cfg_joint(6, 7, 1, 2048, 4096, -1, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD); /* joint >= n */
    CHECK_EQ(cfg_joint(0, 1, 0, 2048, 4096, -1, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD);  /* direction 0 */
    CHECK_EQ(cfg_joint(0, 1, 2, 2048, 4096, -1, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, 1, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD); /* min >= max */
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, 2, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, 1, 0, 0.1f, 60), RESULT_BAD_PAYLOAD); /* vel_max <= 0 */
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, 1, 1, 0, 60), RESULT_BAD_PAYLOAD);    /* step_max <= 0 */
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, 1, 1, -0.1f, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, nan, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, inf, 1, 0.1f, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, 1, inf, 0.1f, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, 1, 1, nan, 60), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1, 1, 1, 0.1f, nan), RESULT_BAD_PAYLOAD);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 0, -1, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD); /* 0 ticks/rev */
    CHECK_EQ(cfg_joint(0, 0xFE, 1, 2048, 4096, -1, 1, 1, 0.1f, 60), RESULT_BAD_PAYLOAD); /* broadcast id */
    uint8_t shortp[CONFIG_JOINT_SIZE - 1] = {0};
    CHECK_EQ(ack(MSG_CONFIG_JOINT, shortp, sizeof shortp), RESULT_BAD_PAYLOAD);
    CHECK(!C.configured[0]);
    CHECK_EQ(cfg_joint(0, 1, -1, 2048, 4096, -1, 1, 1, 0.1f, 60), RESULT_OK);
    CHECK(C.configured[0]);
}

static void test_arming(void)
{
    setup(6);
    tick(2);
    CHECK_EQ(arm(1), RESULT_NOT_CONFIGURED);
    for (int j = 0; j < 5; j++)
        CHECK_EQ(cfg_joint(j, j + 1, 1, 2048, 4096, -1.5f, 1.5f, 2, 0.2f, 60), RESULT_OK);
    CHECK_EQ(arm(1), RESULT_NOT_CONFIGURED);
    CHECK_EQ(cfg_joint(5, 1, 1, 2048, 4096, -1.5f, 1.5f, 2, 0.2f, 60), RESULT_OK); /* duplicate id */
    CHECK_EQ(arm(1), RESULT_NOT_CONFIGURED);
    CHECK_EQ(cfg_joint(5, 6, -1, 2000, 4096, -1.5f, 1.5f, 2, 0.2f, 60), RESULT_OK);
    uint8_t two = 2;
    CHECK_EQ(ack(MSG_ARM, &two, 1), RESULT_BAD_PAYLOAD);
    CHECK_EQ(ack(MSG_ARM, NULL, 0), RESULT_BAD_PAYLOAD);
    uint32_t changes[6];
    for (int i = 0; i < 6; i++)
        changes[i] = t_emu.s[i].goal_changes;
    /* ARM: targets = measured (fresh read), goals at the present positions, torque on */
    CHECK_EQ(arm(1), RESULT_OK);
    CHECK_EQ(replies[n_replies - 1].payload[ACK_OFF_MODE], MODE_ARMED);
    CHECK_EQ(C.mode, MODE_ARMED);
    for (int i = 0; i < 6; i++) {
        emu_servo_t *s = &t_emu.s[i];
        CHECK(emu_torque(s));
        CHECK_NEAR(emu_goal(s), s->pos, 1.0);
        CHECK_NEAR(C.target[i], C.meas[i].pos, 1e-6);
        CHECK_NEAR(C.setpoint[i], C.meas[i].pos, 1e-6);
        (void)changes[i];
    }
    /* joint 5: direction -1, offset 2000 */
    CHECK_NEAR(C.meas[5].pos, -(t_emu.s[5].pos - 2000.0f) * 6.2831853f / 4096.0f, 2e-3);
    /* no drift while holding */
    float p0 = t_emu.s[0].pos;
    for (int k = 0; k < 10; k++) {
        send(MSG_HEARTBEAT, NULL, 0);
        tick(1);
    }
    CHECK_NEAR(t_emu.s[0].pos, p0, 1.0);
    /* STATE flags: torque */
    t_frame *f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_TORQUE));
    /* config refused while armed */
    CHECK_EQ(config(100, STOP_HOLD), RESULT_REFUSED_ARMED);
    CHECK_EQ(cfg_joint(0, 1, 1, 2048, 4096, -1.5f, 1.5f, 2, 0.2f, 60), RESULT_REFUSED_ARMED);
    CHECK_EQ(arm(1), RESULT_OK); /* already armed */
    /* disarm */
    CHECK_EQ(arm(0), RESULT_OK);
    CHECK_EQ(C.mode, MODE_DISARMED);
    for (int i = 0; i < 6; i++)
        CHECK(!emu_torque(&t_emu.s[i]));
    f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && !(f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_TORQUE));
    /* commands rejected while disarmed: counted, flagged, no motion */
    uint32_t rej = counter(CNT_REJECTED);
    float t[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    f = command(t, 6);
    CHECK(f && f->id == MSG_STATE && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_REJECTED));
    CHECK_EQ(counter(CNT_REJECTED), rej + 1);
    tick(3);
    CHECK(!emu_torque(&t_emu.s[0]));
    /* a dead servo makes ARM refuse (no fault latched) */
    t_emu.s[3].dead = true;
    tick(1);
    CHECK_EQ(arm(1), RESULT_REFUSED_FAULT);
    CHECK_EQ(C.mode, MODE_DISARMED);
}

static void test_limits(void)
{
    arm_ready(6);
    float m0 = C.meas[0].pos;
    uint32_t rej = counter(CNT_REJECTED), clamp = counter(CNT_CLAMPED);
    float t[8];
    /* wrong count and wrong length */
    for (int i = 0; i < 8; i++)
        t[i] = m0;
    t_frame *f = command(t, 5);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_REJECTED));
    f = command(t, 7);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_REJECTED));
    uint8_t p[1 + 24 + 1] = {6};
    send(MSG_JOINT_COMMAND, p, sizeof p);
    send(MSG_JOINT_COMMAND, p, 0);
    CHECK_EQ(counter(CNT_REJECTED), rej + 4);
    /* NaN / inf anywhere: rejected, targets unchanged */
    float before[6];
    memcpy(before, C.target, sizeof before);
    for (int i = 0; i < 6; i++)
        t[i] = C.target[i];
    t[2] = NAN;
    f = command(t, 6);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_REJECTED));
    t[2] = INFINITY;
    command(t, 6);
    t[2] = -INFINITY;
    command(t, 6);
    CHECK_EQ(counter(CNT_REJECTED), rej + 7);
    CHECK(memcmp(before, C.target, sizeof before) == 0);
    /* in range, within the step: taken as is */
    for (int i = 0; i < 6; i++)
        t[i] = C.target[i] + 0.05f;
    f = command(t, 6);
    CHECK(f && !(f->payload[STATE_HEAD_OFF_FLAGS] & (FLAG_REJECTED | FLAG_CLAMPED)));
    CHECK_EQ(counter(CNT_CLAMPED), clamp);
    CHECK_NEAR(C.target[0], t[0], 1e-6);
    /* far target: clamped to the step (0.2) */
    float prev = C.target[0];
    for (int i = 0; i < 6; i++)
        t[i] = C.target[i];
    t[0] = prev + 1.0f;
    f = command(t, 6);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_CLAMPED));
    CHECK_NEAR(C.target[0], prev + 0.2f, 1e-5);
    CHECK_EQ(counter(CNT_CLAMPED), clamp + 1);
    /* huge values: clamped to the position limit and the step */
    for (int k = 0; k < 20; k++) {
        for (int i = 0; i < 6; i++)
            t[i] = (i % 2) ? -1e30f : 1e30f;
        command(t, 6);
        tick(1);
    }
    CHECK_NEAR(C.target[0], 1.5f, 1e-6);
    CHECK_NEAR(C.target[1], -1.5f, 1e-6);
    /* the setpoint moves at most vel_max (2 rad/s) * 5 ms per tick */
    float sp = C.setpoint[0];
    tick(1);
    CHECK(C.setpoint[0] - sp <= 2.0f * 0.005f + 1e-5f);
    /* let it arrive; the servo ends within the limit */
    for (int k = 0; k < 300; k++) {
        send(MSG_HEARTBEAT, NULL, 0);
        tick(1);
    }
    CHECK_NEAR(C.setpoint[0], 1.5f, 1e-5);
    CHECK_NEAR(C.meas[0].pos, 1.5f, 0.01);
    CHECK_NEAR(C.meas[1].pos, -1.5f, 0.01);
    CHECK_EQ(C.mode, MODE_ARMED);
    /* velocity limit: from one end to the other takes >= 3 rad / 2 rad/s */
    int ticks_needed = 0;
    for (int i = 0; i < 6; i++)
        t[i] = C.target[i];
    for (int k = 0; k < 1000 && C.setpoint[0] > -1.5f + 1e-4f; k++) {
        t[0] = -1.5f;
        command(t, 6);
        tick(1);
        ticks_needed++;
    }
    CHECK(ticks_needed >= 299);
    CHECK(ticks_needed <= 302);
}

static void test_watchdog(void)
{
    /* HOLD */
    arm_ready(6);
    t_out_clear();
    uint64_t t0 = t_now_us; /* the ARM fed the watchdog at t0 */
    float t[6];
    for (int i = 0; i < 6; i++)
        t[i] = C.target[i] + 0.2f;
    command(t, 6); /* feeds at t0 */
    /* GET_COUNTERS does not feed */
    int trip_tick = -1;
    for (int k = 1; k <= 40; k++) {
        send(MSG_GET_COUNTERS, NULL, 0);
        t_now_us += 5000;
        t_out_clear();
        control_tick(&C);
        t_frame fl[4];
        if (take_faults(fl, 4) > 0) {
            trip_tick = k;
            CHECK_EQ(fl[0].payload[FAULT_OFF_CODE], FAULT_WATCHDOG);
            CHECK_EQ(fl[0].payload[FAULT_OFF_JOINT], 0xFF);
            CHECK_EQ(get_u16(fl[0].payload + FAULT_OFF_DETAIL), (t_now_us - t0) / 1000);
            break;
        }
    }
    CHECK_EQ(trip_tick, 20); /* 100 ms at 5 ms ticks */
    CHECK_EQ(counter(CNT_WATCHDOG), 1);
    CHECK_EQ(C.mode, MODE_ARMED);
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(C.target[i], C.meas[i].pos, 1e-6);
        CHECK_NEAR(C.setpoint[i], C.meas[i].pos, 1e-6);
    }
    t_frame *f = send(MSG_GET_COUNTERS, NULL, 0);
    f = send(MSG_HEARTBEAT, NULL, 0); /* heartbeat clears the flag... */
    CHECK(f && !(f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_WATCHDOG));
    tick(25);
    f = send(MSG_GET_COUNTERS, NULL, 0);
    CHECK_EQ(counter(CNT_WATCHDOG), 2); /* ...and the watchdog runs again */
    f = send(MSG_HEARTBEAT, NULL, 0);
    tick(100);
    f = send(MSG_GET_COUNTERS, NULL, 0);
    f = send(MSG_HEARTBEAT, NULL, 0);
    tick(1);
    /* flag visible in STATE while tripped; only one trip per silence */
    tick(40);
    CHECK_EQ(counter(CNT_WATCHDOG), 4);
    uint8_t hb_seq = host_seq;
    (void)hb_seq;
    for (int i = 0; i < 6; i++)
        t[i] = C.target[i];
    t_out_clear();
    float held = C.target[0];
    t[0] = held + 1.0f;
    f = command(t, 6); /* resumes, step-limited from the held position */
    CHECK(f && !(f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_WATCHDOG));
    CHECK_NEAR(C.target[0], held + 0.2f, 1e-5);
    CHECK_EQ(C.mode, MODE_ARMED);

    /* trip flag in STATE */
    tick(25);
    f = send(MSG_GET_COUNTERS, NULL, 0);
    (void)f;
    t_out_clear();
    uint8_t pl[1 + 24];
    pl[0] = 5; /* rejected command: does not feed nor clear */
    send(MSG_JOINT_COMMAND, pl, 1 + 20);
    CHECK(replies[0].payload[STATE_HEAD_OFF_FLAGS] & FLAG_WATCHDOG);

    /* TORQUE_OFF */
    setup(6);
    configure_all();
    CHECK_EQ(config(50, STOP_TORQUE_OFF), RESULT_OK);
    tick(1);
    CHECK_EQ(arm(1), RESULT_OK);
    int k;
    for (k = 1; k <= 20 && C.mode == MODE_ARMED; k++)
        tick(1);
    CHECK_EQ(k - 1, 10);
    CHECK_EQ(C.mode, MODE_DISARMED);
    for (int i = 0; i < 6; i++)
        CHECK(!emu_torque(&t_emu.s[i]));
    f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_WATCHDOG) && !(f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_TORQUE));
    CHECK_EQ(arm(1), RESULT_OK);
    f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && !(f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_WATCHDOG));

    /* heartbeats alone keep it armed */
    for (k = 0; k < 100; k++) {
        send(MSG_HEARTBEAT, NULL, 0);
        tick(2);
    }
    CHECK_EQ(C.mode, MODE_ARMED);
    CHECK_EQ(counter(CNT_WATCHDOG), 1);
}

static void test_estop(void)
{
    /* input */
    arm_ready(6);
    t_out_clear();
    t_estop = true;
    tick(1);
    CHECK_EQ(C.mode, MODE_ESTOP);
    CHECK_EQ(C.fault, FAULT_ESTOP_INPUT);
    for (int i = 0; i < 6; i++)
        CHECK(!emu_torque(&t_emu.s[i]));
    t_frame fl[4];
    CHECK_EQ(take_faults(fl, 4), 1);
    CHECK_EQ(fl[0].payload[FAULT_OFF_CODE], FAULT_ESTOP_INPUT);
    CHECK_EQ(counter(CNT_ESTOPS), 1);
    tick(5); /* stays latched, counted once */
    CHECK_EQ(counter(CNT_ESTOPS), 1);
    t_frame *f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_ESTOP_INPUT) && f->payload[STATE_HEAD_OFF_MODE] == MODE_ESTOP);
    CHECK_EQ(f->payload[STATE_HEAD_OFF_FAULT], FAULT_ESTOP_INPUT);
    CHECK_EQ(arm(1), RESULT_REFUSED_ESTOP);
    float t[6] = {0};
    f = command(t, 6);
    CHECK(f && (f->payload[STATE_HEAD_OFF_FLAGS] & FLAG_REJECTED));
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_REFUSED_ESTOP);
    CHECK_EQ(C.mode, MODE_ESTOP);
    t_estop = false;
    tick(1);
    CHECK_EQ(C.mode, MODE_ESTOP); /* released: still latched */
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_OK);
    CHECK_EQ(C.mode, MODE_DISARMED);
    CHECK_EQ(C.fault, FAULT_NONE);
    tick(1);
    CHECK_EQ(C.mode, MODE_DISARMED);
    CHECK_EQ(arm(1), RESULT_OK);

    /* command: torque off at once (no tick) */
    t_out_clear();
    CHECK_EQ(ack(MSG_ESTOP, NULL, 0), RESULT_OK);
    CHECK_EQ(replies[n_replies - 1].payload[ACK_OFF_MODE], MODE_ESTOP);
    CHECK_EQ(replies[0].id, MSG_FAULT);
    CHECK_EQ(replies[0].payload[FAULT_OFF_CODE], FAULT_ESTOP_COMMAND);
    for (int i = 0; i < 6; i++)
        CHECK(!emu_torque(&t_emu.s[i]));
    CHECK_EQ(counter(CNT_ESTOPS), 2);
    CHECK_EQ(arm(1), RESULT_REFUSED_ESTOP);
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_OK);
    CHECK_EQ(C.mode, MODE_DISARMED);
    /* pressed while disarmed: latched too; ARM refused while pressed */
    t_estop = true;
    CHECK_EQ(arm(1), RESULT_REFUSED_ESTOP);
    tick(1);
    CHECK_EQ(C.mode, MODE_ESTOP);
    t_estop = false;
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_OK);
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_OK); /* nothing to clear */
    CHECK_EQ(C.mode, MODE_DISARMED);
}

/* ------------------------------------------------------------------ Feetech driver and faults */
static void test_feetech_bus(void)
{
    /* packet bytes */
    uint8_t pkt[32];
    int m = fts_packet(pkt, 1, FTS_PING, NULL, 0);
    static const uint8_t ping1[] = {0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB};
    CHECK_EQ(m, 6);
    CHECK(memcmp(pkt, ping1, 6) == 0);
    CHECK_EQ(fts_to_sm(-5, 15), 0x8005);
    CHECK_EQ(fts_from_sm(0x8005, 15), -5);
    CHECK_EQ(fts_from_sm(0x0405, 10), -5);
    CHECK_EQ(fts_to_sm(40000, 15), 0x7FFF);

    /* sync write goal: exact bytes seen by the emulator */
    setup(2);
    configure_all();
    tick(1);
    CHECK_EQ(arm(1), RESULT_OK);
    float t[2] = {C.target[0] + 0.1f, C.target[1] - 0.1f};
    for (int k = 0; k < 200; k++) {
        command(t, 2);
        tick(1);
    }
    CHECK_NEAR(emu_goal(&t_emu.s[0]), 2048.0f + (C.target[0]) * 4096.0f / 6.2831853f, 1.0);
    CHECK_NEAR(C.meas[0].pos, t[0], 0.003);
    CHECK_NEAR(C.meas[1].pos, t[1], 0.003);

    /* negative ticks (bit 15 sign) round trip through the bus */
    setup(1);
    CHECK_EQ(cfg_joint(0, 1, 1, 0, 4096, -1.0f, 1.0f, 10.0f, 1.0f, 60.0f), RESULT_OK);
    t_emu.s[0].pos = 100.0f;
    tick(2);
    CHECK_EQ(arm(1), RESULT_OK);
    for (int k = 0; k < 200; k++) {
        float tt = -0.5f;
        command(&tt, 1);
        tick(1);
    }
    CHECK(emu_goal(&t_emu.s[0]) < 0);
    CHECK_NEAR(C.meas[0].pos, -0.5f, 0.003);
    CHECK(C.meas[0].vel == 0.0f || fabsf(C.meas[0].vel) < 0.5f);

    /* drops and corruption: counted as bus errors, state keeps flowing, no fault at a low rate */
    setup(6);
    t_emu.drop_p = 0.02f;
    t_emu.corrupt_p = 0.02f;
    configure_all();
    tick(1);
    CHECK_EQ(arm(1), RESULT_OK);
    for (int k = 0; k < 1000; k++) {
        send(MSG_HEARTBEAT, NULL, 0);
        tick(1);
    }
    CHECK_EQ(C.mode, MODE_ARMED);
    uint32_t lost = t_emu.dropped + t_emu.corrupted;
    CHECK(counter(CNT_BUS_ERRORS) > 0);
    /* every lost reply is a bus error (a corrupt byte in the data still fails the checksum) */
    CHECK_NEAR(counter(CNT_BUS_ERRORS), lost, lost * 0.05 + 2);
    printf("  bus: %u replies dropped, %u corrupted, %u bus errors counted\n", t_emu.dropped, t_emu.corrupted,
           counter(CNT_BUS_ERRORS));

    /* a dead servo: BUS_TIMEOUT after 3 missed replies */
    arm_ready(6);
    t_out_clear();
    t_emu.s[4].dead = true;
    tick(2);
    CHECK_EQ(C.mode, MODE_ARMED);
    tick(1);
    CHECK_EQ(C.mode, MODE_FAULT);
    CHECK_EQ(C.fault, FAULT_BUS_TIMEOUT);
    t_frame fl[4];
    CHECK_EQ(take_faults(fl, 4), 1);
    CHECK_EQ(fl[0].payload[FAULT_OFF_CODE], FAULT_BUS_TIMEOUT);
    CHECK_EQ(fl[0].payload[FAULT_OFF_JOINT], 4);
    CHECK_EQ(get_u16(fl[0].payload + FAULT_OFF_DETAIL), 3);
    for (int i = 0; i < 6; i++)
        CHECK(i == 4 || !emu_torque(&t_emu.s[i]));
    CHECK_EQ(arm(1), RESULT_REFUSED_FAULT);
    t_frame *f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && f->payload[STATE_HEAD_OFF_MODE] == MODE_FAULT && f->payload[STATE_HEAD_OFF_FAULT] == FAULT_BUS_TIMEOUT);
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_OK);
    CHECK_EQ(C.mode, MODE_DISARMED);
    CHECK_EQ(arm(1), RESULT_REFUSED_FAULT); /* still dead */
    t_emu.s[4].dead = false;
    tick(1);
    CHECK_EQ(arm(1), RESULT_OK);

    /* a wrong-id reply (a servo we did not ask) is a bus error, not a reading */
    setup(2);
    configure_all();
    t_emu.s[1].id = 9;
    uint32_t be = counter(CNT_BUS_ERRORS);
    tick(1);
    CHECK_EQ(counter(CNT_BUS_ERRORS), be + 1);
    CHECK(!C.meas[1].ok);
    CHECK(C.meas[0].ok);
}

static void test_overheat_overload(void)
{
    arm_ready(6);
    t_out_clear();
    t_emu.s[2].extra_heat = 20.0f; /* C/s */
    int k = 0;
    while (C.mode == MODE_ARMED && k < 1000) {
        send(MSG_HEARTBEAT, NULL, 0);
        tick(1);
        k++;
    }
    CHECK_EQ(C.mode, MODE_FAULT);
    CHECK_EQ(C.fault, FAULT_OVER_TEMPERATURE);
    CHECK(t_emu.s[2].temp > 60.0f && t_emu.s[2].temp < 62.0f);
    t_frame fl[4];
    int nf = take_faults(fl, 4);
    CHECK_EQ(nf, 1);
    CHECK_EQ(fl[0].payload[FAULT_OFF_JOINT], 2);
    CHECK_EQ(get_u16(fl[0].payload + FAULT_OFF_DETAIL), 61);
    for (int i = 0; i < 6; i++)
        CHECK(!emu_torque(&t_emu.s[i]));

    /* overload bit */
    arm_ready(6);
    t_out_clear();
    send(MSG_HEARTBEAT, NULL, 0);
    tick(1);
    CHECK_EQ(C.mode, MODE_ARMED);
    t_emu.s[1].err_inject = 0x20;
    t_emu.s[1].mem[65] = 0x20;
    tick(1);
    CHECK_EQ(C.mode, MODE_FAULT);
    CHECK_EQ(C.fault, FAULT_OVERLOAD);
    CHECK_EQ(take_faults(fl, 4), 1);
    CHECK_EQ(fl[0].payload[FAULT_OFF_JOINT], 1);
    CHECK_EQ(arm(1), RESULT_REFUSED_FAULT);
    t_emu.s[1].err_inject = 0;
    tick(1);
    CHECK_EQ(ack(MSG_CLEAR, NULL, 0), RESULT_OK);
    CHECK_EQ(arm(1), RESULT_OK);
    /* a voltage error bit alone is reported, not latched */
    t_emu.s[1].err_inject = 0x01;
    send(MSG_HEARTBEAT, NULL, 0);
    tick(2);
    t_frame *f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK_EQ(C.mode, MODE_ARMED);
    CHECK(f && f->payload[STATE_HEAD_SIZE + 1 * STATE_JOINT_SIZE + STATE_JOINT_OFF_ERROR] == 0x01);
}

static void test_emulator_dynamics(void)
{
    feetech_emu_t e;
    emu_init(&e, 1, 1, 3);
    uint8_t pkt[32], par[8];
    e.s[0].pos = 1000.0f;
    par[0] = 42; par[1] = 2; par[2] = 1; par[3] = (uint8_t)2000; par[4] = (uint8_t)(2000 >> 8);
    int m = fts_packet(pkt, 0xFE, FTS_SYNC_WRITE, par, 5);
    emu_rx(&e, pkt, m, 0);
    par[0] = 40; par[1] = 1; par[2] = 1; par[3] = 1;
    m = fts_packet(pkt, 0xFE, FTS_SYNC_WRITE, par, 4);
    emu_rx(&e, pkt, m, 0);
    emu_step(&e, 30000); /* one time constant, but speed-limited: 3000 ticks/s * 30 ms = 90 */
    CHECK_NEAR(e.s[0].pos, 1090.0f, 2.0);
    emu_step(&e, 1000000);
    CHECK_NEAR(e.s[0].pos, 2000.0f, 2.0);
    /* PING reply bytes */
    m = fts_packet(pkt, 1, FTS_PING, NULL, 0);
    emu_rx(&e, pkt, m, 1000000);
    uint8_t rx[16];
    int n = emu_tx(&e, rx, 16);
    CHECK_EQ(n, 6);
    static const uint8_t status[] = {0xFF, 0xFF, 0x01, 0x02, 0x00, 0xFC};
    CHECK(memcmp(rx, status, 6) == 0);
    /* a packet with a bad checksum is ignored */
    pkt[5] ^= 1;
    emu_rx(&e, pkt, m, 1000000);
    CHECK_EQ(emu_tx(&e, rx, 16), 0);
}

static void test_pwm(void)
{
    joint_cfg_t c = {.servo_id = 1, .direction = 1, .offset_ticks = 0, .ticks_per_rev = 4096,
                     .pos_min = -1.0f, .pos_max = 1.0f, .vel_max = 1, .step_max = 0.1f, .max_temp_c = 60};
    CHECK_EQ(pwm_servo_pulse_us(&c, -1.0f), 500);
    CHECK_EQ(pwm_servo_pulse_us(&c, 0.0f), 1500);
    CHECK_EQ(pwm_servo_pulse_us(&c, 1.0f), 2500);
    CHECK_EQ(pwm_servo_pulse_us(&c, 0.5f), 2000);
    CHECK_EQ(pwm_servo_pulse_us(&c, 5.0f), 2500);
    CHECK_EQ(pwm_servo_pulse_us(&c, -5.0f), 500);
    CHECK_EQ(pwm_servo_pulse_us(&c, NAN), 500);
    c.direction = -1;
    CHECK_EQ(pwm_servo_pulse_us(&c, 0.5f), 1000);

    setup_with(3, true);
    CHECK_EQ(ack(MSG_HELLO, NULL, 0), -1);
    CHECK_EQ(replies[0].payload[HELLO_REPLY_OFF_BACKEND], BACKEND_PWM);
    for (int j = 0; j < 3; j++)
        CHECK_EQ(cfg_joint(j, j + 1, 1, 0, 4096, -1.0f, 1.0f, 1.0f, 0.5f, 60), RESULT_OK);
    tick(1);
    CHECK_EQ(t_pwm[0], 0); /* limp until armed */
    CHECK_EQ(arm(1), RESULT_OK);
    CHECK_EQ(t_pwm[0], 1500);
    float t[3] = {0.5f, -0.5f, 0.0f};
    for (int k = 0; k < 200; k++) {
        command(t, 3);
        tick(1);
    }
    CHECK_EQ(t_pwm[0], 2000);
    CHECK_EQ(t_pwm[1], 1000);
    t_frame *f = send(MSG_HEARTBEAT, NULL, 0);
    CHECK(f && fabsf(state_pos(f, 0) - 0.5f) < 1e-5f);
    CHECK_EQ(arm(0), RESULT_OK);
    CHECK_EQ(t_pwm[0], 0);
}

int main(void)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"crc", test_crc}, {"cobs", test_cobs}, {"link", test_link},
        {"boot_and_messages", test_boot_and_messages}, {"config_validation", test_config_validation},
        {"arming", test_arming}, {"limits", test_limits}, {"watchdog", test_watchdog}, {"estop", test_estop},
        {"feetech_bus", test_feetech_bus}, {"overheat_overload", test_overheat_overload},
        {"emulator_dynamics", test_emulator_dynamics}, {"pwm", test_pwm}, {"fuzz", test_fuzz},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = failures;
        tests[i].fn();
        printf("%-20s %s\n", tests[i].name, failures == before ? "ok" : "FAILED");
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%d checks, %d failures, %.2f s\n", checks, failures,
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9);
    return failures ? 1 : 0;
}
