/*
 * arena.c - reserve, open, sync and release the swift-rmap arena.
 * No model logic lives here: only the layout arithmetic and the system calls.
 */
#include "rmap_arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(rmap_rb_node) == 24, "rmap_rb_node layout");
_Static_assert(sizeof(rmap_table_desc) == 32, "rmap_table_desc layout");
_Static_assert(sizeof(rmap_arena_header) == 48 + 32 * RMAP_T_COUNT + 64 + 48 + 64 + 48 + 40, "rmap_arena_header layout");
_Static_assert(offsetof(rmap_page, content) == 40 && offsetof(rmap_page, next) == 48, "rmap_page layout");
_Static_assert(sizeof(rmap_page) == 64, "rmap_page layout");
_Static_assert(sizeof(rmap_ptdesc) == 16, "rmap_ptdesc layout");
_Static_assert(sizeof(rmap_mm) == 112, "rmap_mm layout");
_Static_assert(sizeof(rmap_vma) == 104, "rmap_vma layout");
_Static_assert(sizeof(rmap_anon_vma) == 48, "rmap_anon_vma layout");
_Static_assert(sizeof(rmap_avc) == 40, "rmap_avc layout");
_Static_assert(sizeof(rmap_file) == 56, "rmap_file layout");
_Static_assert(sizeof(rmap_swap_slot) == 16, "rmap_swap_slot layout");
_Static_assert(sizeof(rmap_ksm_item) == 80, "rmap_ksm_item layout");
_Static_assert(sizeof(rmap_ksm_node) == 48, "rmap_ksm_node layout");
_Static_assert(sizeof(rmap_name) == 80, "rmap_name layout");

#define RMAP_MAX_CAPACITY (1u << 30)

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

uint64_t rmap_arena_layout(const rmap_arena_config *cfg, rmap_arena_header *hdr)
{
    const uint32_t caps[RMAP_T_COUNT] = {
        [RMAP_T_FRAME] = cfg->frames,       [RMAP_T_PTPAGE] = cfg->pt_pages,
        [RMAP_T_PTDESC] = cfg->pt_pages,    [RMAP_T_MM] = cfg->mms,
        [RMAP_T_VMA] = cfg->vmas,           [RMAP_T_ANON_VMA] = cfg->anon_vmas,
        [RMAP_T_AVC] = cfg->avcs,           [RMAP_T_FILE] = cfg->files,
        [RMAP_T_SWAP] = cfg->swap_slots,    [RMAP_T_NAME] = cfg->names,
        [RMAP_T_KSM_ITEM] = cfg->ksm_items, [RMAP_T_KSM_NODE] = cfg->ksm_nodes,
    };
    const uint32_t sizes[RMAP_T_COUNT] = {
        [RMAP_T_FRAME] = sizeof(rmap_page), [RMAP_T_PTPAGE] = RMAP_PT_RECORD_SIZE,
        [RMAP_T_PTDESC] = sizeof(rmap_ptdesc), [RMAP_T_MM] = sizeof(rmap_mm),
        [RMAP_T_VMA] = sizeof(rmap_vma),    [RMAP_T_ANON_VMA] = sizeof(rmap_anon_vma),
        [RMAP_T_AVC] = sizeof(rmap_avc),    [RMAP_T_FILE] = sizeof(rmap_file),
        [RMAP_T_SWAP] = sizeof(rmap_swap_slot), [RMAP_T_NAME] = sizeof(rmap_name),
        [RMAP_T_KSM_ITEM] = sizeof(rmap_ksm_item), [RMAP_T_KSM_NODE] = sizeof(rmap_ksm_node),
    };
    memset(hdr, 0, sizeof(*hdr));
    hdr->magic = RMAP_ARENA_MAGIC;
    hdr->layout_version = RMAP_LAYOUT_VERSION;
    hdr->header_size = sizeof(*hdr);
    uint64_t off = align_up(sizeof(*hdr), RMAP_PT_PAGE_SIZE);
    for (int t = 0; t < RMAP_T_COUNT; t++) {
        /* slot 0 is reserved (NULL), so a table of capacity c holds c - 1 objects */
        uint32_t cap = caps[t] + 1;
        if (caps[t] == 0 || caps[t] >= RMAP_MAX_CAPACITY)
            return 0;
        hdr->tables[t].offset = off;
        hdr->tables[t].record_size = sizes[t];
        hdr->tables[t].capacity = cap;
        hdr->tables[t].bump = 1;
        hdr->tables[t].free_head = 0;
        off = align_up(off + (uint64_t)cap * sizes[t], RMAP_PT_PAGE_SIZE);
    }
    hdr->total_size = off;
    return off;
}

/* The host's PMD size: the arena's start is aligned to it so that every
 * 2 MiB of its tables can be one huge page of the host. */
#define RMAP_HOST_PMD_SIZE (2ull << 20)

