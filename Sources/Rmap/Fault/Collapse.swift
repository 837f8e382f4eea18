import CShims

/// The results of khugepaged's scan and collapse (enum scan_result in
/// mm/khugepaged.c) that the model can reach. 6.18 still tells a missing
/// PMD table (SCAN_PMD_NULL) from a none PMD entry (SCAN_PMD_NONE); later
/// kernels merge the two into SCAN_NO_PTE_TABLE.
enum CollapseResult: Equatable {
    case succeed          // SCAN_SUCCEED
    case fail             // SCAN_FAIL
    case pmdNull          // SCAN_PMD_NULL: no PMD table on the way
    case pmdNone          // SCAN_PMD_NONE: a none PMD entry
    case pmdMapped        // SCAN_PMD_MAPPED: already a PMD leaf
    case pteNonPresent    // SCAN_PTE_NON_PRESENT
    case pageNull         // SCAN_PAGE_NULL: no normal page behind a present PTE
    case pageAnon         // SCAN_PAGE_ANON: a page that is not anonymous
    case pageCount        // SCAN_PAGE_COUNT: references beyond the mappings
    case allocHugePageFail  // SCAN_ALLOC_HUGE_PAGE_FAIL

    /// madvise_collapse_errno().
    var errno: Errno {
        switch self {
        case .allocHugePageFail: return .ENOMEM
        case .pageCount: return .EAGAIN
        default: return .EINVAL
        }
    }

    /// The results madvise_collapse() goes on after ("Whitelisted set of
    /// results where continuing OK"); any other failure ends the loop.
    var continues: Bool {
        switch self {
        case .pmdNull, .pteNonPresent, .pageNull, .pageCount: return true
        default: return false
        }
    }
}

/// MADV_COLLAPSE of anonymous memory (mm/khugepaged.c as 6.18 runs it:
/// madvise_collapse, hpage_collapse_scan_pmd, collapse_huge_page,
/// __collapse_huge_page_swapin, __collapse_huge_page_isolate,
/// __collapse_huge_page_copy and _copy_succeeded). File and shmem collapse
/// (hpage_collapse_scan_file, collapse_file, collapse_pte_mapped_thp) is
/// not modelled: large page-cache folios are not part of the model.
extension Kernel {
    /// `madvise ADDR PAGES collapse`: madvise_walk_vmas() with
    /// madvise_collapse() on each VMA piece; an error from a piece stops the
    /// walk, a hole gives ENOMEM after the rest was done.
    func doMadviseCollapse(_ m: MMID, start: UInt64, end: UInt64) -> Errno? {
        madviseWalkVMAs(m, start: start, end: end) { v, prev, start, end in
            prev = v
            if let e = madviseCollapse(v, start: start, end: end) { return .failure(e) }
            return .success(())
        }
    }

    /// thp_vma_allowable_order(vma, vm_flags, TVA_FORCED_COLLAPSE, PMD_ORDER)
    /// (__thp_vma_allowable_orders) for the model's VMAs: the sysfs modes are
    /// ignored; private anonymous memory only (shmem and file THP are not
    /// modelled); not VM_NOHUGEPAGE (vma_thp_disabled), not VM_NO_KHUGEPAGED
    /// (VM_SPECIAL, VM_HUGETLB); some aligned 2 MiB range inside the VMA
    /// (thp_vma_suitable_order at vm_end - 2 MiB: no pgoff rule for
    /// anonymous memory); and an anon_vma (none before the first write fault).
    func thpVMAForcedCollapseAllowed(_ v: VMAID) -> Bool {
        let p = vma(v).pointee
        guard p.file == 0, p.vm_flags & VM.shared == 0 else { return false }
        if p.vm_flags & VM.nohugepage != 0 { return false }
        if p.vm_flags & (VM.io | VM.dontexpand | VM.pfnmap | VM.mixedmap | VM.hugetlb) != 0 { return false }
        guard p.vm_end - p.vm_start >= Kernel.pmdSize else { return false }
        let haddr = (p.vm_end - Kernel.pmdSize) & ~(Kernel.pmdSize - 1)
        guard haddr >= p.vm_start else { return false }
        return p.anon_vma != 0
    }

    /// madvise_collapse() on [start, end) inside VMA `v`: every aligned
    /// 2 MiB range in it is collapsed in turn. nil when every range is now
    /// PMD-mapped; else the errno of the last failure. The loop's count of
    /// ranges is unsigned in the kernel: a piece inside one aligned 2 MiB
    /// block that holds no boundary (hend below hstart) is EINVAL.
    func madviseCollapse(_ v: VMAID, start: UInt64, end: UInt64) -> Errno? {
        guard thpVMAForcedCollapseAllowed(v) else { return .EINVAL }
        let m = vmMM(v)
        let hstart = (start + Kernel.pmdSize - 1) & ~(Kernel.pmdSize - 1)
        let hend = end & ~(Kernel.pmdSize - 1)
        var lastFail = CollapseResult.fail
        var thps: UInt64 = 0
        var addr = hstart
        while addr < hend {
            let r = hpageCollapseScanPMD(m, v, addr)
            if r == .succeed || r == .pmdMapped {
                thps += 1
            } else {
                lastFail = r
                if !r.continues { break }
            }
            addr += Kernel.pmdSize
        }
        return thps == (hend &- hstart) >> 21 ? nil : lastFail.errno
    }

