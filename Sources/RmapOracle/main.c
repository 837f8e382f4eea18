/*
 * rmap-oracle: runs the kernel-side statements of a trace (docs/trace-format.md) on
 * the live kernel and prints the canonical observation (docs/oracle.md).
 *
 *   rmap-oracle [-v] [--memory-limit SIZE] [--foreign-hugetlb-resv skip|compensate] TRACE
 *   rmap-oracle --parse-only TRACE
 *
 * Exit status: 0 all expectations held, 1 an expectation failed, 2 malformed
 * or unreadable trace (a directory, a read error, more than 64 MiB), 3
 * internal error (a system call of the oracle itself failed, a worker died
 * or timed out, a machine setting could not be put back), 77 skipped
 * (model-only statement, swap, not root, PFNs unreadable; a trace this
 * machine cannot run: more than 1000 processes, more processes than the
 * open-file limit allows, a footprint above a quarter of MemAvailable or
 * --memory-limit, files larger than /tmp's free space, fork refused with
 * EAGAIN, a worker with a mapping of its own in the trace window (limits.c);
 * for a large-page trace: the hugetlb pool cannot be had; the machine
 * disturbed each of 4 runs: its reclaim evicted pages of the trace's files, a
 * fault fell back to a smaller folio, khugepaged acted during the run).  A
 * disturbed run is run again from the start (retry_trace(), util.c).
 *
 * --parse-only parses the whole trace and exits: 2 with the error of a
 * malformed trace, else 0, printing `parsed N statements` and, for a trace the
 * oracle would skip, `would skip: REASON`.  It touches neither the kernel's
 * knobs nor any process and needs no privilege (the test that holds the
 * oracle's parser to the model's runs it, Tests/RmapTests/ParserAgreementTests).
 *
 * Layout: the controller (this process) parses the whole trace, creates two
 * pipes per trace process (known in advance: one per `proc` and per `fork`),
 * then runs the statements in order.  `proc P` forks a worker from the
 * controller; `P2 = fork P` asks P's worker to fork itself, the child takes
 * over the pipes of P2.  Every worker is blocked reading its command pipe
 * between statements, so observations (pagemap, kpagecount, kpageflags, maps)
 * are read while all trace processes are stopped.  All processes are pinned to
 * one CPU so that per-CPU LRU batches are drained by the lru_add_drain() that
 * madvise(COLD/PAGEOUT) does on the current CPU.
 *
 * A trace that uses a large-page addition (trace-format.md "Large pages")
 * runs alone with the machine's THP and hugetlb settings set for it
 * (large.c): see docs/oracle.md.
 *
 * This file holds main(): the checks, the pipes, the statements run in order
 * and the printed observation.  oracle.h lists the other files (parse.c,
 * worker.c, ksm.c, large.c, files.c, observe.c, guard.c, util.c) and what each
 * holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "oracle.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)   /* MAP_HUGE_SHIFT 26, log2(2 MiB) */
#endif

int verbose;
int foreign_resv_compensate;

/* The model's mm table (Kernel.alloc / free of T.mm): bump allocation from
 * 1 with a LIFO free list, so the oracle knows each process's mm index and
 * writes the same content tokens as the model. */
static uint32_t *mm_free_stack;
static int mm_nfree;
static uint32_t mm_bump = 1;

static uint32_t mm_alloc(void)
{
    if (mm_nfree) return mm_free_stack[--mm_nfree];
    return mm_bump++;
}

static void mm_release(uint32_t m)
{
    mm_free_stack = xrealloc(mm_free_stack, sizeof *mm_free_stack * (size_t)(mm_nfree + 1));
    mm_free_stack[mm_nfree++] = m;
}

static void on_fatal_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ------------------------------------------------------------------ */
/* Running                                                              */

