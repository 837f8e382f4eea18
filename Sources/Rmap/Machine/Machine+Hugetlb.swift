import CShims

/// hugetlb on the Machine API: the pool (`hugetlb PAGES`), the hugetlb
/// mmap kinds, and the system calls on hugetlb VMAs, with the kernel's
/// alignment rules (hugetlb_get_unmapped_area, hugetlb_vm_op_split, the
/// mremap and madvise checks). mlock and munlock take the ordinary path
/// (mlock_fixup passes hugetlb VMAs over; __mm_populate faults them in), and
/// so does mprotect (Kernel.vmaModify's hugetlb split rules,
/// Kernel.hugetlbChangeProtection). What the model does not run on a hugetlb
/// VMA yet is refused by name (`OpResult.notModelled`), never run as if
/// the VMA were something else.
extension Machine {
    /// `hugetlb PAGES`: /proc/sys/vm/nr_hugepages (set_max_huge_pages).
    /// ENOMEM when this arena's frames cannot hold the pool (nothing changes).
    public func setHugetlbPool(pages: UInt64) -> OpResult {
        k.hugetlbSetMaxHugePages(pages) ? .ok : .errno(.ENOMEM)
    }

    /// How mremap keeps private hugetlb reservations (issue 20): `6.18`
    /// (the default, its leak included) or `fixed`. Kept in the arena
    /// header, so a saved state keeps it.
    public var hugetlbResvMode: HugetlbResvMode {
        get { k.hugetlbResvMode }
        set { k.header.pointee.hugetlb_resv_mode = newValue.rawValue }
    }

    /// HugePages_Total, _Free, _Rsvd and _Surp as /proc/meminfo shows them
    /// (resv read signed: it may be below zero for a while, see
    /// Kernel.hugetlbAcctMemory).
    public var hugetlbPool: (total: UInt64, free: UInt64, reserved: Int64, surplus: UInt64) {
        let c = k.hugetlbCounters
        return (c.total, c.free, Int64(bitPattern: c.resv), c.surplus)
    }

