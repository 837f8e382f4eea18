import Rmap
import CShims

/// The reverse-map designs behind the same walk API (issue #6, "design
/// variants"): the kernel's anon_vma/i_mmap (the model), per-page PV lists
/// (FreeBSD's pmap, Linux 2.5's pte_chains: Variants/PVList.swift) and no
/// reverse map (Linux 2.4: scan every page table, Variants/FullScan.swift).
public enum RmapDesign: String, CaseIterable, Sendable {
    /// rmap_walk(): anon_vma interval tree or i_mmap (the kernel since 2.6.7/2.6.9).
    case anonVMA = "anon_vma"
    /// Per-page lists of (mm, address): exact, one entry per PTE.
    case pvLists = "pv"
    /// No reverse map: every PTE of every process is compared.
    case fullScan = "scan"
}

/// Reverse-map memory of a machine, per design (bytes of the model's records).
public struct RmapMetadata: Sendable {
    /// Present PTEs that map a normal page, over every live process.
    public var mappedPTEs = 0
    public var anonVMAs = 0
    public var avcs = 0
    /// anon_vma records + anon_vma_chain records (the anon side of the kernel design).
    public var anonVMABytes = 0
    public var pvEntries = 0
    /// PV entries (16 bytes each).
    public var pvEntryBytes = 0
    /// The list head every frame carries (4 bytes a frame, mapped or not).
    public var pvHeadBytesPerFrame = 4
    public static let anonVMARecordBytes = MemoryLayout<rmap_anon_vma>.stride
    public static let avcRecordBytes = MemoryLayout<rmap_avc>.stride
    public static let pvEntryRecordBytes = MemoryLayout<PVEntry>.stride
}

extension Machine {
    /// Starts maintaining PV lists beside the model (built from the current
    /// page tables, then kept by the rmap add/remove paths), with room for
    /// `capacity` entries (0: one per page-table slot of the arena, reserved
    /// lazily). False when the host refuses the reservation or the capacity
    /// is too small for the current mappings.
    @discardableResult
    public func enablePVLists(capacity: UInt32 = 0) -> Bool { k.pvEnable(capacity: capacity) }

    /// Stops maintaining the PV lists and frees them.
    public func disablePVLists() { k.pvDisable() }

    public var pvListsEnabled: Bool { k.pvTable != nil }

    /// An rmap walk of `frame` in the given design, with the caller's walk
    /// control. anon_vma visits every VMA that may map the frame (ask
    /// `RmapContext.maps`); PV lists and the scan visit exactly the PTEs that
    /// map it (each with its VMA). PV lists must be enabled for `.pvLists`.
    @inlinable
    public func rmapWalk<C: RmapWalkControl>(frame: PFN, design: RmapDesign, _ control: inout C) {
        variantWalk(frame, design, &control)
    }

    @usableFromInline
    func variantWalk<C: RmapWalkControl>(_ pfn: PFN, _ design: RmapDesign, _ c: inout C) {
        switch design {
        case .anonVMA: k.rmapWalk(pfn, &c)
        case .pvLists: k.pvRmapWalk(pfn, &c)
        case .fullScan: k.scanRmapWalk(pfn, &c)
        }
    }

    /// The PV walk at the pmap level: each (mm, address) on the frame's list.
    @inlinable
    public func pvWalk<C: PVWalkControl>(frame: PFN, _ control: inout C) {
        pvWalkFrame(frame, &control)
    }

    @usableFromInline
    func pvWalkFrame<C: PVWalkControl>(_ pfn: PFN, _ c: inout C) { k.pvWalk(pfn, &c) }

    /// Differences between the PV lists and the page tables (empty: exact).
    public func pvCheck() -> [String] { k.pvCheck() }

    /// The reverse-map memory each design needs for the current state.
    public func rmapMetadata() -> RmapMetadata {
        var r = RmapMetadata()
        k.forEachLiveMM { m in
            var v = k.firstVMA(m)
            while !v.isNone {
                k.walkLeaves(root: k.mm(m).pointee.pgd, start: k.vma(v).pointee.vm_start, end: k.vma(v).pointee.vm_end) { _, s in
                    if !k.vmNormalPage(s.pointee).isNone { r.mappedPTEs += 1 }
                    return true
                }
                v = k.nextVMA(v)
            }
        }
        r.anonVMAs = Int(k.live(T.anonVMA))
        r.avcs = Int(k.live(T.avc))
        r.anonVMABytes = r.anonVMAs * RmapMetadata.anonVMARecordBytes + r.avcs * RmapMetadata.avcRecordBytes
        if let pv = k.pvTable {
            r.pvEntries = Int(pv.counters.pointee.live)
            r.pvEntryBytes = r.pvEntries * RmapMetadata.pvEntryRecordBytes
        }
        return r
    }

    // MARK: benchmarking entry points (Benchmarks/: bench-model variants, the suites)

    /// A walk of `frame` in `design` counting rmap_one calls. Allocates nothing.
    public func benchWalk(frame: PFN, design: RmapDesign) -> Int {
        // The model's own walk specialised in its module, as the PV and scan
        // walks are in this one (Machine+Walk.swift says why).
        if design == .anonVMA { return k.walkVisits(frame) }
        var c = CountingWalk()
        variantWalk(frame, design, &c)
        return c.visited
    }

    /// A walk of `frame` in `design` whose visitor checks each VMA's PTE
    /// (page_vma_mapped_walk()): the mappings found. Allocates nothing.
    public func benchWalkMapped(frame: PFN, design: RmapDesign) -> Int {
        if design == .anonVMA { return k.walkMapped(frame) }
        var c = MappedWalk()
        variantWalk(frame, design, &c)
        return c.mapped
    }

    /// The pmap-level PV walk of `frame` whose visitor reads each entry's
    /// PTE (pmap_pte()) and checks it maps the frame: no VMA involved.
    public func benchPVWalkMapped(frame: PFN) -> Int {
        var c = PVMappedWalk()
        k.pvWalk(frame, &c)
        return c.mapped
    }

    /// migrate_pages() of one frame to a new frame: true when it moved.
    /// The frame number of the copy is `benchFrame` of a mapping afterwards.
    public func benchMigrate(frame: PFN) -> Bool {
        k.migratePage(frame)
    }

    /// The mm index of every live process (named or made by `benchFork`).
    public func liveMMs() -> [MMID] {
        var out: [MMID] = []
        k.forEachLiveMM { out.append($0) }
        return out
    }
}

/// Counts the PV entries whose PTE maps the frame.
struct PVMappedWalk: PVWalkControl {
    var mapped = 0
    @inline(__always)
    mutating func visit(_ m: RmapContext, pfn: PFN, mm: MMID, address: UInt64) -> Bool {
        let e = m.pte(mm: mm, address: address)
        if PTE.isPresent(e) && PTE.pfn(e) == pfn { mapped += 1 }
        return true
    }
}
