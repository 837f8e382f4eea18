import CShims

/// A THP setting (/sys/kernel/mm/transparent_hugepage/enabled and
/// hugepages-<size>kB/enabled). `inherit` (per size only) follows `enabled`.
public enum THPMode: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case never = 0, always = 1, madvise = 2, inherit = 3
    public var description: String {
        switch self {
        case .never: return "never"
        case .always: return "always"
        case .madvise: return "madvise"
        case .inherit: return "inherit"
        }
    }
}

/// What a huge-page fault path ends in: done, or VM_FAULT_FALLBACK (the
/// caller goes on with the PTE-level fault).
enum HugeFault: Equatable {
    case ok, oom, fallback
    var fault: FaultResult { self == .oom ? .oom : .ok }
}

/// PMD-mapped THP and multi-size THP of anonymous memory (mm/huge_memory.c,
/// mm/memory.c alloc_anon_folio, as 6.18 runs them).
extension Kernel {
    static let pmdSize: UInt64 = UInt64(RMAP_PMD_NR) << PAGE_SHIFT

    // MARK: settings and eligibility

    /// Whether the trace configured THP at all (a trace without a `thp`
    /// statement makes no large folio on its own and every mapping is
    /// VM_NOHUGEPAGE).
    @inline(__always) var thpConfigured: Bool { header.pointee.thp_flags & UInt32(RMAP_THP_CONFIGURED) != 0 }

    /// Whether PMD leaves may exist, so the paths that meet them must look:
    /// the trace configured THP, or MADV_COLLAPSE (which ignores the
    /// settings) made a THP without them.
    @inline(__always) var thpActive: Bool {
        header.pointee.thp_flags & UInt32(RMAP_THP_CONFIGURED | RMAP_THP_PMD_LEAVES) != 0
    }

    /// A PMD leaf is about to be made: the PMD paths must run from now on.
    @inline(__always) func thpNotePMDLeaf() {
        header.pointee.thp_flags |= UInt32(RMAP_THP_PMD_LEAVES)
    }

    package var thpEnabled: THPMode {
        THPMode(rawValue: header.pointee.thp_flags & UInt32(RMAP_THP_ENABLED_MASK)) ?? .never
    }

    package func thpMode(order: UInt32) -> THPMode {
        THPMode(rawValue: UInt32((header.pointee.thp_order_modes >> (4 * UInt64(order))) & 0xf)) ?? .never
    }

    /// The settings a trace with a `thp` statement starts from (the kernel's
    /// defaults here: `enabled madvise`, `2M inherit`, every other size `never`).
    package func thpConfigure() {
        guard !thpConfigured else { return }
        header.pointee.thp_flags = (header.pointee.thp_flags & UInt32(RMAP_THP_PMD_LEAVES))
            | UInt32(RMAP_THP_CONFIGURED) | THPMode.madvise.rawValue
        header.pointee.thp_order_modes = UInt64(THPMode.inherit.rawValue) << (4 * UInt64(RMAP_PMD_ORDER))
    }

    package func thpSetEnabled(_ mode: THPMode) {
        thpConfigure()
        header.pointee.thp_flags = (header.pointee.thp_flags & UInt32(RMAP_THP_PMD_LEAVES))
            | UInt32(RMAP_THP_CONFIGURED) | mode.rawValue
    }

    package func thpSetMode(order: UInt32, _ mode: THPMode) {
        thpConfigure()
        let shift = 4 * UInt64(order)
        header.pointee.thp_order_modes = (header.pointee.thp_order_modes & ~(0xf << shift)) | (UInt64(mode.rawValue) << shift)
    }

    /// __thp_vma_allowable_orders() for an anonymous VMA at a page fault
    /// (TVA_PAGEFAULT): the orders (2 to PMD order, a bit each) the
    /// settings allow in `v`: private anonymous memory without
    /// VM_NOHUGEPAGE; a size `always`, or `madvise` with VM_HUGEPAGE, or
    /// `inherit` reading `enabled` the same way.
    func thpVMAAllowableOrders(_ v: VMAID) -> UInt32 {
        let p = vma(v).pointee
        guard thpConfigured, p.file == 0, p.vm_flags & (VM.shared | VM.nohugepage) == 0 else { return 0 }
        let enabled = thpEnabled
        var orders: UInt32 = 0
        for order in UInt32(2)...RMAP_PMD_ORDER {
            var mode = thpMode(order: order)
            if mode == .inherit { mode = enabled }
            if mode == .always || (mode == .madvise && p.vm_flags & VM.hugepage != 0) { orders |= 1 << order }
        }
        return orders
    }

