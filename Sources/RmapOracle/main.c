/*
 * rmap-oracle: runs the kernel-side statements of a trace (trace-format.md) on
 * the live kernel and prints the canonical observation (oracle.md).
 *
 *   rmap-oracle [-v] TRACE
 *
 * Exit status: 0 all expectations held, 1 an expectation failed, 2 malformed
 * trace, 3 internal error (a system call of the oracle itself failed, a worker
 * died or timed out), 77 skipped (model-only statement, swap, not root, PFNs
 * unreadable).
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
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#ifndef MADV_KEEPONFORK
#define MADV_KEEPONFORK 19
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
#ifndef SYS_cachestat
#define SYS_cachestat 451
#endif

#define PAGE 4096ULL
#define ADDR_MIN 0x100000000000ULL
#define ADDR_MAX 0x700000000000ULL
#define MAX_PAGES (1ULL << 24)       /* per statement */
#define MAX_OBSERVE_PAGES (1ULL << 20) /* per observe/expect */
#define MAX_PROCS 1000
#define TIMEOUT_MS 20000

/* ------------------------------------------------------------------ */
/* Trace representation                                                 */

enum stmt_kind {
    S_FILE, S_PROC, S_FORK, S_EXIT, S_MMAP, S_MUNMAP, S_MPROTECT, S_MREMAP,
    S_READ, S_WRITE, S_MADVISE, S_MLOCK, S_MUNLOCK, S_OBSERVE, S_EXPECT,
    S_SWAP, S_MODEL_ONLY, S_KSM_SCAN
};

enum map_kind { K_ANON_PRIVATE, K_ANON_SHARED, K_FILE_PRIVATE, K_FILE_SHARED };

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
    char **tokens;      /* expect tokens */
    int ntokens;
    char *want;         /* `=> RESULT`, or NULL */
    uint64_t value;     /* write ... value=V */
    int has_value;
};

struct file_ent { char *name; uint64_t pages; int created; };
struct proc_ent {
    char *name;
    pid_t pid;
    int pidfd;
    int alive;           /* at run time */
    int cmd_rd, cmd_wr;  /* controller writes cmd_wr, worker reads cmd_rd */
    int rep_rd, rep_wr;  /* worker writes rep_wr, controller reads rep_rd */
    uint32_t mm;         /* the model's mm index for this process (write tokens) */
};

static const char *trace_path;
static struct stmt *stmts;
static int nstmts, cap_stmts;
static struct file_ent *files;
static int nfiles;
static struct proc_ent *procs;
static int nprocs;
static int verbose;

static char *skip_reason;      /* first model-only statement or swap != 0 */
static int seen_process_stmt;

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) { fprintf(stderr, "rmap-oracle: out of memory\n"); exit(3); }
    return p;
}
static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p) { fprintf(stderr, "rmap-oracle: out of memory\n"); exit(3); }
    return p;
}
static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) { fprintf(stderr, "rmap-oracle: out of memory\n"); exit(3); }
    return d;
}

/* ------------------------------------------------------------------ */
/* Lexer                                                                */

struct tok { char *s; int col; };
static int cur_line;

static void perr(int col, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d:%d: error: ", trace_path, cur_line, col);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* Splits a line (comment already removed) into tokens; ',' is a token of its own. */
static int tokenize(char *line, struct tok **out)
{
    int n = 0, cap = 16;
    struct tok *t = xmalloc(sizeof *t * cap);
    char *p = line;
    while (*p) {
        if (*p == ' ' || *p == '\t' || *p == '\r') { p++; continue; }
        if (n + 1 >= cap) { cap *= 2; t = xrealloc(t, sizeof *t * cap); }
        int col = (int)(p - line) + 1;
        if (*p == ',') {
            t[n].s = xstrdup(",");
            t[n].col = col;
            n++;
            p++;
            continue;
        }
        char *b = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r' && *p != ',') p++;
        size_t len = (size_t)(p - b);
        t[n].s = xmalloc(len + 1);
        memcpy(t[n].s, b, len);
        t[n].col = col;
        n++;
    }
    *out = t;
    return n;
}

static int is_name(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-')) return 0;
    return 1;
}

static int parse_num(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        if (!*s) return 0;
        for (; *s; s++) {
            int d;
            if (*s >= '0' && *s <= '9') d = *s - '0';
            else if (*s >= 'a' && *s <= 'f') d = *s - 'a' + 10;
            else if (*s >= 'A' && *s <= 'F') d = *s - 'A' + 10;
            else return 0;
            if (x >> 60) return 0;
            x = x * 16 + (uint64_t)d;
        }
    } else {
        if (!*s) return 0;
        for (; *s; s++) {
            if (*s < '0' || *s > '9') return 0;
            if (x > (UINT64_MAX - 9) / 10) return 0;
            x = x * 10 + (uint64_t)(*s - '0');
        }
    }
    *v = x;
    return 1;
}

/* ------------------------------------------------------------------ */
/* Parser                                                               */

static struct tok *T;
static int NT, pos;

static struct tok *need(const char *what)
{
    if (pos >= NT) {
        int col = NT ? T[NT - 1].col + (int)strlen(T[NT - 1].s) : 1;
        perr(col, "expected %s at end of line", what);
    }
    return &T[pos++];
}

static int find_proc_name(const char *s)
{
    for (int i = 0; i < nprocs; i++)
        if (strcmp(procs[i].name, s) == 0) return i;
    return -1;
}
static int find_file_name(const char *s)
{
    for (int i = 0; i < nfiles; i++)
        if (strcmp(files[i].name, s) == 0) return i;
    return -1;
}

