/* Feetech STS/SCS serial bus servos (STS3215) over the HAL servo bus.
 * Packet: FF FF ID LEN INSTR PARAMS CHK, LEN = len(params) + 2, CHK = ~(ID + LEN + INSTR + sum(params)).
 * Status: FF FF ID LEN ERR PARAMS CHK. */
#ifndef FW_FEETECH_H
#define FW_FEETECH_H
#include <stdint.h>
#include "../core/actuator.h"

#define FTS_BROADCAST 0xFE
#define FTS_PING 0x01
#define FTS_READ 0x02
#define FTS_WRITE 0x03
#define FTS_SYNC_READ 0x82
#define FTS_SYNC_WRITE 0x83

#define FTS_ADDR_TORQUE_ENABLE 40
#define FTS_ADDR_GOAL_POSITION 42
#define FTS_ADDR_PRESENT_POSITION 56 /* then speed 58, load 60, voltage 62, temperature 63 */
#define FTS_READ_LEN 8

#define FTS_MAX_PACKET 160

typedef struct {
    uint32_t timeout_us; /* how long to wait for the next reply byte */
    uint32_t pings_ok;   /* servos that answered the boot PING */
} feetech_t;

void feetech_actuator(actuator_t *a, feetech_t *f, uint32_t timeout_us);

/* Packet helpers (shared with the emulator and the tests). */
uint8_t fts_checksum(const uint8_t *pkt_from_id, int len_id_to_last_param);
int fts_packet(uint8_t *out, uint8_t id, uint8_t instr, const uint8_t *params, int n_params);
/* Sign-magnitude fields: bit `sign_bit` is the sign, the bits below it the magnitude. */
int32_t fts_from_sm(uint16_t raw, int sign_bit);
uint16_t fts_to_sm(int32_t v, int sign_bit);

#endif
