/*
 * large.c - large pages (trace-format.md "Large pages", docs/oracle.md): a
 * trace that uses any of the additions is a large-page trace.  THP and
 * hugetlb settings are global to the machine, so such a trace runs alone (a
 * lock, held by the watchdog), and every value it changes is saved with the
 * watchdog first, so that it comes back however the oracle ends (guard.c).
 *
 * large_take(), in the order the measured traps demand (docs/oracle.md):
 *   1. the lock;
 *   2. shrink_underused 0 before max_ptes_none 0 (with shrink_underused 1,
 *      max_ptes_none 0 makes every THP with one zero-filled page "underused",
 *      split by the next shrinker run), use_zero_page 1;
 *   3. the khugepaged knobs: max_ptes_none, max_ptes_shared, max_ptes_swap 0,
 *      alloc_sleep_millisecs and, last, scan_sleep_millisecs long.  Writing
 *      scan_sleep_millisecs wakes khugepaged for one scan at once: let it
 *      pass (no trace process exists yet);
 *   4. if the trace's settings enable PMD THPs: a region of the oracle's own
 *      (MADV_HUGEPAGE, MADV_DONTFORK, one read fault: the huge zero page,
 *      nothing to collapse) registers the oracle with khugepaged, whose
 *      first registration wakes it for a scan at once; let that pass too.
 *      From then on khugepaged sleeps for the long scan_sleep_millisecs and
 *      a trace process that registers does not wake it (the list is not
 *      empty);
 *   5. `enabled` and every hugepages-<N>kB/enabled of the spec's sizes that
 *      exists, as the trace's `thp` statements leave them (or all never);
 *   6. the hugetlb pool: nr_hugepages such that HugePages_Free -
 *      HugePages_Rsvd is the trace's PAGES, checked (exit 77 if the machine
 *      cannot supply it);
 *   7. the baseline of khugepaged/pages_collapsed.
 * large_finish() reads pages_collapsed again: if it moved, khugepaged acted
 * during the run and the run is void (77).  Around every read and write the
 * fault-fallback counters are read: a fault that got a smaller folio than
 * the settings allow (an allocation failed) is "cannot run here" (77).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oracle.h"

#define THP_DIR "/sys/kernel/mm/transparent_hugepage/"
#define KHP_DIR THP_DIR "khugepaged/"
#define NR_HUGEPAGES "/proc/sys/vm/nr_hugepages"
#define LARGE_LOCK "/tmp/rmap-oracle-large.lock"   /* the same file for every oracle */
#define LONG_SLEEP_MS "86400000"                   /* a day: khugepaged never wakes by itself */
#define SCAN_PASS_US 300000                        /* time for one khugepaged scan to pass */

static const int size_kb[THP_NSIZES] = { 16, 32, 64, 128, 256, 512, 1024, 2048 };
static uint64_t collapsed_before;
static struct { long total, free, rsvd, surp; } pool_base; /* the pool before the first statement */
static uint64_t fallback_before;
static void *own_region;
static long foreign_rsvd;        /* --foreign-hugetlb-resv compensate: the reservations of others */

static int read_value(const char *path, char *buf, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t r = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (r < 0) { errno = e; return -1; }
    buf[r] = 0;
    char *nl = strchr(buf, '\n');
    if (nl) *nl = 0;
    return 0;
}


static uint64_t read_u64(const char *path)
{
    char b[64];
    if (read_value(path, b, sizeof b)) die("cannot read %s: %s", path, strerror(errno));
    return strtoull(b, NULL, 10);
}

/* The value to write back: a mode file shows "always [madvise] never" and
 * takes "madvise". */
static void current_value(const char *path, char *out, size_t n)
{
    char b[256];
    if (read_value(path, b, sizeof b)) die("cannot read %s: %s", path, strerror(errno));
    char *l = strchr(b, '['), *r = l ? strchr(l, ']') : NULL;
    if (l && r) {
        *r = 0;
        snprintf(out, n, "%s", l + 1);
    } else {
        snprintf(out, n, "%s", b);
    }
}