/* parse-time liveness of each process */
static int *p_alive;

static int use_proc(struct tok *t)
{
    if (!is_name(t->s)) perr(t->col, "bad process name '%s'", t->s);
    int i = find_proc_name(t->s);
    if (i < 0) perr(t->col, "unknown process '%s'", t->s);
    if (!p_alive[i]) perr(t->col, "process '%s' has exited", t->s);
    return i;
}

static int new_proc(struct tok *t)
{
    if (!is_name(t->s)) perr(t->col, "bad process name '%s'", t->s);
    if (find_proc_name(t->s) >= 0)
        perr(t->col, "process name '%s' is already used", t->s);
    if (nprocs >= MAX_PROCS) perr(t->col, "too many processes (at most %d)", MAX_PROCS);
    procs = xrealloc(procs, sizeof *procs * (size_t)(nprocs + 1));
    p_alive = xrealloc(p_alive, sizeof *p_alive * (size_t)(nprocs + 1));
    memset(&procs[nprocs], 0, sizeof procs[nprocs]);
    procs[nprocs].name = xstrdup(t->s);
    procs[nprocs].pidfd = -1;
    p_alive[nprocs] = 1;
    return nprocs++;
}

static uint64_t num_tok(struct tok *t, const char *what)
{
    uint64_t v;
    if (!parse_num(t->s, &v)) perr(t->col, "bad %s '%s'", what, t->s);
    return v;
}

static uint64_t addr_tok(struct tok *t)
{
    uint64_t v = num_tok(t, "address");
    if (v % PAGE) perr(t->col, "address %s is not a multiple of 4096", t->s);
    if (v < ADDR_MIN || v >= ADDR_MAX)
        perr(t->col, "address %s is outside [0x100000000000, 0x700000000000)", t->s);
    return v;
}

static uint64_t pages_tok(struct tok *t)
{
    uint64_t v = num_tok(t, "page count");
    if (v < 1) perr(t->col, "page count must be at least 1");
    if (v > MAX_PAGES) perr(t->col, "page count %s is too large (at most %llu)", t->s,
                            (unsigned long long)MAX_PAGES);
    return v;
}

static void check_range(struct tok *t, uint64_t addr, uint64_t pages)
{
    if (addr + pages * PAGE > ADDR_MAX)
        perr(t->col, "range ends beyond 0x700000000000");
}

static int prot_tok(struct tok *t)
{
    const char *s = t->s;
    if (strcmp(s, "none") == 0) return PROT_NONE;
    int p = 0;
    const char *q = s;
    if (*q == 'r') { p |= PROT_READ; q++; }
    if (*q == 'w') { p |= PROT_WRITE; q++; }
    if (*q == 'x') { p |= PROT_EXEC; q++; }
    if (*q || q == s) perr(t->col, "bad protection '%s' (none, or r, w, x in that order)", s);
    return p;
}

static const char *advice_names[] = {
    "dontneed", "free", "cold", "pageout", "dontfork", "dofork", "wipeonfork", "keeponfork",
    "mergeable", "unmergeable"
};
static const int advice_values[] = {
    MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_DONTFORK, MADV_DOFORK,
    MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_MERGEABLE, MADV_UNMERGEABLE
};

static int is_result_token(const char *s)
{
    static const char *fixed[] = { "ok", "SIGSEGV", "SIGBUS", "fail" };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(s, fixed[i]) == 0) return 1;
    if (s[0] == 'E' && s[1]) {
        for (const char *q = s + 1; *q; q++)
            if (!isupper((unsigned char)*q) && !isdigit((unsigned char)*q)) return 0;
        return 1;
    }
    const char *eq = NULL;
    if (strncmp(s, "referenced=", 11) == 0) eq = s + 11;
    else if (strncmp(s, "cleaned=", 8) == 0) eq = s + 8;
    if (eq) {
        uint64_t v;
        return parse_num(eq, &v);
    }
    return 0;
}

static int is_obs_token(const char *s)
{
    if (!strcmp(s, "-") || !strcmp(s, "Z") || !strcmp(s, "S") || !strcmp(s, "M") || !strcmp(s, "H") ||
        !strcmp(s, "D") || !strcmp(s, "X")) return 1;
    if (s[0] != 'A' && s[0] != 'F' && s[0] != 'K') return 0;
    const char *q = s + 1;
    if (!isdigit((unsigned char)*q) || *q == '0') return 0;
    while (isdigit((unsigned char)*q)) q++;
    if (*q != ':') return 0;
    q++;
    if (!isdigit((unsigned char)*q)) return 0;
    while (isdigit((unsigned char)*q)) q++;
    return *q == 0;
}

/* TARGET[, TARGET...] ; stops at end of line or at `=` */
static void parse_targets(struct stmt *st)
{
    uint64_t total = 0;
    for (;;) {
        struct tok *pt = need("process name");
        struct tok *at, *nt;
        struct target tg;
        tg.proc = use_proc(pt);
        at = need("address");
        tg.addr = addr_tok(at);
        nt = need("page count");
        tg.pages = pages_tok(nt);
        check_range(nt, tg.addr, tg.pages);
        total += tg.pages;
        if (total > MAX_OBSERVE_PAGES) perr(nt->col, "too many pages observed at once");
        st->targets = xrealloc(st->targets, sizeof *st->targets * (size_t)(st->ntargets + 1));
        st->targets[st->ntargets++] = tg;
        if (pos < NT && strcmp(T[pos].s, ",") == 0) { pos++; continue; }
        break;
    }
}

