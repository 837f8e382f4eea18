import CShims

/// The checker's rules for hugetlb (Hugetlb/Hugetlb.swift): the pool's
/// counters against a census of its folios, the reservation count against
/// the reservation maps, and each folio's entire mapcount against the
/// entries that map it.
extension Checker {
    /// A PMD entry of hugetlb VMA `v` at `haddr` (the census of the VMA walk).
    /// An entry of a PMD table shared by several mms (huge_pmd_share) is
    /// one mapping: it counts once (`seen`), though every sharer's walk finds it.
    func censusHugetlbLeaf(_ m: MMID, _ v: VMAID, _ haddr: UInt64, _ slot: UnsafeMutablePointer<UInt64>,
                           maps: inout [PFN: Int], seen: inout Set<UnsafeMutablePointer<UInt64>>,
                           mappedBy: inout [(pfn: PFN, vma: VMAID, addr: UInt64)],
                           migration: inout [PFN: Int]) {
        let e = slot.pointee
        let p = k.vma(v).pointee
        if PTE.isHWPoisonEntry(e) {
            // A hugetlb hwpoison entry (try_to_unmap of a poisoned folio):
            // no mapping, no reference, naming the head of a hugetlb folio
            // with PG_hwpoison (in use, or on the free list when memory
            // failure could not dissolve it), or the head a dissolved one had,
            // whose raw page memory_failure kept (PG.hugetlbRawHWPoison).
            let head = PTE.swpOffsetPFN(e)
            guard haddr >= p.vm_start, haddr + Kernel.hpageSize <= p.vm_end, !head.isNone,
                  head.rawValue < k.desc(T.frame).pointee.bump,
                  poisonedHugetlbHead(head) || dissolvedHugetlbHead(head) else {
                fail(.hwpoisonEntry, .mm(m), "mm \(m): hugetlb hwpoison entry at \(hex(haddr)) of vma \(v) names frame \(head), not a poisoned hugetlb folio (or the head of a dissolved one) inside the VMA")
                return
            }
            return
        }
        if PTE.isPMDMigrationEntry(e) {
            // A hugetlb migration entry: no mapping, names an in-use hugetlb
            // folio whose reference it keeps (model); counted once per table slot.
            let head = PTE.swpOffsetPFN(e)
            guard haddr >= p.vm_start, haddr + Kernel.hpageSize <= p.vm_end, !head.isNone,
                  head.rawValue < k.desc(T.frame).pointee.bump, !k.isFree(T.frame, head.rawValue),
                  k.folioIsLarge(head), k.folioIsHugetlb(head), k.page(head).pointee.refcount > 0 else {
                fail(.hugetlbMigrationEntry, .mm(m), "mm \(m): hugetlb migration entry at \(hex(haddr)) of vma \(v) names frame \(head), not an in-use hugetlb folio inside the VMA")
                return
            }
            if seen.insert(slot).inserted { migration[head, default: 0] += 1 }
            return
        }
        let head = PTE.pfn(e)
        guard haddr >= p.vm_start, haddr + Kernel.hpageSize <= p.vm_end, !head.isNone,
              head.rawValue < k.desc(T.frame).pointee.bump, !k.isFree(T.frame, head.rawValue),
              k.folioIsLarge(head), k.folioIsHugetlb(head), k.page(head).pointee.refcount > 0 else {
            fail(.hugetlbFolio, .mm(m), "mm \(m): hugetlb entry at \(hex(haddr)) of vma \(v) maps frame \(head), not an in-use hugetlb folio inside the VMA")
            return
        }
        if seen.insert(slot).inserted { maps[head, default: 0] += 1 }
        mappedBy.append((head, v, haddr))
        if PTE.isWrite(e) && p.vm_flags & VM.shared == 0 && k.page(head).pointee.flags & PG.anonExclusive == 0 {
            fail(.writablePrivateNotExclusive, .frame(head), "frame \(head): hugetlb folio mapped writable by private vma \(v) at \(hex(haddr)) but not exclusive")
        }
    }