/* Saves the current value of PATH with the watchdog, then writes VALUE. */
static void save_and_set(const char *path, const char *value)
{
    char old[256];
    current_value(path, old, sizeof old);
    guard_save(path, old);
    if (write_sysfs_value(path, value)) die("cannot set %s to %s: %s", path, value, strerror(errno));
    if (verbose) fprintf(stderr, "large: %s: %s -> %s\n", path, old, value);
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void size_path(int i, const char *file, char *buf, size_t n)
{
    snprintf(buf, n, THP_DIR "hugepages-%dkB/%s", size_kb[i], file);
}

/* Whether these settings let a PMD THP be made (hugepage_pmd_enabled) */
static int pmd_enabled(int enabled, int pmd)
{
    if (pmd == THP_INHERIT) pmd = enabled;
    return pmd == THP_ALWAYS || pmd == THP_MADVISE;
}

/* HugePages_* of /proc/meminfo */
struct pool { long total, free, rsvd, surp; };

static void read_pool(struct pool *p)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) die("cannot open /proc/meminfo: %s", strerror(errno));
    char ln[256];
    memset(p, 0, sizeof *p);
    p->total = p->free = p->rsvd = p->surp = -1;
    while (fgets(ln, sizeof ln, f)) {
        sscanf(ln, "HugePages_Total: %ld", &p->total);
        sscanf(ln, "HugePages_Free: %ld", &p->free);
        sscanf(ln, "HugePages_Rsvd: %ld", &p->rsvd);
        sscanf(ln, "HugePages_Surp: %ld", &p->surp);
    }
    fclose(f);
    if (p->total < 0 || p->free < 0 || p->rsvd < 0 || p->surp < 0) die("no HugePages_* in /proc/meminfo");
}

/* The oracle's own khugepaged registration (step 4): a PMD-aligned 2 MiB
 * region, VM_HUGEPAGE, not inherited by the workers, read once (a fault in
 * a VM_HUGEPAGE region registers the mm: the huge zero page). */
static void register_with_khugepaged(void)
{
    size_t len = 4u << 20;
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap: %s", strerror(errno));
    char *a = (char *)(((uintptr_t)p + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1));
    if (madvise(a, 2u << 20, MADV_HUGEPAGE) || madvise(p, len, MADV_DONTFORK))
        die("madvise of the oracle's own region: %s", strerror(errno));
    (void)*(volatile char *)a;
    own_region = p;
}

