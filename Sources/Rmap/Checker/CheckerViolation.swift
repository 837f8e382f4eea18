/// One broken invariant found by the checker (`Machine.checkViolations()`):
/// which invariant (`kind`), the object the message starts with (`object`,
/// when there is one) and the message. Callers decide by `kind`; the message
/// is for people. `description` is the message, exactly as the checker has
/// always printed it.
public struct CheckerViolation: Equatable, Sendable, CustomStringConvertible {
    /// The invariants the checker verifies, one case each. Each names the
    /// kernel structure and the rule it must keep.
    public enum Kind: String, Sendable, CaseIterable {
        // MARK: the address space (validate_mm)

        /// An mm's VMA tree (mm->mm_rb) is a sound augmented red-black tree:
        /// ordered, balanced, subtree maxima right (validate_mm's browse_rb).
        case vmaTree
        /// vma->vm_mm names the mm whose tree holds the VMA.
        case vmaMM
        /// vm_start < vm_end, both page aligned.
        case vmaRange
        /// The VMAs of an mm do not overlap (sorted by vm_start, disjoint).
        case vmaOverlap
        /// mm->map_count equals the number of VMAs in the mm.
        case mmMapCount
        /// mm->total_vm equals the pages the mm's VMAs span.
        case mmTotalVM
        /// mm->locked_vm equals the pages spanned by the mm's VM_LOCKED VMAs.
        case mmLockedVM
        /// No page-table entry lies outside every VMA (free_pgtables and
        /// unmap_region leave nothing behind).
        case pteOutsideVMA
        /// The mm's RSS counters (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS,
        /// MM_SHMEMPAGES; check_mm's "BUG: Bad rss-counter state") equal what
        /// its page tables hold.
        case rssCounter

        // MARK: anon_vma, anon_vma_chain (anon_vma_interval_tree_verify)

        /// Every anon_vma_chain on a VMA's same_vma list points back at that
        /// VMA (avc->vma).
        case avcVMA
        /// Every anon_vma_chain is in its anon_vma's interval tree.
        case avcInTree
        /// Every anon_vma a VMA's chain links shares the root of the VMA's own
        /// anon_vma (one lock, anon_vma->root->rwsem, covers the whole family).
        case avcRoot
        /// A VMA with an anon_vma has an anon_vma_chain linking it to that
        /// anon_vma (the one __page_set_anon_rmap puts its new pages under).
        case vmaOwnAVC
        /// An anon_vma's interval tree of chains (anon_vma->rb_root) is sound:
        /// ordered, balanced, subtree maxima right (anon_vma_interval_tree_verify).
        case anonVMATree
        /// anon_vma->root is a root (its own root).
        case anonVMARoot
        /// A live anon_vma's parent is in the same tree (same root).
        case anonVMAParent
        /// num_active_vmas counts the VMAs whose vma->anon_vma it is,
        /// num_children its children (a root counts itself while its tree is
        /// not empty), and degree (v3.19-v5.19) is their sum.
        case anonVMACounters
        /// A live anon_vma holds a reference (refcount >= 1).
        case anonVMARefcount
        /// anon_vma_clone() did not reuse an anon_vma that a VMA still uses
        /// (the "degree" reuse rule's bug, CVE-2022-42703).
        case anonVMAReusedInUse

        // MARK: files

        /// A file-backed VMA is in its file's i_mmap interval tree.
        case iMMap
        /// file->i_mmap_writable counts the file's VM_SHARED|VM_MAYWRITE VMAs
        /// (mapping_map_writable / mapping_unmap_writable).
        case iMMapWritable

        // MARK: frames (page_mapcount, page_ref_count, rmap_walk)

        /// page->_mapcount + 1 equals the number of PTEs (and device-private
        /// entries) that map the frame.
        case mapcount
        /// page->_refcount covers its mappings and device-exclusive entries,
        /// and a live frame's is positive.
        case refcount
        /// A present PTE's frame is found by an rmap walk of that frame (at
        /// that VMA and address): the mapping is in the reverse map.
        case pteWithoutRmap
        /// A mapped anonymous frame's page->mapping names a live anon_vma
        /// (folio_anon_vma; the use-after-free the root rule prevents).
        case pageAnonVMA
        /// PG_mlocked on a mapped frame exactly when a VM_LOCKED VMA maps it
        /// (mlock_vma_page / munlock_vma_page with try_to_munlock).
        case mlock

