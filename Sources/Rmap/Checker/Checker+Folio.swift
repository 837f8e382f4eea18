import CShims

/// The checker's rules for large folios: counters against the census of
/// their mappings, the _mm_id slots, the deferred split queue.
extension Checker {
    /// One page of a large folio. The tail names its head and holds no
    /// reference; the head carries the folio-wide checks.
    func checkLargeFolioPage(_ i: PFN, census: Int, mapcount: DenseCounts, entire: DenseCounts,
                             folioMMs: [PFN: [MMID: Int]]) {
        let p = k.page(i).pointee
        let bump = k.desc(T.frame).pointee.bump
        let head: PFN
        if p.flags & PG.tail != 0 {
            head = PFN(p.next)
            guard !head.isNone, head < i, head.rawValue < bump, !k.isFree(T.frame, head.rawValue),
                  k.page(head).pointee.flags & PG.head != 0, i < head.advanced(by: k.folioNrPages(head)) else {
                fail(.folioCounters, .frame(i), "frame \(i): tail page whose compound_head \(p.next) is no head of a folio holding it")
                return
            }
            if p.refcount != 0 { fail(.folioCounters, .frame(i), "frame \(i): tail page with _refcount \(p.refcount)") }
            // PG_mlocked is the folio's, on its head (mlock_folio of a large folio).
            if p.flags & (PG.mlocked | PG.unevictable) != 0 {
                fail(.mlock, .frame(i), "frame \(i): tail page of a large folio with PG_mlocked or PG_unevictable")
            }
        } else {
            head = i
        }
        let precise = census + (entire[head])
        if p.flags & PG.anonExclusive != 0 && precise > 1 {
            fail(.anonExclusiveShared, .frame(i), "frame \(i): PG_anon_exclusive but mapped \(precise) times (PTEs and PMDs)")
        }
        guard head == i else { return }
        checkLargeFolio(head, mapcount: mapcount, entire: entire[head], mms: folioMMs[head] ?? [:])
    }

