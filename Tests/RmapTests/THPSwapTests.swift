import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// THP_SWAP (CONFIG_THP_SWAP=y on this machine's 6.18): reclaim of an
/// anonymous large folio swaps it whole in 2^order contiguous, naturally
/// aligned slots of one 512-slot cluster (folio_alloc_swap,
/// cluster_alloc_swap_entry), or splits it (partially mapped, or no cluster
/// has room: THP_SWPOUT_FALLBACK); a reclaim that fails midway leaves it in
/// the swap cache, and do_swap_page() maps it back from there whole or one
/// page. Expectations derived by hand from 6.18's mm/vmscan.c,
/// mm/swapfile.c, mm/swap_state.c, mm/rmap.c and mm/memory.c. Model only:
/// the oracle runs without swap.
@Suite struct THPSwapTests {
    static let a: UInt64 = 0x1000_0080_0000

    /// A process with one PMD-mapped THP at `a` and a swap device of `slots`.
    func thp(swap slots: Int, extra: String = "") throws -> Machine {
        let (m, out) = try machine("""
            thp enabled madvise
            swap \(slots)
            proc P0
            P0 mmap 0x100000800000 512 rw anon-private
            P0 madvise 0x100000800000 512 hugepage
            P0 write 0x100000800000
            \(extra)
            """)
        #expect(out.failures == [] && out.error == nil, "\(out.failures)")
        return m
    }

    func head(_ m: Machine, _ p: String, _ addr: UInt64) throws -> PFN {
        let pfn = m.frame(p, addr)
        try #require(!pfn.isNone)
        return m.k.folioOf(pfn)
    }

    func slot(_ m: Machine, _ off: UInt64) -> rmap_swap_slot { m.k.swapMap[Int(off)] }

    // MARK: clusters (folio_alloc_swap)

    /// The header (slot 0) and the slots past the device's end are bad slots
    /// of their clusters, which stay order 0: a device of 1022 slots (1023
    /// pages) has no cluster free of bad slots; one of 1023 has one
    /// (512-1023).
    @Test func onlyClustersWithoutBadSlotsTakeLargeFolios() throws {
        let small = try thp(swap: 1022)
        #expect(small.k.folioAllocSwap(try head(small, "P0", Self.a), order: 9) == 0)
        #expect(small.k.folioAllocSwap(try head(small, "P0", Self.a), order: 2) == 0)
        let one = try thp(swap: 1023)
        #expect(one.k.folioAllocSwap(try head(one, "P0", Self.a), order: 9) == 512)
        // Full: no second cluster.
        #expect(one.k.folioAllocSwap(try head(one, "P0", Self.a), order: 9) == 0)
    }

    /// "The first allocation in a cluster makes the cluster exclusive to
    /// this order": after an order-4 allocation, the cluster takes further
    /// order-4 folios at aligned offsets, never another order; an order-0
    /// slot comes from the header's order-0 cluster first.
    @Test func aClusterTakesOneOrder() throws {
        let m = try thp(swap: 1023)
        let h = try head(m, "P0", Self.a)
        #expect(m.k.folioAllocSwap(h, order: 4) == 512)
        #expect(m.k.folioAllocSwap(h, order: 2) == 0)
        #expect(m.k.folioAllocSwap(h, order: 9) == 0)
        #expect(m.k.folioAllocSwap(h, order: 4) == 528)
        #expect(m.k.swapCluster(1) == (count: 32, order: 4))
        #expect(m.k.swapCluster(0) == (count: 1, order: 0))  // the header only
        #expect(m.k.getSwapPage(for: h) == 1)
        #expect(slot(m, 528).flags == Kernel.swapHasCache | (4 << Kernel.swapOrderShift) && slot(m, 528).cache_frame == h.rawValue)
    }

    // MARK: reclaim