static void set_skip(const char *fmt, ...)
{
    if (skip_reason) return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    skip_reason = xstrdup(buf);
}

static void parse_line(char *line)
{
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    NT = tokenize(line, &T);
    pos = 0;
    if (NT == 0) { free(T); return; }

    struct stmt st;
    memset(&st, 0, sizeof st);
    st.line = cur_line;
    st.proc = st.child = st.file = -1;

    /* split off `=> RESULT` */
    int end = NT;
    for (int i = 0; i < NT; i++) {
        if (strcmp(T[i].s, "=>") == 0) {
            if (i + 1 >= NT) perr(T[i].col + 2, "expected a result after '=>'");
            if (i + 2 < NT) perr(T[i + 2].col, "unexpected '%s' after the result", T[i + 2].s);
            if (!is_result_token(T[i + 1].s)) perr(T[i + 1].col, "bad result '%s'", T[i + 1].s);
            st.want = xstrdup(T[i + 1].s);
            end = i;
            break;
        }
    }
    int want_col = end < NT ? T[end].col : 0;
    int ntok_all = NT;
    NT = end;
    if (NT == 0) perr(want_col, "'=>' without a statement");

    struct tok *first = &T[pos++];
    const char *w = first->s;
    int is_op = 1;

    if (NT >= 2 && strcmp(T[1].s, "=") == 0 && strcmp(w, "expect") != 0) {
        /* P2 = fork P */
        pos = 2;
        struct tok *f = need("'fork'");
        if (strcmp(f->s, "fork") != 0) perr(f->col, "expected 'fork', found '%s'", f->s);
        struct tok *pp = need("process name");
        st.kind = S_FORK;
        st.proc = use_proc(pp);
        st.child = new_proc(first);
        seen_process_stmt = 1;
    } else if (strcmp(w, "file") == 0) {
        is_op = 0;
        struct tok *n = need("file name");
        if (!is_name(n->s)) perr(n->col, "bad file name '%s'", n->s);
        if (find_file_name(n->s) >= 0) perr(n->col, "file '%s' is already defined", n->s);
        struct tok *pg = need("page count");
        uint64_t pages = pages_tok(pg);
        files = xrealloc(files, sizeof *files * (size_t)(nfiles + 1));
        files[nfiles].name = xstrdup(n->s);
        files[nfiles].pages = pages;
        files[nfiles].created = 0;
        st.kind = S_FILE;
        st.file = nfiles++;
        st.pages = pages;
    } else if (strcmp(w, "proc") == 0) {
        is_op = 0;
        struct tok *n = need("process name");
        st.kind = S_PROC;
        st.child = new_proc(n);
        seen_process_stmt = 1;
    } else if (strcmp(w, "swap") == 0) {
        is_op = 0;
        struct tok *n = need("swap size");
        uint64_t v = num_tok(n, "swap size");
        if (seen_process_stmt) perr(first->col, "'swap' must come before any process statement");
        st.kind = S_SWAP;
        st.pages = v;
        if (v != 0)
            set_skip("line %d: 'swap %s': the oracle runs without swap (no swap device is configured)",
                     cur_line, n->s);
    } else if (strcmp(w, "ksm") == 0 && NT >= 2 && strcmp(T[1].s, "scan") == 0) {
        /* ksm scan [PASSES]: PASSES full scans of ksmd (run_ksm_scan) */
        is_op = 0;
        st.kind = S_KSM_SCAN;
        st.pages = 1;
        pos = 2;
        if (pos < NT) {
            struct tok *n = &T[pos++];
            uint64_t v;
            if (!parse_num(n->s, &v) || v < 1 || v > 1000) perr(n->col, "bad pass count '%s'", n->s);
            st.pages = v;
        }
    } else if (strcmp(w, "observe") == 0) {
        is_op = 0;
        st.kind = S_OBSERVE;
        parse_targets(&st);
    } else if (strcmp(w, "expect") == 0) {
        is_op = 0;
        st.kind = S_EXPECT;
        parse_targets(&st);
        struct tok *eq = need("'='");
        if (strcmp(eq->s, "=") != 0) perr(eq->col, "expected '=' or ',', found '%s'", eq->s);
        uint64_t total = 0;
        for (int i = 0; i < st.ntargets; i++) total += st.targets[i].pages;
        st.tokens = xmalloc(sizeof *st.tokens * (size_t)(NT - pos + 1));
        while (pos < NT) {
            struct tok *t = &T[pos++];
            if (!is_obs_token(t->s)) perr(t->col, "bad observation token '%s'", t->s);
            st.tokens[st.ntokens++] = xstrdup(t->s);
        }
        if ((uint64_t)st.ntokens != total)
            perr(eq->col, "expect lists %d tokens for %llu pages", st.ntokens,
                 (unsigned long long)total);
    } else {
        /* P VERB ... */
        if (NT == 1) {
            if (!is_name(w) || find_proc_name(w) < 0) perr(first->col, "unknown statement '%s'", w);
        }
        struct tok *vt = need("operation");
        const char *v = vt->s;
        st.proc = use_proc(first);
        seen_process_stmt = 1;
        if (strcmp(v, "exit") == 0) {
            st.kind = S_EXIT;
            p_alive[st.proc] = 0;
        } else if (strcmp(v, "mmap") == 0) {
            st.kind = S_MMAP;
            st.addr = addr_tok(need("address"));
            struct tok *pg = need("page count");
            st.pages = pages_tok(pg);
            check_range(pg, st.addr, st.pages);
            st.prot = prot_tok(need("protection"));
            struct tok *k = need("mapping kind");
            if (strcmp(k->s, "anon-private") == 0) st.mkind = K_ANON_PRIVATE;
            else if (strcmp(k->s, "anon-shared") == 0) st.mkind = K_ANON_SHARED;
            else {
                const char *rest;
                if (strncmp(k->s, "file-private:", 13) == 0) { st.mkind = K_FILE_PRIVATE; rest = k->s + 13; }
                else if (strncmp(k->s, "file-shared:", 12) == 0) { st.mkind = K_FILE_SHARED; rest = k->s + 12; }
                else perr(k->col, "bad mapping kind '%s'", k->s);
                const char *at = strchr(rest, '@');
                if (!at) perr(k->col, "expected FILE@PGOFF in '%s'", k->s);
                char *fname = xmalloc((size_t)(at - rest) + 1);
                memcpy(fname, rest, (size_t)(at - rest));
                if (!is_name(fname)) perr(k->col, "bad file name '%s'", fname);
                st.file = find_file_name(fname);
                if (st.file < 0) perr(k->col, "unknown file '%s'", fname);
                free(fname);
                if (!parse_num(at + 1, &st.pgoff)) perr(k->col, "bad page offset '%s'", at + 1);
                if (st.pgoff > (1ULL << 40)) perr(k->col, "page offset '%s' is too large", at + 1);
            }
        } else if (strcmp(v, "munmap") == 0 || strcmp(v, "mlock") == 0 || strcmp(v, "munlock") == 0) {
            st.kind = strcmp(v, "munmap") == 0 ? S_MUNMAP : (strcmp(v, "mlock") == 0 ? S_MLOCK : S_MUNLOCK);
            st.addr = addr_tok(need("address"));
            struct tok *pg = need("page count");
            st.pages = pages_tok(pg);
            check_range(pg, st.addr, st.pages);
        } else if (strcmp(v, "mprotect") == 0) {
            st.kind = S_MPROTECT;
            st.addr = addr_tok(need("address"));
            struct tok *pg = need("page count");
            st.pages = pages_tok(pg);
            check_range(pg, st.addr, st.pages);
            st.prot = prot_tok(need("protection"));
        } else if (strcmp(v, "mremap") == 0) {
            st.kind = S_MREMAP;
            st.addr = addr_tok(need("address"));
            struct tok *o = need("old page count");
            st.pages = pages_tok(o);
            check_range(o, st.addr, st.pages);
            struct tok *n = need("new page count");
            st.new_pages = pages_tok(n);
            if (pos < NT) {
                struct tok *tt = &T[pos++];
                st.to = addr_tok(tt);
                st.has_to = 1;
                check_range(tt, st.to, st.new_pages);
            } else {
                check_range(n, st.addr, st.new_pages);
            }
        } else if (strcmp(v, "read") == 0 || strcmp(v, "write") == 0) {
            st.kind = v[0] == 'r' ? S_READ : S_WRITE;
            st.addr = addr_tok(need("address"));
            st.pages = 1;
            if (pos < NT && strncmp(T[pos].s, "value=", 6) != 0) {
                struct tok *pg = &T[pos++];
                st.pages = pages_tok(pg);
                check_range(pg, st.addr, st.pages);
            }
            if (pos < NT && st.kind == S_WRITE && strncmp(T[pos].s, "value=", 6) == 0) {
                /* write ... value=V: every written page holds the pattern of V */
                struct tok *vt = &T[pos++];
                if (!parse_num(vt->s + 6, &st.value)) perr(vt->col + 6, "bad content value '%s'", vt->s + 6);
                st.has_value = 1;
            }
        } else if (strcmp(v, "madvise") == 0) {
            st.kind = S_MADVISE;
            st.addr = addr_tok(need("address"));
            struct tok *pg = need("page count");
            st.pages = pages_tok(pg);
            check_range(pg, st.addr, st.pages);
            struct tok *a = need("advice");
            st.advice = -1;
            for (size_t i = 0; i < sizeof advice_names / sizeof *advice_names; i++)
                if (strcmp(a->s, advice_names[i]) == 0) st.advice = (int)i;
            if (st.advice < 0) perr(a->col, "unknown advice '%s'", a->s);
        } else if (!strcmp(v, "unmap") || !strcmp(v, "reclaim") || !strcmp(v, "migrate") ||
                   !strcmp(v, "referenced") || !strcmp(v, "mkclean") || !strcmp(v, "poison") ||
                   !strcmp(v, "device") || !strcmp(v, "exclusive")) {
            st.kind = S_MODEL_ONLY;
            st.addr = addr_tok(need("address"));
            if (pos < NT && parse_num(T[pos].s, &st.pages)) {
                struct tok *pg = &T[pos++];
                st.pages = pages_tok(pg);
                check_range(pg, st.addr, st.pages);
            }
            if (pos < NT && !strcmp(v, "device") && !strcmp(T[pos].s, "coherent")) pos++;
            if (pos < NT && !strcmp(v, "unmap")) {
                struct tok *fl = &T[pos++];
                for (const char *q = fl->s; *q; q++)
                    if (!(islower((unsigned char)*q) || *q == '_' || *q == ','))
                        perr(fl->col, "bad flag list '%s'", fl->s);
            }
            set_skip("line %d: '%s' is a model-only statement (the live kernel offers no way to run it)",
                     cur_line, v);
        } else {
            if (!is_name(w)) perr(first->col, "unknown statement '%s'", w);
            perr(vt->col, "unknown operation '%s'", v);
        }
    }
    if (pos < NT) perr(T[pos].col, "unexpected '%s'", T[pos].s);
    if (st.want && !is_op) perr(want_col, "'=>' is only allowed on operation lines");
    (void)is_op;

    if (nstmts == cap_stmts) {
        cap_stmts = cap_stmts ? cap_stmts * 2 : 64;
        stmts = xrealloc(stmts, sizeof *stmts * (size_t)cap_stmts);
    }
    stmts[nstmts++] = st;
    for (int i = 0; i < ntok_all; i++) free(T[i].s);
    free(T);
}