    /// thp_vma_suitable_order(): the aligned 2^order pages around `addr` lie
    /// inside the VMA. ("Don't have to check pgoff for anonymous vma": the
    /// pgoff alignment rule is for file VMAs, and the model's large folios
    /// are anonymous. An mremap-moved anonymous VMA keeps its pgoff and
    /// still gets large folios, as the oracle showed.)
    @inline(__always) func thpVMASuitableOrder(_ v: VMAID, _ addr: UInt64, _ order: UInt32) -> Bool {
        let p = vma(v).pointee
        let size = PAGE_SIZE << UInt64(order)
        let haddr = addr & ~(size - 1)
        return haddr >= p.vm_start && haddr + size <= p.vm_end
    }

    /// Whether a fault at `addr` with a none PMD tries a PMD-mapped THP.
    func thpAllowsPMD(_ v: VMAID, _ addr: UInt64) -> Bool {
        thpVMAAllowableOrders(v) & (1 << RMAP_PMD_ORDER) != 0 && thpVMASuitableOrder(v, addr, RMAP_PMD_ORDER)
    }

    // MARK: the huge zero page

    /// mm_get_huge_zero_folio(): the huge zero folio, allocated on first use
    /// (an aligned 2 MiB run, reserved); 0 when it cannot be had.
    func hugeZeroFolio() -> PFN {
        if header.pointee.huge_zero_pfn != 0 { return hugeZeroPFN }
        let z = allocFolio(order: RMAP_PMD_ORDER)
        if z.isNone { return .none }
        page(z).pointee.flags |= PG.reserved
        header.pointee.huge_zero_pfn = z.rawValue
        return z
    }

    @inline(__always) package var hugeZeroPFN: PFN { PFN(header.pointee.huge_zero_pfn) }

    /// follow_page(): the page `m` maps at `addr` through a present PTE or a
    /// PMD leaf; 0 for none, a non-present entry, or a zero page.
    /// One walk down to the PMD entry, as follow_page_mask() does
    /// (follow_pmd_mask, then the PTE table under it).
    package func mappedPage(_ m: MMID, _ addr: UInt64) -> PFN {
        guard let pmd = pmdSlot(root: mm(m).pointee.pgd, key: addr) else { return .none }
        let e = pmd.pointee
        if PTE.isPMDLeaf(e) {
            let head = PTE.pfn(e)
            return head == hugeZeroPFN ? .none : head.advanced(by: UInt32((addr >> PAGE_SHIFT) & 511))
        }
        // None, or a PMD migration entry: no page.
        guard PTE.isPMDTable(e) else { return .none }
        return vmNormalPage(ptPage(PTE.tablePage(e))[Kernel.index(addr, level: 1)])
    }

    // MARK: faults

    /// do_huge_pmd_anonymous_page(): a fault on a none PMD of a VMA that
    /// allows PMD-sized THP. A read maps the huge zero page (read-only,
    /// special, no rmap, no counter); a write a new THP by one PMD. Either
    /// deposits a PTE table for a later split. A THP that cannot be had is
    /// VM_FAULT_FALLBACK (the small-page path runs).
    func doHugePMDAnonymousPage(_ m: MMID, _ v: VMAID, _ addr: UInt64, write: Bool) -> HugeFault {
        let haddr = addr & ~(Kernel.pmdSize - 1)
        let root = mm(m).pointee.pgd
        guard faultHasRoom(), anonVMAPrepare(v) else { return .oom }
        guard let pmd = pmdSlotAlloc(root: root, key: haddr) else { return .oom }
        let table = pmdTable(root: root, key: haddr)
        let prot = PTE.pageProt(vmFlags: vma(v).pointee.vm_flags)
        if !write {
            let pgtable = allocPTPage(level: 1)
            if pgtable == 0 { return .oom }
            let z = hugeZeroFolio()
            if z.isNone {
                freePTPage(pgtable)
                header.pointee.thp_fault_fallback &+= 1
                return .fallback
            }
            // set_huge_zero_folio()
            depositPTETable(pmdTable: table, pgtable)
            pmd.pointee = PTE.make(pfn: z, prot: prot) | PTE.pse | PTE.special
            return .ok
        }
        let head = allocFolio(order: RMAP_PMD_ORDER)
        if head.isNone {
            header.pointee.thp_fault_fallback &+= 1
            return .fallback
        }
        let pgtable = allocPTPage(level: 1)
        if pgtable == 0 {
            putPage(head)
            return .oom
        }
        mapAnonFolioPMD(m, v, head, haddr, pmd, table: table, pgtable: pgtable)
        return .ok
    }

