/*
 * parse.c - the trace (docs/trace-format.md): lexer and parser.  parse_file()
 * reads the whole trace before anything runs, into stmts, files and procs
 * (oracle.h); a malformed line ends the oracle with FILE:LINE:COL: error:
 * MESSAGE and exit status 2.  A model-only statement, `swap N` (N != 0) or
 * more processes than the oracle runs is recorded in skip_reason: main() then
 * skips the trace (status 77), or with --parse-only says it would.
 *
 * The grammar and the checks are the model's parser's (Sources/RmapTrace/
 * TraceParser.swift), in the same order, so that both reject the same traces
 * at the same line and column (Tests/RmapTests/ParserAgreementTests.swift
 * holds them to it; the messages may differ):
 *  - a line is split at '\n' only; invalid UTF-8 is that line's error, at the
 *    first bad byte; one trailing CR is dropped; columns count Unicode scalars
 *    from 1; a NUL byte is an ordinary (never valid) character;
 *  - tokens are separated by spaces and tabs, '#' starts a comment; commas are
 *    split out of tokens only in the targets of observe and expect (an `unmap`
 *    flag list such as `migration,ignore_access` is one token);
 *  - checks run left to right and the first failing one is reported; `=> RESULT`
 *    is checked after the statement it ends.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

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
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define ADDR_MIN 0x100000000000ULL
#define ADDR_MAX 0x700000000000ULL
#define MAX_OBSERVE_PAGES (1ULL << 20) /* per observe/expect, all targets together */
#define MAX_FILE_PAGES (1ULL << 24)
#define MAX_SWAP_SLOTS (1ULL << 24)
#define MAX_KSM_PASSES 1000
#define MAX_PGOFF (1ULL << 32)
#define MAX_NAME 64
#define MAX_HUGETLB_PAGES 4096        /* `hugetlb PAGES`: at most 8 GiB of 2 MiB pages */
#define MAX_PROCS 1000                 /* run-time limit of the oracle (a skip, not an error) */
#define MAX_TRACE_BYTES (64ULL << 20)  /* maxTraceBytes of the Swift side (ReplayFile.swift) */

const char *trace_path;
struct stmt *stmts;
int nstmts;
static int cap_stmts;
struct file_ent *files;
int nfiles;
struct proc_ent *procs;
int nprocs;

char *skip_reason;      /* why main() would skip the trace (status 77), or NULL */
static int seen_process_stmt;  /* line of the first process statement, or 0 */
static int swap_line;          /* line of `swap`, or 0 */
static int hugetlb_line;       /* line of `hugetlb`, or 0 */

int large_trace, thp_statements, hugetlb_given;
uint64_t hugetlb_pages;
const char *thp_mode_names[] = { "always", "inherit", "madvise", "never" };
const char *thp_size_names[] = { "16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M" };
/* a trace with `thp` statements starts from the kernel's defaults: enabled
 * madvise, 2M inherit, every other size never */
int thp_enabled_mode = THP_MADVISE;
int thp_size_mode[THP_NSIZES] = { THP_NEVER, THP_NEVER, THP_NEVER, THP_NEVER, THP_NEVER, THP_NEVER,
                                  THP_NEVER, THP_INHERIT };

/* ------------------------------------------------------------------ */
/* Lines and tokens                                                     */

/* A token: its text (NUL-terminated copy), where it starts in the line (byte
 * offset) and its first column and the column just after it (scalars, from 1). */
struct tok { char *s; int off; int col; int end; };

static int cur_line;
static const char *L;     /* the current line (after the CR is dropped) */

static void perr(int col, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void perr(int col, const char *fmt, ...)
{
    /* the message quotes pieces of the input: shortened, control characters escaped */
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s:%d:%d: error: ", trace_path, cur_line, col < 1 ? 1 : col);
    for (const char *p = msg; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7F) fprintf(stderr, "\\x%02X", c);
        else fputc(c, stderr);
    }
    if (n >= (int)sizeof msg) fputs("...", stderr);
    fputc('\n', stderr);
    exit(2);
}

/* The column of byte offset `off` of the current line: 1 + the scalars before it. */
static int colof(int off)
{
    int c = 1;
    for (int i = 0; i < off; i++)
        if (((unsigned char)L[i] & 0xC0) != 0x80) c++;
    return c;
}

/* The byte offset of the first invalid UTF-8 sequence of s[0..n), or -1
 * (Unicode's well-formed sequences: no overlong forms, no surrogates, at most
 * U+10FFFF), as Swift's UTF-8 decoder judges them. */
static long utf8_bad(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        else return (long)i;
        if (i + need >= n) return (long)i;  /* truncated */
        if (s[i + 1] < lo || s[i + 1] > hi) return (long)i;
        for (size_t k = 2; k <= need; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return (long)i;
        i += need + 1;
    }
    return -1;
}

static void add_tok(struct tok **t, int *n, int *cap, int off, int len)
{
    if (*n == *cap) { *cap = *cap ? *cap * 2 : 16; *t = xrealloc(*t, sizeof **t * (size_t)*cap); }
    struct tok *k = &(*t)[(*n)++];
    k->s = xmalloc((size_t)len + 1);
    memcpy(k->s, L + off, (size_t)len);
    k->off = off;
    k->col = colof(off);
    k->end = colof(off + len);
}

/* Splits the line into tokens at spaces and tabs, up to a '#'. */
static int tokenize(struct tok **out)
{
    int n = 0, cap = 0;
    struct tok *t = NULL;
    int i = 0;
    for (;;) {
        while (L[i] == ' ' || L[i] == '\t') i++;
        if (!L[i] || L[i] == '#') break;
        int b = i;
        while (L[i] && L[i] != ' ' && L[i] != '\t' && L[i] != '#') i++;
        add_tok(&t, &n, &cap, b, i - b);
    }
    *out = t;
    return n;
}

/* observe and expect: commas separate targets, so they are split out of every
 * token before the first `=` or `=>` (`1,P1` is `1` `,` `P1`). */
