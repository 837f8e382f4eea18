/*
 * rmap_arena.h - the layout of the swift-rmap arena.
 *
 * One mmap'd region holds every object of the model: a header, then one table
 * per kind of object. Objects refer to each other by 32-bit table indices
 * (0 is NULL, slot 0 of every table is never used); page->mapping holds a
 * tagged byte offset into the arena, as the kernel holds a tagged pointer.
 * No raw pointer is ever stored here, so a saved arena reopens anywhere.
 *
 * Lock order (as mm/rmap.c documents it; the fields exist so a multi-threaded
 * model can follow it, the single-threaded model takes none of them):
 *   mm->mmap_lock
 *     page->flags PG_locked (lock_page)
 *       mapping->i_mmap_rwsem
 *         anon_vma->rwsem (the root's)
 *           page table lock (pte_lockptr)
 *
 * Every struct has fixed-width fields and explicit padding; _Static_assert in
 * arena.c pins the sizes so a layout drift fails the build.
 */
#ifndef RMAP_ARENA_H
#define RMAP_ARENA_H

#include <stdint.h>
#include <stddef.h>

#define RMAP_ARENA_MAGIC 0x31414e4552414d52ull /* "RMARENA1" little-endian */
/* 4: the header's spare words got names (anon_vma serial, swap cursor, CVE
 * reuse counters, name order, balloon list and counts).
 * 5: large folios: struct folio's fields overlay the first tail pages as in
 * the kernel (rmap_page's unions), free runs per order, the deferred split
 * queue, the huge zero folio and the THP settings in the header.
 * 6: hugetlb (mm/hugetlb.c): the pool's free list and counters in the header
 * (appended: the header grew inside its page). */
#define RMAP_LAYOUT_VERSION 6u

/* The largest folio order: PMD order (2 MiB of 4 KiB pages). */
#define RMAP_PMD_ORDER 9u
#define RMAP_PMD_NR 512u

#define RMAP_PT_PAGE_SIZE 4096u
/* A page-table page's record: its 4 KiB of entries and one cache line of
 * padding. Every process's tables hold the entry for a given address at the
 * same offset, so on a 4096-byte stride the entries a walk across thousands
 * of processes reads (rmap_walk + page_vma_mapped_walk, fork, exit) all
 * fall in the same few sets of each cache level and evict one another; one
 * more line per record spreads consecutive tables over every set (page
 * colouring). Arenas saved with 4096-byte records open as they are: the
 * stride is read from the header (Kernel.ptStride). */
#define RMAP_PT_RECORD_SIZE 4160u
_Static_assert(RMAP_PT_RECORD_SIZE == RMAP_PT_PAGE_SIZE + 64u, "a page-table record: 4 KiB and one cache line");

/* POISON_FREE (include/linux/poison.h): a freed record is filled with this
 * byte after its 4-byte free-list link, so a use after free is visible and a
 * free record is told from a live one by the word after the link. */
#define RMAP_POISON_FREE 0x6bu

/* Table identifiers. */
enum {
    RMAP_T_FRAME = 0,   /* struct page: one per page frame (PFN = index) */
    RMAP_T_PTPAGE,      /* page-table pages: 512 x 64-bit entries each */
    RMAP_T_PTDESC,      /* one descriptor per page-table page (struct ptdesc) */
    RMAP_T_MM,          /* struct mm_struct */
    RMAP_T_VMA,         /* struct vm_area_struct */
    RMAP_T_ANON_VMA,    /* struct anon_vma */
    RMAP_T_AVC,         /* struct anon_vma_chain */
    RMAP_T_FILE,        /* struct address_space (with its inode's size) */
    RMAP_T_SWAP,        /* swap_map: one slot per swap page */
    RMAP_T_NAME,        /* the trace's names of processes and files (saved states) */
    RMAP_T_KSM_ITEM,    /* struct ksm_rmap_item (mm/ksm.c) */
    RMAP_T_KSM_NODE,    /* struct ksm_stable_node (mm/ksm.c) */
    RMAP_T_COUNT
};

/* Augmented red-black tree links, shared by the mm's VMA tree, the file's
 * i_mmap and anon_vma->rb_root (all interval trees). Node ids are indices in
 * the table of the tree's nodes. */
typedef struct rmap_rb_node {
    uint32_t parent;
    uint32_t left;
    uint32_t right;
    uint32_t color;          /* 0 red, 1 black */
    uint64_t subtree_last;   /* the interval-tree augmentation (rb_subtree_last) */
} rmap_rb_node;

