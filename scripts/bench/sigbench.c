/* sigbench FIFO COUNT TIMEOUT_MS PROG [ARGS...]
 * Spawns PROG (an init whose child is `sigchild FIFO`, or sigchild itself
 * for the baseline), waits for the child's hello, then COUNT times: takes
 * CLOCK_MONOTONIC, sends SIGUSR1 to PROG's pid, and waits (bounded) for
 * the handler's timestamp on FIFO before the next signal, so signals never
 * coalesce. Prints one latency (ns) per line. Then SIGTERM to PROG and a
 * bounded wait; SIGKILL to both if they linger. */
#include "common.h"

static int read_ts(int fd, int timeout_ms, int64_t *out) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int64_t deadline = mono_ns() + (int64_t)timeout_ms * 1000000LL;
    size_t got = 0;
    char *dst = (char *)out;
    while (got < sizeof *out) {
        int left = (int)((deadline - mono_ns()) / 1000000LL);
        if (left < 0) return -1;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        ssize_t n = read(fd, dst + got, sizeof *out - got);
        if (n > 0) got += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            /* writer not there yet (POLLHUP before open) or gone */
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: sigbench FIFO COUNT TIMEOUT_MS PROG...\n"); return 2; }
    const char *fifo = argv[1];
    int count = atoi(argv[2]);
    int timeout_ms = atoi(argv[3]);
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) die("mkfifo");
    int fd = open(fifo, O_RDONLY | O_NONBLOCK);
    if (fd < 0) die("open fifo");
    pid_t pid = spawn_quiet(argv + 4);
    int64_t hello = 0;
    int rc = 0;
    if (read_ts(fd, 10000, &hello) != 0 || hello >= 0) {
        fprintf(stderr, "sigbench: no hello from the child of %s\n", argv[4]);
        rc = 5;
        goto out;
    }
    pid_t child = (pid_t)(-hello);
    int64_t *lat = calloc((size_t)count, sizeof *lat);
    for (int i = 0; i < count; i++) {
        int64_t t_send = mono_ns();
        if (kill(pid, SIGUSR1) != 0) die("kill");
        int64_t t_run;
        if (read_ts(fd, timeout_ms, &t_run) != 0) {
            fprintf(stderr, "sigbench: signal %d not seen by the child within %d ms\n", i, timeout_ms);
            rc = 6;
            break;
        }
        lat[i] = t_run - t_send;
    }
    if (rc == 0)
        for (int i = 0; i < count; i++) printf("%lld\n", (long long)lat[i]);
    fflush(stdout);
    if (child != pid) {
        /* init case: a normal stop, bounded; then make sure the child is gone */
        kill(pid, SIGTERM);
        if (wait_bounded(pid, 5000) == -1) fprintf(stderr, "sigbench: %s needed SIGKILL\n", argv[4]);
        kill(child, SIGKILL);
        return rc;
    }
out:
    kill(pid, SIGKILL);
    wait_bounded(pid, 5000);
    unlink(fifo);
    return rc;
}