        // MARK: large folios (mm/rmap.c, include/linux/rmap.h, mm/huge_memory.c)

        /// A large folio's counters equal the census of its mappings:
        /// _large_mapcount all PTEs and PMDs, _entire_mapcount the PMDs,
        /// _nr_pages_mapped the pages mapped by PTEs plus ENTIRELY_MAPPED
        /// while a PMD maps it; its refcount covers every mapping; its tails
        /// name their head and hold no reference of their own.
        case folioCounters
        /// A large folio's _mm_id slots: a slot in use names an mm that maps
        /// the folio at least its _mm_id_mapcount + 1 times (exactly, unless
        /// the mm mapped some while both slots were taken), a free slot has
        /// mapcount -1, and a folio mapped by two mms or more is marked
        /// shared (FOLIO_MM_IDS_SHARED_BIT).
        case folioMMIDs
        /// The deferred split queue is a sound list that holds exactly the
        /// anonymous large folios mapped in part (some pages by PTEs, some
        /// not at all, no PMD), its length counted right.
        case deferredSplit
        /// A PMD leaf maps an aligned PMD-order folio (or the huge zero page)
        /// inside one private anonymous VMA, with one PTE table deposited
        /// for it in its PMD table (pgtable_trans_huge_deposit).
        case pmdLeaf

        // MARK: hugetlb (mm/hugetlb.c)

        /// The pool's counters equal its census: nr_huge_pages the hugetlb
        /// folios, free_huge_pages those on the free list (each unreferenced,
        /// once), no surplus (no overcommit); free + in use = total.
        case hugetlbPool
        /// resv_huge_pages equals the reservations the maps hold: the indices
        /// of shared hugetlbfs files' maps without a cached page, plus the
        /// indices of owner private mappings not consumed, less the folios
        /// in use that give theirs back when freed (restore_reserve).
        case hugetlbReservations
        /// A hugetlb entry maps an in-use hugetlb folio inside its VMA, and
        /// the folio's entire mapcount (and large mapcount, equal to it)
        /// counts the entries that map it; no page is mapped on its own.
        case hugetlbFolio
        /// A PMD table shared by hugetlb mappings (huge_pmd_share) has a
        /// share count of the PUD entries beyond the first that point to
        /// it, and only VMAs that may share it (VM_MAYSHARE, the whole
        /// 1 GiB) do.
        case hugetlbPMDShare
        /// Every reservation (resv_huge_pages) is owned: by a live private
        /// owner VMA's reservation map (an index it has not consumed) or by
        /// a hugetlbfs file's region map (an index without its page). More
        /// reservations than owners is an orphan reservation: one nobody
        /// will give back (issue 20: 6.18's partial mremap of a private
        /// mapping). The message gives the pool's census.
        case hugetlbOrphanReservation
        /// A hugetlb migration entry (try_to_migrate_one's hugetlb branch)
        /// names an in-use hugetlb folio with a mapping (anonymous or its
        /// hugetlbfs file), never a temporary one, inside its VMA; the
        /// folio's _refcount covers its entries (the model's entry reference).
        case hugetlbMigrationEntry

        // MARK: special entries and device memory

        /// A hwpoison entry names a live frame with PG_hwpoison.
        case hwpoisonEntry
        /// A device-private frame is never mapped by a present PTE (only by
        /// device-private entries).
        case devicePrivatePresent
        /// A device-private entry names a live device-private frame.
        case devicePrivateEntry
        /// A device-exclusive entry names a live anonymous frame.
        case deviceExclusiveEntry

        // MARK: KSM (mm/ksm.c)

