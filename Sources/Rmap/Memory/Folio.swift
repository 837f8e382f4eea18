import CShims

/// Large folios (include/linux/mm.h, include/linux/mm_types.h, mm/page_alloc.c).
///
/// A large folio is 2^order contiguous, aligned frames. The head page holds
/// the folio's flags, refcount, mapping and index; each page keeps its own
/// `_mapcount` (CONFIG_PAGE_MAPCOUNT), content and PG_anon_exclusive; a tail
/// names its head in `next` (compound_head). The folio's own counters overlay
/// page[1] and page[2] as struct folio does (see rmap_arena.h). Orders 2 to 9
/// (16 KiB to 2 MiB, PMD order) are anonymous mTHP and THP; order 0 is a
/// small folio, which the rest of the model has always handled.
extension PG {
    /// PG_head: the first page of a large folio.
    package static let head: UInt64 = 1 << 22
    /// PG_tail (the kernel marks it with bit 0 of compound_head).
    package static let tail: UInt64 = 1 << 23
    /// PG_partially_mapped (a flag of the folio's second page, folio->_flags_1):
    /// the folio is on the deferred split queue because some of its pages
    /// were unmapped.
    static let partiallyMapped: UInt64 = 1 << 24
}

/// ENTIRELY_MAPPED (mm/internal.h): what a PMD mapping adds to _nr_pages_mapped.
let ENTIRELY_MAPPED: Int32 = 0x800000
/// FOLIO_MM_IDS_SHARED_BIT: bit 31 of _mm_id[1] (the top bit of _mm_ids).
let FOLIO_MM_IDS_SHARED: UInt32 = 1 << 31
/// MM_ID_MASK: what of an _mm_id slot is the id (the lock bit and SHARED excluded).
let MM_ID_MASK: UInt32 = (1 << 30) - 1

extension Kernel {
    // MARK: the folio of a page

    /// page_folio(): the head PFN of the folio that holds `pfn`.
    @inline(__always) package func folioOf(_ pfn: PFN) -> PFN {
        let p = page(pfn)
        return p.pointee.flags & PG.tail != 0 ? PFN(p.pointee.next) : pfn
    }

    /// folio_test_large() of a head.
    @inline(__always) package func folioIsLarge(_ head: PFN) -> Bool {
        page(head).pointee.flags & PG.head != 0
    }

    /// folio_order() of a head.
    @inline(__always) package func folioOrder(_ head: PFN) -> UInt32 {
        folioIsLarge(head) ? page(head.advanced(by: 1)).pointee.order : 0
    }

    /// folio_nr_pages() of a head.
    @inline(__always) package func folioNrPages(_ head: PFN) -> UInt32 { 1 << folioOrder(head) }

    /// folio_large_mapcount(): the PTEs and PMDs that map the folio.
    @inline(__always) package func folioLargeMapcount(_ head: PFN) -> Int {
        Int(page(head.advanced(by: 1)).pointee.large_mapcount) + 1
    }

    /// folio_entire_mapcount(): the PMDs that map the whole folio.
    @inline(__always) package func folioEntireMapcount(_ head: PFN) -> Int {
        Int(page(head.advanced(by: 1)).pointee.entire_mapcount) + 1
    }

    /// folio_mapcount(): every mapping of the folio (small: its page's).
    @inline(__always) package func folioMapcount(_ head: PFN) -> Int {
        folioIsLarge(head) ? folioLargeMapcount(head) : Int(page(head).pointee.mapcount) + 1
    }

    /// folio_precise_page_mapcount() (mm/internal.h), what /proc/kpagecount
    /// reports with CONFIG_PAGE_MAPCOUNT: the PTEs that map this page plus
    /// the PMDs that map its whole folio.
    @inline(__always) package func precisePageMapcount(_ pfn: PFN) -> Int {
        let head = folioOf(pfn)
        var n = Int(page(pfn).pointee.mapcount) + 1
        if folioIsLarge(head) { n += folioEntireMapcount(head) }
        return n
    }

    /// The mm_id of an mm (mm->mm_id): the model's mm index, never 0
    /// (MM_ID_DUMMY).
    @inline(__always) func mmID(ofVMA v: VMAID) -> UInt32 { vmMM(v).rawValue }

    /// folio_mm_id()
    @inline(__always) func folioMMID(_ head: PFN, _ slot: Int) -> UInt32 {
        let p1 = page(head.advanced(by: 1))
        return (slot == 0 ? p1.pointee.mm_id.0 : p1.pointee.mm_id.1) & MM_ID_MASK
    }

