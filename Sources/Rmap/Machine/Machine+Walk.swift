import CShims

extension Machine {
    /// Runs an rmap walk (`rmap_walk()`) over the frame that `process` maps
    /// at `addr`, with the caller's walk control. Returns false when no frame
    /// is mapped there (none, the zero page, a swap or migration entry).
    @inlinable
    public func rmapWalk<C: RmapWalkControl>(process: String, addr: UInt64, _ control: inout C) -> Bool {
        walkFrame(process: process, addr: addr, &control)
    }

    @usableFromInline
    func walkFrame<C: RmapWalkControl>(process: String, addr: UInt64, _ control: inout C) -> Bool {
        guard let m = mmOf(process) else { return false }
        let pfn = mappedFrame(m, addr)
        guard !pfn.isNone else { return false }
        k.rmapWalk(pfn, &control)
        return true
    }

    /// The process whose mm is `mm`, if it is alive.
    public func processName(mm: MMID) -> String? {
        mmByName.first { $0.value == mm.rawValue }?.key
    }
}

extension RmapContext {
    /// Whether the VMA really maps `pfn` at `address` (page_vma_mapped_walk()):
    /// an rmap walk visits every VMA that may map the frame, and a visitor
    /// that wants only real mappings asks this.
    @inline(__always)
    public func maps(pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        k.pageVMAMappedWalk(pfn, vma, address) != nil
    }
}

// The walk controls of the benchmark entry points (RmapTools, RmapVariants).

/// Counts rmap_one calls.
package struct CountingWalk: RmapWalkControl {
    package var visited = 0
    package init() {}
    @inline(__always)
    package mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        visited += 1
        return true
    }
}

/// Counts the VMAs whose PTE maps the frame.
package struct MappedWalk: RmapWalkControl {
    package var mapped = 0
    package init() {}
    @inline(__always)
    package mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        if m.maps(pfn: pfn, vma: vma, address: address) { mapped += 1 }
        return true
    }
}