static int split_target_commas(struct tok **tp, int n)
{
    struct tok *t = *tp, *o = NULL;
    int on = 0, cap = 0;
    int in_targets = 1;
    for (int k = 0; k < n; k++) {
        if (k > 0 && (!strcmp(t[k].s, "=") || !strcmp(t[k].s, "=>"))) in_targets = 0;
        if (k == 0 || !in_targets || !strchr(t[k].s, ',')) {
            if (on == cap) { cap = cap ? cap * 2 : 16; o = xrealloc(o, sizeof *o * (size_t)cap); }
            o[on++] = t[k];
            continue;
        }
        const char *s = t[k].s;
        int len = (int)strlen(s), start = 0;
        for (int i = 0; i <= len; i++) {
            if (i < len && s[i] != ',') continue;
            if (i > start) add_tok(&o, &on, &cap, t[k].off + start, i - start);
            if (i < len) add_tok(&o, &on, &cap, t[k].off + i, 1);
            start = i + 1;
        }
        free(t[k].s);
    }
    free(t);
    *tp = o;
    return on;
}

/* ------------------------------------------------------------------ */
/* Words                                                                */

static int is_name(const char *s)
{
    if (!(isalpha((unsigned char)*s) || *s == '_') || ((unsigned char)*s & 0x80)) return 0;
    for (s++; *s; s++)
        if ((unsigned char)*s & 0x80 ||
            !(isalnum((unsigned char)*s) || *s == '_' || *s == '.' || *s == '-')) return 0;
    return 1;
}

enum { NUM_OK, NUM_INVALID, NUM_TOO_LARGE };

/* Decimal or 0x hex (lower-case x, digits of either case), no sign; s[0..n). */
static int parse_num_n(const char *s, size_t n, uint64_t *v)
{
    unsigned radix = 10;
    if (n > 2 && s[0] == '0' && s[1] == 'x') { radix = 16; s += 2; n -= 2; }
    if (n == 0) return NUM_INVALID;
    uint64_t x = 0;
    int over = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        char c = s[i];
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (radix == 16 && c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (radix == 16 && c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return NUM_INVALID;
        if (over) continue;
        if (x > (UINT64_MAX - d) / radix) over = 1;
        else x = x * radix + d;
    }
    if (over) return NUM_TOO_LARGE;
    *v = x;
    return NUM_OK;
}

static int parse_num(const char *s, uint64_t *v) { return parse_num_n(s, strlen(s), v); }

static int prot_named(const char *s)
{
    if (strcmp(s, "none") == 0) return PROT_NONE;
    int p = 0;
    const char *q = s;
    if (*q == 'r') { p |= PROT_READ; q++; }
    if (*q == 'w') { p |= PROT_WRITE; q++; }
    if (*q == 'x') { p |= PROT_EXEC; q++; }
    if (*q || q == s) return -1;
    return p;
}

static const char *advice_names[] = {
    "dontneed", "free", "cold", "pageout", "dontfork", "dofork", "wipeonfork", "keeponfork",
    "mergeable", "unmergeable", "hugepage", "nohugepage", "collapse"
};
#define FIRST_LARGE_ADVICE 10   /* hugepage, nohugepage, collapse: additions (large pages) */
const int advice_values[] = {
    MADV_DONTNEED, MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_DONTFORK, MADV_DOFORK,
    MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_MERGEABLE, MADV_UNMERGEABLE, MADV_HUGEPAGE,
    MADV_NOHUGEPAGE, MADV_COLLAPSE
};

/* try_to_unmap's flags, as the model names them (Operation.swift, TTUFlags.allNames) */
static const char *ttu_names[] = {
    "migration", "munlock", "split_huge_pmd", "ignore_mlock", "ignore_access",
    "ignore_hwpoison", "batch_flush", "rmap_locked", "split_freeze"
};

static const char *verbs[] = {
    "exit", "mmap", "munmap", "mprotect", "mremap", "read", "write", "madvise", "mlock", "munlock",
    "unmap", "reclaim", "migrate", "referenced", "mkclean", "poison", "device", "exclusive", "split"
};

static const char *reserved[] = { "file", "proc", "swap", "observe", "expect" };

static int in_list(const char *s, const char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, list[i]) == 0) return (int)i;
    return -1;
}
#define IN(s, list) in_list((s), (list), sizeof (list) / sizeof *(list))

/* ok, fail, SIGSEGV, SIGBUS, referenced=N, cleaned=N (N decimal without a
 * leading zero) or E and 2 to 15 capital letters */
static int is_result_token(const char *s)
{
    static const char *fixed[] = { "ok", "fail", "SIGSEGV", "SIGBUS" };
    if (IN(s, fixed) >= 0) return 1;
    const char *d = NULL;
    if (strncmp(s, "referenced=", 11) == 0) d = s + 11;
    else if (strncmp(s, "cleaned=", 8) == 0) d = s + 8;
    if (d) {
        if (!*d || (d[0] == '0' && d[1])) return 0;
        for (const char *q = d; *q; q++)
            if (*q < '0' || *q > '9') return 0;
        uint64_t v;
        return parse_num(d, &v) == NUM_OK;
    }
    size_t n = strlen(s);
    if (n < 3 || n > 16 || s[0] != 'E') return 0;
    for (size_t i = 1; i < n; i++)
        if (s[i] < 'A' || s[i] > 'Z') return 0;
    return 1;
}

/* The observation tokens, as the model's ObservationToken.scan reads them
 * (Sources/RmapTrace/ObservationToken.swift; the same rules, in the same order,
 * with the same reasons):
 *
 *     token  := '-' | 'Z' | 'S' | 'M' | 'H' | 'D' | 'X' | 'Z*' | 'M*' | 'H*'
 *             | [AFK] id ':' count                  a small frame
 *             | 'A' id '+' sub ':' count ['*']      a page of a large anonymous folio
 *             | 'T' id '+' sub ':' count '*'        a page of a hugetlb folio (always a PMD)
 *
 * id from 1 and count without a leading zero, any number of digits; sub 0 to
 * 511.  Returns NULL for a well-formed token, OBS_NO_SUCH_TOKEN for one that
 * starts like none of the forms, or the reason.  *large is set for a token that
 * uses a Large pages addition ('+<sub>' or '*'). */
