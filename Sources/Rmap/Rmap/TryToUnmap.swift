import CShims

/// try_to_unmap() and its rmap_one, try_to_unmap_one() (mm/rmap.c), in the
/// order of the seeds' v5.0 code for the branches the model has.
struct TryToUnmapControl: RmapWalkControl {
    var flags: TTUFlags
    /// False once a mapping could not be removed (mlocked VMA, young PTE,
    /// no swap slot, redirtied lazyfree page).
    var ret = true

    init(flags: TTUFlags) {
        self.flags = flags
    }

    // invalid_migration_vma(): vma_is_temporary_stack(). The model never
    // has exec's temporary stack, so the protocol's default (no VMA
    // skipped) is that hook.

    /// Models `try_to_unmap_one()` (mm/rmap.c), v5.0 order: the TTU_MUNLOCK
    /// early return, the TTU_MIGRATION skip of a non-HMM zone-device page,
    /// mmu_notifier_invalidate_range_start, then for the PTE (or the
    /// device-private entry, which TTU_MIGRATION turns into a migration entry
    /// right after the mlock check):
    /// VM_LOCKED (mlock, fail) unless TTU_IGNORE_MLOCK, TTU_MUNLOCK stops
    /// there, a young PTE (primary or secondary MMU) fails unless
    /// TTU_IGNORE_ACCESS, the PTE is cleared (flushed now, or batched under
    /// TTU_BATCH_FLUSH) and its dirty bit moves to the page; then a hwpoison
    /// entry for a PG_hwpoison page unless TTU_IGNORE_HWPOISON, a migration
    /// entry (TTU_MIGRATION), a discarded clean lazyfree page, a swap entry,
    /// or for a file page just the counter. A KSM page is anonymous and
    /// swap-backed: it is unmapped like any anonymous page, its mappings
    /// found by rmap_walk_ksm. A page of a large folio is unmapped here
    /// one page at a time (Kernel.tryToUnmapFolio splits its PMDs first).
    /// Left out: hugetlb, pte_unused (s390), arch_unmap_one (SPARC ADI), the
    /// mmlist. The migration entry uses the 6.x encoding (read, read-exclusive,
    /// write; v5.0 had read and write only) so PG_anon_exclusive survives it,
    /// and it keeps the PTE's page reference (the model's stand-in for the
    /// migrator's isolation reference, since a trace can leave it behind).
    /// Where v5.0 WARNs (a swap-backed anon page outside the swap cache) and
    /// leaves the PTE cleared, the model restores the PTE and fails.
    mutating func rmapOne(_ m: RmapContext, pfn pfnID: PFN, vma vID: VMAID, address: UInt64) -> Bool {
        let pfn = pfnID, v = vID
        let k = m.k
        let flagsV = k.vma(v).pointee.vm_flags
        // munlock has nothing to gain from examining un-locked vmas
        if flags.contains(.munlock) && flagsV & VM.locked == 0 { return true }
        // Non-HMM zone-device pages cannot be mapped/unmapped normally: a
        // migration request skips them.
        let pf = k.page(pfn).pointee.flags
        if flags.contains(.migration) && pf & PG.zoneDevice != 0 && pf & PG.devicePrivate == 0 { return true }
        let mmi = k.vmMM(v)
        k.mmuInvalidateRangeStart(mmi, address, address + PAGE_SIZE)
        defer { k.mmuInvalidateRangeEnd(mmi, address, address + PAGE_SIZE) }
        guard let slot = k.pageVMAMappedWalk(pfn, v, address) else { return ret }
        if !flags.contains(.ignoreMlock) {
            // VM_LOCKED: the page is mlocked, not unmapped (mlock_vma_page).
            if flagsV & VM.locked != 0 {
                let head = k.folioOf(pfn)
                if _fastPath(!k.folioIsLarge(head)) {
                    k.page(pfn).pointee.flags |= PG.mlocked | PG.unevictable
                } else if k.folioFullyMappedInVMA(head, vma: v) {
                    // 6.18: "Only mlock fully mapped pages" (ptes == nr_pages)
                    k.mlockIsolatedLargeFolio(head)
                }
                ret = false
                return ret
            }
            if flags.contains(.munlock) { return ret }
        }
        if flags.contains(.migration) && pf & PG.zoneDevice != 0 {
            // A device-private page: ptep_get_and_clear() (no flush: the
            // entry was not present) and a migration entry without write
            // (make_migration_entry(page, 0)), soft-dirty kept; then discard:
            // the rmap goes. The entry keeps the reference (model, as for
            // every migration entry) and the MM counter (it counts entries).
            let pteval = slot.pointee
            slot.pointee = 0
            var swp = PTE.swpEntry(type: PTE.swpMigrationRead, pfn: pfn)
            if pteval & PTE.swpSoftDirty != 0 { swp |= PTE.swpSoftDirty }
            k.page(pfn).pointee.flags &= ~PG.anonExclusive  // a read entry restores a shared mapping
            slot.pointee = swp
            k.folioRemoveRmapPTE(pfn, vma: v)
            return ret
        }
        // A young PTE means the page is in use: keep it.
        if !flags.contains(.ignoreAccess) {
            if k.ptepClearFlushYoungNotify(mmi, address, slot) {
                ret = false
                return ret
            }
        }
        // Nuke the page table entry: ptep_clear_flush(), or under
        // TTU_BATCH_FLUSH (should_defer_flush: the model assumes other CPUs
        // ran the mm) ptep_get_and_clear() + set_tlb_ubc_flush_pending().
        let pteval = slot.pointee
        slot.pointee = 0
        if flags.contains(.batchFlush) { k.setTLBBatchPending() } else { k.flushTLBPage() }
        // Folio flags live in the head; PG_hwpoison and PG_anon_exclusive
        // are the page's own (a page of a large folio).
        let p = k.page(k.folioOf(pfn))
        let sp = k.page(pfn)
        // Move the dirty bit to the page. Now the pte is gone.
        if PTE.isDirty(pteval) { p.pointee.flags |= PG.dirty }
        if sp.pointee.flags & PG.hwpoison != 0 && !flags.contains(.ignoreHWPoison) {
            // A poisoned page: a hwpoison entry takes the PTE's place, the
            // MM counter goes (the entry is not counted), then the rmap and
            // the PTE's reference (discard:).
            slot.pointee = k.makeHWPoisonPTE(pfn)
            k.addMMCounter(mmi, k.mmCounterFor(pfn), -1)
            k.folioRemoveRmapPTE(pfn, vma: v)
            k.putPage(pfn)
            return ret
        }
        if !flags.intersection([.migration, .splitFreeze]).isEmpty {
            slot.pointee = k.makeMigrationPTE(pfn, pteval)
            k.folioRemoveRmapPTE(pfn, vma: v)
            return ret  // the entry keeps the PTE's reference; MM counters unchanged
        }
        if k.pageIsAnon(pfn) {
            if p.pointee.flags & PG.swapbacked == 0 {
                // MADV_FREE page check: discard when clean, else it is in use again.
                if p.pointee.flags & PG.dirty == 0 {
                    k.addMMCounter(mmi, .anon, -1)
                    k.folioRemoveRmapPTE(pfn, vma: v)
                    k.putPage(pfn)
                    return ret
                }
                slot.pointee = pteval
                p.pointee.flags |= PG.swapbacked
                ret = false
                return ret
            }
            // folio->swap plus the page's index in its folio.
            let entry = k.swapCacheEntry(pfn)
            guard p.pointee.flags & PG.swapcache != 0, k.swapDuplicate(entry) else {
                slot.pointee = pteval  // swap_duplicate() failed: restore the PTE
                ret = false
                return ret
            }
            var swp = entry
            if sp.pointee.flags & PG.anonExclusive != 0 { swp |= PTE.swpExclusive }
            if pteval & PTE.softDirty != 0 { swp |= PTE.swpSoftDirty }
            sp.pointee.flags &= ~PG.anonExclusive
            k.addMMCounter(mmi, .anon, -1)
            k.addMMCounter(mmi, .swapents, 1)
            slot.pointee = swp
        } else {
            k.addMMCounter(mmi, k.mmCounterFor(pfn), -1)
        }
        k.folioRemoveRmapPTE(pfn, vma: v)
        k.putPage(pfn)
        return ret
    }

