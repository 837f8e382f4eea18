import CShims

/// mprotect of hugetlb VMAs (mm/mprotect.c change_protection ->
/// mm/hugetlb.c hugetlb_change_protection). The VMA side is the ordinary
/// one (Kernel.doMprotect, mprotect_fixup, vma_modify_flags, as for the
/// flag-changing madvise advice) with the hugetlb rules of mm/vma.c: a
/// split at an address that is not 2 MiB aligned is EINVAL
/// (hugetlb_vm_op_split, checked by __split_vma before anything changes),
/// a split unshares the PUD range it cuts (hugetlb_split), and a hugetlb
/// VMA never merges (VM_DONTEXPAND is VM_SPECIAL): two pieces of one
/// mapping given the same protection again stay two VMAs.
extension Kernel {
    /// hugetlb_vm_op_split() (vm_ops->may_split): EINVAL at an address
    /// that is not huge-page aligned; nil when the split may go on (the
    /// caller then unshares the PUD range it cuts: hugetlb_split()).
    func hugetlbMaySplit(_ v: VMAID, _ addr: UInt64) -> Errno? {
        guard isHugetlbVMA(v) else { return nil }
        if addr & ~Kernel.hpageMask != 0 { return .EINVAL }
        return nil
    }

    /// hugetlb_change_protection(): every 2 MiB entry of [start, end) of
    /// hugetlb VMA `v` takes the VMA's new protection.
    /// - A PMD table shared with other mms is unshared instead
    ///   (huge_pmd_unshare: this mm's PUD entry goes, the other sharers keep
    ///   the table; the walk goes on after the PUD range), so the range's
    ///   pages fault back in later under the new protection.
    /// - No PMD table: the rest of the PUD range is skipped
    ///   (hugetlb_walk() NULL, `address |= last_addr_mask`).
    /// - A migration entry that allows writing becomes a read one
    ///   (read-exclusive for an anonymous folio), rebuilt from the swap
    ///   entry (its soft-dirty bit is not kept).
    /// - A present entry (PROT_NONE included): huge_pte_modify() keeps the
    ///   frame, accessed, dirty and soft-dirty bits and takes the rest,
    ///   the write bit included, from the new vm_page_prot: a shared
    ///   writable mapping's entries become writable (hugetlbfs does no
    ///   dirty tracking: vma_wants_writenotify() is false), a private one's
    ///   read-only whatever the folio (the next write runs hugetlb_wp:
    ///   reuse or copy). MM_CP_TRY_CHANGE_WRITABLE is not looked at.
    /// The notifier range is widened over what a shared table could map
    /// (adjust_range_if_pmd_sharing_possible). Returns the pages changed
    /// (entries and unshared tables, each counted as a huge page).
    @discardableResult
    func hugetlbChangeProtection(_ v: VMAID, _ start: UInt64, _ end: UInt64) -> Int {
        let m = vmMM(v)
        let root = mm(m).pointee.pgd
        let flags = vma(v).pointee.vm_flags
        let prot = PTE.pageProt(vmFlags: flags)
        var rstart = start, rend = end
        adjustRangeIfPMDSharingPossible(v, &rstart, &rend)
        mmuInvalidateRangeStart(m, rstart, rend)
        defer { mmuInvalidateRangeEnd(m, rstart, rend) }
        let lastAddrMask = Kernel.pudSize - Kernel.hpageSize  // hugetlb_mask_last_page()
        var pages = 0
        var flushes = 0
        var addr = start & Kernel.hpageMask
        while addr < end {
            defer { addr += Kernel.hpageSize }
            guard let pmd = pmdSlot(root: root, key: addr) else { addr |= lastAddrMask; continue }
            if hugePMDUnshare(v, addr) {
                pages += 1
                addr |= lastAddrMask
                continue
            }
            let e = pmd.pointee
            if e == 0 { continue }
            if PTE.isHWPoisonEntry(e) { continue }  // nothing to do
            if PTE.isPMDMigrationEntry(e) {
                if PTE.swpType(e) == PTE.swpMigrationWrite {
                    let anon = pageIsAnon(PTE.swpOffsetPFN(e))
                    pmd.pointee = PTE.swpEntry(type: anon ? PTE.swpMigrationReadExclusive : PTE.swpMigrationRead,
                                               offset: PTE.swpOffset(e))
                    pages += 1
                }
                continue
            }
            guard PTE.isPMDLeaf(e) else { continue }
            // huge_pte_modify() (pte_modify's _PAGE_CHG_MASK) and
            // arch_make_huge_pte() (_PAGE_PSE).
            let chg = PTE.pfnMask | PTE.accessed | PTE.dirty | PTE.softDirty | PTE.special
            pmd.pointee = (e & chg) | (prot & ~chg) | PTE.pse
            pages += 1
            flushes += 1  // tlb_remove_huge_tlb_entry()
        }
        // tlb_flush_mmu_tlbonly(), huge_pmd_unshare_flush(): the unshares
        // counted their own flushes (Kernel.hugePMDUnshare).
        if flushes > 0 { flushTLBPage() }
        return pages
    }
}
