import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// The invariant checker can fail: a model with one planted defect (an rmap
/// add removed, a mapcount decrement removed, the root rule of
/// __page_set_anon_rmap ignored) runs a trace the correct model passes, and
/// the checker names the broken invariant (its kind) and object. Then every
/// kind of violation, each from a defect planted in a sound state.
@Suite struct CheckerTests {
    /// Fork shares the page (folio_try_dup_anon_rmap_pte), B's exit removes
    /// its mapping (folio_remove_rmap_pte), and a swap-out/swap-in of a page
    /// shared by two processes sets the anon rmap of a non-exclusive page
    /// (do_swap_page -> folio_add_anon_rmap_pte).
    static let trace = """
        swap 8
        proc A
        A mmap 0x100000000000 2 rw anon-private
        A write 0x100000000000 2
        B = fork A
        C = fork A
        B reclaim 0x100000000000
        B read 0x100000000000
        A read 0x100000000000
        C exit
        """

    func run(_ defect: ModelDefect) throws -> [CheckerViolation] {
        let m = try Machine(config: .default, reuse: .split)
        m.k.hooks.defect = defect
        let out = m.replay(try TraceParser.parse(Self.trace, file: "checker.trace"))
        #expect(out.failures == [])
        return m.checkViolations()
    }

    @Test func correctModelPasses() throws {
        #expect(try run(.none) == [])
    }

    @Test func missingRmapAddAtForkIsCaught() throws {
        let v = try run(.skipDupAnonRmap)
        #expect(Set(v.map(\.kind)) == [.mapcount], "\(v)")
        #expect(v.allSatisfy { $0.pfn != nil })
    }

    @Test func missingMapcountDecrementIsCaught() throws {
        let v = try run(.skipRemoveRmapDecrement)
        #expect(Set(v.map(\.kind)) == [.mapcount], "\(v)")
        #expect(v.allSatisfy { $0.pfn != nil })
    }

    @Test func sharedAnonPageOffTheRootIsCaught() throws {
        let v = try run(.sharedAnonPageNotAtRoot)
        #expect(v.contains { $0.kind == .pteWithoutRmap && $0.pfn != nil }, "\(v)")
    }

    /// The printed form is the message, as it always was.
    /// 6.18's mlock of large folios: a folio mlocked by its locked VMA
    /// (mlock_new_folio at the fault), shared with a fork child; the
    /// parent's exit munlocks it (munlock_vma_folio at the zap). With that
    /// munlock forgotten, the folio stays mlocked with no VM_LOCKED VMA
    /// mapping it, and the checker says so.
    @Test func forgottenLargeFolioMunlockIsCaught() throws {
        let trace = """
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000000000 16 rw anon-private
            P0 mlock 0x100000000000 16
            P1 = fork P0
            P0 exit
            """
        for defect in [ModelDefect.none, .skipLargeFolioMunlock] {
            let m = try Machine(config: .default, reuse: .split)
            m.k.hooks.defect = defect
            let out = m.replay(try TraceParser.parse(trace, file: "mlock.trace"))
            #expect(out.failures == [] && out.error == nil)
            #expect(m.tokens("P1", 0x1000_0000_0000, 1) == "A1+0:1")
            let v = m.checkViolations()
            if defect == .none {
                #expect(v == [])
            } else {
                #expect(v.contains { $0.kind == .mlock && $0.message.contains("no VM_LOCKED VMA maps it") }, "\(v)")
            }
        }
    }

