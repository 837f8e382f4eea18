/*
 * oracle.h - what the files of rmap-oracle share: the parsed trace (its
 * statements, files and processes), the controller/worker protocol, and the
 * functions one file calls in another.
 *
 *   parse.c    the trace: lexer and parser (exit status 2 on a malformed trace),
 *              the model's grammar and checks in the same order
 *   worker.c   the trace processes: the worker loop and the controller's side
 *              of the pipes (commands, replies, exits)
 *   ksm.c      KSM: ksmd driven through /sys/kernel/mm/ksm
 *   large.c    large pages: THP, mTHP, khugepaged and hugetlb settings set
 *              for a large-page trace (and put back by the watchdog), the
 *              checks that make a run void, `thp shrink`
 *   files.c    the trace's files: created in a temporary directory, filled
 *              with the model's content tokens; their page cache watched
 *              for the machine's reclaim (a disturbed run is run again)
 *   observe.c  observation: pagemap, kpagecount, kpageflags and maps
 *   guard.c    the watchdog: a child that holds the lock, the saved machine
 *              settings and the temporary folder, and puts them back however
 *              the oracle ends (SIGKILL included)
 *   limits.c   what this machine can run (77 beyond it): the trace processes'
 *              own memory kept out of the trace address window, the trace's
 *              memory footprint bounded by a share of MemAvailable
 *   util.c     allocation, the fatal exits (die, skip) and the cleanup they run,
 *              the run again of a run the machine disturbed (retry_trace)
 *   main.c     main: runs the statements in order and prints the observation
 *
 * The content tokens are the model's own (CShims/include/rmap_content.h).
 */
#ifndef RMAP_ORACLE_H
#define RMAP_ORACLE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* by a relative path: the oracle does not depend on the CShims target (no
 * arena code linked in), and plain cc builds it without -I */
#include "../../CShims/include/rmap_content.h"

#define PAGE 4096ULL
#define TIMEOUT_MS 20000

/* ------------------------------------------------------------------ */
/* Trace representation (parse.c)                                       */

enum stmt_kind {
    S_FILE, S_PROC, S_FORK, S_EXIT, S_MMAP, S_MUNMAP, S_MPROTECT, S_MREMAP,
    S_READ, S_WRITE, S_MADVISE, S_MLOCK, S_MUNLOCK, S_OBSERVE, S_EXPECT,
    S_SWAP, S_MODEL_ONLY, S_KSM_SCAN,
    /* large pages (trace-format.md, "Large pages"): settings and the shrinker */
    S_THP_ENABLED, S_THP_SIZE, S_HUGETLB, S_THP_SHRINK
};

enum map_kind { K_ANON_PRIVATE, K_ANON_SHARED, K_FILE_PRIVATE, K_FILE_SHARED,
                K_HUGETLB_PRIVATE, K_HUGETLB_SHARED };

struct target { int proc; uint64_t addr, pages; };

struct stmt {
    enum stmt_kind kind;
    int line;
    int proc;           /* acting process (operation lines) */
    int child;          /* fork: new process index; proc: the process */
    int file;           /* file statement / file mapping */
    uint64_t addr, pages, new_pages, to, pgoff;
    int has_to;
    int prot;
    enum map_kind mkind;
    int advice;
    struct target *targets;
    int ntargets;
    int contents;       /* observe/expect contents: values, not frames */
    int hugetlb_pool;   /* observe/expect hugetlb: the pool's four counts (large.c) */
    char **tokens;      /* expect tokens */
    int ntokens;
    char *want;         /* `=> RESULT`, or NULL */
    uint64_t value;     /* write ... value=V */
    int has_value;
    int noreserve;      /* mmap ... KIND noreserve (MAP_NORESERVE) */
};