    /// Shared PMD tables: each table's share count is the number of PUD
    /// entries (of every mm) that point to it beyond the first, and every
    /// mm that shares one maps the whole PUD range there with a VMA that
    /// may share it (want_pmd_share).
    /// The first pass, per mm (called from `run` after the mm's walk):
    /// the PUD entries naming each PMD table, in a flat count (the upper
    /// levels only; no per-table allocation: most states share nothing).
    /// The PMD tables named are appended to `pmdRefs`, the tables read to
    /// `visited` (the incremental checker's record of the mm).
    func countPUDEntries(_ m: MMID, _ count: inout [UInt32], suspect: inout Bool) {
        let root = k.mm(m).pointee.pgd
        let pgd = k.ptTable(root)
        visited.append(root)
        var i4 = firstPresent(pgd, 0, 512)
        while i4 < 512 {
            let pudIndex = PTE.tablePage(pgd[i4])
            let pud = k.ptTable(pudIndex)
            visited.append(pudIndex)
            var i3 = firstPresent(pud, 0, 512)
            while i3 < 512 {
                let t = PTE.tablePage(pud[i3])
                pmdRefs.append(t)
                countPUDEntry(t, &count, suspect: &suspect)
                i3 = firstPresent(pud, i3 + 1, 512)
            }
            i4 = firstPresent(pgd, i4 + 1, 512)
        }
    }

    /// One PUD entry naming PMD table `t` (`countPUDEntries`, or the
    /// incremental checker replaying an unchanged mm's entries).
    @inline(__always)
    func countPUDEntry(_ t: UInt32, _ count: inout [UInt32], suspect: inout Bool) {
        let i = Int(t)
        if i < count.count {
            count[i] += 1
            if count[i] > 1 || k.pmdShareCount(t) > 0 { suspect = true }
        }
    }

    /// `count`, `suspect`: the first pass's (`countPUDEntries` of every mm).
    func checkPMDShares(mms: [MMID], count: [UInt32], suspect: Bool) {
        guard suspect else { return }
        // Second pass, only for the tables met twice or with a share count:
        // who points to them.
        var refs: [UInt32: [(MMID, UInt64)]] = [:]
        for m in mms {
            let pgd = k.ptTable(k.mm(m).pointee.pgd)
            for i4 in 0..<512 where pgd[i4] != 0 {
                let pud = k.ptTable(PTE.tablePage(pgd[i4]))
                for i3 in 0..<512 where pud[i3] != 0 {
                    let t = PTE.tablePage(pud[i3])
                    guard Int(t) < count.count, count[Int(t)] > 1 || k.pmdShareCount(t) > 0 else { continue }
                    refs[t, default: []].append((m, UInt64(i4) << 39 | UInt64(i3) << 30))
                }
            }
        }
        for (table, users) in refs {
            if Int(k.pmdShareCount(table)) != users.count - 1 {
                fail(.hugetlbPMDShare, nil, "page table \(table): pt_share_count \(k.pmdShareCount(table)), \(users.count) PUD entries point to it")
            }
            for (m, addr) in users {
                let v = k.vmaLookup(m, addr)
                if v.isNone || !k.wantPMDShare(v, addr) {
                    fail(.hugetlbPMDShare, .mm(m), "mm \(m): shares page table \(table) at \(hex(addr)) without a VMA that may share it")
                }
            }
        }
    }

    /// A live hugetlb folio's head with PG_hwpoison.
    func poisonedHugetlbHead(_ head: PFN) -> Bool {
        !k.isFree(T.frame, head.rawValue) && k.folioIsLarge(head) && k.folioIsHugetlb(head)
            && k.page(head).pointee.flags & PG.hwpoison != 0
    }

