import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// Fault, fork, COW and VMA paths with expectations derived from mm/memory.c
/// and mm/vma.c.
@Suite struct ForwardPathTests {
    let a: UInt64 = 0x1000_0000_0000

    @Test func cowAcrossThreeGenerations() throws {
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 2 rw anon-private
            A write 0x100000000000 2
            B = fork A
            C = fork B
            expect A 0x100000000000 2, B 0x100000000000 2, C 0x100000000000 2 = A1:3 A2:3 A1:3 A2:3 A1:3 A2:3
            B write 0x100000000000
            expect A 0x100000000000 1, B 0x100000000000 1, C 0x100000000000 1 = A1:2 A2:1 A1:2
            C write 0x100000000000
            expect A 0x100000000000 1, C 0x100000000000 1 = A1:1 A2:1
            """)
        #expect(out.failures == [])
        #expect(m.check() == [])
    }

    @Test func exclusivePageIsReusedAfterTheOtherSideExits() throws {
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            B = fork A
            observe A 0x100000000000 1
            B exit
            A write 0x100000000000
            """)
        #expect(out.failures == [])
        // wp_can_reuse_anon_folio(): refcount 1, so no copy: still one frame, mapped once.
        #expect(m.tokens("A", a, 1) == "A1:1")
        let pfn = m.mappedFrame(m.mm("A"), a)
        #expect(m.frameRecord(pfn).pointee.flags & PG.anonExclusive != 0)
        #expect(m.frameRecord(pfn).pointee.serial == 1 + 1, "the first anon frame after the zero page: no copy was made")
    }

    @Test func faultAroundWindowIsAlignedAndClipped() throws {
        // do_fault_around(): from_pte = max(ALIGN_DOWN(pte_off, 16), pte_off -
        // vma_off) = max(0, 5 - 2) = 3 (the VMA's first PTE), to_pte = from + 16
        // - 1 = 18: the VMA's first 16 pages, though they straddle two 16-PTE blocks.
        let (m, _) = try machine("""
            file f 64
            proc A
            A mmap 0x100000003000 40 r file-shared:f@0
            A read 0x100000005000
            """)
        let t = m.tokens("A", 0x1000_0000_3000, 40).split(separator: " ")
        #expect(t[0..<16].allSatisfy { $0.hasPrefix("F") })
        #expect(t[16...].allSatisfy { $0 == "-" })
    }

    @Test func privateFileWriteCopiesWithoutMappingTheCachePage() throws {
        let (m, _) = try machine("""
            file f 8
            proc A
            A mmap 0x100000000000 8 rw file-private:f@0
            A write 0x100000000000
            """)
        // do_cow_fault(): no fault-around on a write.
        #expect(m.tokens("A", a, 8) == "A1:1 - - - - - - -")
        #expect(m.k.mmCounter(m.mm("A"), .anon) == 1)
        #expect(m.k.mmCounter(m.mm("A"), .file) == 0)
    }

    @Test func adjacentAnonMappingsMergeUnlessForked() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 4 rw anon-private
            A write 0x100000000000
            A mmap 0x100000004000 4 rw anon-private
            B = fork A
            B mmap 0x100000008000 4 rw anon-private
            """)
        let ta = [Target(process: "A", addr: a, pages: 12, location: .init(line: 0, column: 0))]
        #expect(m.observeVMAs(ta) == ["A 0x100000000000-0x100000008000 rw-p anon"])
        // B's VMA is a fork child (two AVCs): is_mergeable_anon_vma() refuses.
        let tb = [Target(process: "B", addr: a, pages: 12, location: .init(line: 0, column: 0))]
        #expect(m.observeVMAs(tb) == ["B 0x100000000000-0x100000008000 rw-p anon",
                                      "B 0x100000008000-0x10000000c000 rw-p anon"])
    }

    @Test func mprotectAccountingDecidesMerges() throws {
        // mprotect_fixup(): r -> rw adds VM_ACCOUNT, so the region then
        // merges with a region mapped rw; rw -> r keeps VM_ACCOUNT once
        // faulted, so it does not merge with a region mapped r.
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 4 r anon-private
            A mmap 0x100000004000 4 rw anon-private
            A mprotect 0x100000000000 4 rw
            A mmap 0x100000010000 4 rw anon-private
            A write 0x100000010000
            A mmap 0x100000014000 4 r anon-private
            A mprotect 0x100000010000 4 r
            """)
        let t = [Target(process: "A", addr: a, pages: 32, location: .init(line: 0, column: 0))]
        #expect(m.observeVMAs(t) == ["A 0x100000000000-0x100000008000 rw-p anon",
                                     "A 0x100000010000-0x100000014000 r--p anon",
                                     "A 0x100000014000-0x100000018000 r--p anon"])
    }

    @Test func errorCodes() throws {
        let (_, out) = try machine("""
            proc A
            A mmap 0x100000000000 4 r anon-private
            A mmap 0x100000002000 4 r anon-private => EEXIST
            A write 0x100000000000 => SIGSEGV
            A munmap 0x100000100000 4 => ok
            A mprotect 0x100000100000 4 rw => ENOMEM
            A madvise 0x100000100000 4 dontneed => ENOMEM
            A mlock 0x100000100000 4 => ENOMEM
            A mremap 0x100000100000 4 8 => EFAULT
            A mremap 0x100000000000 4 4 0x100000002000 => EINVAL
            """)
        #expect(out.failures == [])
    }

    @Test func arenaExhaustionIsENOMEMWithStateUnchanged() throws {
        var cfg = ArenaConfig()
        cfg.frames = 12
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 32 rw anon-private
            A write 0x100000000000 6
            B = fork A
            """, config: cfg)
        #expect(out.failures == [])
        let before = (m.tokens("A", a, 32), m.tokens("B", a, 32), m.liveObjects())
        #expect(m.perform("A", .write(addr: a + 0x10000, pages: 16)) == .errno(.ENOMEM))
        let mid = m.tokens("A", a, 32)
        // Frames ran out part way: the pages written before stay, nothing else changed.
        #expect(mid.split(separator: " ").filter { $0.hasPrefix("A") }.count == 6 + 5)
        #expect(m.perform("B", .write(addr: a, pages: 1)) == .errno(.ENOMEM))
        #expect(m.tokens("B", a, 32) == before.1)
        #expect(m.check() == [])
    }

    /// The high watermark (get_mm_hiwater_rss): the peak of anon + file +
    /// shmem pages over the process's life, kept up to date before every
    /// decrease (update_hiwater_rss) and read with the current RSS.
    @Test func hiwaterRssIsThePeak() throws {
        let (m, _) = try machine("""
            file f 32
            proc A
            A mmap 0x100000000000 8 rw anon-private
            A write 0x100000000000 6
            """)
        let mm = m.mm("A")
        #expect(m.k.getMMHiwaterRss(mm) == 6)  // rising: the current RSS
        #expect(m.perform("A", .munmap(addr: a + 0x2000, pages: 4)) == .ok)
        #expect(m.k.getMMRss(mm) == 2)
        #expect(m.k.getMMHiwaterRss(mm) == 6)  // the peak before the zap
        #expect(m.perform("A", .write(addr: a, pages: 2)) == .ok)
        #expect(m.k.getMMHiwaterRss(mm) == 6)
        // A file mapping: fault-around maps 16 pages at once, counted too.
        #expect(m.perform("A", .mmap(addr: a + 0x100000, pages: 32, prot: [.read],
                                     kind: .filePrivate(file: "f", pgoff: 0))) == .ok)
        #expect(m.perform("A", .read(addr: a + 0x100000, pages: 1)) == .ok)
        #expect(m.k.getMMRss(mm) == 18)
        #expect(m.k.getMMHiwaterRss(mm) == 18)
        #expect(m.perform("A", .madvise(addr: a + 0x100000, pages: 32, advice: .dontneed)) == .ok)
        #expect(m.k.getMMRss(mm) == 2)
        #expect(m.k.getMMHiwaterRss(mm) == 18)
        #expect(m.reportProcesses().contains("hiwater=18"))
    }
}
