/* How soon after its start a SIGTERM reaches drainit as a namespace init.
 *
 *   early_term DRAINIT TRIALS STEP_US MAX_US
 *
 * For each delay k = 0, STEP_US, ... MAX_US, TRIALS times: a fresh PID
 * namespace, drainit as its PID 1 (`--admin-listen off
 * --propagation-delay 0s -- sleep 5`), SIGTERM from the parent namespace k
 * microseconds after the execve completed (the parent polls
 * /proc/PID/comm until it names drainit, so a child the scheduler has not
 * run yet does not count as drainit's window). The kernel drops a default-disposition
 * signal sent to a namespace init (sig_task_ignored) unless it is blocked,
 * so a SIGTERM that arrives before drainit blocks it is lost: drainit
 * then runs on. A trial counts as lost when drainit has not exited 1.5 s
 * after the signal. Prints one line per k: "k_us lost/trials", then the
 * largest k with a loss ("window_us").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One trial in a child of its own (unshare applies to later children). */
static int trial(const char *drainit, long delay_us) {
    pid_t runner = fork();
    if (runner < 0) return -1;
    if (runner == 0) {
        if (unshare(CLONE_NEWPID) != 0) _exit(3);
        long long start = now_ns();
        pid_t init = fork();
        if (init < 0) _exit(3);
        if (init == 0) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0 && !getenv("EARLY_TERM_STDERR")) dup2(null, 2);
            char *argv[] = {(char *)drainit, "--admin-listen", "off", "--propagation-delay", "0s",
                            "--", "sleep", "5", NULL};
            execv(drainit, argv);
            _exit(127);
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/comm", (int)init);
        for (;;) {
            char comm[32] = {0};
            int fd = open(path, O_RDONLY);
            if (fd >= 0) {
                ssize_t n = read(fd, comm, sizeof comm - 1);
                close(fd);
                if (n > 0 && strncmp(comm, "drainit", 7) == 0) break;
            }
            if (now_ns() - start > 2000000000LL) _exit(3);
        }
        start = now_ns();
        while (now_ns() - start < delay_us * 1000LL) {
        }
        kill(init, SIGTERM);
        long long sent = now_ns();
        for (;;) {
            int status;
            pid_t got = waitpid(init, &status, WNOHANG);
            if (got == init) _exit(0); /* it drained and exited */
            if (now_ns() - sent > 1500000000LL) {
                kill(init, SIGKILL);
                waitpid(init, &status, 0);
                _exit(1); /* the SIGTERM was lost */
            }
            usleep(1000);
        }
    }
    int status;
    if (waitpid(runner, &status, 0) != runner || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: early_term DRAINIT TRIALS STEP_US MAX_US\n");
        return 2;
    }
    const char *drainit = argv[1];
    int trials = atoi(argv[2]);
    long step = atol(argv[3]), max = atol(argv[4]);
    long window = -1;
    for (long k = 0; k <= max; k += step) {
        int lost = 0;
        for (int i = 0; i < trials; i++) {
            int r = trial(drainit, k);
            if (r < 0 || r == 3) {
                fprintf(stderr, "early_term: trial failed (%s)\n", strerror(errno));
                return 1;
            }
            lost += r == 1;
        }
        printf("%ld %d/%d\n", k, lost, trials);
        fflush(stdout);
        if (lost) window = k;
    }
    printf("window_us %ld\n", window);
    return 0;
}