    /// A whole swap-out: the folio took slots 512-1023, every PTE of the
    /// split PMD holds its page's entry (folio->swap + i, SWP_EXCLUSIVE: the
    /// pages were exclusive), the data is in the slots, the folio is freed
    /// (no split ran: no zero page), the MM counters moved 512 pages.
    @Test func aTHPIsSwappedOutWhole() throws {
        let m = try thp(swap: 1023)
        let h = try head(m, "P0", Self.a)
        m.k.page(h.advanced(by: 7)).pointee.content = 77
        let content0 = m.k.page(h).pointee.content
        #expect(m.k.reclaimFolio(h) == .ok)
        #expect(m.frameIsFree(h))
        for i: UInt64 in [0, 1, 7, 511] {
            let e = m.pte("P0", Self.a + i << 12)
            #expect(PTE.isRealSwapEntry(e) && PTE.swpOffset(e) == 512 + i && e & PTE.swpExclusive != 0)
            #expect(slot(m, 512 + i).count == 1 && slot(m, 512 + i).flags & Kernel.swapHasCache == 0)
        }
        #expect(slot(m, 512).content == content0 && slot(m, 519).content == 77)
        #expect(m.k.mmCounter(m.mm("P0"), .anon) == 0 && m.k.mmCounter(m.mm("P0"), .swapents) == 512)
        #expect(m.k.header.pointee.thp_split_page == 0)
        #expect(m.checkViolations() == [])
    }

    /// Without a cluster the folio is split (THP_SWPOUT_FALLBACK): the
    /// never-written pages go to the zero page, the written one is swapped
    /// in an order-0 slot.
    @Test func noClusterFallsBackToSplit() throws {
        let m = try thp(swap: 1022)
        let h = try head(m, "P0", Self.a)
        #expect(m.k.reclaimFolio(h) == .ok)
        #expect(m.tokens("P0", Self.a, 3) == "S Z Z")
        #expect(m.k.header.pointee.thp_split_page == 1)
        #expect(m.checkViolations() == [])
    }

    /// A partially mapped folio (on the deferred split queue) is split
    /// first, whatever the swap device holds.
    @Test func aPartiallyMappedFolioIsSplitFirst() throws {
        let m = try thp(swap: 2047, extra: "P0 munmap 0x1000009ff000 1")
        let h = try head(m, "P0", Self.a)
        #expect(m.k.folioOnDeferredList(h))
        #expect(m.k.reclaimFolio(h) == .ok)
        #expect(m.tokens("P0", Self.a, 2) == "S Z")
        #expect(m.checkViolations() == [])
    }

    /// A folio with a reference beyond its mappings (a migration entry left
    /// by `unmap ... migration`) cannot be split: shrink_folio_list keeps it
    /// before it takes any slot (can_split_folio: activate_locked).
    @Test func aFolioThatCannotBeSplitIsKept() throws {
        let m = try thp(swap: 1023)
        let h = try head(m, "P0", Self.a)
        let out = m.replay(try TraceParser.parse(continuing: m, "P0 unmap 0x100000800000 1 migration", file: "t"))
        #expect(out.failures == [] && out.error == nil)
        #expect(m.tokens("P0", Self.a, 1) == "M*")
        #expect(m.k.reclaimFolio(h) == .fail)
        #expect(m.k.swapCluster(1) == (count: 0, order: -1))
        #expect(m.k.page(h).pointee.flags & PG.swapcache == 0)
    }

    // MARK: a reclaim that fails midway, and the swap cache

    /// P1 maps the THP read-only and mlocked (by its PMD): the walk unmaps
    /// P0's 512 PTEs, then stops at P1's VM_LOCKED VMA. The folio stays in
    /// the swap cache with its slots (SWAP_HAS_CACHE, one swap count each
    /// for P0's entries), one reference per page from the swap cache; P1's
    /// PMD stays.
    func failedMidway() throws -> (Machine, PFN) {
        let m = try thp(swap: 1535, extra: """
            P1 = fork P0
            P1 mprotect 0x100000800000 512 r
            P1 mlock 0x100000800000 512
            """)
        let h = try head(m, "P1", Self.a)
        #expect(m.k.reclaimFolio(h) == .fail)
        return (m, h)
    }