static const char OBS_NO_SUCH_TOKEN[] = "no such token";

static const char *obs_token_problem(const char *s, int *large)
{
    static char why[300];
    size_t n = strlen(s);
    if (n == 0 || !strchr("-ZSMHDXAFKT", s[0])) return OBS_NO_SUCH_TOKEN;
    char first = s[0];
    int pmd = n > 1 && s[n - 1] == '*';
    size_t bn = pmd ? n - 1 : n;          /* the body: s[0..bn) */
    if (pmd && bn > 1 && s[bn - 1] == '*') return "a token ends in at most one '*'";
    int has_frame = strchr("AFKT", first) != NULL;
    if (!has_frame) {
        if (bn != 1) return OBS_NO_SUCH_TOKEN;
        if (pmd && first != 'Z' && first != 'M' && first != 'H') {
            snprintf(why, sizeof why, "'%c' cannot end in '*' (a PMD leaf is A<id>+<sub>:<mapcount>*, "
                     "T<id>+<sub>:<mapcount>*, Z*, M* or H*)", first);
            return why;
        }
        if (pmd) *large = 1;
        return NULL;
    }
    size_t i = 1, b;
#define DIGITS() do { b = i; while (i < bn && s[i] >= '0' && s[i] <= '9') i++; } while (0)
    DIGITS();
    if (i == b) {
        snprintf(why, sizeof why, "expected a frame id (1, 2, ...) after '%c'", first);
        return why;
    }
    if (s[b] == '0') return "a frame id has no leading zero and starts at 1";
    int sub = 0;
    if (i < bn && s[i] == '+') {
        if (first != 'A' && first != 'T') return "only A and T tokens have '+<sub>' (the page of a large folio)";
        i++;
        DIGITS();
        if (i == b) return "expected a page number (0 to 511) after '+'";
        if (i - b > 1 && s[b] == '0') return "a page number has no leading zero";
        uint64_t v;
        if (i - b > 3 || parse_num_n(s + b, i - b, &v) != NUM_OK || v >= 512) {
            snprintf(why, sizeof why, "page %.*s of a folio: a folio has at most 512 pages (0 to 511)",
                     (int)(i - b) > 40 ? 40 : (int)(i - b), s + b);
            return why;
        }
        sub = 1;
    }
    if (i >= bn) {
        snprintf(why, sizeof why, "expected ':' and a mapcount after the %s", sub ? "page number" : "id");
        return why;
    }
    if (s[i] != ':') {
        snprintf(why, sizeof why, "expected %s after the %s, got '%.*s'",
                 !sub && (first == 'A' || first == 'T') ? "'+' or ':'" : "':'", sub ? "page number" : "id",
                 (int)(bn - i), s + i);
        return why;
    }
    i++;
    DIGITS();
#undef DIGITS
    if (i == b) return "expected a mapcount after ':'";
    if (i - b > 1 && s[b] == '0') return "a mapcount has no leading zero";
    if (i < bn) {
        snprintf(why, sizeof why, "unexpected '%.*s' after the mapcount", (int)(bn - i), s + i);
        return why;
    }
    if (first == 'T' && !sub) return "a hugetlb page is T<id>+<sub>:<mapcount>*";
    if (first == 'T' && !pmd) return "a hugetlb page is always a PMD leaf: it ends in '*'";
    if (pmd && !sub)
        return "'*' marks a PMD leaf, which maps a large folio: A<id>+<sub>:<mapcount>* or T<id>+<sub>:<mapcount>*";
    if (sub || pmd) *large = 1;
    return NULL;
}

/* `-` or `v` and lower-case hex without leading zeros, at most 16 digits */
static int is_content_token(const char *s)
{
    if (s[0] == '-' && !s[1]) return 1;
    if (s[0] != 'v' || !s[1]) return 0;
    if (s[1] == '0' && s[2]) return 0;
    size_t n = 0;
    for (const char *q = s + 1; *q; q++, n++)
        if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f'))) return 0;
    return n <= 16;
}

/* ------------------------------------------------------------------ */
/* Processes and files                                                  */

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

static void set_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
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

/* parse-time liveness of each process */
static int *p_alive;

/* ------------------------------------------------------------------ */
/* The statement's tokens: T[0..end) (end is `=>`, or NT)               */

static struct tok *T;
static int NT, pos, end;
static int end_col;          /* where a missing token is reported: at `=>`, or after the last token */
static const char *end_what; /* and what is there */

static struct tok *peek(void) { return pos < end ? &T[pos] : NULL; }

static struct tok *need(const char *what)
{
    if (pos >= end) perr(end_col, "expected %s, got %s", what, end_what);
    return &T[pos++];
}

static void check_name_syntax(struct tok *t, const char *what)
{
    if (!is_name(t->s)) perr(t->col, "expected %s, got '%s'", what, t->s);
    if (strlen(t->s) > MAX_NAME) perr(t->col, "name '%s' is longer than %d characters", t->s, MAX_NAME);
}

/* a name for a new process (`proc P`, `P2 = fork P`): never used before */
static void check_new_proc(struct tok *t)
{
    check_name_syntax(t, "a process name");
    if (IN(t->s, reserved) >= 0) perr(t->col, "'%s' is a reserved word and cannot name a process", t->s);
    int i = find_proc_name(t->s);
    if (i >= 0) {
        if (p_alive[i]) perr(t->col, "process '%s' already exists", t->s);
        perr(t->col, "process name '%s' was already used (the process has exited)", t->s);
    }
}

static int new_proc(struct tok *t)
{
    if (nprocs == MAX_PROCS)
        set_skip("line %d: more than %d processes (the oracle runs at most %d)", cur_line, MAX_PROCS, MAX_PROCS);
    procs = xrealloc(procs, sizeof *procs * (size_t)(nprocs + 1));
    p_alive = xrealloc(p_alive, sizeof *p_alive * (size_t)(nprocs + 1));
    memset(&procs[nprocs], 0, sizeof procs[nprocs]);
    procs[nprocs].name = xstrdup(t->s);
    procs[nprocs].pidfd = -1;
    p_alive[nprocs] = 1;
    return nprocs++;
}