typedef struct rmap_table_desc {
    uint64_t offset;         /* byte offset of slot 0 from the arena base */
    uint32_t record_size;
    uint32_t capacity;       /* slots, slot 0 included */
    uint32_t bump;           /* next never-used slot */
    uint32_t free_head;      /* LIFO free list threaded through the records */
    uint32_t live;           /* records in use */
    uint32_t high_water;     /* most records ever in use at once */
} rmap_table_desc;

typedef struct rmap_arena_header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_size;
    uint64_t total_size;     /* bytes reserved */
    uint32_t zero_pfn;       /* the shared zero page */
    uint32_t reuse_policy;   /* 0 none, 1 degree, 2 split */
    uint64_t swap_slots;     /* usable swap slots (trace `swap`) */
    uint64_t next_frame_serial;
    rmap_table_desc tables[RMAP_T_COUNT];
    /* Model-wide state that is not a table: */
    uint64_t anon_vma_serial;        /* the last anon_vma serial handed out (creation order) */
    uint64_t swap_cursor;            /* get_swap_page()'s scan position (si->cluster_next) */
    uint64_t anon_vma_reused_in_use; /* CVE-2022-42703: reuses of an anon_vma still in use ("degree") */
    uint64_t anon_vma_reused_last;   /* the last such anon_vma */
    uint64_t name_order;             /* names created so far (the name table's creation order) */
    uint64_t balloon_head;           /* the balloon's page list (through rmap_page.next/prev);
                                        its byte offset is &balloon_mops */
    uint64_t balloon_pages;          /* pages on the balloon's list (b_dev_info->pages) */
    uint64_t balloon_isolated;       /* isolated balloon pages (isolated_pages) */
    /* KSM (mm/ksm.c) globals: root_stable_tree, root_unstable_tree (interval
     * trees keyed by content), the ksm_mm_head list of mm slots (the mms with
     * MMF_VM_MERGEABLE, threaded through rmap_mm.ksm_slot_next), ksm_scan.seqnr
     * and the counters of /sys/kernel/mm/ksm. */
    uint32_t ksm_stable_root;
    uint32_t ksm_unstable_root;
    uint32_t ksm_mm_head;
    uint32_t ksm_mm_tail;
    uint64_t ksm_seqnr;
    uint64_t ksm_pages_shared;
    uint64_t ksm_pages_sharing;
    uint64_t ksm_pages_unshared;
    /* Large folios (mm/huge_memory.c, mm/page_alloc.c). */
    uint32_t folio_free[RMAP_PMD_ORDER + 1]; /* free aligned runs of 2^order frames (orders 2..9),
                                                threaded through the run's first frame (`next`) */
    uint32_t deferred_split_head;    /* ds_queue->split_queue: head PFNs of large folios, linked */
    uint32_t deferred_split_tail;    /* through page[2].deferred_next/deferred_prev */
    uint32_t deferred_split_len;     /* ds_queue->split_queue_len */
    uint32_t huge_zero_pfn;          /* huge_zero_folio: head PFN, 0 until first used */
    uint32_t thp_flags;              /* RMAP_THP_* below */
    uint32_t pad_folio;
    uint64_t thp_order_modes;        /* 4 bits per order (RMAP_THP_MODE_*): hugepages-<size>kB/enabled */
    uint64_t thp_fault_alloc;        /* /proc/vmstat thp_fault_alloc (PMD) */
    uint64_t thp_fault_fallback;     /* thp_fault_fallback */
    uint64_t thp_split_pmd;          /* thp_split_pmd */
    uint64_t thp_split_page;         /* thp_split_page (every order) */
    uint64_t mthp_fault_alloc;       /* the sum of hugepages-*kB/stats/anon_fault_alloc below PMD order */
    /* hugetlb (mm/hugetlb.c): the default hstate of 2 MiB pages. Pool folios
     * are order-9 folios with PG_hugetlb; a free one has _refcount 0 and is
     * on hugepage_freelists, threaded through its head's `next`. A hugetlbfs
     * file's reservation map (and a private mapping's, see Hugetlb.swift)
     * lives in the file's page-cache tree. */
    uint32_t hugetlb_free_head;      /* h->hugepage_freelists: head PFN of the first free folio, 0 if none */
    uint32_t hugetlb_resv_mode;      /* how mremap keeps private reservations: 0 as 6.18 (the leak), 1 fixed */
    uint64_t nr_huge_pages;          /* h->nr_huge_pages (HugePages_Total) */
    uint64_t free_huge_pages;        /* h->free_huge_pages (HugePages_Free) */
    uint64_t resv_huge_pages;        /* h->resv_huge_pages (HugePages_Rsvd) */
    uint64_t surplus_huge_pages;     /* h->surplus_huge_pages (HugePages_Surp; 0: no overcommit) */
} rmap_arena_header;

