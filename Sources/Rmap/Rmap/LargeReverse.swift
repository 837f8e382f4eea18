import CShims

/// The reverse side for large anonymous folios: the model-only statements
/// take the whole folio, as 6.x try_to_unmap, try_to_migrate,
/// folio_referenced, folio_mkclean and reclaim do.
extension Kernel {
    /// What a reverse statement on a large folio ends in.
    package enum LargeReverseResult: Equatable {
        case ok, fail, einval
        /// A path the model does not run yet for large folios (named).
        case notModelled(String)
    }

    /// try_to_unmap() of a large folio. The seeds' try_to_unmap_one() meets
    /// a PMD mapping with `VM_BUG_ON_PAGE(!pvmw.pte)` unless TTU_SPLIT_HUGE_PMD
    /// split it first (split_huge_pmd_address; with TTU_SPLIT_FREEZE the
    /// split PTEs become migration entries, which the per-PTE unmap with
    /// `split_freeze` gives the same way): EINVAL. A PMD migration entry
    /// (TTU_MIGRATION without the split) is not modelled yet. Each page's
    /// PTEs then go as a small page's do, the counters and references the
    /// folio's (folio_remove_rmap_ptes).
    package func tryToUnmapFolio(_ head: PFN, flags: TTUFlags) -> LargeReverseResult {
        getPage(head)  // the caller's reference, as try_to_unmap() requires
        defer { putPage(head) }
        if folioEntireMapcount(head) > 0 {
            if isLazyfree(head) && !flags.contains(.migration) {
                // 6.x unmaps a lazyfree PMD-mapped folio whole, before any
                // TTU_SPLIT_HUGE_PMD (unmap_huge_pmd_locked).
                if !discardLazyfreePMDs(head) { return .fail }
            } else if !flags.contains(.splitHugePMD) {
                // The seeds' VM_BUG_ON_PAGE(!pvmw.pte): EINVAL; with
                // TTU_MIGRATION a PMD migration entry, not modelled yet.
                return flags.contains(.migration) ? .notModelled("a PMD migration entry (set_pmd_migration_entry)") : .einval
            } else {
                forEachAnonPMDMapping(head) { v, haddr, pmd in splitHugePMD(v, haddr, pmd) }
            }
        }
        for i in 0..<folioNrPages(head) where page(head.advanced(by: i)).pointee.mapcount >= 0 {
            var c = TryToUnmapControl(flags: flags)
            rmapWalk(head.advanced(by: i), &c)
        }
        return folioMapcount(head) == 0 ? .ok : .fail
    }

    /// shrink_folio_list() on an anonymous large folio. This kernel swaps a
    /// large folio whole only when add_to_swap() finds a free cluster of its
    /// size (CONFIG_THP_SWAP); the model's swap has no clusters, so reclaim
    /// takes the kernel's fallback: split_folio_to_list() (remapping zero
    /// pages to the shared zero page), then each small folio is reclaimed as
    /// any other. A folio that cannot be split stays (activate_locked).
    package func reclaimFolio(_ head: PFN) -> LargeReverseResult {
        // A lazyfree folio (MADV_FREE) needs no swap: shrink_folio_list
        // unmaps it whole, PMDs included (TTU_SPLIT_HUGE_PMD does not apply to
        // it: unmap_huge_pmd_locked), and frees it if nothing redirtied it.
        if isLazyfree(head) {
            getPage(head)
            defer { putPage(head) }
            guard discardLazyfreePMDs(head) else { return .fail }
            for i in 0..<folioNrPages(head) where page(head.advanced(by: i)).pointee.mapcount >= 0 {
                var c = TryToUnmapControl(flags: [.ignoreAccess, .batchFlush])
                rmapWalk(head.advanced(by: i), &c)
            }
            tryToUnmapFlush()
            return folioMapcount(head) == 0 ? .ok : .fail
        }
        let nr = folioNrPages(head)
        guard splitFolio(head) else { return .fail }
        var ok = true
        for i in 0..<nr where !isFree(T.frame, head.advanced(by: i).rawValue) {
            if !reclaimPage(head.advanced(by: i)) { ok = false }
        }
        return ok ? .ok : .fail
    }

