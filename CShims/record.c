/*
 * record.c - the process half of `rmap record`: see rmap_record.h.
 * Not part of the model: it runs the recorded command.
 */
#define _GNU_SOURCE
#include "rmap_record.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig) { (void)sig; stop_requested = 1; }

static void set_err(char *err, size_t errlen, const char *what) {
    snprintf(err, errlen, "%s: %s", what, strerror(errno));
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, text, strlen(text));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* The filter: mmap and brk notify the recorder, everything else runs. */
static int install_filter(void) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mmap, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_brk, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
    };
    struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static int send_fd(int sock, int fd) {
    char byte = 'f';
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock) {
    char byte;
    struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    if (recvmsg(sock, &msg, 0) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS) { errno = EPROTO; return -1; }
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* The present (or swapped) pages of [start, end) of tid, as runs. */
static void dump_pagemap(FILE *out, int pm, unsigned long start, unsigned long end) {
    enum { CHUNK = 4096 };
    static uint64_t buf[CHUNK];
    unsigned long run = 0;
    int in_run = 0;
    for (unsigned long a = start; a < end;) {
        unsigned long n = (end - a) / 4096;
        if (n > CHUNK) n = CHUNK;
        ssize_t got = pread(pm, buf, n * 8, (off_t)(a / 4096 * 8));
        if (got <= 0) break;
        n = (unsigned long)got / 8;
        for (unsigned long i = 0; i < n; i++, a += 4096) {
            int present = (buf[i] >> 63) & 1 || (buf[i] >> 62) & 1;
            if (present && !in_run) { run = a; in_run = 1; }
            if (!present && in_run) { fprintf(out, "P %lx %lx\n", run, a); in_run = 0; }
        }
    }
    if (in_run) fprintf(out, "P %lx %lx\n", run, end);
}

static void dump_state(FILE *out, pid_t tid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", tid);
    FILE *maps = fopen(path, "re");
    if (!maps) return;
    snprintf(path, sizeof path, "/proc/%d/pagemap", tid);
    int pm = open(path, O_RDONLY | O_CLOEXEC);
    char line[4096 + 256];
    while (fgets(line, sizeof line, maps)) {
        fprintf(out, "M %s", line);
        if (!strchr(line, '\n')) fputc('\n', out);
        unsigned long s, e;
        char perms[8];
        if (pm >= 0 && sscanf(line, "%lx-%lx %7s", &s, &e, perms) == 3 &&
            (perms[0] == 'r' || perms[1] == 'w') && e - s <= (256ul << 20))
            dump_pagemap(out, pm, s, e);
    }
    if (pm >= 0) close(pm);
    fclose(maps);
}

static void handle(FILE *out, const struct seccomp_notif *req) {
    const uint64_t *a = req->data.args;
    fprintf(out, "N %d %d %llx %llx %llx %llx %llx %llx\n", req->pid, req->data.nr,
            (unsigned long long)a[0], (unsigned long long)a[1], (unsigned long long)a[2],
            (unsigned long long)a[3], (unsigned long long)a[4], (unsigned long long)a[5]);
    if (req->data.nr == __NR_mmap && !(a[3] & MAP_ANONYMOUS) && (int)a[4] >= 0) {
        char fdpath[64], target[4096];
        snprintf(fdpath, sizeof fdpath, "/proc/%d/fd/%d", req->pid, (int)a[4]);
        ssize_t n = readlink(fdpath, target, sizeof target - 1);
        struct stat st;
        if (n > 0 && stat(fdpath, &st) == 0) {
            target[n] = 0;
            fprintf(out, "F %llx %llx %llx %s\n", (unsigned long long)st.st_size,
                    (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, target);
        }
    }
    dump_state(out, req->pid);
    fputs("E\n", out);
}

int rmap_record_run(const char *path, char *const argv[], const char *pid_file,
                    const char *on_file, int out_fd, char *err, size_t errlen) {
    int sv[2], go[2];
    stop_requested = 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) { set_err(err, errlen, "socketpair"); return -1; }
    if (pipe2(go, O_CLOEXEC) != 0) { set_err(err, errlen, "pipe"); close(sv[0]); close(sv[1]); return -1; }
    pid_t child = fork();
    if (child < 0) { set_err(err, errlen, "fork"); return -1; }
    if (child == 0) {
        /* Only async-signal-safe calls from here to execve. */
        close(sv[0]); close(go[1]);
        int lfd = install_filter();
        if (lfd < 0 || send_fd(sv[1], lfd) != 0) _exit(126);
        close(lfd);
        char b;
        if (read(go[0], &b, 1) != 1) _exit(126);
        execve(path, argv, environ);
        _exit(127);
    }
    close(sv[1]); close(go[0]);
    int listener = recv_fd(sv[0]);
    close(sv[0]);
    int status = 0;
    if (listener < 0) {
        set_err(err, errlen, "seccomp user notification (the child could not install its filter)");
        close(go[1]);
        waitpid(child, &status, 0);
        return -1;
    }
    char pidtext[32];
    snprintf(pidtext, sizeof pidtext, "%d\n", child);
    if (write_file(pid_file, pidtext) != 0 || write_file(on_file, "1\n") != 0) {
        set_err(err, errlen, "tracefs (set_event_pid / tracing_on)");
        kill(child, SIGKILL); close(go[1]); close(listener);
        waitpid(child, &status, 0);
        return -1;
    }
    int dupfd = dup(out_fd);
    FILE *out = dupfd >= 0 ? fdopen(dupfd, "w") : NULL;
    if (!out) { set_err(err, errlen, "output"); kill(child, SIGKILL); close(go[1]); waitpid(child, &status, 0); return -1; }
    setvbuf(out, NULL, _IOFBF, 1 << 20);
    if (write(go[1], "g", 1) != 1) { /* the child died: waitpid says how */ }
    close(go[1]);

    struct seccomp_notif_sizes sizes;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) {
        sizes.seccomp_notif = sizeof(struct seccomp_notif);
        sizes.seccomp_notif_resp = sizeof(struct seccomp_notif_resp);
    }
    struct seccomp_notif *req = calloc(1, sizes.seccomp_notif < sizeof *req ? sizeof *req : sizes.seccomp_notif);
    struct seccomp_notif_resp *resp = calloc(1, sizes.seccomp_notif_resp < sizeof *resp ? sizeof *resp : sizes.seccomp_notif_resp);
    int child_done = 0, idle_after = 0, killed = 0;
    struct sigaction sa, old_int, old_term, old_hup;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, &old_int); sigaction(SIGTERM, &sa, &old_term); sigaction(SIGHUP, &sa, &old_hup);
    for (;;) {
        if (!killed && stop_requested) { kill(child, SIGKILL); killed = 1; }
        if (!child_done) {
            pid_t w = waitpid(child, &status, WNOHANG);
            if (w == child) child_done = 1;
        }
        struct pollfd p = { .fd = listener, .events = POLLIN };
        int r = poll(&p, 1, 50);
        if (r < 0 && errno == EINTR) continue;
        if (r > 0 && (p.revents & POLLIN)) {
            memset(req, 0, sizes.seccomp_notif);
            if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) != 0) continue; /* the task died meanwhile */
            handle(out, req);
            memset(resp, 0, sizes.seccomp_notif_resp);
            resp->id = req->id;
            resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
            (void)ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp); /* ENOENT: it died meanwhile */
            idle_after = 0;
            continue;
        }
        if (r > 0 && (p.revents & (POLLHUP | POLLERR))) {
            if (child_done) break;
            continue;
        }
        /* Descendants that outlive the command keep the filter: wait 2 s for them. */
        if (child_done && ++idle_after > 40) break;
    }
    if (!child_done) waitpid(child, &status, 0);
    sigaction(SIGINT, &old_int, NULL); sigaction(SIGTERM, &old_term, NULL); sigaction(SIGHUP, &old_hup, NULL);
    free(req); free(resp);
    close(listener);
    fclose(out);
    return status;
}
