import CShims

/// The checker's scans of whole page-table pages: the gaps between VMAs
/// (nothing may be mapped there) and the PUD census of the PMD-share rule.
/// They read every slot of the tables they cross (the rule is about every
/// slot), so they are what a check of many small address spaces costs: a
/// tight pass over each table, eight slots at a time, that stops only at
/// the entries that are not none.
extension Checker {
    /// The index of the first non-none entry of `t[from..<to]`, or `to`.
    @inline(__always)
    func firstPresent(_ t: UnsafeMutablePointer<UInt64>, _ from: Int, _ to: Int) -> Int {
        let i = firstPresentSlot(t, from, to)
        let read = min(i + 1, to) - from  // the slots read
        work &+= read
        tableSlots &+= read
        return i
    }

    @inline(__always)
    func firstPresentSlot(_ t: UnsafeMutablePointer<UInt64>, _ from: Int, _ to: Int) -> Int {
        var i = from
        while i < to && i & 7 != 0 {
            if t[i] != 0 { return i }
            i += 1
        }
        while i + 8 <= to {
            if t[i] | t[i + 1] | t[i + 2] | t[i + 3] | t[i + 4] | t[i + 5] | t[i + 6] | t[i + 7] != 0 { break }
            i += 8
        }
        while i < to {
            if t[i] != 0 { return i }
            i += 1
        }
        return to
    }

    /// The first leaf that is not none in [start, end) of the page tables at
    /// `root`, as `walkPTETables` meets them in key order (absent subtrees
    /// skipped, a PMD entry that is not a table taken as a leaf): a PMD
    /// leaf goes to `pmd` with its first address, a PTE to `pte` with its
    /// address (as `walkLeaves` gives it: the range's start plus whole
    /// pages); then the scan stops (one report per gap). The tables read
    /// are appended to `visited` (what the incremental checker watches).
    @inline(__always)
    func firstLeafIn(root: UInt32, start: UInt64, end: UInt64, pmd: (UInt64) -> Void, pte: (UInt64) -> Void) {
        guard start < end else { return }
        let last = end - 1
        let span4: UInt64 = 1 << 39, span3: UInt64 = 1 << 30, span2: UInt64 = 1 << 21
        let pgd = k.ptTable(root)
        visited.append(root)
        var i4 = Kernel.index(start, level: 4)
        let hi4 = Kernel.index(last, level: 4)
        while true {
            i4 = firstPresent(pgd, i4, hi4 + 1)
            if i4 > hi4 { return }
            let base4 = UInt64(i4) << 39
            let s4 = max(start, base4), last4 = min(last, base4 + span4 - 1)
            let pudIndex = PTE.tablePage(pgd[i4])
            let pud = k.ptTable(pudIndex)
            visited.append(pudIndex)
            var i3 = Kernel.index(s4, level: 3)
            let hi3 = Kernel.index(last4, level: 3)
            while true {
                i3 = firstPresent(pud, i3, hi3 + 1)
                if i3 > hi3 { break }
                let base3 = base4 | UInt64(i3) << 30
                let s3 = max(s4, base3), last3 = min(last4, base3 + span3 - 1)
                let pmdIndex = PTE.tablePage(pud[i3])
                let pmdTable = k.ptTable(pmdIndex)
                visited.append(pmdIndex)
                var i2 = Kernel.index(s3, level: 2)
                let hi2 = Kernel.index(last3, level: 2)
                while true {
                    i2 = firstPresent(pmdTable, i2, hi2 + 1)
                    if i2 > hi2 { break }
                    let base2 = base3 | UInt64(i2) << 21
                    let e2 = pmdTable[i2]
                    if !PTE.isPMDTable(e2) { pmd(base2); return }
                    let s2 = max(s3, base2), last2 = min(last3, base2 + span2 - 1)
                    let lo1 = Kernel.index(s2, level: 1), hi1 = Kernel.index(last2, level: 1)
                    let pteIndex = PTE.tablePage(e2)
                    visited.append(pteIndex)
                    let j = firstPresent(k.ptTable(pteIndex), lo1, hi1 + 1)
                    // The address as walkPTETables counts it: from the
                    // range's start in this table (not page-aligned when a
                    // corrupt VMA bound is not).
                    if j <= hi1 { pte(s2 &+ UInt64(j - lo1) << 12); return }
                    i2 += 1
                }
                i3 += 1
            }
            i4 += 1
        }
    }
}
