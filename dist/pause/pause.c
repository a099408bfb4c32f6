/*
 * pause: the first process of every Pod sandbox (the kubelet's "pause" image). It holds the Pod's
 * namespaces open, reaps the orphans that are re-parented to it, and exits 0 on SIGINT or SIGTERM.
 *
 * Built static by `cargo xtask images` (gcc -static), so its image holds this one file and nothing else.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "unknown"
#endif

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static void on(int sig, void (*handler)(int), int flags) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    if (sigaction(sig, &action, NULL) != 0) {
        perror("pause: sigaction");
        _exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("pause (govpaas) %s\n", VERSION);
        return 0;
    }
    if (getpid() != 1) {
        /* As Kubernetes' own pause: harmless, but orphans of the Pod are then reaped elsewhere. */
        fputs("pause: warning: not running as PID 1\n", stderr);
    }
    on(SIGINT, stop, 0);
    on(SIGTERM, stop, 0);
    on(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART);
    for (;;) {
        pause();
    }
}
