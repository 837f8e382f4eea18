import Foundation
import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// fork's copy_pte_range and munmap/exit's zap_pte_range one PTE table at a
/// time, with large folios in batches (VM/Fork.swift, VM/Unmap.swift), and
/// the arena's reservation on the host's huge pages (CShims/arena.c).
@Suite struct BatchTests {
    static let a: UInt64 = 0x1000_0000_0000

    private func counter(_ m: Machine, _ p: String, _ c: MMCounter) -> Int64 { m.k.mmCounter(m.mm(p), c) }

    /// Runs more statements on `m`; their results.
    private func run(_ m: Machine, _ text: String) throws -> [String] {
        let out = m.replay(try TraceParser.parse(text + "\n", file: "test.trace", continuing: m.traceContext))
        #expect(out.error == nil)
        return out.results.map(\.1)
    }

    /// A 64 KiB folio written in P0, with one reference beyond its mappings
    /// (a GUP pin, say), so that unmapping every PTE leaves it allocated and
    /// its place on the deferred split queue can be seen.
    private func pinnedMTHP() throws -> (Machine, PFN) {
        let (m, out) = try machine("""
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000000000 16 rw anon-private
            P0 write 0x100000000000 16
            """)
        #expect(out.error == nil)
        let head = m.k.folioOf(m.frame("P0", Self.a))
        #expect(m.k.folioNrPages(head) == 16)
        m.k.getPage(head)
        return (m, head)
    }

    @Test func unmappingAWholeMTHPDoesNotQueueItForDeferredSplit() throws {
        // zap_present_ptes(): the 16 PTEs are one folio_pte_batch and one
        // folio_remove_rmap_ptes(folio, page, 16): _nr_pages_mapped goes
        // from 16 to 0 at once, the folio is never partially mapped, and
        // deferred_split_folio() is not called. (One PTE at a time, the
        // first removal left 15 mapped and queued the folio.)
        let (m, head) = try pinnedMTHP()
        #expect(try run(m, "P0 munmap 0x100000000000 16") == ["ok"])
        #expect(!m.k.folioOnDeferredList(head))
        #expect(m.frameRecord(head).pointee.refcount == 1 && m.k.folioLargeMapcount(head) == 0)
        #expect(counter(m, "P0", .anon) == 0)
        m.k.putPage(head)
        #expect(m.checkViolations() == [])
    }

    @Test func unmappingPartOfAnMTHPStillQueuesIt() throws {
        let (m, head) = try pinnedMTHP()
        #expect(try run(m, "P0 munmap 0x100000003000 5") == ["ok"])
        #expect(m.k.folioOnDeferredList(head))
        #expect(page1NrPagesMapped(m, head) == 11 && counter(m, "P0", .anon) == 11)
        m.k.putPage(head)
        #expect(m.checkViolations() == [])
    }

    @Test func exitTearsDownAnMTHPInOneBatchToo() throws {
        let (m, head) = try pinnedMTHP()
        #expect(try run(m, "P0 exit") == ["ok"])
        #expect(!m.k.folioOnDeferredList(head) && m.k.folioLargeMapcount(head) == 0)
        m.k.putPage(head)
        #expect(m.checkViolations() == [])
    }

    @Test func aFolioAcrossTwoVMAsIsZappedPerVMAAndQueued() throws {
        // mprotect splits the VMA in the folio's middle (not the folio):
        // munmap zaps each VMA on its own (unmap_vmas), so after the first
        // half the folio is partially mapped and queued, as in the kernel.
        let (m, head) = try pinnedMTHP()
        #expect(try run(m, "P0 mprotect 0x100000008000 8 none") == ["ok"])
        #expect(!m.k.folioOnDeferredList(head))
        #expect(try run(m, "P0 munmap 0x100000000000 16") == ["ok"])
        #expect(m.k.folioOnDeferredList(head) && m.k.folioLargeMapcount(head) == 0)
        m.k.putPage(head)
        #expect(m.checkViolations() == [])
    }

