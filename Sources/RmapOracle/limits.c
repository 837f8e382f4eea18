/*
 * limits.c - what this machine can run, decided before the trace runs and
 * checked as it runs; a trace beyond it is "cannot run here" (status 77),
 * never a malformed trace (2) or an internal error (3).
 *
 * The trace processes' own memory.  A trace may name any page of the window
 * [0x100000000000, 0x700000000000), so nothing of a worker's own may lie
 * there: not its executable, data, heap or stack, not the vdso, not anything
 * the C library maps.  rmap-oracle is linked static and not position-
 * independent (Package.swift: text at 0x400000, the brk heap within 1 GiB
 * above it; a PIE loads at 0x55..., at 0x555555554000 with ASLR off, which
 * is inside the window; a static PIE would have its brk heap moved to
 * ELF_ET_DYN_BASE, 0x555555554000 again: load_elf_binary()), and the
 * workers are forks of it.  What the kernel
 * places itself (the vdso, the C library's mmap()s) goes top-down from
 * mmap_base, just below the stack gap: outside the window unless the
 * legacy layout is asked for (ADDR_COMPAT_LAYOUT, vm.legacy_va_layout) or
 * RLIMIT_STACK is huge (the gap is the stack limit, capped at 5/6 of the
 * address space: `ulimit -s unlimited` puts mmap_base at about
 * 0x155555555000).  layout_prepare() re-executes the oracle once with an
 * 8 MiB stack limit and without ADDR_COMPAT_LAYOUT when either is set; and
 * every new trace process is checked (layout_check_worker(), from its
 * /proc/PID/maps): a mapping of its own in the window is "cannot run here".
 *
 * Memory.  The kernel gives the trace processes all the memory they fault
 * in; a 4 KB trace can map and write 16 GiB.  memory_check() bounds, before
 * anything runs, how much memory the trace can make the kernel hold (see
 * footprint()) and refuses the trace when the bound exceeds a share of
 * MemAvailable (a quarter, or --memory-limit), and its files when they do
 * not fit in the temporary folder's file system.  The workers also get
 * oom_score_adj 1000 (worker.c), so that if the machine runs short anyway
 * the kernel's OOM killer takes a trace process first.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "oracle.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define WINDOW_LO 0x100000000000ULL
#define WINDOW_HI 0x700000000000ULL

/* Above this RLIMIT_STACK the kernel's mmap_base can come near the window
 * (mmap_base = TASK_SIZE - stack limit - guard gap - up to 1 TiB of
 * randomisation, mmap_rnd_bits 28): re-executed with STACK_SET. */
#define STACK_MAX (1ULL << 40)
#define STACK_SET (8ULL << 20)
#define RELAYOUT_ENV "RMAP_ORACLE_RELAYOUT"

/* ------------------------------------------------------------------ */
/* The address layout                                                   */

void layout_prepare(char **argv)
{
    if (getenv(RELAYOUT_ENV)) {   /* re-executed already: the workers' check decides */
        unsetenv(RELAYOUT_ENV);
        return;
    }
    struct rlimit rl;
    int stack_big = getrlimit(RLIMIT_STACK, &rl) == 0 &&
                    (rl.rlim_cur == RLIM_INFINITY || (uint64_t)rl.rlim_cur > STACK_MAX);
    int pers = personality(0xffffffff);
    int legacy = pers != -1 && (pers & ADDR_COMPAT_LAYOUT);
    if (!stack_big && !legacy) return;
    if (stack_big) {
        rl.rlim_cur = STACK_SET;
        if (setrlimit(RLIMIT_STACK, &rl)) return;
    }
    if (legacy && personality((unsigned long)pers & ~(unsigned long)ADDR_COMPAT_LAYOUT) == -1) return;
    if (verbose)
        fprintf(stderr, "rmap-oracle: re-executing with %s to keep the kernel's placements out of the trace window\n",
                stack_big ? "an 8 MiB stack limit" : "the default address layout");
    setenv(RELAYOUT_ENV, "1", 1);
    fflush(stdout);
    fflush(stderr);
    execv("/proc/self/exe", argv);
    unsetenv(RELAYOUT_ENV);      /* no re-exec: the workers' check decides */
}

void layout_check_worker(int idx, int line)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)procs[idx].pid);
    FILE *f = fopen(path, "re");
    if (!f) die("line %d: open %s: %s", line, path, strerror(errno));
    char *ln = NULL;
    size_t cap = 0;
    while (getline(&ln, &cap, f) > 0) {
        unsigned long long s, e;
        if (sscanf(ln, "%llx-%llx", &s, &e) != 2) continue;
        if (s < WINDOW_HI && e > WINDOW_LO) {
            ln[strcspn(ln, "\n")] = 0;
            fclose(f);
            skip("cannot run here: line %d: process %s has a mapping of its own inside the trace window "
                 "[0x100000000000, 0x700000000000): %s", line, procs[idx].name, ln);
        }
    }
    free(ln);
    fclose(f);
}

/* ------------------------------------------------------------------ */
/* Memory                                                               */

static uint64_t sat_add(uint64_t a, uint64_t b) { uint64_t r; return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r; }
static uint64_t sat_mul(uint64_t a, uint64_t b) { uint64_t r; return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r; }

struct footprint { uint64_t files, hugetlb, faults, tables, total; };

/* Per-process memory the trace does not name: kernel stack, task and mm,
 * the worker's private pages (256 KiB; measured: under 40 KiB private dirty). */
