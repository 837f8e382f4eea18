import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport
import CShims

/// Page-table pages one cache line apart in colour (arena.c's
/// RMAP_PT_RECORD_SIZE, issue 16): every process's tables hold the entry for
/// an address at the same offset, and on a 4096-byte stride the entries of a
/// walk across many processes (rmap_walk + page_vma_mapped_walk at 10,000
/// mappings) all fell into the same few cache sets. Arenas saved with the
/// old 4096-byte records still open, read with their own stride.
@Suite struct PageTableColouringTests {
    @Test func newArenaPadsEachPageTablePageByOneCacheLine() throws {
        let m = try Machine(config: .tiny)
        #expect(m.k.desc(T.ptPage).pointee.record_size == 4160)
        #expect(m.k.ptStride == 520)
        // The same entry of 64 consecutive tables: 64 different cache lines
        // of a 4 KiB page (all the same line on a 4096-byte stride).
        let capacity = Int(m.k.desc(T.ptPage).pointee.capacity)
        let last = min(64, capacity - 1)
        let lines = Set((1...last).map { (UInt(bitPattern: m.k.ptTable(UInt32($0))) % 4096) / 64 })
        #expect(lines.count == last)
        // The table of an entry, back from the entry's address (the THP
        // deposit and hugetlb paths use it).
        for i in [UInt32(1), 2, UInt32(last)] {
            for j in [0, 1, 255, 511] {
                #expect(m.k.ptPageIndex(of: m.k.ptTable(i) + j) == i)
            }
        }
    }

    /// The case the colouring is for: processes mapping the same address.
    @Test func processesMappingOneAddressHaveTheirPTEsInDifferentCacheLines() throws {
        let n = 16
        var text = ""
        for i in 0..<n {
            text += "proc p\(i)\np\(i) mmap 0x100000000000 1 rw anon-private\np\(i) write 0x100000000000 1\n"
        }
        let (m, out) = try machine(text)
        #expect(out.error == nil)
        var lines = Set<UInt>()
        for i in 0..<n {
            let mm = try #require(m.mmOf("p\(i)"))
            let slot = try #require(m.k.leafSlot(root: m.k.mm(mm).pointee.pgd, key: 0x1000_0000_0000))
            #expect(PTE.isPresent(slot.pointee))
            lines.insert((UInt(bitPattern: slot) % 4096) / 64)
        }
        #expect(lines.count == n, "the \(n) PTEs share \(lines.count) line offsets")
    }

    /// An arena saved before the colouring (the FuzzArena seeds: 4096-byte
    /// page-table records) opens with a 512-entry stride, is sound and runs on.
    @Test func arenaSavedWith4096BytePageTablesOpensWithItsOwnStride() throws {
        let path = packageRoot.appendingPathComponent("Fuzz/corpus/arena/seed3-hugetlb.arena").path
        let m = try Machine(opening: path)
        #expect(m.k.desc(T.ptPage).pointee.record_size == 4096)
        #expect(m.k.ptStride == 512)
        #expect(m.checkViolations() == [])
        let before = m.liveObjects()["ptPages"] ?? 0
        let out = m.replay(try TraceParser.parse("proc fresh\nfresh mmap 0x200000000000 2 rw anon-private\nfresh write 0x200000000000 2",
                                                 file: "s.trace", continuing: m.traceContext))
        #expect(out.error == nil && out.results.allSatisfy { $0.1 == "ok" }, "\(out)")
        #expect((m.liveObjects()["ptPages"] ?? 0) > before)
        #expect(m.checkViolations() == [])
    }
}
