import CShims

/// Tearing mappings down (mm/memory.c zap_*_range, mm/vma.c do_vmi_munmap,
/// mm/mmap.c exit_mmap).
extension Kernel {
    /// zap_pte_range(): clears every PTE of `v` in [start, end). A present
    /// entry gives its dirty bit to the page (set_page_dirty), loses its
    /// mapcount, MM counter and reference; a swap entry frees its slot; a
    /// migration entry drops the MM counter it kept.
    func zapPTERange(_ v: UInt32, _ start: UInt64, _ end: UInt64) {
        let m = vma(v).pointee.mm
        walkLeaves(root: mm(m).pointee.pgd, start: start, end: end) { _, slot in
            let e = slot.pointee
            guard e != 0 else { return true }
            slot.pointee = 0
            if PTE.isPresent(e) {
                let pfn = vmNormalPage(e)
                guard pfn != 0 else { return true }
                // zap_present_folio_ptes(): a file page takes the PTE's dirty
                // bit; an anonymous one does not (its data dies with the last PTE
                // or lives on in the other mappings).
                if PTE.isDirty(e) && !pageIsAnon(pfn) { page(pfn).pointee.flags |= PG.dirty }
                if PTE.isYoung(e) { page(pfn).pointee.flags |= PG.referenced }
                addMMCounter(m, mmCounterFor(pfn), -1)
                folioRemoveRmapPTE(pfn, vma: v)
                putPage(pfn)
            } else if PTE.isMigrationEntry(e) {
                let pfn = UInt32(truncatingIfNeeded: PTE.swpOffset(e))
                addMMCounter(m, mmCounterFor(pfn), -1)
            } else if PTE.isRealSwapEntry(e) {
                addMMCounter(m, .swapents, -1)
                swapFree(e)
            }
            return true
        }
    }

    /// The VMAs of `m` that intersect [start, end), in address order.
    func vmasIntersecting(_ m: UInt32, _ start: UInt64, _ end: UInt64) -> [UInt32] {
        var out: [UInt32] = []
        var v = findVMA(m, start)
        while v != 0 && vma(v).pointee.vm_start < end {
            out.append(v)
            v = nextVMA(v)
        }
        return out
    }

    /// free_pgtables() for the gap a removal leaves: the page-table pages
    /// wholly inside [floor, ceiling) that cover [start, end) go.
    func freePgtablesAround(_ m: UInt32, _ start: UInt64, _ end: UInt64) {
        let next = findVMA(m, end)
        let prev = next != 0 ? prevVMA(next) : IntervalTree.last(root: mm(m).pointee.mm_rb, mmTree)
        let floor: UInt64 = prev != 0 ? vma(prev).pointee.vm_end : 0
        let ceiling: UInt64 = next != 0 ? vma(next).pointee.vm_start : 0
        freePgtables(root: mm(m).pointee.pgd, start: start, end: end, floor: floor, ceiling: ceiling)
    }

    /// Removes whole VMAs [first..] that lie inside [start, end): zap, take
    /// off the trees, unlink anon_vmas and the file, free (vms_complete_munmap_vmas).
    func removeVMAs(_ m: UInt32, _ list: [UInt32]) {
        guard let first = list.first, let last = list.last else { return }
        let start = vma(first).pointee.vm_start, end = vma(last).pointee.vm_end
        for v in list {
            if vma(v).pointee.vm_flags & VM.locked != 0 {
                mm(m).pointee.locked_vm -= min(mm(m).pointee.locked_vm, vmaPages(v))  // the checker verifies the count
            }
            zapPTERange(v, vma(v).pointee.vm_start, vma(v).pointee.vm_end)
        }
        for v in list { vmaUnlinkFromMM(v) }
        freePgtablesAround(m, start, end)
        for v in list {
            unlinkAnonVMAs(v)
            vmAreaFree(v)
        }
    }

    /// do_vmi_munmap(): splits the VMAs at the edges, then unmaps
    /// everything in [start, end). Nothing mapped is not an error.
    func doMunmap(_ m: UInt32, _ start: UInt64, _ end: UInt64) -> Errno? {
        let v = findVMA(m, start)
        guard v != 0, vma(v).pointee.vm_start < end else { return nil }
        // Room for both splits up front: ENOMEM leaves everything unchanged.
        let lastV = vmasIntersecting(m, start, end).last!
        guard available(T.vma) >= 2,
              available(T.avc) >= UInt32(avcListLength(v) + avcListLength(lastV)) else { return .ENOMEM }
        if vma(v).pointee.vm_start < start { _ = splitVMA(v, at: start, newBelow: true) }
        let last = vmasIntersecting(m, start, end).last!
        if vma(last).pointee.vm_end > end { _ = splitVMA(last, at: end, newBelow: false) }
        removeVMAs(m, vmasIntersecting(m, start, end))
        return nil
    }

    /// exit_mmap(): unmaps every VMA, frees the page tables and the mm.
    func exitMMap(_ m: UInt32) {
        var list: [UInt32] = []
        var v = firstVMA(m)
        while v != 0 { list.append(v); v = nextVMA(v) }
        for v in list { zapPTERange(v, vma(v).pointee.vm_start, vma(v).pointee.vm_end) }
        for v in list {
            vmaUnlinkFromMM(v)
            unlinkAnonVMAs(v)
            vmAreaFree(v)
        }
        mmFree(m)
    }
}
