import CShims

/// Which VMAs a page_referenced() walk looks at: the memcg filter of
/// page_referenced(…, memcg, …) (invalid_page_referenced_vma). Generic so the
/// walk pays nothing when there is no filter.
public protocol ReferencedVMAFilter {
    /// True skips the VMA (mm_match_cgroup(vma->vm_mm, memcg) is false).
    func skips(_ m: RmapContext, vma: VMAID) -> Bool
}

/// No memcg: every VMA counts (page_referenced(page, …, NULL, …)).
public struct AllVMAs: ReferencedVMAFilter {
    public init() {}
    @inline(__always) public func skips(_ m: RmapContext, vma: VMAID) -> Bool { false }
}

/// The model has no memory cgroups; this stands for one that holds exactly
/// the mm `mm` (reclaim on behalf of that cgroup counts only its references).
public struct OneMMCgroup: ReferencedVMAFilter {
    public let mm: MMID
    public init(mm: MMID) { self.mm = mm }
    @inline(__always) public func skips(_ m: RmapContext, vma: VMAID) -> Bool { m.vmaRange(vma).mm != mm }
}

/// page_referenced()'s walk state (struct page_referenced_arg) and rmap_one.
struct PageReferencedControl<Filter: ReferencedVMAFilter>: RmapWalkControl {
    /// PTEs still to look at (total_mapcount at the start).
    var mapcount: Int
    /// VMAs that referenced the page.
    var referenced = 0
    /// The flags of those VMAs, and VM_LOCKED when a locked VMA ended the walk.
    var vmFlags: UInt64 = 0
    let filter: Filter?

    /// invalid_page_referenced_vma(), set only when a memcg is given.
    mutating func invalidVMA(_ m: RmapContext, vma vID: VMAID) -> Bool {
        guard let filter else { return false }
        return filter.skips(m, vma: vID)
    }

    /// Models `page_referenced_one()` (mm/rmap.c), v5.15 with the 6.x mlock
    /// restore: a VM_LOCKED VMA that maps the page ends the walk (its PTE is
    /// neither counted nor aged; VM_LOCKED is reported and the page mlocked
    /// again, folio_referenced_one of 6.x); otherwise a young PTE (primary or
    /// any secondary MMU, ptep_clear_flush_young_notify; x86 flushes no TLB
    /// for it) is aged and counts unless the VMA is VM_SEQ_READ (no trace sets
    /// it; 6.x dropped the exception); PG_young (idle tracking) counts too and
    /// is cleared, a reference clears PG_idle. The VMA counts once; the walk
    /// ends when every mapping was seen. Left out: PMD mappings, MGLRU
    /// look-around (lru_gen_enabled() false).
    mutating func rmapOne(_ m: RmapContext, pfn pfnID: PFN, vma vID: VMAID, address: UInt64) -> Bool {
        let pfn = pfnID, v = vID
        let k = m.k
        let flagsV = k.vma(v).pointee.vm_flags
        var refs = 0
        if let slot = k.pageVMAMappedWalk(pfn, v, address) {
            if flagsV & VM.locked != 0 {
                k.page(pfn).pointee.flags |= PG.mlocked | PG.unevictable  // mlock_vma_folio()
                vmFlags |= VM.locked
                return false  // To break the loop
            }
            if k.ptepClearFlushYoungNotify(k.vmMM(v), address, slot) {
                if flagsV & VM.seqRead == 0 { refs += 1 }
            }
            mapcount -= 1
        }
        let p = k.page(pfn)
        if refs > 0 { p.pointee.flags &= ~PG.idle }  // clear_page_idle()
        if p.pointee.flags & PG.young != 0 {  // test_and_clear_page_young()
            p.pointee.flags &= ~PG.young
            refs += 1
        }
        if refs > 0 {
            referenced += 1
            vmFlags |= flagsV
        }
        return mapcount != 0
    }
}

/// page_mkclean()'s rmap_one and its VMA filter.
struct PageMkcleanControl: RmapWalkControl {
    var cleaned = 0

    /// invalid_mkclean_vma(): only shared mappings are cleaned.
    mutating func invalidVMA(_ m: RmapContext, vma v: VMAID) -> Bool {
        m.k.vma(v).pointee.vm_flags & VM.shared == 0
    }

    /// Models `page_mkclean_one()` (mm/rmap.c), v5.15: within an
    /// invalidate_range_start/end pair (MMU_NOTIFY_PROTECTION_PAGE), a PTE
    /// that is dirty or writable is cleared and flushed (ptep_clear_flush),
    /// then set again write-protected and clean, and counted. The PTE's dirty
    /// bit is not moved to the page: page_mkclean's caller
    /// (folio_clear_dirty_for_io) marks the folio dirty when the count is
    /// non-zero; the statement models page_mkclean alone, so PG_dirty is left
    /// as it was. Left out: PMD mappings, flush_cache_page (x86: nothing).
    mutating func rmapOne(_ m: RmapContext, pfn pfnID: PFN, vma vID: VMAID, address: UInt64) -> Bool {
        let pfn = pfnID, v = vID
        let k = m.k
        let mmi = k.vmMM(v)
        k.mmuInvalidateRangeStart(mmi, address, address + PAGE_SIZE)
        defer { k.mmuInvalidateRangeEnd(mmi, address, address + PAGE_SIZE) }
        guard let slot = k.pageVMAMappedWalk(pfn, v, address) else { return true }
        let e = slot.pointee
        if !PTE.isDirty(e) && !PTE.isWrite(e) { return true }
        slot.pointee = 0
        k.flushTLBPage()  // ptep_clear_flush()
        slot.pointee = e & ~(PTE.rw | PTE.dirty)  // pte_wrprotect(pte_mkclean())
        cleaned += 1
        return true
    }
}

