#include "link.h"
#include "cobs.h"
#include "crc16.h"
#include "../hal/hal.h"

void link_init(link_t *l, uint32_t *counters)
{
    l->counters = counters;
    l->tx_seq = 0;
    link_reset(l);
}

void link_reset(link_t *l)
{
    l->rx_len = 0;
    l->overflow = false;
    l->overflow_len = 0;
    l->have_seq = false;
    l->last_seq = 0;
}

static void frame_done(link_t *l, link_frame_cb cb, void *user)
{
    uint8_t body[PROTO_MAX_FRAME];
    int n = cobs_decode(l->rx, l->rx_len, body, sizeof body);
    if (n < 4) {
        l->counters[CNT_BAD_FRAME]++;
        return;
    }
    uint16_t crc = (uint16_t)(body[n - 2] | (body[n - 1] << 8));
    if (crc16(body, (size_t)(n - 2)) != crc) {
        l->counters[CNT_BAD_CRC]++;
        return;
    }
    uint8_t msg_id = body[0], seq = body[1];
    l->counters[CNT_RX_FRAMES]++;
    /* HELLO starts a host session: its seq is not compared with the previous one. */
    if (l->have_seq && msg_id != MSG_HELLO) {
        uint8_t missing = (uint8_t)(seq - l->last_seq - 1u);
        if (missing >= 128)
            l->counters[CNT_SEQ_GAPS] += 1; /* repeated or reordered frame */
        else
            l->counters[CNT_SEQ_GAPS] += missing;
    }
    l->have_seq = true;
    l->last_seq = seq;
    cb(user, msg_id, seq, body + 2, n - 4);
}

void link_feed(link_t *l, const uint8_t *data, int n, link_frame_cb cb, void *user)
{
    for (int i = 0; i < n; i++) {
        uint8_t b = data[i];
        if (b == 0) {
            if (l->overflow) {
                l->counters[CNT_BAD_FRAME]++;
                l->counters[CNT_DROPPED] += l->overflow_len;
            } else if (l->rx_len > 0) {
                frame_done(l, cb, user);
            }
            l->rx_len = 0;
            l->overflow = false;
            l->overflow_len = 0;
        } else if (l->overflow) {
            l->overflow_len++;
        } else if (l->rx_len >= sizeof l->rx) {
            l->overflow = true;
            l->overflow_len = (uint32_t)l->rx_len + 1u;
        } else {
            l->rx[l->rx_len++] = b;
        }
    }
}

void link_send(link_t *l, uint8_t msg_id, const uint8_t *payload, int len)
{
    uint8_t body[PROTO_MAX_FRAME];
    uint8_t out[PROTO_MAX_ENCODED];
    if (len < 0 || len > PROTO_MAX_PAYLOAD)
        return;
    body[0] = msg_id;
    body[1] = l->tx_seq++;
    for (int i = 0; i < len; i++)
        body[2 + i] = payload[i];
    uint16_t crc = crc16(body, (size_t)len + 2u);
    body[len + 2] = (uint8_t)crc;
    body[len + 3] = (uint8_t)(crc >> 8);
    size_t m = cobs_encode(body, (size_t)len + 4u, out, sizeof out - 1);
    if (m == 0)
        return;
    out[m++] = 0;
    hal_link_write(out, (int)m);
}