/* thp_flags: the top-level `enabled` mode in bits 0-1 (RMAP_THP_MODE_*, never
 * inherit), whether the trace set any THP setting (without one, every
 * mapping is VM_NOHUGEPAGE from the start), and whether a PMD leaf was made
 * without settings (MADV_COLLAPSE ignores them): the PMD paths then run while
 * the settings stay `never`. */
enum {
    RMAP_THP_MODE_NEVER = 0,
    RMAP_THP_MODE_ALWAYS = 1,
    RMAP_THP_MODE_MADVISE = 2,
    RMAP_THP_MODE_INHERIT = 3,
    RMAP_THP_ENABLED_MASK = 0x3,
    RMAP_THP_CONFIGURED = 0x4,
    RMAP_THP_PMD_LEAVES = 0x8
};

/* struct page (the fields rmap needs). A large folio is 2^order contiguous
 * frames, aligned: the head (PG_head) holds the folio's flags, refcount,
 * mapping, index and private; every page keeps its own _mapcount, content and
 * PG_anon_exclusive / PG_hwpoison; a tail (PG_tail) names its head in `next`
 * (compound_head). As struct folio does, the folio's own counters overlay the
 * first tail pages (the unions): page[1] holds _large_mapcount,
 * _entire_mapcount, _nr_pages_mapped, the order, _mm_id[2] and
 * _mm_id_mapcount[2]; page[2] the _deferred_list links. */
typedef struct rmap_page {
    uint64_t flags;          /* PG_* bits, see PageFlags.swift */
    int32_t refcount;        /* page->_refcount (0 in a tail) */
    int32_t mapcount;        /* page->_mapcount: -1 when unmapped, as in the kernel */
    union {
        uint64_t mapping;    /* tagged byte offset: anon_vma|1, movable|2, ksm|3, or address_space */
        struct {             /* page[1] of a large folio: */
            int32_t large_mapcount;   /* folio->_large_mapcount (-1 based) */
            int32_t entire_mapcount;  /* folio->_entire_mapcount (-1 based): PMD mappings */
        };
        struct {             /* page[2] of a large folio: folio->_deferred_list */
            uint32_t deferred_next;   /* head PFN of the next folio on the queue, 0 at the end */
            uint32_t deferred_prev;
        };
    };
    union {
        uint64_t index;      /* page->index: pgoff in the file or linear_page_index of the anon VMA */
        struct {             /* page[1]: */
            int32_t nr_pages_mapped;  /* folio->_nr_pages_mapped (+ ENTIRELY_MAPPED per PMD) */
            uint32_t order;           /* folio_order() (the kernel keeps it in _flags_1) */
        };
    };
    union {
        uint64_t private_;   /* page_private: the swap entry while in the swap cache */
        uint32_t mm_id[2];   /* page[1]: folio->_mm_id[2]; bit 31 of mm_id[1] is
                                FOLIO_MM_IDS_SHARED_BIT (the top bit of _mm_ids) */
    };
    uint64_t content;        /* the page's content token */
    uint32_t next;           /* free list / LRU link; a tail: compound_head (the head PFN) */
    uint32_t prev;
    union {
        uint64_t serial;     /* allocation serial, for deterministic reporting */
        int32_t mm_id_mapcount[2]; /* page[1]: folio->_mm_id_mapcount[2] (-1 based) */
    };
} rmap_page;

/* struct ptdesc: what the kernel keeps in the struct page of a page-table page. */
typedef struct rmap_ptdesc {
    uint32_t level;          /* 4 PGD, 3 PUD, 2 PMD, 1 PTE */
    uint32_t used;           /* non-none entries */
    uint32_t next;           /* free list */
    uint32_t ptl;            /* the split page-table lock word (the model takes no locks); a PMD
                                table shared by hugetlb mappings keeps its pt_share_count here:
                                the PUD entries beyond the first that point to it */
} rmap_ptdesc;