static const char *errno_name(int e)
{
    static char buf[32];
    const char *n = strerrorname_np(e);
    if (n) return n;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

static const char *result_name(const struct reply *r, int line)
{
    if (r->result == 0) return "ok";
    if (r->result == R_SIGSEGV) return "SIGSEGV";
    if (r->result == R_SIGBUS) return "SIGBUS";
    if (r->result == R_MISPLACED) die("line %d: the kernel placed the mapping elsewhere", line);
    if (r->result == R_ERROR) die("line %d: worker error: %s", line, strerror(r->err));
    return errno_name(r->result);
}

struct result { int line; char *res; };

static const char usage[] =
    "usage: rmap-oracle [-v] [--memory-limit SIZE] [--foreign-hugetlb-resv skip|compensate] TRACE\n"
    "       rmap-oracle --parse-only TRACE\n"
    "Runs the kernel-side statements of TRACE (docs/trace-format.md) on this machine's\n"
    "kernel and prints the canonical observation (docs/oracle.md). Needs root (PFNs).\n"
    "  -v                  every observed page's PFN and flags on stderr\n"
    "  --memory-limit SIZE the most memory the trace may make the kernel hold (bytes, or\n"
    "                      with K, M, G); default a quarter of MemAvailable. Above: 77\n"
    "  --foreign-hugetlb-resv skip|compensate\n"
    "                      a hugetlb trace on a machine holding hugetlb reservations of others\n"
    "                      (HugePages_Rsvd before it): skip it (77, the default), or run it\n"
    "                      with the pool sized over them (free - rsvd = the trace's pool;\n"
    "                      less exact: a reserved fault may take their free page)\n"
    "  --parse-only        parse TRACE only (no root, no kernel): exit 0, or 2 with FILE:LINE:COL\n"
    "Exit status: 0 every expectation held, 1 an expectation failed, 2 a malformed or\n"
    "unreadable trace (or a usage error), 3 an internal error (a worker died, a machine\n"
    "setting could not be put back, the output could not be written, memory ran out),\n"
    "77 the trace cannot run here (the reason on stderr). A run the machine disturbs (its\n"
    "reclaim evicts pages of the trace's files, khugepaged acts) is run again, up to 4 runs.\n";

/* `--memory-limit SIZE`: decimal bytes, or with a K, M or G suffix (powers of
 * 1024); 0 (the default's marker) and overflow are usage errors. */
static uint64_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s < '0' || *s > '9') return 0;
    int shift = 0;
    if (*end == 'K') shift = 10, end++;
    else if (*end == 'M') shift = 20, end++;
    else if (*end == 'G') shift = 30, end++;
    if (*end || v == 0 || v > (UINT64_MAX >> shift)) return 0;
    return (uint64_t)v << shift;
}