static void parse_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s:1:1: error: cannot open trace: %s\n", path, strerror(errno));
        exit(2);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    cur_line = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        cur_line++;
        if (n > 0 && line[n - 1] == '\n') line[--n] = 0;
        if ((size_t)n != strlen(line)) perr(1, "NUL byte in line");
        parse_line(line);
    }
    free(line);
    fclose(f);
}

/* ------------------------------------------------------------------ */
/* Controller state and cleanup                                         */

static char tmpdir[256];
static int kpagecount_fd = -1, kpageflags_fd = -1;

static void kill_all(void)
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

static void remove_files(void)
{
    if (!tmpdir[0]) return;
    char path[512];
    for (int i = 0; i < nfiles; i++) {
        if (!files[i].created) continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i].name);
        unlink(path);
        files[i].created = 0;
    }
    rmdir(tmpdir);
    tmpdir[0] = 0;
}

/* ------------------------------------------------------------------ */
/* KSM: ksmd driven through /sys/kernel/mm/ksm                          */

#define KSM_DIR "/sys/kernel/mm/ksm/"
static int ksm_saved;                 /* the settings below were saved and changed */
static char ksm_old_run[32], ksm_old_pages[32], ksm_old_sleep[32];
static int ksm_lock_fd = -1;

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

static void ksm_restore(void)
{
    if (!ksm_saved) return;
    ksm_saved = 0;
    ksm_write("run", "0");   /* stop before the old settings; never 2 (that unmerges all) */
    ksm_write("pages_to_scan", ksm_old_pages);
    ksm_write("sleep_millisecs", ksm_old_sleep);
    if (strcmp(ksm_old_run, "2") != 0) ksm_write("run", ksm_old_run);
}

