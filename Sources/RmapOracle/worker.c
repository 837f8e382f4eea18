/*
 * worker.c - the trace processes.  Each is a worker forked from the
 * controller (`proc`) or from another worker (`fork`), blocked reading its
 * command pipe between statements; it runs one system call or one access
 * per command and writes a reply.  The controller's side: sending a
 * command, waiting for the reply (a worker that dies or hangs is an
 * internal error), waiting for an exit, and killing them all.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <unistd.h>

#include "oracle.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_FIXED
#define MREMAP_FIXED 2
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

static int me;
static sigjmp_buf access_jb;
/*
 * One open file per trace file in each process (inherited at fork): every
 * mmap of FILE uses the same struct file, as a program mapping one fd
 * several times would.  The kernel merges VMAs only if vm_file is the same
 * struct file, so opening the file afresh for each mmap would keep adjacent
 * mappings of one file with contiguous offsets from ever merging.
 */
static int *file_fds;

static void on_access_fault(int sig)
{
    siglongjmp(access_jb, sig);
}

static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return got ? -1 : (r == 0 ? 0 : -1);
        got += (size_t)r;
    }
    return 1;
}
static int write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, p + done, n - done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

/* A worker's reply, with its major faults so far (a fork starts from 0:
 * faults that found their page out of the page cache, mm_account_fault;
 * files_fault_check()); a controller gone ends the worker. */
static void send_reply(struct reply *r)
{
    struct rusage ru;
    r->majflt = getrusage(RUSAGE_SELF, &ru) ? -1 : ru.ru_majflt;
    if (write_full(procs[me].rep_wr, r, sizeof *r)) _exit(0);
}

/* A write fills the page with its content token (512 copies), so pages
 * are equal exactly when the model's tokens are: what KSM compares. */
static int do_access(const struct cmd *c, int write)
{
    volatile uint64_t i;
    uint64_t pages = c->len / PAGE;
    int sig = sigsetjmp(access_jb, 1);
    if (sig) return sig == SIGBUS ? R_SIGBUS : R_SIGSEGV;
    for (i = 0; i < pages; i++) {
        uint64_t a = c->addr + i * PAGE;
        if (write) {
            uint64_t v = c->has_value ? c->value : rmap_write_token(c->mm, a);
            volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)a;
            for (int w = 0; w < (int)(PAGE / 8); w++) p[w] = v;
        } else {
            (void)*(volatile char *)(uintptr_t)a;
        }
    }
    return 0;
}

static void worker_loop(void) __attribute__((noreturn));
static void worker_loop(void)
{
    for (;;) {
        struct cmd c;
        struct reply r;
        memset(&r, 0, sizeof r);
        int rc = read_full(procs[me].cmd_rd, &c, sizeof c);
        if (rc <= 0) _exit(0);   /* controller gone */
        switch (c.op) {
        case C_FORK: {
            pid_t pid = fork();
            if (pid < 0) { r.result = errno; break; }
            if (pid == 0) {
                me = c.child;
                r.result = 0;
                r.pid = getpid();
                send_reply(&r);
                continue;
            }
            r.pid = pid;
            break;
        }
        case C_EXIT:
            _exit(0);
        case C_MMAP: {
            int fd = -1, flags = c.flags | MAP_FIXED_NOREPLACE;
            if (c.path[0]) {
                if (c.file < 0 || c.file >= nfiles) { r.result = R_ERROR; r.err = EINVAL; break; }
                if (file_fds[c.file] < 0) file_fds[c.file] = open(c.path, O_RDWR | O_CLOEXEC);
                fd = file_fds[c.file];
                if (fd < 0) { r.result = R_ERROR; r.err = errno; break; }
            }
            void *p = mmap((void *)(uintptr_t)c.addr, c.len, c.prot, flags, fd, (off_t)c.off);
            int e = errno;
            if (p == MAP_FAILED) { r.result = e; break; }
            if ((uint64_t)(uintptr_t)p != c.addr) {
                munmap(p, c.len);
                r.result = R_MISPLACED;
                break;
            }
            if (c.nohugepage && madvise(p, c.len, MADV_NOHUGEPAGE)) { r.result = R_ERROR; r.err = errno; }
            break;
        }
        case C_MUNMAP:
            r.result = munmap((void *)(uintptr_t)c.addr, c.len) ? errno : 0;
            break;
        case C_MPROTECT:
            r.result = mprotect((void *)(uintptr_t)c.addr, c.len, c.prot) ? errno : 0;
            break;
        case C_MREMAP: {
            void *p;
            if (c.flags)
                p = mremap((void *)(uintptr_t)c.addr, c.len, c.new_len,
                           MREMAP_MAYMOVE | MREMAP_FIXED, (void *)(uintptr_t)c.to);
            else
                p = mremap((void *)(uintptr_t)c.addr, c.len, c.new_len, 0);
            if (p == MAP_FAILED) r.result = errno;
            else if ((uint64_t)(uintptr_t)p != (c.flags ? c.to : c.addr)) r.result = R_MISPLACED;
            break;
        }
        case C_READ:
        case C_WRITE:
            r.result = do_access(&c, c.op == C_WRITE);
            break;
        case C_MADVISE:
            r.result = madvise((void *)(uintptr_t)c.addr, c.len, c.advice) ? errno : 0;
            break;
        case C_MLOCK:
            r.result = mlock((void *)(uintptr_t)c.addr, c.len) ? errno : 0;
            break;
        case C_MUNLOCK:
            r.result = munlock((void *)(uintptr_t)c.addr, c.len) ? errno : 0;
            break;
        default:
            r.result = R_ERROR;
            r.err = EINVAL;
        }
        send_reply(&r);
    }
}

