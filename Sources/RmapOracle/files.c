/*
 * files.c - the trace's files: created in a temporary directory when their
 * `file` statement runs, page i of the f-th file filled with the model's
 * content token of (f, i) (rmap_file_token).  The watchdog creates the
 * directory and removes it with the files however the oracle ends (guard.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "oracle.h"

#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

char tmpdir[256];

struct cachestat_range_ { uint64_t off, len; };
struct cachestat_ { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };

void file_path(int f, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", tmpdir, files[f].name);
}

/* One page of data: 512 copies of the token. */
static void fill_token(void *page, uint64_t token)
{
    uint64_t *w = page;
    for (size_t k = 0; k < PAGE / 8; k++) w[k] = token;
}

/* A write that fails for want of room (a full or small file system, a quota,
 * RLIMIT_FSIZE) is "cannot run here" (77); any other failure is the oracle's. */
static void write_failed(const char *path) __attribute__((noreturn));
static void write_failed(const char *path)
{
    if (errno == ENOSPC || errno == EDQUOT || errno == EFBIG)
        skip("cannot run here: write %s: %s", path, strerror(errno));
    die("write %s: %s", path, strerror(errno));
}

/*
 * The file is written one page at a time with pwrite() (so that the page
 * cache gets order-0 folios: ext4 sizes a new folio from the length of the
 * write), then fsync()ed so that every page is clean and not under
 * writeback, then checked with cachestat(): all pages cached, none dirty.
 */
void create_file(int f)
{
    char path[512];
    if (!tmpdir[0]) {
        char t[sizeof tmpdir] = "/tmp/rmap-oracle.XXXXXX";
        guard_mkdtemp(t, sizeof t);
        strcpy(tmpdir, t);
    }
    file_path(f, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) die("create %s: %s", path, strerror(errno));
    files[f].created = 1;
    /* page i holds the model's content token of (f, i), repeated: what
     * KSM compares (bytes all non-zero) */
    uint64_t buf[PAGE / 8];
    const char *mode = getenv("RMAP_ORACLE_FILE_WRITE");
    if (mode && strcmp(mode, "bulk") == 0) {
        size_t len = (size_t)(files[f].pages * PAGE);
        char *big = malloc(len);
        if (!big) die("out of memory");
        for (uint64_t i = 0; i < files[f].pages; i++) fill_token(big + i * PAGE, rmap_file_token((uint64_t)f, i));
        size_t done = 0;
        while (done < len) {
            ssize_t w = pwrite(fd, big + done, len - done, (off_t)done);
            if (w <= 0) write_failed(path);
            done += (size_t)w;
        }
        free(big);
    } else {
        for (uint64_t i = 0; i < files[f].pages; i++) {
            fill_token(buf, rmap_file_token((uint64_t)f, i));
            ssize_t w = pwrite(fd, buf, PAGE, (off_t)(i * PAGE));
            if (w != (ssize_t)PAGE) {
                if (w >= 0) errno = ENOSPC;   /* a short write: no room for the rest */
                write_failed(path);
            }
        }
    }
    if (!(mode && strcmp(mode, "nosync") == 0) && fsync(fd)) {
        if (errno == ENOSPC || errno == EDQUOT) skip("cannot run here: fsync %s: %s", path, strerror(errno));
        die("fsync %s: %s", path, strerror(errno));
    }
    struct cachestat_range_ range = { 0, 0 };
    struct cachestat_ cs;
    memset(&cs, 0, sizeof cs);
    if (syscall(SYS_cachestat, fd, &range, &cs, 0) == 0) {
        if (cs.nr_cache != files[f].pages || cs.nr_writeback)
            die("file %s: %llu of %llu pages in the page cache, %llu dirty, %llu under writeback",
                files[f].name, (unsigned long long)cs.nr_cache,
                (unsigned long long)files[f].pages, (unsigned long long)cs.nr_dirty,
                (unsigned long long)cs.nr_writeback);
        if (verbose)
            fprintf(stderr, "file %s: cached %llu dirty %llu writeback %llu\n", files[f].name,
                    (unsigned long long)cs.nr_cache, (unsigned long long)cs.nr_dirty,
                    (unsigned long long)cs.nr_writeback);
    }
    close(fd);
}
