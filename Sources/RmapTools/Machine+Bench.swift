import Rmap
import RmapTrace
import CShims

/// Benchmarking entry points (Benchmarks/: the package-benchmark suites and
/// `bench-model`, the model side of `make bench-kernel`).
///
/// They reach the kernel paths directly by mm index and frame number, so a
/// timed loop pays for the model and not for the name dictionaries of the
/// trace API. Processes made by `benchFork` have no name: they are not in
/// `processes`, and only `benchExit` ends them. Nothing here is needed by a
/// trace or by the checker.
extension Machine {
    /// The frame that mm `mm` maps at `addr` (0 for none, the zero page or a
    /// non-present entry): the argument of `benchWalk` and `benchTryToUnmap`.
    public func benchFrame(mm: MMID, addr: UInt64) -> PFN {
        mappedFrame(mm, addr)
    }

    /// An unnamed process with an empty address space (mm_alloc()); 0 when
    /// the arena has no room. End it with `benchExit`.
    public func benchProcess() -> MMID {
        k.mmAlloc()
    }

    /// mmap() of `pages` private anonymous read-write pages at `addr`
    /// (MAP_FIXED_NOREPLACE); false on an error.
    public func benchMmapAnon(mm: MMID, addr: UInt64, pages: UInt64) -> Bool {
        k.doMmap(mm, addr: addr, pages: pages, prot: VM.fromProt([.read, .write]), shared: false,
                 file: .none, pgoff: 0) == nil
    }

    /// `pages` accesses from `addr` up (handle_mm_fault() for each page that
    /// faults); the number of pages that ended in ok.
    public func benchFault(mm mmID: MMID, addr: UInt64, pages: UInt64, write: Bool) -> Int {
        k.touchPages(mmID, addr, pages, write: write)
    }

    /// `count` accesses at `addr`, `addr + stride`, ... (handle_mm_fault()
    /// for each that faults): one per large folio when `stride` is its size
    /// (2 MiB for a PMD-mapped THP, 64 KiB for a 64 KiB mTHP). The number
    /// that ended in ok.
    public func benchFaultStride(mm mmID: MMID, addr: UInt64, count: Int, stride: UInt64, write: Bool) -> Int {
        var a = addr
        var n = 0
        for _ in 0..<count {
            n += k.touchPages(mmID, a, 1, write: write)
            a &+= stride
        }
        return n
    }

    /// fork() of mm `mm` (dup_mmap()): the child's mm index, 0 on ENOMEM.
    /// The child is unnamed; end it with `benchExit`.
    public func benchFork(mm: MMID) -> MMID {
        k.dupMMap(mm)
    }

    /// exit_mmap() of an mm made by `benchFork`.
    public func benchExit(mm: MMID) {
        k.exitMMap(mm)
    }

    /// munmap() of `pages` pages at `addr` in mm `mm`; false on an error.
    public func benchMunmap(mm: MMID, addr: UInt64, pages: UInt64) -> Bool {
        k.doMunmap(mm, addr, addr + pages << PAGE_SHIFT) == nil
    }

    /// rmap_walk() of `frame` with a visitor that counts the VMAs it is
    /// given (rmap_one calls): the mappings visited. Allocates nothing.
    public func benchWalk(frame: PFN) -> Int {
        k.walkVisits(frame)
    }

    /// rmap_walk() of `frame` whose visitor also checks each VMA's PTE
    /// (page_vma_mapped_walk(), as every real rmap_one does): the mappings
    /// that really map the frame. Allocates nothing.
    public func benchWalkMapped(frame: PFN) -> Int {
        k.walkMapped(frame)
    }

    /// rmap_walk() of a PMD-mapped THP's head `frame` whose visitor also
    /// checks each VMA's PMD (page_vma_mapped_walk()'s check_pmd: a PMD
    /// leaf mapping this folio): the mappings that map it by a PMD.
    /// Allocates nothing.
    public func benchWalkPMDMapped(frame: PFN) -> Int {
        k.walkPMDMapped(frame)
    }

    /// try_to_unmap() of `frame` with `flags`, flushing a batched TLB flush
    /// as the caller would: true when no mapping is left. Allocates nothing.
    public func benchTryToUnmap(frame: PFN, flags: TTUFlags) -> Bool {
        let r = k.tryToUnmap(frame, flags: flags)
        k.tryToUnmapFlush()
        return r
    }

    /// page_referenced() of `frame` over every VMA: the referenced count.
    public func benchPageReferenced(frame: PFN) -> Int {
        k.pageReferenced(frame, filter: AllVMAs?.none).referenced
    }
}
