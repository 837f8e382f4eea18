/*
 * guard.c - the watchdog: what the oracle changes on the machine comes back
 * however the oracle ends, SIGKILL included.
 *
 * The first time the oracle is about to change something that outlives it
 * (a lock it must hold while it runs, a machine setting, its temporary
 * folder), it forks a watchdog and from then on tells it first:
 *
 *   guard_lock(PATH)           the watchdog takes an exclusive flock on PATH
 *                              and holds it until everything is back;
 *   guard_save(PATH, VALUE)    the watchdog records (PATH, VALUE): VALUE is
 *                              written back to PATH at the end (entries in
 *                              the reverse order of their saving, so the
 *                              first value saved for a path is the last
 *                              written);
 *   guard_mkdtemp(TEMPLATE)    the watchdog creates the temporary folder
 *                              and removes it, with its files, at the end;
 *   guard_mkcgroup(PATH)       the watchdog creates the cgroup PATH and
 *                              removes it (rmdir, waiting up to 2 s for
 *                              its processes to be gone) first at the end.
 *
 * Each request is answered before the oracle goes on, so nothing is changed
 * that the watchdog does not know how to undo.  At the end (guard_finish(),
 * from cleanup()) the watchdog writes the values back, removes the folders,
 * releases the locks, answers and exits; the oracle waits for that answer,
 * so when it exits the machine is as it was.  When the oracle dies instead,
 * its end of the socket closes (and PR_SET_PDEATHSIG sends the watchdog
 * SIGUSR1): the watchdog does the same at once and exits.
 *
 * The watchdog ignores the signals a terminal or a supervisor sends (INT,
 * TERM, HUP, QUIT) and leaves the oracle's process group, so a signal that
 * kills the oracle, or its whole group, does not kill it; it keeps no file
 * of the oracle open but stderr (its messages).  The oracle keeps a copy of
 * the list too: if the watchdog itself is gone, guard_finish() restores
 * from it and reports the failure.
 *
 * The list is small and generic, for KSM's knobs (ksm.c) and THP's,
 * khugepaged's and hugetlb's (large.c): a caller reads the current value,
 * saves the value to write back (which may differ from what the file
 * shows, e.g. THP's "always [madvise] never" is written back as
 * "madvise"), then changes it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oracle.h"

#define GUARD_MAX 64          /* entries of each kind: far more than any trace needs */
#define GUARD_STR 256

struct guard_msg { char op; char path[GUARD_STR]; char value[GUARD_STR]; };
struct guard_reply { int result; int err; char path[GUARD_STR]; };

struct guard_list {
    char saved_path[GUARD_MAX][GUARD_STR], saved_value[GUARD_MAX][GUARD_STR];
    int nsaved;
    char dirs[GUARD_MAX][GUARD_STR];
    int ndirs;
    char cgroups[GUARD_MAX][GUARD_STR];
    int ncgroups;
    int locks[GUARD_MAX];
    int nlocks;
};

static int guard_fd = -1;     /* the oracle's end of the socket; -1 before the watchdog */
static int guard_lost;        /* the watchdog is gone: the oracle restores from its copy */
static struct guard_list mine; /* the oracle's copy (saved values and folders) */
int guard_failed;

/* ------------------------------------------------------------------ */
/* Restoring (the watchdog, or the oracle when the watchdog is gone)    */


