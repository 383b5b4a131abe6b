/* The HAL on Linux: a pseudo-terminal as the host link, the in-process emulator or a tty as the
 * servo bus, files in a control directory as the e-stop input and the link plug. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../hal/hal.h"
#include "host_hal.h"
#include "../core/protocol_gen.h"

static int link_master = -1, link_slave = -1;
static char link_path[512];
static char link_pty[128];
static bool link_unplugged;

static bool bus_emulated = true;
static int bus_fd = -1;
static feetech_emu_t emu;

static const char *control_dir;
static uint16_t pwm_us[PROTO_MAX_JOINTS];

uint64_t host_now_us(void)
{
    static uint64_t t0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t t = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    if (t0 == 0)
        t0 = t - 1;
    return t - t0;
}

uint32_t hal_time_ms(void) { return (uint32_t)(host_now_us() / 1000u); }
uint32_t hal_time_us(void) { return (uint32_t)host_now_us(); }

static void make_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        tcsetattr(fd, TCSANOW, &t);
    }
}

/* ------------------------------------------------------------------ link */
int host_link_open(const char *path)
{
    if (path != link_path)
        snprintf(link_path, sizeof link_path, "%s", path);
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (m < 0)
        return -1;
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, link_pty, sizeof link_pty) != 0) {
        close(m);
        return -1;
    }
    /* Our own slave fd stays open, so the master never sees a hang-up when the host closes its side. */
    int s = open(link_pty, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (s < 0) {
        close(m);
        return -1;
    }
    make_raw(s);
    unlink(path);
    if (symlink(link_pty, path) != 0) {
        close(s);
        close(m);
        return -1;
    }
    link_master = m;
    link_slave = s;
    return 0;
}

void host_link_close(void)
{
    if (link_master >= 0)
        close(link_master);
    if (link_slave >= 0)
        close(link_slave);
    link_master = link_slave = -1;
    if (link_path[0])
        unlink(link_path);
}

int host_link_fd(void) { return link_master; }
const char *host_link_pty(void) { return link_pty; }

int hal_link_read(uint8_t *buf, int max)
{
    if (link_master < 0)
        return 0;
    ssize_t n = read(link_master, buf, (size_t)max);
    return n > 0 ? (int)n : 0;
}

void hal_link_write(const uint8_t *buf, int len)
{
    if (link_master < 0)
        return;
    while (len > 0) {
        ssize_t n = write(link_master, buf, (size_t)len);
        if (n <= 0)
            return; /* full (the host is not reading) or gone: the frame is lost */
        buf += n;
        len -= (int)n;
    }
}

/* ------------------------------------------------------------------ control directory */
void host_set_control_dir(const char *dir) { control_dir = dir; }

static bool control_file(const char *name)
{
    if (!control_dir)
        return false;
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", control_dir, name);
    return stat(p, &st) == 0;
}

bool hal_estop_pressed(void) { return control_file("estop"); }

bool host_check_unplug(void)
{
    bool unplug = control_file("unplug");
    if (unplug && !link_unplugged) {
        host_link_close();
        link_unplugged = true;
        fprintf(stderr, "robot_fw: link unplugged (%s removed)\n", link_path);
    } else if (!unplug && link_unplugged) {
        if (host_link_open(link_path) == 0) {
            link_unplugged = false;
            fprintf(stderr, "robot_fw: link replugged link=%s pty=%s\n", link_path, link_pty);
            return true;
        }
        fprintf(stderr, "robot_fw: replug failed: %s\n", strerror(errno));
    }
    return false;
}

/* ------------------------------------------------------------------ servo bus */
void host_bus_use_emulator(int n, uint64_t seed, float drop_p, float corrupt_p)
{
    bus_emulated = true;
    emu_init(&emu, n, 1, seed);
    emu.drop_p = drop_p;
    emu.corrupt_p = corrupt_p;
}

feetech_emu_t *host_emulator(void) { return &emu; }

int host_bus_open_tty(const char *path)
{
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
#ifdef B1000000
        cfsetispeed(&t, B1000000);
        cfsetospeed(&t, B1000000);
#endif
        tcsetattr(fd, TCSANOW, &t);
    }
    bus_fd = fd;
    bus_emulated = false;
    return 0;
}

void hal_bus_write(const uint8_t *buf, int len)
{
    if (bus_emulated) {
        emu_rx(&emu, buf, len, hal_time_us());
        return;
    }
    uint8_t junk[256];
    while (read(bus_fd, junk, sizeof junk) > 0) {
        /* discard late replies */
    }
    while (len > 0) {
        ssize_t n = write(bus_fd, buf, (size_t)len);
        if (n > 0) {
            buf += n;
            len -= (int)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = bus_fd, .events = POLLOUT};
            if (poll(&p, 1, 5) <= 0)
                return;
        } else {
            return;
        }
    }
}

int hal_bus_read(uint8_t *buf, int max, uint32_t timeout_us)
{
    if (bus_emulated) {
        emu_step(&emu, hal_time_us());
        return emu_tx(&emu, buf, max);
    }
    struct pollfd p = {.fd = bus_fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = timeout_us / 1000000u, .tv_nsec = (long)(timeout_us % 1000000u) * 1000};
    if (ppoll(&p, 1, &ts, NULL) <= 0)
        return 0;
    ssize_t n = read(bus_fd, buf, (size_t)max);
    return n > 0 ? (int)n : 0;
}

/* ------------------------------------------------------------------ PWM (recorded only) */
int hal_pwm_channels(void) { return PROTO_MAX_JOINTS; }

void hal_pwm_write_us(int channel, uint16_t pulse_us)
{
    if (channel >= 0 && channel < PROTO_MAX_JOINTS)
        pwm_us[channel] = pulse_us;
}