    /// The large-folio mlock rules, each broken in a sound state: a tail
    /// page carrying PG_mlocked, an mlock_count above the locked VMAs that
    /// map the folio, a count on a folio that is not mlocked.
    @Test func largeFolioMlockDefectsAreCaught() throws {
        let text = """
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000000000 32 rw anon-private
            P0 mlock 0x100000000000 16
            P0 write 0x100000010000
            """
        let plants: [(String, (Machine, PFN, PFN) -> Void)] = [
            ("tail page of a large folio with PG_mlocked", { m, locked, _ in m.k.page(locked.advanced(by: 3)).pointee.flags |= PG.mlocked }),
            ("mlock_count 2 but 1 VM_LOCKED VMAs", { m, locked, _ in m.k.page(locked).pointee.prev = 2 }),
            ("not mlocked with mlock_count 1", { m, _, other in m.k.page(other).pointee.prev = 1 }),
            ("mlocked but no VM_LOCKED VMA maps it", { m, _, other in m.k.page(other).pointee.flags |= PG.mlocked | PG.unevictable }),
        ]
        for (message, plant) in plants {
            let (m, _) = try machine(text)
            let locked = m.k.folioOf(m.frame("P0", 0x1000_0000_0000)), other = m.k.folioOf(m.frame("P0", 0x1000_0001_0000))
            #expect(m.k.folioIsLarge(locked) && m.k.folioIsLarge(other) && m.k.folioMlockCount(locked) == 1)
            #expect(m.checkViolations() == [])
            plant(m, locked, other)
            let v = m.checkViolations()
            #expect(v.contains { $0.kind == .mlock && $0.message.contains(message) }, "\(message): \(v)")
        }
    }

