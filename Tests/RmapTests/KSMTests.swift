import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// KSM (mm/ksm.c): merging identical pages of VM_MERGEABLE regions into one
/// write-protected KSM frame, rmap_walk_ksm, COW break, unmerge, and KSM
/// frames through reclaim, migration, try_to_unmap and page_referenced.
/// Expectations are derived from the kernel functions named in
/// Sources/Rmap/KSM/KSM.swift; every test ends with a clean checker.
@Suite struct KSMTests {
    let a: UInt64 = 0x1000_0000_0000
    let b: UInt64 = 0x2000_0000_0000

    /// Three unrelated processes, one page each with content 7 (P2 at another
    /// address), all VM_MERGEABLE; nothing scanned yet.
    func three(swap: Int = 0, extra: String = "") throws -> Machine {
        let (m, out) = try machine("""
            swap \(swap)
            proc P0
            proc P1
            proc P2
            P0 mmap 0x100000000000 2 rw anon-private
            P1 mmap 0x100000000000 2 rw anon-private
            P2 mmap 0x200000000000 2 rw anon-private
            P0 write 0x100000000000 value=7
            P1 write 0x100000000000 value=7
            P2 write 0x200000000000 value=7
            P0 madvise 0x100000000000 2 mergeable
            P1 madvise 0x100000000000 2 mergeable
            P2 madvise 0x200000000000 2 mergeable
            \(extra)
            """)
        #expect(out.failures == [])
        return m
    }

    func name(_ m: Machine, _ mm: MMID) -> String { m.processName(mm: mm) ?? "?" }

    /// The (process, address) pairs an rmap walk of `pfn` visits, in order.
    func walk(_ m: Machine, _ pfn: PFN) -> [String] {
        struct Collect: RmapWalkControl {
            var hits: [(MMID, UInt64)] = []
            mutating func rmapOne(_ c: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
                hits.append((c.vmaRange(vma).mm, address))
                return true
            }
        }
        var c = Collect()
        m.k.rmapWalk(pfn, &c)
        return c.hits.map { "\(name(m, $0.0))@\(hex($0.1))" }
    }

    // MARK: merging