    @inline(__always) func folioSetMMID(_ head: PFN, _ slot: Int, _ id: UInt32) {
        let p1 = page(head.advanced(by: 1))
        if slot == 0 {
            p1.pointee.mm_id.0 = (p1.pointee.mm_id.0 & ~MM_ID_MASK) | id
        } else {
            p1.pointee.mm_id.1 = (p1.pointee.mm_id.1 & ~MM_ID_MASK) | id
        }
    }

    @inline(__always) func folioMMIDMapcount(_ head: PFN, _ slot: Int) -> Int32 {
        let p1 = page(head.advanced(by: 1))
        return slot == 0 ? p1.pointee.mm_id_mapcount.0 : p1.pointee.mm_id_mapcount.1
    }

    @inline(__always) func folioSetMMIDMapcount(_ head: PFN, _ slot: Int, _ v: Int32) {
        let p1 = page(head.advanced(by: 1))
        if slot == 0 { p1.pointee.mm_id_mapcount.0 = v } else { p1.pointee.mm_id_mapcount.1 = v }
    }

    /// test_bit(FOLIO_MM_IDS_SHARED_BITNUM, &folio->_mm_ids)
    @inline(__always) package func folioMMIDsShared(_ head: PFN) -> Bool {
        page(head.advanced(by: 1)).pointee.mm_id.1 & FOLIO_MM_IDS_SHARED != 0
    }

    @inline(__always) func folioSetMMIDsShared(_ head: PFN, _ on: Bool) {
        let p1 = page(head.advanced(by: 1))
        if on { p1.pointee.mm_id.1 |= FOLIO_MM_IDS_SHARED } else { p1.pointee.mm_id.1 &= ~FOLIO_MM_IDS_SHARED }
    }

    /// folio_set_large_mapcount() (include/linux/rmap.h, CONFIG_MM_ID): a new
    /// folio's first `mapcount` mappings, all in the VMA's mm.
    func folioSetLargeMapcount(_ head: PFN, _ mapcount: Int32, vma v: VMAID) {
        page(head.advanced(by: 1)).pointee.large_mapcount = mapcount - 1
        folioSetMMIDMapcount(head, 0, mapcount - 1)
        folioSetMMID(head, 0, mmID(ofVMA: v))
    }

    /// folio_add_return_large_mapcount() (CONFIG_MM_ID): `diff` more
    /// mappings in the VMA's mm; the slot of the mm counts them, a second mm
    /// takes the free slot, and the folio becomes "mapped shared" when a
    /// second mm maps it. Returns the new folio mapcount.
    @discardableResult
    func folioAddLargeMapcount(_ head: PFN, _ diff: Int32, vma v: VMAID) -> Int {
        let id = mmID(ofVMA: v)
        let p1 = page(head.advanced(by: 1))
        let newVal = p1.pointee.large_mapcount &+ diff
        p1.pointee.large_mapcount = newVal
        if folioMMID(head, 0) == id {
            folioSetMMIDMapcount(head, 0, folioMMIDMapcount(head, 0) &+ diff)
        } else if folioMMID(head, 1) == id {
            folioSetMMIDMapcount(head, 1, folioMMIDMapcount(head, 1) &+ diff)
        } else if folioMMID(head, 0) == 0 {
            folioSetMMID(head, 0, id)
            folioSetMMIDMapcount(head, 0, diff - 1)
            // We might have other mappings already.
            if newVal != diff - 1 { folioSetMMIDsShared(head, true) }
        } else if folioMMID(head, 1) == 0 {
            folioSetMMID(head, 1, id)
            folioSetMMIDMapcount(head, 1, diff - 1)
            // Slot 0 certainly has mappings as well.
            folioSetMMIDsShared(head, true)
        }
        return Int(newVal) + 1
    }

    /// folio_sub_return_large_mapcount() (CONFIG_MM_ID): `diff` mappings
    /// fewer in the VMA's mm; a slot that drops below zero is freed, and the
    /// folio is exclusive again when one slot holds every mapping.
    @discardableResult
    func folioSubLargeMapcount(_ head: PFN, _ diff: Int32, vma v: VMAID) -> Int {
        let id = mmID(ofVMA: v)
        let p1 = page(head.advanced(by: 1))
        let newVal = p1.pointee.large_mapcount &- diff
        p1.pointee.large_mapcount = newVal
        var checkExclusive = true
        for slot in 0..<2 where folioMMID(head, slot) == id {
            let m = folioMMIDMapcount(head, slot) &- diff
            if m >= 0 {
                folioSetMMIDMapcount(head, slot, m)
                checkExclusive = false
            } else {
                folioSetMMIDMapcount(head, slot, -1)
                folioSetMMID(head, slot, 0)
            }
            break
        }
        if checkExclusive && (folioMMIDMapcount(head, 0) == newVal || folioMMIDMapcount(head, 1) == newVal) {
            folioSetMMIDsShared(head, false)
        }
        return Int(newVal) + 1
    }

