import CShims

/// Four-level x86-64 page tables (PGD, PUD, PMD, PTE), 512 entries a level,
/// stored in page-table pages of the arena. Upper-level entries hold the
/// next table's PT-page index in their PFN field with _PAGE_TABLE bits.
///
/// The same radix structure keyed by page index instead of address holds
/// each file's page cache (the model's xarray): leaf entries are PFNs.
extension Kernel {
    static let pageTableBits: UInt64 = PTE.present | PTE.rw | PTE.user | PTE.accessed | PTE.dirty

    @inline(__always) static func index(_ key: UInt64, level: Int) -> Int {
        Int((key >> (12 + 9 * UInt64(level - 1))) & 511)
    }

    /// Allocates a zeroed page-table page for `level` (4 PGD ... 1 PTE); 0 when out of memory.
    func allocPTPage(level: UInt32) -> UInt32 {
        let i = alloc(T.ptPage)
        if i != 0 {
            markPTPage(i)
            ptDesc(i).pointee = rmap_ptdesc(level: level, used: 0, next: 0, ptl: 0)
        }
        return i
    }

    func freePTPage(_ i: UInt32) {
        ptDesc(i).pointee = rmap_ptdesc()
        markPTPage(i)
        free(T.ptPage, i)
    }

    /// The page-table page of `level` (1 PTE ... 4 PGD) on the way from
    /// `root` to `key`; 0 when a table above it is missing, or when `key` is
    /// mapped by a PMD leaf (a THP) and a PTE table is asked for.
    @inline(__always)
    func tableOnPath(root: UInt32, key: UInt64, level target: Int) -> UInt32 {
        var table = root
        var level = 4
        while level > target {
            // Read only: not marked for the incremental checker (a caller that
            // writes the table it gets reaches it through ptPage, which marks).
            let e = ptTable(table)[Kernel.index(key, level: level)]
            if e == 0 { return 0 }
            if _slowPath(level == 2 && !PTE.isPMDTable(e)) { return 0 }  // a PMD leaf or migration entry
            table = PTE.tablePage(e)
            level -= 1
        }
        return table
    }

    /// The leaf slot of a page cache's radix tree (the model's xarray, keyed
    /// by index << 12): no PMD leaves there, so no check for them.
    @inline(__always)
    func cacheSlot(root: UInt32, key: UInt64) -> UnsafeMutablePointer<UInt64>? {
        var table = root
        var level = 4
        while level > 1 {
            let e = ptTable(table)[Kernel.index(key, level: level)]  // read only
            if e == 0 { return nil }
            table = PTE.tablePage(e)
            level -= 1
        }
        return ptPage(table) + Kernel.index(key, level: 1)
    }

    /// pmd_offset(): the PMD slot for `key` under `root`, nil when a table
    /// above it is missing.
    @inline(__always)
    package func pmdSlot(root: UInt32, key: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let table = tableOnPath(root: root, key: key, level: 2)
        return table == 0 ? nil : ptPage(table) + Kernel.index(key, level: 2)
    }

    /// __pud_alloc() / __pmd_alloc(): the PMD slot for `key`, allocating the
    /// missing PUD and PMD tables; nil when out of page-table pages.
    func pmdSlotAlloc(root: UInt32, key: UInt64) -> UnsafeMutablePointer<UInt64>? {
        slotAlloc(root: root, key: key, level: 2)
    }

    /// The slot of `level` (2 PMD, 1 PTE) for `key`, allocating the missing
    /// tables above it; nil when out of page-table pages (what was allocated
    /// stays, as in the kernel, and is freed by free_pgtables).
    @inline(__always)
    private func slotAlloc(root: UInt32, key: UInt64, level target: Int) -> UnsafeMutablePointer<UInt64>? {
        var table = root
        var level = 4
        while level > target {
            // Upper levels are written only here, when a table is missing:
            // marked then, read without the mark otherwise.
            let slot = ptTable(table) + Kernel.index(key, level: level)
            if slot.pointee == 0 {
                let t = allocPTPage(level: UInt32(level - 1))
                if t == 0 { return nil }
                markPTPage(table)
                slot.pointee = (UInt64(t) << 12) | Kernel.pageTableBits
                ptDesc(table).pointee.used += 1
            }
            // A PTE table under a PMD leaf: the caller splits it first (__split_huge_pmd).
            precondition(level != 2 || PTE.isPMDTable(slot.pointee), "a PTE table asked for under a PMD leaf or PMD migration entry")
            table = PTE.tablePage(slot.pointee)
            level -= 1
        }
        return ptPage(table) + Kernel.index(key, level: target)
    }