    @Test func identicalPagesOfThreeProcessesMergeIntoOneKSMFrame() throws {
        let m = try three()
        let old = [m.frame("P0", a), m.frame("P1", a), m.frame("P2", b)]
        m.ksmScan()
        // cmp_and_merge_page(): the first scan only records each checksum.
        #expect(m.tokens("P0", a, 1) + " " + m.tokens("P1", a, 1) + " " + m.tokens("P2", b, 1) == "A1:1 A1:1 A1:1")
        #expect(m.k.live(T.ksmNode) == 0)
        m.ksmScan()
        let k = m.frame("P0", a)
        #expect(m.frame("P1", a) == k && m.frame("P2", b) == k)
        #expect(m.observeTokens([Target(process: "P0", addr: a, pages: 1, location: .init(line: 0, column: 0)),
                                 Target(process: "P1", addr: a, pages: 1, location: .init(line: 0, column: 0)),
                                 Target(process: "P2", addr: b, pages: 1, location: .init(line: 0, column: 0))])
                == ["K1:3", "K1:3", "K1:3"])
        // page->mapping = stable_node | PAGE_MAPPING_KSM, the node names the frame.
        let node = m.k.folioStableNode(k)
        #expect(!node.isNone && m.k.ksmNode(node).pointee.kpfn == k.rawValue && m.k.ksmNode(node).pointee.rmap_hlist_len == 3)
        #expect(m.frameRecord(k).pointee.mapping & PageMapping.flags == PageMapping.ksm)
        #expect(m.frameRecord(k).pointee.content == 7 && m.frameRecord(k).pointee.refcount == 3)
        #expect(m.frameRecord(k).pointee.flags & PG.anonExclusive == 0)
        // Write-protected (and clean) in every process.
        for (p, addr) in [("P0", a), ("P1", a), ("P2", b)] {
            #expect(m.pte(p, addr) & (PTE.rw | PTE.dirty) == 0, "\(p)")
        }
        // The two frames that were replaced are freed; one of the three became the KSM page.
        #expect(old.contains(k))
        #expect(old.filter { $0 != k }.allSatisfy { m.frameIsFree($0) })
        // /sys/kernel/mm/ksm: pages_shared 1, pages_sharing 2.
        #expect(m.k.header.pointee.ksm_pages_shared == 1 && m.k.header.pointee.ksm_pages_sharing == 2)
        #expect(m.check() == [])
    }

    /// Two contents whose 32-bit checksums collide (found by a birthday
    /// search over the tokens 2...81207 with `Kernel.ksmChecksum`).
    static let collidingA: UInt64 = 65336, collidingB: UInt64 = 81207

    /// Two processes, one page each with `v0` and `v1`, both mergeable.
    func pair(_ v0: UInt64, _ v1: UInt64) throws -> Machine {
        let (m, out) = try machine("""
            proc P0
            proc P1
            P0 mmap 0x100000000000 1 rw anon-private
            P1 mmap 0x100000000000 1 rw anon-private
            P0 write 0x100000000000 value=\(v0)
            P1 write 0x100000000000 value=\(v1)
            P0 madvise 0x100000000000 1 mergeable
            P1 madvise 0x100000000000 1 mergeable
            """)
        #expect(out.failures == [])
        return m
    }

    /// calc_checksum() can collide, as the kernel's (a u32 of xxhash) can: two
    /// different pages with one checksum meet in the unstable tree, and the
    /// full comparison (memcmp_pages, then pages_identical) keeps them apart.
    @Test func collidingChecksumsDoNotMergeDifferentPages() throws {
        let (x, y) = (KSMTests.collidingA, KSMTests.collidingB)
        #expect(x != y && Kernel.ksmChecksum(x) == Kernel.ksmChecksum(y))
        let m = try pair(x, y)
        m.ksmScan(passes: 3)
        #expect(m.frame("P0", a) != m.frame("P1", a))
        #expect(m.tokens("P0", a, 1) == "A1:1" && m.tokens("P1", a, 1) == "A1:1")
        #expect(m.k.live(T.ksmNode) == 0 && m.k.header.pointee.ksm_pages_shared == 0)
        #expect(m.check() == [])
        // The same setup with equal contents merges in those passes.
        let same = try pair(x, x)
        same.ksmScan(passes: 3)
        #expect(same.frame("P0", a) == same.frame("P1", a) && same.tokens("P0", a, 1) == "K1:2")
    }

    /// unstable_tree_search_insert() compares each tree page met under the
    /// checksum (memcmp_pages) and walks past one that only collides: P1's
    /// and P2's identical pages merge although P0's colliding page sits in
    /// the unstable tree under the same checksum, ahead of them.
    @Test func theUnstableTreeSearchWalksPastACollidingPage() throws {
        let (x, y) = (KSMTests.collidingA, KSMTests.collidingB)
        let (m, out) = try machine("""
            proc P0
            proc P1
            proc P2
            P0 mmap 0x100000000000 1 rw anon-private
            P1 mmap 0x100000000000 1 rw anon-private
            P2 mmap 0x100000000000 1 rw anon-private
            P0 write 0x100000000000 value=\(y)
            P1 write 0x100000000000 value=\(x)
            P2 write 0x100000000000 value=\(x)
            P0 madvise 0x100000000000 1 mergeable
            P1 madvise 0x100000000000 1 mergeable
            P2 madvise 0x100000000000 1 mergeable
            """)
        #expect(out.failures == [])
        m.ksmScan(passes: 2)
        #expect(m.frame("P1", a) == m.frame("P2", a) && m.tokens("P1", a, 1) == "K1:2")
        #expect(m.frame("P0", a) != m.frame("P1", a) && m.tokens("P0", a, 1) == "A1:1")
        #expect(m.check() == [])
    }

    /// The checksum, not the content, decides whether a page "changed since
    /// the last scan" (cmp_and_merge_page()): a page rewritten with a
    /// colliding content looks unchanged and goes on to the trees in the very
    /// next pass, where a page rewritten with any other content waits a pass.
    @Test func aCollidingRewriteLooksUnchangedToTheChecksum() throws {
        let (x, y) = (KSMTests.collidingA, KSMTests.collidingB)
        func run(first: UInt64) throws -> String {
            let m = try pair(first, y)
            m.ksmScan()  // both items record their checksum
            #expect(m.perform("P0", .writeValue(addr: a, pages: 1, value: y)) == .ok)
            m.ksmScan()
            #expect(m.check() == [])
            return m.tokens("P0", a, 1) + " " + m.tokens("P1", a, 1)
        }
        #expect(try run(first: x) == "K1:2 K1:2")  // cs(x) == cs(y): unchanged, merged
        #expect(Kernel.ksmChecksum(x + 1) != Kernel.ksmChecksum(y))
        #expect(try run(first: x + 1) == "A1:1 A1:1")  // changed: only recorded this pass
    }

    @Test func differentContentOrAnUnmergeableRegionDoesNotMerge() throws {
        let m = try three(extra: """
            proc P3
            proc P4
            P3 mmap 0x100000000000 2 rw anon-private
            P3 write 0x100000000000 value=8
            P3 madvise 0x100000000000 2 mergeable
            P4 mmap 0x100000000000 2 rw anon-private
            P4 write 0x100000000000 value=7
            P1 write 0x100000001000
            P0 write 0x100000001000
            ksm scan 3
            """)
        #expect(m.tokens("P0", a, 1) == "K1:3")
        #expect(m.tokens("P3", a, 1) == "A1:1", "content 8 has no twin")
        #expect(m.tokens("P4", a, 1) == "A1:1", "not VM_MERGEABLE")
        // Plain writes store tokens derived from writer and address: different.
        #expect(m.tokens("P0", a + 0x1000, 1) == "A1:1" && m.tokens("P1", a + 0x1000, 1) == "A1:1")
        #expect(m.check() == [])
    }

    @Test func rmapWalkKSMFindsEveryMappingOwnMMFirstThenForks() throws {
        let m = try three(extra: "ksm scan 2\nP3 = fork P0")
        let k = m.frame("P0", a)
        #expect(m.frame("P3", a) == k)
        let visited = walk(m, k)
        // Three rmap_items (hlist: newest first); each covers its own mm in
        // the first pass; P3 (forked since) is found in the search_new_forks pass.
        #expect(Set(visited.prefix(3)) == ["P0@0x100000000000", "P1@0x100000000000", "P2@0x200000000000"])
        #expect(visited.count == 4 && visited.last == "P3@0x100000000000")
        #expect(m.k.pageMapcount(k) == 4)
        #expect(m.check() == [])
    }

    /// After the merge, an mprotect splits P0's VMA so that the page's VMA
    /// starts above the pgoff recorded in the rmap_item: the full-range AVC
    /// search of rmap_walk_ksm still finds the mapping.
    @Test func rmapWalkKSMFindsTheMappingAfterASplit() throws {
        let m = try three(extra: """
            P0 write 0x100000001000 value=7
            ksm scan 2
            P0 mprotect 0x100000000000 1 r
            """)
        let k = m.frame("P0", a + 0x1000)
        #expect(m.k.pageIsKSM(k) && m.k.pageMapcount(k) == 4)
        let v = m.vmaAt("P0", a + 0x1000)
        #expect(m.k.vma(v).pointee.vm_start == a + 0x1000, "split at the mprotect boundary")
        let items = m.k.mmKSMRmapList(m.mm("P0"))
        #expect(m.k.ksmItem(KSMItemID(items.pointee)).pointee.vm_pgoff < m.k.vma(v).pointee.vm_pgoff,
                "the item's recorded pgoff is below the split VMA's range")
        #expect(walk(m, k).contains("P0@0x100000001000"))
        #expect(m.check() == [])
    }

    // MARK: COW break and unmerge

    @Test func writeBreaksCOWAndTheNextScanDropsTheItem() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        let node = m.k.folioStableNode(k)
        #expect(m.perform("P1", .writeValue(addr: a, pages: 1, value: 9)) == .ok)
        let n = m.frame("P1", a)
        #expect(n != k && !m.k.pageIsKSM(n))
        #expect(m.frameRecord(n).pointee.content == 9 && m.frameRecord(k).pointee.content == 7)
        #expect(m.pte("P1", a) & PTE.rw != 0 && m.frameRecord(n).pointee.flags & PG.anonExclusive != 0)
        #expect(m.k.pageMapcount(k) == 2)
        // The item stays listed until ksmd comes back: rmap_walk_ksm still
        // calls rmap_one for P1's VMA, where page_vma_mapped_walk finds nothing.
        #expect(m.k.ksmNode(node).pointee.rmap_hlist_len == 3)
        #expect(walk(m, k).count == 3)
        #expect(m.k.pageVMAMappedWalk(k, m.vmaAt("P1", a), a) == nil)
        m.ksmScan()
        #expect(m.k.ksmNode(node).pointee.rmap_hlist_len == 2)
        #expect(m.k.header.pointee.ksm_pages_sharing == 1)
        #expect(m.check() == [])
    }

    @Test func rewritingTheSameValueStillCopiesThenRemerges() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        #expect(m.perform("P2", .writeValue(addr: b, pages: 1, value: 7)) == .ok)
        #expect(m.frame("P2", b) != k, "a write to a KSM page always copies (wp_can_reuse_anon_folio)")
        // The rmap_item keeps the oldchecksum it had before it went stable
        // (6.18's struct ksm_rmap_item has no union over it): the new page's
        // checksum equals it, so one scan merges it into the stable page.
        // The kernel oracle shows the same (Tests/Corpus/kernel/43-ksm-remerge.trace).
        m.ksmScan()
        #expect(m.frame("P2", b) == k, "one scan merges it into the stable page")
        #expect(m.k.pageMapcount(k) == 3)
        #expect(m.check() == [])
    }

    @Test func madviseUnmergeableUnshares() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        #expect(m.perform("P2", .madvise(addr: b, pages: 2, advice: .unmergeable)) == .ok)
        let n = m.frame("P2", b)
        #expect(n != k && !m.k.pageIsKSM(n) && m.frameRecord(n).pointee.content == 7)
        // FAULT_FLAG_UNSHARE: an exclusive copy, mapped read-only and clean.
        #expect(m.pte("P2", b) & (PTE.rw | PTE.dirty) == 0)
        #expect(m.frameRecord(n).pointee.flags & PG.anonExclusive != 0)
        #expect(m.k.vma(m.vmaAt("P2", b)).pointee.vm_flags & VM.mergeable == 0)
        #expect(m.k.pageMapcount(k) == 2)
        // The next scan finds no VM_MERGEABLE VMA in P2: its slot goes.
        m.ksmScan()
        #expect(m.k.mm(m.mm("P2")).pointee.ksm_flags == 0)
        #expect(m.k.mm(m.mm("P2")).pointee.ksm_rmap_items == 0)
        #expect(m.check() == [])
    }

    @Test func mremapMoveBreaksKSMPagesFirst() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        #expect(m.perform("P1", .mremap(addr: a, oldPages: 2, newPages: 2, to: 0x3000_0000_0000)) == .ok)
        let n = m.frame("P1", 0x3000_0000_0000)
        #expect(n != k && !m.k.pageIsKSM(n) && m.frameRecord(n).pointee.content == 7)
        #expect(m.k.pageMapcount(k) == 2)
        #expect(m.check() == [])
    }

    @Test func exitRemovesTheProcessItems() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        let items = m.k.live(T.ksmItem)
        #expect(m.exit("P1") == .ok)
        #expect(m.k.live(T.ksmItem) == items - 1, "P1's item (one page was present) is freed")
        #expect(m.k.ksmNode(m.k.folioStableNode(k)).pointee.rmap_hlist_len == 2)
        #expect(m.k.pageMapcount(k) == 2)
        #expect(m.check() == [])
        #expect(m.exit("P0") == .ok && m.exit("P2") == .ok)
        #expect(m.frameIsFree(k))
        m.ksmScan()  // the stale stable node is pruned when met
        #expect(m.k.live(T.ksmItem) == 0)
        #expect(m.check() == [])
    }

    // MARK: KSM frames on the reverse paths

    @Test func reclaimSwapsAKSMFrameOutAndSwapInCopiesPerProcess() throws {
        let m = try three(swap: 8, extra: "ksm scan 2")
        let k = m.frame("P0", a)
        #expect(m.perform("P2", .reclaim(addr: b, pages: 1)) == .ok)
        #expect([m.tokens("P0", a, 1), m.tokens("P1", a, 1), m.tokens("P2", b, 1)] == ["S", "S", "S"])
        #expect(m.frameIsFree(k))
        let e = m.pte("P0", a)
        #expect(m.k.swapSlot(PTE.swpOffset(e))?.pointee.content == 7, "pageout wrote the content to the slot")
        // P1 reads it back: a new page from swap. P0 and P2 then find it in
        // the swap cache, under P1's anon_vma: ksm_might_need_to_copy() copies.
        #expect(m.perform("P1", .read(addr: a, pages: 1)) == .ok)
        #expect(m.perform("P0", .read(addr: a, pages: 1)) == .ok)
        #expect(m.perform("P2", .read(addr: b, pages: 1)) == .ok)
        let f = [m.frame("P0", a), m.frame("P1", a), m.frame("P2", b)]
        #expect(Set(f).count == 3 && f.allSatisfy { m.frameRecord($0).pointee.content == 7 && !m.k.pageIsKSM($0) })
        #expect(m.check() == [])
        m.ksmScan(passes: 2)
        #expect(m.tokens("P0", a, 1) == "K1:3" && m.frame("P2", b) == m.frame("P0", a))
        #expect(m.check() == [])
    }

    @Test func migrationMovesTheKSMFrameAndItsStableNode() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        let node = m.k.folioStableNode(k)
        #expect(m.perform("P1", .migrate(addr: a, pages: 1)) == .ok)
        let n = m.frame("P1", a)
        #expect(n != k && m.frameIsFree(k))
        #expect(m.frame("P0", a) == n && m.frame("P2", b) == n)
        // folio_migrate_ksm(): the same stable node, now naming the new frame.
        #expect(m.k.folioStableNode(n) == node && m.k.ksmNode(node).pointee.kpfn == n.rawValue)
        #expect(m.frameRecord(n).pointee.content == 7 && m.k.pageMapcount(n) == 3)
        #expect(Set(walk(m, n)) == ["P0@0x100000000000", "P1@0x100000000000", "P2@0x200000000000"])
        // The restored PTEs are read-only: a migration entry of a read-only
        // PTE is a read entry.
        #expect(m.pte("P2", b) & PTE.rw == 0)
        #expect(m.check() == [])
    }

    @Test func tryToUnmapReachesEveryKSMMapping() throws {
        let m = try three(extra: "ksm scan 2")
        let k = m.frame("P0", a)
        // Migration entries in all three processes through rmap_walk_ksm.
        #expect(m.perform("P0", .unmap(addr: a, pages: 1, flags: [.migration, .ignoreMlock, .ignoreAccess])) == .ok)
        #expect([m.tokens("P0", a, 1), m.tokens("P1", a, 1), m.tokens("P2", b, 1)] == ["M", "M", "M"])
        #expect(m.check() == [])
        // A fault on the entry puts the KSM page back.
        #expect(m.perform("P1", .read(addr: a, pages: 1)) == .ok)
        #expect(m.frame("P1", a) == k && m.k.pageIsKSM(k))
        #expect(m.check() == [])
        // Without swap, an anonymous (KSM) page outside the swap cache keeps its PTEs.
        let m2 = try three(extra: "ksm scan 2")
        #expect(m2.perform("P0", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m2.tokens("P2", b, 1) == "K1:3")
        #expect(m2.check() == [])
    }

    @Test func pageReferencedCountsEveryKSMMapping() throws {
        let m = try three(extra: "ksm scan 2\nP3 = fork P0")
        // replace_page() maps with vm_page_prot (young on x86); the fork child's PTE is old.
        #expect(m.perform("P2", .referenced(addr: b, pages: 1)) == .referenced(3))
        #expect(m.perform("P2", .referenced(addr: b, pages: 1)) == .referenced(0))
        #expect(m.perform("P3", .read(addr: a, pages: 1)) == .ok)
        #expect(m.perform("P0", .referenced(addr: a, pages: 1)) == .referenced(1))
        #expect(m.check() == [])
    }

    /// A page shared by fork with a process whose VMA is not mergeable can
    /// be merged from the child's side: the parent's mapping then has no
    /// rmap_item and rmap_walk_ksm cannot reach it (as in the kernel). The
    /// checker notes it; migration and reclaim fail cleanly instead of
    /// leaving a PTE on a freed frame.
    @Test func aForkSharedPageMergedFromTheChildIsUnreachableFromTheParent() throws {
        let (m, out) = try machine("""
            swap 8
            proc P0
            P0 mmap 0x100000000000 2 rw anon-private
            P0 write 0x100000000000 2 value=5
            P1 = fork P0
            P1 madvise 0x100000000000 2 mergeable
            ksm scan 2
            """)
        #expect(out.failures == [])
        // P1 scans page 1 (unstable), then page 2 matches it: page 2 becomes
        // the KSM page (still mapped by P0 too) and P1's page 1 is replaced.
        let k = m.frame("P1", a)
        #expect(m.k.pageIsKSM(k))
        #expect(m.tokens("P0", a, 2) == "A1:1 K2:3" && m.tokens("P1", a, 2) == "K1:3 K1:3")
        #expect(m.frame("P0", a + 0x1000) == k)
        #expect(m.check() == [])
        #expect(m.ksmUnregisteredMappings().count == 1)
        // stable_tree_append() adds at the hlist head: the scanned item
        // (page 2) after the tree item (page 1), so page 2 is walked first.
        #expect(walk(m, k) == ["P1@0x100000001000", "P1@0x100000000000"])
        // try_to_migrate() leaves P0's PTE: the migration is undone.
        #expect(m.perform("P1", .migrate(addr: a, pages: 1)) == .fail)
        #expect(m.tokens("P0", a, 2) == "A1:1 K2:3" && m.tokens("P1", a, 2) == "K1:3 K1:3")
        #expect(m.check() == [])
        // Reclaim unmaps what it reaches (P1's PTEs become swap entries) and fails on P0's.
        #expect(m.perform("P1", .reclaim(addr: a, pages: 1)) == .fail)
        #expect(m.tokens("P1", a, 2) == "S S" && m.frame("P0", a + 0x1000) == k)
        #expect(m.check() == [])
    }

    // MARK: saved states

    @Test func aSavedStateWithKSMPagesReopensAndContinues() throws {
        let m = try three(extra: "ksm scan 2")
        let path = "/tmp/rmap-ksm-test-\(getpid()).arena"
        defer { unlink(path) }
        #expect(m.save(to: path) == nil)
        let r = try Machine(opening: path)
        let k = r.frame("P0", a)
        #expect(r.tokens("P2", b, 1) == "K1:3" && !r.k.folioStableNode(k).isNone)
        #expect(r.perform("P1", .write(addr: a, pages: 1)) == .ok)
        r.ksmScan()
        #expect(r.k.pageMapcount(k) == 2 && r.check() == [])
        // A frame whose KSM mapping names no live stable node is rejected.
        r.frameRecord(k).pointee.mapping = r.k.offset(table: T.ksmNode, index: 9) | PageMapping.ksm
        let bad = "/tmp/rmap-ksm-test-bad-\(getpid()).arena"
        defer { unlink(bad) }
        #expect(r.save(to: bad) == nil)
        #expect(throws: ArenaError.self) { try Machine(opening: bad) }
    }

    /// The checker tells free records by their poison, so the validator
    /// requires it: a free rmap_item with a byte changed is rejected.
    @Test func aFreeRecordThatLostItsPoisonIsRejected() throws {
        let m = try three(extra: "ksm scan 2\nP1 exit")
        let d = m.k.desc(T.ksmItem).pointee
        #expect(d.free_head != 0, "P1's item was freed")
        let path = "/tmp/rmap-ksm-test-free-\(getpid()).arena"
        defer { unlink(path) }
        #expect(m.save(to: path) == nil)
        #expect((try? Machine(opening: path)) != nil, "intact: accepted")
        m.k.ksmItem(KSMItemID(d.free_head)).pointee.mm = 1  // bytes 8-11 of a free record
        #expect(m.save(to: path) == nil)
        do {
            _ = try Machine(opening: path)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("free record \(d.free_head) is not poisoned"), "\(error.message)")
        }
    }
}