    /// folio_maybe_mapped_shared() (include/linux/mm.h, CONFIG_MM_ID).
    package func folioMaybeMappedShared(_ head: PFN) -> Bool {
        let mapcount = folioMapcount(head)
        guard folioIsLarge(head) else { return mapcount > 1 }
        if mapcount <= 1 { return false }
        if folioEntireMapcount(head) > 0 || mapcount > Int(folioNrPages(head)) { return true }
        return folioMMIDsShared(head)
    }

    // MARK: allocation (mm/page_alloc.c: aligned runs, as the buddy allocator hands them out)

    /// folio_alloc(order) for an anonymous large folio: 2^order free,
    /// contiguous, aligned frames, the head with one reference. A run freed
    /// whole is reused first (a per-order free list); otherwise the table's
    /// never-used frames, aligned up (the frames skipped over go to the
    /// order-0 free list). 0 when no run is left: the state is unchanged
    /// (the skipped frames are not taken unless the run is).
    func allocFolio(order: UInt32) -> PFN {
        if order == 0 { return allocPage() }
        let n = UInt32(1) << order
        let d = desc(T.frame)
        var head = withUnsafeMutablePointer(to: &header.pointee.folio_free) {
            $0.withMemoryRebound(to: UInt32.self, capacity: Int(RMAP_PMD_ORDER) + 1) { $0[Int(order)] }
        }
        if head != 0 {
            let next = (base + Int(d.pointee.offset) + Int(head) * MemoryLayout<rmap_page>.stride).load(as: UInt32.self)
            setFolioFree(order, next)
        } else if UInt64((d.pointee.bump + n - 1) & ~(n - 1)) + UInt64(n) > UInt64(d.pointee.capacity) {
            // No run of this order and no room after the used frames: a free
            // run of a higher order is split (__rmqueue_smallest / expand:
            // the buddy allocator splits a larger block; the model cuts it
            // in runs of this order at once). The model never merges
            // buddies back, so a request can fail where the kernel would
            // coalesce: only in an arena near exhaustion.
            guard order < RMAP_PMD_ORDER,
                  let big = (order + 1...RMAP_PMD_ORDER).first(where: { folioFreeHead(order: $0) != 0 }) else { return .none }
            let run = folioFreeHead(order: big)
            let next = (base + Int(d.pointee.offset) + Int(run) * MemoryLayout<rmap_page>.stride).load(as: UInt32.self)
            setFolioFree(big, next)
            var piece = run + (UInt32(1) << big) - n
            while piece > run {
                (base + Int(d.pointee.offset) + Int(piece) * MemoryLayout<rmap_page>.stride)
                    .storeBytes(of: folioFreeHead(order: order), as: UInt32.self)
                setFolioFree(order, piece)
                piece -= n
            }
            head = run
        } else {
            let start = (d.pointee.bump + n - 1) & ~(n - 1)
            // The frames between the bump and the aligned start become free
            // order-0 frames, as a buddy allocator leaves them.
            while d.pointee.bump < start {
                let i = d.pointee.bump
                d.pointee.bump += 1
                d.pointee.live += 1
                free(T.frame, i)
            }
            head = start
            d.pointee.bump = start + n
            // The populator is told as allocIndex tells it: when the bump
            // crosses a multiple of RMAP_POPULATE_NOTE_EVERY records.
            if (start ^ (start + n)) >= RMAP_POPULATE_NOTE_EVERY { notePopulator(T.frame, head) }
        }
        d.pointee.live += n
        if d.pointee.live > d.pointee.high_water { d.pointee.high_water = d.pointee.live }
        (base + Int(d.pointee.offset) + Int(head) * MemoryLayout<rmap_page>.stride)
            .initializeMemory(as: UInt8.self, repeating: 0, count: Int(n) * MemoryLayout<rmap_page>.stride)
        header.pointee.next_frame_serial &+= 1
        let folio = PFN(head)
        let h = page(folio)
        h.pointee.refcount = 1
        h.pointee.mapcount = -1
        h.pointee.flags = PG.uptodate | PG.head
        h.pointee.serial = header.pointee.next_frame_serial
        for i in 1..<n {
            let t = page(folio.advanced(by: i))
            t.pointee.flags = PG.tail
            t.pointee.mapcount = -1
            t.pointee.next = head
        }
        let p1 = page(folio.advanced(by: 1))
        p1.pointee.large_mapcount = -1
        p1.pointee.entire_mapcount = -1
        p1.pointee.nr_pages_mapped = 0
        p1.pointee.order = order
        p1.pointee.mm_id_mapcount = (-1, -1)
        return folio
    }

