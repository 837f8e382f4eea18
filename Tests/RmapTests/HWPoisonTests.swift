import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// Memory failure as rmap sees it: `poison` (memory_failure's
/// TestSetPageHWPoison and its reference), try_to_unmap_one's hwpoison
/// branch (a hwpoison entry replaces each PTE unless TTU_IGNORE_HWPOISON;
/// the MM counter drops; the rmap and the PTE's reference go) and faults on
/// hwpoison entries (VM_FAULT_HWPOISON: SIGBUS). v5.0 mm/rmap.c order.
@Suite struct HWPoisonTests {
    let a: UInt64 = 0x1000_0000_0000
    let f: UInt64 = 0x1000_0001_0000


    func setup(swap: Int = 0) throws -> Machine {
        let (m, out) = try machine("""
            swap \(swap)
            file f 4
            proc P0
            P0 mmap 0x100000000000 2 rw anon-private
            P0 mmap 0x100000010000 1 rw file-shared:f@0
            P0 write 0x100000000000 2
            P0 read 0x100000010000
            P1 = fork P0
            P1 read 0x100000010000
            """)
        #expect(out.failures == [])
        return m
    }

    @Test func unmapOfAPoisonedPageInstallsHWPoisonEntries() throws {
        let m = try setup()
        let pfn = m.frame("P0", a)
        let anon0 = m.k.mmCounter(m.mm("P0"), .anon), anon1 = m.k.mmCounter(m.mm("P1"), .anon)
        #expect(m.perform("P1", .poison(addr: a, pages: 1)) == .ok)
        #expect(m.frameRecord(pfn).pointee.flags & PG.hwpoison != 0 && m.frameRecord(pfn).pointee.refcount == 3)
        #expect(m.perform("P1", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .ok)
        #expect(m.tokens("P0", a, 2) == "H A1:2" && m.tokens("P1", a, 2) == "H A1:2")
        #expect(m.pte("P0", a) == PTE.swpEntry(type: PTE.swpHWPoison, pfn: pfn))
        // dec_mm_counter(mm_counter(page)) in both mms; the entry is not counted.
        #expect(m.k.mmCounter(m.mm("P0"), .anon) == anon0 - 1)
        #expect(m.k.mmCounter(m.mm("P1"), .anon) == anon1 - 1)
        #expect(m.k.mmCounter(m.mm("P0"), .swapents) == 0)
        // Unmapped; only the poison reference is left: the frame is never freed.
        #expect(m.k.pageMapcount(pfn) == 0 && m.frameRecord(pfn).pointee.refcount == 1)
        #expect(m.check() == [])
    }

    @Test func ignoreHWPoisonTakesTheOrdinaryPath() throws {
        let m = try setup(swap: 4)
        #expect(m.perform("P0", .poison(addr: a, pages: 1)) == .ok)
        #expect(m.perform("P0", .poison(addr: f, pages: 1)) == .ok)
        #expect(m.perform("P0", .reclaim(addr: a, pages: 1)) == .ok, "add_to_swap, then TTU with ignore_access only")
        // reclaim passes no TTU_IGNORE_HWPOISON: hwpoison entries, not swap entries.
        #expect(m.tokens("P0", a, 1) == "H" && m.tokens("P1", a, 1) == "H")
        // With TTU_IGNORE_HWPOISON a shared file page is just unmapped.
        let file0 = m.k.mmCounter(m.mm("P0"), .file)
        #expect(m.perform("P0", .unmap(addr: f, pages: 1, flags: [.ignoreAccess, .ignoreHWPoison])) == .ok)
        #expect(m.tokens("P0", f, 1) == "-" && m.tokens("P1", f, 1) == "-")
        #expect(m.k.mmCounter(m.mm("P0"), .file) == file0 - 1)
        // An anonymous page with TTU_IGNORE_HWPOISON gets a swap entry as usual.
        let (m2, _) = try machine("""
            swap 4
            proc P0
            P0 mmap 0x100000000000 1 rw anon-private
            P0 write 0x100000000000
            P0 poison 0x100000000000
            """)
        let pfn = m2.frame("P0", a)
        m2.frameRecord(pfn).pointee.flags |= PG.swapcache
        m2.frameRecord(pfn).pointee.private_ = PTE.swpEntry(type: 0, offset: m2.k.getSwapPage(for: pfn))
        m2.k.getPage(pfn)  // the swap cache's reference
        #expect(m2.perform("P0", .unmap(addr: a, pages: 1, flags: [.ignoreAccess, .ignoreHWPoison])) == .ok)
        #expect(m2.tokens("P0", a, 1) == "S")
        #expect(m.check() == [] && m2.check() == [])
    }

    @Test func aFaultOnAHWPoisonEntryIsSIGBUS() throws {
        let m = try setup()
        #expect(m.perform("P0", .poison(addr: f, pages: 1)) == .ok)
        #expect(m.perform("P0", .unmap(addr: f, pages: 1, flags: [.ignoreAccess])) == .ok)
        #expect(m.tokens("P0", f, 1) == "H" && m.tokens("P1", f, 1) == "H")
        #expect(m.perform("P0", .read(addr: f, pages: 1)) == .sigbus)
        #expect(m.perform("P1", .write(addr: f, pages: 1)) == .sigbus)
        #expect(m.tokens("P0", f, 1) == "H", "the entry stays")
        #expect(m.check() == [])
    }

    @Test func forkCopiesHWPoisonEntriesAndUnmapClearsThem() throws {
        let m = try setup()
        #expect(m.perform("P0", .poison(addr: a, pages: 1)) == .ok)
        #expect(m.perform("P0", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .ok)
        #expect(m.fork("P1", child: "P2") == .ok)
        #expect(m.tokens("P2", a, 2) == "H A1:3")
        #expect(m.perform("P2", .read(addr: a, pages: 1)) == .sigbus)
        #expect(m.perform("P2", .munmap(addr: a, pages: 2)) == .ok)
        #expect(m.exit("P0") == .ok)
        #expect(m.check() == [])
    }

    @Test func poisonErrors() throws {
        let m = try setup()
        #expect(m.perform("P0", .poison(addr: a, pages: 1)) == .ok)
        #expect(m.perform("P1", .poison(addr: a, pages: 1)) == .errno(.EHWPOISON), "TestSetPageHWPoison: already set")
        #expect(m.perform("P0", .poison(addr: a + 0x100000, pages: 1)) == .errno(.EFAULT))
        // A poisoned KSM page: try_to_unmap reaches all its mappings through rmap_walk_ksm.
        let (k, _) = try machine("""
            proc Q0
            proc Q1
            Q0 mmap 0x100000000000 1 rw anon-private
            Q1 mmap 0x100000000000 1 rw anon-private
            Q0 write 0x100000000000 value=1
            Q1 write 0x100000000000 value=1
            Q0 madvise 0x100000000000 1 mergeable
            Q1 madvise 0x100000000000 1 mergeable
            ksm scan 2
            Q0 poison 0x100000000000
            Q0 unmap 0x100000000000 1 ignore_access
            """)
        #expect(k.tokens("Q0", a, 1) == "H" && k.tokens("Q1", a, 1) == "H")
        #expect(m.check() == [] && k.check() == [])
    }
}
