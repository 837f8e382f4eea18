import CShims

/// The incremental checker's memory between checks (`rmap replay --check`,
/// `Machine.checksIncrementally`): per mm, what the last check's gap scan
/// (nothing mapped outside a VMA) and PUD census (the PMD-share rule) read
/// and found. Those two rules read every slot of every page-table page of
/// every mm; the rest of the checker reads what the state holds. An mm is
/// scanned again when a page-table page it read was reached since
/// (`Kernel.ptDirty`: every `ptPage` of the model marks its table, reads
/// included, and so do a table's allocation and freeing), when its PGD
/// changed, or when its VMA ranges differ from the ones the scan saw (a VMA
/// removed without zapping its PTEs leaves clean tables behind: the bug the
/// gap rule exists for). Otherwise its findings are replayed: the same
/// violations, in the same place of the list, and the same PUD entries
/// counted. The scans are deterministic functions of the tables they read
/// and of the VMA ranges, so the replay is what a full scan would give.
/// Every other rule runs in full. A fresh `Checker` has no memo: full.
final class CheckerMemo {
    struct Entry {
        var valid = false
        var pgd: UInt32 = 0
        /// The page-table pages the scans read (in `tablePool`).
        var tables: Range<Int> = 0..<0
        /// The VMA ranges, vm_start and vm_end per VMA (in `vmaPool`).
        var vmas: Range<Int> = 0..<0
        /// The PMD tables the mm's PUD entries name (in `refPool`).
        var refs: Range<Int> = 0..<0
        /// The gap violations found (in `failPool`).
        var fails: Range<Int> = 0..<0
        var size: Int { tables.count + vmas.count + refs.count + fails.count }
    }
    private(set) var entries: [Entry] = []  // by the mm's raw id
    private var tablePool: [UInt32] = []
    private var vmaPool: [UInt64] = []
    private(set) var refPool: [UInt32] = []
    private(set) var failPool: [CheckerViolation] = []
    private var live = 0
    /// Per mm of this check (by its place in the list): no table it read was reached.
    private var clean: [Bool] = []
    /// The mms whose page tables the last check scanned (the rest replayed).
    private(set) var rescanned = 0
    /// Checks run with this memo.
    private(set) var checks = 0

    /// At the start of a check, before its own walks reach any table.
    func begin(mms: [MMID], k: Kernel) {
        rescanned = 0
        checks += 1
        clean.removeAll(keepingCapacity: true)
        let dirty = k.ptDirty, mask = k.ptDirtyMask
        for m in mms {
            let i = Int(m.rawValue)
            guard i < entries.count, entries[i].valid, entries[i].pgd == k.mm(m).pointee.pgd else {
                clean.append(false)
                continue
            }
            var ok = true
            for j in entries[i].tables where dirty[Int(tablePool[j]) & mask] != 0 {
                ok = false
                break
            }
            clean.append(ok)
        }
    }

    /// At the end of a check: the marks are cleared (the check's own walks
    /// set them too), the pools compacted when mostly stale.
    func end(k: Kernel) {
        let n = min(Int(k.desc(T.ptPage).pointee.bump), k.ptDirtyMask + 1)
        k.ptDirty.update(repeating: 0, count: n)
        if tablePool.count + vmaPool.count + refPool.count + failPool.count > 2 * live + 65_536 { compact() }
    }

    /// Whether mm `m` (at `mmIndex` in this check's list) can be replayed:
    /// its tables untouched and its VMA ranges those of the last scan.
    func unchanged(mmIndex: Int, _ m: MMID, k: Kernel) -> Bool {
        guard clean[mmIndex] else { return false }
        let e = entries[Int(m.rawValue)]
        var j = e.vmas.lowerBound
        var v = k.firstVMA(m)
        while !v.isNone {
            guard j + 1 < e.vmas.upperBound else { return false }
            let p = k.vma(v)
            if p.pointee.vm_start != vmaPool[j] || p.pointee.vm_end != vmaPool[j + 1] { return false }
            j += 2
            v = k.nextVMA(v)
        }
        return j == e.vmas.upperBound
    }

    /// The last scan's gap violations and PMD-table references of mm `m`.
    func gapFails(_ m: MMID) -> Range<Int> { entries[Int(m.rawValue)].fails }
    func pmdRefs(_ m: MMID) -> Range<Int> { entries[Int(m.rawValue)].refs }