    /// The operations on a range that meets a hugetlb VMA: their result, or
    /// nil when no hugetlb VMA is involved (the ordinary path runs).
    func hugetlbOperation(_ m: MMID, _ op: Operation) -> OpResult? {
        func r(_ e: Errno?) -> OpResult { e.map { .errno($0) } ?? .ok }
        switch op {
        case .munmap(let addr, let pages):
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            return r(hugetlbSplitEdges(m, addr, end) ?? k.doMunmap(m, addr, end))
        case .mremap(let addr, let oldPages, let newPages, let to):
            let v = k.vmaLookup(m, addr)
            if v.isNone { return nil }  // EFAULT, nothing changed (mremap_to checks the source first)
            guard k.isHugetlbVMA(v) else {
                if let to, meetsHugetlb(m, to, to + newPages << PAGE_SHIFT) { return .notModelled("mremap onto a hugetlb mapping") }
                return nil
            }
            let oldLen = oldPages << PAGE_SHIFT, newLen = newPages << PAGE_SHIFT
            if let to, addr + oldLen > to && to + newLen > addr { return .errno(.EINVAL) }  // check_mremap_params
            // do_mremap(): lengths round up to 2 MiB; unaligned addresses and growth are EINVAL.
            let hOld = (oldLen + Kernel.hpageSize - 1) & Kernel.hpageMask
            let hNew = (newLen + Kernel.hpageSize - 1) & Kernel.hpageMask
            if addr & ~Kernel.hpageMask != 0 || (to ?? 0) & ~Kernel.hpageMask != 0 || hNew > hOld { return .errno(.EINVAL) }
            if to == nil && hNew == hOld { return .ok }
            if to == nil { return r(hugetlbSplitEdges(m, addr + hNew, addr + hOld) ?? k.doMunmap(m, addr + hNew, addr + hOld)) }
            if hNew == hOld, addr + hOld > k.vma(v).pointee.vm_end,
               !k.vmasIntersecting(m, addr, addr + hOld).allSatisfy({ k.isHugetlbVMA($0) }) {
                return .notModelled("mremap moving a hugetlb mapping with others")
            }
            // mremap_to() (Kernel.hugetlbMremapTo): the unmaps it makes
            // split as munmap does (hugetlbSplitEdges).
            return r(k.hugetlbMremapTo(m, addr: addr, oldLen: hOld, newLen: hNew, newAddr: to!) { s, e in
                self.hugetlbSplitEdges(m, s, e) ?? self.k.doMunmap(m, s, e)
            })
        case .madvise(let addr, let pages, let advice):
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            switch advice {
            case .dontfork, .dofork, .wipeonfork, .keeponfork, .mergeable, .unmergeable:
                // madvise_vma_behavior() -> madvise_update_vma() on the
                // ordinary path (Kernel.madviseVMABehavior, vma_modify_flags
                // with the hugetlb split rules): wipeonfork is EINVAL on a
                // hugetlb VMA (it has a file), mergeable leaves it alone
                // (vma_ksm_compatible refuses VM_HUGETLB).
                return nil
            default: break
            }
            let vmas = k.vmasIntersecting(m, addr, end)
            guard vmas.allSatisfy({ k.isHugetlbVMA($0) }) else { return .notModelled("madvise over a hugetlb mapping and others") }
            // dontneed, free, cold, pageout: madvise_walk_vmas(): VMA by VMA,
            // a hole noted (ENOMEM at the end), the first error ends the walk.
            // madvise_dontneed_free_valid_vma(): MADV_DONTNEED only, the
            // VMA's part starting aligned, its end rounded down to 2 MiB;
            // cold and pageout refuse VM_HUGETLB (can_madv_lru_vma).
            var unmapped = false
            var start = addr
            for v in vmas {
                let p = k.vma(v).pointee
                if start < p.vm_start { unmapped = true; start = p.vm_start }
                let tmp = min(p.vm_end, end)
                guard advice == .dontneed, start & ~Kernel.hpageMask == 0 else { return .errno(.EINVAL) }
                let hend = tmp & Kernel.hpageMask
                if hend > start { k.unmapHugepageRange(v, start, hend) }
                start = tmp
            }
            return unmapped || start < end ? .errno(.ENOMEM) : .ok
        case .referenced(let addr, let pages):
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            guard k.vmasIntersecting(m, addr, end).allSatisfy({ k.isHugetlbVMA($0) }) else {
                return .notModelled("referenced over a hugetlb mapping and others")
            }
            // folio_referenced() once per folio met; a page without one is
            // EFAULT and ends the line (as for other folios).
            var n = 0
            var a = addr
            var last = PFN.none
            while a < end {
                defer { a += PAGE_SIZE }
                let pfn = k.mappedPage(m, a)
                if pfn.isNone { return .errno(.EFAULT) }
                let head = k.folioOf(pfn)
                if head == last { continue }
                last = head
                n += k.hugetlbFolioReferenced(head)
            }
            return .referenced(n)
        case .unmap(let addr, let pages, let flags):
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            guard k.vmasIntersecting(m, addr, end).allSatisfy({ k.isHugetlbVMA($0) }) else {
                return .notModelled("unmap over a hugetlb mapping and others")
            }
            // try_to_unmap() once per folio met (Kernel.tryToUnmapHugetlb).
            var result = OpResult.ok
            var a = addr
            var skipUntil: UInt64 = 0  // the rest of the last folio's 2 MiB (unmapped by now)
            while a < end {
                defer { a += PAGE_SIZE }
                if a < skipUntil { continue }
                let pfn = k.mappedPage(m, a)
                if pfn.isNone { return .errno(.EFAULT) }
                let head = k.folioOf(pfn)
                skipUntil = (a & Kernel.hpageMask) + Kernel.hpageSize
                let r = opResult(k.tryToUnmapHugetlb(head, flags: flags))
                if case .notModelled = r { return r }
                if r != .ok { result = r }
            }
            k.tryToUnmapFlush()
            return result
        case .migrate(let addr, let pages):
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            guard k.vmasIntersecting(m, addr, end).allSatisfy({ k.isHugetlbVMA($0) }) else {
                return .notModelled("migrate over a hugetlb mapping and others")
            }
            // migrate_pages() once per folio met (Kernel.migrateHugetlbFolio).
            var result = OpResult.ok
            if let e = forEachHugetlbFolio(m, addr, end, { head in
                let r = opResult(k.migrateHugetlbFolio(head))
                if r != .ok { result = r }
            }) { return e }
            return result
        case .reclaim(let addr, let pages), .mkclean(let addr, let pages):
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            guard k.vmasIntersecting(m, addr, end).allSatisfy({ k.isHugetlbVMA($0) }) else {
                return .notModelled("\(op.verb) over a hugetlb mapping and others")
            }
            // Once per folio met; a page without one is EFAULT and ends the line.
            // reclaim: a hugetlb folio is never on the LRU (shrink_folio_list
            // never sees it): `fail`, nothing changes. mkclean: folio_mkclean().
            var cleaned = 0
            var result = OpResult.ok
            if let e = forEachHugetlbFolio(m, addr, end, { head in
                if case .reclaim = op { result = .fail } else { cleaned += k.hugetlbFolioMkclean(head) }
            }) { return e }
            if case .mkclean = op { return .cleaned(cleaned) }
            return result
        case .device(let addr, let pages, _):
            // migrate_vma_setup(): a hugetlb VMA is EINVAL, no page collected
            // (`fail` for each, as for the other VMAs it refuses); a page
            // without a frame is EFAULT.
            guard meetsHugetlb(m, addr, addr + pages << PAGE_SHIFT) else { return nil }
            guard k.vmasIntersecting(m, addr, addr + pages << PAGE_SHIFT).allSatisfy({ k.isHugetlbVMA($0) }) else {
                return .notModelled("device over a hugetlb mapping and others")
            }
            var a = addr
            for _ in 0..<pages {
                if k.mappedPage(m, a).isNone { return .errno(.EFAULT) }
                a += PAGE_SIZE
            }
            return .fail
        case .poison(let addr, let pages):
            // memory_failure() of the page mapped at ADDR, the whole of
            // try_memory_failure_hugetlb (Kernel.memoryFailureHugetlb: every
            // mapping becomes a hwpoison entry, an anonymous folio is
            // dissolved); then of the page one huge page further, while
            // below the range's end, as madvise_inject_error() steps
            // (start += page_size(compound_head(page)), from ADDR as given,
            // not rounded to the huge page). A folio poisoned already is
            // EHWPOISON, one not recovered EBUSY; an address with no page yet
            // is faulted in first (below); a hwpoison entry (as after a
            // first poison) is EFAULT, as get_user_pages_fast() answers there. The first error ends the
            // line (madvise_inject_error returns it: the huge pages after it
            // are not touched).
            let end = addr + pages << PAGE_SHIFT
            guard meetsHugetlb(m, addr, end) else { return nil }
            guard k.vmasIntersecting(m, addr, end).allSatisfy({ k.isHugetlbVMA($0) }) else {
                return .notModelled("poison over a hugetlb mapping and others")
            }
            var a = addr
            while a < end {
                defer { a += Kernel.hpageSize }
                var pfn = k.mappedPage(m, a)
                if pfn.isNone {
                    // get_user_pages_fast(start, 1, 0, &page) falls back to
                    // the slow GUP: a read fault (hugetlb_no_page) brings the
                    // page in from the pool, and that page is poisoned. A
                    // hwpoison entry (VM_FAULT_HWPOISON_LARGE) or a fault
                    // with no page to be had (VM_FAULT_SIGBUS) is -EFAULT
                    // (vm_fault_to_errno without FOLL_HWPOISON).
                    switch k.handleMMFault(m, a, write: false) {
                    case .ok: break
                    case .oom: return .errno(.ENOMEM)  // the arena, not the pool
                    case .sigbus, .sigsegv: return .errno(.EFAULT)
                    }
                    pfn = k.mappedPage(m, a)
                    if pfn.isNone { return .errno(.EFAULT) }
                }
                switch k.memoryFailureHugetlb(pfn) {
                case .recovered: break
                case .failed: return .errno(.EBUSY)
                case .alreadyPoisoned: return .errno(.EHWPOISON)
                }
            }
            return .ok
        case .exclusive(let addr, let pages):
            // make_device_exclusive() on 6.18 would reach GUP's FOLL_SPLIT_PMD
            // with a hugetlb PMD (pmd_trans_huge() is true for it on x86)
            // before its folio_test_hugetlb() refusal: not modelled.
            return meetsHugetlb(m, addr, addr + pages << PAGE_SHIFT) ? .notModelled("\(op.verb) of a hugetlb page") : nil
        default:
            return nil
        }
    }

