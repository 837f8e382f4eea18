import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// anon_vma hierarchy and counters, derived by hand from mm/rmap.c
/// (__anon_vma_prepare, anon_vma_fork, anon_vma_clone, unlink_anon_vmas).
@Suite struct AnonVMATests {
    let a: UInt64 = 0x1000_0000_0000

    @Test func readFaultMapsZeroPageWithoutAnonVMA() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 4 rw anon-private
            A read 0x100000000000 2
            """)
        #expect(m.tokens("A", a, 4) == "Z Z - -")
        #expect(m.anonVMAAt("A", a) == 0)
        #expect(m.check() == [])
    }

    @Test func firstWriteMakesARootAnonVMA() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 4 rw anon-private
            A write 0x100000000000
            """)
        let av = m.anonVMAAt("A", a)
        #expect(av != 0)
        // New root: its own root and parent, the self-parent link counted as a
        // child, one VMA; degree = self-parent link + VMA (v5.15).
        #expect(m.anonVMAInfo(av) == rmap_anon_vma_info(root: av, parent: av, refcount: 1, degree: 2,
                                                       numChildren: 1, numActiveVMAs: 1))
    }

    @Test func forkGivesTheChildItsOwnAnonVMAUnderTheParent() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 4 rw anon-private
            A write 0x100000000000
            B = fork A
            """)
        let pa = m.anonVMAAt("A", a), cb = m.anonVMAAt("B", a)
        #expect(pa != cb)
        #expect(m.anonVMAInfo(cb) == rmap_anon_vma_info(root: pa, parent: pa, refcount: 1, degree: 1,
                                                       numChildren: 0, numActiveVMAs: 1))
        // The root gained a child and a reference from it.
        #expect(m.anonVMAInfo(pa) == rmap_anon_vma_info(root: pa, parent: pa, refcount: 2, degree: 3,
                                                       numChildren: 2, numActiveVMAs: 1))
        // The child's VMA has two AVCs (its own and the parent's).
        let v = m.vmaAt("B", a)
        #expect(m.k.avcListLength(v) == 2)
        #expect(m.check() == [])
    }

    @Test func forkOfUnfaultedRegionCopiesNoPageTables() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 4 rw anon-private
            A read 0x100000000000 4
            B = fork A
            """)
        // vma_needs_copy(): no anon_vma, so the zero-page PTEs are not copied.
        #expect(m.tokens("B", a, 4) == "- - - -")
        #expect(m.tokens("A", a, 4) == "Z Z Z Z")
    }

    /// The sequence reconstructed from the v5.15 code: with `degree`, F
    /// reuses C's anon_vma while C's VMA still uses it; with `split` it cannot.
    @Test(arguments: [ReusePolicy.degree, .split])
    func doubleReuse(_ policy: ReusePolicy) throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            B = fork A
            C = fork B
            B munmap 0x100000000000 1
            E = fork C
            F = fork E
            """, reuse: policy)
        let c = m.anonVMAAt("C", a), e = m.anonVMAAt("E", a), f = m.anonVMAAt("F", a)
        if policy == .degree {
            #expect(f == c, "F reuses C's anon_vma")
            #expect(m.anonVMAInfo(c).numActiveVMAs == 2, "C's anon_vma is used by C and F at once")
            // The checker names the reuse, and the anon_vma reused.
            let v = m.checkViolations()
            #expect(v.map(\.kind) == [.anonVMAReusedInUse] && v.first?.object == .anonVMA(AnonVMAID(c)), "\(v)")
        } else {
            #expect(f != c && f != e)
            #expect(m.anonVMAInfo(c).numActiveVMAs == 1)
            #expect(m.check() == [])
        }
    }

    /// The seeds' fork loop (002): a process forks, the parent exits, the
    /// child writes, forks again... `none` grows the hierarchy without
    /// bound; `split` reuses and stays bounded.
    @Test(arguments: [ReusePolicy.none, .split])
    func forkLoop(_ policy: ReusePolicy) throws {
        var text = "proc P0\nP0 mmap 0x100000000000 1 rw anon-private\nP0 write 0x100000000000\n"
        for i in 1...40 {
            text += "P\(i) = fork P\(i - 1)\nP\(i - 1) exit\nP\(i) write 0x100000000000\n"
        }
        let (m, _) = try machine(text, reuse: policy)
        let live = m.liveObjects()["anonVMAs"]!
        if policy == .none {
            #expect(live == 41, "one anon_vma per generation, none ever freed")
        } else {
            #expect(live <= 3)
        }
        #expect(m.check() == [])
    }

    @Test func everyObjectIsFreedWhenAllProcessesExit() throws {
        let (m, _) = try machine("""
            file f 32
            proc A
            A mmap 0x100000000000 8 rw anon-private
            A mmap 0x100000010000 8 rw file-private:f@0
            A mmap 0x100000020000 8 rw anon-shared
            A write 0x100000000000 8
            A write 0x100000010000 4
            A read 0x100000010000 8
            A write 0x100000020000 8
            B = fork A
            C = fork B
            B write 0x100000000000 4
            C write 0x100000004000 4
            A mprotect 0x100000002000 2 r
            C munmap 0x100000001000 1
            A exit
            C exit
            B exit
            """)
        #expect(m.check() == [])
        let live = m.liveObjects()
        #expect(live["mms"] == 0)
        #expect(live["vmas"] == 0)
        #expect(live["anonVMAs"] == 0)
        #expect(live["avcs"] == 0)
        // Left: the zero page and the file's page-cache pages.
        #expect(live["frames"]! == 1 + UInt32(m.k.file(m.files["f"]!).pointee.nrpages))
    }
}
