import CShims

/// MM counters (include/linux/mm_types_task.h: NR_MM_COUNTERS).
package enum MMCounter: Int {
    case file = 0      // MM_FILEPAGES
    case anon = 1      // MM_ANONPAGES
    case swapents = 2  // MM_SWAPENTS
    case shmem = 3     // MM_SHMEMPAGES
}

/// int rss[NR_MM_COUNTERS] of copy_pte_range() and zap_pte_range(): the
/// counter changes of one PTE table, kept on the stack and added to the mm
/// once (Kernel.addMMRssVec).
struct MMRssVec {
    var file: Int64 = 0, anon: Int64 = 0, swapents: Int64 = 0, shmem: Int64 = 0

    @inline(__always) mutating func add(_ c: MMCounter, _ n: Int64) {
        switch c {
        case .file: file += n
        case .anon: anon += n
        case .swapents: swapents += n
        case .shmem: shmem += n
        }
    }
}

/// The mm_struct and its VMA tree (kernel/fork.c, mm/mmap.c, mm/vma.c).
extension Kernel {
    /// mm_alloc() + mm_init() + pgd_alloc(); 0 when out of memory.
    package func mmAlloc() -> MMID {
        guard available(T.mm) >= 1, available(T.ptPage) >= 1 else { return .none }
        let m = MMID(alloc(T.mm))
        let pgd = allocPTPage(level: 4)
        mm(m).pointee.pgd = pgd
        mm(m).pointee.mm_users = 1
        mm(m).pointee.pid = m.rawValue
        return m
    }

    /// mmdrop() after exit_mmap(): frees the PGD and the mm.
    func mmFree(_ m: MMID) {
        freeSubtree(mm(m).pointee.pgd, level: 4)
        free(T.mm, m.rawValue)
    }

    /// add_mm_counter(). An increase only adds, as in the kernel; the high
    /// watermark is brought up to date before the RSS is lowered
    /// (update_hiwater_rss(), which the kernel calls at the sites that lower
    /// it: zap, try_to_unmap, ...; here at every decrease, so no peak is
    /// missed) and read with the current RSS (`getMMHiwaterRss`).
    @inline(__always) func addMMCounter(_ m: MMID, _ c: MMCounter, _ delta: Int64) {
        let p = mm(m)
        if delta < 0 { updateHiwaterRss(m) }
        withUnsafeMutablePointer(to: &p.pointee.rss) {
            $0.withMemoryRebound(to: Int64.self, capacity: 4) { $0[c.rawValue] &+= delta }
        }
    }

    /// update_hiwater_rss(): hiwater_rss = max(hiwater_rss, get_mm_rss()).
    /// Out of line: only the paths that lower the RSS call it.
    @inline(never) func updateHiwaterRss(_ m: MMID) {
        let rss = UInt64(max(0, getMMRss(m)))
        if rss > mm(m).pointee.hiwater_rss { mm(m).pointee.hiwater_rss = rss }
    }

    /// get_mm_hiwater_rss(): the peak RSS, max(hiwater_rss, get_mm_rss()).
    package func getMMHiwaterRss(_ m: MMID) -> UInt64 {
        max(mm(m).pointee.hiwater_rss, UInt64(max(0, getMMRss(m))))
    }

    /// add_mm_rss_vec(): the counts copy_pte_range() and zap_pte_range()
    /// gathered over one PTE table, added once per table.
    @inline(__always) func addMMRssVec(_ m: MMID, _ rss: MMRssVec) {
        if rss.file != 0 { addMMCounter(m, .file, rss.file) }
        if rss.anon != 0 { addMMCounter(m, .anon, rss.anon) }
        if rss.swapents != 0 { addMMCounter(m, .swapents, rss.swapents) }
        if rss.shmem != 0 { addMMCounter(m, .shmem, rss.shmem) }
    }

