import CShims

/// Tearing mappings down (mm/memory.c zap_*_range, mm/vma.c do_vmi_munmap,
/// mm/mmap.c exit_mmap).
extension Kernel {
    /// zap_pmd_range() / zap_pte_range(): clears every PTE of `v` in
    /// [start, end), one PTE table at a time, the MM counters changed once
    /// per table (add_mm_rss_vec). A present entry gives its dirty bit to the
    /// page (set_page_dirty), loses its mapcount, MM counter and reference; a
    /// swap entry frees its slot; a migration entry drops the MM counter it
    /// kept and the page reference the model lets it hold
    /// (Rmap/Migrate.swift). Secondary MMUs are told around it
    /// (mmu_notifier_invalidate_range_start/end of unmap_vmas and
    /// zap_page_range_single).
    func zapPTERange(_ v: VMAID, _ start: UInt64, _ end: UInt64) {
        if _slowPath(isHugetlbVMA(v)) { return unmapHugepageRange(v, start, end) }
        let m = vmMM(v)
        mmuInvalidateRangeStart(m, start, end)
        defer { mmuInvalidateRangeEnd(m, start, end) }
        // zap_pmd_range(): a PMD leaf the range covers in part is split, one
        // it covers whole goes at once (zap_huge_pmd).
        splitHugePMDsAtEdges(v, start, end)
        walkPTETables(root: mm(m).pointee.pgd, start: start, end: end, pmd: { haddr, pmd in
            zapHugePMD(v, haddr, pmd)
            return true
        }) { _, ptes, n in
            var rss = MMRssVec()
            var i = 0
            while i < n {
                if ptes[i] == 0 {
                    i += 1
                } else {
                    i += zapPTEs(v, ptes + i, max: n - i, &rss)
                }
            }
            addMMRssVec(m, rss)
            return true
        }
    }

    /// zap_present_ptes() and zap_nonpresent_ptes() for the non-none PTE at
    /// `slot`; returns the PTEs cleared. The PTEs that map consecutive pages
    /// of one large folio go as one batch (folio_pte_batch, then
    /// zap_present_folio_ptes: one folio_remove_rmap_ptes), so a folio whose
    /// PTEs all go is never seen partially mapped and is not queued for
    /// deferred split, as in the kernel.
    @inline(__always)
    func zapPTEs(_ v: VMAID, _ slot: UnsafeMutablePointer<UInt64>, max: Int, _ rss: inout MMRssVec) -> Int {
        let e = slot.pointee
        if _fastPath(PTE.isPresent(e)) {
            let pfn = vmNormalPage(e)
            if pfn.isNone {
                slot.pointee = 0
                return 1
            }
            if _slowPath(page(pfn).pointee.flags & (PG.head | PG.tail) != 0) {
                let nr = folioPTEBatch(pfn, slot, e, max: max, ignoring: PTE.accessed | PTE.rw | PTE.dirty | PTE.softDirty)
                zapPresentFolioPTEs(v, pfn, slot, nr, &rss)
                return nr
            }
            slot.pointee = 0
            // zap_present_folio_ptes(): a file page takes the PTE's dirty
            // bit; an anonymous one does not (its data dies with the last PTE
            // or lives on in the other mappings).
            if PTE.isDirty(e) && !pageIsAnon(pfn) { page(pfn).pointee.flags |= PG.dirty }
            if PTE.isYoung(e) { page(pfn).pointee.flags |= PG.referenced }
            rss.add(mmCounterFor(pfn), -1)
            folioRemoveRmapPTE(pfn, vma: v)
            if _slowPath(page(pfn).pointee.flags & PG.swapcache != 0) { freeSwapCache(pfn) }
            putPage(pfn)
            return 1
        }
        slot.pointee = 0
        zapNonpresentPTE(v, e, &rss)
        return 1
    }

    /// zap_present_folio_ptes() for `nr` PTEs of one large folio from `pfn`:
    /// each PTE's dirty and young bits go to its page, then the counter, the
    /// rmap (folio_remove_rmap_ptes) and the references once for the batch.
    @inline(never)
    func zapPresentFolioPTEs(_ v: VMAID, _ pfn: PFN, _ slot: UnsafeMutablePointer<UInt64>, _ nr: Int, _ rss: inout MMRssVec) {
        let anon = pageIsAnon(pfn)
        for j in 0..<nr {
            let e = slot[j]
            slot[j] = 0
            let p = page(pfn.advanced(by: UInt32(j)))
            if PTE.isDirty(e) && !anon { p.pointee.flags |= PG.dirty }
            if PTE.isYoung(e) { p.pointee.flags |= PG.referenced }
        }
        rss.add(mmCounterFor(pfn), -Int64(nr))
        folioRemoveRmapPTEs(pfn, UInt32(nr), vma: v)
        freeSwapCache(pfn)
        putPages(pfn, Int32(nr))
    }