    /// The PMD table (page-table page) that holds `key`'s PMD slot; 0 if none.
    @inline(__always) func pmdTable(root: UInt32, key: UInt64) -> UInt32 {
        tableOnPath(root: root, key: key, level: 2)
    }

    /// The page-table page that holds entry `slot`.
    @inline(__always) package func ptPageIndex(of slot: UnsafeMutablePointer<UInt64>) -> UInt32 {
        UInt32((slot - ptPage(0)) / ptStride)
    }

    /// pgtable_trans_huge_deposit(): a PTE table set aside with a THP's PMD
    /// mapping, so splitting the PMD later never needs memory. Kept on a
    /// LIFO list of the PMD table (pmd_huge_pte), threaded through the
    /// deposited pages' ptdesc `next`.
    func depositPTETable(pmdTable: UInt32, _ pte: UInt32) {
        ptDesc(pte).pointee.next = ptDesc(pmdTable).pointee.next
        ptDesc(pmdTable).pointee.next = pte
    }

    /// pgtable_trans_huge_withdraw(): the last deposited PTE table.
    func withdrawPTETable(pmdTable: UInt32) -> UInt32 {
        let pte = ptDesc(pmdTable).pointee.next
        precondition(pte != 0, "a PMD mapping without its deposited page table")
        ptDesc(pmdTable).pointee.next = ptDesc(pte).pointee.next
        ptDesc(pte).pointee.next = 0
        return pte
    }

    /// The page tables deposited with the PMD mappings of PMD table `pmdTable`.
    package func depositedPTETables(pmdTable: UInt32) -> [UInt32] {
        var out: [UInt32] = []
        var t = ptDesc(pmdTable).pointee.next
        while t != 0 && out.count < 512 {
            out.append(t)
            t = ptDesc(t).pointee.next
        }
        return out
    }

    /// pte_offset_map(): the leaf slot for `key` under `root`, nil when a table is missing.
    @inline(__always)
    package func leafSlot(root: UInt32, key: UInt64) -> UnsafeMutablePointer<UInt64>? {
        let table = tableOnPath(root: root, key: key, level: 1)
        return table == 0 ? nil : ptPage(table) + Kernel.index(key, level: 1)
    }

    /// __pte_alloc() and the upper-level allocations: the leaf slot for `key`,
    /// allocating missing tables; nil when out of page-table pages.
    func leafSlotAlloc(root: UInt32, key: UInt64) -> UnsafeMutablePointer<UInt64>? {
        slotAlloc(root: root, key: key, level: 1)
    }

    /// The first address of [addr, end) whose PMD entry is not none (a PTE
    /// table or a PMD leaf): `addr` itself when its PMD entry is present,
    /// else the start of the first such 2 MiB span; `end` when there is
    /// none. A none PGD, PUD or PMD entry is skipped whole, as the kernel's
    /// range walks skip pgd_none / pud_none / pmd_none: the steps are the
    /// absent entries of the tables that exist, not the range's pages.
    func nextPMDPresent(root: UInt32, from addr: UInt64, end: UInt64) -> UInt64 {
        var a = addr
        while a < end {
            let pud = ptTable(root)[Kernel.index(a, level: 4)]  // read only, as below
            if pud == 0 { a = (a | (1 << 39 - 1)) &+ 1; if a == 0 { break }; continue }
            let pmd = ptTable(PTE.tablePage(pud))[Kernel.index(a, level: 3)]
            if pmd == 0 { a = (a | (1 << 30 - 1)) &+ 1; if a == 0 { break }; continue }
            if ptTable(PTE.tablePage(pmd))[Kernel.index(a, level: 2)] != 0 { return a }
            a = (a | (Kernel.pmdSize - 1)) &+ 1
            if a == 0 { break }
        }
        return end
    }

