/*
 * observe.c - observation: the canonical tokens of `observe` and `expect`
 * (docs/oracle.md) from /proc/PID/pagemap, /proc/kpagecount and /proc/kpageflags,
 * read while every trace process is blocked, and the VMAs of `observe`
 * from /proc/PID/maps.  setup_checks() checks first that PFNs are readable
 * (root, CAP_SYS_ADMIN) and skips the trace otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "oracle.h"

static int kpagecount_fd = -1, kpageflags_fd = -1;

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN_MASK ((1ULL << 55) - 1)

#define KPF_ANON 12
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_HUGE 17
#define KPF_KSM 21
#define KPF_THP 22
#define KPF_ZERO_PAGE 24

static const char *kpf_names[] = {
    "locked", "error", "referenced", "uptodate", "dirty", "lru", "active", "slab",
    "writeback", "reclaim", "buddy", "mmap", "anon", "swapcache", "swapbacked",
    "compound_head", "compound_tail", "huge", "unevictable", "hwpoison", "nopage",
    "ksm", "thp", "offline", "zero_page", "idle", "pgtable"
};

/* PAGEMAP_SCAN (linux/fs.h, 6.7 and later), declared here for older headers */
struct pm_scan_arg_ {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
struct page_region_ { uint64_t start, end, categories; };
#define PAGEMAP_SCAN_ _IOWR('f', 16, struct pm_scan_arg_)
#define PAGE_IS_HUGE_ (1ULL << 6)

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
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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
/* Whether the VMA of `pe` holding `addr` is readable ('r' in /proc/PID/maps). */
static int readable(const char *maps, uint64_t addr)
{
    for (const char *ln = maps; ln && *ln;) {
        unsigned long long s, e;
        char perms[8];
        if (sscanf(ln, "%llx-%llx %7s", &s, &e, perms) == 3 && addr >= s && addr < e) return perms[0] == 'r';
        ln = strchr(ln, '\n');
        if (ln) ln++;
    }
    return 0;
}

/* `observe contents`: per page, `v` and the 8 bytes the page holds (read
 * through /proc/PID/mem) when a read needs no fault: the page is present
 * (pagemap) in a readable VMA; else `-` (no page, a swap entry, PROT_NONE).
 * Reading a present page through /proc/PID/mem faults nothing in. */
static void observe_contents(struct stmt *st, struct target *tg, char **toks, int *ntoks)
{
    struct proc_ent *pe = &procs[tg->proc];
    int pm = open_proc_file(tg->proc, "pagemap");
    int mem = open_proc_file(tg->proc, "mem");
    int mfd = open_proc_file(tg->proc, "maps");
    char *maps = read_whole(mfd);
    close(mfd);
    for (uint64_t i = 0; i < tg->pages; i++) {
        uint64_t addr = tg->addr + i * PAGE, e = pread_u64(pm, addr / PAGE, "pagemap");
        char tok[32];
        strcpy(tok, "-");
        if ((e & PM_PRESENT) && readable(maps, addr)) {
            uint64_t v;
            ssize_t n;
            do n = pread(mem, &v, 8, (off_t)addr); while (n < 0 && errno == EINTR);
            if (n != 8) die("line %d: read %s's page at %#llx: %s", st->line, pe->name, (unsigned long long)addr,
                            n < 0 ? strerror(errno) : "short read");
            snprintf(tok, sizeof tok, "v%llx", (unsigned long long)v);
        }
        toks[(*ntoks)++] = xstrdup(tok);
        if (verbose)
            fprintf(stderr, "  line %d %s %#llx: %s pm=%016llx\n", st->line, pe->name, (unsigned long long)addr, tok,
                    (unsigned long long)e);
    }
    free(maps);
    close(mem);
    close(pm);
}

/* Per page of the target, whether a PMD leaf maps it: PAGEMAP_SCAN's
 * PAGE_IS_HUGE (a PMD-mapped THP, the huge zero page, a hugetlb page; not a
 * THP whose PMD was split into PTEs). */
static unsigned char *pmd_leaves(int pm, struct target *tg, struct proc_ent *pe)
{
    unsigned char *leaf = xmalloc((size_t)tg->pages);
    size_t nvec = (size_t)(tg->pages < 4096 ? tg->pages : 4096);
    struct page_region_ *vec = xmalloc(sizeof *vec * nvec);
    uint64_t start = tg->addr, end = tg->addr + tg->pages * PAGE;
    while (start < end) {
        struct pm_scan_arg_ a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.start = start;
        a.end = end;
        a.vec = (uint64_t)(uintptr_t)vec;
        a.vec_len = nvec;
        a.category_anyof_mask = PAGE_IS_HUGE_;
        a.return_mask = PAGE_IS_HUGE_;
        long n = ioctl(pm, PAGEMAP_SCAN_, &a);
        if (n < 0) skip("PAGEMAP_SCAN on /proc/%d/pagemap: %s (needed for large pages)", (int)pe->pid,
                        strerror(errno));
        for (long r = 0; r < n; r++)
            for (uint64_t a2 = vec[r].start; a2 < vec[r].end; a2 += PAGE)
                if (a2 >= tg->addr && a2 < end) leaf[(a2 - tg->addr) / PAGE] = 1;
        if (a.walk_end <= start) break;
        start = a.walk_end;
    }
    free(vec);
    return leaf;
}

/* `observe`: per page, the frame's token (Z, A/F/K<id>:<mapcount>, S or -),
 * frames named canonically through `seen`. */
static void frame_tokens(struct stmt *st, struct target *tg, char **toks, int *ntoks, uint64_t *seen, int *nseen)
{
    struct proc_ent *pe = &procs[tg->proc];
    int pm = open_proc_file(tg->proc, "pagemap");
    uint64_t *ent = xmalloc((size_t)tg->pages * 8);
    size_t want = (size_t)tg->pages * 8, got = 0;
    while (got < want) {
        ssize_t n = pread(pm, (char *)ent + got, want - got, (off_t)((tg->addr / PAGE) * 8 + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) die("read pagemap of %s: %s", pe->name, n < 0 ? strerror(errno) : "short read");
        got += (size_t)n;
    }
    /* a large-page trace: which pages a PMD leaf maps (PAGE_IS_HUGE) */
    unsigned char *leaf = large_trace ? pmd_leaves(pm, tg, pe) : NULL;
    close(pm);
    uint64_t last_pfn = 0, last_head = 0;   /* the previous large page: its head */
    for (uint64_t i = 0; i < tg->pages; i++) {
        uint64_t e = ent[i];
        char tok[96];
        const char *star = leaf && leaf[i] ? "*" : "";
        uint64_t pfn = e & PM_PFN_MASK, flags = 0, count = 0, head = 0;
        if (e & PM_PRESENT) {
            if (pfn == 0) skip("pagemap gives PFN 0 for a present page (PFNs are hidden)");
            flags = pread_u64(kpageflags_fd, pfn, "/proc/kpageflags");
            count = pread_u64(kpagecount_fd, pfn, "/proc/kpagecount");
            int large = (flags & ((1ULL << KPF_COMPOUND_HEAD) | (1ULL << KPF_COMPOUND_TAIL))) != 0;
            if (flags & (1ULL << KPF_ZERO_PAGE)) {
                snprintf(tok, sizeof tok, "Z%s", star);
            } else {
                /* a large folio is named by its head: the PFN of the
                 * COMPOUND_HEAD page at or below, within the largest folio */
                head = pfn;
                if (large && (flags & (1ULL << KPF_COMPOUND_TAIL))) {
                    if (last_pfn && pfn == last_pfn + 1) {
                        head = last_head;
                    } else {
                        uint64_t k;
                        for (k = 1; k <= pfn && k < 512; k++) {
                            uint64_t f = pread_u64(kpageflags_fd, pfn - k, "/proc/kpageflags");
                            if (f & (1ULL << KPF_COMPOUND_HEAD)) break;
                            if (!(f & (1ULL << KPF_COMPOUND_TAIL))) { k = 512; break; }
                        }
                        if (k >= 512 || k > pfn)
                            die("line %d: no head page below the tail page at PFN %#llx", st->line,
                                (unsigned long long)pfn);
                        head = pfn - k;
                    }
                }
                if (large) { last_pfn = pfn; last_head = head; }
                int id = 0;
                for (int k = 0; k < *nseen; k++)
                    if (seen[k] == head) { id = k + 1; break; }
                if (!id) { seen[(*nseen)++] = head; id = *nseen; }
                char kind = (flags & (1ULL << KPF_HUGE)) ? 'T'
                          : (flags & (1ULL << KPF_KSM)) ? 'K'
                          : (flags & (1ULL << KPF_ANON)) ? 'A' : 'F';
                if (large)
                    snprintf(tok, sizeof tok, "%c%d+%llu:%llu%s", kind, id, (unsigned long long)(pfn - head),
                             (unsigned long long)count, star);
                else
                    snprintf(tok, sizeof tok, "%c%d:%llu%s", kind, id, (unsigned long long)count, star);
            }
        } else if (e & PM_SWAP) {
            snprintf(tok, sizeof tok, "S%s", star);
        } else {
            strcpy(tok, "-");
        }
        toks[(*ntoks)++] = xstrdup(tok);
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
    free(leaf);
    free(ent);
}

void observe(struct stmt *st, char ***toks_out, int *ntoks_out, struct strbuf *vmas)
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
        if (st->contents) observe_contents(st, tg, toks, &ntoks);
        else frame_tokens(st, tg, toks, &ntoks, seen, &nseen);
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
                        } else if (strncmp(path, "/anon_hugepage", 14) == 0) {
                            snprintf(kind, sizeof kind, "hugetlb");   /* MAP_HUGETLB, private or shared */
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

void setup_checks(void)
{
    if (geteuid() != 0) skip("not running as root: /proc/PID/pagemap hides PFNs");
    kpagecount_fd = open("/proc/kpagecount", O_RDONLY | O_CLOEXEC);
    if (kpagecount_fd < 0) skip("cannot open /proc/kpagecount: %s", strerror(errno));
    kpageflags_fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
    if (kpageflags_fd < 0) skip("cannot open /proc/kpageflags: %s", strerror(errno));
    /* is the PFN visible? touch a page of our own and look it up */
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap: %s", strerror(errno));
    p[0] = 1;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
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