static int check_alive(struct tok *t)
{
    int i = find_proc_name(t->s);
    if (i < 0) perr(t->col, "unknown process '%s'", t->s);
    if (!p_alive[i]) perr(t->col, "process '%s' has exited", t->s);
    return i;
}

/* ------------------------------------------------------------------ */
/* Operands                                                             */

static uint64_t number(const char *what, struct tok **tt)
{
    struct tok *t = need(what);
    uint64_t v;
    switch (parse_num(t->s, &v)) {
    case NUM_INVALID: perr(t->col, "expected %s, got '%s'", what, t->s);
    case NUM_TOO_LARGE: perr(t->col, "number too large: '%s'", t->s);
    }
    *tt = t;
    return v;
}

/* a page-aligned address in [ADDR_MIN, ADDR_MAX) */
static uint64_t address(const char *what, struct tok **tt)
{
    uint64_t v = number(what, tt);
    if (v < ADDR_MIN || v >= ADDR_MAX)
        perr((*tt)->col, "address 0x%llx is not in [0x100000000000, 0x700000000000)", (unsigned long long)v);
    if (v % PAGE) perr((*tt)->col, "address 0x%llx is not a multiple of 4096", (unsigned long long)v);
    return v;
}

static uint64_t page_count(const char *what, struct tok **tt)
{
    uint64_t v = number(what, tt);
    if (v < 1) perr((*tt)->col, "expected %s of at least 1, got '%s'", what, (*tt)->s);
    return v;
}

/* [addr, addr + pages pages) must end at or below ADDR_MAX; reported at `at` */
static void check_range(uint64_t addr, uint64_t pages, struct tok *at)
{
    uint64_t room = (ADDR_MAX - addr) / PAGE;
    if (pages > room)
        perr(at->col, "%llu pages at 0x%llx end beyond 0x700000000000 (at most %llu fit)",
             (unsigned long long)pages, (unsigned long long)addr, (unsigned long long)room);
}

static void address_and_pages(struct stmt *st)
{
    struct tok *at, *pt;
    st->addr = address("an address", &at);
    st->pages = page_count("a page count", &pt);
    check_range(st->addr, st->pages, pt);
}

static void address_and_optional_pages(struct stmt *st)
{
    struct tok *at, *pt;
    st->addr = address("an address", &at);
    st->pages = 1;
    if (!peek()) return;
    st->pages = page_count("a page count", &pt);
    check_range(st->addr, st->pages, pt);
}

static int protection(void)
{
    struct tok *t = need("a protection");
    int p = prot_named(t->s);
    if (p < 0) perr(t->col, "expected a protection (none, or r, w, x in that order such as rw), got '%s'", t->s);
    return p;
}

static void mapping_kind(struct stmt *st)
{
    struct tok *t = need("a mapping kind");
    if (strcmp(t->s, "anon-private") == 0) { st->mkind = K_ANON_PRIVATE; return; }
    if (strcmp(t->s, "anon-shared") == 0) { st->mkind = K_ANON_SHARED; return; }
    if (strcmp(t->s, "hugetlb-private") == 0) { st->mkind = K_HUGETLB_PRIVATE; large_trace = hugetlb_given = 1; return; }
    if (strcmp(t->s, "hugetlb-shared") == 0) { st->mkind = K_HUGETLB_SHARED; large_trace = hugetlb_given = 1; return; }
    size_t plen;
    if (strncmp(t->s, "file-private:", 13) == 0) { st->mkind = K_FILE_PRIVATE; plen = 13; }
    else if (strncmp(t->s, "file-shared:", 12) == 0) { st->mkind = K_FILE_SHARED; plen = 12; }
    else perr(t->col, "expected a mapping kind (anon-private, anon-shared, hugetlb-private, hugetlb-shared, "
              "file-private:FILE@PGOFF or file-shared:FILE@PGOFF), got '%s'", t->s);
    const char *rest = t->s + plen;
    int rest_col = colof(t->off + (int)plen);
    const char *at = strchr(rest, '@');
    if (!at) perr(rest_col, "expected FILE@PGOFF after the kind, got '%s'", rest);
    char *fname = xmalloc((size_t)(at - rest) + 1);
    memcpy(fname, rest, (size_t)(at - rest));
    if (!is_name(fname)) perr(rest_col, "expected a file name, got '%s'", fname);
    if (strlen(fname) > MAX_NAME) perr(rest_col, "name '%s' is longer than %d characters", fname, MAX_NAME);
    st->file = find_file_name(fname);
    if (st->file < 0) perr(rest_col, "unknown file '%s'", fname);
    free(fname);
    int pgoff_col = colof(t->off + (int)(at + 1 - t->s));
    switch (parse_num(at + 1, &st->pgoff)) {
    case NUM_INVALID: perr(pgoff_col, "expected a page offset, got '%s'", at + 1);
    case NUM_TOO_LARGE: perr(pgoff_col, "number too large: '%s'", at + 1);
    }
    if (st->pgoff > MAX_PGOFF)
        perr(pgoff_col, "page offset %llu is larger than %llu", (unsigned long long)st->pgoff,
             (unsigned long long)MAX_PGOFF);
}

/* a comma list of TTU flag names: `ignore_mlock,batch_flush` (checked only: the
 * oracle does not run unmap) */
static void ttu_flags(struct tok *t)
{
    const char *s = t->s;
    size_t len = strlen(s), start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ',') continue;
        int col = colof(t->off + (int)start);
        if (i == start) perr(col, "expected a TTU flag name, got %s", i == len ? "end of list" : "','");
        char name[32];
        size_t n = i - start;
        int known = 0;
        if (n < sizeof name) {
            memcpy(name, s + start, n);
            name[n] = 0;
            known = IN(name, ttu_names) >= 0;
        }
        if (!known) perr(col, "unknown TTU flag '%.*s'", (int)n, s + start);
        start = i + 1;
    }
}

/* ------------------------------------------------------------------ */
/* Statements other than operation lines                                */