int main(int argc, char **argv)
{
    int argi = 1, parse_only = 0;
    retry_start(argv);
    uint64_t memory_limit = 0;
    for (; argi < argc && argv[argi][0] == '-' && argv[argi][1]; argi++) {
        if (strcmp(argv[argi], "-v") == 0) verbose = 1;
        else if (strcmp(argv[argi], "--parse-only") == 0) parse_only = 1;
        else if (strcmp(argv[argi], "--memory-limit") == 0) {
            if (argi + 1 == argc || !(memory_limit = parse_size(argv[argi + 1]))) {
                fprintf(stderr, "rmap-oracle: --memory-limit needs a size of at least 1 byte (such as 512M), got %s%s%s\n%s",
                        argi + 1 == argc ? "nothing" : "'", argi + 1 == argc ? "" : argv[argi + 1],
                        argi + 1 == argc ? "" : "'", usage);
                return 2;
            }
            argi++;
        }
        else if (strcmp(argv[argi], "--foreign-hugetlb-resv") == 0) {
            const char *v = argi + 1 < argc ? argv[argi + 1] : NULL;
            if (v && strcmp(v, "skip") == 0) foreign_resv_compensate = 0;
            else if (v && strcmp(v, "compensate") == 0) foreign_resv_compensate = 1;
            else {
                fprintf(stderr, "rmap-oracle: --foreign-hugetlb-resv needs skip or compensate, got %s%s%s\n%s",
                        v ? "'" : "nothing", v ? v : "", v ? "'" : "", usage);
                return 2;
            }
            argi++;
        }
        else if (strcmp(argv[argi], "-h") == 0 || strcmp(argv[argi], "--help") == 0) {
            printf("%s", usage);
            return 0;
        } else if (strcmp(argv[argi], "--") == 0) { argi++; break; }
        else {
            fprintf(stderr, "rmap-oracle: unknown option '%s'\n%s", argv[argi], usage);
            return 2;
        }
    }
    if (argc - argi != 1) {
        fprintf(stderr, "%s", usage);
        return 2;
    }
    trace_path = argv[argi];
    parse_file(trace_path);
    if (parse_only) {
        printf("parsed %d statements\n", nstmts);
        if (skip_reason) printf("would skip: %s\n", skip_reason);
        return fflush(stdout) ? 3 : 0;
    }
    if (skip_reason) {
        fprintf(stderr, "rmap-oracle: skipped: %s\n", skip_reason);
        return 77;
    }
    /* before anything is changed: the trace processes are forks of this
     * process, whose layout the kernel chose at exec (limits.c) */
    layout_prepare(argv);

    /* a signal mask inherited from the parent (Foundation's Process passes
     * its thread's on: SIGINT, SIGTERM, SIGHUP blocked) would keep the
     * handlers below from ever running: every signal unblocked */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);   /* a file past RLIMIT_FSIZE: EFBIG, "cannot run here" (files.c) */
    signal(SIGCHLD, SIG_IGN);   /* inherited by workers: exited children vanish */

    setup_checks();
    memory_check(memory_limit);   /* the trace's footprint, its files' size: 77 beyond them */

    /* one CPU for everything: per-CPU LRU batches are drained where madvise runs */
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        int first = -1;
        for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &cpus)) { first = c; break; }
        if (first >= 0) {
            CPU_ZERO(&cpus);
            CPU_SET(first, &cpus);
            if (sched_setaffinity(0, sizeof cpus, &cpus)) die("sched_setaffinity: %s", strerror(errno));
        }
    }

    /* the controller holds two pipes (four ends) and a pidfd per process */
    struct rlimit rl;
    rlim_t fds = (rlim_t)(5 * nprocs + nfiles + 64);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < fds) {
        rlim_t max = rl.rlim_max;
        rl.rlim_cur = fds;
        if (rl.rlim_max < rl.rlim_cur) rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl))
            skip("cannot run here: %d processes need %llu open files, more than the open-file limit "
                 "allows (RLIMIT_NOFILE hard limit %llu: %s)", nprocs, (unsigned long long)fds,
                 (unsigned long long)max, strerror(errno));
    }
    for (int i = 0; i < nprocs; i++) {
        int a[2], b[2];
        if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC)) {   /* none survives a retry's exec */
            if (errno == EMFILE || errno == ENFILE)
                skip("cannot run here: no file descriptors left for the pipes of %d processes: %s", nprocs,
                     strerror(errno));
            die("pipe: %s", strerror(errno));
        }
        procs[i].cmd_rd = a[0];
        procs[i].cmd_wr = a[1];
        procs[i].rep_rd = b[0];
        procs[i].rep_wr = b[1];
        procs[i].alive = 0;
        procs[i].majflt = 0;   /* a new process's count starts at 0 (copy_process) */
        procs[i].pid = 0;
    }

    struct result *results = xmalloc(sizeof *results * (size_t)(nstmts + 1));
    int nresults = 0;
    struct strbuf obs = { 0 };
    int nobs = 0, failed = 0;

    files_watch_start();   /* the cheap watch, or the count around every statement */

    /* a large-page trace first (its lock before KSM's, always in that order) */
    if (large_trace) large_take();
    for (int si = 0; si < nstmts; si++) {
        const struct stmt *st = &stmts[si];
        if (st->kind == S_KSM_SCAN ||
            (st->kind == S_MADVISE && advice_values[st->advice] == MADV_MERGEABLE)) {
            ksm_take();
            break;
        }
    }

    for (int si = 0; si < nstmts; si++) {
        struct stmt *st = &stmts[si];
        struct cmd c;
        struct reply r;
        memset(&c, 0, sizeof c);
        memset(&r, 0, sizeof r);
        const char *res = NULL;
        files_before(st);   /* the machine evicted nothing of the trace's files (files.c) */
        switch (st->kind) {
        case S_SWAP:
        case S_MODEL_ONLY:
        case S_THP_ENABLED:   /* the settings: all set by large_take() before the first process */
        case S_THP_SIZE:
        case S_HUGETLB:
            break;
        case S_THP_SHRINK:
            large_shrink(st->line);
            break;
        case S_KSM_SCAN:
            run_ksm_scan(st->pages, st->line);
            break;
        case S_FILE:
            create_file(st->file, st->line);
            break;
        case S_PROC: {
            int idx = st->child;
            fflush(stdout);
            fflush(stderr);
            pid_t pid = fork();
            if (pid < 0 && errno == EAGAIN)
                skip("cannot run here: line %d: fork of process %s: %s (the machine's process limit)", st->line,
                     procs[idx].name, strerror(errno));
            if (pid < 0) die("fork: %s", strerror(errno));
            if (pid == 0) worker_start(idx);
            procs[idx].pid = pid;
            procs[idx].alive = 1;
            procs[idx].pidfd = open_pidfd(pid);
            procs[idx].mm = mm_alloc();
            get_reply(idx, &r, st->line);
            layout_check_worker(idx, st->line);   /* nothing of its own in the trace window */
            break;
        }
        case S_FORK: {
            c.op = C_FORK;
            c.child = st->child;
            send_cmd(st->proc, &c, st->line);
            get_reply(st->proc, &r, st->line);
            if (r.result == EAGAIN)   /* a pid limit of this machine, not the trace's */
                skip("cannot run here: line %d: process %s's fork: %s (the machine's process limit)", st->line,
                     procs[st->proc].name, strerror(EAGAIN));
            if (r.result == 0) {
                struct reply cr;
                procs[st->child].pid = r.pid;
                procs[st->child].alive = 1;
                procs[st->child].pidfd = open_pidfd(r.pid);
                procs[st->child].mm = mm_alloc();
                get_reply(st->child, &cr, st->line);
            }
            res = result_name(&r, st->line);
            break;
        }
        case S_EXIT:
            c.op = C_EXIT;
            send_cmd(st->proc, &c, st->line);
            wait_exit(st->proc, st->line);
            mm_release(procs[st->proc].mm);
            res = "ok";
            break;
        case S_OBSERVE:
        case S_EXPECT: {
            char **toks;
            int ntoks;
            struct strbuf vm = { 0 };
            for (int t = 0; t < st->ntargets; t++)
                if (!procs[st->targets[t].proc].alive)
                    die("line %d: process %s is not running", st->line, procs[st->targets[t].proc].name);
            if (st->hugetlb_pool) hugetlb_pool_tokens(&toks, &ntoks);
            else observe(st, &toks, &ntoks, st->kind == S_OBSERVE ? &vm : NULL);
            if (st->kind == S_OBSERVE) {
                sb_add(&obs, "%s[%d,[", nobs ? "," : "", st->line);
                for (int i = 0; i < ntoks; i++) sb_add(&obs, "%s\"%s\"", i ? "," : "", toks[i]);
                sb_add(&obs, "],[%s]]", vm.s ? vm.s : "");
                nobs++;
            } else {
                int same = ntoks == st->ntokens;
                for (int i = 0; same && i < ntoks; i++) same = strcmp(toks[i], st->tokens[i]) == 0;
                if (!same) {
                    sb_add(&failures, "%s:%d: expectation failed: expected", trace_path, st->line);
                    for (int i = 0; i < st->ntokens; i++) sb_add(&failures, " %s", st->tokens[i]);
                    sb_add(&failures, ", got");
                    for (int i = 0; i < ntoks; i++) sb_add(&failures, " %s", toks[i]);
                    sb_add(&failures, "\n");
                    failed = 1;
                }
            }
            for (int i = 0; i < ntoks; i++) free(toks[i]);
            free(toks);
            free(vm.s);
            break;
        }
        default: {
            c.addr = st->addr;
            c.len = st->pages * PAGE;
            switch (st->kind) {
            case S_MMAP:
                c.op = C_MMAP;
                c.prot = st->prot;
                switch (st->mkind) {
                case K_ANON_PRIVATE: c.flags = MAP_PRIVATE | MAP_ANONYMOUS; break;
                case K_ANON_SHARED: c.flags = MAP_SHARED | MAP_ANONYMOUS; break;
                case K_FILE_PRIVATE: c.flags = MAP_PRIVATE; break;
                case K_FILE_SHARED: c.flags = MAP_SHARED; break;
                case K_HUGETLB_PRIVATE: c.flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB; break;
                case K_HUGETLB_SHARED: c.flags = MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB; break;
                }
                if (st->noreserve) c.flags |= MAP_NORESERVE;
                if ((st->mkind == K_HUGETLB_PRIVATE || st->mkind == K_HUGETLB_SHARED) && !st->noreserve)
                    hugetlb_before_reserve(st->line, (st->pages + 511) / 512);
                /* a trace without `thp` statements makes no large folio: every
                 * region VM_NOHUGEPAGE from the start (hugetlb has no use for it) */
                c.nohugepage = !thp_statements && st->mkind != K_HUGETLB_PRIVATE &&
                               st->mkind != K_HUGETLB_SHARED;
                if (st->mkind == K_FILE_PRIVATE || st->mkind == K_FILE_SHARED) {
                    file_path(st->file, c.path, sizeof c.path);
                    c.file = st->file;
                    c.off = st->pgoff * PAGE;
                }
                break;
            case S_MUNMAP: c.op = C_MUNMAP; break;
            case S_MPROTECT: c.op = C_MPROTECT; c.prot = st->prot; break;
            case S_MREMAP:
                c.op = C_MREMAP;
                c.new_len = st->new_pages * PAGE;
                c.flags = st->has_to;
                c.to = st->to;
                break;
            case S_READ: c.op = C_READ; break;
            case S_WRITE:
                c.op = C_WRITE;
                c.value = st->value;
                c.has_value = st->has_value;
                c.mm = procs[st->proc].mm;
                break;
            case S_MADVISE: c.op = C_MADVISE; c.advice = advice_values[st->advice]; break;
            case S_MLOCK: c.op = C_MLOCK; break;
            case S_MUNLOCK: c.op = C_MUNLOCK; break;
            default: die("internal: statement kind %d", (int)st->kind);
            }
            if (!procs[st->proc].alive) die("line %d: process %s is not running", st->line, procs[st->proc].name);
            int access = large_trace && (st->kind == S_READ || st->kind == S_WRITE);
            if (access) large_before_access();
            send_cmd(st->proc, &c, st->line);
            get_reply(st->proc, &r, st->line);
            if (access) large_after_access(st->line);
            res = result_name(&r, st->line);
            break;
        }
        }
        files_after(st);
        if (res) {
            results[nresults].line = st->line;
            results[nresults].res = xstrdup(res);
            nresults++;
            if (st->want && strcmp(st->want, res) != 0) {
                sb_add(&failures, "%s:%d: expectation failed: expected %s, got %s\n", trace_path,
                       st->line, st->want, res);
                failed = 1;
            }
        }
    }

    if (files_watch_cheap) files_all_cached(nstmts ? stmts[nstmts - 1].line : 0);
    if (large_trace) large_finish();   /* khugepaged acted: void, run again */
    cleanup();
    if (guard_failed) {
        fprintf(stderr, "rmap-oracle: the machine's settings could not all be put back\n");
        return 3;
    }

    if (failures.s) fputs(failures.s, stderr);   /* util.c: this run's failed expectations */
    printf("{\"format\":\"rmap-observation/1\",\"results\":[");
    for (int i = 0; i < nresults; i++)
        printf("%s[%d,\"%s\"]", i ? "," : "", results[i].line, results[i].res);
    printf("],\"observations\":[%s]}\n", obs.s ? obs.s : "");
    if (fflush(stdout)) return 3;
    return failed ? 1 : 0;
}