    private func setFolioFree(_ order: UInt32, _ v: UInt32) {
        withUnsafeMutablePointer(to: &header.pointee.folio_free) {
            $0.withMemoryRebound(to: UInt32.self, capacity: Int(RMAP_PMD_ORDER) + 1) { $0[Int(order)] = v }
        }
    }

    /// The first run on the free list of `order` (0 when empty).
    package func folioFreeHead(order: UInt32) -> UInt32 {
        withUnsafeMutablePointer(to: &header.pointee.folio_free) {
            $0.withMemoryRebound(to: UInt32.self, capacity: Int(RMAP_PMD_ORDER) + 1) { $0[Int(order)] }
        }
    }

    /// A free large-folio run (the smallest order that has one) becomes free
    /// small frames, on the frame table's free list; false when there is none.
    func breakFolioRun() -> Bool {
        guard let order = (UInt32(2)...RMAP_PMD_ORDER).first(where: { folioFreeHead(order: $0) != 0 }) else { return false }
        let d = desc(T.frame)
        let stride = MemoryLayout<rmap_page>.stride
        let run = folioFreeHead(order: order)
        setFolioFree(order, (base + Int(d.pointee.offset) + Int(run) * stride).load(as: UInt32.self))
        // Highest first, so the LIFO free list hands the run out in order.
        var f = run + (UInt32(1) << order)
        while f > run {
            f -= 1
            let rec = base + Int(d.pointee.offset) + Int(f) * stride
            rec.initializeMemory(as: UInt8.self, repeating: Kernel.poisonFree, count: stride)
            rec.storeBytes(of: d.pointee.free_head, as: UInt32.self)
            d.pointee.free_head = f
        }
        return true
    }

    /// __folio_put() of a large folio: off the deferred split queue
    /// (folio_unqueue_deferred_split), then its run goes back whole, poisoned.
    func freeFolio(_ head: PFN) {
        let order = folioOrder(head)
        let n = UInt32(1) << order
        deferredSplitRemove(head)
        let d = desc(T.frame)
        (base + Int(d.pointee.offset) + Int(head.rawValue) * MemoryLayout<rmap_page>.stride)
            .initializeMemory(as: UInt8.self, repeating: Kernel.poisonFree, count: Int(n) * MemoryLayout<rmap_page>.stride)
        (base + Int(d.pointee.offset) + Int(head.rawValue) * MemoryLayout<rmap_page>.stride)
            .storeBytes(of: folioFreeHead(order: order), as: UInt32.self)
        setFolioFree(order, head.rawValue)
        d.pointee.live -= n
    }

    // MARK: the deferred split queue (mm/huge_memory.c)

    /// Whether the folio is on the deferred split queue.
    @inline(__always) package func folioOnDeferredList(_ head: PFN) -> Bool {
        page(head.advanced(by: 1)).pointee.flags & PG.partiallyMapped != 0
    }

    /// deferred_split_folio(folio, partially_mapped: true): a partially
    /// unmapped anonymous large folio is queued for the shrinker (with
    /// `shrink_underused` 0, only partially mapped folios are queued).
    func deferredSplitFolio(_ head: PFN) {
        guard folioOrder(head) > 1, !folioOnDeferredList(head) else { return }
        page(head.advanced(by: 1)).pointee.flags |= PG.partiallyMapped
        let tail = PFN(header.pointee.deferred_split_tail)
        page(head.advanced(by: 2)).pointee.deferred_prev = tail.rawValue
        page(head.advanced(by: 2)).pointee.deferred_next = 0
        if !tail.isNone {
            page(tail.advanced(by: 2)).pointee.deferred_next = head.rawValue
        } else {
            header.pointee.deferred_split_head = head.rawValue
        }
        header.pointee.deferred_split_tail = head.rawValue
        header.pointee.deferred_split_len += 1
    }

    /// folio_unqueue_deferred_split() / list_del_init(&folio->_deferred_list).
    func deferredSplitRemove(_ head: PFN) {
        guard folioOnDeferredList(head) else { return }
        let p2 = page(head.advanced(by: 2))
        let prev = PFN(p2.pointee.deferred_prev), next = PFN(p2.pointee.deferred_next)
        if !prev.isNone {
            page(prev.advanced(by: 2)).pointee.deferred_next = next.rawValue
        } else {
            header.pointee.deferred_split_head = next.rawValue
        }
        if !next.isNone {
            page(next.advanced(by: 2)).pointee.deferred_prev = prev.rawValue
        } else {
            header.pointee.deferred_split_tail = prev.rawValue
        }
        p2.pointee.deferred_next = 0
        p2.pointee.deferred_prev = 0
        page(head.advanced(by: 1)).pointee.flags &= ~PG.partiallyMapped
        header.pointee.deferred_split_len -= 1
    }
}
