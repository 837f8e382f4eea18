import CShims

/// The rmap calls of large folios (mm/rmap.c __folio_add_rmap,
/// __folio_remove_rmap, folio_add_new_anon_rmap; include/linux/rmap.h
/// __folio_try_dup_anon_rmap), as 6.18 runs them with CONFIG_PAGE_MAPCOUNT
/// and CONFIG_MM_ID: each page's _mapcount counts the PTEs that map it,
/// _entire_mapcount the PMDs, _large_mapcount every mapping, and
/// _nr_pages_mapped the pages mapped by PTEs plus ENTIRELY_MAPPED while a
/// PMD maps the folio. Each mapping holds one folio reference (the caller
/// takes and drops those).
extension Kernel {
    /// folio_add_new_anon_rmap(folio, vma, address, RMAP_EXCLUSIVE) of a new
    /// large folio: below PMD order every page is mapped by a PTE (the
    /// caller's set_ptes); at PMD order the folio is mapped by one PMD.
    /// `address` is the folio's first address.
    func folioAddNewAnonRmapLarge(_ head: PFN, vma v: VMAID, address: UInt64) {
        let h = page(head)
        h.pointee.flags |= PG.swapbacked | PG.lru
        setPageAnonRmap(head, vma: v, address: address, exclusive: true)
        let nr = folioNrPages(head)
        let p1 = page(head.advanced(by: 1))
        if folioOrder(head) < RMAP_PMD_ORDER {
            for i in 0..<nr {
                let p = page(head.advanced(by: i))
                p.pointee.mapcount = 0
                p.pointee.flags |= PG.anonExclusive
            }
            folioSetLargeMapcount(head, Int32(nr), vma: v)
            p1.pointee.nr_pages_mapped = Int32(nr)
        } else {
            p1.pointee.entire_mapcount = 0
            folioSetLargeMapcount(head, 1, vma: v)
            p1.pointee.nr_pages_mapped = ENTIRELY_MAPPED
            h.pointee.flags |= PG.anonExclusive
        }
        // folio_add_lru_vma() -> mlock_new_folio(): a new folio in a
        // VM_LOCKED VMA is mlocked (count 1).
        if vma(v).pointee.vm_flags & VM.locked != 0 { mlockNewLargeFolio(head) }
    }

    /// folio_add_anon_rmap_ptes(): `nr` more PTEs map pages [pfn, pfn + nr)
    /// of an anonymous large folio (swap-in, migration, a PMD split).
    func folioAddAnonRmapPTEs(_ pfn: PFN, _ nr: UInt32, vma v: VMAID, address: UInt64, exclusive: Bool) {
        let head = folioOf(pfn)
        var first: Int32 = 0
        for i in 0..<nr {
            let p = page(pfn.advanced(by: i))
            p.pointee.mapcount += 1
            if p.pointee.mapcount == 0 { first += 1 }
            if exclusive { p.pointee.flags |= PG.anonExclusive }
        }
        if first > 0 { page(head.advanced(by: 1)).pointee.nr_pages_mapped += first }
        folioAddLargeMapcount(head, Int32(nr), vma: v)
        // No mlock_vma_folio() here: __folio_add_anon_rmap() mlocks only
        // small folios ("leave page reclaim to handle large folio").
    }

    /// folio_try_dup_anon_rmap_ptes() at fork: the pages lose
    /// PG_anon_exclusive, each is mapped once more, and the child's mm gets
    /// its share of the large mapcount. (No pinned pages in the model: it
    /// never fails.)
    func folioDupAnonRmapPTEs(_ pfn: PFN, _ nr: UInt32, dst: VMAID) {
        let head = folioOf(pfn)
        for i in 0..<nr {
            let p = page(pfn.advanced(by: i))
            p.pointee.flags &= ~PG.anonExclusive
            if _fastPath(hooks.defect != .skipDupAnonRmap) { p.pointee.mapcount += 1 }
        }
        folioAddLargeMapcount(head, Int32(nr), vma: dst)
    }

