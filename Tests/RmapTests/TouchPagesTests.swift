import Foundation
import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// `Kernel.touchPages` (Fault/Fault.swift), the loop the benchmarks fault
/// through, keeps the VMA and the PTE table of the last access and goes
/// straight to the next PTE. It must leave exactly the state that one
/// handleMMFault() per page leaves: the same results, and the same arena
/// byte for byte (every table up to its high-water mark, and the header).
@Suite struct TouchPagesTests {
    /// One access run: process, first address, pages, write.
    typealias Touch = (proc: String, addr: UInt64, pages: UInt64, write: Bool)

    /// The arena's state: the bytes `save` would write.
    private func state(_ m: Machine) -> [[UInt8]] {
        Arena.usedRanges(m.k.header.pointee).map { r in
            Array(UnsafeRawBufferPointer(start: m.k.base + Int(r.offset), count: Int(r.length)))
        }
    }

    /// Replays `setup` on two machines, then `touches` through touchPages on
    /// one and one handleMMFault per page on the other; both must agree.
    private func agree(_ setup: String, _ touches: [Touch], sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let (fast, o1) = try machine(setup)
        let (slow, o2) = try machine(setup)
        #expect(o1.error == nil && o2.error == nil, sourceLocation: sourceLocation)
        for t in touches {
            let n = fast.k.touchPages(fast.mm(t.proc), t.addr, t.pages, write: t.write)
            var expected = 0
            var a = t.addr
            for _ in 0..<t.pages {
                if slow.k.handleMMFault(slow.mm(t.proc), a, write: t.write) == .ok { expected += 1 }
                a += PAGE_SIZE
            }
            #expect(n == expected, "\(t)", sourceLocation: sourceLocation)
            #expect(state(fast) == state(slow), "state after \(t)", sourceLocation: sourceLocation)
        }
        #expect(fast.checkViolations() == [], sourceLocation: sourceLocation)
    }

    @Test func anonymousWritesAndReadsAcrossTablesVMAsAndHoles() throws {
        // 1,100 pages from 1 MiB below a 2 MiB boundary: three PTE tables;
        // then a read-only VMA (a write is refused, a read maps the zero
        // page), a hole, a PROT_NONE VMA.
        try agree("""
            proc P
            P mmap 0x100000100000 1100 rw anon-private
            P mmap 0x10000054c000 8 r anon-private
            P mmap 0x100000560000 8 none anon-private
            """, [
                ("P", 0x1000_0010_0000, 300, false),  // zero pages
                ("P", 0x1000_0010_0000, 1130, true),  // over the zero pages, past the end, into the r VMA and the hole
                ("P", 0x1000_0054_0000, 40, false),   // end of the rw VMA, the r VMA, the hole, PROT_NONE
                ("P", 0x1000_0054_0000, 40, true),
            ])
    }

    @Test func copyOnWriteAfterForkAndReuseInTheParent() throws {
        try agree("""
            proc P
            P mmap 0x100000000000 700 rw anon-private
            P write 0x100000000000 600
            C = fork P
            """, [
                ("C", 0x1000_0000_0000, 700, true),  // COW, then fresh pages
                ("P", 0x1000_0000_0000, 700, true),  // reuse (the child copied), fresh pages
                ("C", 0x1000_0000_0000, 700, false),
            ])
    }

    @Test func fileFaultAroundPastEOFAndSharedWrites() throws {
        // A private mapping longer than its file (SIGBUS past EOF: a fault
        // that maps nothing frees the PTE table it allocated), across a PTE
        // table boundary and from a pgoff not aligned to the window; a
        // shared mapping written; a private one written (do_cow_fault).
        try agree("""
            file f 300
            file g 40
            proc P
            P mmap 0x1000001f0000 400 r file-private:f@3
            P mmap 0x100000400000 40 rw file-shared:g@0
            P mmap 0x100000600000 40 rw file-private:g@0
            P mmap 0x100000a00000 4 r file-private:g@39
            """, [
                ("P", 0x1000_001f_0000, 400, false),
                ("P", 0x1000_0040_0000, 40, true),
                ("P", 0x1000_0060_0000, 20, false),
                ("P", 0x1000_0060_0000, 40, true),
                ("P", 0x1000_00a0_1000, 3, false),  // past EOF on an empty table
                ("P", 0x1000_00a0_0000, 4, false),
            ])
    }

    @Test func swappedAndMigratedEntries() throws {
        // Non-present PTEs in the middle of a run: swap entries and a
        // migration entry's removal, then read and written back.
        try agree("""
            swap 64
            proc P
            P mmap 0x100000000000 64 rw anon-private
            P write 0x100000000000 64
            P reclaim 0x100000000000 16
            C = fork P
            """, [
                ("P", 0x1000_0000_0000, 32, false),
                ("C", 0x1000_0000_0000, 64, true),
            ])
    }
}