/* `P ADDR PAGES[, P ADDR PAGES ...]`, stopping at the end or (expect) at `=` */
static void parse_targets(struct stmt *st, int is_expect)
{
    uint64_t total = 0;
    for (;;) {
        struct tok *pt = need("a process name"), *at, *nt;
        struct target tg;
        check_name_syntax(pt, "a process name");
        tg.proc = check_alive(pt);
        tg.addr = address("an address", &at);
        tg.pages = page_count("a page count", &nt);
        check_range(tg.addr, tg.pages, nt);
        total += tg.pages;
        if (total > MAX_OBSERVE_PAGES)
            perr(nt->col, "%s covers %llu pages, more than the limit of %llu", is_expect ? "expect" : "observe",
                 (unsigned long long)total, (unsigned long long)MAX_OBSERVE_PAGES);
        st->targets = xrealloc(st->targets, sizeof *st->targets * (size_t)(st->ntargets + 1));
        st->targets[st->ntargets++] = tg;
        struct tok *sep = peek();
        if (!sep) {
            if (is_expect) need("',' or '='");
            return;
        }
        if (strcmp(sep->s, ",") == 0) { pos++; continue; }
        if (is_expect && strcmp(sep->s, "=") == 0) return;
        perr(sep->col, "expected %s, got '%s'", is_expect ? "',' or '='" : "',' or end of line", sep->s);
    }
}

/* `observe contents ...` / `expect contents ...`: the word `contents` followed by
 * something other than a number (a process named contents is followed by its
 * address, which starts with a digit) */
static int contents_follows(void)
{
    return pos + 1 < end && strcmp(T[pos].s, "contents") == 0 && !(T[pos + 1].s[0] >= '0' && T[pos + 1].s[0] <= '9');
}

/* `observe hugetlb` / `expect hugetlb = ...`: the word `hugetlb` then the end
 * of the line (observe) or `=` (expect); a process named hugetlb is followed
 * by its address */
static int hugetlb_pool_follows(int is_expect)
{
    if (pos >= end || strcmp(T[pos].s, "hugetlb") != 0) return 0;
    if (pos + 1 == end) return 1;
    return is_expect && strcmp(T[pos + 1].s, "=") == 0;
}

/* NAME=N: N decimal, '-' for a negative one, no leading zero, at most 18 digits
 * (TraceParser's HugetlbPoolView.isToken) */
static int is_pool_token(const char *s, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(s, name, n) != 0 || s[n] != '=') return 0;
    const char *d = s + n + 1;
    int neg = *d == '-';
    if (neg) d++;
    size_t len = strlen(d);
    if (len == 0 || len > 18) return 0;
    for (size_t i = 0; i < len; i++)
        if (d[i] < '0' || d[i] > '9') return 0;
    if (len == 1 && d[0] == '0') return !neg;
    return d[0] != '0';
}

static void parse_hugetlb_pool(struct stmt *st, int is_expect)
{
    static const char *names[4] = { "total", "free", "resv", "surplus" };
    pos++;  /* hugetlb */
    st->kind = is_expect ? S_EXPECT : S_OBSERVE;
    st->hugetlb_pool = 1;
    large_trace = 1;  /* the pool is the machine's: run alone, counted from the start */
    if (!is_expect) return;
    need("'='");
    st->tokens = xmalloc(sizeof *st->tokens * 4);
    for (int i = 0; i < 4; i++) {
        char what[64];
        snprintf(what, sizeof what, "'%s=N' (the pool's %s count)", names[i], names[i]);
        struct tok *t = need(what);
        if (!is_pool_token(t->s, names[i]))
            perr(t->col, "expected '%s=N' (the pool's %s count, a decimal number), got '%s'", names[i], names[i],
                 t->s);
        st->tokens[st->ntokens++] = xstrdup(t->s);
    }
    struct tok *x = peek();
    if (x) perr(x->col, "unexpected '%s' after the hugetlb pool's four counts", x->s);
}