static void cleanup(void)
{
    kill_all();
    ksm_restore();
    remove_files();
}

static void on_fatal_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "rmap-oracle: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup();
    exit(3);
}

static void skip(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "rmap-oracle: skipped: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup();
    exit(77);
}

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

static uint64_t ksm_full_scans(int line)
{
    char b[32];
    if (ksm_read("full_scans", b, sizeof b)) die("line %d: cannot read " KSM_DIR "full_scans", line);
    return strtoull(b, NULL, 10);
}

/* Takes ksmd for this trace: one KSM trace at a time on the machine (an
 * exclusive lock), settings saved for cleanup(), ksmd stopped, each batch
 * large enough for a whole pass (ksm_do_scan stops at the end of a pass),
 * and a sleep between batches (50 ms) that leaves time to stop ksmd
 * between two passes, so a pass count can be hit exactly. */
static int ksm_read_settings(void)
{
    return ksm_read("run", ksm_old_run, sizeof ksm_old_run) ||
           ksm_read("pages_to_scan", ksm_old_pages, sizeof ksm_old_pages) ||
           ksm_read("sleep_millisecs", ksm_old_sleep, sizeof ksm_old_sleep);
}

static void ksm_take(void)
{
    if (ksm_read_settings()) skip("the trace uses KSM and " KSM_DIR " cannot be read (no CONFIG_KSM?)");
    ksm_lock_fd = open("/tmp/rmap-oracle-ksm.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ksm_lock_fd < 0 || flock(ksm_lock_fd, LOCK_EX)) die("cannot lock /tmp/rmap-oracle-ksm.lock: %s", strerror(errno));
    /* read again under the lock: another oracle may have had them changed */
    if (ksm_read_settings()) die("cannot read " KSM_DIR);
    ksm_saved = 1;
    if (ksm_write("run", "0") || ksm_write("pages_to_scan", "1000000") || ksm_write("sleep_millisecs", "50"))
        die("cannot set " KSM_DIR " (%s)", strerror(errno));
}

/* `ksm scan [PASSES]`: ksmd runs until full_scans has grown by PASSES, then
 * stops. Without a mergeable mm alive, ksmd does not run
 * (ksmd_should_run: ksm_mm_head empty) and nothing happens. */
static void run_ksm_scan(uint64_t passes, int line)
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

/* ------------------------------------------------------------------ */
/* Worker                                                               */

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
    char path[256];
};

/* result: 0 ok, >0 errno, R_SIGSEGV/R_SIGBUS, R_ERROR internal (detail in errno field) */
#define R_SIGSEGV (-1)
#define R_SIGBUS (-2)
#define R_MISPLACED (-3)
#define R_ERROR (-4)
struct reply { int result; int err; pid_t pid; int pad; };

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