    @inline(__always) package func mmCounter(_ m: MMID, _ c: MMCounter) -> Int64 {
        let p = mm(m)
        return withUnsafeMutablePointer(to: &p.pointee.rss) {
            $0.withMemoryRebound(to: Int64.self, capacity: 4) { $0[c.rawValue] }
        }
    }

    /// get_mm_rss()
    func getMMRss(_ m: MMID) -> Int64 {
        mmCounter(m, .file) + mmCounter(m, .anon) + mmCounter(m, .shmem)
    }

    /// mm_counter_file() / mm_counter(): which counter a mapped frame is charged to.
    @inline(__always) func mmCounterFor(_ pfn: PFN) -> MMCounter {
        let p = page(folioOf(pfn))
        if p.pointee.mapping & PageMapping.anon != 0 { return .anon }
        return p.pointee.flags & PG.swapbacked != 0 ? .shmem : .file
    }

    // MARK: VMA tree

    /// find_vma(): the first VMA with vm_end > addr, 0 if none.
    @inline(__always) func findVMA(_ m: MMID, _ addr: UInt64) -> VMAID {
        VMAID(IntervalTree.findFirstEndingAtOrAfter(root: mm(m).pointee.mm_rb, addr, mmTree))
    }

    /// vma_lookup(): the VMA containing addr, 0 if none.
    @inline(__always) package func vmaLookup(_ m: MMID, _ addr: UInt64) -> VMAID {
        let v = findVMA(m, addr)
        return !v.isNone && vma(v).pointee.vm_start <= addr ? v : .none
    }

    @inline(__always) package func firstVMA(_ m: MMID) -> VMAID { VMAID(IntervalTree.first(root: mm(m).pointee.mm_rb, mmTree)) }
    @inline(__always) package func nextVMA(_ v: VMAID) -> VMAID { VMAID(IntervalTree.next(v.rawValue, mmTree)) }
    @inline(__always) func prevVMA(_ v: VMAID) -> VMAID { VMAID(IntervalTree.prev(v.rawValue, mmTree)) }
    @inline(__always) func lastVMA(_ m: MMID) -> VMAID { VMAID(IntervalTree.last(root: mm(m).pointee.mm_rb, mmTree)) }

    /// vm_area_alloc(): a zeroed VMA of mm `m`; 0 when out of memory.
    func vmAreaAlloc(_ m: MMID) -> VMAID {
        let v = VMAID(alloc(T.vma))
        if !v.isNone { vma(v).pointee.mm = m.rawValue }
        return v
    }

    /// vm_area_dup(): a copy of `src` (range, flags, file, anon_vma pointer)
    /// with empty links and AVC list; takes a file reference.
    func vmAreaDup(_ src: VMAID) -> VMAID {
        let v = VMAID(alloc(T.vma))
        if v.isNone { return .none }
        let s = vma(src).pointee
        let d = vma(v)
        d.pointee.vm_start = s.vm_start
        d.pointee.vm_end = s.vm_end
        d.pointee.vm_pgoff = s.vm_pgoff
        d.pointee.vm_flags = s.vm_flags
        d.pointee.mm = s.mm
        d.pointee.file = s.file
        d.pointee.anon_vma = s.anon_vma
        if s.file != 0 { getFile(FileID(s.file)) }
        return v
    }

    /// vma_link(): into the mm's tree and the file's i_mmap.
    func vmaLink(_ v: VMAID) {
        let m = vmMM(v)
        IntervalTree.insert(v.rawValue, root: mmRoot(m), mmTree)
        mm(m).pointee.map_count += 1
        mm(m).pointee.total_vm += vmaPages(v)
        linkFileVMA(v)
    }

    /// Removes `v` from the mm tree (vma_iter_clear) and from i_mmap.
    func vmaUnlinkFromMM(_ v: VMAID) {
        let m = vmMM(v)
        unlinkFileVMA(v)
        IntervalTree.remove(v.rawValue, root: mmRoot(m), mmTree)
        mm(m).pointee.map_count -= 1
        mm(m).pointee.total_vm -= vmaPages(v)
    }

