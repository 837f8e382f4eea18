import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// `rmap stats`: figures derived by hand from the anon_vma rules.
@Suite struct StatsTests {
    /// A writes a page, forks B and C, and both children break COW. The
    /// original page is mapped by A alone but lives under the root anon_vma,
    /// whose interval tree holds A's, B's and C's VMAs: its walk visits 3
    /// VMAs for 1 mapping. Each child's copy is exclusive under the child's
    /// own anon_vma (1 visit, 1 hit). anon_vmas: the root and one per child
    /// (depth 1); AVCs: 3 in the root's tree + 1 in each child's = 5; each
    /// child VMA has 2 (root and its own).
    @Test func cowBrokenForkShowsFalsePositiveVisits() throws {
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            B = fork A
            C = fork A
            B write 0x100000000000
            C write 0x100000000000
            """)
        #expect(out.failures == [])
        let s = m.stats()
        #expect(s.processes == 3 && s.vmas == 3)
        #expect(s.anonVMAs == 3 && s.anonVMARoots == 1 && s.maxAnonVMADepth == 1)
        #expect(s.avcs == 5 && s.maxAVCsPerVMA == 2)
        #expect(s.mappedFrames == ["anon": 3] && s.mappings == 3)
        #expect(s.walkVisits == 5 && s.walkHits == 3)
        let original = m.k.vmNormalPage(m.k.leafSlot(root: m.k.mm(m.mmIndex(of: "A")!).pointee.pgd, key: 0x100000000000)!.pointee)
        #expect(s.worstWalk.pfn == original.rawValue && s.worstWalk.visits == 3 && s.worstWalk.hits == 1)
        #expect(s.reusedInUse == 0)
        #expect(s.tables.first { $0.name == "anon_vma_chain" }?.live == 5)
        #expect(s.json.hasPrefix("{\"anon_vma_roots\":1,\"anon_vmas\":3,\"avcs\":5,"))
        #expect(s.text.contains("rmap walks: 5 VMAs visited for 3 frames (1.67 per frame), 3 mapped the frame (60.0%)"))
    }

    /// A shared file page mapped by three processes: i_mmap holds exactly
    /// the three VMAs, so every visit is a hit.
    @Test func sharedFilePageWalkVisitsOnlyItsMappings() throws {
        let (m, _) = try machine("""
            file f 1
            proc A
            proc B
            proc C
            A mmap 0x100000000000 1 r file-shared:f@0
            B mmap 0x100000000000 1 r file-shared:f@0
            C mmap 0x100000000000 1 r file-shared:f@0
            A read 0x100000000000
            B read 0x100000000000
            C read 0x100000000000
            """)
        let s = m.stats()
        #expect(s.mappedFrames == ["file": 1] && s.mappings == 3)
        #expect(s.walkVisits == 3 && s.walkHits == 3)
        #expect(s.anonVMAs == 0 && s.avcs == 0)
    }
}