/* The model's content token of a plain write (Machine.writeToken): a mix
 * (SplitMix64's finaliser) of the writer's mm index and the address, never 0. */
static uint64_t write_token(uint32_t mm, uint64_t addr)
{
    uint64_t z = ((uint64_t)mm << 48) ^ addr ^ 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return z ? z : 1;
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
            uint64_t v = c->has_value ? c->value : write_token(c->mm, a);
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
                if (write_full(procs[me].rep_wr, &r, sizeof r)) _exit(0);
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
            if (madvise(p, c.len, MADV_NOHUGEPAGE)) { r.result = R_ERROR; r.err = errno; }
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
        if (write_full(procs[me].rep_wr, &r, sizeof r)) _exit(0);
    }
}

static void worker_start(int idx) __attribute__((noreturn));
static void worker_start(int idx)
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
    if (write_full(procs[me].rep_wr, &r, sizeof r)) _exit(0);
    worker_loop();
}

/* ------------------------------------------------------------------ */
/* Controller: talking to workers                                       */

static void get_reply(int idx, struct reply *r, int line)
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
}

static void send_cmd(int idx, struct cmd *c, int line)
{
    if (write_full(procs[idx].cmd_wr, c, sizeof *c))
        die("line %d: cannot send to process %s: %s", line, procs[idx].name, strerror(errno));
}

static int open_pidfd(pid_t pid)
{
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) die("pidfd_open(%d): %s", (int)pid, strerror(errno));
    return fd;
}

static void wait_exit(int idx, int line)
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

/* ------------------------------------------------------------------ */
/* Files                                                                */

struct cachestat_range_ { uint64_t off, len; };
struct cachestat_ { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };

static void file_path(int f, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", tmpdir, files[f].name);
}

/*
 * The file is written one page at a time with pwrite() (so that the page
 * cache gets order-0 folios: ext4 sizes a new folio from the length of the
 * write), then fsync()ed so that every page is clean and not under
 * writeback, then checked with cachestat(): all pages cached, none dirty.
 */
/* The model's content token of page i of the f-th trace file
 * (Kernel.fileContentToken): every byte non-zero. */
static uint64_t file_token(uint64_t f, uint64_t i)
{
    uint64_t t = 0;
    for (int b = 0; b < 4; b++) t |= (1 + ((i >> (7 * b)) & 0x7f)) << (8 * b);
    t |= (1 + (f & 0x7f)) << 32;
    t |= (1 + ((f >> 7) & 0x7f)) << 40;
    t |= (uint64_t)'F' << 48 | (uint64_t)'C' << 56;
    return t;
}

static void fill_token(void *page, uint64_t token)
{
    uint64_t *w = page;
    for (size_t k = 0; k < PAGE / 8; k++) w[k] = token;
}

static void create_file(int f)
{
    char path[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/rmap-oracle.XXXXXX");
        if (!mkdtemp(tmpdir)) { tmpdir[0] = 0; die("mkdtemp: %s", strerror(errno)); }
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
        for (uint64_t i = 0; i < files[f].pages; i++) fill_token(big + i * PAGE, file_token((uint64_t)f, i));
        size_t done = 0;
        while (done < len) {
            ssize_t w = pwrite(fd, big + done, len - done, (off_t)done);
            if (w <= 0) die("write %s: %s", path, strerror(errno));
            done += (size_t)w;
        }
        free(big);
    } else {
        for (uint64_t i = 0; i < files[f].pages; i++) {
            fill_token(buf, file_token((uint64_t)f, i));
            if (pwrite(fd, buf, PAGE, (off_t)(i * PAGE)) != (ssize_t)PAGE)
                die("write %s: %s", path, strerror(errno));
        }
    }
    if (!(mode && strcmp(mode, "nosync") == 0) && fsync(fd)) die("fsync %s: %s", path, strerror(errno));
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

/* ------------------------------------------------------------------ */
/* Observation                                                          */

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN_MASK ((1ULL << 55) - 1)

#define KPF_ANON 12
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_KSM 21
#define KPF_THP 22
#define KPF_ZERO_PAGE 24

static const char *kpf_names[] = {
    "locked", "error", "referenced", "uptodate", "dirty", "lru", "active", "slab",
    "writeback", "reclaim", "buddy", "mmap", "anon", "swapcache", "swapbacked",
    "compound_head", "compound_tail", "huge", "unevictable", "hwpoison", "nopage",
    "ksm", "thp", "offline", "zero_page", "idle", "pgtable"
};

struct strbuf { char *s; size_t len, cap; };
static void sb_add(struct strbuf *b, const char *fmt, ...)
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

static uint64_t pread_u64(int fd, uint64_t index, const char *what)
{
    uint64_t v;
    if (pread(fd, &v, 8, (off_t)(index * 8)) != 8)
        die("read %s at %llu: %s", what, (unsigned long long)index, strerror(errno));
    return v;
}

static int open_proc_file(int idx, const char *name)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)procs[idx].pid, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    return fd;
}

static char *read_whole(int fd)
{
    size_t cap = 65536, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 4096 >= cap) { cap *= 2; buf = xrealloc(buf, cap); }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read maps: %s", strerror(errno));
        if (n == 0) break;
        len += (size_t)n;
    }
    buf[len] = 0;
    return buf;
}

