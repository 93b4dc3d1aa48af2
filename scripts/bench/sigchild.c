/* sigchild FIFO: the child of the signal-forwarding benchmark.
 * Installs a SIGUSR1 handler that writes the CLOCK_MONOTONIC time (ns) of
 * its run to FIFO, announces itself by writing -pid, then pauses.
 * Ends itself after 300 s whatever happens (alarm). */
#include "common.h"
static int fd = -1;
static void on_usr1(int sig) {
    (void)sig;
    int64_t now = mono_ns();
    ssize_t r = write(fd, &now, sizeof now);
    (void)r;
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    alarm(300);
    fd = open(argv[1], O_WRONLY);
    if (fd < 0) die("open fifo");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    int64_t hello = -(int64_t)getpid();
    if (write(fd, &hello, sizeof hello) != sizeof hello) die("write hello");
    for (;;) pause();
}