void large_take(void)
{
    char path[256], cur[64];
    if (!exists(THP_DIR "enabled")) skip("the trace uses large pages and " THP_DIR " does not exist");
    /* every size the trace asks for must exist here */
    for (int i = 0; i < THP_NSIZES; i++) {
        size_path(i, "enabled", path, sizeof path);
        if (!exists(path) && thp_size_mode[i] != THP_NEVER && thp_statements)
            skip("this kernel has no %s (the trace sets thp %s)", path, thp_size_names[i]);
    }
    guard_lock(LARGE_LOCK);

    /* 2. */
    if (exists(THP_DIR "shrink_underused")) save_and_set(THP_DIR "shrink_underused", "0");
    save_and_set(THP_DIR "use_zero_page", "1");
    /* 3. */
    save_and_set(KHP_DIR "max_ptes_none", "0");
    save_and_set(KHP_DIR "max_ptes_shared", "0");
    save_and_set(KHP_DIR "max_ptes_swap", "0");
    save_and_set(KHP_DIR "alloc_sleep_millisecs", LONG_SLEEP_MS);
    save_and_set(KHP_DIR "scan_sleep_millisecs", LONG_SLEEP_MS);
    usleep(SCAN_PASS_US);

    /* the values of step 5: the trace's, or everything never */
    int enabled = thp_statements ? thp_enabled_mode : THP_NEVER;
    int modes[THP_NSIZES];
    for (int i = 0; i < THP_NSIZES; i++) modes[i] = thp_statements ? thp_size_mode[i] : THP_NEVER;

    /* 4. a PMD THP is possible: khugepaged must not scan when the first
     * trace process registers */
    if (pmd_enabled(enabled, modes[THP_NSIZES - 1])) {
        current_value(THP_DIR "enabled", cur, sizeof cur);
        size_path(THP_NSIZES - 1, "enabled", path, sizeof path);
        char pmd[64];
        current_value(path, pmd, sizeof pmd);
        int cur_en = !strcmp(cur, "always") ? THP_ALWAYS : !strcmp(cur, "madvise") ? THP_MADVISE : THP_NEVER;
        int cur_pmd = !strcmp(pmd, "always") ? THP_ALWAYS : !strcmp(pmd, "inherit") ? THP_INHERIT
                    : !strcmp(pmd, "madvise") ? THP_MADVISE : THP_NEVER;
        if (!pmd_enabled(cur_en, cur_pmd)) {
            /* the kernel's defaults for the registration */
            save_and_set(THP_DIR "enabled", "madvise");
            save_and_set(path, "inherit");
            usleep(SCAN_PASS_US);   /* a new khugepaged thread scans at once */
        }
        register_with_khugepaged();
        usleep(SCAN_PASS_US);
    }

    /* 5. */
    save_and_set(THP_DIR "enabled", thp_mode_names[enabled]);
    for (int i = 0; i < THP_NSIZES; i++) {
        size_path(i, "enabled", path, sizeof path);
        if (exists(path)) save_and_set(path, thp_mode_names[modes[i]]);
    }
    usleep(SCAN_PASS_US);

    /* 6. */
    if (hugetlb_given) {
        struct pool p;
        read_pool(&p);
        /* Reservations nobody of ours holds (another user's mapping, or the
         * one `make hugetlb-leak` orphans until reboot) keep a free page each
         * that the kernel may still hand to a reserved fault of the trace: a
         * trace whose free list runs dry would not run as on an idle machine
         * (kernel-large 46 and 47 then differ). --foreign-hugetlb-resv
         * compensate runs it anyway: the pool sized over them below, and the
         * trace's processes in a hugetlb cgroup whose limit is the trace's
         * pool (hugetlb_cgroup_enter: docs/oracle.md says why that is exact). */
        if (p.rsvd > 0 && foreign_resv_compensate) {
            fprintf(stderr, "rmap-oracle: %ld hugetlb reservations of others: the pool is sized over them and the "
                    "trace's processes are held to its %llu pages by a hugetlb cgroup (--foreign-hugetlb-resv "
                    "compensate)\n", p.rsvd, (unsigned long long)hugetlb_pages);
            foreign_rsvd = p.rsvd;
        } else if (p.rsvd > 0)
            skip("the machine holds %ld hugetlb reservations of others before the trace (HugePages_Rsvd; one leaked "
                 "by make hugetlb-leak stays until reboot): a hugetlb trace would not run as on an idle machine",
                 p.rsvd);
        long persistent = (long)read_u64(NR_HUGEPAGES);
        long avail = p.free - p.rsvd;
        /* Surplus pages (a leaked reservation holds one: docs/findings.md,
         * the mremap leak) become persistent first when nr_hugepages grows
         * (set_max_huge_pages: adjust_pool_surplus), so they count in the
         * total the new value sets; restoring the old value turns them back. */
        long want = persistent + p.surp + (long)hugetlb_pages - avail;
        if (want < 0) want = 0;
        char v[32];
        snprintf(v, sizeof v, "%ld", want);
        save_and_set(NR_HUGEPAGES, v);
        read_pool(&p);
        if (p.free - p.rsvd != (long)hugetlb_pages)
            skip("the hugetlb pool cannot be set to %llu free pages here (nr_hugepages %s gives HugePages_Free %ld, "
                 "HugePages_Rsvd %ld)", (unsigned long long)hugetlb_pages, v, p.free, p.rsvd);
        if (verbose)
            fprintf(stderr, "large: hugetlb pool: total %ld free %ld rsvd %ld surp %ld\n", p.total, p.free, p.rsvd,
                    p.surp);
        if (foreign_rsvd > 0) hugetlb_cgroup_enter();
    }

    /* 7. */
    collapsed_before = read_u64(KHP_DIR "pages_collapsed");

    /* `observe hugetlb` counts from here: the pool as step 6 left it */
    struct pool b;
    read_pool(&b);
    pool_base.total = b.total;
    pool_base.free = b.free;
    pool_base.rsvd = b.rsvd;
    pool_base.surp = b.surp;
}

/* --foreign-hugetlb-resv compensate: the reservations of others (each keeps
 * one free page the trace's pool is sized over) and the cgroup v2 hugetlb
 * controller that holds the trace to its own pool.
 *
 * alloc_hugetlb_folio (6.18) dequeues for a fault that has a reservation
 * (gbl_chg 0) without looking at available_huge_pages(), so a reserved fault
 * of the trace can take a free page that backs a foreign reservation, where
 * an idle machine's free list would be empty (SIGBUS).  Every other check
 * the trace meets compares free - reserved pages, which the foreign ones
 * leave as they are.  The trace's pool is set once (`hugetlb PAGES` is given
 * at most once), so the trace's pages in use are PAGES less its free pages:
 * a limit of PAGES huge pages on the trace's hugetlb cgroup refuses exactly
 * the allocation that finds the trace's free list empty.  alloc_hugetlb_folio
 * charges the cgroup (hugetlb_cgroup_charge_cgroup) before it dequeues, and
 * a refused charge leaves by the same labels (subpool put, vma_end_reservation)
 * and with the same -ENOSPC as an empty free list, so the fault's result and
 * the reservation maps are an idle machine's.  The oracle enters the cgroup
 * itself before the first trace process is forked, so every process of the
 * trace is charged there; it leaves it in cleanup(), and the watchdog removes
 * the cgroup and disables the controller again if it enabled it. */
