import CShims

/// madvise() (mm/madvise.c): the walk over the VMAs of the range, and each
/// advice of the trace language.
extension Kernel {
    /// madvise_walk_vmas(): applies `advice` to each VMA piece of
    /// [start, end); holes make the call return ENOMEM after the rest was
    /// done; an error from a piece stops the walk.
    func doMadvise(_ m: MMID, start: UInt64, end: UInt64, advice: Advice) -> Errno? {
        madviseWalkVMAs(m, start: start, end: end) { v, prev, start, end in
            madviseVMABehavior(m, v, prev: &prev, start: start, end: end, advice: advice)
        }
    }

    /// MADV_HUGEPAGE / MADV_NOHUGEPAGE (hugepage_madvise(), then
    /// madvise_update_vma()): VM_HUGEPAGE set and VM_NOHUGEPAGE cleared, or
    /// the reverse, splitting and merging VMAs like any flag.
    func doMadviseHugepage(_ m: MMID, start: UInt64, end: UInt64, hugepage: Bool) -> Errno? {
        madviseWalkVMAs(m, start: start, end: end) { v, prev, start, end in
            let flags = vma(v).pointee.vm_flags
            let newflags = hugepage ? (flags & ~VM.nohugepage) | VM.hugepage : (flags & ~VM.hugepage) | VM.nohugepage
            if newflags == flags { prev = v; return .success(()) }
            return vmaModify(v, prev: prev, start: start, end: end, flags: newflags).map { prev = $0 }
        }
    }

    /// madvise_walk_vmas(): `behavior` on each VMA piece of [start, end).
    func madviseWalkVMAs(_ m: MMID, start: UInt64, end: UInt64,
                         _ behavior: (VMAID, inout VMAID, UInt64, UInt64) -> Result<Void, Errno>) -> Errno? {
        var v = findVMA(m, start)
        var prev = VMAID.none
        if !v.isNone { prev = vma(v).pointee.vm_start < start ? v : prevVMA(v) }
        var unmappedError: Errno? = nil
        var start = start
        while true {
            guard !v.isNone else { return .ENOMEM }
            if start < vma(v).pointee.vm_start {
                unmappedError = .ENOMEM
                start = vma(v).pointee.vm_start
                if start >= end { break }
            }
            let tmp = min(vma(v).pointee.vm_end, end)
            switch behavior(v, &prev, start, tmp) {
            case .failure(let e): return e
            case .success: break
            }
            start = tmp
            if !prev.isNone && start < vma(prev).pointee.vm_end { start = vma(prev).pointee.vm_end }
            if start >= end { break }
            v = findVMA(m, !prev.isNone ? vma(prev).pointee.vm_end : start)
        }
        return unmappedError
    }

    /// madvise_vma_behavior()
    func madviseVMABehavior(_ m: MMID, _ v: VMAID, prev: inout VMAID, start: UInt64, end: UInt64,
                            advice: Advice) -> Result<Void, Errno> {
        let flags = vma(v).pointee.vm_flags
        switch advice {
        case .dontneed, .free:
            // madvise_dontneed_free_valid_vma()
            if flags & (VM.locked | VM.pfnmap | VM.hugetlb) != 0 { return .failure(.EINVAL) }
            if advice == .dontneed {
                zapPTERange(v, start, end)  // zap_page_range_single()
                // CONFIG_PT_RECLAIM (this 6.18 has it): MADV_DONTNEED over at
                // least a PMD's span frees each PTE table it leaves empty
                // (zap_details.reclaim_pt, try_to_free_pte()), so a later
                // fault there finds the PMD none (a THP may come).
                if end - start >= Kernel.pmdSize {
                    let root = mm(vmMM(v)).pointee.pgd
                    // (Only the PMD entries that exist: a none one has no table to free.)
                    var a = nextPMDPresent(root: root, from: start & ~(Kernel.pmdSize - 1), end: end)
                    while a < end {
                        freeEmptyPTETable(root: root, key: a)
                        a = nextPMDPresent(root: root, from: (a | (Kernel.pmdSize - 1)) + 1, end: end)
                    }
                }
            } else {
                // madvise_free_single_vma(): anonymous VMAs only.
                if vma(v).pointee.file != 0 { return .failure(.EINVAL) }
                madviseFreePTERange(v, start, end)
            }
            prev = v
            return .success(())
        case .cold, .pageout:
            if flags & (VM.locked | VM.pfnmap | VM.hugetlb) != 0 { return .failure(.EINVAL) }
            madviseColdOrPageout(v, start, end, pageout: advice == .pageout)
            prev = v
            return .success(())
        case .mergeable, .unmergeable:
            // ksm_madvise(), then madvise_update_vma() with the new flags.
            var newflags = flags
            if let e = ksmMadvise(v, start: start, end: end, advice: advice, flags: &newflags) { return .failure(e) }
            if newflags == flags { prev = v; return .success(()) }
            return vmaModify(v, prev: prev, start: start, end: end, flags: newflags).map { prev = $0 }
        case .dontfork, .dofork, .wipeonfork, .keeponfork:
            var newflags = flags
            switch advice {
            case .dontfork:
                if flags & VM.io != 0 { return .failure(.EINVAL) }
                newflags |= VM.dontcopy
            case .dofork:
                if flags & VM.io != 0 { return .failure(.EINVAL) }
                newflags &= ~VM.dontcopy
            case .wipeonfork:
                // MADV_WIPEONFORK is only supported on anonymous memory.
                if vma(v).pointee.file != 0 || flags & VM.shared != 0 { return .failure(.EINVAL) }
                newflags |= VM.wipeonfork
            default:
                newflags &= ~VM.wipeonfork
            }
            if newflags == flags { prev = v; return .success(()) }
            // madvise_update_vma()
            return vmaModify(v, prev: prev, start: start, end: end, flags: newflags).map { prev = $0 }
        }
    }

