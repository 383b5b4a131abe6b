/* The HAL for the C unit tests: a fake clock, the in-process bus emulator, captured link output. */
#ifndef FW_TEST_HAL_H
#define FW_TEST_HAL_H
#include <stdbool.h>
#include <stdint.h>
#include "../core/protocol_gen.h"
#include "../host/feetech_emu.h"

extern uint64_t t_now_us;
extern bool t_estop;
extern feetech_emu_t t_emu;
extern uint16_t t_pwm[PROTO_MAX_JOINTS];
extern uint32_t t_bus_writes;

typedef struct {
    uint8_t id, seq;
    uint8_t payload[PROTO_MAX_PAYLOAD];
    int len;
} t_frame;

/* Clears the captured link output. */
void t_out_clear(void);
/* Decodes the captured link output into frames (clearing it); returns the count (-1: a bad frame). */
int t_take_frames(t_frame *out, int max);

#endif
