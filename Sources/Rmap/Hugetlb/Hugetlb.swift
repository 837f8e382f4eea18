import CShims

/// hugetlb (mm/hugetlb.c, fs/hugetlbfs/inode.c, include/linux/hugetlb.h),
/// the default hstate only: 2 MiB pages on x86-64, no overcommit
/// (nr_overcommit_hugepages 0), no subpool (the internal hugetlbfs mount of
/// MAP_ANONYMOUS|MAP_HUGETLB has no size limits), one node.
///
/// The pool: order-9 folios with PG_hugetlb, taken from the frame table when
/// `hugetlb PAGES` sizes it (set_max_huge_pages). A free one has _refcount 0
/// and sits on hugepage_freelists (the header's `hugetlb_free_head`, linked
/// through the head's `next`). The header keeps nr_huge_pages,
/// free_huge_pages, resv_huge_pages and surplus_huge_pages (always 0 here).
///
/// Every hugetlb mmap makes its own hugetlbfs file (hugetlb_file_setup), for
/// private and shared mappings alike. The file's page-cache tree is indexed
/// by huge-page index (the kernel's `idx`; folio->index stays in base pages,
/// `idx << 9`, so the rmap walks find the VMA address as for any page). A
/// leaf entry holds the cached folio's head (present bit and PFN) and two
/// bits of reservation map:
/// - `HugetlbEntry.region`: the inode's resv_map has a file_region over the
///   index (shared mappings: a reservation exists or was consumed by the
///   cached page);
/// - `HugetlbEntry.consumed`: the private mapping's resv_map (the owner
///   VMA's vm_private_data) has the index: its reservation was consumed.
///   A private mapping has one resv_map shared by the VMAs a split makes of
///   it, keyed by file offset, and one file: so the file's tree holds it.
/// HPAGE_RESV_OWNER and HPAGE_RESV_UNMAPPED (low bits of vm_private_data in
/// the kernel) are kept as model bits of vm_flags (`VM.hugetlbResvOwner`,
/// `VM.hugetlbResvUnmapped`); fork clears them (hugetlb_dup_vma_private).
extension PG {
    /// folio_test_hugetlb() (the kernel's PGTY_hugetlb page type).
    package static let hugetlb: UInt64 = 1 << 25
    /// HPG_restore_reserve: the folio consumed a global reservation that
    /// free_huge_folio() gives back.
    static let hugetlbRestoreReserve: UInt64 = 1 << 26
}

extension VM {
    /// HPAGE_RESV_OWNER: the VMA owns its private mapping's reservations.
    static let hugetlbResvOwner: UInt64 = 1 << 40
    /// HPAGE_RESV_UNMAPPED: the owner unmapped a page from this VMA
    /// (unmap_ref_private): its faults there are SIGBUS.
    static let hugetlbResvUnmapped: UInt64 = 1 << 41
    static let hugetlbResvMask: UInt64 = hugetlbResvOwner | hugetlbResvUnmapped
}

/// The bits of a hugetlbfs file's page-cache leaf entry beyond the cached folio.
enum HugetlbEntry {
    static let region: UInt64 = 1 << 61
    static let consumed: UInt64 = 1 << 60
    static let bits: UInt64 = region | consumed
}

extension Kernel {
    /// huge_page_size(): 2 MiB.
    static let hpageSize: UInt64 = pmdSize
    static let hpageMask: UInt64 = ~(pmdSize - 1)

    @inline(__always) func isHugetlbVMA(_ v: VMAID) -> Bool { vma(v).pointee.vm_flags & VM.hugetlb != 0 }
    @inline(__always) package func folioIsHugetlb(_ head: PFN) -> Bool { page(head).pointee.flags & PG.hugetlb != 0 }

    // MARK: the pool counters

    package var hugetlbCounters: (total: UInt64, free: UInt64, resv: UInt64, surplus: UInt64) {
        let h = header.pointee
        return (h.nr_huge_pages, h.free_huge_pages, h.resv_huge_pages, h.surplus_huge_pages)
    }

    /// available_huge_pages()
    @inline(__always) var availableHugePages: UInt64 {
        header.pointee.free_huge_pages &- header.pointee.resv_huge_pages
    }

    /// enqueue_hugetlb_folio(): a folio with no reference goes on the free list.
    func enqueueHugetlbFolio(_ head: PFN) {
        let p = page(head)
        p.pointee.next = header.pointee.hugetlb_free_head
        header.pointee.hugetlb_free_head = head.rawValue
        header.pointee.free_huge_pages += 1
    }

