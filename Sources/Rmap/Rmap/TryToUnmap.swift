import CShims

/// try_to_unmap() and its rmap_one, try_to_unmap_one() (mm/rmap.c), in the
/// order of the seeds' v5.0 code for the branches the model has.
struct TryToUnmapControl: RmapWalkControl {
    var flags: TTUFlags
    /// False once a mapping could not be removed (mlocked VMA, young PTE,
    /// no swap slot, redirtied lazyfree page).
    var ret = true

    mutating func rmapOne(_ m: RmapContext, pfn: UInt32, vma v: UInt32, address: UInt64) -> Bool {
        let k = m.k
        guard let slot = k.pageVMAMappedWalk(pfn, v, address) else { return true }
        let flagsV = k.vma(v).pointee.vm_flags
        let mmi = k.vma(v).pointee.mm
        // VM_LOCKED: the page is mlocked, not unmapped.
        if !flags.contains(.ignoreMlock) && flagsV & VM.locked != 0 {
            k.page(pfn).pointee.flags |= PG.mlocked | PG.unevictable
            ret = false
            return false
        }
        if flags.contains(.munlock) { return true }
        // A young PTE means the page is in use: keep it (ptep_clear_flush_young_notify).
        if !flags.contains(.ignoreAccess) {
            if PTE.isYoung(slot.pointee) {
                slot.pointee &= ~PTE.accessed
                ret = false
                return false
            }
        }
        // ptep_clear_flush(): the entry goes; its dirty bit moves to the page.
        let pteval = slot.pointee
        slot.pointee = 0
        if PTE.isDirty(pteval) { k.page(pfn).pointee.flags |= PG.dirty }
        let p = k.page(pfn)
        if k.pageIsAnon(pfn) {
            if p.pointee.flags & PG.swapbacked == 0 {
                // MADV_FREE page: discard when clean, else it is in use again.
                if !PTE.isDirty(pteval) && p.pointee.flags & PG.dirty == 0 {
                    k.addMMCounter(mmi, .anon, -1)
                    k.folioRemoveRmapPTE(pfn, vma: v)
                    k.putPage(pfn)
                    return true
                }
                p.pointee.flags |= PG.swapbacked
                slot.pointee = pteval
                ret = false
                return false
            }
            let entry = p.pointee.private_
            guard p.pointee.flags & PG.swapcache != 0, k.swapDuplicate(entry) else {
                slot.pointee = pteval  // swap_duplicate() failed: restore the PTE
                ret = false
                return false
            }
            var swp = entry
            if p.pointee.flags & PG.anonExclusive != 0 { swp |= PTE.swpExclusive }
            if pteval & PTE.softDirty != 0 { swp |= PTE.swpSoftDirty }
            p.pointee.flags &= ~PG.anonExclusive
            k.addMMCounter(mmi, .anon, -1)
            k.addMMCounter(mmi, .swapents, 1)
            slot.pointee = swp
        } else {
            k.addMMCounter(mmi, k.mmCounterFor(pfn), -1)
        }
        k.folioRemoveRmapPTE(pfn, vma: v)
        k.putPage(pfn)
        return true
    }

    /// page_mapcount(page) == 0: nothing left to unmap.
    mutating func done(_ m: RmapContext, pfn: UInt32) -> Bool { m.k.pageMapcount(pfn) == 0 }
}

extension Kernel {
    /// try_to_unmap(): true when no mapping of the frame remains.
    func tryToUnmap(_ pfn: UInt32, flags: TTUFlags) -> Bool {
        var c = TryToUnmapControl(flags: flags)
        rmapWalk(pfn, &c)
        return c.ret && pageMapcount(pfn) == 0
    }

    /// The part of shrink_folio_list() that runs once reclaim decided to
    /// evict the frame (page_referenced not consulted): an anonymous page
    /// gets a swap slot (add_to_swap; without one it stays), the mappings go
    /// (try_to_unmap with TTU_BATCH_FLUSH, references ignored), then a dirty
    /// page is written back (pageout) and a clean one leaves its cache and is
    /// freed (__remove_mapping). A lazyfree page that is still clean is
    /// simply dropped. Shmem pages without swap stay in their cache.
    /// Returns false when the frame could not be reclaimed.
    func reclaimPage(_ pfn: UInt32) -> Bool {
        let p = page(pfn)
        let anon = pageIsAnon(pfn)
        if anon && p.pointee.flags & PG.swapbacked != 0 && p.pointee.flags & PG.swapcache == 0 {
            let off = getSwapPage(for: pfn)
            if off == 0 { return false }
            p.pointee.flags |= PG.swapcache | PG.dirty
            p.pointee.private_ = PTE.swpEntry(type: 0, offset: off)
            getPage(pfn)  // the swap cache's reference
        }
        getPage(pfn)  // isolate_lru_folio(): reclaim holds the page while it works
        defer { putPage(pfn) }
        if pageMapcount(pfn) > 0 {
            if !tryToUnmap(pfn, flags: [.ignoreAccess, .batchFlush]) { return false }
        }
        if anon {
            if p.pointee.flags & PG.swapcache == 0 {
                // A lazyfree page: the unmap discarded it; drop it from the LRU.
                return true
            }
            // pageout() to swap, then __remove_mapping() from the swap cache.
            p.pointee.flags &= ~PG.dirty
            let e = p.pointee.private_
            p.pointee.flags &= ~PG.swapcache
            p.pointee.private_ = 0
            if let s = swapSlot(PTE.swpOffset(e)) {
                s.pointee.flags = 0
                s.pointee.cache_frame = 0
            }
            putPage(pfn)
            return true
        }
        let f = pageFile(pfn)
        guard f != 0 else { return true }
        if file(f).pointee.kind == FileKind.shmem.rawValue {
            // shmem_writeout() without a swap slot for it: redirtied, kept.
            return false
        }
        if p.pointee.flags & PG.dirty != 0 {
            // pageout(): reclaim may not write file folios; the folio stays
            // cached and dirty with PG_reclaim, which fault-around reads as
            // PG_readahead and skips (observed on 6.18).
            p.pointee.flags |= PG.reclaim
            return false
        }
        pageCacheRemove(f, p.pointee.index)
        return true
    }
}