    /// folio_try_dup_anon_rmap_pmd() at fork (copy_huge_pmd).
    func folioDupAnonRmapPMD(_ head: PFN, dst: VMAID) {
        page(head).pointee.flags &= ~PG.anonExclusive
        page(head.advanced(by: 1)).pointee.entire_mapcount += 1
        folioAddLargeMapcount(head, 1, vma: dst)
    }

    /// folio_remove_rmap_ptes(): `nr` PTEs that mapped pages [pfn, pfn + nr)
    /// go. A folio left partially mapped (a page unmapped while others stay
    /// mapped by PTEs, and no PMD maps it) is queued for deferred split.
    func folioRemoveRmapPTEs(_ pfn: PFN, _ nr: UInt32, vma v: VMAID) {
        let head = folioOf(pfn)
        folioSubLargeMapcount(head, Int32(nr), vma: v)
        var last: Int32 = 0
        for i in 0..<nr {
            let p = page(pfn.advanced(by: i))
            if _fastPath(hooks.defect != .skipRemoveRmapDecrement) { p.pointee.mapcount -= 1 }
            if p.pointee.mapcount < 0 { last += 1 }
        }
        var unmapped: Int32 = 0
        let p1 = page(head.advanced(by: 1))
        if last > 0 {
            p1.pointee.nr_pages_mapped -= last
            if p1.pointee.nr_pages_mapped < ENTIRELY_MAPPED { unmapped = last }
        }
        let partially = unmapped != 0 && p1.pointee.nr_pages_mapped != 0
        if partially && page(head).pointee.mapping & PageMapping.anon != 0 { deferredSplitFolio(head) }
        munlockVMAFolio(head, vma: v)
    }

    /// folio_remove_rmap_pmd(): one PMD mapping of the folio goes.
    func folioRemoveRmapPMD(_ head: PFN, vma v: VMAID) {
        folioSubLargeMapcount(head, 1, vma: v)
        let p1 = page(head.advanced(by: 1))
        p1.pointee.entire_mapcount -= 1
        var unmapped: Int32 = 0
        var pmdMapped: Int32 = 0
        if p1.pointee.entire_mapcount < 0 {
            p1.pointee.nr_pages_mapped -= ENTIRELY_MAPPED
            if p1.pointee.nr_pages_mapped < ENTIRELY_MAPPED {
                pmdMapped = Int32(folioNrPages(head))
                unmapped = max(0, pmdMapped - p1.pointee.nr_pages_mapped)
            }
        }
        let partially = unmapped != 0 && unmapped < pmdMapped
        if partially && page(head).pointee.mapping & PageMapping.anon != 0 { deferredSplitFolio(head) }
        munlockVMAFolio(head, vma: v)
    }

    /// munlock_vma_folio() (mm/internal.h): a mapping in a VM_LOCKED VMA
    /// goes, so munlock_folio() drops one mlock count ("we always munlock
    /// the folio and page reclaim will correct it if it's wrong").
    @inline(__always) func munlockVMAFolio(_ head: PFN, vma v: VMAID) {
        if vma(v).pointee.vm_flags & VM.locked != 0 && _fastPath(hooks.defect != .skipLargeFolioMunlock) { munlockLargeFolio(head) }
    }

    /// __wp_can_reuse_large_anon_folio() (mm/memory.c, CONFIG_MM_ID): a
    /// write fault on a PTE of an anonymous large folio reuses the page only
    /// when every reference is a mapping of this mm: never when a single page
    /// is mapped ("just free up the large folio"), never when the folio is
    /// marked mapped-shared, only when the large mapcount equals the refcount.
    func wpCanReuseLargeAnonFolio(_ head: PFN, vma v: VMAID) -> Bool {
        let mapcount = folioLargeMapcount(head)
        if mapcount <= 1 { return false }
        if folioMMIDsShared(head) { return false }
        let h = page(head)
        // "Freeing up the swapcache will fail if some PTEs are still swap
        // entries" (folio_free_swap).
        if h.pointee.flags & PG.swapcache != 0 { folioFreeSwap(head) }
        if mapcount != Int(h.pointee.refcount) { return false }
        let id = mmID(ofVMA: v)
        return folioMMID(head, 0) == id || folioMMID(head, 1) == id
    }
}