/* Maps `size` bytes at a 2 MiB-aligned address: a PROT_NONE reservation
 * 2 MiB larger, the arena placed inside it with MAP_FIXED (for a file,
 * offset 0 lands on the aligned address), the slack on either side given
 * back. Then MADV_HUGEPAGE: with THP `madvise` (this machine) or `always`
 * the host backs the arena's anonymous memory with 2 MiB pages, so the
 * tables are faulted in 512 times less often and walks across thousands of
 * processes miss the TLB less. Where it cannot apply (THP `never`, a kernel
 * without THP: EINVAL; a file system without huge pages for writable
 * files, such as ext4, where the call succeeds and changes nothing) the
 * arena stays on 4 KiB pages, as before: the advice is never an error. */
static void *map_huge_aligned(uint64_t size, int flags, int fd)
{
    uint64_t len = size + RMAP_HOST_PMD_SIZE;
    char *r = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED)
        return MAP_FAILED;
    char *a = (char *)(((uintptr_t)r + RMAP_HOST_PMD_SIZE - 1) & ~(uintptr_t)(RMAP_HOST_PMD_SIZE - 1));
    void *p = mmap(a, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(r, len);
        errno = e;
        return MAP_FAILED;
    }
    if (a > r)
        munmap(r, (size_t)(a - r));
    if (a + size < r + len)
        munmap(a + size, (size_t)(r + len - (a + size)));
#ifdef MADV_HUGEPAGE
    /* RMAP_ARENA_SMALL_PAGES (for measurements): 4 KiB pages whatever the
     * host's THP mode, MADV_NOHUGEPAGE overriding even `always`. */
    (void)madvise(a, size, getenv("RMAP_ARENA_SMALL_PAGES") ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
#endif
    return a;
}

uint32_t rmap_arena_small_page_tables(void)
{
    const uint32_t all = (1u << RMAP_T_COUNT) - 1;
    const char *mask = getenv("RMAP_ARENA_SMALL_TABLES"); /* measurements: bit t for table t */
    if (mask)
        return (uint32_t)strtoul(mask, NULL, 0) & all;
    if (getenv("RMAP_ARENA_SMALL_PAGES"))
        return all;
    if (getenv("RMAP_ARENA_HUGE_FRAMES"))
        return 0;
    /* The frame records and the page-table pages (with their descriptors):
     * what a large run touches once each, in order, while it grows (a
     * 10-million-frame replay: 640 MB of frame records, 200 MB of page
     * tables). On this VM a first-touched 2 MiB host page costs several
     * times a 4 KiB one (the host backs it anew), and on 4 KiB pages the
     * populator (populate.c) takes the faults to another CPU; the walks
     * across 10,000 processes measured within their noise with the page
     * tables on 4 KiB pages (docs/benchmarks.md, issue 16). The VMAs,
     * anon_vmas, AVCs and the rest stay on huge pages. */
    return 1u << RMAP_T_FRAME | 1u << RMAP_T_PTPAGE | 1u << RMAP_T_PTDESC;
}

void rmap_arena_advise_frames(void *base, const rmap_arena_header *hdr)
{
#ifdef MADV_NOHUGEPAGE
    const uint32_t small = rmap_arena_small_page_tables();
    const uint64_t page = RMAP_PT_PAGE_SIZE;
    for (int t = 0; t < RMAP_T_COUNT; t++) {
        if (!(small & (1u << t)))
            continue;
        uint64_t start = hdr->tables[t].offset & ~(page - 1);
        uint64_t end = hdr->tables[t].offset + (uint64_t)hdr->tables[t].capacity * hdr->tables[t].record_size;
        end = align_up(end, page);
        if (end > start && end <= hdr->total_size)
            (void)madvise((char *)base + start, (size_t)(end - start), MADV_NOHUGEPAGE);
    }
#else
    (void)base; (void)hdr;
#endif
}

void *rmap_arena_map(uint64_t size, const char *path)
{
    void *p;
    if (path == NULL) {
        p = map_huge_aligned(size, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    } else {
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return NULL;
        if (ftruncate(fd, (off_t)size) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return NULL;
        }
        p = map_huge_aligned(size, MAP_SHARED, fd);
        int e = errno;
        close(fd);
        errno = e;
    }
    return p == MAP_FAILED ? NULL : p;
}

void *rmap_arena_open(const char *path, uint64_t *size, int private_)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        int e = errno ? errno : EINVAL;
        close(fd);
        errno = e;
        return NULL;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                   (private_ ? MAP_PRIVATE : MAP_SHARED) | MAP_NORESERVE, fd, 0);
    int e = errno;
    close(fd);
    errno = e;
    if (p == MAP_FAILED)
        return NULL;
    *size = (uint64_t)st.st_size;
    return p;
}

int rmap_arena_unmap(void *base, uint64_t size) { return munmap(base, size); }

int rmap_arena_sync(void *base, uint64_t size) { return msync(base, size, MS_SYNC); }

int rmap_arena_discard(void *base, uint64_t offset, uint64_t len)
{
    return madvise((char *)base + offset, len, MADV_DONTNEED);
}
