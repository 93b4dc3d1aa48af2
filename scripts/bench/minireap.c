/* minireap PROG [ARGS...]: the reference reaper of the orphan benchmark.
 * Starts PROG, then does nothing but a blocking wait() loop until PROG
 * exits, and exits with its status. No signal forwarding: it only shows the
 * floor that the kernel and the machine set for reaping. */
#include "common.h"
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    pid_t main_child = fork();
    if (main_child < 0) die("fork");
    if (main_child == 0) {
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    for (;;) {
        int st;
        pid_t r = wait(&st);
        if (r == main_child) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 && errno == ECHILD) return 1;
    }
}