static char cgroup_root[200];      /* the cgroup v2 mount */
static char cgroup_home[400];      /* the oracle's own cgroup, to go back to */
static char cgroup_path[260];      /* ours, or empty */

static int find_cgroup2(char *out, size_t n)
{
    FILE *f = fopen("/proc/self/mounts", "re");
    if (!f) return -1;
    char dev[256], dir[256], type[64];
    int found = -1;
    while (fscanf(f, "%255s %255s %63s %*[^\n]", dev, dir, type) == 3)
        if (strcmp(type, "cgroup2") == 0 && strlen(dir) < n) {
            snprintf(out, n, "%s", dir);
            found = 0;
            break;
        }
    fclose(f);
    return found;
}

static int has_word(const char *list, const char *word)
{
    size_t w = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += w)
        if ((p == list || p[-1] == ' ' || p[-1] == '+') && (p[w] == 0 || p[w] == ' ' || p[w] == '\n')) return 1;
    return 0;
}

void hugetlb_cgroup_enter(void)
{
    char path[512], buf[512], v[64];
    if (find_cgroup2(cgroup_root, sizeof cgroup_root))
        skip("--foreign-hugetlb-resv compensate needs the cgroup v2 hierarchy (no cgroup2 mount)");
    snprintf(path, sizeof path, "%s/cgroup.controllers", cgroup_root);
    if (read_value(path, buf, sizeof buf) || !has_word(buf, "hugetlb"))
        skip("--foreign-hugetlb-resv compensate needs the hugetlb controller on cgroup v2 (%s has not got it)", path);
    /* where the oracle is now (the "0::" line), to go back there */
    FILE *f = fopen("/proc/self/cgroup", "re");
    char ln[512];
    cgroup_home[0] = 0;
    while (f && fgets(ln, sizeof ln, f))
        if (strncmp(ln, "0::", 3) == 0) {
            ln[strcspn(ln, "\n")] = 0;
            snprintf(cgroup_home, sizeof cgroup_home, "%s%s", cgroup_root, strcmp(ln + 3, "/") ? ln + 3 : "");
        }
    if (f) fclose(f);
    if (!cgroup_home[0]) skip("--foreign-hugetlb-resv compensate: no cgroup v2 line in /proc/self/cgroup");
    snprintf(path, sizeof path, "%s/cgroup.subtree_control", cgroup_root);
    if (read_value(path, buf, sizeof buf)) die("cannot read %s: %s", path, strerror(errno));
    if (!has_word(buf, "hugetlb")) {
        guard_save(path, "-hugetlb");
        if (write_sysfs_value(path, "+hugetlb")) die("cannot enable hugetlb in %s: %s", path, strerror(errno));
    }
    snprintf(cgroup_path, sizeof cgroup_path, "%s/rmap-oracle-%d", cgroup_root, (int)getpid());
    guard_mkcgroup(cgroup_path);
    snprintf(path, sizeof path, "%s/hugetlb.2MB.max", cgroup_path);
    snprintf(v, sizeof v, "%llu", (unsigned long long)hugetlb_pages * (2ull << 20));
    if (write_sysfs_value(path, v)) die("cannot write %s to %s: %s", v, path, strerror(errno));
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_path);
    snprintf(v, sizeof v, "%d", (int)getpid());
    if (write_sysfs_value(path, v)) die("cannot move the oracle into %s: %s", cgroup_path, strerror(errno));
    if (verbose) fprintf(stderr, "large: in the hugetlb cgroup %s, hugetlb.2MB.max %llu pages\n", cgroup_path,
                         (unsigned long long)hugetlb_pages);
}

/* --foreign-hugetlb-resv compensate, before a hugetlb mmap that reserves
 * `delta` huge pages (hugetlb_reserve_pages -> hugetlb_acct_memory): the
 * one answer the cgroup cannot keep as an idle machine gives it.  After
 * gather_surplus_pages (needed = resv + delta - free, the same with the
 * foreign pages on both sides), hugetlb_acct_memory refuses when delta >
 * allowed_mems_nr(), the free pages, which counts the foreign ones.  That
 * check can decide only while the trace's own resv_huge_pages is below zero
 * (it wraps for a while after an owner's exit while a fork child maps its
 * page: docs/findings.md, Hugetlb.swift's hugetlbAcctMemory), and it decides
 * otherwise here exactly when the trace's free pages < delta <= theirs plus
 * the foreign ones.  Such a run cannot be the idle machine's: void (77). */