static void parse_keyword_statement(struct tok *kw, struct stmt *st)
{
    if (strcmp(kw->s, "file") == 0) {
        struct tok *n = need("a file name"), *pg;
        check_name_syntax(n, "a file name");
        if (find_file_name(n->s) >= 0) perr(n->col, "file '%s' is already declared", n->s);
        uint64_t pages = number("a page count", &pg);
        if (pages < 1 || pages > MAX_FILE_PAGES)
            perr(pg->col, "file size must be between 1 and %llu pages, got '%s'",
                 (unsigned long long)MAX_FILE_PAGES, pg->s);
        files = xrealloc(files, sizeof *files * (size_t)(nfiles + 1));
        files[nfiles].name = xstrdup(n->s);
        files[nfiles].pages = pages;
        files[nfiles].created = 0;
        files[nfiles].watch_fd = -1;
        files[nfiles].cached = 0;
        st->kind = S_FILE;
        st->file = nfiles++;
        st->pages = pages;
    } else if (strcmp(kw->s, "proc") == 0) {
        struct tok *n = need("a process name");
        check_new_proc(n);
        st->kind = S_PROC;
        st->child = new_proc(n);
        if (!seen_process_stmt) seen_process_stmt = cur_line;
    } else if (strcmp(kw->s, "swap") == 0) {
        struct tok *n;
        if (swap_line) perr(kw->col, "'swap' is given twice (first on line %d)", swap_line);
        if (seen_process_stmt)
            perr(kw->col, "'swap' must come before any process statement (line %d is one)", seen_process_stmt);
        uint64_t v = number("a slot count", &n);
        if (v > MAX_SWAP_SLOTS)
            perr(n->col, "swap size must be at most %llu slots, got '%s'", (unsigned long long)MAX_SWAP_SLOTS, n->s);
        swap_line = cur_line;
        st->kind = S_SWAP;
        st->pages = v;
        if (v != 0)
            set_skip("line %d: 'swap %s': the oracle runs without swap (no swap device is configured)",
                     cur_line, n->s);
    } else if (strcmp(kw->s, "observe") == 0 && hugetlb_pool_follows(0)) {
        parse_hugetlb_pool(st, 0);
    } else if (strcmp(kw->s, "observe") != 0 && hugetlb_pool_follows(1)) { /* expect hugetlb */
        parse_hugetlb_pool(st, 1);
    } else if (strcmp(kw->s, "observe") == 0) {
        st->kind = S_OBSERVE;
        if (contents_follows()) { pos++; st->contents = 1; }
        parse_targets(st, 0);
    } else if (contents_follows()) { /* expect contents */
        st->kind = S_EXPECT;
        st->contents = 1;
        pos++;
        parse_targets(st, 1);
        struct tok *eq = need("'='");
        uint64_t total = 0;
        for (int i = 0; i < st->ntargets; i++) total += st->targets[i].pages;
        st->tokens = xmalloc(sizeof *st->tokens * (size_t)(end - pos + 1));
        while (pos < end) {
            struct tok *t = &T[pos++];
            if (!is_content_token(t->s))
                perr(t->col, "expected a content token (- or v<hex value>, such as v0 or v1f), got '%s'", t->s);
            if ((uint64_t)st->ntokens >= total)
                perr(t->col, "too many content tokens: the targets cover %llu page%s", (unsigned long long)total,
                     total == 1 ? "" : "s");
            st->tokens[st->ntokens++] = xstrdup(t->s);
        }
        if ((uint64_t)st->ntokens != total)
            perr(pos > 0 ? T[pos - 1].end : eq->end, "expected %llu content token%s (one per page), got %d",
                 (unsigned long long)total, total == 1 ? "" : "s", st->ntokens);
    } else { /* expect */
        st->kind = S_EXPECT;
        parse_targets(st, 1);
        struct tok *eq = need("'='");  /* parse_targets stops only at '=' */
        uint64_t total = 0;
        for (int i = 0; i < st->ntargets; i++) total += st->targets[i].pages;
        st->tokens = xmalloc(sizeof *st->tokens * (size_t)(end - pos + 1));
        while (pos < end) {
            struct tok *t = &T[pos++];
            int large = 0;
            const char *why = obs_token_problem(t->s, &large);
            if (why == OBS_NO_SUCH_TOKEN)
                perr(t->col, "expected an observation token (-, Z, S, M, H, D, X, A<id>:<mapcount>, F<id>:<mapcount>, "
                     "K<id>:<mapcount>, A<id>+<sub>:<mapcount>, T<id>+<sub>:<mapcount>*, Z*, M* or H*; '*' marks a PMD "
                     "leaf), got '%s'", t->s);
            if (why) perr(t->col, "expected an observation token, got '%s': %s", t->s, why);
            if (large) large_trace = 1;
            if ((uint64_t)st->ntokens >= total)
                perr(t->col, "too many observation tokens: the targets cover %llu pages", (unsigned long long)total);
            st->tokens[st->ntokens++] = xstrdup(t->s);
        }
        if ((uint64_t)st->ntokens != total)
            perr(pos > 0 ? T[pos - 1].end : eq->end, "expected %llu observation tokens (one per page), got %d",
                 (unsigned long long)total, st->ntokens);
    }
}

/* ------------------------------------------------------------------ */
/* Large-page settings                                                  */

/* `thp enabled MODE`, `thp SIZE MODE` and `hugetlb PAGES` come before any
 * process statement (as `swap`); `thp shrink` may come anywhere.  As the
 * model's parser (TraceParser.parseTHP, parseHugetlb): the placement is
 * checked first, at the keyword, whatever words follow; then the words, with
 * the model's messages. */
static void check_setting_placement(struct tok *kw)
{
    if (seen_process_stmt)
        perr(kw->col, "'%s' must come before any process statement (line %d is one)", kw->s, seen_process_stmt);
}

static void parse_large_setting(struct tok *kw, struct stmt *st)
{
    large_trace = 1;
    if (strcmp(kw->s, "hugetlb") == 0) {
        struct tok *n;
        if (hugetlb_line) perr(kw->col, "'hugetlb' is given twice (first on line %d)", hugetlb_line);
        check_setting_placement(kw);
        uint64_t v = number("a huge page count", &n);
        if (v > MAX_HUGETLB_PAGES)
            perr(n->col, "the hugetlb pool must be at most %d pages, got '%s'", MAX_HUGETLB_PAGES, n->s);
        hugetlb_line = cur_line;
        hugetlb_given = 1;
        hugetlb_pages = v;
        st->kind = S_HUGETLB;
        st->pages = v;
        return;
    }
    thp_statements = 1;
    if (peek() && strcmp(peek()->s, "shrink") == 0) {
        pos++;
        st->kind = S_THP_SHRINK;
        return;
    }
    check_setting_placement(kw);
    struct tok *w = need("'enabled', a size (16K 32K 64K 128K 256K 512K 1M 2M) or 'shrink' after 'thp'");
    int size = -1;
    if (strcmp(w->s, "enabled") != 0) {
        size = IN(w->s, thp_size_names);
        if (size < 0)
            perr(w->col, "expected 'enabled', a size (16K 32K 64K 128K 256K 512K 1M 2M) or 'shrink' after 'thp', "
                 "got '%s'", w->s);
    }
    const char *modes = size < 0 ? "a THP mode (always, madvise or never)"
                                 : "a THP size mode (always, inherit, madvise or never)";
    struct tok *m = need(modes);
    int mode = IN(m->s, thp_mode_names);
    if (mode < 0 || (size < 0 && mode == THP_INHERIT))
        perr(m->col, "expected %s, got '%s'", modes, m->s);
    if (size < 0) {
        st->kind = S_THP_ENABLED;
        thp_enabled_mode = mode;
    } else {
        st->kind = S_THP_SIZE;
        st->pages = (uint64_t)size;
        thp_size_mode[size] = mode;
    }
    st->advice = mode;
}

/* ------------------------------------------------------------------ */
/* Operation lines                                                      */

