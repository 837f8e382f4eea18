import CShims

/// mlock of large folios, as 6.18 does it (mm/mlock.c, mm/internal.h,
/// mm/rmap.c, mm/swap.c).
///
/// A large folio carries PG_mlocked (with PG_unevictable) on its head and
/// an approximate `mlock_count`, which the kernel overlays on `lru.prev`
/// while the folio sits on the unevictable LRU; the model keeps it in the
/// head's `prev` (free on an anonymous head: only balloon pages link it).
/// The rules, each in its kernel function below:
/// - a new folio faulted into a VM_LOCKED VMA is mlocked, count 1
///   (folio_add_lru_vma -> mlock_new_folio);
/// - mlock_fixup's walk (mlock_pte_range) mlocks a PMD-mapped folio, and a
///   PTE-mapped one only when it lies inside the walked range and its PTEs
///   there map all of it (folio_mlock_step, allow_mlock_munlock); each
///   mlock_folio on an mlocked folio counts one more;
/// - mapping a large folio by PTEs or a PMD (folio_add_anon_rmap_*) never
///   mlocks it ("only mlock normal 4K folio and leave page reclaim to handle
///   large folio");
/// - every rmap removal in a VM_LOCKED VMA (munlock_vma_folio) and
///   munlock_fixup's walk call munlock_folio: one count less, PG_mlocked
///   cleared at zero (__munlock_folio);
/// - reclaim's walks (try_to_unmap_one, folio_referenced_one) restore a
///   missed mlock of a folio fully mapped by one VM_LOCKED VMA: the folio is
///   isolated then, so the count is not raised (__mlock_folio finds it off
///   the LRU) and the putback sets it to 0 (lru_add: "underestimate, let
///   page reclaim fix it").
/// A large folio's mlock batch is drained at once (mlock_folio_batch for
/// folio_test_large), so no per-CPU delay applies to it.
extension Kernel {
    /// folio->mlock_count of a large folio (the model's head `prev`).
    @inline(__always) package func folioMlockCount(_ head: PFN) -> UInt32 { page(head).pointee.prev }

    /// mlock_folio() of a large folio on the LRU (__mlock_folio): PG_mlocked
    /// set; an unevictable, mlocked folio counts one more mlock, one moved
    /// to the unevictable list starts at 1.
    func mlockLargeFolio(_ head: PFN) {
        let h = page(head)
        if h.pointee.flags & (PG.mlocked | PG.unevictable) == PG.mlocked | PG.unevictable {
            h.pointee.prev &+= 1
        } else {
            h.pointee.flags |= PG.mlocked | PG.unevictable
            h.pointee.prev = 1
        }
    }

    /// mlock_new_folio() (folio_add_lru_vma in a VM_LOCKED VMA): a new folio
    /// is mlocked with mlock_count 1 (__mlock_new_folio).
    func mlockNewLargeFolio(_ head: PFN) {
        page(head).pointee.flags |= PG.mlocked | PG.unevictable
        page(head).pointee.prev = 1
    }

    /// mlock_vma_folio() from a reclaim walk (try_to_unmap_one,
    /// folio_referenced_one) on an isolated folio: PG_mlocked set, the count
    /// not raised (__mlock_folio returns when the folio is off the LRU).
    func mlockIsolatedLargeFolio(_ head: PFN) {
        let h = page(head)
        if h.pointee.flags & PG.mlocked == 0 { h.pointee.prev = 0 }  // the putback's lru_add: mlock_count = 0
        h.pointee.flags |= PG.mlocked | PG.unevictable
    }

    /// munlock_folio() of a large folio (__munlock_folio): an unevictable
    /// folio counts one mlock less and stays mlocked while any count is
    /// left; then PG_mlocked goes and the folio is evictable again.
    func munlockLargeFolio(_ head: PFN) {
        let h = page(head)
        if h.pointee.flags & PG.unevictable != 0 {
            if h.pointee.prev > 0 { h.pointee.prev -= 1 }
            if h.pointee.prev > 0 { return }
        }
        h.pointee.flags &= ~(PG.mlocked | PG.unevictable)
    }

    /// folio_mlock_step() (mm/mlock.c): how many PTEs from `slot` (mapping
    /// page `pfn` at `addr`) on, up to `end` (inside this PTE table), map
    /// pages of the large folio at `head`, stopping at the first that does
    /// not (non-present, or another folio's page).
    func folioMlockStep(_ head: PFN, _ pfn: PFN, _ slot: UnsafeMutablePointer<UInt64>, _ addr: UInt64, _ end: UInt64) -> Int {
        let nr = Int(folioNrPages(head))
        let count = min(nr - head.distance(to: pfn), Int((end - addr) >> PAGE_SHIFT))
        var i = 0
        while i < count {
            let e = slot[i]
            guard PTE.isPresent(e) else { break }
            let d = head.distance(to: PTE.pfn(e))
            if d < 0 || d >= nr { break }
            i += 1
        }
        return i
    }

    /// allow_mlock_munlock() for a large folio being mlocked: the folio lies
    /// inside [start, end) of the VMA (folio_within_range, by its pgoff) and
    /// the PTEs just walked map all of it.
    func allowMlockLargeFolio(_ head: PFN, vma v: VMAID, start: UInt64, end: UInt64, step: Int) -> Bool {
        let p = vma(v).pointee
        let s = max(start, p.vm_start), e = min(end, p.vm_end)
        guard s <= e else { return false }
        let pgoff = page(head).pointee.index
        let vmaPages = (p.vm_end - p.vm_start) >> PAGE_SHIFT
        guard pgoff >= p.vm_pgoff, pgoff - p.vm_pgoff < vmaPages else { return false }
        let addr = p.vm_start + (pgoff - p.vm_pgoff) << PAGE_SHIFT
        let size = UInt64(folioNrPages(head)) << PAGE_SHIFT
        guard addr >= s, e >= addr, e - addr >= size else { return false }
        return step == Int(folioNrPages(head))
    }

    /// Whether VMA `v` maps every page of the large folio at `head` by a PTE
    /// at the page's address (what try_to_unmap_one and folio_referenced_one
    /// count as "fully mapped" before they restore a missed mlock:
    /// `ptes == pvmw.nr_pages`), or by a PMD.
    func folioFullyMappedInVMA(_ head: PFN, vma v: VMAID) -> Bool {
        let root = mm(vmMM(v)).pointee.pgd
        let first = page(head).pointee.index
        let nr = folioNrPages(head)
        for i in 0..<nr {
            guard let addr = vmaAddress(v, index: first + UInt64(i)) else { return false }
            if let pmd = pmdSlot(root: root, key: addr), PTE.isPMDLeaf(pmd.pointee) {
                if PTE.pfn(pmd.pointee) == head { return true }
                return false
            }
            guard let s = leafSlot(root: root, key: addr), PTE.isPresent(s.pointee), s.pointee & PTE.special == 0,
                  PTE.pfn(s.pointee) == head.advanced(by: i) else { return false }
        }
        return true
    }
}
