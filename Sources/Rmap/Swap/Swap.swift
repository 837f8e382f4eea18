import CShims

/// The swap map (mm/swapfile.c) and swap-in (do_swap_page, mm/memory.c).
/// One swap device of `header.swap_slots` pages (the trace's `swap SLOTS`);
/// slot offsets run from 1 (offset 0 is the header page, as in the kernel).
extension Kernel {
    static let swapHasCache: UInt16 = 0x40  // SWAP_HAS_CACHE

    @inline(__always) func swapSlot(_ offset: UInt64) -> UnsafeMutablePointer<rmap_swap_slot>? {
        guard offset >= 1, offset <= header.pointee.swap_slots,
              offset < UInt64(desc(T.swap).pointee.capacity) else { return nil }
        return swapMap + Int(offset)
    }

    /// get_swap_pages() / folio_alloc_swap(): the lowest free slot after the
    /// cursor (scan_swap_map_slots), marked SWAP_HAS_CACHE for `pfn`. 0 when full.
    func getSwapPage(for pfn: PFN) -> UInt64 {
        let n = min(header.pointee.swap_slots, UInt64(desc(T.swap).pointee.capacity) - 1)
        guard n > 0 else { return 0 }
        var off = header.pointee.swap_cursor % n + 1
        for _ in 0..<n {
            let s = swapMap + Int(off)
            if s.pointee.count == 0 && s.pointee.flags == 0 {
                s.pointee.flags = Kernel.swapHasCache
                s.pointee.cache_frame = pfn.rawValue
                header.pointee.swap_cursor = off
                return off
            }
            off = off % n + 1
        }
        return 0
    }

    /// swap_duplicate(): one more swap PTE refers to the slot. False when the
    /// entry is not a valid, in-use slot (the caller keeps the old PTE).
    func swapDuplicate(_ e: UInt64) -> Bool {
        guard PTE.isRealSwapEntry(e), let s = swapSlot(PTE.swpOffset(e)),
              s.pointee.count > 0 || s.pointee.flags != 0, s.pointee.count < 0x3e else { return false }
        s.pointee.count += 1
        return true
    }

    /// free_swap_and_cache() / swap_free(): one swap reference less; a slot
    /// whose only user is the swap cache gives its unmapped page back.
    func swapFree(_ e: UInt64) {
        guard PTE.isRealSwapEntry(e), let s = swapSlot(PTE.swpOffset(e)), s.pointee.count > 0 else { return }
        s.pointee.count -= 1
        if s.pointee.count == 0 && s.pointee.cache_frame != 0 {
            let pfn = PFN(s.pointee.cache_frame)
            if page(pfn).pointee.mapcount < 0 { deleteFromSwapCache(pfn) }  // __try_to_reclaim_swap
        }
    }

    /// delete_from_swap_cache(): the page leaves the swap cache, its slot is
    /// freed when no swap PTE refers to it, the cache's reference is dropped.
    func deleteFromSwapCache(_ pfn: PFN) {
        let p = page(pfn)
        guard p.pointee.flags & PG.swapcache != 0 else { return }
        let e = p.pointee.private_
        p.pointee.flags &= ~PG.swapcache
        p.pointee.private_ = 0
        if let s = swapSlot(PTE.swpOffset(e)) {
            s.pointee.flags = 0
            s.pointee.cache_frame = 0
        }
        putPage(pfn)
    }

    /// folio_free_swap(): a page we are about to reuse leaves the swap cache
    /// when no swap PTE still refers to its slot.
    func folioFreeSwap(_ pfn: PFN) {
        let e = page(pfn).pointee.private_
        guard let s = swapSlot(PTE.swpOffset(e)), s.pointee.count == 0 else { return }
        deleteFromSwapCache(pfn)
    }