    private func page1NrPagesMapped(_ m: Machine, _ head: PFN) -> Int32 {
        m.k.page(head.advanced(by: 1)).pointee.nr_pages_mapped
    }

    @Test func forkCopiesEachPTEOfABatchWithItsOwnBits() throws {
        // Two 64 KiB folios and some small pages; young bits differ inside
        // the first folio (a read of some pages after the fault cleared
        // them is not modelled, so set them by hand), and dirty inside the
        // second. The child's PTEs are old and read-only, each with its
        // parent's dirty bit; the parent's lose write; counters once per
        // table add up to every PTE.
        let (m, out) = try machine("""
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000000000 48 rw anon-private
            P0 write 0x100000000000 32
            P0 read 0x100000020000 16
            """)
        #expect(out.error == nil)
        let root = m.k.mm(m.mm("P0")).pointee.pgd
        for i: UInt64 in [1, 2, 5] { m.k.leafSlot(root: root, key: Self.a + i << 12)!.pointee &= ~PTE.accessed }
        for i: UInt64 in [17, 30] { m.k.leafSlot(root: root, key: Self.a + i << 12)!.pointee &= ~PTE.dirty }
        let before = (0..<48).map { m.pte("P0", Self.a + UInt64($0) << 12) }
        #expect(try run(m, "P1 = fork P0") == ["ok"])
        for i in 0..<48 {
            let addr = Self.a + UInt64(i) << 12
            let want = before[i] & ~PTE.rw
            #expect(m.pte("P0", addr) == want, "parent PTE \(i)")
            #expect(m.pte("P1", addr) == want & ~PTE.accessed, "child PTE \(i)")
        }
        #expect(counter(m, "P1", .anon) == 32 && counter(m, "P0", .anon) == 32)
        let head = m.k.folioOf(m.frame("P0", Self.a))
        #expect(m.k.folioLargeMapcount(head) == 32 && m.frameRecord(head).pointee.refcount == 32)
        #expect(m.tokens("P1", Self.a, 2) == "A1+0:2 A1+1:2")
        #expect(m.checkViolations() == [])
    }

    @Test func forkAllocatesTheChildsTableOncePerParentTable() throws {
        // 1,100 pages over three PTE tables (the region starts 16 pages into
        // one): the child gets exactly three PTE tables, and its counters.
        let (m, out) = try machine("""
            proc P0
            P0 mmap 0x100000010000 1100 rw anon-private
            P0 write 0x100000010000 1100
            P1 = fork P0
            """)
        #expect(out.error == nil)
        let ptPagesParent = m.k.desc(T.ptPage).pointee.live
        #expect(counter(m, "P1", .anon) == 1100)
        #expect(try run(m, "P1 exit") == ["ok"])
        // PGD, PUD, PMD and three PTE tables went with the child.
        #expect(ptPagesParent - m.k.desc(T.ptPage).pointee.live == 6)
        #expect(counter(m, "P0", .anon) == 1100)
        #expect(m.checkViolations() == [])
    }

    @Test func theArenaStartsOnAHostPMDBoundaryWithHugePageAdvice() throws {
        let m = try Machine()
        let base = UInt(bitPattern: m.k.base)
        #expect(base % (2 << 20) == 0)
        // MADV_HUGEPAGE shows as `hg` in the mapping's VmFlags wherever the
        // host has THP (on a host without it, madvise fails and the arena
        // runs on small pages: nothing to see here then).
        guard FileManager.default.fileExists(atPath: "/sys/kernel/mm/transparent_hugepage/enabled"),
              getenv("RMAP_ARENA_SMALL_PAGES") == nil else { return }
        // The mapping that holds the arena (it may have merged with a
        // neighbour of the same flags, another test's arena).
        guard let flags = withExtendedLifetime(m, { hostVmFlags(containing: base) }) else {
            Issue.record("no mapping holds \(String(base, radix: 16)) in /proc/self/smaps")
            return
        }
        #expect(flags.contains("hg"), "\(flags)")
    }
}
