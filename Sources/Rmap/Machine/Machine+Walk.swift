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
//
// `Kernel.rmapWalk` is generic over its control and not inlinable: a caller in
// another module gets the unspecialised generic, which calls rmapOne,
// invalidVMA and done through the protocol's witness table and iterates the
// interval tree out of line, per mapping. Every walk of the model itself
// (try_to_unmap, page_referenced, migration, the checker) is in this module and
// specialised. The benchmark entry points below are non-generic functions of
// this module so that the benchmarks time the walk as those callers run it.
extension Kernel {
    /// rmap_walk() counting rmap_one calls.
    package func walkVisits(_ pfn: PFN) -> Int {
        var c = CountingWalk()
        rmapWalk(pfn, &c)
        return c.visited
    }

    /// rmap_walk() whose rmap_one checks each VMA's PTE (page_vma_mapped_walk()):
    /// the mappings that map the frame.
    package func walkMapped(_ pfn: PFN) -> Int {
        var c = MappedWalk()
        rmapWalk(pfn, &c)
        return c.mapped
    }

    /// rmap_walk() of a PMD-mapped THP's head page whose rmap_one checks each
    /// VMA's PMD (page_vma_mapped_walk()'s check_pmd): the PMD mappings.
    package func walkPMDMapped(_ pfn: PFN) -> Int {
        var c = PMDMappedWalk()
        rmapWalk(pfn, &c)
        return c.mapped
    }
}

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

/// Counts the VMAs whose PMD at the walk's address is a leaf mapping the folio.
package struct PMDMappedWalk: RmapWalkControl {
    package var mapped = 0
    package init() {}
    @inline(__always)
    package mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        let k = m.k
        let mm = k.vmMM(vma)
        if let pmd = k.pmdSlot(root: k.mm(mm).pointee.pgd, key: address), PTE.isPMDLeaf(pmd.pointee),
           PTE.pfn(pmd.pointee) == k.folioOf(pfn) {
            mapped += 1
        }
        return true
    }
}