    /// migrate_pages() of a large anonymous folio (x86 migrates THP and
    /// mTHP whole, thp_migration_supported()): a new folio of the same
    /// order takes the data, flags, per-page mapcounts and PG_anon_exclusive,
    /// the folio counters and mm_id slots, and every PTE and PMD that mapped
    /// the old one (the migration entries' round trip keeps their bits); the
    /// old folio is freed. Without a free aligned run the folio is split and
    /// its pages migrated one by one, as migrate_pages_batch() falls back
    /// (-ENOMEM on a large folio: split and retry).
    package func migrateFolio(_ head: PFN) -> LargeReverseResult {
        let order = folioOrder(head)
        let nr = UInt32(1) << order
        let h = page(head).pointee
        guard h.flags & PG.swapcache == 0, Int(h.refcount) == folioLargeMapcount(head) else { return .fail }
        let dst = allocFolio(order: order)
        if dst.isNone {
            guard splitFolio(head) else { return .fail }
            var ok = true
            for i in 0..<nr where !isFree(T.frame, head.advanced(by: i).rawValue) && pageMapcount(head.advanced(by: i)) > 0 {
                if !migratePage(head.advanced(by: i)) { ok = false }
            }
            return ok ? .ok : .fail
        }
        let queued = folioOnDeferredList(head)
        deferredSplitRemove(head)
        // The mappings move first (found through the old folio's rmap).
        forEachAnonPMDMapping(head) { v, haddr, pmd in
            let m = vmMM(v)
            mmuInvalidateRangeStart(m, haddr, haddr + Kernel.pmdSize)
            pmd.pointee = (pmd.pointee & ~PTE.pfnMask) | (UInt64(dst.rawValue) << 12)
            mmuInvalidateRangeEnd(m, haddr, haddr + Kernel.pmdSize)
        }
        for i in 0..<nr where page(head.advanced(by: i)).pointee.mapcount >= 0 {
            forEachAnonPTEMapping(head.advanced(by: i)) { v, addr, slot in
                let m = vmMM(v)
                mmuInvalidateRangeStart(m, addr, addr + PAGE_SIZE)
                slot.pointee = (slot.pointee & ~PTE.pfnMask) | (UInt64(dst.advanced(by: i).rawValue) << 12)
                mmuInvalidateRangeEnd(m, addr, addr + PAGE_SIZE)
                if _slowPath(hooks.reverseMapOn) {
                    hooks.reverseMap!.removed(self, pfn: head.advanced(by: i), vma: v)
                    hooks.reverseMap!.anonAdded(self, pfn: dst.advanced(by: i), vma: v, address: addr)
                }
            }
        }
        // folio_migrate_mapping() / folio_migrate_flags() / copy: the records
        // move whole (the tails' compound_head names the new head).
        let serial = page(dst).pointee.serial
        for i in 0..<nr {
            page(dst.advanced(by: i)).pointee = page(head.advanced(by: i)).pointee
            if i > 0 { page(dst.advanced(by: i)).pointee.next = dst.rawValue }
        }
        page(dst).pointee.serial = serial
        page(dst.advanced(by: 2)).pointee.deferred_next = 0
        page(dst.advanced(by: 2)).pointee.deferred_prev = 0
        page(dst.advanced(by: 1)).pointee.flags &= ~PG.partiallyMapped
        if queued { deferredSplitFolio(dst) }
        // The old folio: unmapped, its references gone with its mappings.
        for i in 0..<nr {
            page(head.advanced(by: i)).pointee.mapcount = -1
            page(head.advanced(by: i)).pointee.flags &= ~PG.anonExclusive
        }
        page(head.advanced(by: 1)).pointee.large_mapcount = -1
        page(head.advanced(by: 1)).pointee.entire_mapcount = -1
        page(head.advanced(by: 1)).pointee.mm_id = (0, 0)
        page(head.advanced(by: 1)).pointee.mm_id_mapcount = (-1, -1)
        page(head).pointee.refcount = 1
        putPage(head)
        return .ok
    }

    /// folio_test_anon() && !folio_test_swapbacked(): marked lazyfree by MADV_FREE.
    func isLazyfree(_ head: PFN) -> Bool {
        pageIsAnon(head) && page(head).pointee.flags & PG.swapbacked == 0
    }

    /// __discard_anon_folio_pmd_locked() for every PMD that maps a lazyfree
    /// folio: a clean one goes (as zap_huge_pmd); a dirty PMD, or a folio
    /// redirtied, makes it swap-backed again and stops (false).
    func discardLazyfreePMDs(_ head: PFN) -> Bool {
        var ok = true
        forEachAnonPMDMapping(head) { v, haddr, pmd in
            guard ok else { return }
            if page(head).pointee.flags & PG.dirty != 0 || PTE.isDirty(pmd.pointee) {
                page(head).pointee.flags |= PG.swapbacked
                ok = false
                return
            }
            zapHugePMD(v, haddr, pmd)
        }
        return ok
    }