typedef struct rmap_mm {
    uint32_t pgd;            /* PT page index of the PGD */
    uint32_t mm_rb;          /* root of the VMA tree (VMA index) */
    uint32_t map_count;
    int32_t mm_users;
    int64_t rss[4];          /* MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES */
    uint64_t hiwater_rss;
    uint64_t total_vm;
    uint64_t locked_vm;
    uint32_t next;           /* free list */
    uint32_t pid;
    uint64_t mmap_lock;      /* rw_semaphore word */
    /* KSM: the mm's ksm_mm_slot folded in (mm/ksm.c) */
    uint32_t ksm_rmap_list;  /* first ksm_rmap_item, in address order */
    uint32_t ksm_slot_next;  /* next mm on ksm_mm_head's list */
    uint32_t ksm_flags;      /* MMF_VM_MERGEABLE (1): on the list */
    uint32_t ksm_rmap_items; /* mm->ksm_rmap_items */
    uint64_t ksm_merging_pages; /* mm->ksm_merging_pages */
} rmap_mm;

typedef struct rmap_vma {
    uint64_t vm_start;
    uint64_t vm_end;         /* exclusive */
    uint64_t vm_pgoff;
    uint64_t vm_flags;
    uint32_t mm;
    uint32_t file;           /* address_space index, 0 for private anonymous */
    uint32_t anon_vma;       /* locked by mmap_lock and page_table_lock */
    uint32_t avc_head;       /* anon_vma_chain (same_vma list), most recent first */
    rmap_rb_node mm_rb;      /* in mm->mm_rb, keyed by [vm_start, vm_end - 1] */
    rmap_rb_node shared_rb;  /* in file->i_mmap, keyed by [pgoff, pgoff + pages - 1]; locked by i_mmap_rwsem */
    uint32_t next;           /* free list */
    uint32_t vm_lock;
} rmap_vma;

typedef struct rmap_anon_vma {
    uint32_t root;           /* root of this anon_vma tree */
    uint32_t parent;         /* parent in the fork hierarchy */
    int32_t refcount;
    uint32_t degree;         /* v3.19-v5.19: children + VMAs pointing here */
    uint32_t num_children;   /* v6.0+: child anon_vmas (self-parent counted) */
    uint32_t num_active_vmas;/* v6.0+: VMAs whose vma->anon_vma is this one */
    uint32_t rb_root;        /* interval tree of AVCs; locked by root->rwsem */
    uint32_t next;           /* free list */
    uint64_t rwsem;          /* meaningful in the root only */
    uint64_t serial;         /* creation serial, for reports */
} rmap_anon_vma;

typedef struct rmap_avc {
    uint32_t vma;
    uint32_t anon_vma;
    uint32_t same_vma_next;  /* locked by mmap_lock & page_table_lock */
    uint32_t same_vma_prev;
    rmap_rb_node rb;         /* locked by anon_vma->rwsem */
} rmap_avc;

typedef struct rmap_file {
    uint64_t size_pages;     /* i_size in pages */
    uint64_t nrpages;        /* pages in the page cache */
    uint32_t i_mmap;         /* interval tree of VMAs; locked by i_mmap_rwsem */
    uint32_t cache_root;     /* page cache: a radix tree of PT pages, leaves hold PFNs */
    uint32_t kind;           /* 1 regular file, 2 shmem */
    int32_t refcount;        /* references: the trace's name, each VMA */
    uint32_t i_mmap_writable;
    uint32_t next;           /* free list */
    uint64_t i_mmap_rwsem;
    uint64_t serial;
} rmap_file;

typedef struct rmap_swap_slot {
    uint16_t count;          /* swap_map[]: references from swap PTEs and the swap cache */
    uint16_t flags;          /* SWAP_HAS_CACHE */
    uint32_t cache_frame;    /* the frame in the swap cache for this slot, 0 if none */
    uint64_t content;        /* the content token written to the slot by pageout */
} rmap_swap_slot;

/* struct ksm_rmap_item (mm/ksm.c): one scanned (mm, address). `address`
 * carries the kernel's low flag bits (SEQNR_MASK 0xff, UNSTABLE_FLAG 0x100,
 * STABLE_FLAG 0x200). */