static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
        fprintf(stderr, "rmap-oracle: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

/* Removes the cgroups (an empty cgroup only: its processes exit first, so
 * EBUSY is waited out for up to 2 s), writes every saved value back (last
 * saved first; a controller enabled for them is disabled after they are
 * gone), removes the folders, releases the locks; the number of cgroups
 * and values that could not be put back. */
static int restore_all(struct guard_list *g)
{
    int failed = 0;
    for (int i = g->ncgroups - 1; i >= 0; i--) {
        int tries = 0;
        while (rmdir(g->cgroups[i]) && errno == EBUSY && tries++ < 100) usleep(20000);
        if (access(g->cgroups[i], F_OK) == 0) {
            fprintf(stderr, "rmap-oracle: cannot remove the cgroup %s: %s\n", g->cgroups[i], strerror(errno));
            failed++;
        }
    }
    g->ncgroups = 0;
    for (int i = g->nsaved - 1; i >= 0; i--) {
        if (write_sysfs_value(g->saved_path[i], g->saved_value[i])) {
            fprintf(stderr, "rmap-oracle: cannot restore %s to %s: %s\n", g->saved_path[i],
                    g->saved_value[i], strerror(errno));
            failed++;
        }
    }
    g->nsaved = 0;
    for (int i = g->ndirs - 1; i >= 0; i--)
        nftw(g->dirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    g->ndirs = 0;
    for (int i = 0; i < g->nlocks; i++) {
        flock(g->locks[i], LOCK_UN);
        close(g->locks[i]);
    }
    g->nlocks = 0;
    return failed;
}

/* ------------------------------------------------------------------ */
/* The watchdog                                                         */

static volatile sig_atomic_t parent_gone;

static void on_parent_death(int sig)
{
    (void)sig;
    parent_gone = 1;
}

static void watchdog_exit(struct guard_list *g, int fd, int answer) __attribute__((noreturn));
static void watchdog_exit(struct guard_list *g, int fd, int answer)
{
    struct guard_reply r;
    memset(&r, 0, sizeof r);
    r.result = restore_all(g);
    if (answer) send(fd, &r, sizeof r, MSG_NOSIGNAL);
    _exit(0);
}

/* The next request, or 0 when the oracle is gone (EOF, error, or the
 * parent-death signal). */
static int next_request(int fd, struct guard_msg *m)
{
    for (;;) {
        if (parent_gone) return 0;
        ssize_t n = recv(fd, m, sizeof *m, 0);
        if (n == (ssize_t)sizeof *m) return 1;
        if (n < 0 && errno == EINTR) continue;
        return 0;
    }
}

static void watchdog(int fd, pid_t parent) __attribute__((noreturn));
static void watchdog(int fd, pid_t parent)
{
    static struct guard_list g;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGTTOU, &sa, NULL);
    sa.sa_handler = on_parent_death;   /* no SA_RESTART: a blocked recv returns */
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    prctl(PR_SET_PDEATHSIG, SIGUSR1);
    if (getppid() != parent) parent_gone = 1;   /* died before the prctl */
    setpgid(0, 0);

    /* nothing of the oracle's kept open but stderr: no pipe of a worker
     * (their EOF tells them the controller is gone), no stdout (whoever
     * reads the oracle's output to its end is not kept waiting) */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); }
    int maxfd = (int)sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) maxfd = 65536;
    for (int i = 3; i < maxfd; i++)
        if (i != fd) close(i);

    struct guard_msg m;
    while (next_request(fd, &m)) {
        struct guard_reply r;
        memset(&r, 0, sizeof r);
        m.path[GUARD_STR - 1] = m.value[GUARD_STR - 1] = 0;
        switch (m.op) {
        case 'L': {
            if (g.nlocks == GUARD_MAX) { r.result = -1; r.err = ENOSPC; break; }
            int lfd = open(m.path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            if (lfd < 0) { r.result = -1; r.err = errno; break; }
            /* wait for the lock, but not past the oracle's death */
            while (flock(lfd, LOCK_EX | LOCK_NB)) {
                if (errno != EWOULDBLOCK && errno != EINTR) { r.result = -1; r.err = errno; break; }
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (parent_gone || poll(&p, 1, 20) > 0) { close(lfd); watchdog_exit(&g, fd, 0); }
            }
            if (r.result) { close(lfd); break; }
            g.locks[g.nlocks++] = lfd;
            break;
        }
        case 'S':
            if (g.nsaved == GUARD_MAX) { r.result = -1; r.err = ENOSPC; break; }
            strcpy(g.saved_path[g.nsaved], m.path);
            strcpy(g.saved_value[g.nsaved], m.value);
            g.nsaved++;
            break;
        case 'D':
            if (g.ndirs == GUARD_MAX) { r.result = -1; r.err = ENOSPC; break; }
            strcpy(r.path, m.path);
            if (!mkdtemp(r.path)) { r.result = -1; r.err = errno; break; }
            strcpy(g.dirs[g.ndirs++], r.path);
            break;
        case 'C':
            if (g.ncgroups == GUARD_MAX) { r.result = -1; r.err = ENOSPC; break; }
            if (mkdir(m.path, 0755)) { r.result = -1; r.err = errno; break; }
            strcpy(g.cgroups[g.ncgroups++], m.path);
            break;
        case 'F':
            watchdog_exit(&g, fd, 1);
        default:
            r.result = -1;
            r.err = EINVAL;
        }
        if (send(fd, &r, sizeof r, MSG_NOSIGNAL) != (ssize_t)sizeof r) break;
    }
    watchdog_exit(&g, fd, 0);
}