/* tokens into *toks (array of strings), VMAs into vmas */
static void observe(struct stmt *st, char ***toks_out, int *ntoks_out, struct strbuf *vmas)
{
    uint64_t total = 0;
    for (int t = 0; t < st->ntargets; t++) total += st->targets[t].pages;
    char **toks = xmalloc(sizeof *toks * (size_t)(total + 1));
    int ntoks = 0;
    /* canonical ids: pfn -> id */
    uint64_t *seen = xmalloc(sizeof *seen * (size_t)(total + 1));
    int nseen = 0;
    int nvma = 0;

    for (int t = 0; t < st->ntargets; t++) {
        struct target *tg = &st->targets[t];
        struct proc_ent *pe = &procs[tg->proc];
        if (!pe->alive) die("line %d: process %s is not running", st->line, pe->name);
        int pm = open_proc_file(tg->proc, "pagemap");
        uint64_t *ent = xmalloc((size_t)tg->pages * 8);
        size_t want = (size_t)tg->pages * 8, got = 0;
        while (got < want) {
            ssize_t n = pread(pm, (char *)ent + got, want - got, (off_t)((tg->addr / PAGE) * 8 + got));
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) die("read pagemap of %s: %s", pe->name, n < 0 ? strerror(errno) : "short read");
            got += (size_t)n;
        }
        close(pm);
        for (uint64_t i = 0; i < tg->pages; i++) {
            uint64_t e = ent[i];
            char tok[64];
            uint64_t pfn = e & PM_PFN_MASK, flags = 0, count = 0;
            if (e & PM_PRESENT) {
                if (pfn == 0) skip("pagemap gives PFN 0 for a present page (PFNs are hidden)");
                flags = pread_u64(kpageflags_fd, pfn, "/proc/kpageflags");
                count = pread_u64(kpagecount_fd, pfn, "/proc/kpagecount");
                if (flags & (1ULL << KPF_ZERO_PAGE)) {
                    strcpy(tok, "Z");
                } else {
                    int id = 0;
                    for (int k = 0; k < nseen; k++)
                        if (seen[k] == pfn) { id = k + 1; break; }
                    if (!id) { seen[nseen++] = pfn; id = nseen; }
                    char kind = (flags & (1ULL << KPF_KSM)) ? 'K'
                              : (flags & (1ULL << KPF_ANON)) ? 'A' : 'F';
                    snprintf(tok, sizeof tok, "%c%d:%llu", kind, id, (unsigned long long)count);
                }
            } else if (e & PM_SWAP) {
                strcpy(tok, "S");
            } else {
                strcpy(tok, "-");
            }
            toks[ntoks++] = xstrdup(tok);
            if (verbose) {
                fprintf(stderr, "  line %d %s %#llx: %-8s pm=%016llx", st->line, pe->name,
                        (unsigned long long)(tg->addr + i * PAGE), tok, (unsigned long long)e);
                if (e & PM_PRESENT) {
                    fprintf(stderr, " pfn=%#llx count=%llu%s%s flags=", (unsigned long long)pfn,
                            (unsigned long long)count, (e & PM_EXCLUSIVE) ? " excl" : "",
                            (e & PM_FILE) ? " file" : "");
                    for (int b = 0; b < (int)(sizeof kpf_names / sizeof *kpf_names); b++)
                        if (flags & (1ULL << b)) fprintf(stderr, "%s,", kpf_names[b]);
                }
                fputc('\n', stderr);
            }
        }
        free(ent);

        if (vmas) {
            int mfd = open_proc_file(tg->proc, "maps");
            char *maps = read_whole(mfd);
            close(mfd);
            uint64_t lo = tg->addr, hi = tg->addr + tg->pages * PAGE;
            for (char *ln = maps; ln && *ln;) {
                char *nl = strchr(ln, '\n');
                if (nl) *nl = 0;
                unsigned long long s, e2, off;
                char perms[8], dev[32];
                unsigned long ino;
                int consumed = 0;
                if (sscanf(ln, "%llx-%llx %7s %llx %31s %lu %n", &s, &e2, perms, &off, dev, &ino,
                           &consumed) >= 6) {
                    if (s < hi && e2 > lo) {
                        const char *path = consumed ? ln + consumed : "";
                        while (*path == ' ') path++;
                        char kind[600];
                        size_t tl = strlen(tmpdir);
                        if (!*path) {
                            snprintf(kind, sizeof kind, "anon");
                        } else if (strncmp(path, "/dev/zero", 9) == 0 ||
                                   strncmp(path, "/SYSV", 5) == 0) {
                            snprintf(kind, sizeof kind, "shmem");
                        } else if (tl && strncmp(path, tmpdir, tl) == 0 && path[tl] == '/') {
                            char name[300];
                            snprintf(name, sizeof name, "%s", path + tl + 1);
                            char *sp = strstr(name, " (deleted)");
                            if (sp) *sp = 0;
                            snprintf(kind, sizeof kind, "file:%s@%llu", name, off / PAGE);
                        } else {
                            snprintf(kind, sizeof kind, "other:%s", path);
                        }
                        sb_add(vmas, "%s\"%s %#llx-%#llx %s %s\"", nvma ? "," : "", pe->name, s, e2,
                               perms, kind);
                        nvma++;
                    }
                }
                ln = nl ? nl + 1 : NULL;
            }
            free(maps);
        }
    }
    free(seen);
    *toks_out = toks;
    *ntoks_out = ntoks;
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