    /// __vma_link_file()
    func linkFileVMA(_ v: VMAID) {
        let f = vmFile(v)
        guard !f.isNone else { return }
        if vma(v).pointee.vm_flags & VM.shared != 0 && vma(v).pointee.vm_flags & VM.maywrite != 0 {
            file(f).pointee.i_mmap_writable += 1
        }
        IntervalTree.insert(v.rawValue, root: iMMapRoot(f), iMMap)
    }

    /// __remove_shared_vm_struct() / unlink_file_vma()
    func unlinkFileVMA(_ v: VMAID) {
        let f = vmFile(v)
        guard !f.isNone else { return }
        if vma(v).pointee.vm_flags & VM.shared != 0 && vma(v).pointee.vm_flags & VM.maywrite != 0 {
            file(f).pointee.i_mmap_writable -= 1
        }
        IntervalTree.remove(v.rawValue, root: iMMapRoot(f), iMMap)
    }

    /// Changes a linked VMA's range (vma_set_range / vma_adjust): the trees are
    /// keyed by the range, so the VMA leaves them and comes back.
    func vmaSetRange(_ v: VMAID, start: UInt64, end: UInt64, pgoff: UInt64) {
        // vma_adjust_trans_huge(): a boundary that moves into a PMD leaf splits it.
        let m = vmMM(v)
        if start != vma(v).pointee.vm_start { splitHugePMDIfNeeded(m, start) }
        if end != vma(v).pointee.vm_end { splitHugePMDIfNeeded(m, end) }
        let avcs = collectAVCs(v)
        for a in avcs { IntervalTree.remove(a.rawValue, root: anonVMARoot(avcAnonVMA(a)), avcTree) }
        vmaUnlinkFromMM(v)
        vma(v).pointee.vm_start = start
        vma(v).pointee.vm_end = end
        vma(v).pointee.vm_pgoff = pgoff
        vmaLink(v)
        for a in avcs { IntervalTree.insert(a.rawValue, root: anonVMARoot(avcAnonVMA(a)), avcTree) }
    }

    /// The VMA's AVCs, head (most recent) first. Lists are short (one entry per
    /// generation of the anon_vma hierarchy); a fixed buffer avoids allocation.
    func collectAVCs(_ v: VMAID) -> AVCList {
        var l = AVCList()
        var a = vmaAVCHead(v)
        while !a.isNone { l.append(a); a = avcSameVMANext(a) }
        return l
    }

    /// vm_area_free(): drops the file reference and frees the record.
    func vmAreaFree(_ v: VMAID) {
        let f = vmFile(v)
        free(T.vma, v.rawValue)
        if !f.isNone { putFile(f) }
    }
}

/// A small inline list of AVC indices (the same_vma list of one VMA).
/// Spills to the heap only past 16 entries (a hierarchy 16 generations deep).
struct AVCList: Sequence {
    private var inline: (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32,
                         UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var spill: [UInt32] = []
    private(set) var count = 0

    mutating func append(_ x: AVCID) {
        if count < 16 {
            withUnsafeMutableBytes(of: &inline) { $0.storeBytes(of: x.rawValue, toByteOffset: count * 4, as: UInt32.self) }
        } else {
            spill.append(x.rawValue)
        }
        count += 1
    }

    subscript(i: Int) -> AVCID {
        if i < 16 { return AVCID(withUnsafeBytes(of: inline) { $0.load(fromByteOffset: i * 4, as: UInt32.self) }) }
        return AVCID(spill[i - 16])
    }

    struct Iterator: IteratorProtocol {
        let list: AVCList
        var i = 0
        mutating func next() -> AVCID? {
            guard i < list.count else { return nil }
            defer { i += 1 }
            return list[i]
        }
    }

    func makeIterator() -> Iterator { Iterator(list: self) }
}