static void parse_operation(struct tok *first, struct stmt *st)
{
    struct tok *t;
    if ((t = peek()) && strcmp(t->s, "=") == 0) {
        /* P2 = fork P */
        check_new_proc(first);
        pos++;
        struct tok *f = need("'fork'");
        if (strcmp(f->s, "fork") != 0) perr(f->col, "expected 'fork', got '%s'", f->s);
        struct tok *pp = need("a process name");
        check_name_syntax(pp, "a process name");
        st->kind = S_FORK;
        st->proc = check_alive(pp);
        st->child = new_proc(first);
        return;
    }

    int known = find_proc_name(first->s) >= 0;
    if (!is_name(first->s)) perr(first->col, "unknown statement '%s'", first->s);
    if (!peek()) {
        if (known) {
            char what[160];
            snprintf(what, sizeof what, "an operation after '%s'", first->s);
            need(what);
        }
        perr(first->col, "unknown statement '%s'", first->s);
    }
    struct tok *vt = need("an operation");
    const char *v = vt->s;
    if (IN(v, verbs) < 0) {
        if (known) perr(vt->col, "unknown operation '%s'", v);
        perr(first->col, "unknown statement '%s'", first->s);
    }
    check_name_syntax(first, "a process name");
    st->proc = check_alive(first);

    struct tok *at, *pt;
    if (strcmp(v, "exit") == 0) {
        st->kind = S_EXIT;
        p_alive[st->proc] = 0;
    } else if (strcmp(v, "mmap") == 0) {
        st->kind = S_MMAP;
        address_and_pages(st);
        st->prot = protection();
        mapping_kind(st);
        if ((t = peek()) && strcmp(t->s, "noreserve") == 0) {
            pos++;
            st->noreserve = 1;
            large_trace = 1;
        }
    } else if (strcmp(v, "munmap") == 0 || strcmp(v, "mlock") == 0 || strcmp(v, "munlock") == 0) {
        st->kind = strcmp(v, "munmap") == 0 ? S_MUNMAP : (strcmp(v, "mlock") == 0 ? S_MLOCK : S_MUNLOCK);
        address_and_pages(st);
    } else if (strcmp(v, "mprotect") == 0) {
        st->kind = S_MPROTECT;
        address_and_pages(st);
        st->prot = protection();
    } else if (strcmp(v, "mremap") == 0) {
        struct tok *nt;
        st->kind = S_MREMAP;
        st->addr = address("an address", &at);
        st->pages = page_count("an old page count", &pt);
        check_range(st->addr, st->pages, pt);
        st->new_pages = page_count("a new page count", &nt);
        if (peek()) {
            struct tok *tt;
            st->to = address("a destination address", &tt);
            st->has_to = 1;
            check_range(st->to, st->new_pages, tt);
        } else {
            /* resizing in place grows the range at ADDR: it must stay below the limit too */
            check_range(st->addr, st->new_pages, nt);
        }
    } else if (strcmp(v, "write") == 0) {
        /* P write ADDR [PAGES] [value=V] */
        st->kind = S_WRITE;
        st->addr = address("an address", &at);
        st->pages = 1;
        if ((t = peek()) && strncmp(t->s, "value=", 6) != 0) {
            st->pages = page_count("a page count", &pt);
            check_range(st->addr, st->pages, pt);
        }
        if ((t = peek()) && strncmp(t->s, "value=", 6) == 0) {
            /* every written page holds the pattern of V */
            pos++;
            switch (parse_num(t->s + 6, &st->value)) {
            case NUM_INVALID: perr(t->col + 6, "expected a content value (decimal or 0x hex) after 'value=', got '%s'", t->s + 6);
            case NUM_TOO_LARGE: perr(t->col + 6, "number too large: '%s'", t->s + 6);
            }
            st->has_value = 1;
        }
    } else if (strcmp(v, "read") == 0) {
        st->kind = S_READ;
        address_and_optional_pages(st);
    } else if (strcmp(v, "madvise") == 0) {
        st->kind = S_MADVISE;
        address_and_pages(st);
        struct tok *a = need("an advice");
        st->advice = IN(a->s, advice_names);
        if (st->advice < 0) perr(a->col, "expected an advice, got '%s'", a->s);
        if (st->advice >= FIRST_LARGE_ADVICE) large_trace = 1;
    } else {
        /* model only: unmap, reclaim, migrate, referenced, mkclean, poison, device, exclusive */
        st->kind = S_MODEL_ONLY;
        if (strcmp(v, "device") == 0) {
            /* P device ADDR [PAGES] [coherent] */
            st->addr = address("an address", &at);
            st->pages = 1;
            if ((t = peek()) && strcmp(t->s, "coherent") != 0) {
                st->pages = page_count("a page count", &pt);
                check_range(st->addr, st->pages, pt);
            }
            if ((t = peek()) && strcmp(t->s, "coherent") == 0) pos++;
        } else if (strcmp(v, "unmap") == 0) {
            /* P unmap ADDR [PAGES] [FLAGS]: PAGES when the next token starts with a digit */
            st->addr = address("an address", &at);
            st->pages = 1;
            if ((t = peek()) && t->s[0] >= '0' && t->s[0] <= '9') {
                st->pages = page_count("a page count", &pt);
                check_range(st->addr, st->pages, pt);
            }
            if ((t = peek())) {
                pos++;
                ttu_flags(t);
            }
        } else {
            address_and_optional_pages(st);
        }
        if (strcmp(v, "split") == 0)
            set_skip("line %d: 'split' is a model-only statement (this kernel is in lockdown: debugfs "
                     "split_huge_pages is closed to writes)", cur_line);
        else
            set_skip("line %d: '%s' is a model-only statement (the live kernel offers no way to run it)",
                     cur_line, v);
    }
}

/* ------------------------------------------------------------------ */
/* Lines                                                                */

