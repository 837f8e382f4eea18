/* rmap_signals.c - see include/rmap_signals.h. */
#include "rmap_signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static const int fatal_signals[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGQUIT };
#define NFATAL (int)(sizeof fatal_signals / sizeof fatal_signals[0])
static struct sigaction previous[NFATAL];

static void die_after_previous(int sig, siginfo_t *info, void *ctx)
{
    for (int i = 0; i < NFATAL; i++) {
        if (fatal_signals[i] != sig)
            continue;
        const struct sigaction *old = &previous[i];
        if (old->sa_flags & SA_SIGINFO) {
            if (old->sa_sigaction)
                old->sa_sigaction(sig, info, ctx);
        } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN && old->sa_handler) {
            old->sa_handler(sig);
        }
        break;
    }
    /* Whatever the previous handler did, end with the signal's default action.
     * The signal is blocked while its handler runs: unblock it so that the
     * raise takes effect here, not after a return into the interrupted code. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig); /* not reached: the default action of each is to terminate */
}

int rmap_die_on_fatal_signals(void)
{
    int wrapped = 0;
    /* A parent may have started us with them blocked (posix_spawn from a
     * libdispatch worker thread inherits its mask): then kill -ABRT would
     * stay pending for ever. Unblock them here, before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < NFATAL; i++)
        sigaddset(&set, fatal_signals[i]);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    for (int i = 0; i < NFATAL; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = die_after_previous;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(fatal_signals[i], &sa, &previous[i]) == 0)
            wrapped++;
    }
    return wrapped;
}
