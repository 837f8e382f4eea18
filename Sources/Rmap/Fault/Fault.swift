import CShims

/// What a fault ends in (vm_fault_t, reduced to what user space sees).
enum FaultResult: Equatable {
    case ok
    /// VM_FAULT_SIGSEGV or a bad access (no VMA, wrong permission).
    case sigsegv
    /// VM_FAULT_SIGBUS: a file page beyond EOF.
    case sigbus
    /// VM_FAULT_OOM: the arena is exhausted; nothing was changed.
    case oom
}

/// The page-fault paths (mm/memory.c): handle_mm_fault() for one access.
/// Fault-around maps up to `faultAroundPages` neighbours (fault_around_bytes
/// = 64 KiB), as do_fault_around() does.
extension Kernel {
    static let faultAroundPages: UInt64 = 16

    /// Room for the page tables of one fault (three levels may be missing).
    /// Checked first, so an exhausted arena changes nothing; each path then
    /// checks the frames and anon_vma objects it needs before it changes anything.
    @inline(__always) func faultHasRoom() -> Bool {
        available(T.ptPage) >= 3
    }

    /// A user loop touching `pages` pages from `addr` up: one
    /// handleMMFault() per page, in address order, each whatever the others
    /// gave. The pages that ended in ok. The loop is here, beside the fault
    /// path, so a caller in another module (the benchmark entry points) pays
    /// one call per range, not one per page. It keeps no VMA or PTE table
    /// between pages: the benchmarks time the path a trace's `read` /
    /// `write` takes (Machine.access), not a faster one of their own.
    package func touchPages(_ m: MMID, _ addr: UInt64, _ pages: UInt64, write: Bool) -> Int {
        var a = addr
        var n = 0
        for _ in 0..<pages {
            if handleMMFault(m, a, write: write) == .ok { n += 1 }
            a &+= PAGE_SIZE
        }
        return n
    }

    /// do_user_addr_fault() + handle_mm_fault(): one user access at `addr`.
    /// Models access_error() (x86: a read needs any of r/w/x, a write needs w),
    /// then __handle_mm_fault / handle_pte_fault.
    func handleMMFault(_ m: MMID, _ addr: UInt64, write: Bool) -> FaultResult {
        let v = vmaLookup(m, addr)
        guard !v.isNone else { return .sigsegv }
        return handleVMAFault(m, v, addr, write: write)
    }

