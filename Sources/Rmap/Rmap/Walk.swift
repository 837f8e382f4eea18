import CShims

/// The hooks of an rmap walk (struct rmap_walk_control, include/linux/rmap.h).
/// Generic, so each walk is specialised for its visitor and pays nothing for
/// the indirection. Hooks are called in the kernel's order: `invalidVMA`
/// (skip the VMA), `rmapOne` (false stops the walk), `done` (early exit).
public protocol RmapWalkControl {
    /// rmap_one(): visits one VMA that may map the frame at `address`.
    mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool
    /// done(): true ends the walk early (e.g. the frame is no longer mapped).
    mutating func done(_ m: RmapContext, pfn: PFN) -> Bool
    /// invalid_vma(): true skips the VMA.
    mutating func invalidVMA(_ m: RmapContext, vma: VMAID) -> Bool
}

public extension RmapWalkControl {
    mutating func done(_ m: RmapContext, pfn: PFN) -> Bool { false }
    mutating func invalidVMA(_ m: RmapContext, vma: VMAID) -> Bool { false }
}

/// What a walk visitor may look at: an unsafe view of the model's kernel state.
public struct RmapContext {
    package let k: Kernel
    package init(k: Kernel) { self.k = k }
    /// The VMA's start, end (exclusive) and mm.
    public func vmaRange(_ v: VMAID) -> (start: UInt64, end: UInt64, mm: MMID) {
        let p = k.vma(v).pointee
        return (p.vm_start, p.vm_end, MMID(p.mm))
    }
    /// The PTE at `address` of mm `m`, 0 when none.
    public func pte(mm m: MMID, address: UInt64) -> UInt64 {
        k.leafSlot(root: k.mm(m).pointee.pgd, key: address)?.pointee ?? 0
    }
}

extension Kernel {
    /// rmap_walk(): dispatches on the tagged page->mapping to the anon walk
    /// (anon_vma interval tree over [index, index]) or the file walk
    /// (i_mmap), or for a KSM frame to rmap_walk_ksm (KSM/KSM.swift).
    /// Models `rmap_walk()` (mm/rmap.c); the caller holds no locks (the
    /// single-threaded model takes none).
    @inline(__always)
    package func rmapWalk<C: RmapWalkControl>(_ pfn: PFN, _ c: inout C) {
        let mapping = page(folioOf(pfn)).pointee.mapping
        if mapping & PageMapping.flags == PageMapping.ksm {
            rmapWalkKSM(pfn, &c)
        } else if mapping & PageMapping.flags == PageMapping.anon {
            rmapWalkAnon(pfn, &c)
        } else if mapping & PageMapping.flags == 0 && mapping != 0 {
            rmapWalkFile(pfn, &c)
        }
    }

    /// rmap_walk_anon()
    @inline(__always)
    func rmapWalkAnon<C: RmapWalkControl>(_ pfn: PFN, _ c: inout C) {
        let av = pageAnonVMA(pfn)
        // A page whose anon_vma was freed under it (the `degree` history's
        // use after free) has nothing to walk; the checker reports it.
        guard anonVMAIsLive(av) else { return }
        // A page of a large folio: the folio's index plus the page's offset
        // in it (folio_pgoff() + the page's place in the folio).
        let head = folioOf(pfn)
        let idx = page(head).pointee.index &+ UInt64(head.distance(to: pfn))
        let ctx = RmapContext(k: self)
        let tree = avcTree
        var a = AVCID(IntervalTree.iterFirst(root: anonVMARoot(av).pointee, start: idx, last: idx, tree))
        while !a.isNone {
            let v = avcVMA(a)
            if !c.invalidVMA(ctx, vma: v), let address = vmaAddress(v, index: idx) {
                if !c.rmapOne(ctx, pfn: pfn, vma: v, address: address) { return }
                if c.done(ctx, pfn: pfn) { return }
            }
            a = AVCID(IntervalTree.iterNext(a.rawValue, start: idx, last: idx, tree))
        }
    }

    /// rmap_walk_file()
    @inline(__always)
    func rmapWalkFile<C: RmapWalkControl>(_ pfn: PFN, _ c: inout C) {
        let f = pageFile(pfn)
        guard !f.isNone else { return }
        let idx = page(pfn).pointee.index
        let ctx = RmapContext(k: self)
        let tree = iMMap
        var v = VMAID(IntervalTree.iterFirst(root: iMMapRoot(f).pointee, start: idx, last: idx, tree))
        while !v.isNone {
            if !c.invalidVMA(ctx, vma: v), let address = vmaAddress(v, index: idx) {
                if !c.rmapOne(ctx, pfn: pfn, vma: v, address: address) { return }
                if c.done(ctx, pfn: pfn) { return }
            }
            v = VMAID(IntervalTree.iterNext(v.rawValue, start: idx, last: idx, tree))
        }
    }

    /// page_vma_mapped_walk() for a small page: the PTE of `v` at `address`
    /// if it maps `pfn` or holds a device-private entry for it (or, with
    /// `migration`, holds a migration entry for it).
    @inline(__always)
    func pageVMAMappedWalk(_ pfn: PFN, _ v: VMAID, _ address: UInt64,
                           migration: Bool = false) -> UnsafeMutablePointer<UInt64>? {
        let m = vmMM(v)
        guard let slot = leafSlot(root: mm(m).pointee.pgd, key: address) else { return nil }
        let e = slot.pointee
        if PTE.isPresent(e) { return !migration && PTE.pfn(e) == pfn && e & PTE.special == 0 ? slot : nil }
        if migration && PTE.isMigrationEntry(e) && PTE.swpOffsetPFN(e) == pfn { return slot }
        // check_pte(): un-addressable ZONE_DEVICE memory is mapped by device-private entries.
        if !migration && PTE.isDevicePrivateEntry(e) && PTE.swpOffsetPFN(e) == pfn { return slot }
        return nil
    }
}