    /// do_swap_page(): a fault on a non-present, non-none PTE. A real swap
    /// entry is swapped in: the swap-cache page if there is one (restoring
    /// sharing), else a new page read from the slot. Other entries (migration,
    /// hwpoison) are handled by the reverse-mapping paths.
    func doSwapPage(_ m: MMID, _ v: VMAID, _ addr: UInt64,
                    _ slot: UnsafeMutablePointer<UInt64>, write: Bool) -> FaultResult {
        let e = slot.pointee
        if PTE.isMigrationEntry(e) { return removeMigrationEntryOnFault(m, v, addr, slot, write: write) }
        if PTE.isDeviceExclusiveEntry(e) {
            // remove_device_exclusive_entry(): the CPU takes the page back; retry.
            restoreExclusivePTE(v, addr, slot)
            return handleMMFault(m, addr, write: write)
        }
        if PTE.isDevicePrivateEntry(e) {
            // pgmap->ops->migrate_to_ram(): the driver migrates the page back
            // to system RAM (migrate_vma, every mapping), then the access retries.
            let pfn = PTE.swpOffsetPFN(e)
            guard migratePage(pfn, to: .system) else { return .oom }
            return handleMMFault(m, addr, write: write)
        }
        guard PTE.isRealSwapEntry(e), let s = swapSlot(PTE.swpOffset(e)) else { return .sigbus }
        var pfn = PFN(s.pointee.cache_frame)
        if pfn.isNone {
            guard available(T.frame) >= 1 else { return .oom }
            // swapin_readahead(): a new page, added to the swap cache.
            pfn = allocPage()
            page(pfn).pointee.content = s.pointee.content  // swap_read_folio()
            page(pfn).pointee.flags |= PG.swapcache | PG.swapbacked
            page(pfn).pointee.private_ = e
            s.pointee.flags = Kernel.swapHasCache
            s.pointee.cache_frame = pfn.rawValue
            // The swap cache holds the new page's first reference.
        }
        // ksm_might_need_to_copy(): a swap-cache page that this VMA could not
        // find through its rmap (another anon_vma tree, another index: a page
        // KSM merged across processes) is copied into a new exclusive page.
        if ksmMightNeedToCopy(pfn, vma: v, address: addr) {
            return doSwapPageKSMCopy(m, v, addr, slot, swapcache: pfn, write: write)
        }
        let p = page(pfn)
        // The page is exclusive if the PTE said so or nobody else can map it;
        // never a KSM page.
        let exclusive = !pageIsKSM(pfn)
            && (e & PTE.swpExclusive != 0 || (s.pointee.count == 1 && p.pointee.mapcount < 0))
        getPage(pfn)
        if p.pointee.mapping & PageMapping.anon == 0 {
            guard anonVMAPrepare(v) else { putPage(pfn); return .oom }
            p.pointee.mapcount += 1
            setPageAnonRmap(pfn, vma: v, address: addr, exclusive: exclusive)
            p.pointee.flags |= PG.swapbacked
            // __folio_add_anon_rmap() ends in mlock_vma_folio().
            if vma(v).pointee.vm_flags & VM.locked != 0 { p.pointee.flags |= PG.mlocked | PG.unevictable }
        } else {
            folioAddAnonRmapPTE(pfn, vma: v, address: addr, exclusive: exclusive)
        }
        if exclusive { p.pointee.flags |= PG.anonExclusive }
        addMMCounter(m, .anon, 1)
        addMMCounter(m, .swapents, -1)
        var pte = PTE.make(pfn: pfn, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags))
        if e & PTE.swpSoftDirty != 0 { pte |= PTE.softDirty }
        swapFree(e)
        // should_try_to_free_swap(): the page leaves the swap cache once unshared.
        if s.pointee.count == 0 && p.pointee.flags & PG.swapcache != 0 { deleteFromSwapCache(pfn) }
        if write && p.pointee.flags & PG.anonExclusive != 0 {
            pte |= PTE.rw | PTE.dirty
            p.pointee.flags |= PG.dirty
        }
        slot.pointee = pte
        if write && !PTE.isWrite(pte) { return doWPPage(m, v, addr, slot) }
        return .ok
    }

    /// ksm_might_need_to_copy(): whether the swap-cache page `pfn` must be
    /// copied before `v` maps it at `address`: a KSM page without a stable
    /// node, or an anonymous page of another anon_vma tree or index. A page
    /// not yet anonymous (just read from swap) or a KSM page with its node
    /// is mapped as it is.
    func ksmMightNeedToCopy(_ pfn: PFN, vma v: VMAID, address: UInt64) -> Bool {
        if pageIsKSM(pfn) { return folioStableNode(pfn).isNone }
        let av = pageAnonVMA(pfn)
        if av.isNone { return false }
        let vav = vmaAnonVMA(v)
        if page(pfn).pointee.index == linearPageIndex(v, address), !vav.isNone,
           anonVMARootOf(av) == anonVMARootOf(vav) { return false }
        return true
    }

    /// do_swap_page() when ksm_might_need_to_copy() made a copy: the new
    /// page (dirty, uptodate, the content of the swap-cache page) is mapped
    /// as a new exclusive anonymous page (folio_add_new_anon_rmap with
    /// RMAP_EXCLUSIVE); the swap entry is freed; the swap-cache page stays
    /// in the swap cache.
    func doSwapPageKSMCopy(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>,
                           swapcache: PFN, write: Bool) -> FaultResult {
        let e = slot.pointee
        guard available(T.frame) >= 1, anonVMAPrepare(v) else { return .oom }
        let pfn = allocPage()
        if pfn.isNone { return .oom }
        page(pfn).pointee.content = page(swapcache).pointee.content  // copy_mc_user_highpage()
        page(pfn).pointee.flags |= PG.dirty
        folioAddNewAnonRmap(pfn, vma: v, address: addr)
        addMMCounter(m, .anon, 1)
        addMMCounter(m, .swapents, -1)
        var pte = PTE.make(pfn: pfn, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags))
        if e & PTE.swpSoftDirty != 0 { pte |= PTE.softDirty }
        if write { pte |= PTE.rw | PTE.dirty }  // exclusive: maybe_mkwrite(pte_mkdirty())
        swapFree(e)
        slot.pointee = pte
        return .ok
    }

    /// A fault on a migration entry waits for the migration to finish
    /// (migration_entry_wait); in the single-threaded model a migration that
    /// left its entries behind (`unmap ... migration`) never finishes, so the
    /// fault finishes it the way a failed migration does
    /// (remove_migration_ptes(page, page), for this PTE): the entry becomes
    /// an old PTE of the frame it names, writable for a write entry,
    /// exclusive unless a read entry, taking over the entry's reference. Then
    /// the access is retried. Not in the kernel: its waiter only sleeps.
    func removeMigrationEntryOnFault(_ m: MMID, _ v: VMAID, _ addr: UInt64,
                                     _ slot: UnsafeMutablePointer<UInt64>, write: Bool) -> FaultResult {
        let pfn = PTE.swpOffsetPFN(slot.pointee)
        restoreMigrationPTE(slot, vma: v, address: addr, old: pfn, new: pfn)
        return handleMMFault(m, addr, write: write)
    }
}