#define PROC_PAGES 64ULL

/*
 * An upper bound, in pages, of the memory the trace can make the kernel hold
 * at once (the sum of everything it can allocate, whatever it frees):
 *  - files: every page of every file, in the page cache (files.c);
 *  - hugetlb: the pool, 512 pages per huge page (large.c sets it);
 *  - faults: each page a `write` or `mlock` names (COW copies included: one
 *    new page per page and statement); a `read` only where it can allocate,
 *    in a trace with an anon-shared mapping (shmem); an `mprotect` or the
 *    grown part of an `mremap` in a trace with `mlock` (a VM_LOCKED range is
 *    populated: mprotect_fixup, mremap); MADV_COLLAPSE its range and two huge
 *    pages; MADV_UNMERGEABLE its range (unmerging copies each KSM page back,
 *    more pages than the writes made when a fork shared them first).  In a trace with `thp` statements a fault can allocate the whole
 *    2 MiB block around its page: a statement of P pages at most
 *    2 P + 1024 (P pages, plus one huge page per block it touches);
 *  - tables and processes: every process's page tables can cover all of it
 *    (fork copies them: one PTE page per 512 pages, 8 for the upper levels),
 *    and PROC_PAGES each.
 */
static struct footprint footprint(void)
{
    struct footprint fp = { 0 };
    int anon_shared = 0, any_mlock = 0;
    for (int i = 0; i < nstmts; i++) {
        if (stmts[i].kind == S_MMAP && stmts[i].mkind == K_ANON_SHARED) anon_shared = 1;
        if (stmts[i].kind == S_MLOCK) any_mlock = 1;
    }
    for (int i = 0; i < nfiles; i++) fp.files = sat_add(fp.files, files[i].pages);
    if (hugetlb_given) fp.hugetlb = sat_mul(hugetlb_pages, 512);
    for (int i = 0; i < nstmts; i++) {
        const struct stmt *st = &stmts[i];
        uint64_t p = 0;
        switch (st->kind) {
        case S_WRITE: case S_MLOCK: p = st->pages; break;
        case S_READ: if (anon_shared) p = st->pages; break;
        case S_MPROTECT: if (any_mlock) p = st->pages; break;
        case S_MREMAP: if (any_mlock && st->new_pages > st->pages) p = st->new_pages - st->pages; break;
        case S_MADVISE:
            if (advice_values[st->advice] == MADV_COLLAPSE) p = sat_add(st->pages, 1024);
            if (advice_values[st->advice] == MADV_UNMERGEABLE) p = st->pages;   /* break_ksm: a copy per page */
            break;
        default: break;
        }
        if (p && thp_statements) p = sat_add(sat_mul(p, 2), 1024);
        fp.faults = sat_add(fp.faults, p);
    }
    uint64_t held = sat_add(sat_add(fp.files, fp.hugetlb), fp.faults);
    fp.tables = sat_mul((uint64_t)nprocs, sat_add(sat_add(held / 512, 8), PROC_PAGES));
    fp.total = sat_add(held, fp.tables);
    return fp;
}

static uint64_t mem_available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f) die("cannot open /proc/meminfo: %s", strerror(errno));
    char ln[256];
    unsigned long long kb = 0;
    int found = 0;
    while (fgets(ln, sizeof ln, f))
        if (sscanf(ln, "MemAvailable: %llu kB", &kb) == 1) { found = 1; break; }
    fclose(f);
    if (!found) die("no MemAvailable in /proc/meminfo");
    return sat_mul(kb, 1024);
}

/* pages in MiB, rounded up */
static unsigned long long mib(uint64_t pages) { return (unsigned long long)((sat_add(pages, 255)) / 256); }

void memory_check(uint64_t limit)
{
    struct footprint fp = footprint();
    const char *what = "--memory-limit";
    char share[96];
    if (!limit) {
        uint64_t avail = mem_available_bytes();
        limit = avail / 4;
        snprintf(share, sizeof share, "a quarter of MemAvailable (%llu MiB)", (unsigned long long)(avail >> 20));
        what = share;
    }
    if (verbose)
        fprintf(stderr, "rmap-oracle: footprint at most %llu MiB (files %llu, hugetlb %llu, faults %llu, "
                "tables and processes %llu), limit %llu MiB\n", mib(fp.total), mib(fp.files), mib(fp.hugetlb),
                mib(fp.faults), mib(fp.tables), (unsigned long long)(limit >> 20));
    if (fp.total > limit / PAGE)
        skip("cannot run here: the trace can make the kernel hold up to %llu MiB (files %llu, hugetlb pool %llu, "
             "faults %llu, page tables and %d process%s %llu), more than %llu MiB, %s",
             mib(fp.total), mib(fp.files), mib(fp.hugetlb), mib(fp.faults), nprocs, nprocs == 1 ? "" : "es", mib(fp.tables),
             (unsigned long long)(limit >> 20), what);
    if (fp.files) {
        /* the files are written in full to a folder of /tmp (files.c) */
        struct statvfs vfs;
        if (statvfs("/tmp", &vfs) == 0) {
            uint64_t room = sat_mul(vfs.f_bavail, vfs.f_frsize) / PAGE;
            if (fp.files > room)
                skip("cannot run here: the trace's files take %llu MiB and /tmp has %llu MiB free",
                     mib(fp.files), mib(room));
        }
    }
}