    /// `head` was the head of a poisoned hugetlb folio memory_failure
    /// dissolved: the raw page it kept, inside the folio's 2 MiB, names it.
    func dissolvedHugetlbHead(_ head: PFN) -> Bool {
        guard head.rawValue % RMAP_PMD_NR == 0 else { return false }
        let bump = k.desc(T.frame).pointee.bump
        for i in 0..<RMAP_PMD_NR where head.rawValue + i < bump {
            let f = head.advanced(by: i)
            if k.isFree(T.frame, f.rawValue) { continue }
            let pg = k.page(f).pointee
            if pg.flags & PG.hugetlbRawHWPoison != 0 && pg.private_ == UInt64(head.rawValue) { return true }
        }
        return false
    }

    /// The raw page memory_failure kept of a dissolved hugetlb folio: a
    /// small page with PG_hwpoison, its one reference, mapped nowhere, inside
    /// the 2 MiB of the head it names.
    func checkHugetlbRawHWPoison(_ pfn: PFN, census: Int) {
        let pg = k.page(pfn).pointee
        let head = UInt32(truncatingIfNeeded: pg.private_)
        if pg.flags & (PG.head | PG.tail) != 0 || pg.flags & PG.hwpoison == 0 || pg.refcount != 1 || census != 0
            || pg.private_ > UInt64(UInt32.max) || head % RMAP_PMD_NR != 0 || pfn.rawValue < head
            || pfn.rawValue >= head + RMAP_PMD_NR {
            fail(.hugetlbPool, .frame(pfn), "frame \(pfn): kept raw page of a dissolved hugetlb folio with flags 0x\(String(pg.flags, radix: 16)), _refcount \(pg.refcount), \(census) mappings, naming head \(pg.private_)")
        }
    }