    /// folio_referenced() of a large anonymous folio: each VMA that maps
    /// part of it is visited once (folio_referenced_one over all its PTEs and
    /// its PMD); a young mapping in the VMA counts the VMA once; a VM_LOCKED
    /// VMA ends the walk (reported, the folio mlocked when it maps all of
    /// it). Returns (VMAs that referenced it, their flags).
    package func folioReferenced<F: ReferencedVMAFilter>(_ head: PFN, filter: F?) -> (referenced: Int, vmFlags: UInt64) {
        let av = pageAnonVMA(head)
        guard anonVMAIsLive(av), folioMapcount(head) > 0 else { return (0, 0) }
        let nr = UInt64(folioNrPages(head))
        let first = page(head).pointee.index
        let ctx = RmapContext(k: self)
        var referenced = 0
        var vmFlags: UInt64 = 0
        var mapcount = folioMapcount(head)
        let tree = avcTree
        var a = AVCID(IntervalTree.iterFirst(root: anonVMARoot(av).pointee, start: first, last: first + nr - 1, tree))
        while !a.isNone && mapcount > 0 {
            let v = avcVMA(a)
            a = AVCID(IntervalTree.iterNext(a.rawValue, start: first, last: first + nr - 1, tree))
            if let filter, filter.skips(ctx, vma: v) { continue }
            let m = vmMM(v)
            let flagsV = vma(v).pointee.vm_flags
            var refs = 0
            var ptes = 0
            var sawPMD = false
            for i in 0..<nr {
                guard let addr = vmaAddress(v, index: first + i) else { continue }
                if let pmd = pmdSlot(root: mm(m).pointee.pgd, key: addr), PTE.isPMDLeaf(pmd.pointee) {
                    guard PTE.pfn(pmd.pointee) == head, !sawPMD else { continue }
                    sawPMD = true
                    if flagsV & VM.locked != 0 {
                        mlockIsolatedLargeFolio(head)  // mlock_vma_folio(): "restore the mlock which got missed"
                        return (referenced, vmFlags | VM.locked)
                    }
                    // pmdp_clear_flush_young_notify()
                    var young = PTE.isYoung(pmd.pointee)
                    pmd.pointee &= ~PTE.accessed
                    let haddr = addr & ~(Kernel.pmdSize - 1)
                    if hooks.hasSubscriptions && mmuClearFlushYoung(m, haddr, haddr + Kernel.pmdSize) { young = true }
                    if young { refs += 1 }
                    mapcount -= 1
                    continue
                }
                guard let slot = leafSlot(root: mm(m).pointee.pgd, key: addr), PTE.isPresent(slot.pointee),
                      slot.pointee & PTE.special == 0, PTE.pfn(slot.pointee) == head.advanced(by: Int(i)) else { continue }
                if flagsV & VM.locked != 0 {
                    ptes += 1
                    mapcount -= 1
                    // Only mlock fully mapped folios; the walk goes on otherwise.
                    if ptes != Int(nr) { continue }
                    mlockIsolatedLargeFolio(head)
                    return (referenced, vmFlags | VM.locked)
                }
                if ptepClearFlushYoungNotify(m, addr, slot) { refs += 1 }
                mapcount -= 1
            }
            let h = page(head)
            if refs > 0 { h.pointee.flags &= ~PG.idle }
            if h.pointee.flags & PG.young != 0 {
                h.pointee.flags &= ~PG.young
                refs += 1
            }
            if refs > 0 {
                referenced += 1
                vmFlags |= flagsV & ~VM.locked
            }
        }
        return (referenced, vmFlags)
    }

    /// migrate_vma_collect_pmd()'s PMD-leaf branch (mm/migrate_device.c,
    /// 6.18) at `addr` of `m`: the huge zero page's PMD is split
    /// (split_huge_pmd: small zero-page PTEs); a THP is split whole
    /// (folio_get, folio_trylock, split_folio: zero-filled pages go to the
    /// shared zero page) so that its pages can be collected one by one.
    /// False when the THP cannot be split (migrate_vma_collect_skip: its
    /// pages are not migrated); true otherwise, and when no PMD leaf maps
    /// `addr`.
    package func migrateVMACollectHugePMD(_ m: MMID, _ addr: UInt64) -> Bool {
        guard thpActive, let pmd = pmdSlot(root: mm(m).pointee.pgd, key: addr), PTE.isPMDLeaf(pmd.pointee) else { return true }
        let haddr = addr & ~(Kernel.pmdSize - 1)
        let head = PTE.pfn(pmd.pointee)
        if head == hugeZeroPFN {
            let v = vmaLookup(m, haddr)
            if !v.isNone { splitHugePMD(v, haddr, pmd) }
            return true
        }
        getPage(head)  // folio_get(): split_folio() allows this one caller's reference
        defer { putPage(head) }
        return splitFolio(head, pinned: head)
    }
}