    /// page_mapcount_is_zero(): nothing left to unmap.
    mutating func done(_ m: RmapContext, pfn: PFN) -> Bool { m.k.pageMapcount(pfn) == 0 }
}

extension Kernel {
    /// try_to_unmap(): true when no mapping of the frame remains. A batched
    /// flush stays pending for the caller's try_to_unmap_flush().
    /// Models `try_to_unmap()` (mm/rmap.c), v5.0: rmap_walk with
    /// try_to_unmap_one, done when unmapped, invalid_migration_vma for anon
    /// migration; the result is `!page_mapcount(page)`. TTU_RMAP_LOCKED walks
    /// the same way (the model takes no locks).
    /// The walk holds a reference of its own, as the kernel's callers must
    /// ("try_to_unmap() must hold a reference on the page"): a discarded
    /// lazyfree page is freed only after the walk has read its mapcount.
    package func tryToUnmap(_ pfn: PFN, flags: TTUFlags) -> Bool {
        getPage(pfn)
        defer { putPage(pfn) }
        var c = TryToUnmapControl(flags: flags)
        rmapWalk(pfn, &c)
        return pageMapcount(pfn) == 0
    }

    /// The part of shrink_folio_list() that runs once reclaim decided to
    /// evict the frame (page_referenced not consulted): an anonymous page
    /// gets a swap slot (add_to_swap; without one it stays), the mappings go
    /// (try_to_unmap with TTU_BATCH_FLUSH, references ignored), then a dirty
    /// page is written back (pageout) and a clean one leaves its cache and is
    /// freed (__remove_mapping). A lazyfree page that is still clean is
    /// simply dropped. Shmem pages without swap stay in their cache.
    /// `kswapd`: the `reclaim` statement is kswapd's pageout() of a dirty
    /// file folio (written back, then freed); MADV_PAGEOUT reclaims from the
    /// process (reclaim_pages()), and shrink_folio_list() lets only kswapd
    /// write file folios: the dirty one is kept with PG_reclaim.
    /// Returns false when the frame could not be reclaimed.
    func reclaimPage(_ pfn: PFN, kswapd: Bool = false) -> Bool {
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
            let unmapped = tryToUnmap(pfn, flags: [.ignoreAccess, .batchFlush])
            // try_to_unmap_flush_dirty() / try_to_unmap_flush(): the model's
            // page list is this one frame, so its batch is flushed here.
            tryToUnmapFlush()
            if !unmapped {
                activateLockedFreeSwap(pfn)
                return false
            }
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
                s.pointee.content = p.pointee.content  // swap_writeout(): the data is on swap
                s.pointee.flags &= ~Kernel.swapHasCache
                s.pointee.cache_frame = 0
                swapSlotReleaseIfUnused(s)
            }
            putPage(pfn)
            return true
        }
        let f = pageFile(pfn)
        guard !f.isNone else { return true }
        if file(f).pointee.kind == FileKind.shmem.rawValue {
            if p.pointee.flags & PG.dirty != 0 {
                // shmem_writeout() without a swap slot for it: redirtied, kept.
                return false
            }
            // A clean shmem folio (only ever read: a hole filled with zeroes)
            // needs no writing: __remove_mapping() drops it (observed on 6.18:
            // a later fault allocates a new one).
            pageCacheRemove(f, p.pointee.index)
            return true
        }
        if p.pointee.flags & PG.dirty != 0 {
            guard kswapd else {
                // shrink_folio_list(): only kswapd writes file folios; the
                // folio stays cached and dirty with PG_reclaim, which
                // fault-around reads as PG_readahead and skips (observed on 6.18).
                p.pointee.flags |= PG.reclaim
                return false
            }
            // pageout(): the folio is written back (its data reaches the
            // file; the model keeps no written-back data, see
            // pageCacheAddNew) and, clean, leaves the cache below.
            p.pointee.flags &= ~(PG.dirty | PG.reclaim)
        }
        pageCacheRemove(f, p.pointee.index)
        return true
    }
}