    /// The folio-wide rules of a large folio at `head`.
    func checkLargeFolio(_ head: PFN, mapcount: DenseCounts, entire: Int, mms: [MMID: Int]) {
        let order = k.folioOrder(head)
        let o = head
        guard order >= 2, order <= RMAP_PMD_ORDER, head.rawValue & ((1 << order) - 1) == 0,
              head.advanced(by: UInt32(1) << order).rawValue <= k.desc(T.frame).pointee.bump else {
            fail(.folioCounters, .frame(o), "frame \(head): large folio of order \(order) not aligned, or beyond the frames")
            return
        }
        let nr = UInt32(1) << order
        var ptes = 0
        var pagesMapped: Int32 = 0
        for j in 0..<nr {
            let n = mapcount[head.advanced(by: j)]
            ptes += n
            if n > 0 { pagesMapped += 1 }
        }
        let h = k.page(head).pointee
        let p1 = k.page(head.advanced(by: 1)).pointee
        if Int(p1.large_mapcount) + 1 != ptes + entire {
            fail(.folioCounters, .frame(o), "frame \(head): _large_mapcount \(p1.large_mapcount) but \(ptes) PTEs and \(entire) PMDs map the folio")
        }
        if Int(p1.entire_mapcount) + 1 != entire {
            fail(.folioCounters, .frame(o), "frame \(head): _entire_mapcount \(p1.entire_mapcount) but \(entire) PMDs map the folio")
        }
        let expectMapped = pagesMapped + (entire > 0 ? ENTIRELY_MAPPED : 0)
        if p1.nr_pages_mapped != expectMapped {
            fail(.folioCounters, .frame(o), "frame \(head): _nr_pages_mapped \(p1.nr_pages_mapped) but \(pagesMapped) pages mapped by PTEs and \(entire) PMDs")
        }
        let entries = pmdMigrationEntries[head] ?? 0
        if Int(h.refcount) < ptes + entire + entries || h.refcount <= 0 {
            fail(.refcount, .frame(o), "frame \(head): folio _refcount \(h.refcount) below its \(ptes + entire) mappings and \(entries) PMD migration entries")
        }
        checkLargeFolioMlock(head, mapped: ptes + entire > 0)
        if h.mapping & PageMapping.flags == PageMapping.anon && ptes + entire > 0 {
            let av = k.pageAnonVMA(head)
            if av.isNone || k.anonVMA(av).pointee.refcount <= 0 || k.isFree(T.anonVMA, av.rawValue) {
                fail(.pageAnonVMA, .frame(o), "frame \(head): folio->mapping points at freed anon_vma \(av)")
            }
        }
        // The _mm_id slots (CONFIG_MM_ID).
        var ids: [UInt32] = []
        for slot in 0..<2 {
            let id = k.folioMMID(head, slot)
            let mc = k.folioMMIDMapcount(head, slot)
            if id == 0 {
                if mc != -1 { fail(.folioMMIDs, .frame(o), "frame \(head): free _mm_id slot \(slot) with mapcount \(mc)") }
                continue
            }
            ids.append(id)
            // A slot counts the mappings its mm added while it held the
            // slot: never more than the mm has, fewer when some came while
            // both slots were taken ("valid corner cases where we might
            // underflow a per-MM mapcount", folio_sub_return_large_mapcount).
            if Int(mc) + 1 > mms[MMID(id)] ?? 0 {
                fail(.folioMMIDs, .frame(o), "frame \(head): _mm_id slot \(slot) counts \(Int(mc) + 1) mappings of mm \(id), which maps the folio \(mms[MMID(id)] ?? 0) times")
            }
        }
        if ids.count == 2 && ids[0] == ids[1] {
            fail(.folioMMIDs, .frame(o), "frame \(head): both _mm_id slots name mm \(ids[0])")
        }
        if mms.count >= 2 && !k.folioMMIDsShared(head) {
            fail(.folioMMIDs, .frame(o), "frame \(head): mapped by \(mms.count) mms but not marked shared")
        }
        if ptes + entire == 0 && k.folioMMIDsShared(head) {
            fail(.folioMMIDs, .frame(o), "frame \(head): unmapped but marked shared")
        }
    }