    /// map_anon_folio_pmd(): a new THP, mapped by one PMD (dirty, writable
    /// when the VMA is), exclusive, charged to MM_ANONPAGES.
    private func mapAnonFolioPMD(_ m: MMID, _ v: VMAID, _ head: PFN, _ haddr: UInt64,
                                 _ pmd: UnsafeMutablePointer<UInt64>, table: UInt32, pgtable: UInt32) {
        let flags = vma(v).pointee.vm_flags
        folioAddNewAnonRmapLarge(head, vma: v, address: haddr)
        if pgtable != 0 { depositPTETable(pmdTable: table, pgtable) }
        var e = PTE.make(pfn: head, prot: PTE.pageProt(vmFlags: flags)) | PTE.pse | PTE.dirty
        if flags & VM.write != 0 { e |= PTE.rw }
        pmd.pointee = e
        addMMCounter(m, .anon, Int64(RMAP_PMD_NR))
        header.pointee.thp_fault_alloc &+= 1
        if _slowPath(hooks.reverseMapOn) {
            for i in 0..<RMAP_PMD_NR { hooks.reverseMap!.anonAdded(self, pfn: head.advanced(by: i), vma: v, address: haddr + UInt64(i) << PAGE_SHIFT) }
        }
    }

    /// do_huge_pmd_wp_page(): a write to a read-only PMD leaf. On the huge
    /// zero page, do_huge_zero_wp_pmd() maps a new THP (or the PMD is split
    /// to small zero-page PTEs when none can be had). On a THP, an exclusive
    /// folio, or one whose only reference is this PMD, is reused; otherwise
    /// the PMD is split and the write falls back to the PTE (do_wp_page).
    func doHugePMDWPPage(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) -> HugeFault {
        let haddr = addr & ~(Kernel.pmdSize - 1)
        let e = pmd.pointee
        let pfn = PTE.pfn(e)
        if pfn == hugeZeroPFN {
            guard anonVMAPrepare(v) else { return .oom }
            let head = allocFolio(order: RMAP_PMD_ORDER)
            if head.isNone {
                header.pointee.thp_fault_fallback &+= 1
                splitHugePMD(v, haddr, pmd)
                return .fallback
            }
            mmuInvalidateRangeStart(m, haddr, haddr + Kernel.pmdSize)
            defer { mmuInvalidateRangeEnd(m, haddr, haddr + Kernel.pmdSize) }
            // The zero PMD's deposited table stays with the new one.
            mapAnonFolioPMD(m, v, head, haddr, pmd, table: 0, pgtable: 0)
            pmd.pointee |= PTE.accessed
            return .ok
        }
        let h = page(pfn)
        var reuse = h.pointee.flags & PG.anonExclusive != 0
        if !reuse && h.pointee.flags & PG.swapcache == 0 && h.pointee.refcount == 1 {
            folioMoveAnonRmap(pfn, vma: v)
            h.pointee.flags |= PG.anonExclusive
            reuse = true
        }
        if reuse {
            pmd.pointee = e | PTE.accessed | PTE.dirty | (vma(v).pointee.vm_flags & VM.write != 0 ? PTE.rw : 0)
            return .ok
        }
        splitHugePMD(v, haddr, pmd)
        return .fallback
    }