    /// folio_expected_ref_count() of an anonymous folio: one reference per
    /// mapping, and one per page from the swap cache.
    @inline(__always) func folioExpectedRefCount(_ head: PFN) -> Int {
        var n = folioMapcount(head)
        if page(head).pointee.flags & PG.swapcache != 0 { n += Int(folioNrPages(head)) }
        return n
    }

    /// hpage_collapse_scan_pmd() with cc->is_khugepaged false: the
    /// max_ptes_none/swap/shared limits and the young-page rule do not apply.
    /// A none or zero-page PTE is fine, a swap entry is counted for the
    /// swap-in, a page that is not anonymous ends the scan (KSM pages are
    /// anonymous), a folio with references beyond its mappings is
    /// SCAN_PAGE_COUNT. A clean scan goes on to collapse_huge_page().
    func hpageCollapseScanPMD(_ m: MMID, _ v: VMAID, _ haddr: UInt64) -> CollapseResult {
        // find_pmd_or_thp_or_none()
        guard let pmd = pmdSlot(root: mm(m).pointee.pgd, key: haddr) else { return .pmdNull }
        let e = pmd.pointee
        if e == 0 { return .pmdNone }
        if PTE.isPMDMigrationEntry(e) { return .pmdNull }  // check_pmd_state(): !pmd_present
        if PTE.isPMDLeaf(e) { return .pmdMapped }  // a THP or the huge zero page
        let ptes = ptPage(PTE.tablePage(e))
        var unmapped = 0
        for i in 0..<Int(RMAP_PMD_NR) {
            let pte = ptes[i]
            if pte == 0 || (PTE.isPresent(pte) && PTE.pfn(pte) == zeroPFN) { continue }  // pte_none_or_zero
            if !PTE.isPresent(pte) { unmapped += 1; continue }
            let pfn = vmNormalPage(pte)
            if pfn.isNone { return .pageNull }
            if !pageIsAnon(pfn) { return .pageAnon }
            let head = folioOf(pfn)
            if folioExpectedRefCount(head) != Int(page(head).pointee.refcount) { return .pageCount }
        }
        return collapseHugePage(m, v, haddr, unmapped: unmapped)
    }

    /// collapse_huge_page(): a new PMD-sized folio (alloc_charge_folio:
    /// none is SCAN_ALLOC_HUGE_PAGE_FAIL), the swap entries swapped in, the
    /// PMD cleared (pmdp_collapse_flush, inside an MMU-notifier
    /// invalidation), the pages rechecked (__collapse_huge_page_isolate: a
    /// failure puts the PTE table back), copied, and the folio mapped by the
    /// PMD with the emptied PTE table deposited.
    func collapseHugePage(_ m: MMID, _ v: VMAID, _ haddr: UInt64, unmapped: Int) -> CollapseResult {
        let root = mm(m).pointee.pgd
        let head = allocFolio(order: RMAP_PMD_ORDER)
        if head.isNone { return .allocHugePageFail }
        // From here the folio is ours: folio_put() on every failure.
        if unmapped > 0 {
            let r = collapseHugePageSwapin(m, v, haddr)
            if r != .succeed { putPage(head); return r }
        }
        // hugepage_vma_revalidate() and check_pmd_still_valid(): nothing
        // runs concurrently in the model, but the swap-in may have changed
        // the PMD (a device-private page migrated back, for instance).
        guard let pmd = pmdSlot(root: root, key: haddr), PTE.isPMDTable(pmd.pointee) else {
            putPage(head)
            return .fail
        }
        let pgtable = PTE.tablePage(pmd.pointee)
        let ptes = ptPage(pgtable)
        mmuInvalidateRangeStart(m, haddr, haddr + Kernel.pmdSize)
        mmuInvalidateRangeEnd(m, haddr, haddr + Kernel.pmdSize)
        let r = collapseHugePageIsolate(ptes)
        if r != .succeed {
            putPage(head)  // pmd_populate(): the PTE table is back, nothing else changed
            return r
        }
        // __collapse_huge_page_copy(): each page's contents; zero for a
        // none or zero-page PTE (clear_user_highpage).
        for i in 0..<Int(RMAP_PMD_NR) {
            let pte = ptes[i]
            let src = pte == 0 ? PFN.none : vmNormalPage(pte)
            page(head.advanced(by: i)).pointee.content = src.isNone ? 0 : page(src).pointee.content
        }
        collapseHugePageCopySucceeded(m, v, haddr, ptes)
        // pgtable_trans_huge_deposit() of the emptied PTE table, then the PMD
        // leaf (map_anon_folio_pmd_nopf: folio_add_new_anon_rmap with
        // RMAP_EXCLUSIVE, dirty, writable when the VMA is; no MM counter,
        // already adjusted above; deferred_split_folio(folio, false) queues
        // nothing with shrink_underused 0).
        let table = pmdTable(root: root, key: haddr)
        thpNotePMDLeaf()
        ptDesc(table).pointee.used -= 1  // the PMD no longer points to a table
        depositPTETable(pmdTable: table, pgtable)
        folioAddNewAnonRmapLarge(head, vma: v, address: haddr)
        let flags = vma(v).pointee.vm_flags
        var leaf = PTE.make(pfn: head, prot: PTE.pageProt(vmFlags: flags)) | PTE.pse | PTE.dirty
        if flags & VM.write != 0 { leaf |= PTE.rw }
        pmd.pointee = leaf
        if _slowPath(hooks.reverseMapOn) {
            for i in 0..<RMAP_PMD_NR { hooks.reverseMap!.anonAdded(self, pfn: head.advanced(by: i), vma: v, address: haddr + UInt64(i) << PAGE_SHIFT) }
        }
        return .succeed
    }