    /// handleMMFault() once the VMA `v` holding `addr` is known.
    @inline(__always)
    func handleVMAFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, write: Bool) -> FaultResult {
        let flags = vma(v).pointee.vm_flags
        if write {
            if flags & VM.write == 0 { return .sigsegv }
        } else if flags & VM.accessFlags == 0 {
            return .sigsegv
        }
        if _slowPath(flags & VM.hugetlb != 0) { return hugetlbFault(m, v, addr, write: write) }
        // __handle_mm_fault(): a PMD leaf is handled at the PMD (an access
        // sets its accessed/dirty bits; a write to a read-only one is
        // do_huge_pmd_wp_page, which may split it and fall back to the PTEs);
        // a none PMD in a VMA that allows PMD-sized THP tries
        // do_huge_pmd_anonymous_page first.
        if _slowPath(thpActive) && vma(v).pointee.file == 0, let r = handlePMDFault(m, v, addr, write: write) {
            return r
        }
        return handlePTEFault(m, v, addr, leafSlot(root: mm(m).pointee.pgd, key: addr), write: write)
    }

    /// The PMD level of __handle_mm_fault() for an anonymous VMA while THP is
    /// in use: what the fault ended in, or nil to go on to the PTEs
    /// (VM_FAULT_FALLBACK, or no PMD leaf and no THP to be had). Out of line,
    /// so the small-page fault path stays one function.
    @inline(never)
    func handlePMDFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, write: Bool) -> FaultResult? {
        let pmd = pmdSlot(root: mm(m).pointee.pgd, key: addr)
        if let pmd, PTE.isPMDMigrationEntry(pmd.pointee) {
            return removeMigrationPMDOnFault(m, v, addr, pmd, write: write)  // pmd_migration_entry_wait()
        }
        if let pmd, PTE.isPMDLeaf(pmd.pointee) {
            let e = pmd.pointee
            if !write || PTE.isWrite(e) {
                pmd.pointee = e | PTE.accessed | (write ? PTE.dirty : 0)  // huge_pmd_set_accessed()
                return .ok
            }
            let r = doHugePMDWPPage(m, v, addr, pmd)
            if r != .fallback { return r.fault }
        } else if pmd?.pointee ?? 0 == 0, thpAllowsPMD(v, addr) {
            let r = doHugePMDAnonymousPage(m, v, addr, write: write)
            if r != .fallback { return r.fault }
        }
        return nil
    }

    /// handle_pte_fault() for `addr` in VMA `v` (an access the VMA allows,
    /// not hugetlb, no PMD leaf at `addr`) with `existing`, the PTE slot,
    /// nil when there is no PTE table yet.
    @inline(__always)
    func handlePTEFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ existing: UnsafeMutablePointer<UInt64>?,
                        write: Bool) -> FaultResult {
        // An access through a present PTE: the hardware sets the accessed
        // (and on write the dirty) bit; no fault unless a write hits a
        // read-only entry.
        if let slot = existing, slot.pointee != 0 {
            let e = slot.pointee
            if PTE.isPresent(e) {
                if !write {
                    slot.pointee = e | PTE.accessed
                    return .ok
                }
                if PTE.isWrite(e) {
                    slot.pointee = e | PTE.accessed | PTE.dirty
                    return .ok
                }
                return doWPPage(m, v, addr, slot)
            }
            return doSwapPage(m, v, addr, slot, write: write)
        }
        guard faultHasRoom() else { return .oom }
        // One walk found the PTE table or its absence; only a missing table
        // walks again, allocating (__pte_alloc).
        let pmdNone = existing == nil
        guard let slot = existing ?? leafSlotAlloc(root: mm(m).pointee.pgd, key: addr) else { return .oom }
        if vma(v).pointee.file == 0 { return doAnonymousPage(m, v, addr, slot, write: write) }
        let r = doFault(m, v, addr, slot, write: write, pmdNone: pmdNone)
        // A file fault that maps nothing leaves no PTE table: the kernel's
        // was only preallocated (vmf->prealloc_pte) and is freed unused.
        if pmdNone && r != .ok { freeEmptyPTETable(root: mm(m).pointee.pgd, key: addr) }
        return r
    }

    /// do_anonymous_page(): a read maps the shared zero page; a write gets a
    /// new zeroed exclusive page (after anon_vma_prepare). Inlined into
    /// handle_pte_fault: the large-folio and out-of-memory paths are calls.
    @inline(__always)
    func doAnonymousPage(_ m: MMID, _ v: VMAID, _ addr: UInt64,
                         _ slot: UnsafeMutablePointer<UInt64>, write: Bool) -> FaultResult {
        let prot = PTE.pageProt(vmFlags: vma(v).pointee.vm_flags)
        if !write {
            slot.pointee = PTE.make(pfn: zeroPFN, prot: prot) | PTE.special
            return .ok
        }
        guard available(T.frame) >= 1, anonVMAPrepare(v) else { return .oom }
        if _slowPath(thpActive) {
            // alloc_anon_folio(): a multi-size THP when the settings allow one here.
            let orders = anonFolioOrders(v, addr, slot)
            if orders != 0, doAnonymousLargeFolio(m, v, addr, slot, orders: orders) { return .ok }
        }
        let pfn = allocPage()
        guard !pfn.isNone else { return .oom }
        // The content token is 0 (a zeroed page): allocPage zeroed the record.
        folioAddNewAnonRmap(pfn, vma: v, address: addr)
        addMMCounter(m, .anon, 1)
        slot.pointee = PTE.make(pfn: pfn, prot: prot) | PTE.dirty | PTE.rw
        return .ok
    }

    /// do_fault(): file-backed (and shmem) faults on a none PTE.
    func doFault(_ m: MMID, _ v: VMAID, _ addr: UInt64,
                 _ slot: UnsafeMutablePointer<UInt64>, write: Bool, pmdNone: Bool = false) -> FaultResult {
        let flags = vma(v).pointee.vm_flags
        if !write { return doReadFault(m, v, addr, slot, pmdNone: pmdNone) }
        if flags & VM.shared == 0 { return doCOWFault(m, v, addr, slot) }
        return doSharedFault(m, v, addr, slot)
    }

    /// __do_fault() -> filemap_fault() / shmem_fault(): the page-cache page for
    /// the faulting index, read in (mmap read-around) or allocated (shmem) if
    /// absent. 0 with `sigbus` past EOF; 0 without it when out of memory.
    func doFaultGetPage(_ v: VMAID, _ addr: UInt64, sigbus: inout Bool) -> PFN {
        let f = vmFile(v)
        let index = linearPageIndex(v, addr)
        if index >= file(f).pointee.size_pages { sigbus = true; return .none }
        if file(f).pointee.kind == FileKind.shmem.rawValue {
            let pfn = pageCacheLookup(f, index, materialize: false)
            if !pfn.isNone { return pfn }
            // shmem_get_folio_gfp(SGP_CACHE): a new zeroed, uptodate page; it
            // becomes dirty when written (do_shared_fault, or the PTE's dirty
            // bit when it is unmapped).
            return pageCacheAddNew(f, index)
        }
        if !pageCacheResident(f, index) { readAround(f, index) }
        let pfn = pageCacheLookup(f, index, materialize: true)
        // filemap_fault(): a PG_readahead folio starts async readahead and
        // loses the flag.
        if !pfn.isNone { page(pfn).pointee.flags &= ~PG.reclaim }
        return pfn
    }

    /// do_read_fault(): fault-around first (filemap_map_pages over the 64 KiB
    /// window of cached pages), then __do_fault for the page itself.
    func doReadFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>,
                     pmdNone: Bool = false) -> FaultResult {
        doFaultAround(m, v, addr, pmdNone: pmdNone)
        if slot.pointee != 0 { return .ok }  // VM_FAULT_NOPAGE: mapped by fault-around
        var sigbus = false
        let pfn = doFaultGetPage(v, addr, sigbus: &sigbus)
        if sigbus { return .sigbus }
        if pfn.isNone { return .oom }
        finishFault(m, v, pfn, slot, write: false)
        return .ok
    }

    /// finish_fault() -> set_pte_range() for a page-cache page.
    @inline(__always) func finishFault(_ m: MMID, _ v: VMAID, _ pfn: PFN,
                                       _ slot: UnsafeMutablePointer<UInt64>, write: Bool) {
        var e = PTE.make(pfn: pfn, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags))
        if write { e |= PTE.dirty | PTE.rw }  // maybe_mkwrite(pte_mkdirty())
        getPage(pfn)
        folioAddFileRmapPTE(pfn, vma: v)
        addMMCounter(m, mmCounterFor(pfn), 1)
        slot.pointee = e
    }

    /// do_fault_around() + filemap_map_pages(): maps the cached, uptodate pages
    /// of the window around `addr` whose PTEs are none. The window is
    /// fault_around_pages PTEs aligned in the page table, clipped to the VMA
    /// and to the PTE table; pages at or beyond EOF are skipped. `pmdNone`:
    /// the PTE table did not exist before this fault.
    func doFaultAround(_ m: MMID, _ v: VMAID, _ addr: UInt64, pmdNone: Bool = false) {
        let nr = Kernel.faultAroundPages
        let pteOff = (addr >> PAGE_SHIFT) & 511
        let vmaOff = (addr - vma(v).pointee.vm_start) >> PAGE_SHIFT
        let fromPTE = max(pteOff & ~(nr - 1), pteOff - min(pteOff, vmaOff))
        let toPTE = min(fromPTE + nr, 512, pteOff + vmaPages(v) - vmaOff) - 1
        let f = vmFile(v)
        let base = addr - (pteOff << PAGE_SHIFT)
        let regular = file(f).pointee.kind == FileKind.regular.rawValue
        // filemap_map_pages() clips the window at the last page of the file.
        let size = file(f).pointee.size_pages
        let firstIdx = linearPageIndex(v, base + (fromPTE << PAGE_SHIFT))
        let lastIdx = min(linearPageIndex(v, base + (toPTE << PAGE_SHIFT)), size == 0 ? 0 : size - 1)
        if size == 0 || firstIdx > lastIdx { return }
        // With the PMD none, filemap_map_pages() installs the preallocated
        // PTE table (filemap_map_pmd) only when the first uptodate folio of
        // the window ends before EOF or the file is shmem ("do not allow to
        // map with PMD across i_size to preserve SIGBUS semantics"); else
        // pte_offset_map_lock() finds no table and nothing is mapped. Seen
        // when a fault past EOF has only the file's last page in its window.
        if pmdNone && regular {
            var idx = firstIdx
            while idx <= lastIdx {
                let pfn = pageCacheLookup(f, idx, materialize: false)
                // next_uptodate_folio(): resident, not PG_readahead.
                if pageCacheResident(f, idx) && (pfn.isNone || page(pfn).pointee.flags & PG.reclaim == 0) { break }
                idx += 1
            }
            if idx > lastIdx || idx == size - 1 { return }
        }
        // filemap_map_pages() + set_pte_range(): one page-table walk for the
        // window (it lies in the faulting address's PTE table, which the
        // fault allocated), then a look at each PTE and one page-cache lookup
        // per none PTE.
        guard let faultSlot = leafSlot(root: mm(m).pointee.pgd, key: addr) else { return }
        let ptes = faultSlot - Int(pteOff)
        let cacheRoot = file(f).pointee.cache_root
        // Once per window, as filemap_map_pages() does: the PTE protection
        // (set_pte_range's vma->vm_page_prot), the MM counters (counted in
        // `rss`, one add_mm_counter after the loop: the same final counters
        // and hiwater, as every delta is positive) and the page cache's leaf
        // table (the xarray walk moves along one node, xas_next_entry): found
        // once per 512 indices; a missing one is looked for again, as the
        // loop may add it (pageCacheAddNew).
        let prot = PTE.pageProt(vmFlags: vma(v).pointee.vm_flags)
        var rss = MMRssVec()
        var leaf: UnsafeMutablePointer<UInt64>? = nil
        var leafBlock = UInt64.max
        var index = linearPageIndex(v, base + (fromPTE << PAGE_SHIFT))
        var i = fromPTE
        while i <= toPTE {
            let s = ptes + Int(i)
            let idx = index
            i += 1
            index &+= 1
            guard s.pointee == 0 else { continue }
            guard idx < size else { continue }
            if idx >> 9 != leafBlock || leaf == nil {
                leaf = cacheSlot(root: cacheRoot, key: idx << 12).map { $0 - Int(idx & 511) }
                leafBlock = idx >> 9
            }
            let e = leaf?[Int(idx & 511)] ?? 0
            // A shmem hole, or a regular file's evicted page (its shadow
            // entry): nothing to map.
            if e & PTE.present == 0 && (!regular || e != 0) { continue }
            guard available(T.frame) >= 1 else { break }
            // A resident page of a regular file gets its frame on first use.
            let pfn = e & PTE.present != 0 ? PTE.pfn(e) : pageCacheAddNew(f, idx)
            if pfn.isNone { break }
            // next_uptodate_folio(): PG_readahead (= PG_reclaim) folios are skipped.
            if page(pfn).pointee.flags & PG.reclaim != 0 { continue }
            // set_pte_range() for one page: finishFault() with the window's
            // protection and counter.
            getPage(pfn)
            folioAddFileRmapPTE(pfn, vma: v)
            rss.add(mmCounterFor(pfn), 1)
            s.pointee = PTE.make(pfn: pfn, prot: prot)
        }
        addMMRssVec(m, rss)
    }

    /// do_cow_fault(): a write to a private file mapping copies the cache page
    /// into a new anonymous page; the cache page is not mapped.
    func doCOWFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> FaultResult {
        guard available(T.frame) >= 2 else { return .oom }
        var sigbus = false
        let f = vmFile(v)
        // anon_vma_prepare() comes first: a write fault past EOF leaves the
        // VMA with an anon_vma (so fork then copies its page tables).
        guard anonVMAPrepare(v) else { return .oom }
        if linearPageIndex(v, addr) >= file(f).pointee.size_pages { return .sigbus }
        let src = doFaultGetPage(v, addr, sigbus: &sigbus)
        if sigbus { return .sigbus }
        if src.isNone { return .oom }
        let pfn = allocPage()
        page(pfn).pointee.content = page(src).pointee.content  // copy_user_highpage
        folioAddNewAnonRmap(pfn, vma: v, address: addr)
        addMMCounter(m, .anon, 1)
        slot.pointee = PTE.make(pfn: pfn, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags)) | PTE.dirty | PTE.rw
        return .ok
    }

    /// do_shared_fault(): a write to a shared mapping maps the cache page
    /// writable and dirty (do_page_mkwrite, fault_dirty_shared_page).
    func doSharedFault(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> FaultResult {
        var sigbus = false
        let pfn = doFaultGetPage(v, addr, sigbus: &sigbus)
        if sigbus { return .sigbus }
        if pfn.isNone { return .oom }
        page(pfn).pointee.flags |= PG.dirty
        finishFault(m, v, pfn, slot, write: true)
        return .ok
    }

    /// do_wp_page(): a write to a present, read-only PTE of a writable VMA.
    func doWPPage(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>) -> FaultResult {
        let e = slot.pointee
        let flags = vma(v).pointee.vm_flags
        let pfn = vmNormalPage(e)
        if flags & VM.shared != 0 && !pfn.isNone {
            // wp_page_shared(): page_mkwrite, then wp_page_reuse().
            page(pfn).pointee.flags |= PG.dirty
            slot.pointee = e | PTE.rw | PTE.dirty | PTE.accessed
            return .ok
        }
        if !pfn.isNone && pageIsAnon(pfn) && wpCanReuseAnonFolio(pfn, vma: v) {
            // wp_page_reuse()
            page(pfn).pointee.flags |= PG.anonExclusive
            slot.pointee = e | PTE.rw | PTE.dirty | PTE.accessed
            return .ok
        }
        return wpPageCopy(m, v, addr, slot, old: pfn)
    }

    /// wp_can_reuse_anon_folio(): an exclusive page is reused; otherwise only
    /// when ours is the only reference (it then moves to our anon_vma).
    @inline(__always) func wpCanReuseAnonFolio(_ pfn: PFN, vma v: VMAID) -> Bool {
        let p = page(pfn)
        if p.pointee.flags & PG.anonExclusive != 0 { return true }
        if _slowPath(p.pointee.flags & (PG.head | PG.tail) != 0) {
            return wpCanReuseLargeAnonFolio(folioOf(pfn), vma: v)
        }
        // A KSM page is never reused: its content is shared by design.
        if p.pointee.mapping & PageMapping.flags == PageMapping.ksm { return false }
        let swapcache: Int32 = p.pointee.flags & PG.swapcache != 0 ? 1 : 0
        if p.pointee.refcount > 1 + swapcache { return false }
        if swapcache != 0 { folioFreeSwap(pfn) }
        if p.pointee.refcount != 1 { return false }
        folioMoveAnonRmap(pfn, vma: v)
        return true
    }

    /// wp_page_copy(): a new exclusive anonymous copy replaces the zero page,
    /// a shared anon page or a private file page.
    /// With `unshare` (FAULT_FLAG_UNSHARE, break_ksm) the copy is mapped
    /// read-only and clean, keeping the old PTE's soft-dirty bit.
    func wpPageCopy(_ m: MMID, _ v: VMAID, _ addr: UInt64, _ slot: UnsafeMutablePointer<UInt64>,
                    old: PFN, unshare: Bool = false) -> FaultResult {
        guard available(T.frame) >= 1, available(T.anonVMA) >= 1, available(T.avc) >= 1 else { return .oom }
        guard anonVMAPrepare(v) else { return .oom }
        // The secondary MMUs drop the old translation (MMU_NOTIFY_CLEAR) and
        // hear of the new one (set_pte_at_notify, v5.x-6.8).
        mmuInvalidateRangeStart(m, addr, addr + PAGE_SIZE)
        let pfn = allocPage()
        if !old.isNone { page(pfn).pointee.content = page(old).pointee.content }
        folioAddNewAnonRmap(pfn, vma: v, address: addr)
        if !old.isNone {
            let c = mmCounterFor(old)
            if c != .anon {
                addMMCounter(m, c, -1)
                addMMCounter(m, .anon, 1)
            }
        } else {
            addMMCounter(m, .anon, 1)
        }
        let orig = slot.pointee
        slot.pointee = PTE.make(pfn: pfn, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags))
            | (unshare ? orig & PTE.softDirty : PTE.rw | PTE.dirty)
        mmuChangePTE(m, addr, slot.pointee)
        // The old page's rmap goes after the new PTE is set (as in the kernel:
        // a munlock walk must not find the old PTE).
        if !old.isNone {
            folioRemoveRmapPTE(old, vma: v)
            putPage(old)
        }
        // Called here, not from a `defer` (an outlined closure per COW):
        // this is the only return after the range started.
        mmuInvalidateRangeEnd(m, addr, addr + PAGE_SIZE)
        return .ok
    }
}