    /// pte_free() of the PTE table holding `key` when all its entries are
    /// none: the fault that allocated it mapped nothing.
    func freeEmptyPTETable(root: UInt32, key: UInt64) {
        let table = tableOnPath(root: root, key: key, level: 2)
        guard table != 0 else { return }
        let pmd = ptPage(table) + Kernel.index(key, level: 2)
        guard PTE.isPMDTable(pmd.pointee) else { return }
        let pte = PTE.tablePage(pmd.pointee)
        let entries = ptTable(pte)  // read only: freed (and marked) below if empty
        for i in 0..<512 where entries[i] != 0 { return }
        pmd.pointee = 0
        ptDesc(table).pointee.used -= 1
        freePTPage(pte)
    }

    /// Visits every leaf slot in [start, end) whose tables exist, in key order,
    /// skipping absent subtrees in one step (as walk_page_range / zap_*_range do).
    /// `body` returns false to stop; `walkLeaves` then returns false.
    ///
    /// A PMD leaf (a PMD-mapped THP) or a PMD migration entry met on the way
    /// goes to `pmd` with the address of the PMD's first page, once, whatever
    /// part of its 2 MiB is in the range; without `pmd` the walk steps over it (callers that only
    /// ever see PTE-mapped ranges, and those that visit PMDs separately).
    @discardableResult @inline(__always)
    package func walkLeaves(root: UInt32, start: UInt64, end: UInt64,
                    _ body: (UInt64, UnsafeMutablePointer<UInt64>) -> Bool) -> Bool {
        walkLeaves(root: root, start: start, end: end, pmd: { _, _ in true }, body)
    }

    /// The walk itself, a leaf at a time, over `walkPTETables`.
    @discardableResult @inline(__always)
    package func walkLeaves(root: UInt32, start: UInt64, end: UInt64,
                    pmd: (UInt64, UnsafeMutablePointer<UInt64>) -> Bool,
                    _ body: (UInt64, UnsafeMutablePointer<UInt64>) -> Bool) -> Bool {
        walkPTETables(root: root, start: start, end: end, pmd: pmd) { addr, ptes, n in
            var k = addr
            for i in 0..<n {
                if !body(k, ptes + i) { return false }
                k &+= PAGE_SIZE
            }
            return true
        }
    }