    /// zap_nonpresent_ptes(): the entry at a cleared PTE.
    @inline(never)
    func zapNonpresentPTE(_ v: VMAID, _ e: UInt64, _ rss: inout MMRssVec) {
        if PTE.isMigrationEntry(e) {
            let pfn = PTE.swpOffsetPFN(e)
            rss.add(mmCounterFor(pfn), -1)
            putPage(pfn)
        } else if PTE.isDeviceExclusiveEntry(e) {
            // The counter and the entry's reference (no rmap).
            let pfn = PTE.swpOffsetPFN(e)
            rss.add(mmCounterFor(pfn), -1)
            putPage(pfn)
        } else if PTE.isDevicePrivateEntry(e) {
            // The device-private page's counter, rmap and reference.
            let pfn = PTE.swpOffsetPFN(e)
            rss.add(mmCounterFor(pfn), -1)
            folioRemoveRmapPTE(pfn, vma: v)
            putPage(pfn)
        } else if PTE.isRealSwapEntry(e) {
            rss.add(.swapents, -1)
            swapFree(e)
        }
    }

    /// The VMAs of `m` that intersect [start, end), in address order.
    package func vmasIntersecting(_ m: MMID, _ start: UInt64, _ end: UInt64) -> [VMAID] {
        var out: [VMAID] = []
        var v = findVMA(m, start)
        while !v.isNone && vma(v).pointee.vm_start < end {
            out.append(v)
            v = nextVMA(v)
        }
        return out
    }

    /// free_pgtables() for the gap a removal leaves: the page-table pages
    /// wholly inside [floor, ceiling) that cover [start, end) go.
    func freePgtablesAround(_ m: MMID, _ start: UInt64, _ end: UInt64) {
        let next = findVMA(m, end)
        let prev = !next.isNone ? prevVMA(next) : lastVMA(m)
        let floor: UInt64 = !prev.isNone ? vma(prev).pointee.vm_end : 0
        let ceiling: UInt64 = !next.isNone ? vma(next).pointee.vm_start : 0
        freePgtables(root: mm(m).pointee.pgd, start: start, end: end, floor: floor, ceiling: ceiling)
    }

    /// Removes the whole VMAs that lie inside [start, end): zap their PTEs,
    /// take them off the trees, free the page tables of the gap, unlink
    /// anon_vmas and files, free them (unmap_region + vms_complete_munmap_vmas).
    /// The detached VMAs are chained through their free-list link, so nothing
    /// is allocated.
    func removeVMAs(_ m: MMID, _ start: UInt64, _ end: UInt64) {
        var v = findVMA(m, start)
        guard !v.isNone, vma(v).pointee.vm_start < end else { return }
        while !v.isNone && vma(v).pointee.vm_start < end {
            if vma(v).pointee.vm_flags & VM.locked != 0 {
                mm(m).pointee.locked_vm -= min(mm(m).pointee.locked_vm, vmaPages(v))  // the checker verifies the count
            }
            zapPTERange(v, vma(v).pointee.vm_start, vma(v).pointee.vm_end)
            v = nextVMA(v)
        }
        var detached = VMAID.none
        var lo = UInt64.max, hi: UInt64 = 0
        v = findVMA(m, start)
        while !v.isNone && vma(v).pointee.vm_start < end {
            let next = nextVMA(v)
            lo = min(lo, vma(v).pointee.vm_start)
            hi = max(hi, vma(v).pointee.vm_end)
            vmaUnlinkFromMM(v)
            vma(v).pointee.next = detached.rawValue
            detached = v
            v = next
        }
        freePgtablesAround(m, lo, hi)
        while !detached.isNone {
            let next = VMAID(vma(detached).pointee.next)
            hugetlbVMClose(detached)  // remove_vma(): vma->vm_ops->close()
            unlinkAnonVMAs(detached)
            vmAreaFree(detached)
            detached = next
        }
    }

    /// do_vmi_munmap(): splits the VMAs at the edges, then unmaps
    /// everything in [start, end). Nothing mapped is not an error.
    package func doMunmap(_ m: MMID, _ start: UInt64, _ end: UInt64) -> Errno? {
        let v = findVMA(m, start)
        guard !v.isNone, vma(v).pointee.vm_start < end else { return nil }
        // Room for both splits up front: ENOMEM leaves everything unchanged.
        let lastV = lastVMABefore(m, end)
        guard available(T.vma) >= 2,
              available(T.avc) >= UInt32(avcListLength(v) + avcListLength(lastV)) else { return .ENOMEM }
        if vma(v).pointee.vm_start < start { _ = splitVMA(v, at: start, newBelow: true) }
        let last = lastVMABefore(m, end)
        if vma(last).pointee.vm_end > end { _ = splitVMA(last, at: end, newBelow: false) }
        removeVMAs(m, start, end)
        return nil
    }

    /// The last VMA that starts before `end` (0 if none).
    func lastVMABefore(_ m: MMID, _ end: UInt64) -> VMAID {
        let n = findVMA(m, end)
        if !n.isNone && vma(n).pointee.vm_start < end { return n }
        return !n.isNone ? prevVMA(n) : lastVMA(m)
    }

    /// exit_mmap(): unmaps every VMA, frees the page tables and the mm.
    package func exitMMap(_ m: MMID) {
        ksmExit(m)  // __mmput(): ksm_exit() before exit_mmap()
        mmuRelease(m)  // mmu_notifier_release()
        var v = firstVMA(m)
        while !v.isNone {
            zapPTERange(v, vma(v).pointee.vm_start, vma(v).pointee.vm_end)
            v = nextVMA(v)
        }
        while true {
            v = firstVMA(m)
            if v.isNone { break }
            vmaUnlinkFromMM(v)
            hugetlbVMClose(v)  // remove_vma(): vma->vm_ops->close()
            unlinkAnonVMAs(v)
            vmAreaFree(v)
        }
        mmFree(m)
    }
}