    /// What mm `m`'s scans read and found (after they ran).
    func record(_ m: MMID, k: Kernel, tables: [UInt32], pmdRefs: [UInt32], gapFails: [CheckerViolation]) {
        rescanned += 1
        let i = Int(m.rawValue)
        if i >= entries.count { entries.append(contentsOf: repeatElement(Entry(), count: i + 1 - entries.count)) }
        if entries[i].valid { live -= entries[i].size }
        var e = Entry()
        e.valid = true
        e.pgd = k.mm(m).pointee.pgd
        let t0 = tablePool.count
        tablePool.append(contentsOf: tables)
        e.tables = t0..<tablePool.count
        let v0 = vmaPool.count
        var v = k.firstVMA(m)
        while !v.isNone {
            vmaPool.append(k.vma(v).pointee.vm_start)
            vmaPool.append(k.vma(v).pointee.vm_end)
            v = k.nextVMA(v)
        }
        e.vmas = v0..<vmaPool.count
        let r0 = refPool.count
        refPool.append(contentsOf: pmdRefs)
        e.refs = r0..<refPool.count
        let f0 = failPool.count
        failPool.append(contentsOf: gapFails)
        e.fails = f0..<failPool.count
        entries[i] = e
        live += e.size
    }

    // MARK: scratch kept between checks

    private var pudCounts: [UInt32] = []
    private var mappings: [(pfn: PFN, vma: VMAID, addr: UInt64)] = []

    /// The census's list of mappings, empty, with the capacity it had.
    func takeMappings() -> [(pfn: PFN, vma: VMAID, addr: UInt64)] {
        var m: [(pfn: PFN, vma: VMAID, addr: UInt64)] = []
        swap(&m, &mappings)
        return m
    }
    func giveMappings(_ m: inout [(pfn: PFN, vma: VMAID, addr: UInt64)]) {
        m.removeAll(keepingCapacity: true)
        swap(&m, &mappings)
    }
    private var marks: VMAMarks?
    private var epochBase: UInt32 = 0
    deinit { marks?.deallocate() }

    /// The PUD census's counts, all zero, at least `size` of them.
    func takePUDCounts(size: Int) -> [UInt32] {
        var c: [UInt32] = []
        swap(&c, &pudCounts)
        if c.count < size { c.append(contentsOf: repeatElement(0, count: size - c.count)) }
        return c
    }

    /// Takes the counts back, zeroing the ones the mms' PUD entries raised
    /// (every mm of the check was recorded or replayed: its references are
    /// its entry's).
    func givePUDCounts(_ counts: [UInt32], mms: [MMID]) {
        var c = counts
        for m in mms {
            for j in entries[Int(m.rawValue)].refs {
                let t = Int(refPool[j])
                if t < c.count { c[t] = 0 }
            }
        }
        pudCounts = c
    }

    /// Per-VMA marks for the walk check, of at least `count` VMAs, and the
    /// epoch to count this check's from (`epochs` of them).
    func vmaMarks(count: Int, epochs: Int) -> (VMAMarks, UInt32) {
        if marks == nil || marks!.count < count || UInt64(epochBase) + UInt64(epochs) + 1 >= UInt64(UInt32.max) {
            marks?.deallocate()
            marks = VMAMarks(count: max(count, (marks?.count ?? 0) * 2))
            epochBase = 0
        }
        let base = epochBase
        epochBase += UInt32(epochs)
        return (marks!, base)
    }

    private func compact() {
        var t: [UInt32] = [], vs: [UInt64] = [], r: [UInt32] = [], f: [CheckerViolation] = []
        t.reserveCapacity(live); vs.reserveCapacity(live); r.reserveCapacity(live)
        for i in entries.indices where entries[i].valid {
            var e = entries[i]
            var s = t.count; t.append(contentsOf: tablePool[e.tables]); e.tables = s..<t.count
            s = vs.count; vs.append(contentsOf: vmaPool[e.vmas]); e.vmas = s..<vs.count
            s = r.count; r.append(contentsOf: refPool[e.refs]); e.refs = s..<r.count
            s = f.count; f.append(contentsOf: failPool[e.fails]); e.fails = s..<f.count
            entries[i] = e
        }
        tablePool = t; vmaPool = vs; refPool = r; failPool = f
    }
}
