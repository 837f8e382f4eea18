import CShims

/// Adding and removing a page's mappings (mm/rmap.c). The functions here
/// take one page and act on its folio; a page of a large folio goes to the
/// folio's counters (Rmap/FolioRmap.swift) on a slow path. The names are the
/// 6.x folio names, with the v5.x page names in each comment.
extension Kernel {
    /// linear_page_index()
    /// Unsigned arithmetic that wraps, as the kernel's C (no overflow trap on
    /// the fault path).
    @inline(__always) func linearPageIndex(_ v: VMAID, _ addr: UInt64) -> UInt64 {
        ((addr &- vma(v).pointee.vm_start) >> PAGE_SHIFT) &+ vma(v).pointee.vm_pgoff
    }

    /// vma_address(): where `v` maps page index `index`; nil when outside.
    @inline(__always) package func vmaAddress(_ v: VMAID, index: UInt64) -> UInt64? {
        let p = vma(v).pointee
        guard index >= p.vm_pgoff else { return nil }
        let addr = p.vm_start &+ ((index - p.vm_pgoff) << PAGE_SHIFT)
        return addr >= p.vm_start && addr < p.vm_end ? addr : nil
    }

    /// The anon_vma a page's mapping points to, 0 if not anonymous.
    @inline(__always) package func pageAnonVMA(_ pfn: PFN) -> AnonVMAID {
        let m = page(folioOf(pfn)).pointee.mapping
        guard m & PageMapping.flags == PageMapping.anon else { return .none }
        return AnonVMAID(index(table: T.anonVMA, offset: m & ~PageMapping.flags))
    }

    /// The address_space a page-cache page belongs to, 0 if none.
    @inline(__always) func pageFile(_ pfn: PFN) -> FileID {
        let m = page(folioOf(pfn)).pointee.mapping
        guard m != 0, m & PageMapping.flags == 0 else { return .none }
        return FileID(index(table: T.file, offset: m))
    }

    /// __folio_set_anon() (v5.x __page_set_anon_rmap()): points the page at the
    /// VMA's anon_vma, or at its root when the page is not exclusive (a page
    /// that may be shared by several processes must be found from the root:
    /// the 2.6.34 "overly anonymous anon_vma" lesson).
    @inline(__always) func setPageAnonRmap(_ pfn: PFN, vma v: VMAID, address: UInt64, exclusive: Bool) {
        var av = vmaAnonVMA(v)
        if !exclusive && _fastPath(hooks.defect != .sharedAnonPageNotAtRoot) { av = anonVMARootOf(av) }
        let p = page(pfn)
        p.pointee.mapping = offset(table: T.anonVMA, index: av.rawValue) | PageMapping.anon
        p.pointee.index = linearPageIndex(v, address)
    }