    /// The pool, the folios in use and the reservations.
    func checkHugetlb(maps: [PFN: Int], migration: [PFN: Int] = [:]) {
        let h = k.header.pointee
        let bump = k.desc(T.frame).pointee.bump
        // Census of the pool: every live head with PG_hugetlb.
        var total: UInt64 = 0, unreferenced: UInt64 = 0
        var inUse: [PFN] = []
        var i: UInt32 = RMAP_PMD_NR
        while i < bump {
            defer { i += RMAP_PMD_NR }
            let pfn = PFN(i)
            guard !k.isFree(T.frame, i), k.page(pfn).pointee.flags & PG.head != 0, k.folioIsHugetlb(pfn) else { continue }
            total += 1
            if k.page(pfn).pointee.refcount == 0 { unreferenced += 1 } else { inUse.append(pfn) }
        }
        // The free list: live unreferenced hugetlb heads, each once (bounded by the frames).
        var onList: UInt64 = 0
        var f = PFN(h.hugetlb_free_head)
        var seen = Set<PFN>()
        while !f.isNone {
            guard f.rawValue < bump, !k.isFree(T.frame, f.rawValue), k.folioIsHugetlb(f),
                  k.page(f).pointee.refcount == 0, seen.insert(f).inserted, onList < total else {
                fail(.hugetlbPool, .frame(f), "hugetlb free list: frame \(f) is no free hugetlb folio (or the list loops)")
                break
            }
            onList += 1
            f = PFN(k.page(f).pointee.next)
        }
        if h.nr_huge_pages != total || h.free_huge_pages != onList || onList != unreferenced || h.surplus_huge_pages != 0 {
            fail(.hugetlbPool, nil, "hugetlb pool: nr_huge_pages \(h.nr_huge_pages), free_huge_pages \(h.free_huge_pages), surplus \(h.surplus_huge_pages); census: \(total) folios, \(unreferenced) unreferenced, \(onList) on the free list")
        }
        // Folios in use: the entire mapcount counts the entries that map them.
        var restoring: Int64 = 0
        for head in inUse {
            let p = k.page(head).pointee
            let p1 = k.page(head.advanced(by: 1)).pointee
            let n = maps[head] ?? 0
            if Int(p1.entire_mapcount) + 1 != n || p1.large_mapcount != p1.entire_mapcount || p1.nr_pages_mapped != 0 {
                fail(.hugetlbFolio, .frame(head), "frame \(head): hugetlb folio with _entire_mapcount \(p1.entire_mapcount), _large_mapcount \(p1.large_mapcount), _nr_pages_mapped \(p1.nr_pages_mapped), but \(n) entries map it")
            }
            let cached = p.mapping != 0 && p.mapping & PageMapping.flags == 0 ? 1 : 0
            let entries = migration[head] ?? 0
            if Int(p.refcount) < n + cached + entries {
                fail(.refcount, .frame(head), "frame \(head): hugetlb folio _refcount \(p.refcount) below its \(n) mappings, \(entries) migration entries and \(cached) page-cache reference")
            }
            if entries > 0 && (p.flags & PG.hugetlbTemporary != 0 || p.mapping == 0) {
                fail(.hugetlbMigrationEntry, .frame(head), "frame \(head): hugetlb folio named by \(entries) migration entries but \(p.mapping == 0 ? "without a mapping" : "temporary")")
            }
            if p.flags & PG.anonExclusive != 0 && n > 1 {
                fail(.anonExclusiveShared, .frame(head), "frame \(head): hugetlb folio PG_anon_exclusive but mapped \(n) times")
            }
            if p.flags & PG.hugetlbRestoreReserve != 0 { restoring += 1 }
        }
        // Reservations: each is an index of a shared file's map without its
        // page, or an index of an owner's private mapping not consumed yet;
        // the folios marked restore_reserve give theirs back when freed.
        var census: Int64 = -restoring
        let fd = k.desc(T.file).pointee
        var fi: UInt32 = 1
        while fi < fd.bump {
            defer { fi += 1 }
            guard !k.isFree(T.file, fi), k.file(FileID(fi)).pointee.kind == FileKind.hugetlbfs.rawValue else { continue }
            let nIdx = (k.file(FileID(fi)).pointee.size_pages + 511) >> 9
            k.walkLeaves(root: k.file(FileID(fi)).pointee.cache_root, start: 0, end: nIdx << PAGE_SHIFT) { _, slot in
                if slot.pointee & HugetlbEntry.region != 0 && slot.pointee & PTE.present == 0 { census += 1 }
                return true
            }
        }
        let vd = k.desc(T.vma).pointee
        var vi: UInt32 = 1
        while vi < vd.bump {
            defer { vi += 1 }
            let v = VMAID(vi)
            guard !k.isFree(T.vma, vi) else { continue }
            let p = k.vma(v).pointee
            guard p.vm_flags & VM.hugetlb != 0, p.vm_flags & (VM.mayshare | VM.hugetlbResvOwner) == VM.hugetlbResvOwner else { continue }
            for idx in k.vmaHugecacheOffset(v, p.vm_start)..<k.vmaHugecacheOffset(v, p.vm_end)
            where !k.hugetlbEntryHas(FileID(p.file), idx, HugetlbEntry.consumed) {
                census += 1
            }
        }
        let resv = Int64(bitPattern: h.resv_huge_pages)
        if resv > census {
            fail(.hugetlbOrphanReservation, nil, "hugetlb: \(resv - census) orphan reservation\(resv - census == 1 ? "" : "s"): "
                 + "resv_huge_pages \(resv), but the live owners' reservation maps and the hugetlbfs files hold \(census) "
                 + "(pool: total \(h.nr_huge_pages), free \(h.free_huge_pages), reserved \(resv), surplus \(h.surplus_huge_pages); "
                 + "\(restoring) in-use folio\(restoring == 1 ? "" : "s") to restore one)")
        } else if resv != census {
            fail(.hugetlbReservations, nil, "hugetlb: resv_huge_pages \(resv), the reservation maps hold \(census)")
        }
    }
}
