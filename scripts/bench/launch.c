/* launch STAMPFILE TIMEOUT_MS PROG [ARGS...]
 * Takes CLOCK_MONOTONIC, posix_spawns PROG (an init whose child is `stamp
 * STAMPFILE`, or `stamp` itself for the baseline), waits for it (bounded),
 * and prints the start-to-exec latency in ns: stamp's time minus the time
 * taken just before the spawn. */
#include "common.h"
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: launch STAMPFILE TIMEOUT_MS PROG...\n"); return 2; }
    const char *stampfile = argv[1];
    int timeout_ms = atoi(argv[2]);
    unlink(stampfile);
    int64_t t0 = mono_ns();
    pid_t pid = spawn_quiet(argv + 3);
    int st = wait_bounded(pid, timeout_ms);
    if (st == -1) { fprintf(stderr, "launch: %s timed out\n", argv[3]); return 5; }
    FILE *f = fopen(stampfile, "r");
    long long t1 = 0;
    if (!f || fscanf(f, "%lld", &t1) != 1) {
        fprintf(stderr, "launch: child of %s left no stamp (status %d)\n", argv[3], st);
        return 6;
    }
    fclose(f);
    printf("%lld\n", t1 - (long long)t0);
    return 0;
}