    /// The deferred split queue: a sound list of live anonymous large folios,
    /// each flagged partially mapped; and every partially mapped folio is on it.
    func checkDeferredSplitQueue(mapcount: DenseCounts, entire: DenseCounts) {
        let h = k.header.pointee
        let bump = k.desc(T.frame).pointee.bump
        var listed = Set<PFN>()
        var f = PFN(h.deferred_split_head)
        var prev = PFN.none
        while !f.isNone {
            guard f.rawValue < bump, !k.isFree(T.frame, f.rawValue), k.folioIsLarge(f), !listed.contains(f) else {
                fail(.deferredSplit, nil, "deferred split queue: entry \(f) is no live large folio (or repeats)")
                return
            }
            listed.insert(f)
            if k.page(f.advanced(by: 2)).pointee.deferred_prev != prev.rawValue {
                fail(.deferredSplit, .frame(f), "frame \(f): deferred split back link \(k.page(f.advanced(by: 2)).pointee.deferred_prev), expected \(prev)")
            }
            prev = f
            f = PFN(k.page(f.advanced(by: 2)).pointee.deferred_next)
        }
        if prev.rawValue != h.deferred_split_tail {
            fail(.deferredSplit, nil, "deferred split queue: tail \(h.deferred_split_tail), the list ends at \(prev)")
        }
        if UInt32(listed.count) != h.deferred_split_len {
            fail(.deferredSplit, nil, "deferred split queue: split_queue_len \(h.deferred_split_len), \(listed.count) folios on it")
        }
        var i: UInt32 = 1
        while i < bump {
            defer { i += 1 }
            let pfn = PFN(i)
            guard !k.isFree(T.frame, i), k.page(pfn).pointee.flags & PG.head != 0, pfn != k.hugeZeroPFN else { continue }
            let order = k.folioOrder(pfn)
            guard order >= 2, order <= RMAP_PMD_ORDER else { continue }
            let nr = UInt32(1) << order
            var mapped: UInt32 = 0
            for j in 0..<nr where (mapcount[pfn.advanced(by: j)]) > 0 { mapped += 1 }
            let partial = k.pageIsAnon(pfn) && (entire[pfn]) == 0 && mapped > 0 && mapped < nr
            let flagged = k.folioOnDeferredList(pfn)
            if flagged != listed.contains(pfn) {
                fail(.deferredSplit, .frame(pfn), "frame \(i): PG_partially_mapped \(flagged) but on the deferred split queue: \(listed.contains(pfn))")
            } else if partial && !flagged && pmdMigrationEntries[pfn] == nil && !pteMigratingFolios.contains(pfn)
                && k.page(pfn).pointee.flags & PG.remappedInPart == 0 {
                // Every partial unmap queues the folio (deferred_split_folio).
                // Not the converse: a queued folio stays queued when its
                // pages are mapped again (a device-exclusive entry restored),
                // and the shrinker splits it then as the kernel's does
                // (PG_partially_mapped is only cleared off the queue). Nor
                // for a folio under migration: its entries come back one by
                // one (a PMD migration entry split to PTE entries unmapped
                // nothing page by page, so nothing queued it), nor after
                // them when faults finished some entries one by one and the
                // rest were zapped; nor for a folio whose pages do_swap_page
                // mapped back one by one from the swap cache (THP_SWAP):
                // adding a mapping queues nothing (PG.remappedInPart).
                fail(.deferredSplit, .frame(pfn), "frame \(i): \(mapped) of \(nr) pages mapped by PTEs and \(entire[pfn]) PMDs, but not on the deferred split queue")
            }
        }
        // Deposited PTE tables only under PMD tables (counted against their
        // leaves in `run`); a PTE or upper table deposits nothing.
        let pd = k.desc(T.ptPage).pointee
        var t: UInt32 = 1
        while t < pd.bump {
            defer { t += 1 }
            if k.isFree(T.ptPage, t) { continue }
            let d = k.ptDesc(t).pointee
            if d.level != 2 && d.next != 0 && d.level != 1 {
                fail(.pmdLeaf, nil, "page table \(t) (level \(d.level)) holds deposited tables")
            }
        }
    }

    /// mlock of a large folio (6.18, see MlockFolio.swift): PG_mlocked and
    /// PG_unevictable go together on the head; a folio that is mapped and
    /// mlocked is mapped by at least one VM_LOCKED VMA (every removal of a
    /// mapping in a locked VMA, and every munlock of one, calls
    /// munlock_folio); mlock_count counts at most one mlock per locked VMA
    /// that maps it (mlock_new_folio and mlock_fixup's walk count one each,
    /// a reclaim walk's restore counts none), and is 0 when not mlocked.
    /// Not required: that a folio fully mapped by a locked VMA is mlocked
    /// (the kernel mlocks large folios lazily: a PMD split, a partial mlock
    /// range or a migration leaves it to reclaim).
    func checkLargeFolioMlock(_ head: PFN, mapped: Bool) {
        let h = k.page(head).pointee
        let mlocked = h.flags & PG.mlocked != 0
        if mlocked != (h.flags & PG.unevictable != 0) {
            fail(.mlock, .frame(head), "frame \(head): large folio with PG_mlocked \(mlocked) but PG_unevictable \(!mlocked)")
        }
        if !mlocked && h.prev != 0 {
            fail(.mlock, .frame(head), "frame \(head): large folio not mlocked with mlock_count \(h.prev)")
        }
        guard mapped else { return }
        let locked = lockedFolioVMAs[head]?.count ?? 0
        if mlocked && locked == 0 {
            fail(.mlock, .frame(head), "frame \(head): large folio mlocked but no VM_LOCKED VMA maps it")
        }
        if Int(h.prev) > locked {
            fail(.mlock, .frame(head), "frame \(head): mlock_count \(h.prev) but \(locked) VM_LOCKED VMAs map the folio")
        }
    }
}
