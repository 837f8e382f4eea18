import Foundation
import Testing
@testable import Rmap
import RmapTestSupport

/// Issue 17, item 9: repeated work proportional to what changes. A line
/// over a huge, nearly empty mapping costs the page tables that exist, not
/// one step per page or per 2 MiB of the range (the kernel's walks skip a
/// pgd_none / pud_none / pmd_none entry's whole span).
@Suite struct BoundedWorkTests {
    /// The whole trace window: 0x100000000000 to 0x700000000000, 3 * 2^33 pages.
    static let window: UInt64 = (0x7000_0000_0000 - 0x1000_0000_0000) >> 12

    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let t0 = Date()
        try body()
        return Date().timeIntervalSince(t0)
    }

    /// MADV_DONTNEED over the window (CONFIG_PT_RECLAIM frees the PTE tables
    /// it empties): was one lookup per 2 MiB of the range (2^25 of them, about
    /// 4 s a line in a debug build), now one per PMD entry that exists.
    @Test func dontneedOverTheWholeWindowCostsItsTables() throws {
        var text = """
            proc A
            A mmap 0x100000000000 \(Self.window) rw anon-private
            A write 0x100000000000
            A write 0x6fffffffe000

            """
        for _ in 0..<8 { text += "A madvise 0x100000000000 \(Self.window) dontneed => ok\nA write 0x300000000000\n" }
        var out: ReplayOutcome?
        let s = try seconds { out = try machine(text).1 }
        #expect(out?.failures == [])
        #expect(s < 5, "8 dontneed lines over 2^34 pages took \(s) s")
    }

    /// mremap moving a 2^30-page VMA with three pages present: was one
    /// page-table lookup per page (minutes), now one step per absent upper
    /// entry and per present PTE (move_page_tables skips none entries).
    @Test func mremapMoveOfAHugeSparseVMACostsItsTables() throws {
        let pages: UInt64 = 1 << 30
        let text = """
            proc A
            A mmap 0x100000000000 \(pages) rw anon-private
            A write 0x100000000000
            A write 0x100020000000
            A write 0x1003fffff000
            A mremap 0x100000000000 \(pages) \(pages) 0x200000000000 => ok
            expect A 0x200000000000 1, A 0x200020000000 1, A 0x2003fffff000 1, A 0x100000000000 1 = A1:1 A2:1 A3:1 -
            """
        var result: (Machine, ReplayOutcome)?
        let s = try seconds { result = try machine(text) }
        #expect(result?.1.failures == [])
        #expect(result?.0.check() == [])
        #expect(s < 5, "mremap of 2^30 pages took \(s) s")
    }
}
