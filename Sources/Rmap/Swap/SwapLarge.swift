import CShims

/// THP_SWAP (CONFIG_THP_SWAP=y on this machine's 6.18): an anonymous large
/// folio is swapped out whole, in 2^order contiguous, naturally aligned
/// slots of one swap cluster (Swap.swift, folioAllocSwap), and a fault on
/// one of its swap entries maps it back from the swap cache
/// (do_swap_page's large-folio branch).
extension Kernel {
    /// The bits of a swap PTE other than its type and offset (soft-dirty,
    /// exclusive): what pte_move_swp_offset() keeps.
    static let swpFlagBits: UInt64 = 0x1ff

    /// pte_move_swp_offset(): the same swap PTE with offset `off`.
    @inline(__always) static func swpWithOffset(_ e: UInt64, _ off: UInt64) -> UInt64 {
        PTE.swpEntry(type: PTE.swpType(e), offset: off) | (e & swpFlagBits)
    }

    /// vm_swap_full(): more than half of the swap device is in use
    /// (nr_swap_pages * 2 < total_swap_pages).
    func vmSwapFull() -> Bool {
        let n = swapDeviceSlots
        guard n > 0 else { return false }
        var used: UInt64 = 0
        for off in 1...n where swapSlotInUse(swapMap + Int(off)) { used += 1 }
        return (n - used) * 2 < n
    }

    /// shrink_folio_list() (mm/vmscan.c, 6.18) on an anonymous, swap-backed
    /// large folio that reclaim decided to evict:
    /// - not yet in the swap cache: a folio that cannot be split is kept
    ///   (can_split_folio: references beyond its mappings: activate_locked);
    ///   a partially mapped one (on the deferred split queue) is split first
    ///   ("we can free the unmapped pages without IO"); otherwise
    ///   folio_alloc_swap() takes 2^order slots for it whole (add_to_swap:
    ///   the folio enters the swap cache, one reference per page, and is
    ///   marked dirty); without such slots it is split
    ///   (THP_SWPOUT_FALLBACK) and each small folio is reclaimed as any
    ///   other;
    /// - try_to_unmap(TTU_BATCH_FLUSH | TTU_SPLIT_HUGE_PMD | TTU_SYNC):
    ///   each PTE becomes the swap entry of its page's slot (folio->swap +
    ///   index), a PMD is split into PTEs first; a mapping left (an mlocked
    ///   VMA) is `fail`: what was unmapped stays unmapped, the folio stays
    ///   in the swap cache with its entries (activate_locked, which frees
    ///   the swap space only of an mlocked folio no swap PTE refers to, or
    ///   when swap is more than half full);
    /// - pageout(): the data of every page goes to its slot, then
    ///   __remove_mapping() deletes the folio from the swap cache and it is
    ///   freed whole.
    /// A folio already in the swap cache (a reclaim that failed before)
    /// goes straight to the unmap.
    func reclaimSwapBackedFolio(_ head: PFN) -> LargeReverseResult {
        let h = page(head)
        let nr = folioNrPages(head)
        if h.pointee.flags & PG.swapcache == 0 {
            guard canSplitFolio(head) else { return .fail }
            if folioOnDeferredList(head) { return reclaimSplitFolio(head) }
            let off = folioAllocSwap(head, order: Int(folioOrder(head)))
            if off == 0 { return reclaimSplitFolio(head) }
            h.pointee.flags |= PG.swapcache | PG.dirty  // add_to_swap_cache(), folio_mark_dirty()
            h.pointee.private_ = PTE.swpEntry(type: 0, offset: off)
            h.pointee.refcount += Int32(nr)  // the swap cache's references
        }
        getPage(head)  // isolate_lru_folio(): reclaim holds the folio while it works
        defer { putPage(head) }
        if folioMapcount(head) > 0 {
            let unmapped = tryToUnmapLargeAnon(head, flags: [.ignoreAccess, .batchFlush, .splitHugePMD])
            tryToUnmapFlush()
            if !unmapped {
                activateLockedFreeSwap(head)
                return .fail
            }
        }
        // pageout() -> swap_writeout(): the folio's data is on swap.
        let first = PTE.swpOffset(h.pointee.private_)
        for i in 0..<UInt64(nr) {
            if let s = swapSlot(first + i) { s.pointee.content = page(head.advanced(by: UInt32(i))).pointee.content }
        }
        h.pointee.flags &= ~PG.dirty
        // __remove_mapping(): out of the swap cache; freed by the isolation
        // reference's put above.
        deleteFromSwapCache(head)
        return .ok
    }

