/* Shared helpers for the drainit benchmark programs (scripts/bench.sh).
 * Compiled at run time with gcc; Linux only. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static inline int64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((unused)) static void die(const char *what) {
    fprintf(stderr, "bench helper: %s: %s\n", what, strerror(errno));
    exit(3);
}

/* posix_spawn argv with stdout sent to /dev/null (stderr inherited). */
__attribute__((unused)) static pid_t spawn_quiet(char **argv) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) { errno = rc; die("posix_spawn"); }
    return pid;
}

/* Wait for pid to exit, at most timeout_ms; SIGKILL it after that.
 * Returns the wait status, or -1 when it had to be killed. */
__attribute__((unused)) static int wait_bounded(pid_t pid, int timeout_ms) {
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int status = 0;
    if (pfd >= 0) {
        struct pollfd p = { .fd = pfd, .events = POLLIN };
        int r;
        do { r = poll(&p, 1, timeout_ms); } while (r < 0 && errno == EINTR);
        close(pfd);
        if (r == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        waitpid(pid, &status, 0);
        return status;
    }
    /* no pidfd: poll waitpid */
    int64_t deadline = mono_ns() + (int64_t)timeout_ms * 1000000LL;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (mono_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}
