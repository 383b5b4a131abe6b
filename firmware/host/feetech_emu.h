/* An in-process emulator of a Feetech STS servo bus: parses the bytes the driver sends (PING, READ,
 * WRITE, SYNC_READ, SYNC_WRITE) and answers them. Each servo has a register table; first-order
 * position dynamics toward the goal (time constant tau, speed limit), load from the tracking error,
 * temperature rising with load and cooling toward ambient, and seeded fault injection. */
#ifndef FW_FEETECH_EMU_H
#define FW_FEETECH_EMU_H
#include <stdbool.h>
#include <stdint.h>

#define EMU_MAX_SERVOS 16

typedef struct {
    uint8_t id;
    uint8_t mem[256];  /* register table (torque enable 40, goal 42, present 56..63, status 65) */
    float pos;         /* ticks */
    float vel;         /* ticks/s */
    float load;        /* per mille */
    float temp;        /* C */
    float overload_s;  /* time spent at full load */
    bool dead;         /* never answers (and does not move) */
    float extra_heat;  /* C/s added to the heating (an overheating servo) */
    uint8_t err_inject; /* OR'd into the status error byte */
    uint32_t goal_changes; /* how often the goal register changed */
} emu_servo_t;

typedef struct {
    emu_servo_t s[EMU_MAX_SERVOS];
    int n;
    float drop_p, corrupt_p; /* per reply */
    uint64_t rng;
    float tau_s, max_speed, ambient_c, heat_c_per_s, cool_tau_s, load_per_tick;
    uint8_t in[512];
    int in_len;
    uint8_t out[2048];
    int out_len, out_pos;
    uint32_t last_us;
    bool started;
    uint32_t packets, bad_packets, replies, dropped, corrupted;
} feetech_emu_t;

/* n servos with ids first_id.., near the middle position (a seeded offset each). */
void emu_init(feetech_emu_t *e, int n, uint8_t first_id, uint64_t seed);
/* Advances the dynamics to now_us. */
void emu_step(feetech_emu_t *e, uint32_t now_us);
/* Bytes sent by the driver (any pending reply bytes are discarded, as a half-duplex bus would). */
void emu_rx(feetech_emu_t *e, const uint8_t *buf, int len, uint32_t now_us);
/* Reply bytes toward the driver; returns the count (0: none). */
int emu_tx(feetech_emu_t *e, uint8_t *buf, int max);
emu_servo_t *emu_servo(feetech_emu_t *e, uint8_t id);
/* The goal register (ticks, signed) and the torque flag of a servo. */
int32_t emu_goal(const emu_servo_t *s);
bool emu_torque(const emu_servo_t *s);

#endif