    /// shrink_folio_list()'s activate_locked: "not a candidate for
    /// swapping, so reclaim swap space": a folio kept in the swap cache
    /// leaves it when swap is more than half full or the folio is mlocked,
    /// and no swap PTE refers to its slots (folio_free_swap).
    func activateLockedFreeSwap(_ head: PFN) {
        let h = page(head)
        if h.pointee.flags & PG.swapcache != 0 && (h.pointee.flags & PG.mlocked != 0 || vmSwapFull()) {
            folioFreeSwap(head)
        }
    }

    /// can_split_folio(folio, 0, NULL) of an anonymous large folio not in
    /// the swap cache: every reference is a mapping.
    func canSplitFolio(_ head: PFN) -> Bool {
        Int(page(head).pointee.refcount) == folioLargeMapcount(head)
    }

    /// split_folio_to_list() in shrink_folio_list(): the folio is split
    /// (zero-filled pages go to the shared zero page, unmapped ones are
    /// freed) and every small folio left makes its own pass (reclaimPage).
    func reclaimSplitFolio(_ head: PFN) -> LargeReverseResult {
        let nr = folioNrPages(head)
        guard splitFolio(head) else { return .fail }
        var ok = true
        for i in 0..<nr where !isFree(T.frame, head.advanced(by: i).rawValue) {
            if !reclaimPage(head.advanced(by: i)) { ok = false }
        }
        return ok ? .ok : .fail
    }

    /// try_to_unmap() of an anonymous large folio as rmap_walk_anon() runs
    /// try_to_unmap_one() (6.18): once per VMA of the anon_vma tree that
    /// overlaps the folio's pgoff range, in tree order. In each VMA the
    /// VM_LOCKED check comes first (unless TTU_IGNORE_MLOCK): the folio is
    /// mlocked when the VMA maps it whole ("only mlock fully mapped
    /// pages"), and the walk ends (`false`); then a PMD that maps the folio
    /// is split with TTU_SPLIT_HUGE_PMD (split_huge_pmd_locked, and the walk
    /// restarts on the PTEs); then each PTE is unmapped as a small page's
    /// (TryToUnmapControl.rmapOne). The walk ends when the folio is no
    /// longer mapped. True when nothing maps it any more.
    func tryToUnmapLargeAnon(_ head: PFN, flags: TTUFlags) -> Bool {
        let av = pageAnonVMA(head)
        guard anonVMAIsLive(av) else { return folioMapcount(head) == 0 }
        let first = page(head).pointee.index
        let nr = folioNrPages(head)
        let tree = avcTree
        var vmas: [VMAID] = []
        var a = AVCID(IntervalTree.iterFirst(root: anonVMARoot(av).pointee, start: first, last: first + UInt64(nr) - 1, tree))
        while !a.isNone {
            vmas.append(avcVMA(a))
            a = AVCID(IntervalTree.iterNext(a.rawValue, start: first, last: first + UInt64(nr) - 1, tree))
        }
        let ctx = RmapContext(k: self)
        var c = TryToUnmapControl(flags: flags)
        walk: for v in vmas {
            if folioMapcount(head) == 0 { break }
            let root = mm(vmMM(v)).pointee.pgd
            if let haddr = vmaAddress(v, index: first), haddr & (Kernel.pmdSize - 1) == 0,
               let pmd = pmdSlot(root: root, key: haddr), PTE.isPMDLeaf(pmd.pointee), PTE.pfn(pmd.pointee) == head {
                if !flags.contains(.ignoreMlock) && vma(v).pointee.vm_flags & VM.locked != 0 {
                    mlockIsolatedLargeFolio(head)  // "restore the mlock which got missed"
                    return false
                }
                guard flags.contains(.splitHugePMD) else { return false }
                splitHugePMD(v, haddr, pmd)
            }
            for i in 0..<nr {
                guard let addr = vmaAddress(v, index: first + UInt64(i)) else { continue }
                if !c.rmapOne(ctx, pfn: head.advanced(by: i), vma: v, address: addr) { break walk }
            }
        }
        return folioMapcount(head) == 0
    }

