/*
 * ksm.c - KSM: ksmd driven through /sys/kernel/mm/ksm.  A trace that uses
 * KSM (`ksm scan`, or madvise mergeable) takes ksmd for itself: one such
 * trace at a time on the machine (the lock, held by the watchdog), the
 * settings saved with the watchdog before they change, so that they come
 * back however the oracle ends (guard.c); `ksm scan [PASSES]` runs ksmd for
 * exactly PASSES full scans.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "oracle.h"

#define KSM_DIR "/sys/kernel/mm/ksm/"
#define KSM_LOCK "/tmp/rmap-oracle-ksm.lock"   /* the same file for every oracle, old and new */
static char ksm_old_run[32], ksm_old_pages[32], ksm_old_sleep[32];

static int ksm_read(const char *name, char *buf, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, KSM_DIR "%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r <= 0) return -1;
    buf[r] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    return 0;
}

static int ksm_write(const char *name, const char *val)
{
    char path[128];
    snprintf(path, sizeof path, KSM_DIR "%s", name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t r = write(fd, val, strlen(val));
    close(fd);
    return r == (ssize_t)strlen(val) ? 0 : -1;
}

static uint64_t ksm_full_scans(int line)
{
    char b[32];
    if (ksm_read("full_scans", b, sizeof b)) die("line %d: cannot read " KSM_DIR "full_scans", line);
    return strtoull(b, NULL, 10);
}

/* Takes ksmd for this trace: one KSM trace at a time on the machine (an
 * exclusive lock), settings saved with the watchdog, ksmd stopped, each batch
 * large enough for a whole pass (ksm_do_scan stops at the end of a pass),
 * and a sleep between batches (50 ms) that leaves time to stop ksmd
 * between two passes, so a pass count can be hit exactly. */
static int ksm_read_settings(void)
{
    return ksm_read("run", ksm_old_run, sizeof ksm_old_run) ||
           ksm_read("pages_to_scan", ksm_old_pages, sizeof ksm_old_pages) ||
           ksm_read("sleep_millisecs", ksm_old_sleep, sizeof ksm_old_sleep);
}

void ksm_take(void)
{
    if (ksm_read_settings()) skip("the trace uses KSM and " KSM_DIR " cannot be read (no CONFIG_KSM?)");
    guard_lock(KSM_LOCK);
    /* read again under the lock: another oracle may have had them changed */
    if (ksm_read_settings()) die("cannot read " KSM_DIR);
    /* Restored in the reverse order: run=0 first (ksmd stopped before its
     * settings change), then sleep_millisecs, pages_to_scan, and run last;
     * never run=2 (that unmerges every page: 0 instead). */
    guard_save(KSM_DIR "run", strcmp(ksm_old_run, "2") == 0 ? "0" : ksm_old_run);
    guard_save(KSM_DIR "pages_to_scan", ksm_old_pages);
    guard_save(KSM_DIR "sleep_millisecs", ksm_old_sleep);
    guard_save(KSM_DIR "run", "0");
    if (ksm_write("run", "0") || ksm_write("pages_to_scan", "1000000") || ksm_write("sleep_millisecs", "50"))
        die("cannot set " KSM_DIR " (%s)", strerror(errno));
}

/* `ksm scan [PASSES]`: ksmd runs until full_scans has grown by PASSES, then
 * stops. Without a mergeable mm alive, ksmd does not run
 * (ksmd_should_run: ksm_mm_head empty) and nothing happens. */
void run_ksm_scan(uint64_t passes, int line)
{
    int any = 0;
    for (int i = 0; i < nprocs && !any; i++) {
        if (!procs[i].alive) continue;
        /* MMF_VM_MERGEABLE (__ksm_enter): madvise mergeable on a VMA KSM
         * can use, here or in a parent (ksm_fork) */
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/ksm_stat", (int)procs[i].pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("line %d: cannot open %s: %s", line, path, strerror(errno));
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) die("line %d: cannot read %s", line, path);
        buf[n] = 0;
        if (strstr(buf, "ksm_mergeable: yes")) any = 1;
    }
    if (!any) return;
    uint64_t target = ksm_full_scans(line) + passes;
    if (ksm_write("run", "1")) die("line %d: cannot start ksmd: %s", line, strerror(errno));
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (ksm_full_scans(line) < target) {
        usleep(200);
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > TIMEOUT_MS + (long)passes * 1000) die("line %d: ksmd did not finish %llu scans", line,
                                                      (unsigned long long)passes);
    }
    if (ksm_write("run", "0")) die("line %d: cannot stop ksmd: %s", line, strerror(errno));
    /* ksmd sleeps sleep_millisecs after each pass; a controller descheduled
     * that long lets it start one more: an internal error (status 3), which
     * rmap oracle-check runs again. */
    if (ksm_full_scans(line) != target) die("line %d: ksmd ran past the %llu scans asked", line,
                                            (unsigned long long)passes);
}