    /// __collapse_huge_page_swapin(): do_swap_page() on every non-present
    /// entry of the range (6.18 swaps in for a PMD collapse; MADV_COLLAPSE
    /// has no max_ptes_swap limit). A fault that fails is SCAN_FAIL.
    func collapseHugePageSwapin(_ m: MMID, _ v: VMAID, _ haddr: UInt64) -> CollapseResult {
        let root = mm(m).pointee.pgd
        for i in 0..<UInt64(RMAP_PMD_NR) {
            let addr = haddr + i << PAGE_SHIFT
            guard let slot = leafSlot(root: root, key: addr) else { return .pmdNull }
            let e = slot.pointee
            if e == 0 || PTE.isPresent(e) { continue }
            if doSwapPage(m, v, addr, slot, write: false) != .ok { return .fail }
        }
        return .succeed
    }

    /// __collapse_huge_page_isolate() with cc->is_khugepaged false: every
    /// present PTE must still map a normal anonymous page whose folio has no
    /// references beyond its mappings (each large folio checked once).
    /// Isolating from the LRU takes and gives back a reference: no net change.
    func collapseHugePageIsolate(_ ptes: UnsafeMutablePointer<UInt64>) -> CollapseResult {
        var seen: Set<PFN> = []
        for i in 0..<Int(RMAP_PMD_NR) {
            let pte = ptes[i]
            if pte == 0 || (PTE.isPresent(pte) && PTE.pfn(pte) == zeroPFN) { continue }
            if !PTE.isPresent(pte) { return .pteNonPresent }
            let pfn = vmNormalPage(pte)
            if pfn.isNone { return .pageNull }
            let head = folioOf(pfn)
            if folioIsLarge(head) && !seen.insert(head).inserted { continue }
            if folioExpectedRefCount(head) != Int(page(head).pointee.refcount) { return .pageCount }
        }
        return .succeed
    }

    /// __collapse_huge_page_copy_succeeded(): a none or zero-page PTE adds
    /// one page to MM_ANONPAGES (the new folio maps it now); a zero-page PTE
    /// is cleared. A present PTE is cleared and its page loses this mapping
    /// and its reference (folio_remove_rmap_ptes, free_swap_cache,
    /// folio_put_refs), a run of PTEs of one large folio at once
    /// (folio_pte_batch); MM_ANONPAGES keeps the page, which the new folio
    /// now holds. A page another process maps stays mapped there.
    func collapseHugePageCopySucceeded(_ m: MMID, _ v: VMAID, _ haddr: UInt64, _ ptes: UnsafeMutablePointer<UInt64>) {
        var i = 0
        let n = Int(RMAP_PMD_NR)
        while i < n {
            let pte = ptes[i]
            if pte == 0 || (PTE.isPresent(pte) && PTE.pfn(pte) == zeroPFN) {
                addMMCounter(m, .anon, 1)
                ptes[i] = 0
                i += 1
                continue
            }
            let pfn = vmNormalPage(pte)
            let head = folioOf(pfn)
            var nr = 1
            if folioIsLarge(head) {
                // folio_pte_batch(): consecutive pages of the same folio.
                let last = head.advanced(by: folioNrPages(head))
                while i + nr < n, PTE.isPresent(ptes[i + nr]), ptes[i + nr] & PTE.special == 0,
                      PTE.pfn(ptes[i + nr]) == pfn.advanced(by: nr), pfn.advanced(by: nr) < last {
                    nr += 1
                }
            }
            for j in 0..<nr { ptes[i + j] = 0 }  // clear_ptes()
            if folioIsLarge(head) {
                folioRemoveRmapPTEs(pfn, UInt32(nr), vma: v)
            } else {
                folioRemoveRmapPTE(pfn, vma: v)
            }
            // free_swap_cache(): an unmapped folio whose swap slot nobody
            // else holds leaves the swap cache.
            if page(head).pointee.flags & PG.swapcache != 0 && folioMapcount(head) == 0 { folioFreeSwap(head) }
            putPages(pfn, Int32(nr))
            i += nr
        }
    }
}