    /// do_swap_page() (mm/memory.c, 6.18) when the swap cache holds a page
    /// of a large folio for the entry: the whole folio is mapped at once
    /// when its range lies inside the VMA and the PMD of the address and
    /// every PTE of that range holds the folio's swap entry of the page
    /// there, with the same bits (pte_same + swap_pte_batch); else only the
    /// faulting page is. ksm_might_need_to_copy() leaves a large folio as
    /// it is. The swap counts of the entries go (swap_free_nr), the folio
    /// leaves the swap cache when should_try_to_free_swap() says so and no
    /// slot of it is still referenced (folio_free_swap), and it is mapped
    /// writable and exclusive when the entry said SWP_EXCLUSIVE or the
    /// fault's reference is the only one (folio_ref_count == 1);
    /// folio_add_anon_rmap_ptes() and set_ptes() for the batch. A write to
    /// a page left read-only goes on to do_wp_page().
    func doSwapPageLarge(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>,
                         page pfn: PFN, write: Bool) -> FaultResult {
        let orig = slot.pointee
        let head = folioOf(pfn)
        let h = page(head)
        let nr = folioNrPages(head)
        let idx = UInt32(head.distance(to: pfn))
        let pageAddr = addr & ~(PAGE_SIZE - 1)
        var nrPages: UInt32 = 1
        var firstPage = pfn
        var start = pageAddr
        var ptep = slot
        var entry = orig
        if h.pointee.flags & PG.swapcache != 0, UInt64(idx) << PAGE_SHIFT <= pageAddr {
            let folioStart = pageAddr - UInt64(idx) << PAGE_SHIFT
            let folioEnd = folioStart + UInt64(nr) << PAGE_SHIFT
            let pmdStart = pageAddr & ~(Kernel.pmdSize - 1)
            let vp = vma(v).pointee
            if folioStart >= max(pmdStart, vp.vm_start), folioEnd <= min(pmdStart + Kernel.pmdSize, vp.vm_end) {
                let fp = slot - Int(idx)
                let e0 = Kernel.swpWithOffset(orig, PTE.swpOffset(orig) - UInt64(idx))
                var batch = true
                for j in 0..<Int(nr) where fp[j] != Kernel.swpWithOffset(e0, PTE.swpOffset(e0) + UInt64(j)) {
                    batch = false
                    break
                }
                if batch {
                    nrPages = nr
                    firstPage = head
                    start = folioStart
                    ptep = fp
                    entry = e0
                }
            }
        }
        getPage(head)  // swap_cache_get_folio()'s reference
        let exclusive = orig & PTE.swpExclusive != 0
        // swap_free_nr(): the swap cache still holds the slots.
        let off = PTE.swpOffset(entry)
        for j in 0..<UInt64(nrPages) {
            if let s = swapSlot(off + j), s.pointee.count > 0 { s.pointee.count -= 1 }
        }
        // should_try_to_free_swap(): swap more than half full, an mlocked
        // VMA or folio, or a write fault where only the swap cache and this
        // fault hold the folio.
        let vmFlags = vma(v).pointee.vm_flags
        if h.pointee.flags & PG.swapcache != 0,
           vmSwapFull() || vmFlags & VM.locked != 0 || h.pointee.flags & PG.mlocked != 0
            || (write && Int(h.pointee.refcount) == 1 + Int(nr)) {
            folioFreeSwap(head)
        }
        addMMCounter(m, .anon, Int64(nrPages))
        addMMCounter(m, .swapents, -Int64(nrPages))
        var prot = PTE.pageProt(vmFlags: vmFlags)
        if orig & PTE.swpSoftDirty != 0 { prot |= PTE.softDirty }
        let mapExclusive = exclusive || h.pointee.refcount == 1
        var dirtied = false
        if mapExclusive && vmFlags & VM.write != 0 {
            prot |= PTE.rw
            if write {
                prot |= PTE.dirty
                dirtied = true
            }
        }
        h.pointee.refcount += Int32(nrPages) - 1  // folio_ref_add(folio, nr_pages - 1)
        folioAddAnonRmapPTEs(firstPage, nrPages, vma: v, address: start, exclusive: mapExclusive)
        for j in 0..<Int(nrPages) {
            ptep[j] = PTE.make(pfn: firstPage.advanced(by: UInt32(j)), prot: prot)
            if _slowPath(hooks.reverseMapOn) {
                hooks.reverseMap!.anonAdded(self, pfn: firstPage.advanced(by: UInt32(j)), vma: v, address: start + UInt64(j) << PAGE_SHIFT)
            }
        }
        if dirtied { h.pointee.flags |= PG.dirty }
        if nrPages < nr { h.pointee.flags |= PG.remappedInPart }
        if write && !dirtied { return doWPPage(m, v, addr, slot) }
        return .ok
    }
}
