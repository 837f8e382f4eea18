import CShims

/// A simulated secondary MMU (what KVM's shadow/EPT tables or a device's
/// IOMMU-less page table is to the kernel): a table of (mm, address) -> PFN
/// translations, filled only by `fault(_:process:address:)` from the primary
/// PTE, and kept correct only through the MMU-notifier hooks. Its contract:
/// no entry outlives the primary PTE it was copied from (`staleEntries`).
/// A fault inside an open invalidate_range_start/end window of the same mm
/// is refused, as KVM retries while mmu_invalidate_in_progress.
public final class ShadowMMU: MMUNotifier {
    public struct Key: Hashable, Sendable { public var mm: MMID; public var address: UInt64 }
    public struct Entry: Sendable { public var pfn: PFN; public var young: Bool }

    public private(set) var table: [Key: Entry] = [:]
    /// Open invalidation windows per mm (nesting count).
    private var inProgress: [MMID: Int] = [:]
    /// Notifier calls seen, by name (for tests).
    public private(set) var calls: [String: Int] = [:]
    /// Unbalanced invalidate_range_end calls seen.
    public private(set) var unbalancedEnds = 0

    public init() {}

    /// Copies the primary translation of `process` at `address` (a normal
    /// page, not the zero page) into the table; false when there is none or an
    /// invalidation is in progress.
    @discardableResult
    public func fault(_ machine: Machine, process: String, address: UInt64) -> Bool {
        guard let m = machine.mmIndex(of: process), (inProgress[m] ?? 0) == 0 else { return false }
        let pfn = machine.mappedFrame(m, address)
        guard !pfn.isNone else { return false }
        table[Key(mm: m, address: address)] = Entry(pfn: pfn, young: true)
        return true
    }

    /// The secondary MMU accesses the page again (sets its own accessed bit).
    public func touch(mm: MMID, address: UInt64) {
        table[Key(mm: mm, address: address)]?.young = true
    }

    /// Entries whose primary PTE no longer maps the same frame (must be empty).
    public func staleEntries(_ machine: Machine) -> [String] {
        var out: [String] = []
        for (key, e) in table {
            let pte = machine.k.leafSlot(root: machine.k.mm(key.mm).pointee.pgd, key: key.address)?.pointee ?? 0
            if machine.k.vmNormalPage(pte) != e.pfn {
                out.append("mm \(key.mm) 0x\(String(key.address, radix: 16)): shadow frame \(e.pfn), primary PTE 0x\(String(pte, radix: 16))")
            }
        }
        return out.sorted()
    }

    private func count(_ s: String) { calls[s, default: 0] += 1 }

    private func drop(mm: MMID, start: UInt64, end: UInt64) {
        table = table.filter { !($0.key.mm == mm && $0.key.address >= start && $0.key.address < end) }
    }

    public func invalidateRangeStart(mm: MMID, start: UInt64, end: UInt64) {
        count("invalidateRangeStart")
        inProgress[mm, default: 0] += 1
        drop(mm: mm, start: start, end: end)
    }

    public func invalidateRangeEnd(mm: MMID, start: UInt64, end: UInt64) {
        count("invalidateRangeEnd")
        if (inProgress[mm] ?? 0) == 0 { unbalancedEnds += 1; return }
        inProgress[mm]! -= 1
    }

    public func clearFlushYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool {
        count("clearFlushYoung")
        return testAndClearYoung(mm: mm, start: start, end: end)
    }

    public func clearYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool {
        count("clearYoung")
        return testAndClearYoung(mm: mm, start: start, end: end)
    }

    private func testAndClearYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool {
        var young = false
        for (k, e) in table where k.mm == mm && k.address >= start && k.address < end && e.young {
            young = true
            table[k]!.young = false
        }
        return young
    }

    public func testYoung(mm: MMID, address: UInt64) -> Bool {
        table[Key(mm: mm, address: address)]?.young ?? false
    }

    public func changePTE(mm: MMID, address: UInt64, pte: UInt64) {
        count("changePTE")
        // KVM's change_pte: map the new frame directly (it was dropped at start).
        let pfn = PTE.pfn(pte)
        if PTE.isPresent(pte) && !pfn.isNone { table[Key(mm: mm, address: address)] = Entry(pfn: pfn, young: false) }
    }

    public func release(mm: MMID) {
        count("release")
        table = table.filter { $0.key.mm != mm }
        inProgress[mm] = nil
    }
}
