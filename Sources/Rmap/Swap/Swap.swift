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

    /// SWAPFILE_CLUSTER (mm/swap.h): with CONFIG_THP_SWAP a swap cluster is
    /// HPAGE_PMD_NR slots, so that a PMD-sized folio fits one cluster.
    static let swapClusterSlots: UInt64 = 512
    /// Bits 8-11 of an in-use slot's `flags`: the order of the cluster it
    /// was taken from (ci->order, which the model keeps in each slot of the
    /// cluster instead of a cluster table; cleared when the slot is free).
    static let swapOrderShift: UInt16 = 8
    static let swapOrderMask: UInt16 = 0xf00

    /// The usable slots, 1...swapDeviceSlots (`swap SLOTS` within the map).
    var swapDeviceSlots: UInt64 { min(header.pointee.swap_slots, UInt64(desc(T.swap).pointee.capacity) - 1) }

    /// A slot is in use while a swap PTE or the swap cache refers to it.
    @inline(__always) func swapSlotInUse(_ s: UnsafeMutablePointer<rmap_swap_slot>) -> Bool {
        s.pointee.count > 0 || s.pointee.flags & Kernel.swapHasCache != 0
    }

    /// A slot nothing refers to any more is free (swap_range_free): its
    /// cluster-order bits go with it.
    @inline(__always) func swapSlotReleaseIfUnused(_ s: UnsafeMutablePointer<rmap_swap_slot>) {
        if !swapSlotInUse(s) { s.pointee.flags = 0 }
    }

    /// A cluster's state as the kernel's swap_cluster_info holds it: `count`
    /// (slots in use, bad ones included) and `order` (ci->order; -1 when
    /// the cluster is empty, free for any order). The swap header (offset
    /// 0) and the slots past the device's end in its last cluster are bad
    /// slots (swap_cluster_setup_bad_slot): such a cluster is never empty,
    /// so it stays order 0 (setup_clusters puts it on nonfull_clusters[0]).
    func swapCluster(_ c: UInt64) -> (count: Int, order: Int) {
        let n = swapDeviceSlots
        let first = c * Kernel.swapClusterSlots
        var count = 0, bad = 0, order = -1
        for off in first..<(first + Kernel.swapClusterSlots) {
            guard off >= 1, off <= n else { bad += 1; continue }
            let s = swapMap + Int(off)
            if swapSlotInUse(s) {
                count += 1
                if order < 0 { order = Int((s.pointee.flags & Kernel.swapOrderMask) >> Kernel.swapOrderShift) }
            }
        }
        if bad > 0 { order = 0 }
        return (count + bad, order)
    }

    /// The number of clusters of the device (the last one may be partial).
    var swapClusterCount: UInt64 {
        let n = swapDeviceSlots
        return n == 0 ? 0 : (n + 1 + Kernel.swapClusterSlots - 1) / Kernel.swapClusterSlots
    }

    /// Takes slot `off` for the swap cache's page `pfn` (SWAP_HAS_CACHE), in
    /// a cluster of order `order`.
    @inline(__always) func swapTakeSlot(_ off: UInt64, pfn: PFN, clusterOrder order: Int) {
        let s = swapMap + Int(off)
        s.pointee.flags = Kernel.swapHasCache | (UInt16(order) << Kernel.swapOrderShift)
        s.pointee.cache_frame = pfn.rawValue
    }

    /// The lowest free slot of cluster `c` at or after `from`, 0 if none.
    func swapFreeSlot(inCluster c: UInt64, from: UInt64 = 0) -> UInt64 {
        let n = swapDeviceSlots
        let first = max(c * Kernel.swapClusterSlots, from, 1)
        let end = min((c + 1) * Kernel.swapClusterSlots, n + 1)
        var off = first
        while off < end {
            if !swapSlotInUse(swapMap + Int(off)) { return off }
            off += 1
        }
        return 0
    }

    /// folio_alloc_swap() of a small folio (cluster_alloc_swap_entry with
    /// order 0): the slot after the last one taken while its cluster is
    /// order 0 (the per-CPU cluster's next offset), else the lowest free
    /// slot of the first cluster from there on (wrapping) that is order 0
    /// with room or empty (an empty one becomes order 0), else any free
    /// slot: order 0 steals from the clusters of higher orders. The slot is
    /// marked SWAP_HAS_CACHE for `pfn`. 0 when the device is full. (The
    /// kernel's cluster lists are not kept: it takes the order-0 clusters
    /// that had slots freed, then a free cluster, then a fragmented one;
    /// the model takes them in address order.)
    func getSwapPage(for pfn: PFN) -> UInt64 {
        let nc = swapClusterCount
        guard nc > 0 else { return 0 }
        let cur = header.pointee.swap_cursor
        var off: UInt64 = 0
        var order = 0
        let start = cur >= 1 && cur <= swapDeviceSlots ? cur / Kernel.swapClusterSlots : 0
        if cur >= 1 && cur <= swapDeviceSlots {
            // The cluster's order: the last slot taken tells it while in use.
            let s = swapMap + Int(cur)
            let o = swapSlotInUse(s) ? Int((s.pointee.flags & Kernel.swapOrderMask) >> Kernel.swapOrderShift)
                : swapCluster(start).order
            if o == 0 { off = swapFreeSlot(inCluster: start, from: cur + 1) }
        }
        if off == 0 {
            for i in 0..<nc {
                let c = (start + i) % nc
                let info = swapCluster(c)
                guard info.order <= 0, info.count < Int(Kernel.swapClusterSlots) else { continue }
                off = swapFreeSlot(inCluster: c)
                if off != 0 { break }
            }
        }
        if off == 0 {
            for c in 0..<nc {
                off = swapFreeSlot(inCluster: c)
                if off != 0 { order = swapCluster(c).order; break }
            }
        }
        guard off != 0 else { return 0 }
        swapTakeSlot(off, pfn: pfn, clusterOrder: order)
        header.pointee.swap_cursor = off
        return off
    }

    /// folio_alloc_swap() of a large folio of `order` (CONFIG_THP_SWAP;
    /// cluster_alloc_swap_entry): 2^order contiguous slots, naturally
    /// aligned, inside one cluster that is either empty (it becomes a
    /// cluster of this order: "the first allocation in a cluster makes the
    /// cluster exclusive to this order") or already of this order; each
    /// slot gets SWAP_HAS_CACHE for its page of the folio. A partly used
    /// cluster of the order is tried before an empty one. 0 when there is
    /// none: the caller splits the folio (THP_SWPOUT_FALLBACK). Not
    /// modelled: reclaiming slots held only by the swap cache to make room
    /// (vm_swap_full), and the kernel's scanning of only one fragmented
    /// cluster (frag_clusters) of the order.
    func folioAllocSwap(_ head: PFN, order: Int) -> UInt64 {
        let nr = UInt64(1) << order
        let nc = swapClusterCount
        guard order > 0, nr <= Kernel.swapClusterSlots, nc > 0 else { return 0 }
        var found: UInt64 = 0
        search: for c in 0..<nc where swapCluster(c).order == order {
            var off = c * Kernel.swapClusterSlots
            while off < (c + 1) * Kernel.swapClusterSlots {
                if (0..<nr).allSatisfy({ !swapSlotInUse(swapMap + Int(off + $0)) }) {
                    found = off
                    break search
                }
                off += nr
            }
        }
        if found == 0 {
            for c in 0..<nc where swapCluster(c).count == 0 {
                found = c * Kernel.swapClusterSlots
                break
            }
        }
        guard found != 0 else { return 0 }
        for i in 0..<nr { swapTakeSlot(found + i, pfn: head.advanced(by: UInt32(i)), clusterOrder: order) }
        return found
    }

    /// The swap entry of page `pfn` in the swap cache: folio->swap plus the
    /// page's index in its folio (swp_entry of a large folio's page).
    @inline(__always) func swapCacheEntry(_ pfn: PFN) -> UInt64 {
        let head = folioOf(pfn)
        let e = page(head).pointee.private_
        guard head != pfn else { return e }
        return PTE.swpEntry(type: 0, offset: PTE.swpOffset(e) + UInt64(head.distance(to: pfn)))
    }

    /// swap_duplicate(): one more swap PTE refers to the slot. False when the
    /// entry is not a valid, in-use slot (the caller keeps the old PTE).
    func swapDuplicate(_ e: UInt64) -> Bool {
        guard PTE.isRealSwapEntry(e), let s = swapSlot(PTE.swpOffset(e)),
              swapSlotInUse(s), s.pointee.count < 0x3e else { return false }
        s.pointee.count += 1
        return true
    }

    /// free_swap_and_cache() / swap_free(): one swap reference less; a slot
    /// whose only user is the swap cache gives its unmapped folio back
    /// (__try_to_reclaim_swap with TTRS_UNMAPPED: a large folio only when no
    /// slot of it has a swap count left, swap_only_has_cache).
    func swapFree(_ e: UInt64) {
        guard PTE.isRealSwapEntry(e), let s = swapSlot(PTE.swpOffset(e)), s.pointee.count > 0 else { return }
        s.pointee.count -= 1
        guard s.pointee.count == 0 else { return }
        if s.pointee.cache_frame != 0 {
            let head = folioOf(PFN(s.pointee.cache_frame))
            if folioMapcount(head) == 0 && !folioSwapped(head) { deleteFromSwapCache(head) }
        } else {
            swapSlotReleaseIfUnused(s)
        }
    }

    /// folio_swapped(): whether a swap PTE still refers to a slot of the
    /// swap-cache folio at `head`.
    func folioSwapped(_ head: PFN) -> Bool {
        let e = page(head).pointee.private_
        let nr = UInt64(folioNrPages(head))
        for i in 0..<nr {
            if let s = swapSlot(PTE.swpOffset(e) + i), s.pointee.count > 0 { return true }
        }
        return false
    }

    /// delete_from_swap_cache(): the folio leaves the swap cache whole, its
    /// slots are freed where no swap PTE refers to them, the cache's
    /// references (one per page) are dropped.
    func deleteFromSwapCache(_ pfn: PFN) {
        let head = folioOf(pfn)
        let p = page(head)
        guard p.pointee.flags & PG.swapcache != 0 else { return }
        let e = p.pointee.private_
        let nr = folioNrPages(head)
        p.pointee.flags &= ~PG.swapcache
        p.pointee.private_ = 0
        for i in 0..<UInt64(nr) {
            guard let s = swapSlot(PTE.swpOffset(e) + i) else { continue }
            s.pointee.flags &= ~Kernel.swapHasCache
            s.pointee.cache_frame = 0
            swapSlotReleaseIfUnused(s)
        }
        putPages(head, Int32(nr))
    }

    /// free_swap_cache() (mm/swap_state.c), as zap's page batch runs it
    /// (free_pages_and_swap_cache) before the references go: a folio left
    /// unmapped in the swap cache leaves it when no swap PTE refers to its
    /// slots.
    func freeSwapCache(_ pfn: PFN) {
        let head = folioOf(pfn)
        if page(head).pointee.flags & PG.swapcache != 0 && folioMapcount(head) == 0 { folioFreeSwap(head) }
    }

    /// folio_free_swap(): a folio we are about to reuse leaves the swap cache
    /// when no swap PTE still refers to any of its slots.
    func folioFreeSwap(_ pfn: PFN) {
        let head = folioOf(pfn)
        guard page(head).pointee.flags & PG.swapcache != 0, !folioSwapped(head) else { return }
        deleteFromSwapCache(head)
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
            s.pointee.flags |= Kernel.swapHasCache
            s.pointee.cache_frame = pfn.rawValue
            // The swap cache holds the new page's first reference.
        } else if page(pfn).pointee.mapping & PageMapping.anon != 0 {
            // A swap-cache folio whose mappings `unmap ... migration` made
            // migration entries is, in the kernel, locked by the migration
            // under way: do_swap_page waits for it (folio_lock_or_retry), and
            // the other mappers' entries are PTEs again (of this folio or the
            // new one) before it decides exclusivity. The model ends that
            // migration as a fault on one of its entries does, the way a
            // failed one ends (remove_migration_ptes(folio, folio)); without
            // this, a swap count of 1 and no mapping made the page exclusive
            // while the other process's migration entry still named it
            // (rmap fuzz --large --hugetlb --hugetlb-resv fixed --seed 42).
            let head = folioOf(pfn)
            var restored = 0
            for i in 0..<Int(folioNrPages(head)) {
                let sub = head.advanced(by: i)
                restored += removeMigrationPTEs(src: sub, dst: sub)
            }
            if restored > 0 && folioIsLarge(head) && !folioIsHugetlb(head) {
                page(head).pointee.flags |= PG.remappedInPart
            }
        }
        if _slowPath(page(pfn).pointee.flags & PG.tail != 0 || page(pfn).pointee.flags & PG.head != 0) {
            return doSwapPageLarge(m, v, addr, slot, page: pfn, write: write)
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
        let head = folioOf(pfn)
        if folioIsLarge(head) && !folioIsHugetlb(head) { page(head).pointee.flags |= PG.remappedInPart }
        restoreMigrationPTE(slot, vma: v, address: addr, old: pfn, new: pfn)
        return handleMMFault(m, addr, write: write)
    }
}
