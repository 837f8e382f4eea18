import CShims

/// The large-page statements of the trace language on the model (THP and
/// mTHP of anonymous memory, MADV_COLLAPSE; hugetlb in Machine+Hugetlb.swift).
extension Machine {
    /// `mmap` with MAP_NORESERVE: VM_NORESERVE, no VM_ACCOUNT; for a hugetlb
    /// kind, no reservation (hugetlb_reserve_pages reserves nothing).
    public func mmap(_ name: String, addr: UInt64, pages: UInt64, prot: Prot, kind: MappingKind,
                     noreserve: Bool) -> OpResult {
        guard let m = mmOf(name) else { return .errno(.ESRCH) }
        if kind.isHugetlb {
            if let e = k.hugetlbMmap(m, addr: addr, pages: pages, prot: VM.fromProt(prot), shared: kind.isShared,
                                     noreserve: noreserve) { return .errno(e) }
            return .ok
        }
        var f = FileID.none
        if let name = kind.file {
            guard let fi = fileByName[name] else { return .errno(.EINVAL) }
            f = FileID(fi)
        }
        if let e = k.doMmap(m, addr: addr, pages: pages, prot: VM.fromProt(prot), shared: kind.isShared,
                            file: f, pgoff: kind.pgoff, noreserve: noreserve) { return .errno(e) }
        return .ok
    }

    /// `madvise ADDR PAGES hugepage|nohugepage` (MADV_HUGEPAGE / MADV_NOHUGEPAGE).
    public func madviseHugepage(_ name: String, addr: UInt64, pages: UInt64, hugepage: Bool) -> OpResult {
        guard let m = mmOf(name) else { return .errno(.ESRCH) }
        // On hugetlb VMAs as on others (hugepage_madvise sets the flags, then
        // vma_modify_flags with hugetlb_vm_op_split's alignment rule).
        if let e = k.doMadviseHugepage(m, start: addr, end: addr + pages << PAGE_SHIFT, hugepage: hugepage) {
            return .errno(e)
        }
        return .ok
    }

    /// `madvise ADDR PAGES collapse` (MADV_COLLAPSE): every aligned 2 MiB
    /// range of private anonymous memory in the range is collapsed into a new
    /// PMD-mapped THP, whatever the THP settings (madvise_collapse). EINVAL
    /// on a VMA that refuses it (VM_NOHUGEPAGE, shared or file memory, no
    /// aligned 2 MiB range, no anon_vma yet) and when a range cannot be
    /// collapsed for good; EAGAIN when a page has extra references; ENOMEM
    /// when no 2 MiB run of frames is left; ENOMEM for a hole in the range.
    public func madviseCollapse(_ name: String, addr: UInt64, pages: UInt64) -> OpResult {
        guard let m = mmOf(name) else { return .errno(.ESRCH) }
        // A hugetlb VMA is EINVAL (thp_vma_allowable_order: VM_NO_KHUGEPAGED).
        if let e = k.doMadviseCollapse(m, start: addr, end: addr + pages << PAGE_SHIFT) { return .errno(e) }
        return .ok
    }

    /// `split ADDR PAGES`: split_huge_pages_pid() over the range; a folio
    /// that cannot be split stays whole. Always ok.
    public func split(_ name: String, addr: UInt64, pages: UInt64) -> OpResult {
        guard let m = mmOf(name) else { return .errno(.ESRCH) }
        k.splitFoliosInRange(m, addr, addr + pages << PAGE_SHIFT)
        return .ok
    }

    /// `thp shrink`: the deferred-split shrinker (deferred_split_scan).
    public func thpShrink() {
        k.deferredSplitScan()
    }

    /// /proc/vmstat's THP counters as this machine counts them.
    public var thpStats: [(name: String, value: UInt64)] {
        let h = k.header.pointee
        return [("thp_fault_alloc", h.thp_fault_alloc), ("thp_fault_fallback", h.thp_fault_fallback),
                ("thp_split_pmd", h.thp_split_pmd), ("thp_split_page", h.thp_split_page),
                ("mthp_anon_fault_alloc", h.mthp_fault_alloc),
                ("thp_deferred_split_queue", UInt64(h.deferred_split_len))]
    }
}