    @Test func aFailedReclaimLeavesTheFolioInTheSwapCache() throws {
        let (m, h) = try failedMidway()
        let p = m.k.page(h).pointee
        #expect(p.flags & PG.swapcache != 0 && PTE.swpOffset(p.private_) == 512)
        #expect(p.refcount == 1 + 512)  // P1's PMD and the swap cache's
        #expect(m.k.folioMapcount(h) == 1 && m.tokens("P1", Self.a, 1) == "A1+0:1*")
        for i: UInt64 in [0, 5, 511] {
            #expect(PTE.swpOffset(m.pte("P0", Self.a + i << 12)) == 512 + i)
            #expect(slot(m, 512 + i).count == 1 && slot(m, 512 + i).cache_frame == h.advanced(by: UInt32(i)).rawValue)
        }
        #expect(m.k.page(h).pointee.flags & PG.mlocked != 0)
        #expect(m.checkViolations() == [])
        // `split` leaves it whole (the spec's rule), and so does migration.
        #expect(!m.k.splitFolio(h))
        #expect(m.k.migrateFolio(h) == .fail)
        // A second reclaim starts from the swap cache: no new slots.
        #expect(m.k.reclaimFolio(h) == .fail)
        #expect(m.k.swapCluster(2) == (count: 0, order: -1))
        #expect(m.checkViolations() == [])
    }

    /// do_swap_page() maps the whole folio back when its range lies in the
    /// VMA and the PMD and all 512 PTEs hold its entries: 512 PTEs, the
    /// counters, the swap counts gone; the folio is mlocked, so
    /// should_try_to_free_swap() takes it out of the swap cache (its
    /// references go, the cluster is free).
    @Test func aFaultMapsTheWholeFolioFromTheSwapCache() throws {
        let (m, h) = try failedMidway()
        let out = m.replay(try TraceParser.parse(continuing: m, "P0 read 0x100000805000", file: "t"))
        #expect(out.failures == [] && out.error == nil)
        #expect(m.tokens("P0", Self.a, 2) == "A1+0:2 A1+1:2" && m.tokens("P0", Self.a + 511 << 12, 1) == "A1+511:2")
        #expect(m.k.mmCounter(m.mm("P0"), .anon) == 512 && m.k.mmCounter(m.mm("P0"), .swapents) == 0)
        #expect(m.k.page(h).pointee.flags & PG.swapcache == 0)
        #expect(m.k.page(h).pointee.refcount == 1 + 512)
        #expect(m.k.swapCluster(1) == (count: 0, order: -1))
        // Not SWP_EXCLUSIVE and P1 maps it: read-only.
        #expect(!PTE.isWrite(m.pte("P0", Self.a + 0x5000)))
        #expect(m.checkViolations() == [])
    }

