/* Host link framing: COBS frames delimited by 0x00; decoded body = msg_id, seq, payload, CRC-16 LE. */
#ifndef FW_LINK_H
#define FW_LINK_H
#include <stdbool.h>
#include <stdint.h>
#include "protocol_gen.h"

/* Counter indices (the COUNTERS message layout: 11 x u32). */
enum {
    CNT_RX_FRAMES = COUNTERS_OFF_RX_FRAMES / 4,
    CNT_BAD_CRC = COUNTERS_OFF_BAD_CRC / 4,
    CNT_BAD_FRAME = COUNTERS_OFF_BAD_FRAME / 4,
    CNT_SEQ_GAPS = COUNTERS_OFF_SEQ_GAPS / 4,
    CNT_DROPPED = COUNTERS_OFF_DROPPED / 4,
    CNT_BUS_ERRORS = COUNTERS_OFF_BUS_ERRORS / 4,
    CNT_REJECTED = COUNTERS_OFF_REJECTED_COMMANDS / 4,
    CNT_CLAMPED = COUNTERS_OFF_CLAMPED_TARGETS / 4,
    CNT_WATCHDOG = COUNTERS_OFF_WATCHDOG_TRIPS / 4,
    CNT_ESTOPS = COUNTERS_OFF_ESTOPS / 4,
    CNT_TICKS = COUNTERS_OFF_TICKS / 4,
};

typedef void (*link_frame_cb)(void *user, uint8_t msg_id, uint8_t seq, const uint8_t *payload, int len);

typedef struct {
    uint8_t rx[PROTO_MAX_ENCODED]; /* encoded bytes of the frame being received */
    uint16_t rx_len;
    bool overflow;          /* the frame being received outgrew rx: discard it up to the next 0x00 */
    uint32_t overflow_len;  /* its length so far */
    bool have_seq;          /* a host frame has been seen since boot/reconnect */
    uint8_t last_seq;
    uint8_t tx_seq;         /* the firmware's own frame numbering */
    uint32_t *counters;     /* COUNTERS_N counters, shared with the control core */
} link_t;

void link_init(link_t *l, uint32_t *counters);
/* Forget a partial frame and the host's sequence (link reconnected). */
void link_reset(link_t *l);
/* Feeds received bytes; calls cb for each valid frame (CRC checked) as soon as its delimiter arrives. */
void link_feed(link_t *l, const uint8_t *data, int n, link_frame_cb cb, void *user);
/* Encodes and writes one frame through hal_link_write (payload len <= PROTO_MAX_PAYLOAD). */
void link_send(link_t *l, uint8_t msg_id, const uint8_t *payload, int len);

#endif