struct file_ent {
    char *name;
    uint64_t pages;
    int created;
    int watch_fd;       /* the controller's descriptor for cachestat, -1 before the file exists */
    uint64_t cached;    /* its pages in the page cache when last counted (files_check) */
};
struct proc_ent {
    char *name;
    pid_t pid;
    int pidfd;
    int alive;           /* at run time */
    int cmd_rd, cmd_wr;  /* controller writes cmd_wr, worker reads cmd_rd */
    int rep_rd, rep_wr;  /* worker writes rep_wr, controller reads rep_rd */
    uint32_t mm;         /* the model's mm index for this process (write tokens) */
    long majflt;         /* its major faults at its last reply */
};

extern const char *trace_path;
extern struct stmt *stmts;
extern int nstmts;
extern struct file_ent *files;
extern int nfiles;
extern struct proc_ent *procs;
extern int nprocs;
extern char *skip_reason;      /* why the trace cannot run here: the first model-only statement, swap != 0, more than 1000 processes */
extern const int advice_values[]; /* MADV_* of st->advice */

/* Large pages (trace-format.md "Large pages", docs/oracle.md): what parse.c
 * found.  THP modes are indices into thp_mode_names; sizes are the folio
 * orders 2 (16K) to 9 (2M), index order - 2 of thp_size_names. */
#define THP_NSIZES 8
enum thp_mode { THP_ALWAYS, THP_INHERIT, THP_MADVISE, THP_NEVER };
extern const char *thp_mode_names[];  /* "always", "inherit", "madvise", "never" */
extern const char *thp_size_names[];  /* "16K" ... "2M" */
extern int large_trace;        /* the trace uses an addition: run alone, settings set (large.c) */
extern int thp_statements;     /* it has a `thp` statement: no MADV_NOHUGEPAGE, the kernel's defaults to start */
extern int thp_enabled_mode;   /* the final `enabled` (the settings statements all come first) */
extern int thp_size_mode[THP_NSIZES];
extern int hugetlb_given;      /* a `hugetlb PAGES` statement, or a hugetlb mapping: the pool is set */
extern uint64_t hugetlb_pages;

void parse_file(const char *path);

/* ------------------------------------------------------------------ */
/* Controller and worker (worker.c)                                     */

enum cmd_op {
    C_FORK = 1, C_EXIT, C_MMAP, C_MUNMAP, C_MPROTECT, C_MREMAP, C_READ, C_WRITE,
    C_MADVISE, C_MLOCK, C_MUNLOCK
};

struct cmd {
    int op;
    int child;
    int prot;
    int flags;
    int advice;
    int file;           /* mmap: index of the trace file, or -1 */
    uint64_t addr, len, new_len, to, off;
    uint64_t value;     /* write: the content token (value=), or ... */
    int has_value;
    uint32_t mm;        /* ... the model's mm index, for the token of a plain write */
    int nohugepage;     /* mmap: MADV_NOHUGEPAGE right after (traces without `thp`) */
    char path[256];
};

/* result: 0 ok, >0 errno, R_SIGSEGV/R_SIGBUS, R_ERROR internal (detail in errno field) */
#define R_SIGSEGV (-1)
#define R_SIGBUS (-2)
#define R_MISPLACED (-3)
#define R_ERROR (-4)
struct reply {
    int result; int err; pid_t pid; int pad;
    long majflt;   /* the worker's major faults so far (getrusage): files_fault_check() */
};

void worker_start(int idx) __attribute__((noreturn));
void get_reply(int idx, struct reply *r, int line);
void send_cmd(int idx, struct cmd *c, int line);
int open_pidfd(pid_t pid);
void wait_exit(int idx, int line);
void kill_all(void);

/* ------------------------------------------------------------------ */
/* KSM (ksm.c)                                                          */

void ksm_take(void);
void run_ksm_scan(uint64_t passes, int line);

/* ------------------------------------------------------------------ */
/* Large pages (large.c)                                                */

