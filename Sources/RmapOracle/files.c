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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "oracle.h"

#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

char tmpdir[256];
int files_watch_cheap;

struct cachestat_range_ { uint64_t off, len; };
struct cachestat_ { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };

void file_path(int f, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", tmpdir, files[f].name);
}

static void files_evict_on_cue(int line);

/* cachestat() of the whole of file `fd`: 0, or -1 with errno (a kernel
 * before 6.5 has no cachestat). */
static int file_cachestat(int fd, struct cachestat_ *cs)
{
    struct cachestat_range_ range = { 0, 0 };
    memset(cs, 0, sizeof *cs);
    return (int)syscall(SYS_cachestat, fd, &range, cs, 0);
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
void create_file(int f, int line)
{
    char path[512];
    if (!tmpdir[0]) {
        char t[sizeof tmpdir] = "/tmp/rmap-oracle.XXXXXX";
        guard_mkdtemp(t, sizeof t);
        strcpy(tmpdir, t);
    }
    file_path(f, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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
    files_evict_on_cue(line);
    struct cachestat_ cs;
    int counted = file_cachestat(fd, &cs) == 0;
    close(fd);   /* before a retry: nothing of this run outlives it */
    if (!counted) return;   /* a kernel before 6.5 has no cachestat: not watched */
    files[f].cached = cs.nr_cache;
    /* held for the watch below */
    files[f].watch_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (files[f].watch_fd < 0) die("open %s: %s", path, strerror(errno));
    if (cs.nr_cache < files[f].pages && !cs.nr_writeback)
        retry_trace("file %s: %llu of its %llu pages were evicted by the machine (its reclaim: DAMON pageout, "
                    "kswapd) as it was written", files[f].name,
                    (unsigned long long)(files[f].pages - cs.nr_cache), (unsigned long long)files[f].pages);
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

/*
 * The machine's reclaim on cue, for the tests of the watch below:
 * RMAP_ORACLE_EVICT=LINE[,RUNS] drops every trace file's unmapped pages from
 * the page cache (POSIX_FADV_DONTNEED: what a DAMON pageout of unmapped page
 * cache does) just before statement LINE (for a `file` statement, once its
 * file is written), in the first RUNS runs (1).
 */
static void files_evict_on_cue(int line)
{
    static int cue = -1, runs;
    if (cue == -1) {
        const char *e = getenv("RMAP_ORACLE_EVICT");
        cue = 0;
        if (e && sscanf(e, "%d,%d", &cue, &runs) < 2) runs = 1;
        if (cue < 0) cue = 0;
    }
    if (!cue || line != cue || retry_run() > runs) return;
    for (int f = 0; f < nfiles; f++) {
        if (!files[f].created) continue;
        char path[512];
        file_path(f, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("line %d: RMAP_ORACLE_EVICT: %s: %s", line, path, strerror(errno));
        int e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);   /* its error is its result, not errno */
        close(fd);
        if (e) die("line %d: RMAP_ORACLE_EVICT: %s: %s", line, path, strerror(e));
    }
}

/*
 * The trace's page cache, watched.  Every page of a trace file is in the page
 * cache from its `file` statement on, and only two of the trace's statements
 * take pages out: `madvise pageout` (reclaim_pages) and `thp shrink` (its
 * drop_caches).  The machine may take some too while the trace runs: this VM
 * runs a DAMON scheme that pages out unmapped page cache it finds cold
 * (kdamond, action pageout, `unmapped` filter; measured: 2 of 3,200 fresh,
 * fsync()ed pages gone within 30 s), and kswapd reclaims under pressure.  The
 * trace then sees what the model cannot: a fault reads the page again,
 * fault-around maps only the pages still cached (measured: an eviction of the
 * unmapped pages before one of 12 statements changed the kernel's observation
 * of every recorded workload).  So the oracle counts each file's cached pages
 * (cachestat, on a descriptor it holds from the file's creation; the workers
 * close theirs): before and after every statement, fewer than the last count
 * is the machine's, and the run is void and repeated from the start
 * (retry_trace()), except after a statement that may evict, where the count
 * is taken again.  Only a page evicted and read back within one statement
 * escapes it.
 */
static uint64_t cached_pages(int f, int line)
{
    struct cachestat_ cs;
    if (file_cachestat(files[f].watch_fd, &cs))
        die("line %d: cachestat of file %s: %s", line, files[f].name, strerror(errno));
    return cs.nr_cache;
}

/* Fewer pages of a file cached than `every_page` ? all of them : the last
 * count is the machine's: void (retry_trace()). */
static void files_check(int line, int every_page)
{
    for (int f = 0; f < nfiles; f++) {
        if (files[f].watch_fd < 0) continue;
        uint64_t n = cached_pages(f, line), floor = every_page ? files[f].pages : files[f].cached;
        if (n < floor)
            retry_trace("line %d: %llu of the %llu %spages of file %s were evicted by the machine "
                        "(its reclaim: DAMON pageout, kswapd), not by the trace",
                        line, (unsigned long long)(floor - n), (unsigned long long)floor,
                        every_page ? "" : "cached ", files[f].name);
        files[f].cached = n;
    }
}

/* After a statement that may evict: the new counts. */
static void files_recount(int line)
{
    for (int f = 0; f < nfiles; f++)
        if (files[f].watch_fd >= 0) files[f].cached = cached_pages(f, line);
}

/* A worker's major faults since its last reply: noted here (from
 * get_reply(), which may be half-way through a statement: a fork whose child
 * is not yet known to the controller), acted on in files_after(). */
static char fault_note[256];

void files_fault_check(int idx, const struct reply *r, int line)
{
    if (files_watch_cheap && nfiles > 0 && r->majflt != procs[idx].majflt && !fault_note[0])
        snprintf(fault_note, sizeof fault_note,
                 "line %d: process %s took %ld major faults (a page read back from its file: of the trace's "
                 "files, most likely, evicted by the machine's reclaim: DAMON pageout, kswapd)",
                 line, procs[idx].name, r->majflt - procs[idx].majflt);
    procs[idx].majflt = r->majflt;
}

void files_all_cached(int line) { files_check(line, 1); }

/* The trace's statements that take pages out of the page cache: `madvise
 * pageout` (reclaim_pages) and `thp shrink` (drop_caches). */
static int evicts(const struct stmt *st)
{
    return st->kind == S_THP_SHRINK || (st->kind == S_MADVISE && advice_values[st->advice] == MADV_PAGEOUT);
}

void files_watch_start(void)
{
    files_watch_cheap = 1;
    for (int si = 0; si < nstmts; si++)
        if (evicts(&stmts[si])) files_watch_cheap = 0;
}

void files_before(const struct stmt *st)
{
    if (st->kind != S_FILE) files_evict_on_cue(st->line);   /* a `file` line's cue: once it is written */
    if (!files_watch_cheap) files_check(st->line, 0);
    else if (st->kind == S_OBSERVE || st->kind == S_EXPECT) files_all_cached(st->line);
}

void files_after(const struct stmt *st)
{
    if (fault_note[0]) retry_trace("%s", fault_note);
    if (files_watch_cheap) return;
    if (evicts(st)) files_recount(st->line);
    else files_check(st->line, 0);   /* the statement cannot evict: fewer is the machine's */
}