static void setup_checks(void)
{
    if (geteuid() != 0) skip("not running as root: /proc/PID/pagemap hides PFNs");
    kpagecount_fd = open("/proc/kpagecount", O_RDONLY);
    if (kpagecount_fd < 0) skip("cannot open /proc/kpagecount: %s", strerror(errno));
    kpageflags_fd = open("/proc/kpageflags", O_RDONLY);
    if (kpageflags_fd < 0) skip("cannot open /proc/kpageflags: %s", strerror(errno));
    /* is the PFN visible? touch a page of our own and look it up */
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap: %s", strerror(errno));
    p[0] = 1;
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) skip("cannot open /proc/self/pagemap: %s", strerror(errno));
    uint64_t e = pread_u64(fd, (uint64_t)(uintptr_t)p / PAGE, "/proc/self/pagemap");
    close(fd);
    munmap(p, PAGE);
    if (!(e & PM_PRESENT) || (e & PM_PFN_MASK) == 0)
        skip("/proc/self/pagemap reads PFN 0 (needs CAP_SYS_ADMIN)");
    uint64_t dummy;
    if (pread(kpageflags_fd, &dummy, 8, (off_t)((e & PM_PFN_MASK) * 8)) != 8)
        skip("cannot read /proc/kpageflags: %s", strerror(errno));
}

struct result { int line; char *res; };

int main(int argc, char **argv)
{
    int argi = 1;
    if (argi < argc && strcmp(argv[argi], "-v") == 0) { verbose = 1; argi++; }
    if (argc - argi != 1) {
        fprintf(stderr, "usage: rmap-oracle [-v] TRACE\n");
        return 2;
    }
    trace_path = argv[argi];
    parse_file(trace_path);
    if (skip_reason) {
        fprintf(stderr, "rmap-oracle: skipped: %s\n", skip_reason);
        return 77;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);   /* inherited by workers: exited children vanish */

    setup_checks();

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

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(4 * nprocs + 64)) {
        rl.rlim_cur = (rlim_t)(4 * nprocs + 64);
        if (rl.rlim_max < rl.rlim_cur) rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl)) die("too many processes for the open-file limit");
    }
    for (int i = 0; i < nprocs; i++) {
        int a[2], b[2];
        if (pipe(a) || pipe(b)) die("pipe: %s", strerror(errno));
        procs[i].cmd_rd = a[0];
        procs[i].cmd_wr = a[1];
        procs[i].rep_rd = b[0];
        procs[i].rep_wr = b[1];
        procs[i].alive = 0;
        procs[i].pid = 0;
    }

    struct result *results = xmalloc(sizeof *results * (size_t)(nstmts + 1));
    int nresults = 0;
    struct strbuf obs = { 0 };
    int nobs = 0, failed = 0;

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
        switch (st->kind) {
        case S_SWAP:
        case S_MODEL_ONLY:
            break;
        case S_KSM_SCAN:
            run_ksm_scan(st->pages, st->line);
            break;
        case S_FILE:
            create_file(st->file);
            break;
        case S_PROC: {
            int idx = st->child;
            fflush(stdout);
            fflush(stderr);
            pid_t pid = fork();
            if (pid < 0) die("fork: %s", strerror(errno));
            if (pid == 0) worker_start(idx);
            procs[idx].pid = pid;
            procs[idx].alive = 1;
            procs[idx].pidfd = open_pidfd(pid);
            procs[idx].mm = mm_alloc();
            get_reply(idx, &r, st->line);
            break;
        }
        case S_FORK: {
            c.op = C_FORK;
            c.child = st->child;
            send_cmd(st->proc, &c, st->line);
            get_reply(st->proc, &r, st->line);
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
            observe(st, &toks, &ntoks, st->kind == S_OBSERVE ? &vm : NULL);
            if (st->kind == S_OBSERVE) {
                sb_add(&obs, "%s[%d,[", nobs ? "," : "", st->line);
                for (int i = 0; i < ntoks; i++) sb_add(&obs, "%s\"%s\"", i ? "," : "", toks[i]);
                sb_add(&obs, "],[%s]]", vm.s ? vm.s : "");
                nobs++;
            } else {
                int same = ntoks == st->ntokens;
                for (int i = 0; same && i < ntoks; i++) same = strcmp(toks[i], st->tokens[i]) == 0;
                if (!same) {
                    fprintf(stderr, "%s:%d: expectation failed: expected", trace_path, st->line);
                    for (int i = 0; i < st->ntokens; i++) fprintf(stderr, " %s", st->tokens[i]);
                    fprintf(stderr, ", got");
                    for (int i = 0; i < ntoks; i++) fprintf(stderr, " %s", toks[i]);
                    fputc('\n', stderr);
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
                }
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
            send_cmd(st->proc, &c, st->line);
            get_reply(st->proc, &r, st->line);
            res = result_name(&r, st->line);
            break;
        }
        }
        if (res) {
            results[nresults].line = st->line;
            results[nresults].res = xstrdup(res);
            nresults++;
            if (st->want && strcmp(st->want, res) != 0) {
                fprintf(stderr, "%s:%d: expectation failed: expected %s, got %s\n", trace_path,
                        st->line, st->want, res);
                failed = 1;
            }
        }
    }

    cleanup();

    printf("{\"format\":\"rmap-observation/1\",\"results\":[");
    for (int i = 0; i < nresults; i++)
        printf("%s[%d,\"%s\"]", i ? "," : "", results[i].line, results[i].res);
    printf("],\"observations\":[%s]}\n", obs.s ? obs.s : "");
    if (fflush(stdout)) return 3;
    return failed ? 1 : 0;
}
