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
    /// `split_freeze` gives the same way): EINVAL. With TTU_MIGRATION and no
    /// split, each PMD becomes a PMD migration entry (try_to_migrate_one's
    /// `!pvmw.pte` branch, v5.0 try_to_unmap_one's TTU_MIGRATION PMD branch:
    /// set_pmd_migration_entry, before the mlock and young checks). Each
    /// page's PTEs then go as a small page's do, the counters and references
    /// the folio's (folio_remove_rmap_ptes). (The model converts the PMDs
    /// before the PTE mappings; the kernel's walk interleaves them by VMA,
    /// which differs only when a PTE mapping ends the walk first.)
    package func tryToUnmapFolio(_ head: PFN, flags: TTUFlags) -> LargeReverseResult {
        getPage(head)  // the caller's reference, as try_to_unmap() requires
        defer { putPage(head) }
        if folioEntireMapcount(head) > 0 {
            if isLazyfree(head) && !flags.contains(.migration) {
                // 6.x unmaps a lazyfree PMD-mapped folio whole, before any
                // TTU_SPLIT_HUGE_PMD (unmap_huge_pmd_locked).
                if !discardLazyfreePMDs(head) { return .fail }
            } else if flags.contains(.splitHugePMD) {
                forEachAnonPMDMapping(head) { v, haddr, pmd in splitHugePMD(v, haddr, pmd) }
            } else if flags.contains(.migration) {
                forEachAnonPMDMapping(head) { v, haddr, pmd in setPMDMigrationEntry(v, haddr, pmd) }
            } else {
                return .einval  // the seeds' VM_BUG_ON_PAGE(!pvmw.pte)
            }
        }
        for i in 0..<folioNrPages(head) where page(head.advanced(by: i)).pointee.mapcount >= 0 {
            var c = TryToUnmapControl(flags: flags)
            rmapWalk(head.advanced(by: i), &c)
        }
        return folioMapcount(head) == 0 ? .ok : .fail
    }

    /// shrink_folio_list() on an anonymous large folio. A lazyfree folio is
    /// discarded; a swap-backed one is swapped out whole when a swap cluster
    /// has room for it (CONFIG_THP_SWAP: Swap/SwapLarge.swift), else split
    /// and reclaimed page by page, as 6.18 does.
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
        return reclaimSwapBackedFolio(head)
    }

    /// migrate_pages() of a large anonymous folio (x86 migrates THP and
    /// mTHP whole, thp_migration_supported()): a new folio of the same order
    /// is allocated; try_to_migrate(folio, 0) turns every PMD into a PMD
    /// migration entry (set_pmd_migration_entry) and every PTE into a PTE
    /// one; move_to_new_folio() copies the data and the folio's mapping,
    /// index and flags (folio_migrate_mapping, folio_migrate_flags: not
    /// PG_mlocked, which a large folio regains only from mlock or reclaim);
    /// remove_migration_ptes() maps the new folio wherever the old one was,
    /// PMDs as PMDs (remove_migration_pmd) and PTEs as PTEs, its counters,
    /// mm_id slots and PG_anon_exclusive rebuilt by the rmap calls; the old
    /// folio is freed. A folio queued for deferred split is requeued as the
    /// new one (migrate_folio_move: PAGE_WAS_ON_DEFERRED_LIST). Without a
    /// free aligned run the folio is split and its pages migrated one by
    /// one, as migrate_pages_batch() falls back (-ENOMEM on a large folio:
    /// split and retry). A folio with references beyond its mappings, or in
    /// the swap cache, is not migrated.
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
        getPage(head)  // isolation: migration holds the folio
        let queued = folioOnDeferredList(head)
        deferredSplitRemove(head)
        // try_to_migrate(): the PMDs first, then each page's PTEs.
        forEachAnonPMDMapping(head) { v, haddr, pmd in setPMDMigrationEntry(v, haddr, pmd) }
        var ptes: [(UInt32, VMAID)] = []  // for the reverse-map hooks (variants)
        for i in 0..<nr where page(head.advanced(by: i)).pointee.mapcount >= 0 {
            if _slowPath(hooks.reverseMapOn) { forEachAnonPTEMapping(head.advanced(by: i)) { v, _, _ in ptes.append((i, v)) } }
            var c = TryToMigrateControl()
            rmapWalk(head.advanced(by: i), &c)
        }
        // move_to_new_folio(): folio_mc_copy() page by page, then
        // folio_migrate_mapping() / folio_migrate_flags() for the folio.
        for i in 0..<nr {
            let s = page(head.advanced(by: i)), d = page(dst.advanced(by: i))
            d.pointee.content = s.pointee.content
            d.pointee.flags |= s.pointee.flags & PG.hwpoison
        }
        let sh = page(head), dh = page(dst)
        dh.pointee.mapping = sh.pointee.mapping
        dh.pointee.index = sh.pointee.index
        let copied = PG.swapbacked | PG.lru | PG.dirty | PG.referenced | PG.uptodate | PG.workingset | PG.young | PG.idle
            | PG.active | PG.reclaim | PG.remappedInPart
        dh.pointee.flags |= sh.pointee.flags & copied
        sh.pointee.flags &= ~(PG.dirty | PG.active)
        // remove_migration_ptes(src, dst): PMDs (remove_migration_pmd) and PTEs.
        forEachPMDMigrationEntry(head) { v, haddr, pmd in removeMigrationPMD(v, haddr, pmd, old: head, new: dst) }
        for i in 0..<nr { removeMigrationPTEs(src: head.advanced(by: i), dst: dst.advanced(by: i)) }
        if _slowPath(hooks.reverseMapOn) {
            for (i, v) in ptes {
                hooks.reverseMap!.removed(self, pfn: head.advanced(by: i), vma: v)
                forEachAnonPTEMapping(dst.advanced(by: i)) { w, addr, _ in
                    if w == v { hooks.reverseMap!.anonAdded(self, pfn: dst.advanced(by: i), vma: v, address: addr) }
                }
            }
        }
        if queued { deferredSplitFolio(dst) }
        putPage(head)  // migrate_folio_done(): the isolation reference; the old folio is freed
        putPage(dst)   // the allocation's reference: the new folio lives on in its mappings
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
