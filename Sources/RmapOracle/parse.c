/*
 * parse.c - the trace (trace-format.md): lexer and parser.  parse_file()
 * reads the whole trace before anything runs, into stmts, files and procs
 * (oracle.h); a malformed line ends the oracle with FILE:LINE:COL: error:
 * MESSAGE and exit status 2.  A model-only statement or `swap N` (N != 0)
 * is recorded in skip_reason: main() then skips the trace (status 77).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "oracle.h"

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

#define ADDR_MIN 0x100000000000ULL
#define ADDR_MAX 0x700000000000ULL
#define MAX_PAGES (1ULL << 24)       /* per statement */
#define MAX_OBSERVE_PAGES (1ULL << 20) /* per observe/expect */
#define MAX_PROCS 1000

const char *trace_path;
struct stmt *stmts;
int nstmts;
static int cap_stmts;
struct file_ent *files;
int nfiles;
struct proc_ent *procs;
int nprocs;

char *skip_reason;      /* first model-only statement or swap != 0 */
static int seen_process_stmt;

/* ------------------------------------------------------------------ */
/* Lexer                                                                */

struct tok { char *s; int col; };
static int cur_line;

static void perr(int col, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
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
const int advice_values[] = {
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

void parse_file(const char *path)
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