    /// The folio not mlocked (P1 locks only its first 16 pages: not the
    /// whole folio), a read fault: should_try_to_free_swap() says no, the
    /// folio stays in the swap cache with no swap count left; a write on it
    /// copies a page (mapped by two mms: no reuse) and leaves the cache as
    /// it is; the zaps of every mapping then free it (free_swap_cache).
    @Test func theSwapCacheStaysUntilTheLastMappingGoes() throws {
        let m = try thp(swap: 2047, extra: """
            P1 = fork P0
            P1 mprotect 0x100000800000 16 r
            P1 mlock 0x100000800000 16
            """)
        let h = try head(m, "P1", Self.a)
        #expect(m.k.page(h).pointee.flags & PG.mlocked == 0)
        #expect(m.k.reclaimFolio(h) == .fail)
        #expect(m.tokens("P0", Self.a, 1) == "S" && m.tokens("P1", Self.a, 1) == "A1+0:1")
        let out = m.replay(try TraceParser.parse(continuing: m, """
            P0 read 0x100000805000
            P0 write 0x100000806000
            """, file: "t"))
        #expect(out.failures == [] && out.error == nil)
        #expect(m.tokens("P0", Self.a + 0x5000, 2) == "A1+5:2 A2:1")
        #expect(m.k.page(h).pointee.flags & PG.swapcache != 0)
        #expect((0..<512).allSatisfy { slot(m, 512 + UInt64($0)).count == 0 })
        #expect(m.checkViolations() == [])
        let out2 = m.replay(try TraceParser.parse(continuing: m, """
            P1 exit
            P0 munmap 0x100000800000 512
            """, file: "t"))
        #expect(out2.failures == [] && out2.error == nil)
        #expect(m.frameIsFree(h))
        #expect(m.k.swapCluster(1) == (count: 0, order: -1))
        #expect(m.checkViolations() == [])
    }

    /// When the folio's range leaves the VMA only the faulting page is
    /// mapped; an SWP_EXCLUSIVE entry maps it exclusive and writable.
    @Test func aFaultMapsOnePageWhenTheFolioLeavesTheVMA() throws {
        let m = try thp(swap: 1023, extra: "P0 mlock 0x1000009f0000 16")
        let h = try head(m, "P0", Self.a)
        #expect(m.k.reclaimFolio(h) == .fail)
        #expect(m.tokens("P0", Self.a, 1) == "S" && m.k.folioOnDeferredList(h))
        let out = m.replay(try TraceParser.parse(continuing: m, "P0 read 0x100000801000", file: "t"))
        #expect(out.failures == [] && out.error == nil)
        #expect(m.tokens("P0", Self.a, 3) == "S A1+1:1 S")
        #expect(PTE.isWrite(m.pte("P0", Self.a + 0x1000)) && m.k.page(h.advanced(by: 1)).pointee.flags & PG.anonExclusive != 0)
        #expect(slot(m, 513).count == 0 && slot(m, 512).count == 1 && m.k.page(h).pointee.flags & PG.swapcache != 0)
        #expect(m.checkViolations() == [])
    }

    /// Fork copies the swap entries of a folio in the swap cache
    /// (swap_duplicate); the whole-folio fault then needs every PTE to hold
    /// the same bits: the child's entries lost SWP_EXCLUSIVE, so the child
    /// maps it whole, and each slot keeps the parent's count.
    @Test func forkDuplicatesTheEntries() throws {
        let m = try thp(swap: 1023, extra: "P0 mlock 0x1000009f0000 16")
        let h = try head(m, "P0", Self.a)
        #expect(m.k.reclaimFolio(h) == .fail)
        let out = m.replay(try TraceParser.parse(continuing: m, """
            P0 munlock 0x1000009f0000 16
            P2 = fork P0
            """, file: "t"))
        #expect(out.failures == [] && out.error == nil)
        #expect(slot(m, 512).count == 2)
        #expect(m.checkViolations() == [])
    }

    // MARK: the deferred-split rule and pages mapped back one by one