void large_take(void);         /* lock, settings saved and set, khugepaged quiet, baseline read */
void large_before_access(void);/* the fallback counters before a read or write ... */
void large_after_access(int line); /* ... and after: a smaller folio than allowed is a skip (77) */
void large_shrink(int line);   /* `thp shrink`: drop_caches 2 */
void hugetlb_pool_tokens(char ***toks_out, int *ntoks_out); /* `observe hugetlb`: total= free= resv= surplus= */
void large_finish(void);       /* khugepaged/pages_collapsed moved: the run is void (77) */
void hugetlb_cgroup_enter(void); /* --foreign-hugetlb-resv compensate: the trace held to its pool */
void hugetlb_cgroup_leave(void); /* cleanup(): the oracle back in its own cgroup */
void hugetlb_before_reserve(int line, uint64_t delta); /* compensate: void a reservation an idle machine refuses */

/* ------------------------------------------------------------------ */
/* Files (files.c)                                                      */

extern char tmpdir[256];

void file_path(int f, char *buf, size_t n);
void create_file(int f, int line);
/* The trace's page cache, watched (files.c): the machine's reclaim may evict
 * pages of the trace's files while it runs, which the trace would see (a
 * fault reads the page again, fault-around maps only what is cached); such a
 * run is void and repeated (retry_trace()).  files_watch_start() picks the
 * watch from the trace's statements (those that may take pages out: `madvise
 * pageout`, `thp shrink`); files_before() and files_after() run around every
 * statement.  A trace with no such statement (the
 * recorded workloads among them) is watched cheaply: a major fault in a worker
 * (files_fault_check(), from get_reply()) and a page out at an observation
 * or at the end (files_all_cached()) are the machine's. */
extern int files_watch_cheap;
void files_watch_start(void);
void files_before(const struct stmt *st);
void files_after(const struct stmt *st);
void files_fault_check(int idx, const struct reply *r, int line);
void files_all_cached(int line);

/* ------------------------------------------------------------------ */
/* The watchdog (guard.c): started by the first call; each returns once the
 * watchdog knows (a failure is an internal error, die()).                */

void guard_lock(const char *path);                    /* flock(LOCK_EX) held to the end */
void guard_save(const char *path, const char *value); /* write VALUE back to PATH at the end */
void guard_mkdtemp(char *tmpl, size_t n);             /* mkdtemp; removed with its files at the end */
void guard_mkcgroup(const char *path);                /* mkdir of a cgroup; rmdir first at the end */
void guard_finish(void);      /* everything back now (cleanup()); idempotent */
extern int guard_failed;      /* a value could not be written back: main exits 3 */

/* ------------------------------------------------------------------ */
/* What this machine can run (limits.c): each a skip (77) when it cannot  */

void layout_prepare(char **argv);         /* re-exec once if the kernel would place things in the window */
void layout_check_worker(int idx, int line); /* a new `proc` worker: nothing of its own in the window */
void memory_check(uint64_t limit);        /* the trace's footprint; limit in bytes, 0: MemAvailable / 4 */

/* ------------------------------------------------------------------ */
/* Observation (observe.c)                                              */

/* a growing string (sb_add, util.c): the JSON of the observations */
struct strbuf { char *s; size_t len, cap; };

void setup_checks(void);
void observe(struct stmt *st, char ***toks_out, int *ntoks_out, struct strbuf *vmas);

/* ------------------------------------------------------------------ */
/* Utilities (util.c) and main.c                                        */

extern int foreign_resv_compensate; /* --foreign-hugetlb-resv compensate (large.c, step 6) */
extern int verbose;          /* -v: PFNs and flags of every observed page on stderr */

void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void sb_add(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cleanup(void);
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* The machine disturbed this run (not the trace): cleanup(), then the whole
 * trace again from the start in a fresh exec of the oracle, up to
 * ORACLE_ATTEMPTS runs; after the last, skip() (77) saying why. */
#define ORACLE_ATTEMPTS 4
extern char **oracle_argv;
extern struct strbuf failures;   /* the failed expectations, said at the end (util.c) */
void retry_start(char **argv);   /* main(): this run's number, from the exec before */
int retry_run(void);             /* this run's number, 1 to ORACLE_ATTEMPTS */
void retry_trace(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* util.c: writes `value` to a sysfs or procfs file; 0, or -1 with errno. */
int write_sysfs_value(const char *path, const char *value);

#endif /* RMAP_ORACLE_H */
