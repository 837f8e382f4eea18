import CShims

/// hugetlb PMD sharing (CONFIG_HUGETLB_PMD_PAGE_TABLE_SHARING, mm/hugetlb.c):
/// the VMAs of one hugetlbfs file that are VM_MAYSHARE and cover a whole
/// 1 GiB PUD-aligned range share the PMD table (page-table page) of that
/// range. The first fault in such a range whose PUD entry is none looks
/// through the file's i_mmap for a VMA that already has the table
/// (huge_pmd_share) and points its own PUD entry at it; every entry of the
/// table (and every mapping it holds) is then visible in both mms, counted
/// once in the folios' mapcounts. The table's share count (ptdesc's
/// pt_share_count: the sharers beyond the first) is kept in the
/// descriptor's lock word `ptl` (the model takes no locks). An unmap, a
/// split of the VMA inside the range, or exit unshares first
/// (huge_pmd_unshare: the mm's PUD entry goes, the count drops, the other
/// sharers keep the table and its mappings).
extension Kernel {
    static let pudSize: UInt64 = 1 << 30
    static let pudMask: UInt64 = ~(pudSize - 1)

    /// ptdesc_pmd_pts_count(): the other page tables that point to this PMD table.
    @inline(__always) package func pmdShareCount(_ table: UInt32) -> UInt32 { ptDesc(table).pointee.ptl }

    /// want_pmd_share(): VM_MAYSHARE (with its vma_lock) and the whole
    /// PUD-aligned range around `addr` inside the VMA.
    func wantPMDShare(_ v: VMAID, _ addr: UInt64) -> Bool {
        let p = vma(v).pointee
        let start = addr & Kernel.pudMask
        return p.vm_flags & (VM.hugetlb | VM.mayshare) == VM.hugetlb | VM.mayshare
            && p.vm_start <= start && p.vm_end >= start + Kernel.pudSize
    }

    /// The PUD slot of `key`, the PUD table allocated when missing
    /// (p4d_alloc + pud_alloc); nil when out of page-table pages.
    func pudSlotAlloc(root: UInt32, key: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let pgd = ptPage(root) + Kernel.index(key, level: 4)
        if pgd.pointee == 0 {
            let t = allocPTPage(level: 3)
            if t == 0 { return nil }
            pgd.pointee = (UInt64(t) << 12) | Kernel.pageTableBits
            ptDesc(root).pointee.used += 1
        }
        return ptPage(PTE.tablePage(pgd.pointee)) + Kernel.index(key, level: 3)
    }

    /// huge_pmd_share(): a VMA of the same file that maps the same offset at
    /// the same place in its own PUD range, with the same flags (VM_LOCKED
    /// aside) and the whole range (page_table_shareable), and that has the
    /// PMD table already: this mm's none PUD entry points to that table,
    /// whose share count goes up. True when shared.
    @discardableResult
    func hugePMDShare(_ v: VMAID, _ addr: UInt64, pud: UnsafeMutablePointer<UInt64>) -> Bool {
        let p = vma(v).pointee
        let f = vmFile(v)
        let idx = ((addr - p.vm_start) >> PAGE_SHIFT) + p.vm_pgoff
        var s = VMAID(IntervalTree.iterFirst(root: iMMapRoot(f).pointee, start: idx, last: idx, iMMap))
        while !s.isNone {
            defer { s = VMAID(IntervalTree.iterNext(s.rawValue, start: idx, last: idx, iMMap)) }
            guard s != v else { continue }
            let sp = vma(s).pointee
            let saddr = ((idx - sp.vm_pgoff) << PAGE_SHIFT) + sp.vm_start
            let sbase = saddr & Kernel.pudMask
            guard Kernel.index(addr, level: 2) == Kernel.index(saddr, level: 2),
                  p.vm_flags & ~VM.lockedMask == sp.vm_flags & ~VM.lockedMask,
                  sp.vm_start <= sbase, sp.vm_end >= sbase + Kernel.pudSize else { continue }
            // hugetlb_walk(svma, saddr): its PMD table, if it has one.
            let table = tableOnPath(root: mm(vmMM(s)).pointee.pgd, key: saddr, level: 2)
            guard table != 0 else { continue }
            guard pud.pointee == 0 else { return false }
            pud.pointee = (UInt64(table) << 12) | Kernel.pageTableBits
            ptDesc(ptPageIndex(of: pud)).pointee.used += 1
            ptDesc(table).pointee.ptl += 1  // ptdesc_pmd_pts_inc()
            return true
        }
        return false
    }

    /// huge_pmd_unshare(): when the PMD table over `addr` in `v`'s mm is
    /// shared, this mm's PUD entry goes (pud_clear) and the table's share
    /// count drops; the TLB of the whole PUD range is flushed
    /// (tlb_unshare_pmd_ptdesc). True when it was shared.
    @discardableResult
    func hugePMDUnshare(_ v: VMAID, _ addr: UInt64) -> Bool {
        let root = mm(vmMM(v)).pointee.pgd
        let pudTable = tableOnPath(root: root, key: addr, level: 3)
        guard pudTable != 0 else { return false }
        let pud = ptPage(pudTable) + Kernel.index(addr, level: 3)
        guard pud.pointee != 0 else { return false }
        let table = PTE.tablePage(pud.pointee)
        guard ptDesc(table).pointee.ptl > 0 else { return false }
        pud.pointee = 0
        ptDesc(pudTable).pointee.used -= 1
        ptDesc(table).pointee.ptl -= 1  // ptdesc_pmd_pts_dec()
        flushTLBPage()
        return true
    }

    /// adjust_range_if_pmd_sharing_possible(): a range of a VM_MAYSHARE VMA
    /// that spans at least one aligned PUD and meets it grows to PUD
    /// alignment (the worst case a shared PMD table can cover).
    func adjustRangeIfPMDSharingPossible(_ v: VMAID, _ start: inout UInt64, _ end: inout UInt64) {
        let p = vma(v).pointee
        let vStart = (p.vm_start + Kernel.pudSize - 1) & Kernel.pudMask
        let vEnd = p.vm_end & Kernel.pudMask
        guard p.vm_flags & VM.mayshare != 0, vEnd > vStart, end > vStart, start < vEnd else { return }
        if start > vStart { start &= Kernel.pudMask }
        if end < vEnd { end = (end + Kernel.pudSize - 1) & Kernel.pudMask }
    }

    /// hugetlb_split() at a VMA split at `addr`: when the split loses the
    /// PUD alignment of a range the VMA covers, that range is unshared
    /// (hugetlb_unshare_pmds).
    func hugetlbSplitUnshare(_ v: VMAID, _ addr: UInt64) {
        guard addr & ~Kernel.pudMask != 0 else { return }
        let floor = addr & Kernel.pudMask
        let p = vma(v).pointee
        guard floor >= p.vm_start, floor + Kernel.pudSize <= p.vm_end else { return }
        mmuInvalidateRangeStart(vmMM(v), floor, floor + Kernel.pudSize)
        hugePMDUnshare(v, floor)
        mmuInvalidateRangeEnd(vmMM(v), floor, floor + Kernel.pudSize)
    }
}