        /// No PTE maps a KSM frame writable (write_protect_page).
        case ksmWritable
        /// ksm_mm_head's list holds exactly the live mms with
        /// MMF_VM_MERGEABLE, once each, and its tail is the last slot; an mm
        /// without a slot has no rmap_items.
        case ksmMMList
        /// An mm's rmap_item list names that mm and is in address order.
        case ksmRmapList
        /// A stable rmap_item heads a live stable node, is on that node's
        /// hlist and holds a reference on a live anon_vma.
        case ksmStableItem
        /// A stable node's hlist holds items stable on that node, its back
        /// links are right, and rmap_hlist_len is its length.
        case ksmHlist
        /// The KSM counters (mm->ksm_rmap_items, mm->ksm_merging_pages,
        /// ksm_pages_shared, ksm_pages_sharing, ksm_pages_unshared) equal
        /// what the lists and the stable tree hold.
        case ksmCounters
        /// The stable tree (root_stable_tree) is a sound red-black tree.
        case ksmStableTree
        /// A KSM frame's content does not change while its stable node
        /// still keys it (write protection holds).
        case ksmContent
        /// A KSM frame's page->mapping names a stable node whose kpfn names
        /// that frame back.
        case ksmStableNode
        /// A KSM frame is never PG_anon_exclusive.
        case ksmAnonExclusive

        // MARK: non-LRU movable pages (the balloon)

        /// The balloon's page list (b_dev_info->pages) is a sound doubly
        /// linked list of balloon pages.
        case balloonList
        /// The balloon's counters (its pages, isolated_pages) equal the list
        /// and the isolated balloon pages.
        case balloonCounters
        /// A balloon page is on the list exactly when it is not isolated.
        case balloonIsolated
        /// A non-LRU movable page is never mapped.
        case movableMapped
        /// A PAGE_MAPPING_MOVABLE page has known movable_operations.
        case movableOps

        // MARK: isolation: one process never sees another's data

        /// A page with PG_anon_exclusive is mapped by one PTE at most (fork
        /// clears it on what it shares: folio_try_dup_anon_rmap_pte()).
        case anonExclusiveShared
        /// A writable PTE of a private mapping maps an exclusive anonymous
        /// page: never the zero page, a KSM page, a page-cache page or an
        /// anonymous page without PG_anon_exclusive.
        case writablePrivateNotExclusive
        /// A page mapped by more than one PTE is write-protected in every
        /// private mapping (COW).
        case sharedPageWritable
        /// Swap keeps do_swap_page()'s exclusivity rules: an SWP_EXCLUSIVE
        /// entry is its slot's only swap reference, and a swap-cache page is
        /// PG_anon_exclusive only when no swap entry still refers to its slot.
        case swapExclusivity
        /// The swap map (swap_map[] and SWAP_HAS_CACHE) equals its census:
        /// each slot's count is the number of swap PTEs naming it, it has
        /// SWAP_HAS_CACHE exactly when a swap-cache folio holds it (a
        /// folio's page i at folio->swap + i), a large swap-cache folio's
        /// slots are contiguous and naturally aligned inside one cluster of
        /// its order, the slots of a cluster agree on its order, and a free
        /// slot carries no flags (Checker/Checker+Swap.swift).
        case swapMap
        /// A frame's content token was written through a mapping that may
        /// write it: at the write, a present, writable PTE or PMD of the
        /// writer mapping that frame, which is the writer's own exclusive
        /// anonymous page (PG_anon_exclusive, mapped once, in the writer's
        /// rmap) in a private mapping, or the page of the mapping's file at
        /// that index in a VM_SHARED one; and later, the frame still reads
        /// what was written and still belongs to the writer's anon_vma
        /// family or file (Checker/Checker+Provenance.swift).
        case contentProvenance

        // MARK: the tables

        /// Each table's live count equals the objects reachable from the
        /// processes: VMAs, anon_vma_chains, mms, KSM rmap_items and stable
        /// nodes (nothing leaked).
        case leak
    }

    /// The object a violation is about: the one its message starts with.
    public enum Object: Hashable, Sendable {
        case frame(PFN)
        case mm(MMID)
        case vma(VMAID)
        case avc(AVCID)
        case anonVMA(AnonVMAID)
        case ksmItem(KSMItemID)
        case ksmNode(KSMNodeID)
    }

    public let kind: Kind
    /// The object the message starts with; nil for a table or list as a whole.
    public let object: Object?
    /// The message: the object, then the invariant and what was found.
    public let message: String

    public init(kind: Kind, object: Object?, message: String) {
        self.kind = kind
        self.object = object
        self.message = message
    }

    /// The frame, when the violation is about one.
    public var pfn: PFN? {
        if case .frame(let p) = object { return p }
        return nil
    }

    /// The message, exactly as `Machine.check()` has always printed it.
    public var description: String { message }
}