    /// The walk of zap_pte_range() and copy_pte_range(): one call of `table`
    /// per PTE table met, with the first address, the slot of that address
    /// and the number of PTEs from there to the end of the range or of the
    /// table (at most 512), so that the caller holds one table (and one
    /// destination table, one rss vector) for the whole run of PTEs instead
    /// of walking four levels for each. Absent subtrees are skipped in one
    /// step; a PMD leaf goes to `pmd` as in `walkLeaves`. Four nested loops,
    /// not a recursion, so that it is inlined into each caller with both
    /// closures (a recursive walker with two closure parameters was no
    /// longer specialised per caller: every PTE visit became an indirect
    /// call, fork +44%).
    @discardableResult @inline(__always)
    package func walkPTETables(root: UInt32, start: UInt64, end: UInt64,
                    pmd: (UInt64, UnsafeMutablePointer<UInt64>) -> Bool,
                    _ table: (UInt64, UnsafeMutablePointer<UInt64>, Int) -> Bool) -> Bool {
        guard start < end else { return true }
        let span4: UInt64 = 1 << 39, span3: UInt64 = 1 << 30, span2: UInt64 = 1 << 21
        // The PGD and PUD tables are only read here (not marked for the
        // incremental checker); the PMD table (its slots go to `pmd`) and the
        // PTE tables (to `table`) may be written and are reached through ptPage.
        let pgd = ptTable(root)
        var k4 = start
        while k4 < end {
            let n4 = (k4 & ~(span4 - 1)) &+ span4
            let e4 = pgd[Kernel.index(k4, level: 4)]
            if e4 != 0 {
                let pud = ptTable(PTE.tablePage(e4))
                let end4 = n4 == 0 ? end : min(end, n4)
                var k3 = k4
                while k3 < end4 {
                    let n3 = (k3 & ~(span3 - 1)) &+ span3
                    let e3 = pud[Kernel.index(k3, level: 3)]
                    if e3 != 0 {
                        let pmdTable = ptPage(PTE.tablePage(e3))
                        let end3 = n3 == 0 ? end4 : min(end4, n3)
                        var k2 = k3
                        while k2 < end3 {
                            let n2 = (k2 & ~(span2 - 1)) &+ span2
                            let slot2 = pmdTable + Kernel.index(k2, level: 2)
                            let e2 = slot2.pointee
                            if e2 != 0 {
                                if _slowPath(!PTE.isPMDTable(e2)) {
                                    if !pmd(k2 & ~(span2 - 1), slot2) { return false }
                                } else {
                                    let end2 = n2 == 0 ? end3 : min(end3, n2)
                                    let ptes = ptPage(PTE.tablePage(e2)) + Kernel.index(k2, level: 1)
                                    if !table(k2, ptes, Int((end2 &- k2 &+ PAGE_SIZE &- 1) >> PAGE_SHIFT)) { return false }
                                }
                            }
                            if n2 == 0 { break }  // wrapped
                            k2 = n2
                        }
                    }
                    if n3 == 0 { break }
                    k3 = n3
                }
            }
            if n4 == 0 { break }
            k4 = n4
        }
        return true
    }

    /// free_pgd_range(): frees the page-table pages below `root` whose whole
    /// span lies inside [floor, ceiling) and intersects [start, end).
    /// `ceiling == 0` means the top of the address space.
    func freePgtables(root: UInt32, start: UInt64, end: UInt64, floor: UInt64, ceiling: UInt64) {
        freeLevel(table: root, level: 4, base: 0, start: start, end: end, floor: floor, ceiling: ceiling)
    }

    private func freeLevel(table: UInt32, level: Int, base: UInt64, start: UInt64, end: UInt64,
                           floor: UInt64, ceiling: UInt64) {
        let shift = 12 + 9 * UInt64(level - 1)
        let span: UInt64 = 1 << shift
        let entries = ptPage(table)
        let first = Int(((max(start, base) - base) >> shift) & 511)
        for i in first..<512 {
            let lo = base + UInt64(i) * span
            if lo >= end { break }
            let hi = lo + span
            let e = entries[i]
            guard e != 0, level > 1, level != 2 || PTE.isPMDTable(e) else { continue }
            let child = PTE.tablePage(e)
            if lo >= floor && (ceiling == 0 || hi <= ceiling) {
                freeSubtree(child, level: level - 1)
                entries[i] = 0
                ptDesc(table).pointee.used -= 1
            } else {
                freeLevel(table: child, level: level - 1, base: lo, start: max(start, lo),
                          end: min(end, hi), floor: floor, ceiling: ceiling)
            }
        }
    }

    /// Frees a page-table page and every table below it.
    func freeSubtree(_ table: UInt32, level: Int) {
        if level > 1 {
            let entries = ptPage(table)
            for i in 0..<512 where entries[i] != 0 && (level != 2 || PTE.isPMDTable(entries[i])) {
                freeSubtree(PTE.tablePage(entries[i]), level: level - 1)
            }
            if level == 2 { freeDeposited(pmdTable: table) }
        }
        freePTPage(table)
    }

    /// The deposited PTE tables still held by a PMD table that goes (they
    /// belong to PMD leaves zapped before free_pgtables; zap withdraws them,
    /// so this finds none unless a path forgot to).
    private func freeDeposited(pmdTable table: UInt32) {
        while ptDesc(table).pointee.next != 0 { freePTPage(withdrawPTETable(pmdTable: table)) }
    }
}