extension Kernel {
    /// page_referenced(): how many VMAs referenced the frame since the last
    /// call (their accessed bits are cleared). `filter` is the memcg filter
    /// (nil: none). Models `page_referenced()` (mm/rmap.c): 0 for an unmapped
    /// page or one without an rmapping; the trylock of a file page always
    /// succeeds in the single-threaded model.
    package func pageReferenced<F: ReferencedVMAFilter>(_ pfn: PFN, filter: F?) -> (referenced: Int, vmFlags: UInt64) {
        let mapcount = pageMapcount(pfn)
        if mapcount == 0 { return (0, 0) }
        if page(pfn).pointee.mapping == 0 { return (0, 0) }  // !page_rmapping()
        var c = PageReferencedControl(mapcount: mapcount, filter: filter)
        rmapWalk(pfn, &c)
        return (c.referenced, c.vmFlags)
    }

    /// page_mkclean(): write-protects and cleans every shared PTE of the
    /// frame; returns how many it changed. Models `page_mkclean()`
    /// (mm/rmap.c): 0 for an unmapped page or one without page_mapping()
    /// (an anon page outside the swap cache); an anon page in the swap
    /// cache is walked but has no shared VMA.
    func pageMkclean(_ pfn: PFN) -> Int {
        if pageMapcount(pfn) == 0 { return 0 }
        let p = page(pfn).pointee
        let hasMapping = pageIsAnon(pfn) ? p.flags & PG.swapcache != 0 : !pageFile(pfn).isNone
        if !hasMapping { return 0 }
        var c = PageMkcleanControl()
        rmapWalk(pfn, &c)
        return c.cleaned
    }
}

/// page_idle_clear_pte_refs()'s rmap_walk_control (mm/page_idle.c): no
/// filter, every mapping is visited.
struct PageIdleClearRefsControl: RmapWalkControl {
    /// Models `page_idle_clear_pte_refs_one()`: the PTE's accessed bit (and
    /// every secondary MMU's, ptep_clear_young_notify: no TLB flush) is
    /// tested and cleared; if any was set the page is no longer idle and is
    /// marked young, so that a later page_referenced() still counts the
    /// reference it took away (folio_clear_idle + folio_set_young).
    mutating func rmapOne(_ m: RmapContext, pfn pfnID: PFN, vma vID: VMAID, address: UInt64) -> Bool {
        let pfn = pfnID, v = vID
        let k = m.k
        guard let slot = k.pageVMAMappedWalk(pfn, v, address) else { return true }
        if k.ptepClearYoungNotify(k.vmMM(v), address, slot) {
            k.page(pfn).pointee.flags = (k.page(pfn).pointee.flags & ~PG.idle) | PG.young
        }
        return true
    }
}

extension Kernel {
    /// ptep_clear_young_notify(): the primary accessed bit is tested and
    /// cleared without a flush, then the secondary MMUs' (mmu_notifier_clear_young).
    func ptepClearYoungNotify(_ m: MMID, _ address: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> Bool {
        var young = PTE.isYoung(slot.pointee)
        slot.pointee &= ~PTE.accessed
        if hooks.hasSubscriptions && mmuClearYoung(m, address, address + PAGE_SIZE) { young = true }
        return young
    }

    /// page_idle_get_folio(): only an LRU folio in use is tracked (the zero
    /// page, free frames and isolated ones are not).
    func pageIdleTracked(_ pfn: PFN) -> Bool {
        guard !pfn.isNone, pfn != zeroPFN, pfn.rawValue < desc(T.frame).pointee.bump else { return false }
        let p = page(pfn).pointee
        return p.flags & PG.lru != 0 && p.refcount > 0
    }

    /// page_idle_clear_pte_refs(): walks the rmap of a mapped folio with a
    /// mapping (the trylock of a file or KSM folio always succeeds in the
    /// single-threaded model).
    func pageIdleClearPTERefs(_ pfn: PFN) {
        if pageMapcount(pfn) == 0 || page(pfn).pointee.mapping == 0 { return }
        var c = PageIdleClearRefsControl()
        rmapWalk(pfn, &c)
    }

    /// One bit of a write to /sys/kernel/mm/page_idle/bitmap
    /// (page_idle_bitmap_write): the PTE references are cleared first, then
    /// the folio is marked idle. False for an untracked frame.
    func pageIdleMark(_ pfn: PFN) -> Bool {
        guard pageIdleTracked(pfn) else { return false }
        pageIdleClearPTERefs(pfn)
        page(pfn).pointee.flags |= PG.idle
        return true
    }

    /// One bit of a read of /sys/kernel/mm/page_idle/bitmap
    /// (page_idle_bitmap_read): an idle folio whose PTEs were referenced
    /// since is cleared of them and reported not idle. Nil for an untracked frame.
    func pageIdleRead(_ pfn: PFN) -> Bool? {
        guard pageIdleTracked(pfn) else { return nil }
        guard page(pfn).pointee.flags & PG.idle != 0 else { return false }
        pageIdleClearPTERefs(pfn)
        return page(pfn).pointee.flags & PG.idle != 0
    }
}
