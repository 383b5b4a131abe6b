/* Linux HAL set-up (host build): the pty host link, the servo bus, the control directory. */
#ifndef FW_HOST_HAL_H
#define FW_HOST_HAL_H
#include <stdbool.h>
#include <stdint.h>
#include "feetech_emu.h"

uint64_t host_now_us(void);
/* Creates the pty and the symlink `path` to its slave; returns 0 or -1 (errno). */
int host_link_open(const char *path);
void host_link_close(void);
int host_link_fd(void); /* the pty master, -1 while unplugged */
const char *host_link_pty(void);
/* The emulated bus (n servos, ids 1..n) or a tty; returns 0 or -1. */
void host_bus_use_emulator(int n, uint64_t seed, float drop_p, float corrupt_p);
int host_bus_open_tty(const char *path);
feetech_emu_t *host_emulator(void);
/* The control directory (estop / unplug files); NULL: none. */
void host_set_control_dir(const char *dir);
/* Checks DIR/unplug: closes or recreates the link. Returns true when the link was (re)connected. */
bool host_check_unplug(void);

#endif