/* ------------------------------------------------------------------ */
/* The oracle's side                                                    */

static void guard_start(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) die("socketpair: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(sv[0]);
        watchdog(sv[1], parent);
    }
    close(sv[1]);
    guard_fd = sv[0];
}

/* One request and its answer; a watchdog that is gone is an internal error
 * (cleanup() then restores from the oracle's own copy). */
static void guard_call(char op, const char *path, const char *value, struct guard_reply *r)
{
    struct guard_msg m;
    memset(&m, 0, sizeof m);
    m.op = op;
    if (strlen(path) >= GUARD_STR || (value && strlen(value) >= GUARD_STR))
        die("internal: path or value too long for the watchdog: %s", path);
    strcpy(m.path, path);
    if (value) strcpy(m.value, value);
    if (guard_lost) die("the watchdog is gone");
    if (guard_fd < 0) guard_start();
    ssize_t n;
    do n = send(guard_fd, &m, sizeof m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof m) {
        do n = recv(guard_fd, r, sizeof *r, 0); while (n < 0 && errno == EINTR);
    }
    if (n != (ssize_t)sizeof *r) {
        guard_lost = 1;
        die("the watchdog is gone (%s)", n < 0 ? strerror(errno) : "no answer");
    }
}

void guard_lock(const char *path)
{
    struct guard_reply r;
    guard_call('L', path, NULL, &r);
    if (r.result) die("cannot lock %s: %s", path, strerror(r.err));
}

void guard_save(const char *path, const char *value)
{
    struct guard_reply r;
    if (mine.nsaved == GUARD_MAX) die("internal: more than %d saved settings", GUARD_MAX);
    guard_call('S', path, value, &r);
    if (r.result) die("cannot save %s: %s", path, strerror(r.err));
    strcpy(mine.saved_path[mine.nsaved], path);
    strcpy(mine.saved_value[mine.nsaved], value);
    mine.nsaved++;
}

void guard_mkdtemp(char *tmpl, size_t n)
{
    struct guard_reply r;
    if (mine.ndirs == GUARD_MAX) die("internal: more than %d temporary folders", GUARD_MAX);
    guard_call('D', tmpl, NULL, &r);
    if (r.result) die("mkdtemp %s: %s", tmpl, strerror(r.err));
    if (strlen(r.path) >= n) die("internal: temporary folder name too long");
    strcpy(tmpl, r.path);
    strcpy(mine.dirs[mine.ndirs++], r.path);
}

void guard_mkcgroup(const char *path)
{
    struct guard_reply r;
    if (mine.ncgroups == GUARD_MAX) die("internal: more than %d cgroups", GUARD_MAX);
    guard_call('C', path, NULL, &r);
    if (r.result) die("cannot create the cgroup %s: %s", path, strerror(r.err));
    strcpy(mine.cgroups[mine.ncgroups++], path);
}

void guard_finish(void)
{
    if (guard_fd >= 0 && !guard_lost) {
        struct guard_msg m;
        struct guard_reply r;
        memset(&m, 0, sizeof m);
        m.op = 'F';
        ssize_t n;
        do n = send(guard_fd, &m, sizeof m, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
        if (n == (ssize_t)sizeof m) {
            do n = recv(guard_fd, &r, sizeof r, 0); while (n < 0 && errno == EINTR);
        }
        if (n == (ssize_t)sizeof r) {
            if (r.result) guard_failed = 1;
            mine.nsaved = mine.ndirs = mine.ncgroups = 0;
        } else {
            guard_lost = 1;
        }
    }
    if (guard_lost && (mine.nsaved || mine.ndirs || mine.ncgroups)) {
        fprintf(stderr, "rmap-oracle: the watchdog is gone: restoring the settings here\n");
        guard_failed = 1;
        restore_all(&mine);
    }
    if (guard_fd >= 0) close(guard_fd);
    guard_fd = -1;
}