    /// dequeue_hugetlb_folio_node_exact(): the first free folio without
    /// PG_hwpoison (a poisoned one memory_failure could not dissolve stays
    /// on the list, counted free, never handed out), with one reference
    /// (folio_ref_unfreeze); 0 when there is none.
    func dequeueHugetlbFolio() -> PFN {
        var prev = PFN.none
        var head = PFN(header.pointee.hugetlb_free_head)
        while !head.isNone && page(head).pointee.flags & PG.hwpoison != 0 {
            prev = head
            head = PFN(page(head).pointee.next)
        }
        guard !head.isNone else { return .none }
        let p = page(head)
        if prev.isNone { header.pointee.hugetlb_free_head = p.pointee.next } else { page(prev).pointee.next = p.pointee.next }
        p.pointee.next = 0
        p.pointee.refcount = 1
        header.pointee.free_huge_pages -= 1
        // A new life of the folio (as allocFolio numbers one): what was
        // known of its previous one (the checker's write records) is not of it.
        header.pointee.next_frame_serial &+= 1
        p.pointee.serial = header.pointee.next_frame_serial
        return head
    }

    /// set_max_huge_pages() (`nr_hugepages`): grows the pool with fresh
    /// folios (alloc_pool_huge_folio + prep_and_add_allocated_folios) or
    /// shrinks it by the free pages no reservation needs. False when the
    /// frames cannot hold the pool: the pool is then as it was.
    package func hugetlbSetMaxHugePages(_ count: UInt64) -> Bool {
        var added: [PFN] = []
        while header.pointee.nr_huge_pages + UInt64(added.count) < count {
            let head = allocFolio(order: RMAP_PMD_ORDER)
            if head.isNone {
                for f in added { freeFolio(f) }
                return false
            }
            added.append(head)
        }
        for head in added {
            // init_new_hugetlb_folio(): frozen (no reference), PG_hugetlb.
            let p = page(head)
            p.pointee.flags = PG.head | PG.hugetlb
            p.pointee.refcount = 0
            header.pointee.nr_huge_pages += 1
            enqueueHugetlbFolio(head)
        }
        // Decrease: free pages beyond the reservations go back to the buddy allocator.
        while header.pointee.nr_huge_pages > count && availableHugePages > 0 {
            let head = dequeueHugetlbFolio()
            if head.isNone { break }
            page(head).pointee.refcount = 0
            header.pointee.nr_huge_pages -= 1
            freeFolio(head)
        }
        return true
    }

    /// free_huge_folio(): the last reference of a hugetlb folio went. It
    /// gives back the global reservation it consumed when marked
    /// restore_reserve (no subpool), and goes back on the free list
    /// (no surplus pages), except a temporary folio of a migration, which
    /// leaves the pool for the buddy allocator (remove_hugetlb_folio,
    /// update_and_free_hugetlb_folio).
    func freeHugeFolio(_ head: PFN) {
        let p = page(head)
        if p.pointee.flags & PG.hugetlbRestoreReserve != 0 { header.pointee.resv_huge_pages &+= 1 }
        p.pointee.flags &= ~PG.hugetlbRestoreReserve
        if p.pointee.flags & PG.hugetlbTemporary != 0 {
            p.pointee.flags = PG.head | PG.hugetlb
            p.pointee.mapping = 0
            p.pointee.index = 0
            header.pointee.nr_huge_pages -= 1
            freeFolio(head)
            return
        }
        p.pointee.flags &= ~(PG.anonExclusive | PG.dirty | PG.referenced)
        p.pointee.mapping = 0
        p.pointee.index = 0
        enqueueHugetlbFolio(head)
    }

    // MARK: the reservation maps (resv_map, region_*)

    /// The leaf entry of huge index `idx` in a hugetlbfs file's tree; with
    /// `alloc`, the missing tables are allocated (nil when out of them).
    @inline(__always)
    func hugetlbEntry(_ f: FileID, _ idx: UInt64, alloc: Bool = false) -> UnsafeMutablePointer<UInt64>? {
        let root = file(f).pointee.cache_root
        return alloc ? leafSlotAlloc(root: root, key: idx << PAGE_SHIFT) : leafSlot(root: root, key: idx << PAGE_SHIFT)
    }

    /// Sets or clears `bits` of the entry of `idx`, keeping the leaf table's
    /// count of used entries. False when a table cannot be allocated.
    @discardableResult
    func hugetlbEntryUpdate(_ f: FileID, _ idx: UInt64, set: UInt64 = 0, clear: UInt64 = 0) -> Bool {
        guard let slot = hugetlbEntry(f, idx, alloc: set != 0) else { return set == 0 }
        let old = slot.pointee
        let new = (old | set) & ~clear
        slot.pointee = new
        if (old == 0) != (new == 0) {
            ptDescUsedForLeaf(file(f).pointee.cache_root, idx << PAGE_SHIFT, new == 0 ? -1 : +1)
        }
        return true
    }

