/* orphaner COUNT RESULTFILE [TIMEOUT_S]
 * The main child of the orphan-reaping benchmark, run as the child of an
 * init that is PID 1 of a fresh PID namespace with its own /proc
 * (unshare --pid --fork --mount-proc INIT orphaner ...).
 *
 * It forks a spawner, which forks COUNT grandchildren that block reading a
 * pipe whose only writer is the spawner. On "go" the spawner takes
 * CLOCK_MONOTONIC (t0) and exits: at that moment all COUNT grandchildren
 * become orphans of PID 1 and, seeing EOF, exit at once. The orphaner
 * reaps the spawner itself, then polls the namespace's /proc every 0.5 ms
 * until no process is left but PID 1 and itself -- a zombie keeps its
 * /proc entry until it is reaped, so that is the moment the last orphan
 * was reaped -- and writes "count t0_ns t_end_ns reap_ns polls init_cpu_ns"
 * to RESULTFILE, the last being the CPU time PID 1 used meanwhile (from
 * /proc/1/task/x/schedstat, all its threads). Ends itself (alarm) after TIMEOUT_S, default 120. */
#include "common.h"
#include <dirent.h>

/* Processes other than PID 1 and me in this namespace's /proc, counted only
 * up to 1: a poll is one getdents while many are left, cheap enough not to
 * steal the init's CPU. (/proc/1/task/x/children would be exact too, but
 * reading it is quadratic in the number of children.) -1 on error. */
static long others_left(void) {
    DIR *d = opendir("/proc");
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while (n < 3 && (e = readdir(d)) != NULL)
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9') n++;
    closedir(d);
    return n - 2;
}

/* on-CPU time of all of PID 1's threads, ns (schedstat's first field) */
static long long init_cpu_ns(void) {
    DIR *d = opendir("/proc/1/task");
    if (!d) return -1;
    long long sum = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/1/task/%s/schedstat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        long long ns = 0;
        if (fscanf(f, "%lld", &ns) == 1) sum += ns;
        fclose(f);
    }
    closedir(d);
    return sum;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: orphaner COUNT RESULTFILE [TIMEOUT_S]\n"); return 2; }
    int count = atoi(argv[1]);
    const char *result = argv[2];
    int timeout_s = argc > 3 ? atoi(argv[3]) : 120;
    alarm((unsigned)timeout_s);
    if (getpid() == 1 || getppid() != 1) {
        fprintf(stderr, "orphaner: must be the child of PID 1 in its own PID namespace\n");
        return 2;
    }
    int ready[2], go[2], t0p[2];
    if (pipe(ready) || pipe(go) || pipe(t0p)) die("pipe");
    pid_t sp = fork();
    if (sp < 0) die("fork spawner");
    if (sp == 0) {
        alarm((unsigned)timeout_s);
        close(ready[0]); close(go[1]); close(t0p[0]);
        int rel[2];
        if (pipe(rel)) die("pipe rel");
        int made = 0;
        for (int i = 0; i < count; i++) {
            pid_t g = fork();
            if (g < 0) break;
            if (g == 0) {
                close(rel[1]); close(ready[1]); close(go[0]); close(t0p[1]);
                char c;
                while (read(rel[0], &c, 1) < 0 && errno == EINTR) {}
                _exit(0);
            }
            made++;
        }
        close(rel[0]);
        if (write(ready[1], &made, sizeof made) != sizeof made) _exit(1);
        char c;
        if (read(go[0], &c, 1) != 1) _exit(1);
        int64_t t0 = mono_ns();
        if (write(t0p[1], &t0, sizeof t0) != sizeof t0) _exit(1);
        _exit(0); /* closes rel[1]: every grandchild reads EOF and exits */
    }
    close(ready[1]); close(go[0]); close(t0p[1]);
    int made = 0;
    if (read(ready[0], &made, sizeof made) != sizeof made) die("read ready");
    long long cpu0 = init_cpu_ns();
    if (write(go[1], "g", 1) != 1) die("write go");
    int64_t t0 = 0;
    if (read(t0p[0], &t0, sizeof t0) != sizeof t0) die("read t0");
    int st;
    waitpid(sp, &st, 0); /* the spawner is gone: its children belong to PID 1 */
    long polls = 0, left;
    int64_t t_end;
    for (;;) {
        left = others_left();
        polls++;
        t_end = mono_ns();
        if (left == 0) break;
        if (left < 0) { fprintf(stderr, "orphaner: cannot read /proc\n"); return 4; }
        struct timespec ts = { 0, 500000 };
        nanosleep(&ts, NULL);
    }
    long long cpu1 = init_cpu_ns();
    FILE *f = fopen(result, "w");
    if (!f) die("open result");
    fprintf(f, "%d %lld %lld %lld %ld %lld\n", made, (long long)t0, (long long)t_end,
            (long long)(t_end - t0), polls, cpu0 < 0 || cpu1 < 0 ? -1LL : cpu1 - cpu0);
    fclose(f);
    return 0;
}