typedef struct rmap_ksm_item {
    uint32_t rmap_list;      /* next rmap_item of the mm (free list link too) */
    uint32_t anon_vma;       /* when stable: the VMA's anon_vma (a reference is held) */
    uint32_t mm;
    uint32_t head;           /* when stable: the stable node */
    uint64_t address;        /* + flags in the low bits */
    uint64_t oldchecksum;    /* when unstable: the content token seen by the last scan */
    uint64_t vm_pgoff;       /* when stable: vma->vm_pgoff */
    uint32_t hlist_next;     /* when stable: next rmap_item of the stable node */
    uint32_t hlist_prev;     /* when stable: previous one (0: the node's first) */
    uint8_t age;             /* when unstable: scans since creation (smart scan) */
    uint8_t remaining_skips;
    uint16_t pad0;
    uint32_t pad1;
    rmap_rb_node node;       /* when unstable: in root_unstable_tree, keyed by oldchecksum */
} rmap_ksm_item;

/* struct ksm_stable_node (mm/ksm.c): one KSM page. */
typedef struct rmap_ksm_node {
    uint32_t hlist;          /* first rmap_item (free list link too) */
    uint32_t kpfn;           /* the KSM frame */
    int32_t rmap_hlist_len;
    uint32_t pad;
    uint64_t content;        /* the frame's content token: the stable tree's key */
    rmap_rb_node node;       /* in root_stable_tree */
} rmap_ksm_node;

/* A process or file name of the trace, so a saved arena reopens with them. */
#define RMAP_NAME_MAX 64
enum { RMAP_NAME_PROCESS = 1, RMAP_NAME_FILE = 2 };
typedef struct rmap_name {
    uint32_t kind;           /* RMAP_NAME_PROCESS or RMAP_NAME_FILE */
    uint32_t index;          /* mm or file index; 0 for a process that exited */
    uint32_t order;          /* creation order */
    uint32_t len;            /* bytes of name[] in use */
    char name[RMAP_NAME_MAX];
} rmap_name;

/* Capacities requested when an arena is created. */
typedef struct rmap_arena_config {
    uint32_t frames;
    uint32_t pt_pages;
    uint32_t mms;
    uint32_t vmas;
    uint32_t anon_vmas;
    uint32_t avcs;
    uint32_t files;
    uint32_t swap_slots;
    uint32_t names;
    uint32_t ksm_items;
    uint32_t ksm_nodes;
} rmap_arena_config;

/* Computes the layout for a configuration into *hdr (sizes and offsets).
 * Returns the total size in bytes, or 0 when a capacity is out of range. */
uint64_t rmap_arena_layout(const rmap_arena_config *cfg, rmap_arena_header *hdr);

/* Reserves the arena: anonymous when path is NULL, else MAP_SHARED on the
 * file (created or truncated to size). MAP_NORESERVE: untouched pages cost
 * nothing. Returns the base, or NULL with errno set. */
void *rmap_arena_map(uint64_t size, const char *path);
/* The tables of rmap_arena_small_page_tables() back on 4 KiB host pages
 * (MADV_NOHUGEPAGE), the rest of the arena keeping the MADV_HUGEPAGE that
 * rmap_arena_map gave it. By default the frame table (struct page records)
 * and the page-table pages with their descriptors. Measured (docs/benchmarks.md,
 * issue 16): they are touched once each, in order, as a run grows, and
 * first-touch zeroing of 2 MiB host pages cost this VM 2-3x the system time
 * of 4 KiB ones, while the walks across thousands of processes chase VMAs,
 * anon_vmas and AVCs, which keep their 2 MiB pages. Advice only: never an
 * error. (The name is the first version's, which advised the frames alone.) */
void rmap_arena_advise_frames(void *base, const rmap_arena_header *hdr);
/* The tables (bit t for table t) an anonymous arena has on 4 KiB host pages
 * after rmap_arena_map and rmap_arena_advise_frames: the frame table, the
 * page-table pages and their descriptors; all of them with
 * RMAP_ARENA_SMALL_PAGES; none with RMAP_ARENA_HUGE_FRAMES; for
 * measurements, RMAP_ARENA_SMALL_TABLES=MASK names them (1: the frame table
 * alone, the layout before the page tables moved). Where the host has no
 * THP, all are on 4 KiB pages whatever this says. */
uint32_t rmap_arena_small_page_tables(void);
/* Maps an existing arena file; *size receives its size. With private_ != 0
 * the mapping is MAP_PRIVATE (changes stay in memory), else MAP_SHARED.
 * Nothing in it is trusted: the caller validates before use. */
void *rmap_arena_open(const char *path, uint64_t *size, int private_);
int rmap_arena_unmap(void *base, uint64_t size);
int rmap_arena_sync(void *base, uint64_t size);
/* Returns the pages of [offset, offset+len) to the kernel (MADV_DONTNEED). */
int rmap_arena_discard(void *base, uint64_t offset, uint64_t len);

#endif
