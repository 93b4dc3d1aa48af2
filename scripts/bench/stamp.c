/* stamp FILE: write CLOCK_MONOTONIC (ns) taken first thing in main to FILE.
 * The child of the start-to-exec benchmark. */
#include "common.h"
int main(int argc, char **argv) {
    int64_t now = mono_ns();
    if (argc < 2) return 2;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld\n", (long long)now);
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return 3;
    if (write(fd, buf, n) != n) return 4;
    close(fd);
    return 0;
}
