/*
 * The app of the emulated PID-1 tests (tests/platforms.rs): built static
 * for each architecture with Debian's cross gcc (the compiler that links
 * drainit there too), run under qemu's user-mode emulation behind the
 * drainit of the same architecture. C, not Rust: a Rust app would need
 * its own standard library per target, which is minutes; this is a
 * fraction of a second.
 *
 *   emulated_app exit N         exits with status N at once
 *   emulated_app record FILE    appends "ready PID" to FILE, then one line
 *                               "signal SIGNUM MONOTONIC_NS" per signal it
 *                               catches (HUP, INT, QUIT, USR1, USR2, TERM);
 *                               on TERM or QUIT it exits with status 0
 *   emulated_app orphan FILE    forks a child that forks a grandchild and
 *                               exits; the grandchild, orphaned to PID 1,
 *                               appends "orphan PID" to FILE and exits;
 *                               then the app waits for signals as `record`
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int record_fd = -1;

/* Only async-signal-safe calls: clock_gettime, write, _exit. */
static void put_line(const char *what, long long a, long long b, int with_b)
{
    char line[96];
    char digits[24];
    size_t n = 0;
    for (const char *p = what; *p && n < 40; p++)
        line[n++] = *p;
    long long values[2] = {a, b};
    for (int i = 0; i < (with_b ? 2 : 1); i++) {
        long long v = values[i];
        size_t d = 0;
        line[n++] = ' ';
        do {
            digits[d++] = (char)('0' + v % 10);
            v /= 10;
        } while (v > 0 && d < sizeof digits);
        while (d > 0)
            line[n++] = digits[--d];
    }
    line[n++] = '\n';
    if (write(record_fd, line, n) < 0)
        _exit(3);
}

static void on_signal(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    put_line("signal", sig, (long long)now.tv_sec * 1000000000LL + now.tv_nsec, 1);
    if (sig == SIGTERM || sig == SIGQUIT)
        _exit(0);
}

static void open_record(const char *path)
{
    record_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (record_fd < 0) {
        perror("emulated_app: open");
        exit(2);
    }
}

static void make_orphan(void)
{
    pid_t child = fork();
    if (child < 0) {
        perror("emulated_app: fork");
        exit(2);
    }
    if (child == 0) {
        pid_t grandchild = fork();
        if (grandchild == 0) {
            /* Wait (bounded) until the child is gone and init adopted us. */
            for (int i = 0; i < 2000 && getppid() != 1; i++)
                usleep(5000);
            put_line("orphan", getpid(), 0, 0);
            _exit(0);
        }
        _exit(0);
    }
    waitpid(child, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "exit") == 0)
        return atoi(argv[2]);
    if (argc != 3 || (strcmp(argv[1], "record") != 0 && strcmp(argv[1], "orphan") != 0)) {
        fprintf(stderr, "usage: emulated_app exit N | record FILE | orphan FILE\n");
        return 2;
    }
    open_record(argv[2]);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    int caught[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM};
    for (size_t i = 0; i < sizeof caught / sizeof caught[0]; i++)
        sigaction(caught[i], &action, NULL);
    if (strcmp(argv[1], "orphan") == 0)
        make_orphan();
    put_line("ready", getpid(), 0, 0);
    for (;;)
        pause();
}