/// The KSM statements of the trace language (docs/trace-format.md, Project
/// additions): parsing, errors with positions, the generators, the oracle.
@Suite struct KSMTraceTests {
    let base = "proc P0\nP0 mmap 0x100000000000 4 rw anon-private"

    func parse(_ text: String) throws -> [TraceLine] { try TraceParser.parse(text, file: "t.trace").lines }
    func error(_ text: String) -> TraceError? {
        do { _ = try TraceParser.parse(text, file: "t.trace"); return nil } catch { return error }
    }

    @Test func statementsParse() throws {
        let l = try parse(base + """

            ksm scan
            ksm scan 3
            P0 write 0x100000000000 value=7
            P0 write 0x100000000000 2 value=0x10 => ok
            P0 madvise 0x100000000000 4 mergeable
            P0 madvise 0x100000000000 4 unmergeable
            """)
        #expect(l[2].statement == .ksmScan(passes: 1))
        #expect(l[3].statement == .ksmScan(passes: 3))
        #expect(l[4].statement == .op(process: "P0", operation: .writeValue(addr: 0x1000_0000_0000, pages: 1, value: 7), expected: nil))
        #expect(l[5].statement == .op(process: "P0", operation: .writeValue(addr: 0x1000_0000_0000, pages: 2, value: 16), expected: "ok"))
        #expect(l[6].statement == .op(process: "P0", operation: .madvise(addr: 0x1000_0000_0000, pages: 4, advice: .mergeable), expected: nil))
        for i in 3...7 {
            if case .op(_, let op, _) = l[i].statement { #expect(op.isModelOnly, "line \(i)") }
        }
        // "scan" is no verb: a process may still be named ksm.
        let k = try parse("proc ksm\nksm mmap 0x100000000000 1 rw anon-private\nksm write 0x100000000000\nksm scan")
        #expect(k[2].statement == .op(process: "ksm", operation: .write(addr: 0x1000_0000_0000, pages: 1), expected: nil))
        #expect(k[3].statement == .ksmScan(passes: 1))
    }

    @Test func errorsHavePositions() {
        func at(_ line: String, _ col: Int, _ msg: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
            let e = error(base + "\n" + line)
            #expect(e?.line == 3 && e?.column == col, "\(String(describing: e))", sourceLocation: sourceLocation)
            #expect(e?.message.contains(msg) == true, "\(String(describing: e))", sourceLocation: sourceLocation)
        }
        at("ksm scan 0", 10, "between 1 and 1000")
        at("ksm scan 1001", 10, "between 1 and 1000")
        at("ksm scan x", 10, "expected a pass count")
        at("ksm scan 1 2", 12, "unexpected '2'")
        at("ksm scan => ok", 10, "only allowed on operation lines")
        at("P0 write 0x100000000000 value=", 31, "expected a content value")
        at("P0 write 0x100000000000 1 value=0xg", 33, "expected a content value")
        at("P0 write 0x100000000000 value=99999999999999999999", 31, "number too large")
        at("P0 write 0x100000000000 value=1 2", 33, "unexpected '2'")
        at("P0 read 0x100000000000 value=1", 24, "expected a page count")
        at("P0 madvise 0x100000000000 1 merge", 29, "mergeable, unmergeable")
    }

    @Test func kernelOnlyGenerationNeverEmitsKSMAndFuzzingDoes() {
        var ksmLines = 0
        for seed in UInt64(1)...60 {
            var g = TraceGenerator(seed: seed, kernelOnly: true)
            let t = g.generate(statements: 120)
            #expect(!t.contains("ksm scan") && !t.contains("mergeable") && !t.contains("value="), "seed \(seed)")
            var f = TraceGenerator(seed: seed, kernelOnly: false)
            f.ksm = true
            ksmLines += f.generate(statements: 120).split(separator: "\n").filter { $0.hasPrefix("ksm scan") }.count
        }
        #expect(ksmLines > 0)
    }

    /// The oracle built with these tests (the same build directory), else `oraclePath`.
    static let oracle: String? = {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for dir in [here, here.deletingLastPathComponent()] {
            let p = dir.appendingPathComponent("rmap-oracle").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return oraclePath
    }()

    /// `poison`, `device` and `exclusive` have no user-space equivalent the
    /// oracle could run: skipped (77).
    @Test(.enabled(if: KSMTraceTests.oracle != nil, "needs the rmap-oracle binary (make test builds it)"))
    func theOracleSkipsPoisonAndDeviceMemoryAsModelOnly() throws {
        for line in ["P0 poison 0x100000000000", "P0 device 0x100000000000 coherent", "P0 exclusive 0x100000000000"] {
            let path = "/tmp/rmap-ksm-oracle-\(getpid()).trace"
            defer { unlink(path) }
            try (base + "\n" + line + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            let r = try run(KSMTraceTests.oracle!, [path])
            #expect(r.status == 77, "\(line): \(r.err)")
            #expect(r.err.contains("model-only"), "\(line): \(r.err)")
        }
    }

    /// The KSM statements run on the live kernel (ksmd driven through
    /// /sys/kernel/mm/ksm) and give the model's bytes.
    @Test(.enabled(if: KSMTraceTests.oracle != nil && canReadPFNs, "needs root and the rmap-oracle binary"))
    func theOracleRunsKSMStatements() throws {
        for line in ["ksm scan 2", "P0 madvise 0x100000000000 4 mergeable\nksm scan 2",
                     "P0 write 0x100000000000 value=3\nP0 madvise 0x100000000000 4 mergeable\nksm scan 3"] {
            let path = "/tmp/rmap-ksm-oracle-runs-\(getpid()).trace"  // not the other test's file
            defer { unlink(path) }
            let text = base + "\n" + line + "\nobserve P0 0x100000000000 4\n"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let r = try run(KSMTraceTests.oracle!, [path])
            let model = replayFile(path: path)
            #expect(r.status == 0, "\(line): \(r.err)")
            #expect(model.stdout.map { $0 + "\n" } == r.out, "\(line)")
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// What the FuzzOps libFuzzer target does, on fixed random inputs: the
/// decoder's traces (KSM, poison, device and exclusive statements among
/// them) parse, and the checker is clean after every statement on a small arena.
@Suite struct OpDecoderTests {
    @Test func decodedTracesParseAndRunClean() throws {
        var rng = SplitMix64(seed: 7)
        var special = 0
        for _ in 0..<150 {
            let bytes = (0..<(4 * 120 + 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let text = OpDecoder.trace(from: bytes)
            let trace = try TraceParser.parse(text, file: "ops.trace")
            special += text.split(separator: "\n").filter {
                $0.hasPrefix("ksm scan") || $0.contains(" value=") || $0.contains(" poison ") || $0.contains(" device ")
                    || $0.contains(" exclusive ") || $0.contains(" mergeable")
            }.count
            let m = try Machine(config: OpDecoder.arenaConfig(for: bytes, large: false))
            var out = ReplayOutcome()
            for tl in trace.lines {
                m.step(tl, file: trace.file, into: &out)
                let v = m.check()
                if !v.isEmpty {
                    Issue.record("line \(tl.line): \(v[0])\n\(text)")
                    return
                }
            }
        }
        #expect(special > 100, "the decoder exercises the new statements")
    }
}