    /// The orders alloc_anon_folio() may try for a write fault at `addr`
    /// (below PMD order: the settings, thp_vma_suitable_orders, and a
    /// completely none aligned PTE range), highest first; 0 for none.
    func anonFolioOrders(_ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> UInt32 {
        var orders = thpVMAAllowableOrders(v) & ((1 << RMAP_PMD_ORDER) - 1)
        guard orders != 0 else { return 0 }
        let table = slot - Int((addr >> PAGE_SHIFT) & 511)
        var order = UInt32(31 - orders.leadingZeroBitCount)
        while orders != 0 {
            if thpVMASuitableOrder(v, addr, order) {
                let n = 1 << Int(order)
                let first = Int((addr >> PAGE_SHIFT) & 511) & ~(n - 1)
                var none = true
                for i in first..<(first + n) where table[i] != 0 { none = false; break }
                // Every lower order's range lies inside this one: all none too.
                if none { return orders & ((1 << (order + 1)) - 1) }
            }
            orders &= ~(1 << order)
            if orders == 0 { break }
            order = UInt32(31 - orders.leadingZeroBitCount)
        }
        return 0
    }

    /// do_anonymous_page() with a large folio from alloc_anon_folio(): the
    /// highest order that can be allocated, every page mapped by its PTE
    /// (set_ptes), one reference per PTE. False when every order failed
    /// (the caller maps a small page).
    func doAnonymousLargeFolio(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>,
                               orders: UInt32) -> Bool {
        var left = orders
        while left != 0 {
            let order = UInt32(31 - left.leadingZeroBitCount)
            left &= ~(1 << order)
            let head = allocFolio(order: order)
            if head.isNone { continue }  // MTHP_STAT_ANON_FAULT_FALLBACK: the next order
            let nr = UInt32(1) << order
            let start = addr & ~((PAGE_SIZE << UInt64(order)) - 1)
            page(head).pointee.refcount = Int32(nr)  // folio_ref_add(folio, nr_pages - 1)
            addMMCounter(m, .anon, Int64(nr))
            folioAddNewAnonRmapLarge(head, vma: v, address: start)
            let flags = vma(v).pointee.vm_flags
            var e = PTE.make(pfn: head, prot: PTE.pageProt(vmFlags: flags))
            if flags & VM.write != 0 { e |= PTE.dirty | PTE.rw }
            let first = slot - Int((addr - start) >> PAGE_SHIFT)
            for i in 0..<Int(nr) { first[i] = e + (UInt64(i) << PAGE_SHIFT) }
            header.pointee.mthp_fault_alloc &+= 1
            if _slowPath(hooks.reverseMapOn) {
                for i in 0..<nr { hooks.reverseMap!.anonAdded(self, pfn: head.advanced(by: i), vma: v, address: start + UInt64(i) << PAGE_SHIFT) }
            }
            return true
        }
        return false
    }

    // MARK: splitting a PMD

    /// __split_huge_pmd() at the PMD that maps `addr` in `v`'s mm, if a PMD
    /// leaf maps it.
    func splitHugePMD(at addr: UInt64, vma v: VMAID) {
        let m = vmMM(v)
        guard let pmd = pmdSlot(root: mm(m).pointee.pgd, key: addr), PTE.isPMDLeafOrEntry(pmd.pointee) else { return }
        splitHugePMD(v, addr & ~(Kernel.pmdSize - 1), pmd)
    }

    /// split_huge_pmd_if_needed() (vma_adjust_trans_huge): a VMA boundary
    /// moves to `addr`, not 2 MiB aligned, inside a PMD leaf: the PMD is split.
    func splitHugePMDIfNeeded(_ m: MMID, _ addr: UInt64) {
        guard _slowPath(thpActive), addr & (Kernel.pmdSize - 1) != 0 else { return }
        guard let pmd = pmdSlot(root: mm(m).pointee.pgd, key: addr), PTE.isPMDLeafOrEntry(pmd.pointee) else { return }
        let v = vmaLookup(m, addr & ~(Kernel.pmdSize - 1))
        guard !v.isNone else { return }
        splitHugePMD(v, addr & ~(Kernel.pmdSize - 1), pmd)
    }

    /// __split_huge_pmd_locked() without freeze: the PMD becomes the
    /// deposited PTE table with 512 PTEs carrying its write, young, dirty and
    /// soft-dirty bits; the folio stays whole, now mapped by PTEs (each page
    /// exclusive when the folio was), one reference per PTE. The huge zero
    /// page becomes 512 PTEs of the small zero page.
    func splitHugePMD(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) {
        if _slowPath(PTE.isPMDMigrationEntry(pmd.pointee)) {
            splitPMDMigrationEntry(v, haddr, pmd)
            return
        }
        let m = vmMM(v)
        let root = mm(m).pointee.pgd
        let e = pmd.pointee
        let table = pmdTable(root: root, key: haddr)
        mmuInvalidateRangeStart(m, haddr, haddr + Kernel.pmdSize)
        defer { mmuInvalidateRangeEnd(m, haddr, haddr + Kernel.pmdSize) }
        let pgtable = withdrawPTETable(pmdTable: table)
        let ptes = ptPage(pgtable)
        let prot = PTE.pageProt(vmFlags: vma(v).pointee.vm_flags)
        let head = PTE.pfn(e)
        if head == hugeZeroPFN {
            // __split_huge_zero_page_pmd()
            for i in 0..<Int(RMAP_PMD_NR) { ptes[i] = PTE.make(pfn: zeroPFN, prot: prot) | PTE.special }
        } else {
            if PTE.isDirty(e) { page(head).pointee.flags |= PG.dirty }
            let exclusive = page(head).pointee.flags & PG.anonExclusive != 0
            page(head).pointee.refcount += Int32(RMAP_PMD_NR) - 1
            folioAddAnonRmapPTEs(head, RMAP_PMD_NR, vma: v, address: haddr, exclusive: exclusive)
            var pte = PTE.make(pfn: head, prot: prot)
            if PTE.isWrite(e) { pte |= PTE.rw }
            if !PTE.isYoung(e) { pte &= ~PTE.accessed }
            if PTE.isDirty(e) { pte |= PTE.dirty }
            pte |= e & PTE.softDirty
            for i in 0..<Int(RMAP_PMD_NR) { ptes[i] = pte + (UInt64(i) << PAGE_SHIFT) }
            folioRemoveRmapPMD(head, vma: v)
        }
        pmd.pointee = (UInt64(pgtable) << 12) | Kernel.pageTableBits
        ptDesc(table).pointee.used += 1
        header.pointee.thp_split_pmd &+= 1
    }

    // MARK: zap, fork, mprotect, mremap of a PMD

    /// zap_huge_pmd(): the PMD goes with its deposited table; a THP loses
    /// the mapping, 512 pages of MM_ANONPAGES and the PMD's reference.
    func zapHugePMD(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) {
        if _slowPath(PTE.isPMDMigrationEntry(pmd.pointee)) {
            zapPMDMigrationEntry(v, haddr, pmd)
            return
        }
        let m = vmMM(v)
        let e = pmd.pointee
        pmd.pointee = 0
        freePTPage(withdrawPTETable(pmdTable: pmdTable(root: mm(m).pointee.pgd, key: haddr)))
        let head = PTE.pfn(e)
        guard head != hugeZeroPFN else { return }
        if PTE.isYoung(e) { page(head).pointee.flags |= PG.referenced }
        folioRemoveRmapPMD(head, vma: v)
        addMMCounter(m, .anon, -Int64(RMAP_PMD_NR))
        if _slowPath(hooks.reverseMapOn) {
            for i in 0..<RMAP_PMD_NR { hooks.reverseMap!.removed(self, pfn: head.advanced(by: i), vma: v) }
        }
        freeSwapCache(head)  // a THP still PMD-mapped while its reclaim failed midway
        putPage(head)
    }

    /// Splits the PMD leaves a range [start, end) of `v` cuts (zap_pmd_range
    /// and change_pmd_range split a PMD the range covers only in part).
    func splitHugePMDsAtEdges(_ v: VMAID, _ start: UInt64, _ end: UInt64) {
        guard _slowPath(thpActive) else { return }
        splitHugePMDCutAt(v, start, start, end)
        splitHugePMDCutAt(v, end, start, end)
    }

    /// The PMD leaf over `a` (an edge of [start, end)) split, when `a` is
    /// not 2 MiB aligned and the leaf meets the range.
    private func splitHugePMDCutAt(_ v: VMAID, _ a: UInt64, _ start: UInt64, _ end: UInt64) {
        guard a & (Kernel.pmdSize - 1) != 0,
              let pmd = pmdSlot(root: mm(vmMM(v)).pointee.pgd, key: a), PTE.isPMDLeafOrEntry(pmd.pointee) else { return }
        let haddr = a & ~(Kernel.pmdSize - 1)
        if haddr < end && haddr + Kernel.pmdSize > start { splitHugePMD(v, haddr, pmd) }
    }

    /// copy_huge_pmd() at fork: the child gets the PMD (write-protected on
    /// both sides, old in the child) with a deposited table of its own; a THP
    /// is duplicated (folio_try_dup_anon_rmap_pmd), the huge zero page only
    /// referenced. False on ENOMEM.
    func copyHugePMD(dst: VMAID, src: VMAID, _ haddr: UInt64, _ spmd: UnsafeMutablePointer<UInt64>) -> Bool {
        let dm = vmMM(dst)
        let droot = mm(dm).pointee.pgd
        guard available(T.ptPage) >= 3, let dpmd = pmdSlotAlloc(root: droot, key: haddr) else { return false }
        let pgtable = allocPTPage(level: 1)
        if pgtable == 0 { return false }
        var e = spmd.pointee
        if _slowPath(PTE.isPMDMigrationEntry(e)) {
            // The is_swap_pmd() branch: a write entry becomes a read one on
            // both sides of a COW mapping (make_readable_migration_entry,
            // soft-dirty kept); the child counts the 512 pages and gets a
            // deposited table. No rmap (the entry has none); the child's
            // entry holds a reference of its own (the model's convention).
            if PTE.swpType(e) != PTE.swpMigrationRead {
                e = PTE.swpEntry(type: PTE.swpMigrationRead, offset: PTE.swpOffset(e)) | (e & PTE.swpSoftDirty)
                spmd.pointee = e
            }
            getPage(PTE.swpOffsetPFN(e))
            addMMCounter(dm, .anon, Int64(RMAP_PMD_NR))
            depositPTETable(pmdTable: pmdTable(root: droot, key: haddr), pgtable)
            dpmd.pointee = e
            return true
        }
        let head = PTE.pfn(e)
        if head != hugeZeroPFN {
            getPage(head)
            folioDupAnonRmapPMD(head, dst: dst)
            addMMCounter(dm, .anon, Int64(RMAP_PMD_NR))
            if _slowPath(hooks.reverseMapOn) {
                for i in 0..<RMAP_PMD_NR {
                    hooks.reverseMap!.ptesDuplicated(self, pfn: head.advanced(by: i), mm: dm, address: haddr + UInt64(i) << PAGE_SHIFT)
                }
            }
        }
        depositPTETable(pmdTable: pmdTable(root: droot, key: haddr), pgtable)
        spmd.pointee = e & ~PTE.rw  // pmdp_set_wrprotect()
        e &= ~(PTE.rw | PTE.accessed)  // pmd_wrprotect(), pmd_mkold()
        dpmd.pointee = e
        return true
    }

    /// change_huge_pmd() (mprotect): the PMD takes the VMA's new protection;
    /// it stays writable only if the VMA is and the folio is an exclusive,
    /// dirty anonymous THP (can_change_pmd_writable).
    func changeHugePMD(_ v: VMAID, _ pmd: UnsafeMutablePointer<UInt64>) {
        if _slowPath(PTE.isPMDMigrationEntry(pmd.pointee)) {
            // change_huge_pmd()'s is_swap_pmd branch: "a protection check is
            // difficult so just be safe and disable write": a write entry of
            // an anonymous folio becomes read-exclusive (soft-dirty kept).
            let e = pmd.pointee
            if PTE.swpType(e) == PTE.swpMigrationWrite {
                pmd.pointee = PTE.swpEntry(type: PTE.swpMigrationReadExclusive, offset: PTE.swpOffset(e)) | (e & PTE.swpSoftDirty)
            }
            return
        }
        let flags = vma(v).pointee.vm_flags
        let prot = PTE.pageProt(vmFlags: flags)
        let e = pmd.pointee
        let chg = PTE.pfnMask | PTE.accessed | PTE.dirty | PTE.softDirty | PTE.special | PTE.pse
        var n = (e & chg) | (prot & ~chg)
        let head = PTE.pfn(e)
        if flags & VM.write != 0 && prot & PTE.present != 0 && head != hugeZeroPFN
            && page(head).pointee.flags & PG.anonExclusive != 0 && PTE.isDirty(e) {
            n |= PTE.rw
        } else {
            n &= ~PTE.rw
        }
        if prot & PTE.present == 0 { n = (n & ~PTE.present) | PTE.protnone }
        pmd.pointee = n
    }
}