    @inline(__always) func hugetlbEntryHas(_ f: FileID, _ idx: UInt64, _ bit: UInt64) -> Bool {
        (hugetlbEntry(f, idx)?.pointee ?? 0) & bit != 0
    }

    /// The leaf tables a range of huge indices may need (one per 512).
    static func hugetlbTablesFor(_ from: UInt64, _ to: UInt64) -> UInt32 {
        UInt32(min((to - from) / 512 + 2, 1 << 20)) + 3
    }

    /// vma_hugecache_offset(): the huge-page index `addr` maps in its file.
    @inline(__always) func vmaHugecacheOffset(_ v: VMAID, _ addr: UInt64) -> UInt64 {
        ((addr - vma(v).pointee.vm_start) >> 21) + (vma(v).pointee.vm_pgoff >> 9)
    }

    /// vma_needs_reservation() (__vma_reservation_common, VMA_NEEDS_RESV):
    /// true when the fault at `addr` has no reservation to use. A shared
    /// mapping uses the inode's map (an entry: reserved); a private one its
    /// owner's map (no entry: reserved, an entry: consumed); a VMA without a
    /// map (a fork child, MAP_NORESERVE) always needs one.
    func vmaNeedsReservation(_ v: VMAID, _ addr: UInt64) -> Bool {
        let flags = vma(v).pointee.vm_flags
        let idx = vmaHugecacheOffset(v, addr)
        if flags & VM.mayshare != 0 { return !hugetlbEntryHas(vmFile(v), idx, HugetlbEntry.region) }
        if flags & VM.hugetlbResvOwner == 0 { return true }
        return hugetlbEntryHas(vmFile(v), idx, HugetlbEntry.consumed)
    }

    /// vma_commit_reservation() (VMA_COMMIT_RESV: region_add of one index).
    func vmaCommitReservation(_ v: VMAID, _ addr: UInt64) {
        let flags = vma(v).pointee.vm_flags
        let idx = vmaHugecacheOffset(v, addr)
        if flags & VM.mayshare != 0 {
            hugetlbEntryUpdate(vmFile(v), idx, set: HugetlbEntry.region)
        } else if flags & VM.hugetlbResvOwner != 0 {
            hugetlbEntryUpdate(vmFile(v), idx, set: HugetlbEntry.consumed)
        }
    }

    /// vma_add_reservation() of a private owner (VMA_ADD_RESV: region_del):
    /// the reservation exists again.
    func vmaAddReservationPrivate(_ v: VMAID, _ addr: UInt64) {
        hugetlbEntryUpdate(vmFile(v), vmaHugecacheOffset(v, addr), clear: HugetlbEntry.consumed)
    }

    /// hugetlb_acct_memory(h, delta > 0) without overcommit: the
    /// reservation is taken when the free pages cover it
    /// (gather_surplus_pages: `needed = resv + delta - free`, signed, and no
    /// surplus page to allocate; then `delta > allowed_mems_nr()`), else ENOMEM.
    ///
    /// resv_huge_pages is unsigned and can wrap below zero for a while, as
    /// in the kernel: an owner that exits while a fork child still maps a
    /// page it faulted gives back that page's reservation at close
    /// (hugetlb_vm_op_close) before the page's free_huge_folio() restores it
    /// (restore_reserve, set by __unmap_hugepage_range). So the count is
    /// read signed and changed with wrapping arithmetic.
    func hugetlbAcctMemory(_ delta: UInt64) -> Bool {
        if delta == 0 { return true }
        let h = header.pointee
        let needed = Int64(bitPattern: h.resv_huge_pages &+ delta) - Int64(h.free_huge_pages)
        if needed > 0 || delta > h.free_huge_pages { return false }
        header.pointee.resv_huge_pages &+= delta
        return true
    }

    /// return_unused_surplus_pages(): the reservation count goes down.
    func hugetlbUnreserve(_ n: UInt64) {
        header.pointee.resv_huge_pages &-= n
    }