void worker_start(int idx)
{
    me = idx;
    /* keep only the worker-side pipe ends of every trace process */
    int maxfd = (int)sysconf(_SC_OPEN_MAX);
    if (maxfd < 0 || maxfd > 65536) maxfd = 65536;
    char *keep = calloc((size_t)maxfd, 1);
    if (!keep) _exit(1);
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].cmd_rd < maxfd) keep[procs[i].cmd_rd] = 1;
        if (procs[i].rep_wr < maxfd) keep[procs[i].rep_wr] = 1;
    }
    for (int fd = 3; fd < maxfd; fd++)
        if (!keep[fd]) close(fd);
    free(keep);
    /* if the machine runs short of memory anyway (limits.c bounds the
     * trace's footprint), the OOM killer takes a trace process first;
     * inherited by its forks */
    write_sysfs_value("/proc/self/oom_score_adj", "1000");
    file_fds = malloc(sizeof *file_fds * (size_t)(nfiles + 1));
    if (!file_fds) _exit(1);
    for (int i = 0; i < nfiles; i++) file_fds[i] = -1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_access_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    /* SIGCHLD stays SIG_IGN (inherited): exited children are reaped automatically */

    struct reply r;
    memset(&r, 0, sizeof r);
    r.pid = getpid();
    send_reply(&r);
    worker_loop();
}

/* ------------------------------------------------------------------ */
/* Controller: talking to workers                                       */

void get_reply(int idx, struct reply *r, int line)
{
    /* the controller holds every pipe end itself, so a dead worker gives no
       EOF: watch its pidfd too (not yet open for a worker still starting) */
    struct pollfd p[2] = { { .fd = procs[idx].rep_rd, .events = POLLIN },
                           { .fd = procs[idx].pidfd, .events = POLLIN } };
    int n;
    do n = poll(p, procs[idx].pidfd >= 0 ? 2 : 1, TIMEOUT_MS); while (n < 0 && errno == EINTR);
    if (n > 0 && !(p[0].revents & POLLIN))
        die("line %d: process %s died unexpectedly", line, procs[idx].name);
    if (n == 0) die("line %d: process %s did not answer within %d s", line, procs[idx].name,
                    TIMEOUT_MS / 1000);
    if (n < 0) die("poll: %s", strerror(errno));
    if (read_full(procs[idx].rep_rd, r, sizeof *r) <= 0)
        die("line %d: process %s died unexpectedly", line, procs[idx].name);
    files_fault_check(idx, r, line);
}

void send_cmd(int idx, struct cmd *c, int line)
{
    if (write_full(procs[idx].cmd_wr, c, sizeof *c))
        die("line %d: cannot send to process %s: %s", line, procs[idx].name, strerror(errno));
}

int open_pidfd(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) die("pidfd_open(%d): %s", (int)pid, strerror(errno));
    return fd;
}

void wait_exit(int idx, int line)
{
    struct pollfd p = { .fd = procs[idx].pidfd, .events = POLLIN };
    int n;
    do n = poll(&p, 1, TIMEOUT_MS); while (n < 0 && errno == EINTR);
    if (n <= 0) die("line %d: process %s did not exit", line, procs[idx].name);
    /* reaping is automatic (SIGCHLD ignored); wait until the pid is released */
    for (int i = 0; i < 2000; i++) {
        if (kill(procs[idx].pid, 0) < 0 && errno == ESRCH) break;
        /* a zombie of the controller itself: reap it */
        waitpid(procs[idx].pid, NULL, WNOHANG);
        usleep(1000);
    }
    close(procs[idx].pidfd);
    procs[idx].pidfd = -1;
    procs[idx].alive = 0;
}

void kill_all(void)
{
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].alive && procs[i].pid > 0) {
            if (procs[i].pidfd >= 0)
                syscall(SYS_pidfd_send_signal, procs[i].pidfd, SIGKILL, NULL, 0);
            else
                kill(procs[i].pid, SIGKILL);
        }
    }
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].alive && procs[i].pidfd >= 0) {
            struct pollfd p = { .fd = procs[i].pidfd, .events = POLLIN };
            poll(&p, 1, 2000);
        }
        procs[i].alive = 0;
    }
}