    @Test func descriptionIsTheMessage() throws {
        let m = try Machine(config: .default, reuse: .split)
        _ = m.replay(try TraceParser.parse(Self.trace, file: "checker.trace"))
        m.k.header.pointee.balloon_pages += 1
        let v = m.checkViolations()
        #expect(v == [CheckerViolation(kind: .balloonCounters, object: nil,
                                       message: "balloon: 1 pages counted, 0 on the list")])
        #expect(m.check() == ["balloon: 1 pages counted, 0 on the list"])
    }

    // MARK: every kind, from a planted defect

    static let a: UInt64 = 0x1000_0000_0000    // P0, P1: anon, 4 pages
    static let f: UInt64 = 0x1000_0001_0000    // P0, P1: file-shared f, 2 pages
    static let l: UInt64 = 0x1000_0002_0000    // P0: mlocked anon, 2 pages
    static let k: UInt64 = 0x2000_0000_0000    // K0, K1: one merged KSM page
    static let d: UInt64 = 0x3000_0000_0000    // D: device-private, device-exclusive, hwpoison
    static let s: UInt64 = 0x4000_0000_0000    // S, S2: a fork-shared page swapped out; E: an exclusive one
    static let t: UInt64 = 0x5000_0000_0000    // T, T2: a THP by PMD in both; a partially mapped one by PTEs
    static let h: UInt64 = 0x6000_0000_0000    // H, H2: a private hugetlb page shared by a fork, one unfaulted; a shared one

    /// A sound state with every object the checker looks at: a fork family
    /// of anon_vmas, a file mapping, an mlocked range, a KSM page shared by
    /// two mms, a device-private entry, a device-exclusive entry, a hwpoison
    /// entry, swap entries (shared by a fork, and exclusive) and a balloon
    /// with one isolated page; hugetlb pages, private and fork-shared with
    /// a reservation left, and shared (a pool of 3, one free).
    static let fixture = """
        swap 8
        thp enabled madvise
        hugetlb 3
        file f 4
        file g 4
        proc P0
        P0 mmap 0x100000000000 4 rw anon-private
        P0 write 0x100000000000 4
        P0 mmap 0x100000010000 2 rw file-shared:f@0
        P0 read 0x100000010000 2
        P0 mmap 0x100000020000 2 rw anon-private
        P0 write 0x100000020000 2
        P0 mlock 0x100000020000 2
        P1 = fork P0
        P1 write 0x100000000000
        P1 read 0x100000010000
        proc K0
        proc K1
        K0 mmap 0x200000000000 1 rw anon-private
        K1 mmap 0x200000000000 1 rw anon-private
        K0 write 0x200000000000 value=7
        K1 write 0x200000000000 value=7
        K0 madvise 0x200000000000 1 mergeable
        K1 madvise 0x200000000000 1 mergeable
        ksm scan 2
        proc D
        D mmap 0x300000000000 4 rw anon-private
        D write 0x300000000000 4
        D device 0x300000000000 1
        D exclusive 0x300000001000 1
        D poison 0x300000002000 1
        D unmap 0x300000002000 1 ignore_access
        proc S
        S mmap 0x400000000000 1 rw anon-private
        S write 0x400000000000
        S2 = fork S
        S reclaim 0x400000000000
        proc E
        E mmap 0x400000000000 1 rw anon-private
        E write 0x400000000000
        E reclaim 0x400000000000
        proc T
        T mmap 0x500000000000 1024 rw anon-private
        T madvise 0x500000000000 1024 hugepage
        T write 0x500000000000
        T write 0x500000200000
        T munmap 0x5000003ff000 1
        T2 = fork T
        proc H
        H mmap 0x600000000000 1024 rw hugetlb-private
        H write 0x600000000000
        H mmap 0x600000400000 512 rw hugetlb-shared
        H write 0x600000400000
        H2 = fork H
        """

    func fixture() throws -> Machine {
        let (m, out) = try machine(Self.fixture)
        #expect(out.failures == [])
        #expect(m.balloonInflate(pages: 3) == 3)
        #expect(m.k.isolateMovablePage(m.balloonFrames()[0]))
        return m
    }

    @Test func theFixtureIsSoundAndHasEveryObject() throws {
        let m = try fixture()
        #expect(m.checkViolations() == [])
        #expect(m.tokens("P0", Self.a, 1) == "A1:1" && m.tokens("P1", Self.a, 2) == "A1:1 A2:2")
        #expect(m.tokens("K0", Self.k, 1) == "K1:2")
        #expect(m.tokens("D", Self.d, 4) == "D X H A1:1")
        #expect(m.frameRecord(m.frame("P0", Self.l)).pointee.flags & PG.mlocked != 0)
        #expect(m.balloonFrames().count == 2 && m.k.header.pointee.balloon_isolated == 1)
        // Swapped out: shared by S and S2 (two references, not exclusive), E's alone and exclusive.
        #expect(m.tokens("S", Self.s, 1) == "S" && m.tokens("S2", Self.s, 1) == "S" && m.tokens("E", Self.s, 1) == "S")
        #expect(m.pte("S", Self.s) & PTE.swpExclusive == 0 && m.pte("E", Self.s) & PTE.swpExclusive != 0)
        #expect(m.k.swapSlot(PTE.swpOffset(m.pte("S", Self.s)))?.pointee.count == 2)
        // A THP mapped by a PMD in T and T2; one split to PTEs, its last page
        // unmapped: on the deferred split queue.
        #expect(m.tokens("T", Self.t, 1) == "A1+0:2*" && m.tokens("T2", Self.t, 1) == "A1+0:2*")
        #expect(m.tokens("T", Self.t + 0x200000, 1) == "A1+0:2" && m.tokens("T", Self.t + 0x3fe000, 2) == "A1+510:2 -")
        #expect(m.k.header.pointee.deferred_split_len == 1)
        // hugetlb: H's private page shared with H2 (copied at fork), its
        // second page reserved, not faulted; the shared page in H only.
        #expect(m.tokens("H", Self.h, 1) == "T1+0:2*" && m.tokens("H2", Self.h, 1) == "T1+0:2*")
        #expect(m.tokens("H", Self.h + 0x400000, 1) == "T1+0:1*" && m.tokens("H2", Self.h + 0x400000, 1) == "-")
        #expect(m.hugetlbPool == (3, 1, 1, 0))
    }

    func hugetlbHead(_ m: Machine, _ p: String, _ addr: UInt64) throws -> PFN {
        let pfn = m.k.mappedPage(m.mm(p), addr)
        try #require(!pfn.isNone && m.k.folioIsHugetlb(m.k.folioOf(pfn)))
        return m.k.folioOf(pfn)
    }

    func thpHead(_ m: Machine, _ addr: UInt64) throws -> PFN {
        let pfn = m.k.mappedPage(m.mm("T"), addr)
        try #require(!pfn.isNone)
        return m.k.folioOf(pfn)
    }

    @Test(arguments: CheckerViolation.Kind.allCases)
    func everyKindIsCaught(_ kind: CheckerViolation.Kind) throws {
        let m = try fixture()
        try plant(kind, in: m)
        let v = m.checkViolations()
        #expect(v.contains { $0.kind == kind }, "\(kind): \(v)")
    }

    func pte(_ m: Machine, _ p: String, _ addr: UInt64) -> UnsafeMutablePointer<UInt64> {
        m.k.leafSlot(root: m.k.mm(m.mm(p)).pointee.pgd, key: addr)!
    }
    func entryFrame(_ m: Machine, _ p: String, _ addr: UInt64) -> PFN {
        PTE.swpOffsetPFN(pte(m, p, addr).pointee)
    }
    func ksmNode(_ m: Machine) throws -> KSMNodeID {
        let node = m.k.folioStableNode(m.frame("K0", Self.k))
        try #require(!node.isNone)
        return node
    }

    /// One defect that breaks `kind`'s invariant in the fixture. The switch
    /// is exhaustive: a new kind does not compile without its defect here.
    func plant(_ kind: CheckerViolation.Kind, in m: Machine) throws {
        let k = m.k
        switch kind {
        case .vmaTree:
            k.vma(VMAID(k.mm(m.mm("P0")).pointee.mm_rb)).pointee.mm_rb.color = 0  // a red root
        case .vmaMM:
            k.vma(m.vmaAt("P0", Self.a)).pointee.mm = m.mm("P1").rawValue
        case .vmaRange:
            k.vma(m.vmaAt("P0", Self.f)).pointee.vm_end += 0x10
        case .vmaOverlap:
            k.vma(m.vmaAt("P0", Self.f)).pointee.vm_start = Self.a + 0x3000
        case .mmMapCount:
            k.mm(m.mm("P0")).pointee.map_count += 1
        case .mmTotalVM:
            k.mm(m.mm("P0")).pointee.total_vm -= 2
        case .iMMapWritable:
            k.file(FileID(m.fileByName["f"]!)).pointee.i_mmap_writable += 1
        case .mmLockedVM:
            k.mm(m.mm("P0")).pointee.locked_vm += 1
        case .pteOutsideVMA:
            k.vma(m.vmaAt("P0", Self.a)).pointee.vm_end -= 0x1000
        case .rssCounter:
            k.mm(m.mm("P0")).pointee.rss.1 += 1
        case .avcVMA:
            k.avc(AVCID(k.vma(m.vmaAt("P1", Self.a)).pointee.avc_head)).pointee.vma = m.vmaAt("P0", Self.a).rawValue
        case .avcInTree, .vmaOwnAVC:
            // P1's own chain names its parent's anon_vma (same root): in no tree, and no link to its own.
            let own = k.vma(m.vmaAt("P1", Self.a)).pointee.avc_head
            try #require(k.avc(AVCID(own)).pointee.anon_vma == m.anonVMAAt("P1", Self.a))
            k.avc(AVCID(own)).pointee.anon_vma = m.anonVMAAt("P0", Self.a)
        case .avcRoot:
            k.avc(AVCID(k.vma(m.vmaAt("P1", Self.a)).pointee.avc_head)).pointee.anon_vma = m.anonVMAAt("D", Self.d)
        case .anonVMATree:
            let av = m.anonVMAAt("P0", Self.a)
            k.avc(AVCID(k.anonVMA(AnonVMAID(av)).pointee.rb_root)).pointee.rb.color = 0
        case .anonVMARoot:
            let p0 = m.anonVMAAt("P0", Self.a), p1 = m.anonVMAAt("P1", Self.a)
            try #require(p0 != p1 && k.anonVMA(AnonVMAID(p1)).pointee.root == p0)
            k.anonVMA(AnonVMAID(p0)).pointee.root = p1
        case .anonVMAParent:
            k.anonVMA(AnonVMAID(m.anonVMAAt("P1", Self.a))).pointee.parent = m.anonVMAAt("D", Self.d)
        case .anonVMACounters:
            k.anonVMA(AnonVMAID(m.anonVMAAt("P0", Self.a))).pointee.num_children += 1
        case .anonVMARefcount, .pageAnonVMA:
            k.anonVMA(AnonVMAID(m.anonVMAAt("P1", Self.a))).pointee.refcount = 0
        case .anonVMAReusedInUse:
            k.header.pointee.anon_vma_reused_in_use = 1
            k.header.pointee.anon_vma_reused_last = UInt64(m.anonVMAAt("P1", Self.a))
        case .iMMap:
            k.vma(m.vmaAt("P0", Self.f)).pointee.file = m.fileByName["g"]!
        case .mapcount:
            k.page(m.frame("P0", Self.a)).pointee.mapcount += 1
        case .refcount:
            k.page(m.frame("P0", Self.a)).pointee.refcount = 0
        case .pteWithoutRmap:
            // page->mapping names an anon_vma of another family.
            let av = m.anonVMAAt("D", Self.d)
            k.page(m.frame("P0", Self.a + 0x1000)).pointee.mapping = k.offset(table: T.anonVMA, index: av) | PageMapping.anon
        case .mlock:
            k.page(m.frame("P0", Self.l)).pointee.flags &= ~PG.mlocked
        case .hwpoisonEntry:
            k.page(entryFrame(m, "D", Self.d + 0x2000)).pointee.flags &= ~PG.hwpoison
        case .anonExclusiveShared:
            // The second page is shared by P0 and P1 since the fork.
            k.page(m.frame("P0", Self.a + 0x1000)).pointee.flags |= PG.anonExclusive
        case .writablePrivateNotExclusive:
            // P1 copied the first page; P0's (mapped once now) is not exclusive until P0 writes it.
            try #require(k.page(m.frame("P0", Self.a)).pointee.flags & PG.anonExclusive == 0)
            pte(m, "P0", Self.a).pointee |= PTE.rw
        case .sharedPageWritable:
            pte(m, "P1", Self.a + 0x1000).pointee |= PTE.rw
        case .swapExclusivity:
            pte(m, "S", Self.s).pointee |= PTE.swpExclusive
        case .swapMap:
            // One swap reference more than the swap PTEs that name the slot.
            k.swapSlot(PTE.swpOffset(pte(m, "S", Self.s).pointee))!.pointee.count += 1
        case .contentProvenance:
            // P0's first page changes in place with no write through a mapping.
            k.page(m.frame("P0", Self.a)).pointee.content &+= 1
        case .devicePrivatePresent:
            k.page(m.frame("D", Self.d + 0x3000)).pointee.flags |= PG.devicePrivate
        case .devicePrivateEntry:
            k.page(entryFrame(m, "D", Self.d)).pointee.flags &= ~PG.devicePrivate
        case .deviceExclusiveEntry:
            k.page(entryFrame(m, "D", Self.d + 0x1000)).pointee.mapping = 0
        case .ksmWritable:
            pte(m, "K1", Self.k).pointee |= PTE.rw
        case .ksmMMList:
            k.mm(m.mm("K1")).pointee.ksm_flags &= ~KSMFlag.mmMergeable
        case .ksmRmapList:
            k.ksmItem(KSMItemID(k.mm(m.mm("K0")).pointee.ksm_rmap_list)).pointee.mm = m.mm("K1").rawValue
        case .ksmStableItem:
            k.ksmItem(KSMItemID(k.mm(m.mm("K0")).pointee.ksm_rmap_list)).pointee.anon_vma = 0
        case .ksmHlist:
            k.ksmNode(try ksmNode(m)).pointee.rmap_hlist_len += 1
        case .ksmCounters:
            k.header.pointee.ksm_pages_sharing += 1
        case .ksmStableTree:
            k.ksmNode(try ksmNode(m)).pointee.node.color = 0
        case .ksmContent:
            k.page(m.frame("K0", Self.k)).pointee.content += 1
        case .ksmStableNode:
            k.ksmNode(try ksmNode(m)).pointee.kpfn = m.frame("P0", Self.a).rawValue
        case .ksmAnonExclusive:
            k.page(m.frame("K0", Self.k)).pointee.flags |= PG.anonExclusive
        case .balloonList:
            let list = m.balloonFrames()
            try #require(list.count == 2)
            k.page(list[1]).pointee.prev = 0
        case .balloonCounters:
            k.header.pointee.balloon_pages += 1
        case .balloonIsolated:
            k.page(m.balloonFrames()[0]).pointee.flags |= PG.isolated
        case .movableMapped:
            k.page(m.frame("P0", Self.a + 0x2000)).pointee.mapping = k.balloonMops | PageMapping.movable
        case .movableOps:
            let isolated = k.header.pointee.balloon_isolated
            try #require(isolated == 1)
            // The isolated page (off the list) gets movable_operations nobody knows.
            var f = PFN(1)
            while !(k.pageIsBalloonMovable(f) && k.page(f).pointee.flags & PG.isolated != 0) { f = f.advanced(by: 1) }
            k.page(f).pointee.mapping = 0x40 | PageMapping.movable
        case .leak:
            k.desc(T.avc).pointee.live += 1
        case .folioCounters:
            k.page(try thpHead(m, Self.t).advanced(by: 1)).pointee.nr_pages_mapped += 1
        case .folioMMIDs:
            // Mapped by T and T2, no longer marked shared.
            k.page(try thpHead(m, Self.t).advanced(by: 1)).pointee.mm_id.1 &= ~FOLIO_MM_IDS_SHARED
        case .deferredSplit:
            k.header.pointee.deferred_split_len += 1
        case .pmdLeaf:
            // The PTE table deposited with T's PMD goes missing.
            let root = k.mm(m.mm("T")).pointee.pgd
            k.ptDesc(k.pmdTable(root: root, key: Self.t)).pointee.next = 0
        case .hugetlbPool:
            // A free page counted that is not on the free list.
            k.header.pointee.free_huge_pages += 1
        case .hugetlbReservations:
            // H's faulted private page reads as not consumed: the map holds a
            // reservation the pool does not count.
            let v = m.vmaAt("H", Self.h)
            try #require(k.hugetlbEntryHas(k.vmFile(v), 0, HugetlbEntry.consumed))
            k.hugetlbEntryUpdate(k.vmFile(v), 0, clear: HugetlbEntry.consumed)
        case .hugetlbOrphanReservation:
            // H's VMA loses its map (what 6.18's clear_vma_resv_huge_pages does
            // to the part a partial mremap leaves behind): its unconsumed
            // reservation has no owner.
            k.vma(m.vmaAt("H", Self.h)).pointee.vm_flags &= ~VM.hugetlbResvOwner
        case .hugetlbFolio:
            k.page(try hugetlbHead(m, "H", Self.h).advanced(by: 1)).pointee.entire_mapcount += 1
        case .hugetlbPMDShare:
            // H's PMD table counted as shared: no other PUD entry points to it.
            k.ptDesc(k.pmdTable(root: k.mm(m.mm("H")).pointee.pgd, key: Self.h)).pointee.ptl += 1
        case .hugetlbMigrationEntry:
            // H's page turned into migration entries (sound), then H's entry
            // made to name T's THP, no hugetlb folio.
            let head = try hugetlbHead(m, "H", Self.h)
            try #require(k.tryToMigrateHugetlb(head))
            let pmd = k.pmdSlot(root: k.mm(m.mm("H")).pointee.pgd, key: Self.h)!
            try #require(PTE.isPMDMigrationEntry(pmd.pointee) && m.checkViolations().isEmpty)
            pmd.pointee = PTE.swpEntry(type: PTE.swpType(pmd.pointee), pfn: try thpHead(m, Self.t))
        }
    }
}