    /// A THP whose PMD became a migration entry (`unmap ... migration`),
    /// split into PTE entries at a VMA boundary in a fork child; faults in
    /// another child finish 91 of them one by one, the rest are zapped by
    /// exits: partially mapped, never queued (nothing was unmapped page by
    /// page), as 6.18 would leave it. Without PG.remappedInPart the
    /// checker's "partially mapped => queued" failed here (found by `rmap
    /// fuzz --large --seed 3`; the same on main before this branch).
    @Test func aFolioMappedBackFromMigrationEntriesNeedNotBeQueued() throws {
        let (m, out) = try machine("""
            thp 128K always
            proc P0
            P0 mmap 0x100000600000 1024 rw anon-private
            P0 madvise 0x100000600000 1024 hugepage
            P0 write 0x100000603000 4
            P0 unmap 0x100000600000 1 migration
            P1 = fork P0
            P2 = fork P1
            P3 = fork P2
            P3 madvise 0x1000005fe000 423 wipeonfork
            P4 = fork P3
            P5 = fork P1
            P1 exit
            P5 exit
            P7 = fork P2
            P0 exit
            P7 exit
            P3 exit
            P4 mprotect 0x1000006f0000 512 r
            P4 mlock 0x1000006f0000 512
            P2 exit
            """)
        #expect(out.failures == [] && out.error == nil)
        let h = try head(m, "P4", 0x1000_007a_5000)
        #expect(!m.k.folioOnDeferredList(h) && m.k.folioMapcount(h) == 91)
        #expect(m.k.page(h).pointee.flags & PG.remappedInPart != 0)
        #expect(m.checkViolations() == [])
    }

    // MARK: the checker's swapMap rule, each fault planted

    @Test func aSwapCountOffTheCensusIsCaught() throws {
        let (m, _) = try failedMidway()
        m.k.swapMap[600].count -= 1
        #expect(m.checkViolations().contains { $0.kind == .swapMap })
    }

    @Test func aCacheFlagWithoutItsFolioIsCaught() throws {
        let (m, h) = try failedMidway()
        m.k.swapMap[600].cache_frame = 0
        #expect(m.checkViolations().contains { $0.kind == .swapMap })
        m.k.swapMap[600].cache_frame = h.advanced(by: 88).rawValue
        m.k.swapMap[600].flags &= ~Kernel.swapHasCache
        #expect(m.checkViolations().contains { $0.kind == .swapMap })
    }

    @Test func aMisalignedSwapCacheFolioIsCaught() throws {
        let (m, h) = try failedMidway()
        // The folio and P0's entries moved one slot up, consistently: only
        // the natural alignment is wrong (slots 513-1024).
        for j in stride(from: 511, through: 0, by: -1) { m.k.swapMap[513 + j] = m.k.swapMap[512 + j] }
        m.k.swapMap[512] = rmap_swap_slot()
        m.k.page(h).pointee.private_ = PTE.swpEntry(type: 0, offset: 513)
        for j: UInt64 in 0..<512 {
            let slot = m.k.leafSlot(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.a + j << 12)!
            slot.pointee = Kernel.swpWithOffset(slot.pointee, 513 + j)
        }
        let v = m.checkViolations()
        #expect(v.count == 1 && v[0].kind == .swapMap && v[0].message.contains("not naturally aligned"), "\(v.map(\.message))")
    }

    @Test func twoOrdersInOneClusterAreCaught() throws {
        let (m, _) = try failedMidway()
        m.k.swapMap[700].flags = Kernel.swapHasCache | (4 << Kernel.swapOrderShift) | (m.k.swapMap[700].flags & ~Kernel.swapOrderMask)
        let v = m.checkViolations()
        #expect(v.contains { $0.kind == .swapMap && $0.message.contains("cluster") }, "\(v)")
    }

    @Test func aFreeSlotWithFlagsIsCaught() throws {
        let (m, _) = try failedMidway()
        try #require(m.k.swapMap[1200].count == 0 && m.k.swapMap[1200].flags == 0)
        m.k.swapMap[1200].flags = 9 << Kernel.swapOrderShift
        #expect(m.checkViolations().contains { $0.kind == .swapMap })
    }

    @Test func anExclusivePageUnderASwapEntryIsCaught() throws {
        let (m, h) = try failedMidway()
        m.k.page(h.advanced(by: 3)).pointee.flags |= PG.anonExclusive
        #expect(m.checkViolations().contains { $0.kind == .swapExclusivity })
    }
}

extension TraceParser {
    /// Statements run on a machine that already ran a trace (its processes known).
    static func parse(continuing m: Machine, _ text: String, file: String) throws -> Trace {
        try parse(text, file: file, continuing: m.traceContext)
    }
}
