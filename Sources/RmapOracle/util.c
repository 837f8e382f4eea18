/*
 * util.c - allocation that cannot fail (out of memory: status 3), the
 * growing string buffer, and the two fatal exits with the cleanup they run:
 * die() for an internal error (status 3), skip() when the machine cannot
 * run the trace (status 77).  cleanup() kills the trace processes and has
 * the watchdog put back what the oracle changed (guard.c: the machine's
 * settings, its lock and the trace's files).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oracle.h"

void *xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) { fprintf(stderr, "rmap-oracle: out of memory\n"); exit(3); }
    return p;
}
void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) { fprintf(stderr, "rmap-oracle: out of memory\n"); exit(3); }
    return p;
}
char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) { fprintf(stderr, "rmap-oracle: out of memory\n"); exit(3); }
    return d;
}

void sb_add(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) die("vsnprintf failed");
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        b->cap = (b->cap + (size_t)n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
}

void cleanup(void)
{
    kill_all();
    hugetlb_cgroup_leave();
    guard_finish();
}

/* The failed expectations of this run so far (main.c adds them): said at
 * the end, or before die() or skip() ends the run, never by a run that
 * retry_trace() voids. */
struct strbuf failures;

static void say_failures(void)
{
    if (failures.s) fputs(failures.s, stderr);
    free(failures.s);
    failures.s = NULL;
    failures.len = failures.cap = 0;
}

void die(const char *fmt, ...)
{
    va_list ap;
    say_failures();
    fprintf(stderr, "rmap-oracle: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup();
    exit(3);
}

void skip(const char *fmt, ...)
{
    va_list ap;
    say_failures();
    fprintf(stderr, "rmap-oracle: skipped: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup();
    exit(77);
}

#define ATTEMPT_ENV "RMAP_ORACLE_ATTEMPT"
char **oracle_argv;
static int attempt = 1;

/* Which run of the trace this is (retry_trace() sets it for the next exec). */
void retry_start(char **argv)
{
    oracle_argv = argv;
    const char *a = getenv(ATTEMPT_ENV);
    if (a) {
        attempt = atoi(a);
        if (attempt < 1 || attempt > ORACLE_ATTEMPTS) attempt = 1;
        unsetenv(ATTEMPT_ENV);
    }
}

int retry_run(void) { return attempt; }

void retry_trace(const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (attempt >= ORACLE_ATTEMPTS)
        skip("the machine disturbed each of %d runs of the trace; the last: %s", attempt, why);
    /* the next run reads the trace again from its path: a pipe's is gone */
    struct stat stt;
    if (stat(trace_path, &stt) || !S_ISREG(stt.st_mode))
        skip("the machine disturbed the run (%s), and a trace that is not a regular file cannot be run again",
             why);
    fprintf(stderr, "rmap-oracle: run %d of at most %d void: %s; running the trace again\n", attempt,
            ORACLE_ATTEMPTS, why);
    cleanup();
    if (guard_failed) {   /* the next run would take what is left for the machine's own values */
        fprintf(stderr, "rmap-oracle: the machine's settings could not all be put back\n");
        exit(3);
    }
    char next[16];
    snprintf(next, sizeof next, "%d", attempt + 1);
    setenv(ATTEMPT_ENV, next, 1);
    fflush(stdout);
    fflush(stderr);
    execv("/proc/self/exe", oracle_argv);
    fprintf(stderr, "rmap-oracle: cannot run the trace again: exec /proc/self/exe: %s\n", strerror(errno));
    exit(3);
}

/* Writes `value` to a sysfs or procfs file (a setting); 0, or -1 with errno. */
int write_sysfs_value(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = strlen(value);
    ssize_t w = write(fd, value, n);
    int e = errno;
    close(fd);
    if (w != (ssize_t)n) { errno = w < 0 ? e : EIO; return -1; }
    return 0;
}
