import CShims

/// Splitting large anonymous folios (mm/huge_memory.c __folio_split,
/// deferred_split_scan) and the mappings of a folio's pages.
extension Kernel {
    /// Every PTE that maps page `pfn` of an anonymous folio: the VMAs of its
    /// anon_vma's tree that cover the page's index, at the page's address
    /// there (what rmap_walk_anon + page_vma_mapped_walk find).
    func forEachAnonPTEMapping(_ pfn: PFN, _ body: (VMAID, UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        let av = pageAnonVMA(pfn)
        guard anonVMAIsLive(av) else { return }
        let head = folioOf(pfn)
        let idx = page(head).pointee.index &+ UInt64(head.distance(to: pfn))
        let tree = avcTree
        var a = AVCID(IntervalTree.iterFirst(root: anonVMARoot(av).pointee, start: idx, last: idx, tree))
        while !a.isNone {
            let v = avcVMA(a)
            if let addr = vmaAddress(v, index: idx),
               let s = leafSlot(root: mm(vmMM(v)).pointee.pgd, key: addr),
               PTE.isPresent(s.pointee), s.pointee & PTE.special == 0, PTE.pfn(s.pointee) == pfn {
                body(v, addr, s)
            }
            a = AVCID(IntervalTree.iterNext(a.rawValue, start: idx, last: idx, tree))
        }
    }

    /// Every PMD leaf that maps the THP at `head`.
    func forEachAnonPMDMapping(_ head: PFN, _ body: (VMAID, UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        forEachAnonPMD(head, where: { PTE.isPMDLeaf($0) && PTE.pfn($0) == head }, body)
    }

    /// Every PMD migration entry that names the folio at `head` (what
    /// page_vma_mapped_walk with PVMW_MIGRATION finds at the PMD level).
    func forEachPMDMigrationEntry(_ head: PFN, _ body: (VMAID, UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        forEachAnonPMD(head, where: { PTE.isPMDMigrationEntry($0) && PTE.swpOffsetPFN($0) == head }, body)
    }

    /// The PMD-level half of rmap_walk_anon for the folio at `head`: in the
    /// VMAs of its anon_vma's tree that cover its first page, at the
    /// (PMD-aligned) address of that page, each PMD entry `matches` accepts.
    /// The body may change the VMAs' page tables, not the tree: the entries
    /// are gathered first.
    private func forEachAnonPMD(_ head: PFN, where matches: (UInt64) -> Bool,
                                _ body: (VMAID, UInt64, UnsafeMutablePointer<UInt64>) -> Void) {
        let av = pageAnonVMA(head)
        guard anonVMAIsLive(av) else { return }
        let idx = page(head).pointee.index
        let tree = avcTree
        var found: [(VMAID, UInt64, UnsafeMutablePointer<UInt64>)] = []
        var a = AVCID(IntervalTree.iterFirst(root: anonVMARoot(av).pointee, start: idx, last: idx, tree))
        while !a.isNone {
            let v = avcVMA(a)
            if let addr = vmaAddress(v, index: idx), addr & (Kernel.pmdSize - 1) == 0,
               let pmd = pmdSlot(root: mm(vmMM(v)).pointee.pgd, key: addr), matches(pmd.pointee) {
                found.append((v, addr, pmd))
            }
            a = AVCID(IntervalTree.iterNext(a.rawValue, start: idx, last: idx, tree))
        }
        for f in found { body(f.0, f.1, f.2) }
    }

    /// split_folio() of an anonymous large folio: its PMD mappings are split
    /// first (unmap_folio's TTU_SPLIT_HUGE_PMD), then it becomes 2^order
    /// small folios, each keeping its page's mappings, content, mapcount and
    /// PG_anon_exclusive (__split_huge_page; the migration entries of the
    /// kernel's unmap/remap round trip keep the PTE bits). remap_page with
    /// RMP_USE_SHARED_ZEROPAGE: a page whose data is all zero and that is
    /// not mlocked is mapped to the shared zero page in every process
    /// instead (try_to_map_unused_to_zeropage). Pages left unmapped are
    /// freed. False, with nothing changed, for a folio with references
    /// beyond its mappings (can_split_folio) or in the swap cache.
    @discardableResult
    ///
    /// `pinned`: a page of the folio the caller holds a reference on
    /// (split_huge_page(page) from ksmd: can_split_folio() allows the
    /// caller's pin, and the pin stays on that page after the split).
    package func splitFolio(_ head: PFN, pinned: PFN = .none) -> Bool {
        guard folioIsLarge(head), head != hugeZeroPFN, pageIsAnon(head), !pageIsKSM(head) else { return false }
        let h = page(head)
        let pins = pinned.isNone ? 0 : 1
        guard h.pointee.flags & PG.swapcache == 0, Int(h.pointee.refcount) == folioLargeMapcount(head) + pins else { return false }
        forEachAnonPMDMapping(head) { v, haddr, pmd in splitHugePMD(v, haddr, pmd) }
        deferredSplitRemove(head)
        let nr = folioNrPages(head)
        let mapping = h.pointee.mapping
        let index = h.pointee.index
        // The flags __split_huge_page_tail() copies from the head.
        let inherited = h.pointee.flags & (PG.swapbacked | PG.lru | PG.dirty | PG.referenced | PG.active | PG.uptodate
            | PG.mlocked | PG.unevictable | PG.workingset | PG.young | PG.idle)
        for i in 0..<nr {
            let p = page(head.advanced(by: i))
            p.pointee.flags = (p.pointee.flags & (PG.anonExclusive | PG.hwpoison)) | inherited
            p.pointee.mapping = mapping
            p.pointee.index = index &+ UInt64(i)
            p.pointee.private_ = 0
            p.pointee.next = 0
            p.pointee.prev = 0
            p.pointee.refcount = p.pointee.mapcount + 1 + (head.advanced(by: i) == pinned ? 1 : 0)  // one reference per PTE, and the caller's
            if i > 0 {
                header.pointee.next_frame_serial &+= 1
                p.pointee.serial = header.pointee.next_frame_serial
            }
        }
        // remap_page(): zero-filled pages go to the shared zero page.
        for i in 0..<nr {
            let pfn = head.advanced(by: i)
            let p = page(pfn)
            guard p.pointee.mapcount >= 0, p.pointee.content == 0, p.pointee.flags & PG.hwpoison == 0 else { continue }
            // remove_migration_ptes() visits the mappings in rmap order; one
            // in a VM_LOCKED VMA is restored and mlocks the small folio
            // (mlock_vma_folio), and from then on the folio is mlocked: the
            // mappings visited after it keep the page too
            // (try_to_map_unused_to_zeropage skips an mlocked folio).
            forEachAnonPTEMapping(pfn) { v, addr, slot in
                if vma(v).pointee.vm_flags & VM.locked != 0 {
                    p.pointee.flags |= PG.mlocked | PG.unevictable
                    return
                }
                guard p.pointee.flags & PG.mlocked == 0 else { return }
                let m = vmMM(v)
                slot.pointee = PTE.make(pfn: zeroPFN, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags)) | PTE.special
                p.pointee.mapcount -= 1
                p.pointee.refcount -= 1
                addMMCounter(m, .anon, -1)
                if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.removed(self, pfn: pfn, vma: v) }
            }
        }
        // remove_migration_pte() -> folio_add_anon_rmap_pte() ->
        // mlock_vma_folio(): a small folio mapped in a VM_LOCKED VMA is
        // mlocked. One that no locked VMA maps keeps no PG_mlocked from its
        // head (the model's small pages are mlocked exactly when a locked
        // VMA maps them; the kernel clears a stale flag at the next munlock
        // or reclaim walk, which no trace observes).
        for i in 0..<nr where page(head.advanced(by: i)).pointee.mapcount >= 0 {
            let pfn = head.advanced(by: i)
            var locked = false
            forEachAnonPTEMapping(pfn) { v, _, _ in
                if vma(v).pointee.vm_flags & VM.locked != 0 { locked = true }
            }
            if locked { page(pfn).pointee.flags |= PG.mlocked | PG.unevictable }
            else { page(pfn).pointee.flags &= ~(PG.mlocked | PG.unevictable) }
        }
        for i in 0..<nr where page(head.advanced(by: i)).pointee.refcount == 0 {
            page(head.advanced(by: i)).pointee.mapcount = -1
            free(T.frame, head.advanced(by: i).rawValue)
        }
        header.pointee.thp_split_page &+= 1
        return true
    }

    /// deferred_split_scan() as `thp shrink` runs it (shrink_underused 0):
    /// every folio on the queue, in order, is split; one that cannot be
    /// split stays queued.
    package func deferredSplitScan() {
        var f = PFN(header.pointee.deferred_split_head)
        var folios: [PFN] = []
        while !f.isNone && folios.count < Int(header.pointee.deferred_split_len) {
            folios.append(f)
            f = PFN(page(f.advanced(by: 2)).pointee.deferred_next)
        }
        for head in folios { splitFolio(head) }
    }

    /// The `split` statement (split_huge_pages_pid): every anonymous large
    /// folio `m` maps in [start, end) is split, each once. A hugetlb VMA is
    /// passed over whole (vma_not_suitable_for_thp_split): its folios are
    /// never split.
    package func splitFoliosInRange(_ m: MMID, _ start: UInt64, _ end: UInt64) {
        var a = start
        var done = Set<PFN>()
        while a < end {
            let v = vmaLookup(m, a)
            if !v.isNone && isHugetlbVMA(v) { a = vma(v).pointee.vm_end; continue }
            let pfn = mappedPage(m, a)
            a += PAGE_SIZE
            guard !pfn.isNone else { continue }
            let head = folioOf(pfn)
            guard folioIsLarge(head), done.insert(head).inserted else { continue }
            splitFolio(head)
        }
    }
}