    /// madvise_free_pte_range(): exclusively mapped anonymous pages become
    /// lazily freeable: clean, old, not swap-backed. Reclaim may then drop
    /// them without writing; a later write makes them swap-backed again.
    /// Swap entries in the range are freed.
    ///
    /// A large folio (6.18): one this process maps alone that the range
    /// covers in part is split first (madvise_free_huge_pmd for a PMD, the
    /// PTE batch otherwise), then its pages go as small ones; one covered
    /// whole is made lazyfree as one folio (clean, its PTEs or PMD old and
    /// clean); a shared one is skipped.
    func madviseFreePTERange(_ v: VMAID, _ start: UInt64, _ end: UInt64) {
        let m = vmMM(v)
        let root = mm(m).pointee.pgd
        var skipUntil: UInt64 = 0
        func pte(_ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> Bool {
            if addr < skipUntil { return true }
            var e = slot.pointee
            guard e != 0 else { return true }
            if PTE.isPresent(e), case let pfn0 = vmNormalPage(e), !pfn0.isNone, folioIsLarge(folioOf(pfn0)) {
                let head = folioOf(pfn0)
                let nrPages = folioNrPages(head)
                let nr = madviseFolioPTEBatch(root, addr, end, pfn0)
                if nr < nrPages {
                    if !madviseSplitPartial(head) {
                        skipUntil = addr + UInt64(nr) << PAGE_SHIFT
                        return true
                    }
                    e = slot.pointee  // a small folio now (or the zero page)
                    guard e != 0 else { return true }
                } else {
                    skipUntil = addr + UInt64(nr) << PAGE_SHIFT
                    guard pageIsAnon(head) else { return true }
                    let h = page(head)
                    if h.pointee.flags & (PG.swapcache | PG.dirty) != 0 {
                        // Fully mapped here: exclusive when its mapcount is its size.
                        guard folioMapcount(head) == Int(nrPages), h.pointee.flags & PG.swapcache == 0 else { return true }
                        h.pointee.flags &= ~PG.dirty
                    }
                    for i in 0..<UInt64(nr) { leafSlot(root: root, key: addr + i << PAGE_SHIFT)!.pointee &= ~(PTE.accessed | PTE.dirty) }
                    h.pointee.flags &= ~(PG.swapbacked | PG.active | PG.referenced)  // folio_mark_lazyfree()
                    return true
                }
            }
            if !PTE.isPresent(e) {
                if PTE.isRealSwapEntry(e) {
                    slot.pointee = 0
                    addMMCounter(m, .swapents, -1)
                    swapFree(e)
                }
                return true
            }
            let pfn = vmNormalPage(e)
            guard !pfn.isNone, pageIsAnon(pfn) else { return true }
            let p = page(pfn)
            // Only a dirty or swap-cache folio must be ours alone: its dirty
            // state is shared. A clean one shared after fork is marked all the same.
            if p.pointee.flags & (PG.swapcache | PG.dirty) != 0 {
                if pageMapcount(pfn) != 1 { return true }
                if p.pointee.flags & PG.swapcache != 0 { folioFreeSwap(pfn) }
                p.pointee.flags &= ~PG.dirty
            }
            slot.pointee = e & ~(PTE.accessed | PTE.dirty)
            p.pointee.flags &= ~(PG.swapbacked | PG.active | PG.referenced)  // folio_mark_lazyfree()
            return true
        }
        walkLeaves(root: root, start: start, end: end, pmd: { haddr, pmd in
            // madvise_free_huge_pmd()
            guard let head = madviseWholePMD(root, haddr, pmd, start, end, pte) else { return true }
            page(head).pointee.flags &= ~(PG.dirty | PG.swapbacked | PG.active | PG.referenced)  // folio_mark_lazyfree()
            pmd.pointee &= ~(PTE.accessed | PTE.dirty)  // pmd_mkold(pmd_mkclean())
            return true
        }, pte)
    }

    /// madvise_cold_or_pageout_pte_range(): pages mapped by this process
    /// only (folio_maybe_mapped_shared() skips the rest) are aged; with
    /// pageout they are then reclaimed (reclaim_pages()).
    ///
    /// A large folio (6.18): one mapped by this process alone
    /// (folio_maybe_mapped_shared false) that the range covers only in part
    /// is split first, then its pages go as small ones; one the range covers
    /// whole is aged as one folio and, for pageout, reclaimed whole
    /// (reclaim_pages: without a swap cluster for it, shrink_folio_list
    /// splits it and tries the pages). A PMD-mapped THP the same, at the PMD.
    func madviseColdOrPageout(_ v: VMAID, _ start: UInt64, _ end: UInt64, pageout: Bool) {
        let m = vmMM(v)
        let root = mm(m).pointee.pgd
        var folios: [PFN] = []  // reclaim_pages()'s list of whole large folios
        var skipUntil: UInt64 = 0
        func pte(_ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> Bool {
            if addr < skipUntil { return true }
            guard PTE.isPresent(slot.pointee) else { return true }
            var pfn = vmNormalPage(slot.pointee)
            guard !pfn.isNone else { return true }
            let head = folioOf(pfn)
            if _slowPath(folioIsLarge(head)) {
                let nrPages = folioNrPages(head)
                let nr = madviseFolioPTEBatch(root, addr, end, pfn)
                if nr < nrPages {
                    if !madviseSplitPartial(head) {
                        skipUntil = addr + UInt64(nr) << PAGE_SHIFT
                        return true
                    }
                    // Split: this page is a small folio now (or the zero page).
                    guard PTE.isPresent(slot.pointee) else { return true }
                    pfn = vmNormalPage(slot.pointee)
                    guard !pfn.isNone else { return true }
                } else {
                    skipUntil = addr + UInt64(nr) << PAGE_SHIFT
                    // Fully mapped here: exclusive when its mapcount is its size.
                    guard folioMapcount(head) == Int(nrPages) else { return true }
                    if !pageout {
                        for i in 0..<UInt64(nr) { leafSlot(root: root, key: addr + i << PAGE_SHIFT)!.pointee &= ~PTE.accessed }
                    }
                    page(head).pointee.flags &= ~(PG.referenced | PG.active | PG.young)
                    if pageout { folios.append(head) }
                    return true
                }
            }
            guard pageMapcount(pfn) == 1 else { return true }
            slot.pointee &= ~PTE.accessed  // ptep_test_and_clear_young()
            page(pfn).pointee.flags &= ~(PG.referenced | PG.active)
            if pageout { _ = reclaimPage(pfn) }
            return true
        }
        walkLeaves(root: root, start: start, end: end, pmd: { haddr, pmd in
            guard let head = madviseWholePMD(root, haddr, pmd, start, end, pte) else { return true }
            if !pageout { pmd.pointee &= ~PTE.accessed }  // pmd_mkold()
            page(head).pointee.flags &= ~(PG.referenced | PG.active | PG.young)
            if pageout { folios.append(head) }
            return true
        }, pte)
        for head in folios where folioIsLarge(head) { _ = reclaimFolio(head) }
    }

    /// madvise_folio_pte_batch(): how many PTEs from `addr` (inside
    /// [addr, end)) map `pfn` and the next pages of its large folio.
    func madviseFolioPTEBatch(_ root: UInt32, _ addr: UInt64, _ end: UInt64, _ pfn: PFN) -> UInt32 {
        let head = folioOf(pfn)
        let sub = UInt32(head.distance(to: pfn))
        let nrPages = folioNrPages(head)
        var nr: UInt32 = 1
        while sub + nr < nrPages, addr + UInt64(nr) << PAGE_SHIFT < end,
              let s = leafSlot(root: root, key: addr + UInt64(nr) << PAGE_SHIFT),
              PTE.isPresent(s.pointee), PTE.pfn(s.pointee) == pfn.advanced(by: nr) { nr += 1 }
        return nr
    }

    /// A PMD leaf met by MADV_FREE / COLD / PAGEOUT (madvise_free_huge_pmd,
    /// madvise_cold_or_pageout_pte_range): the huge zero page and a folio
    /// another process may map are left alone; one the range covers in part
    /// is split (split_folio) and its pages in the range go to `pte`
    /// ("regular_folio"). The folio's head when the range covers it whole:
    /// the advice then takes it as one.
    func madviseWholePMD(_ root: UInt32, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>, _ start: UInt64, _ end: UInt64,
                         _ pte: (UInt64, UnsafeMutablePointer<UInt64>) -> Bool) -> PFN? {
        // A PMD migration entry is skipped (madvise_free_huge_pmd:
        // !pmd_present; madvise_cold_or_pageout_pte_range: not trans_huge,
        // no PTE table).
        guard PTE.isPMDLeaf(pmd.pointee) else { return nil }
        let head = PTE.pfn(pmd.pointee)
        guard head != hugeZeroPFN, !folioMaybeMappedShared(head) else { return nil }
        if start > haddr || end < haddr + Kernel.pmdSize {
            if splitFolio(head) { walkLeaves(root: root, start: max(start, haddr), end: min(end, haddr + Kernel.pmdSize), pte) }
            return nil
        }
        return head
    }

    /// A large folio the advice covers in part: split it, unless another
    /// process may map it (folio_maybe_mapped_shared) or it cannot be split.
    func madviseSplitPartial(_ head: PFN) -> Bool {
        !folioMaybeMappedShared(head) && splitFolio(head)
    }

}