    /// Whether a hugetlb VMA of `m` meets [start, end).
    func meetsHugetlb(_ m: MMID, _ start: UInt64, _ end: UInt64) -> Bool {
        k.vmasIntersecting(m, start, end).contains { k.isHugetlbVMA($0) }
    }

    /// The splits at the edges of [start, end) that munmap (and the mremap
    /// shrink) would make, checked first as vms_gather_munmap_vmas() makes
    /// them: a hugetlb VMA refuses a split at an unaligned address
    /// (hugetlb_vm_op_split: EINVAL); when the end's split fails, the start's
    /// has been made and stays. nil when both may be made.
    func hugetlbSplitEdges(_ m: MMID, _ start: UInt64, _ end: UInt64) -> Errno? {
        let v0 = k.findVMA(m, start)
        guard !v0.isNone, k.vma(v0).pointee.vm_start < end else { return nil }
        let splitStart = k.vma(v0).pointee.vm_start < start
        if splitStart && k.isHugetlbVMA(v0) && start & ~Kernel.hpageMask != 0 { return .EINVAL }
        let last = k.lastVMABefore(m, end)
        let splitEnd = k.vma(last).pointee.vm_end > end
        if splitEnd && k.isHugetlbVMA(last) && end & ~Kernel.hpageMask != 0 {
            if splitStart {
                guard k.available(T.vma) >= 1, k.available(T.avc) >= UInt32(k.avcListLength(v0)) else { return .ENOMEM }
                if k.isHugetlbVMA(v0) { k.hugetlbSplitUnshare(v0, start) }
                _ = k.splitVMA(v0, at: start, newBelow: true)
            }
            return .EINVAL
        }
        // The splits to come unshare the PUD ranges they cut (hugetlb_split).
        if splitStart && k.isHugetlbVMA(v0) { k.hugetlbSplitUnshare(v0, start) }
        if splitEnd && k.isHugetlbVMA(last) { k.hugetlbSplitUnshare(last, end) }
        return nil
    }

    /// The model-only reverse statements over a hugetlb range: `body` once
    /// per folio met (the head), in address order; a page with no mapped
    /// folio is EFAULT and ends the line (returned, the folios before it
    /// done).
    private func forEachHugetlbFolio(_ m: MMID, _ addr: UInt64, _ end: UInt64, _ body: (PFN) -> Void) -> OpResult? {
        var a = addr
        var skipUntil: UInt64 = 0
        while a < end {
            defer { a += PAGE_SIZE }
            if a < skipUntil { continue }
            let pfn = k.mappedPage(m, a)
            if pfn.isNone { return .errno(.EFAULT) }
            skipUntil = (a & Kernel.hpageMask) + Kernel.hpageSize
            body(k.folioOf(pfn))
        }
        return nil
    }
}