    /// alloc_hugetlb_folio(): a folio for `addr` of `v`, consuming the
    /// VMA's reservation when it has one (map_chg REUSE: the folio gets
    /// restore_reserve and resv_huge_pages goes down); otherwise a free page
    /// no reservation holds. With `cowFromOwner` the VMA's reservations are
    /// not used (MAP_CHG_ENFORCED). nil when none can be had (-ENOSPC: no
    /// surplus page without overcommit). The folio has one reference.
    func allocHugetlbFolio(_ v: VMAID, _ addr: UInt64, cowFromOwner: Bool) -> PFN? {
        let mapChg = cowFromOwner || vmaNeedsReservation(v, addr)
        let gblChg = mapChg  // hugepage_subpool_get_pages(NULL, 1) == 1
        guard !gblChg || availableHugePages > 0 else { return nil }
        let head = dequeueHugetlbFolio()
        guard !head.isNone else { return nil }
        if !gblChg {
            page(head).pointee.flags |= PG.hugetlbRestoreReserve
            header.pointee.resv_huge_pages &-= 1
        }
        if !cowFromOwner { vmaCommitReservation(v, addr) }
        return head
    }

    /// restore_reserve_on_error() for a folio that consumed a reservation
    /// and is put back unmapped: the map says reserved again (free_huge_folio
    /// gives the global count back).
    func restoreReserveOnError(_ v: VMAID, _ addr: UInt64, _ head: PFN) {
        let needs = vmaNeedsReservation(v, addr)
        if page(head).pointee.flags & PG.hugetlbRestoreReserve != 0 {
            if needs && vma(v).pointee.vm_flags & VM.mayshare == 0 { vmaAddReservationPrivate(v, addr) }
        } else if !needs {
            // An entry alloc_hugetlb_folio added (VMA_DEL_RESV).
            let idx = vmaHugecacheOffset(v, addr)
            if vma(v).pointee.vm_flags & VM.mayshare != 0 {
                hugetlbEntryUpdate(vmFile(v), idx, clear: HugetlbEntry.region)
            } else if vma(v).pointee.vm_flags & VM.hugetlbResvOwner != 0 {
                hugetlbEntryUpdate(vmFile(v), idx, set: HugetlbEntry.consumed)
            }
        }
    }

    // MARK: mmap, close, the file's end

    /// mmap of MAP_ANONYMOUS|MAP_HUGETLB (ksys_mmap_pgoff, hugetlb_file_setup,
    /// hugetlb_get_unmapped_area, hugetlbfs_file_mmap, hugetlb_reserve_pages)
    /// at `addr` with MAP_FIXED_NOREPLACE: the length rounds up to 2 MiB; an
    /// unaligned address is EINVAL; an overlap EEXIST; the reservation the
    /// pool cannot cover ENOMEM (all of a private mapping, the indices of a
    /// shared one's file without a region; none with MAP_NORESERVE).
    package func hugetlbMmap(_ m: MMID, addr: UInt64, pages: UInt64, prot: UInt64, shared: Bool,
                             noreserve: Bool) -> Errno? {
        let len = (pages << PAGE_SHIFT + Kernel.hpageSize - 1) & Kernel.hpageMask
        if addr & ~Kernel.hpageMask != 0 { return .EINVAL }
        let end = addr + len
        guard end <= TraceLimits.maxAddress else { return .ENOMEM }
        let v0 = findVMA(m, addr)
        if !v0.isNone && vma(v0).pointee.vm_start < end { return .EEXIST }
        let nIdx = len >> 21
        guard available(T.vma) >= 1, available(T.file) >= 1,
              available(T.ptPage) >= Kernel.hugetlbTablesFor(0, nIdx) + 1 else { return .ENOMEM }
        var flags = prot | VM.mayread | VM.maywrite | VM.mayexec | VM.softdirty | VM.hugetlb | VM.dontexpand
        if shared { flags |= VM.shared | VM.mayshare }
        if noreserve { flags |= VM.noreserve }
        let f = createFile(pages: len >> PAGE_SHIFT, kind: .hugetlbfs)
        if f.isNone { return .ENOMEM }
        // hugetlb_reserve_pages(inode, 0, len >> 21, vma, vm_flags)
        if !noreserve {
            if shared {
                // region_chg(): the indices without a region (a new file: all).
                var chg: UInt64 = 0
                for idx in 0..<nIdx where !hugetlbEntryHas(f, idx, HugetlbEntry.region) { chg += 1 }
                guard hugetlbAcctMemory(chg) else { putFile(f); return .ENOMEM }
                for idx in 0..<nIdx { hugetlbEntryUpdate(f, idx, set: HugetlbEntry.region) }  // region_add()
            } else {
                guard hugetlbAcctMemory(nIdx) else { putFile(f); return .ENOMEM }
                flags |= VM.hugetlbResvOwner  // set_vma_resv_map() + HPAGE_RESV_OWNER
            }
        }
        let v = vmAreaAlloc(m)
        let p = vma(v)
        p.pointee.vm_start = addr
        p.pointee.vm_end = end
        p.pointee.vm_pgoff = 0
        p.pointee.vm_flags = flags
        p.pointee.file = f.rawValue  // the new file's first reference is the VMA's
        vmaLink(v)
        return nil
    }