static void parse_line(char *line, size_t n)
{
    long bad = utf8_bad((const unsigned char *)line, n);
    L = line;
    if (bad >= 0) perr(colof((int)bad), "invalid UTF-8 (byte 0x%02X)", (unsigned char)line[bad]);
    if (n > 0 && line[n - 1] == '\r') line[--n] = 0;
    /* a NUL is an ordinary character, never valid in a token: any other such one stands for it */
    for (size_t i = 0; i < n; i++)
        if (line[i] == 0) line[i] = 1;

    NT = tokenize(&T);
    if (NT == 0) { free(T); return; }
    if (!strcmp(T[0].s, "observe") || !strcmp(T[0].s, "expect")) NT = split_target_commas(&T, NT);

    struct stmt st;
    memset(&st, 0, sizeof st);
    st.line = cur_line;
    st.proc = st.child = st.file = -1;

    int arrow = -1;
    for (int i = 0; i < NT && arrow < 0; i++)
        if (strcmp(T[i].s, "=>") == 0) arrow = i;
    end = arrow >= 0 ? arrow : NT;
    end_col = arrow >= 0 ? T[arrow].col : T[end - 1].end;
    end_what = arrow >= 0 ? "'=>'" : "end of line";
    pos = 1;
    struct tok *first = &T[0];

    if (strcmp(first->s, "ksm") == 0 && NT > 1 && strcmp(T[1].s, "scan") == 0) {
        /* ksm scan [PASSES]: PASSES full scans of ksmd (run_ksm_scan); "scan" is
         * no verb, so a process may still be named ksm */
        pos = 2;
        st.kind = S_KSM_SCAN;
        st.pages = 1;
        if (peek()) {
            struct tok *nt;
            uint64_t v = number("a pass count", &nt);
            if (v < 1 || v > MAX_KSM_PASSES)
                perr(nt->col, "ksm scan passes must be between 1 and %d, got '%s'", MAX_KSM_PASSES, nt->s);
            st.pages = v;
        }
        if (peek()) perr(T[pos].col, "unexpected '%s' after the statement", T[pos].s);
        if (arrow >= 0) perr(T[arrow].col, "'=> RESULT' is only allowed on operation lines");
    } else if ((strcmp(first->s, "thp") == 0 || strcmp(first->s, "hugetlb") == 0) &&
               (NT == 1 || (strcmp(T[1].s, "=") != 0 && IN(T[1].s, verbs) < 0))) {
        /* thp enabled MODE, thp SIZE MODE, thp shrink, hugetlb PAGES: the
         * second word is no verb, so a process may still be named thp (alone
         * on its line, `thp` or `hugetlb` is the setting missing its words) */
        parse_large_setting(first, &st);
        if (peek()) perr(T[pos].col, "unexpected '%s' after the statement", T[pos].s);
        if (arrow >= 0) perr(T[arrow].col, "'=> RESULT' is only allowed on operation lines");
    } else if (IN(first->s, reserved) >= 0) {
        if (NT > 1 && strcmp(T[1].s, "=") == 0)
            perr(first->col, "'%s' is a reserved word and cannot name a process", first->s);
        parse_keyword_statement(first, &st);
        if (peek()) perr(T[pos].col, "unexpected '%s' after the statement", T[pos].s);
        if (arrow >= 0) perr(T[arrow].col, "'=> RESULT' is only allowed on operation lines");
    } else {
        parse_operation(first, &st);
        if (peek()) perr(T[pos].col, "unexpected '%s' after the operation", T[pos].s);
        if (arrow >= 0) {
            if (arrow + 1 >= NT) perr(T[arrow].end, "expected a result after '=>', got end of line");
            struct tok *r = &T[arrow + 1];
            if (!is_result_token(r->s)) perr(r->col, "expected a result, got '%s'", r->s);
            if (arrow + 2 < NT) perr(T[arrow + 2].col, "unexpected '%s' after the result", T[arrow + 2].s);
            st.want = xstrdup(r->s);
        }
        if (!seen_process_stmt) seen_process_stmt = cur_line;
    }

    if (nstmts == cap_stmts) {
        cap_stmts = cap_stmts ? cap_stmts * 2 : 64;
        stmts = xrealloc(stmts, sizeof *stmts * (size_t)cap_stmts);
    }
    stmts[nstmts++] = st;
    for (int i = 0; i < NT; i++) free(T[i].s);
    free(T);
}

/* The whole trace, read as `rmap replay` reads it (readFileBytes in
 * Sources/RmapTools/ReplayFile.swift): at most MAX_TRACE_BYTES (an endless
 * or huge file is refused, not read until memory runs out), a directory
 * refused, a read error reported, never taken for the end of the file.
 * FILE: error: MESSAGE and exit status 2. */
static char *read_trace(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: error: cannot open: %s\n", path, strerror(errno));
        exit(2);
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: error: is a directory, not a trace file\n", path);
        exit(2);
    }
    size_t cap = 65536, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {   /* at most the limit and one read more */
            cap = cap * 2 < MAX_TRACE_BYTES + 65536 ? cap * 2 : MAX_TRACE_BYTES + 65536;
            buf = xrealloc(buf, cap + 1);
        }
        size_t want = cap - n;
        if (want > 65536) want = 65536;
        size_t got = fread(buf + n, 1, want, f);
        n += got;
        if (n > MAX_TRACE_BYTES) {
            fprintf(stderr, "%s: error: trace larger than %llu bytes\n", path, (unsigned long long)MAX_TRACE_BYTES);
            exit(2);
        }
        if (got < want) {
            if (ferror(f)) {
                fprintf(stderr, "%s: error: read failed: %s\n", path, strerror(errno));
                exit(2);
            }
            break;
        }
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

void parse_file(const char *path)
{
    size_t len;
    char *text = read_trace(path, &len);
    char *line = NULL;
    size_t cap = 0;
    cur_line = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        cur_line = 1;
        perr(1, "the trace starts with a UTF-8 byte order mark (bytes EF BB BF), which a trace may not have: "
                "save it as UTF-8 without a BOM");
    }
    /* lines end at '\n' (the last one may not); each is copied with a NUL
     * after it, as parse_line() wants; a trailing '\n' ends no extra line */
    for (size_t start = 0; start < len;) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t n = nl ? (size_t)(nl - (text + start)) : len - start;
        if (n + 1 > cap) { cap = n + 1; line = xrealloc(line, cap); }
        memcpy(line, text + start, n);
        line[n] = 0;
        cur_line++;
        parse_line(line, n);
        start += n + (nl ? 1 : 0);
    }
    free(line);
    free(text);
}
