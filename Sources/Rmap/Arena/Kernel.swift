import CShims

/// The unsafe handle over an arena: typed base pointers for each table.
///
/// This is the one place where arena offsets become pointers: `init(base:)`
/// turns each table's offset into a typed base, `object(at:)`/`offset(of:)`
/// convert the tagged byte offsets that `page->mapping` holds. Everything else
/// uses 32-bit table indices (0 = NULL).
package struct Kernel {
    let base: UnsafeMutableRawPointer
    package let header: UnsafeMutablePointer<rmap_arena_header>
    let frames: UnsafeMutablePointer<rmap_page>
    let ptPages: UnsafeMutablePointer<UInt64>
    /// Entries from one page-table page to the next: 520 (512 entries and a
    /// cache line of colouring, arena.c's RMAP_PT_RECORD_SIZE), or 512 in an
    /// arena saved before the colouring.
    let ptStride: Int
    let ptDescs: UnsafeMutablePointer<rmap_ptdesc>
    let mms: UnsafeMutablePointer<rmap_mm>
    let vmas: UnsafeMutablePointer<rmap_vma>
    let anonVMAs: UnsafeMutablePointer<rmap_anon_vma>
    let avcs: UnsafeMutablePointer<rmap_avc>
    let files: UnsafeMutablePointer<rmap_file>
    let swapMap: UnsafeMutablePointer<rmap_swap_slot>
    let names: UnsafeMutablePointer<rmap_name>
    let ksmItems: UnsafeMutablePointer<rmap_ksm_item>
    let ksmNodes: UnsafeMutablePointer<rmap_ksm_node>
    /// MMU notifiers and TLB-flush accounting (not in the arena: Rmap/MMUNotifier.swift).
    let hooks: KernelHooks
    /// One byte per page-table page, set by every `ptPage(_:)` (a read or a
    /// write: the model's tables are only reached through it) and by the
    /// allocation and freeing of a table, while `ptTracking` is on (an
    /// incremental checker is attached: `Machine.checksIncrementally`);
    /// cleared by that checker after each check
    /// (Checker/Checker+Incremental.swift). Outside the arena: not saved
    /// state. Indexed by the table's index masked to the array's
    /// power-of-two size (an index beyond the table, from a corrupt entry,
    /// marks some byte, never memory outside the array). Off, a `ptPage`
    /// costs a load and a branch taken never (no store: `replay` without
    /// `--check`, the fuzzer, the benchmarks).
    let ptDirty: UnsafeMutablePointer<UInt8>
    let ptDirtyMask: Int
    let ptTracking: UnsafeMutablePointer<Bool>
    /// The arena's populator (CShims/populate.c), told where each table's
    /// bump is every RMAP_POPULATE_NOTE_EVERY records; nil when it is off.
    let populator: OpaquePointer?

    init(base: UnsafeMutableRawPointer, populator: OpaquePointer? = nil) {
        self.base = base
        self.populator = populator
        let h = base.assumingMemoryBound(to: rmap_arena_header.self)
        header = h
        func table<T>(_ t: Int32, _: T.Type) -> UnsafeMutablePointer<T> {
            let d = Kernel.desc(h, t)
            return (base + Int(d.pointee.offset)).assumingMemoryBound(to: T.self)
        }
        frames = table(Int32(RMAP_T_FRAME), rmap_page.self)
        ptPages = table(Int32(RMAP_T_PTPAGE), UInt64.self)
        ptStride = Int(Kernel.desc(h, Int32(RMAP_T_PTPAGE)).pointee.record_size) / MemoryLayout<UInt64>.stride
        ptDescs = table(Int32(RMAP_T_PTDESC), rmap_ptdesc.self)
        mms = table(Int32(RMAP_T_MM), rmap_mm.self)
        vmas = table(Int32(RMAP_T_VMA), rmap_vma.self)
        anonVMAs = table(Int32(RMAP_T_ANON_VMA), rmap_anon_vma.self)
        avcs = table(Int32(RMAP_T_AVC), rmap_avc.self)
        files = table(Int32(RMAP_T_FILE), rmap_file.self)
        swapMap = table(Int32(RMAP_T_SWAP), rmap_swap_slot.self)
        names = table(Int32(RMAP_T_NAME), rmap_name.self)
        ksmItems = table(Int32(RMAP_T_KSM_ITEM), rmap_ksm_item.self)
        ksmNodes = table(Int32(RMAP_T_KSM_NODE), rmap_ksm_node.self)
        var size = 1
        while size < Int(Kernel.desc(h, Int32(RMAP_T_PTPAGE)).pointee.capacity) { size <<= 1 }
        hooks = KernelHooks(ptDirtyCount: size)
        ptDirty = hooks.ptDirty
        ptDirtyMask = size - 1
        ptTracking = hooks.ptTracking
    }

    @inline(__always)
    package static func desc(_ h: UnsafeMutablePointer<rmap_arena_header>, _ t: Int32) -> UnsafeMutablePointer<rmap_table_desc> {
        UnsafeMutableRawPointer(h).advanced(by: MemoryLayout<rmap_arena_header>.offset(of: \rmap_arena_header.tables)!)
            .assumingMemoryBound(to: rmap_table_desc.self) + Int(t)
    }

    @inline(__always) package func desc(_ t: Int32) -> UnsafeMutablePointer<rmap_table_desc> { Kernel.desc(header, t) }

    // MARK: typed access by index


    // The same by typed id (Arena/IDs.swift): what the walk controls and the
    // public API are given.
    @inline(__always) package func page(_ pfn: PFN) -> UnsafeMutablePointer<rmap_page> { frames + Int(pfn.rawValue) }
    @inline(__always) package func mm(_ m: MMID) -> UnsafeMutablePointer<rmap_mm> { mms + Int(m.rawValue) }
    @inline(__always) package func vma(_ v: VMAID) -> UnsafeMutablePointer<rmap_vma> { vmas + Int(v.rawValue) }
    @inline(__always) package func anonVMA(_ av: AnonVMAID) -> UnsafeMutablePointer<rmap_anon_vma> {
        anonVMAs + Int(av.rawValue)
    }
    @inline(__always) package func avc(_ a: AVCID) -> UnsafeMutablePointer<rmap_avc> { avcs + Int(a.rawValue) }
    @inline(__always) package func file(_ f: FileID) -> UnsafeMutablePointer<rmap_file> { files + Int(f.rawValue) }
    @inline(__always) func ksmItem(_ i: KSMItemID) -> UnsafeMutablePointer<rmap_ksm_item> { ksmItems + Int(i.rawValue) }
    @inline(__always) func ksmNode(_ n: KSMNodeID) -> UnsafeMutablePointer<rmap_ksm_node> { ksmNodes + Int(n.rawValue) }
    @inline(__always) func ptDesc(_ i: UInt32) -> UnsafeMutablePointer<rmap_ptdesc> { ptDescs + Int(i) }
    /// The 512 entries of page-table page `i`, marked as reached since the
    /// last check (`ptDirty`): every access of the model to a page table.
    @inline(__always) func ptPage(_ i: UInt32) -> UnsafeMutablePointer<UInt64> {
        if _slowPath(ptTracking.pointee) { ptDirty[Int(i) & ptDirtyMask] = 1 }
        return ptPages + Int(i) &* ptStride
    }
    /// `ptPage` without the mark: the checker's own reads, and the upper
    /// levels that PageTable.swift's walks only read (tableOnPath, cacheSlot,
    /// nextPMDPresent, walkPTETables' PGD and PUD, slotAlloc except when it
    /// allocates, which marks): every table the model writes is still reached
    /// through `ptPage` or marked by `markPTPage`.
    @inline(__always) func ptTable(_ i: UInt32) -> UnsafeMutablePointer<UInt64> { ptPages + Int(i) &* ptStride }
    /// Marks page-table page `i` as changed (its allocation and freeing,
    /// which write it without `ptPage`).
    @inline(__always) func markPTPage(_ i: UInt32) { if ptTracking.pointee { ptDirty[Int(i) & ptDirtyMask] = 1 } }

    // MARK: tagged byte offsets (page->mapping)

    /// The arena byte offset of record `i` of table `t`: what page->mapping stores.
    @inline(__always) func offset(table t: Int32, index i: UInt32) -> UInt64 {
        let d = desc(t)
        return d.pointee.offset &+ UInt64(i) &* UInt64(d.pointee.record_size)  // u32 x u32 in 64 bits: no overflow
    }

    /// The index of the record at byte `offset` in table `t`, or 0 when the
    /// offset is not the start of a record of that table (never trusted blindly).
    @inline(__always) func index(table t: Int32, offset: UInt64) -> UInt32 {
        let d = desc(t)
        guard offset >= d.pointee.offset else { return 0 }
        let rel = offset - d.pointee.offset
        let size = UInt64(d.pointee.record_size)
        guard rel % size == 0, rel / size < UInt64(d.pointee.capacity) else { return 0 }
        return UInt32(rel / size)
    }

    // MARK: object allocation (LIFO free lists, deterministic)

    /// Allocates a zeroed record of table `t`; 0 when the table is full (ENOMEM).
    @inline(__always) func alloc(_ t: Int32) -> UInt32 {
        let i = allocIndex(t)
        if i != 0 {
            let d = desc(t)
            let size = Int(d.pointee.record_size)
            let at: Int = Int(d.pointee.offset) &+ Int(i) &* size
            (base + at).initializeMemory(as: UInt8.self, repeating: 0, count: size)
        }
        return i
    }

    /// `alloc` without the zeroing: the record's index, taken off the free
    /// list or the bump; 0 when the table is full. The caller zeroes the
    /// record (a caller that knows its type does it at a size known at
    /// compile time: a few stores instead of a memset call).
    @inline(__always) func allocIndex(_ t: Int32) -> UInt32 {
        let d = desc(t)
        var i = d.pointee.free_head
        if i != 0 {
            let at: Int = Int(d.pointee.offset) &+ Int(i) &* Int(d.pointee.record_size)
            d.pointee.free_head = (base + at).load(as: UInt32.self)
        } else {
            guard d.pointee.bump < d.pointee.capacity else { return 0 }
            i = d.pointee.bump
            d.pointee.bump &+= 1
            if _slowPath(i & (RMAP_POPULATE_NOTE_EVERY - 1) == 0) { notePopulator(t, i) }
        }
        d.pointee.live &+= 1  // live < capacity: no overflow
        if d.pointee.live > d.pointee.high_water { d.pointee.high_water = d.pointee.live }
        return i
    }

    /// Tells the populator (if any) that table `t`'s bump has reached record `i`.
    @inline(__always) func notePopulator(_ t: Int32, _ i: UInt32) {
        if let populator { rmap_populator_note(populator, t, i) }
    }

    /// Returns record `i` of table `t` to its free list (the first 4 bytes hold
    /// the link; the rest is poisoned so a use after free is visible).
    @inline(__always) func free(_ t: Int32, _ i: UInt32) {
        let d = desc(t)
        let size = Int(d.pointee.record_size)
        let rec = base + Int(d.pointee.offset) + Int(i) * size
        rec.initializeMemory(as: UInt8.self, repeating: Kernel.poisonFree, count: size)
        rec.storeBytes(of: d.pointee.free_head, as: UInt32.self)
        d.pointee.free_head = i
        d.pointee.live -= 1
    }

    /// POISON_FREE: the byte a freed record is filled with after its link.
    static let poisonFree = UInt8(RMAP_POISON_FREE)
    /// The word after the link of a free record.
    static let poisonFreeWord = UInt32(RMAP_POISON_FREE) * 0x0101_0101

    /// Whether record `i` of table `t` is on the free list: poisoned after
    /// its link (`free`), where a live record holds a field (a frame's flags,
    /// an anon_vma's parent, a KSM node's kpfn, ...). The caller checks `i`
    /// against the table's bump first.
    @inline(__always) package func isFree(_ t: Int32, _ i: UInt32) -> Bool {
        let d = desc(t)
        return (base + Int(d.pointee.offset) + Int(i) * Int(d.pointee.record_size))
            .load(fromByteOffset: 4, as: UInt32.self) == Kernel.poisonFreeWord
    }

    /// Records of table `t` that could still be allocated.
    @inline(__always) func available(_ t: Int32) -> UInt32 {
        let d = desc(t)
        return d.pointee.capacity &- 1 &- d.pointee.live  // live < capacity (allocIndex; checked at load)
    }

    package func live(_ t: Int32) -> UInt32 { desc(t).pointee.live }
}

package enum T {
    package static let frame = Int32(RMAP_T_FRAME)
    package static let ptPage = Int32(RMAP_T_PTPAGE)
    static let ptDesc = Int32(RMAP_T_PTDESC)
    package static let mm = Int32(RMAP_T_MM)
    package static let vma = Int32(RMAP_T_VMA)
    package static let anonVMA = Int32(RMAP_T_ANON_VMA)
    package static let avc = Int32(RMAP_T_AVC)
    package static let file = Int32(RMAP_T_FILE)
    static let swap = Int32(RMAP_T_SWAP)
    static let name = Int32(RMAP_T_NAME)
    package static let ksmItem = Int32(RMAP_T_KSM_ITEM)
    package static let ksmNode = Int32(RMAP_T_KSM_NODE)
}
