/* robot_fw: the firmware core on Linux behind a pseudo-terminal (see firmware/README.md). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/control.h"
#include "../drivers/feetech.h"
#include "../drivers/pwm_servo.h"
#include "../hal/hal.h"
#include "host_hal.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: robot_fw --link PATH [--bus emulator|TTY] [--joints N] [--tick-hz HZ]\n"
            "                [--control-dir DIR] [--emu-drop P] [--emu-corrupt P] [--emu-seed S]\n"
            "                [--bus-timeout-us US] [--backend feetech|pwm]\n");
    exit(2);
}

static double num(const char *s, double lo, double hi, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= lo && v <= hi)) {
        fprintf(stderr, "robot_fw: bad %s '%s' (%g..%g)\n", what, s, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *link = NULL, *bus = "emulator", *control_dir = NULL, *backend = "feetech";
    int joints = 6, tick_hz = FW_DEFAULT_TICK_HZ;
    double drop = 0, corrupt = 0;
    unsigned long long seed = 1;
    uint32_t bus_timeout_us = 3000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--link"))
            link = v;
        else if (!strcmp(a, "--bus"))
            bus = v;
        else if (!strcmp(a, "--joints"))
            joints = (int)num(v, 1, PROTO_MAX_JOINTS, "--joints");
        else if (!strcmp(a, "--tick-hz"))
            tick_hz = (int)num(v, 1, 5000, "--tick-hz");
        else if (!strcmp(a, "--control-dir"))
            control_dir = v;
        else if (!strcmp(a, "--emu-drop"))
            drop = num(v, 0, 1, "--emu-drop");
        else if (!strcmp(a, "--emu-corrupt"))
            corrupt = num(v, 0, 1, "--emu-corrupt");
        else if (!strcmp(a, "--emu-seed"))
            seed = (unsigned long long)num(v, 0, 1e18, "--emu-seed");
        else if (!strcmp(a, "--bus-timeout-us"))
            bus_timeout_us = (uint32_t)num(v, 1, 1e6, "--bus-timeout-us");
        else if (!strcmp(a, "--backend"))
            backend = v;
        else
            usage();
    }
    if (!link || (strcmp(backend, "feetech") && strcmp(backend, "pwm")))
        usage();

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!strcmp(bus, "emulator")) {
        host_bus_use_emulator(joints, seed, (float)drop, (float)corrupt);
    } else if (host_bus_open_tty(bus) != 0) {
        fprintf(stderr, "robot_fw: cannot open bus %s: %s\n", bus, strerror(errno));
        return 1;
    }
    host_set_control_dir(control_dir);

    static feetech_t fts;
    static pwm_servo_t pwm;
    static actuator_t act;
    static control_t ctl;
    if (!strcmp(backend, "pwm"))
        pwm_servo_actuator(&act, &pwm);
    else
        feetech_actuator(&act, &fts, bus_timeout_us);
    control_init(&ctl, &act, joints, (uint32_t)tick_hz);
    if (act.backend == BACKEND_FEETECH)
        fprintf(stderr, "robot_fw: %u of %d servos answered PING\n", (unsigned)fts.pings_ok, joints);

    if (host_link_open(link) != 0) {
        fprintf(stderr, "robot_fw: cannot create the link %s: %s\n", link, strerror(errno));
        return 1;
    }
    printf("robot_fw ready link=%s pty=%s\n", link, host_link_pty());
    fflush(stdout);

    const uint64_t period = 1000000u / (uint64_t)tick_hz;
    uint64_t next = host_now_us() + period;
    while (!stop_requested) {
        uint64_t now = host_now_us();
        if (now >= next) {
            if (host_check_unplug())
                control_link_reset(&ctl);
            control_tick(&ctl);
            next += period;
            if (now > next + 10 * period)
                next = now + period; /* fell far behind (suspended): restart the schedule */
            control_poll_link(&ctl);
            continue;
        }
        uint64_t wait = next - now;
        struct timespec ts = {.tv_sec = (time_t)(wait / 1000000u), .tv_nsec = (long)(wait % 1000000u) * 1000};
        struct pollfd p = {.fd = host_link_fd(), .events = POLLIN};
        int r = ppoll(&p, p.fd >= 0 ? 1 : 0, &ts, NULL);
        if (r > 0 && (p.revents & POLLIN))
            control_poll_link(&ctl);
    }
    control_torque_off(&ctl);
    host_link_close();
    fprintf(stderr, "robot_fw: stopped, torque off\n");
    return 0;
}