    /// folio_add_new_anon_rmap() (page_add_new_anon_rmap()): the first mapping
    /// of a new, exclusive anonymous page.
    @inline(__always) func folioAddNewAnonRmap(_ pfn: PFN, vma v: VMAID, address: UInt64) {
        let p = page(pfn)
        p.pointee.flags |= PG.swapbacked | PG.anonExclusive | PG.lru
        p.pointee.mapcount = 0
        setPageAnonRmap(pfn, vma: v, address: address, exclusive: true)
        if vma(v).pointee.vm_flags & VM.locked != 0 { p.pointee.flags |= PG.mlocked | PG.unevictable }
        if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.anonAdded(self, pfn: pfn, vma: v, address: address) }
    }

    /// folio_add_anon_rmap_pte() (page_add_anon_rmap()): maps an existing
    /// anonymous page (swap-in, migration); a page mapped for the first time
    /// gets its anon rmap set.
    @inline(__always) func folioAddAnonRmapPTE(_ pfn: PFN, vma v: VMAID, address: UInt64, exclusive: Bool) {
        let p = page(pfn)
        if _slowPath(p.pointee.flags & PG.tail != 0 || p.pointee.flags & PG.head != 0) {
            folioAddAnonRmapPTEs(pfn, 1, vma: v, address: address, exclusive: exclusive)
            return
        }
        p.pointee.mapcount += 1
        // __folio_add_anon_rmap(): only a page that is not anonymous yet (not
        // even KSM: folio_test_anon() is true for PAGE_MAPPING_KSM) gets its rmap set.
        if p.pointee.mapcount == 0 && p.pointee.mapping & PageMapping.anon == 0 {
            setPageAnonRmap(pfn, vma: v, address: address, exclusive: exclusive)
        }
        if exclusive { p.pointee.flags |= PG.anonExclusive }
        if vma(v).pointee.vm_flags & VM.locked != 0 { p.pointee.flags |= PG.mlocked | PG.unevictable }
        if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.anonAdded(self, pfn: pfn, vma: v, address: address) }
    }

    /// folio_add_file_rmap_pte() (page_add_file_rmap()) and
    /// folio_dup_file_rmap_pte(): one more PTE maps a page-cache page.
    @inline(__always) func folioAddFileRmapPTE(_ pfn: PFN, vma v: VMAID) {
        page(pfn).pointee.mapcount += 1
        if vma(v).pointee.vm_flags & VM.locked != 0 { page(pfn).pointee.flags |= PG.mlocked | PG.unevictable }
        if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.fileAdded(self, pfn: pfn, vma: v) }
    }

    /// folio_try_dup_anon_rmap_pte() at fork: one more PTE maps the anon page;
    /// it is no longer exclusive to one process. (No pinned pages in the model,
    /// so the copy-instead branch never runs.)
    @inline(__always) func folioDupAnonRmapPTE(_ pfn: PFN, dst: VMAID) {
        let p = page(pfn)
        if _slowPath(p.pointee.flags & (PG.head | PG.tail) != 0) {
            folioDupAnonRmapPTEs(pfn, 1, dst: dst)
            return
        }
        if _fastPath(hooks.defect != .skipDupAnonRmap) { p.pointee.mapcount += 1 }
        p.pointee.flags &= ~PG.anonExclusive
    }

    /// folio_remove_rmap_pte() (page_remove_rmap()): one PTE less. The caller
    /// drops the MM counter and the page reference. An unmapped page keeps its
    /// mapping (an anon page may still be in the swap cache or a pagevec).
    @inline(__always) func folioRemoveRmapPTE(_ pfn: PFN, vma v: VMAID) {
        let p = page(pfn)
        if _slowPath(p.pointee.flags & (PG.head | PG.tail) != 0) {
            folioRemoveRmapPTEs(pfn, 1, vma: v)
            return
        }
        if _fastPath(hooks.defect != .skipRemoveRmapDecrement) { p.pointee.mapcount -= 1 }
        if p.pointee.mapcount < 0 {
            // No mapping left: munlock (mlock_drain / munlock_folio) and
            // clear the exclusive marker of an anon page.
            p.pointee.flags &= ~(PG.mlocked | PG.unevictable)
        } else if p.pointee.flags & PG.mlocked != 0 && vma(v).pointee.vm_flags & VM.locked != 0 {
            // A locked mapping goes while others remain (munmap or exit of
            // a VM_LOCKED VMA: munlock_vma_pages_all; 6.x munlock_vma_folio).
            munlockVMAPage(pfn)
        }
        if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.removed(self, pfn: pfn, vma: v) }
    }

    /// munlock_vma_page() (mm/mlock.c, v5.0): PG_mlocked is cleared, then,
    /// if other PTEs still map the page, try_to_munlock() walks the rmap
    /// with TTU_MUNLOCK and the first VM_LOCKED VMA that maps it mlocks it
    /// again (the seeds' page_mlock). 6.x counts the same thing in
    /// folio->mlock_count.
    func munlockVMAPage(_ pfn: PFN) {
        page(pfn).pointee.flags &= ~(PG.mlocked | PG.unevictable)
        if pageMapcount(pfn) > 0 { _ = tryToUnmap(pfn, flags: [.munlock]) }
    }

    /// folio_move_anon_rmap() (page_move_anon_rmap()): on reuse at a write
    /// fault, an exclusive page moves to the VMA's own anon_vma.
    @inline(__always) func folioMoveAnonRmap(_ pfn: PFN, vma v: VMAID) {
        let av = vmaAnonVMA(v)
        page(folioOf(pfn)).pointee.mapping = offset(table: T.anonVMA, index: av.rawValue) | PageMapping.anon
    }

    /// vm_normal_page(): the frame a present PTE maps, 0 for special mappings
    /// (the zero page).
    @inline(__always) package func vmNormalPage(_ pte: UInt64) -> PFN {
        guard PTE.isPresent(pte), pte & PTE.special == 0 else { return .none }
        let pfn = PTE.pfn(pte)
        return pfn == zeroPFN ? .none : pfn
    }
}