void hugetlb_before_reserve(int line, uint64_t delta)
{
    if (foreign_rsvd <= 0 || delta == 0) return;
    struct pool p;
    read_pool(&p);
    long d = (long)delta, resv_t = p.rsvd - foreign_rsvd, free_t = p.free - foreign_rsvd;
    if (resv_t < 0 && p.rsvd + d - p.free <= 0 && d > free_t && d <= p.free)
        skip("cannot run exactly here: line %d: the trace's hugetlb reservation count is below zero (%ld) and this mmap "
             "reserves %ld pages with %ld of its own free: an idle machine refuses it (hugetlb_acct_memory: delta > "
             "allowed_mems_nr), here the %ld free pages of the reservations of others would let it pass",
             line, resv_t, d, free_t, foreign_rsvd);
}

/* cleanup(): back to the oracle's own cgroup, so the watchdog can remove ours */
void hugetlb_cgroup_leave(void)
{
    if (!cgroup_path[0]) return;
    char path[512], v[32];
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_home);
    snprintf(v, sizeof v, "%d", (int)getpid());
    if (write_sysfs_value(path, v))
        fprintf(stderr, "rmap-oracle: cannot move back to the cgroup %s: %s\n", cgroup_home, strerror(errno));
    cgroup_path[0] = 0;
}

/* `observe hugetlb` / `expect hugetlb` (trace-format.md "The hugetlb pool"):
 * HugePages_Total, _Free, _Rsvd and _Surp less what they were before the
 * first statement, the trace's own `hugetlb PAGES` counted in total and free
 * (the model starts from an empty pool; the rest of the machine's does not
 * show). */
void hugetlb_pool_tokens(char ***toks_out, int *ntoks_out)
{
    struct pool p;
    read_pool(&p);
    long own = hugetlb_given ? (long)hugetlb_pages : 0;
    long v[4] = { p.total - pool_base.total + own, p.free - pool_base.free + own, p.rsvd - pool_base.rsvd,
                  p.surp - pool_base.surp };
    static const char *names[4] = { "total", "free", "resv", "surplus" };
    char **toks = xmalloc(sizeof *toks * 4);
    for (int i = 0; i < 4; i++) {
        char b[64];
        snprintf(b, sizeof b, "%s=%ld", names[i], v[i]);
        toks[i] = xstrdup(b);
    }
    *toks_out = toks;
    *ntoks_out = 4;
}

/* The counters of a fault that fell back to a smaller folio than it was
 * allowed: /proc/vmstat thp_fault_fallback (PMD) and every size's
 * anon_fault_fallback and anon_fault_fallback_charge (mTHP and PMD), and
 * the anon_fault_declined that this machine's kernel adds (out of tree,
 * beside anon_beside_full; 0 in every run so far: counted to be safe). */
static uint64_t fallbacks(void)
{
    uint64_t sum = 0;
    char path[256], b[64];
    static const char *stats[] = { "anon_fault_fallback", "anon_fault_fallback_charge", "anon_fault_declined" };
    for (int i = 0; i < THP_NSIZES; i++)
        for (int k = 0; k < 3; k++) {
            snprintf(path, sizeof path, THP_DIR "hugepages-%dkB/stats/%s", size_kb[i], stats[k]);
            if (read_value(path, b, sizeof b) == 0) sum += strtoull(b, NULL, 10);
        }
    FILE *f = fopen("/proc/vmstat", "re");
    if (f) {
        char ln[128];
        unsigned long long v;
        while (fgets(ln, sizeof ln, f))
            if (sscanf(ln, "thp_fault_fallback %llu", &v) == 1) sum += v;
        fclose(f);
    }
    return sum;
}

void large_before_access(void)
{
    fallback_before = fallbacks();
}

void large_after_access(int line)
{
    if (fallbacks() != fallback_before)
        retry_trace("line %d: a fault got a smaller folio than the settings allow (a large folio allocation "
                    "failed, here or in another process: a fault-fallback counter moved)", line);
}

void large_shrink(int line)
{
    /* drop_caches 2: drop_slab() runs every shrinker, the deferred split one included */
    if (write_sysfs_value("/proc/sys/vm/drop_caches", "2"))
        die("line %d: cannot write /proc/sys/vm/drop_caches: %s", line, strerror(errno));
}

void large_finish(void)
{
    uint64_t now = read_u64(KHP_DIR "pages_collapsed");
    if (now != collapsed_before)
        retry_trace("khugepaged collapsed %llu pages during the run, the trace's or another process's "
                    "(khugepaged/pages_collapsed %llu -> %llu)",
                    (unsigned long long)(now - collapsed_before), (unsigned long long)collapsed_before,
                    (unsigned long long)now);
    if (own_region) munmap(own_region, 4u << 20);
    own_region = NULL;
}