    /// hugetlb_vm_op_close(): an owner VMA that goes gives back the
    /// reservations of its range it did not consume
    /// (reserve = (end - start) - region_count()); its indices leave the map.
    func hugetlbVMClose(_ v: VMAID) {
        let p = vma(v).pointee
        guard p.vm_flags & VM.hugetlb != 0, p.vm_flags & (VM.mayshare | VM.hugetlbResvOwner) == VM.hugetlbResvOwner else { return }
        let start = vmaHugecacheOffset(v, p.vm_start), end = vmaHugecacheOffset(v, p.vm_end)
        var reserve: UInt64 = 0
        let f = vmFile(v)
        for idx in start..<end {
            if hugetlbEntryHas(f, idx, HugetlbEntry.consumed) {
                hugetlbEntryUpdate(f, idx, clear: HugetlbEntry.consumed)
            } else {
                reserve += 1
            }
        }
        hugetlbUnreserve(reserve)
    }

    /// hugetlbfs_evict_inode() of the last reference: remove_inode_hugepages()
    /// drops the cached folios, hugetlb_unreserve_pages(inode, 0, LONG_MAX,
    /// freed) gives back the regions no cached page consumed; the private
    /// map's entries go with it (resv_map_release).
    func hugetlbEvictInode(_ f: FileID) {
        let fp = file(f)
        let nIdx = (fp.pointee.size_pages + 511) >> 9
        var regions: UInt64 = 0, freed: UInt64 = 0
        for idx in 0..<nIdx {
            guard let slot = hugetlbEntry(f, idx), slot.pointee != 0 else { continue }
            let e = slot.pointee
            if e & HugetlbEntry.region != 0 { regions += 1 }
            if e & PTE.present != 0 {
                let head = PTE.pfn(e)
                freed += 1
                fp.pointee.nrpages -= UInt64(RMAP_PMD_NR)
                page(head).pointee.mapping = 0
                putPage(head)
            }
            hugetlbEntryUpdate(f, idx, clear: ~0)
        }
        hugetlbUnreserve(regions &- freed)
    }

    // MARK: faults

