#include <string.h>
#include "test_hal.h"
#include "../core/cobs.h"
#include "../core/crc16.h"
#include "../hal/hal.h"

uint64_t t_now_us;
bool t_estop;
feetech_emu_t t_emu;
uint16_t t_pwm[PROTO_MAX_JOINTS];
uint32_t t_bus_writes;
static uint8_t out_buf[1 << 16];
static int out_len;

uint32_t hal_time_ms(void) { return (uint32_t)(t_now_us / 1000u); }
uint32_t hal_time_us(void) { return (uint32_t)t_now_us; }
int hal_link_read(uint8_t *buf, int max)
{
    (void)buf;
    (void)max;
    return 0;
}

void hal_link_write(const uint8_t *buf, int len)
{
    if (out_len + len <= (int)sizeof out_buf) {
        memcpy(out_buf + out_len, buf, (size_t)len);
        out_len += len;
    }
}

void hal_bus_write(const uint8_t *buf, int len)
{
    t_bus_writes++;
    emu_rx(&t_emu, buf, len, (uint32_t)t_now_us);
}

int hal_bus_read(uint8_t *buf, int max, uint32_t timeout_us)
{
    (void)timeout_us;
    return emu_tx(&t_emu, buf, max);
}

bool hal_estop_pressed(void) { return t_estop; }
int hal_pwm_channels(void) { return PROTO_MAX_JOINTS; }
void hal_pwm_write_us(int ch, uint16_t us)
{
    if (ch >= 0 && ch < PROTO_MAX_JOINTS)
        t_pwm[ch] = us;
}

void t_out_clear(void) { out_len = 0; }

int t_take_frames(t_frame *out, int max)
{
    int n = 0, start = 0;
    for (int i = 0; i < out_len; i++) {
        if (out_buf[i] != 0)
            continue;
        uint8_t body[PROTO_MAX_FRAME];
        int m = cobs_decode(out_buf + start, (size_t)(i - start), body, sizeof body);
        start = i + 1;
        if (m < 4 || crc16(body, (size_t)m - 2) != (uint16_t)(body[m - 2] | (body[m - 1] << 8))) {
            out_len = 0;
            return -1;
        }
        if (n < max) {
            out[n].id = body[0];
            out[n].seq = body[1];
            out[n].len = m - 4;
            memcpy(out[n].payload, body + 2, (size_t)m - 4);
        }
        n++;
    }
    out_len = 0;
    return n < max ? n : max;
}