    /// hugetlb_fault(): `addr` of hugetlb VMA `v`, the access checked.
    func hugetlbFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, write: Bool) -> FaultResult {
        let haddr = addr & Kernel.hpageMask
        // huge_pte_alloc(): a none PUD entry of a VMA that may share its
        // PMD table takes another VMA's (huge_pmd_share), else pmd_alloc().
        guard available(T.ptPage) >= 3 else { return .oom }
        if wantPMDShare(v, haddr) {
            guard let pud = pudSlotAlloc(root: mm(m).pointee.pgd, key: haddr) else { return .oom }
            if pud.pointee == 0 { hugePMDShare(v, haddr, pud: pud) }
        }
        guard let pmd = pmdSlotAlloc(root: mm(m).pointee.pgd, key: haddr) else { return .oom }
        let e = pmd.pointee
        if e == 0 { return hugetlbNoPage(m, v, haddr, pmd, write: write) }
        if PTE.isPMDMigrationEntry(e) {
            // migration_entry_wait_huge(), then the fault again.
            hugetlbMigrationEntryFault(v, pmd)
            return hugetlbFault(m, v, addr, write: write)
        }
        guard PTE.isPMDLeaf(e) else { return .sigbus }  // no hwpoison entry is made
        if write && !PTE.isWrite(e) { return hugetlbWP(m, v, haddr, pmd) }
        // huge_ptep_set_access_flags()
        pmd.pointee = e | PTE.accessed | (write ? PTE.dirty : 0)
        return .ok
    }

    /// make_huge_pte(): young, and writable and dirty when asked and the VMA
    /// is writable.
    func makeHugePTE(_ v: VMAID, _ head: PFN, mkwrite: Bool) -> UInt64 {
        let flags = vma(v).pointee.vm_flags
        var e = (PTE.make(pfn: head, prot: PTE.pageProt(vmFlags: flags)) | PTE.pse | PTE.accessed) & ~PTE.rw
        if mkwrite && flags & VM.write != 0 { e |= PTE.rw | PTE.dirty }
        return e
    }

    /// hugetlb_no_page(): a none entry. A VMA the owner unmapped pages from
    /// is SIGBUS. A shared mapping maps the file's cached folio or a new
    /// zeroed one it adds to the cache (writable, dirty); a private one a
    /// new zeroed anonymous folio (read-only; a write then runs hugetlb_wp,
    /// which reuses it). No page to be had is SIGBUS.
    func hugetlbNoPage(_ m: MMID, _ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>,
                       write: Bool) -> FaultResult {
        let flags = vma(v).pointee.vm_flags
        if flags & VM.hugetlbResvUnmapped != 0 { return .sigbus }  // "killed due to inadequate hugepage pool"
        let f = vmFile(v)
        let idx = vmaHugecacheOffset(v, haddr)
        let shared = flags & VM.mayshare != 0
        var folio = PFN.none
        if shared, let slot = hugetlbEntry(f, idx), slot.pointee & PTE.present != 0 {
            folio = PTE.pfn(slot.pointee)
            // "If memory error occurs between mmap() and fault": a poisoned
            // cached folio is VM_FAULT_HWPOISON_LARGE (SIGBUS).
            if page(folio).pointee.flags & PG.hwpoison != 0 { return .sigbus }
            getPage(folio)  // filemap_lock_hugetlb_folio()
        } else {
            if idx >= (file(f).pointee.size_pages >> 9) { return .sigbus }
            if !shared { guard anonVMAPrepare(v) else { return .oom } }
            guard available(T.ptPage) >= 4 else { return .oom }
            guard let head = allocHugetlbFolio(v, haddr, cowFromOwner: false) else { return .sigbus }
            folio = head
            // folio_zero_user()
            for i in 0..<RMAP_PMD_NR { page(head.advanced(by: i)).pointee.content = 0 }
            page(head).pointee.flags |= PG.uptodate
            if shared {
                // hugetlb_add_to_page_cache(): the cache's reference, dirty.
                hugetlbEntryUpdate(f, idx, set: PTE.make(pfn: head, prot: PTE.present))
                let p = page(head)
                p.pointee.mapping = offset(table: T.file, index: f.rawValue)
                p.pointee.index = idx << 9
                p.pointee.flags = (p.pointee.flags & ~PG.hugetlbRestoreReserve) | PG.dirty
                getPage(head)
                file(f).pointee.nrpages += UInt64(RMAP_PMD_NR)
            }
        }
        if shared {
            hugetlbAddFileRmap(folio)
        } else {
            hugetlbAddNewAnonRmap(folio, vma: v, address: haddr)
        }
        pmd.pointee = makeHugePTE(v, folio, mkwrite: flags & VM.shared != 0)
        if write && flags & VM.shared == 0 { return hugetlbWP(m, v, haddr, pmd) }  // the COW without a second fault
        return .ok
    }

    /// hugetlb_wp(): a write to a write-protected entry. A shared mapping
    /// just makes it writable. A private anonymous folio mapped once is
    /// reused (folio_move_anon_rmap, exclusive). Otherwise the whole 2 MiB
    /// is copied to a new folio (the owner's COW uses no reservation). When
    /// none can be had: a non-owner gets SIGBUS; the owner unmaps the page
    /// from the VMAs without reservations (unmap_ref_private) and retries,
    /// then reusing it.
    func hugetlbWP(_ m: MMID, _ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) -> FaultResult {
        let flags = vma(v).pointee.vm_flags
        if flags & VM.mayshare != 0 {
            pmd.pointee |= PTE.rw | PTE.dirty | PTE.accessed  // set_huge_ptep_writable()
            return .ok
        }
        let old = PTE.pfn(pmd.pointee)
        var unmappedOthers = false
        while true {
            if folioLargeMapcount(old) == 1 && pageIsAnon(old) {
                if page(old).pointee.flags & PG.anonExclusive == 0 {
                    folioMoveAnonRmap(old, vma: v)
                    page(old).pointee.flags |= PG.anonExclusive
                }
                var e = pmd.pointee | PTE.accessed
                if flags & VM.write != 0 { e |= PTE.rw | PTE.dirty }
                pmd.pointee = e
                return .ok
            }
            let cowFromOwner = flags & VM.hugetlbResvOwner != 0 && pageIsAnon(old)
            guard anonVMAPrepare(v) else { return .oom }
            if let new = allocHugetlbFolio(v, haddr, cowFromOwner: cowFromOwner) {
                // copy_user_large_folio()
                for i in 0..<RMAP_PMD_NR {
                    page(new.advanced(by: i)).pointee.content = page(old.advanced(by: i)).pointee.content
                }
                page(new).pointee.flags |= PG.uptodate
                mmuInvalidateRangeStart(m, haddr, haddr + Kernel.hpageSize)
                // huge_ptep_clear_flush(), then the new folio in its place.
                pmd.pointee = 0
                hugetlbRemoveRmap(old)
                hugetlbAddNewAnonRmap(new, vma: v, address: haddr)
                pmd.pointee = makeHugePTE(v, new, mkwrite: true)
                mmuInvalidateRangeEnd(m, haddr, haddr + Kernel.hpageSize)
                putPage(old)
                return .ok
            }
            // The kernel retries as long as the entry still maps the page;
            // a second failure after unmapping every other user cannot
            // happen (the page is then mapped once), so once is enough.
            guard cowFromOwner, !unmappedOthers else { return .sigbus }
            unmapRefPrivate(v, old, haddr)
            unmappedOthers = true
            guard PTE.isPMDLeaf(pmd.pointee), PTE.pfn(pmd.pointee) == old else { return .ok }
        }
    }

    /// unmap_ref_private(): the owner failing to COW unmaps the page from
    /// every private VMA of the file without reservations (the fork
    /// children), marking them HPAGE_RESV_UNMAPPED.
    func unmapRefPrivate(_ v: VMAID, _ folio: PFN, _ haddr: UInt64) {
        let f = vmFile(v)
        let pgoff = ((haddr - vma(v).pointee.vm_start) >> PAGE_SHIFT) + vma(v).pointee.vm_pgoff
        var targets: [VMAID] = []
        var it = VMAID(IntervalTree.iterFirst(root: iMMapRoot(f).pointee, start: pgoff, last: pgoff, iMMap))
        while !it.isNone {
            let fl = vma(it).pointee.vm_flags
            if it != v && fl & VM.mayshare == 0 && fl & VM.hugetlbResvOwner == 0 { targets.append(it) }
            it = VMAID(IntervalTree.iterNext(it.rawValue, start: pgoff, last: pgoff, iMMap))
        }
        for t in targets { unmapHugepageRange(t, haddr, haddr + Kernel.hpageSize, folio: folio) }
    }

    // MARK: rmap (include/linux/rmap.h, mm/rmap.c): the entire mapcount only

    /// hugetlb_add_new_anon_rmap(): the first mapping of a new anonymous
    /// folio, exclusive (restore_reserve cleared).
    func hugetlbAddNewAnonRmap(_ head: PFN, vma v: VMAID, address: UInt64) {
        let p1 = page(head.advanced(by: 1))
        p1.pointee.entire_mapcount = 0
        p1.pointee.large_mapcount = 0
        page(head).pointee.flags &= ~PG.hugetlbRestoreReserve
        setPageAnonRmap(head, vma: v, address: address, exclusive: true)
        page(head).pointee.flags |= PG.anonExclusive
    }

    /// hugetlb_add_file_rmap() / hugetlb_add_anon_rmap() without RMAP_EXCLUSIVE.
    func hugetlbAddFileRmap(_ head: PFN) {
        let p1 = page(head.advanced(by: 1))
        p1.pointee.entire_mapcount += 1
        p1.pointee.large_mapcount += 1
    }

    /// hugetlb_try_dup_anon_rmap() at fork (never pinned in the model): the
    /// folio stops being exclusive and is mapped once more.
    func hugetlbDupAnonRmap(_ head: PFN) {
        page(head).pointee.flags &= ~PG.anonExclusive
        hugetlbAddFileRmap(head)
    }

    /// hugetlb_remove_rmap()
    func hugetlbRemoveRmap(_ head: PFN) {
        let p1 = page(head.advanced(by: 1))
        p1.pointee.entire_mapcount -= 1
        p1.pointee.large_mapcount -= 1
    }

    // MARK: zap, fork

    /// __unmap_hugepage_range() over [start, end) of `v` (2 MiB aligned),
    /// inside unmap_hugepage_range()'s notifier range. With `folio`, only
    /// the entry that maps it goes, and `v` is marked HPAGE_RESV_UNMAPPED.
    /// An owner's anonymous page gets its reservation back
    /// (restore_reserve; the map says reserved again).
    func unmapHugepageRange(_ v: VMAID, _ start: UInt64, _ end: UInt64, folio: PFN? = nil) {
        let m = vmMM(v)
        let root = mm(m).pointee.pgd
        // The notifier range covers what a shared PMD table may map
        // (adjust_range_if_pmd_sharing_possible).
        var rstart = start, rend = end
        adjustRangeIfPMDSharingPossible(v, &rstart, &rend)
        mmuInvalidateRangeStart(m, rstart, rend)
        defer { mmuInvalidateRangeEnd(m, rstart, rend) }
        var addr = start
        while addr < end {
            defer { addr += Kernel.hpageSize }
            // huge_pmd_unshare(): a shared table goes from this mm whole;
            // the walk goes on after its PUD range.
            if folio == nil && hugePMDUnshare(v, addr) {
                addr |= Kernel.pudSize - Kernel.hpageSize
                continue
            }
            guard let pmd = pmdSlot(root: root, key: addr) else { continue }
            let e = pmd.pointee
            guard e != 0 else { continue }
            if PTE.isHWPoisonEntry(e) {
                // A non-present entry: huge_pte_clear() (it holds no reference).
                if folio == nil { pmd.pointee = 0 }
                continue
            }
            if PTE.isPMDMigrationEntry(e) {
                // "Migrating hugepage ... is already unmapped": the entry is
                // cleared (huge_pte_clear), with a reference page or not; the
                // model's entry reference goes with it.
                pmd.pointee = 0
                putPage(PTE.swpOffsetPFN(e))
                continue
            }
            guard PTE.isPMDLeaf(e) else { continue }
            let head = PTE.pfn(e)
            if let folio {
                if head != folio { continue }
                vma(v).pointee.vm_flags |= VM.hugetlbResvUnmapped
            }
            pmd.pointee = 0
            if PTE.isDirty(e) { page(head).pointee.flags |= PG.dirty }
            if PTE.isYoung(e) { page(head).pointee.flags |= PG.referenced }
            hugetlbRemoveRmap(head)
            let flags = vma(v).pointee.vm_flags
            if header.pointee.surplus_huge_pages == 0
                && flags & (VM.mayshare | VM.hugetlbResvOwner) == VM.hugetlbResvOwner && pageIsAnon(head) {
                page(head).pointee.flags |= PG.hugetlbRestoreReserve
                if vmaNeedsReservation(v, addr) { vmaAddReservationPrivate(v, addr) }
            }
            putPage(head)
            if folio != nil { break }
        }
    }

    /// copy_hugetlb_page_range() at fork: each entry is copied; a private
    /// (COW) one is write-protected on both sides and its anonymous folio
    /// duplicated (hugetlb_try_dup_anon_rmap), a file one mapped once more.
    /// False on ENOMEM (page tables).
    func copyHugetlbPageRange(dst: VMAID, src: VMAID) -> Bool {
        let sm = vmMM(src), dm = vmMM(dst)
        let cow = VM.isCOW(vma(src).pointee.vm_flags)
        var addr = vma(src).pointee.vm_start
        let end = vma(src).pointee.vm_end
        if cow { mmuInvalidateRangeStart(sm, addr, end) }
        defer { if cow { mmuInvalidateRangeEnd(sm, vma(src).pointee.vm_start, end) } }
        while addr < end {
            defer { addr += Kernel.hpageSize }
            guard let spmd = pmdSlot(root: mm(sm).pointee.pgd, key: addr), spmd.pointee != 0 else { continue }
            guard available(T.ptPage) >= 3, let dpmd = pmdSlotAlloc(root: mm(dm).pointee.pgd, key: addr) else { return false }
            var e = spmd.pointee
            if PTE.isHWPoisonEntry(e) {
                // copy_hugetlb_page_range()'s hwpoison branch: copied as it is.
                dpmd.pointee = e
                continue
            }
            if PTE.isPMDMigrationEntry(e) {
                // copy_hugetlb_page_range()'s migration branch: a write or
                // read-exclusive entry of a COW mapping becomes a read one
                // on both sides (make_readable_migration_entry: rebuilt
                // from the swap entry, soft-dirty not kept); the child's
                // copy holds a reference of its own (model).
                if cow && PTE.swpType(e) != PTE.swpMigrationRead {
                    e = PTE.swpEntry(type: PTE.swpMigrationRead, pfn: PTE.swpOffsetPFN(e))
                    spmd.pointee = e
                }
                getPage(PTE.swpOffsetPFN(e))
                dpmd.pointee = e
                continue
            }
            guard PTE.isPMDLeaf(e) else { continue }
            let head = PTE.pfn(e)
            getPage(head)
            if pageIsAnon(head) { hugetlbDupAnonRmap(head) } else { hugetlbAddFileRmap(head) }
            if cow {
                spmd.pointee = e & ~PTE.rw  // huge_ptep_set_wrprotect()
                e &= ~PTE.rw
            }
            dpmd.pointee = e
        }
        return true
    }
}
