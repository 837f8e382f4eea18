import Foundation
import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// MADV_COLLAPSE (Sources/Rmap/Fault/Collapse.swift, madvise_collapse as 6.18
/// runs it): its errors, and what the corpus traces cannot show (MM
/// counters, swap entries, a trace without THP settings, extra references).
/// The checker is clean after each step.
@Suite struct CollapseTests {
    static let a: UInt64 = 0x1000_0000_0000

    private func results(_ out: ReplayOutcome) -> [String] { out.results.map(\.1) }

    private func anonPages(_ m: Machine, _ p: String) -> Int64 {
        withUnsafePointer(to: m.k.mm(m.mm(p)).pointee.rss) {
            $0.withMemoryRebound(to: Int64.self, capacity: 4) { $0[MMCounter.anon.rawValue] }
        }
    }

    @Test func vmNoHugepageIsEINVALAndChangesNothing() throws {
        let (m, out) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000000000 512 rw anon-private
            P0 madvise 0x100000000000 512 nohugepage
            P0 write 0x100000000000 512
            P0 madvise 0x100000000000 512 collapse
            """)
        #expect(out.error == nil && results(out) == ["ok", "ok", "ok", "EINVAL"])
        #expect(m.tokens("P0", Self.a, 2) == "A1:1 A2:1")
        #expect(m.checkViolations() == [])
    }

    @Test func sharedAnonymousAndFileMemoryAreEINVAL() throws {
        let (m, out) = try machine("""
            thp enabled always
            file f1 512
            proc P0
            P0 mmap 0x100000000000 512 rw anon-shared
            P0 write 0x100000000000 2
            P0 madvise 0x100000000000 512 collapse
            P0 mmap 0x100000200000 512 rw file-private:f1@0
            P0 write 0x100000200000 2
            P0 madvise 0x100000200000 512 collapse
            """)
        #expect(out.error == nil && results(out) == ["ok", "ok", "EINVAL", "ok", "ok", "EINVAL"], "\(out.results)")
        #expect(m.checkViolations() == [])
    }

    @Test func noTwoMiBRunIsENOMEMAndChangesNothing() throws {
        // 64 frames: no aligned run of 512 for alloc_charge_folio().
        let (m, out) = try machine("""
            thp enabled madvise
            proc P0
            P0 mmap 0x100000000000 512 rw anon-private
            P0 write 0x100000000000 8
            P0 madvise 0x100000000000 512 collapse
            """, config: .tiny)
        #expect(out.error == nil && results(out) == ["ok", "ok", "ENOMEM"], "\(out.results)")
        #expect(m.tokens("P0", Self.a, 3) == "A1:1 A2:1 A3:1")
        #expect(anonPages(m, "P0") == 8)
        #expect(m.checkViolations() == [])
    }

    @Test func enomemEndsTheLoopButKeepsEarlierRanges() throws {
        // Room for one 2 MiB run: the first range collapses, the second
        // cannot get a folio, and ENOMEM is not a result the loop goes on after.
        var c = ArenaConfig.tiny
        c.frames = 1100
        c.ptPages = 32
        let (m, out) = try machine("""
            thp enabled madvise
            proc P0
            P0 mmap 0x100000000000 1024 rw anon-private
            P0 write 0x100000000000 4
            P0 write 0x100000200000 4
            P0 madvise 0x100000000000 1024 collapse
            """, config: c)
        #expect(out.error == nil && results(out) == ["ok", "ok", "ok", "ENOMEM"], "\(out.results)")
        #expect(m.tokens("P0", Self.a, 1) == "A1+0:1*")
        #expect(m.tokens("P0", Self.a + 0x20_0000, 2) == "A1:1 A2:1")
        #expect(anonPages(m, "P0") == 512 + 4)
        #expect(m.checkViolations() == [])
    }

    @Test func noneAndZeroPTEsAreChargedToMMAnonPages() throws {
        let (m, out) = try machine("""
            thp enabled madvise
            proc P0
            P0 mmap 0x100000000000 512 rw anon-private
            P0 write 0x100000000000 3
            P0 read 0x100000003000 2
            """)
        #expect(out.error == nil)
        #expect(anonPages(m, "P0") == 3)
        let pt = m.k.pmdSlot(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.a)!.pointee
        #expect(m.madviseCollapse("P0", addr: Self.a, pages: 512) == .ok)
        // __collapse_huge_page_copy_succeeded: +1 for each none or zero-page PTE.
        #expect(anonPages(m, "P0") == 512)
        #expect(m.tokens("P0", Self.a, 5) == "A1+0:1* A1+1:1* A1+2:1* A1+3:1* A1+4:1*")
        // The old PTE table is the one deposited with the PMD, emptied.
        let root = m.k.mm(m.mm("P0")).pointee.pgd
        let table = m.k.pmdTable(root: root, key: Self.a)
        #expect(m.k.depositedPTETables(pmdTable: table) == [PTE.pfn(pt)])
        #expect((0..<512).allSatisfy { m.k.ptPage(PTE.pfn(pt))[$0] == 0 })
        // Dirty and writable (the VMA is).
        let pmd = m.k.pmdSlot(root: root, key: Self.a)!.pointee
        #expect(PTE.isPMDLeaf(pmd) && PTE.isDirty(pmd) && PTE.isWrite(pmd))
        #expect(m.checkViolations() == [])
        // A second collapse finds the PMD leaf: success, nothing changes.
        #expect(m.madviseCollapse("P0", addr: Self.a, pages: 512) == .ok)
        #expect(anonPages(m, "P0") == 512)
        #expect(m.checkViolations() == [])
    }

    @Test func aReadOnlyVMAGetsAReadOnlyPMD() throws {
        let (m, out) = try machine("""
            thp enabled madvise
            proc P0
            P0 mmap 0x100000000000 512 rw anon-private
            P0 write 0x100000000000 2
            P0 mprotect 0x100000000000 512 r
            P0 madvise 0x100000000000 512 collapse
            P0 write 0x100000000000
            P0 read 0x100000000000
            """)
        #expect(out.error == nil && results(out) == ["ok", "ok", "ok", "ok", "SIGSEGV", "ok"], "\(out.results)")
        let pmd = m.k.pmdSlot(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.a)!.pointee
        #expect(PTE.isPMDLeaf(pmd) && !PTE.isWrite(pmd))
        #expect(m.checkViolations() == [])
    }

    @Test func extraReferencesAreEAGAINAndTheLoopGoesOn() throws {
        let (m, out) = try machine("""
            thp enabled madvise
            proc P0
            P0 mmap 0x100000000000 1024 rw anon-private
            P0 write 0x100000000000 4
            P0 write 0x100000200000 4
            """)
        #expect(out.error == nil)
        // A reference beyond the mappings (a GUP pin, say) on a page of the
        // first range: SCAN_PAGE_COUNT, which the loop goes on after; the
        // second range collapses, and the result is the last failure's EAGAIN.
        let pinned = m.frame("P0", Self.a + 0x1000)
        m.k.getPage(pinned)
        #expect(m.madviseCollapse("P0", addr: Self.a, pages: 1024) == .errno(.EAGAIN))
        #expect(m.tokens("P0", Self.a, 2) == "A1:1 A2:1")
        #expect(m.tokens("P0", Self.a + 0x20_0000, 1) == "A1+0:1*")
        m.k.putPage(pinned)
        #expect(m.checkViolations() == [])
        #expect(m.madviseCollapse("P0", addr: Self.a, pages: 1024) == .ok)
        #expect(m.tokens("P0", Self.a, 1) + " " + m.tokens("P0", Self.a + 0x20_0000, 1) == "A1+0:1* A1+0:1*")
        #expect(anonPages(m, "P0") == 1024)
        #expect(m.checkViolations() == [])
    }

    @Test func swapEntriesAreSwappedInAndCopied() throws {
        // __collapse_huge_page_swapin(): MADV_COLLAPSE has no max_ptes_swap
        // limit; each swap entry is faulted in (do_swap_page), then copied.
        let (m, out) = try machine("""
            swap 16
            thp enabled madvise
            proc P0
            P0 mmap 0x100000000000 512 rw anon-private
            P0 write 0x100000000000 4 value=3
            P0 madvise 0x100000001000 2 pageout
            expect P0 0x100000000000 4 = A1:1 S S A2:1
            P0 madvise 0x100000000000 512 collapse => ok
            expect P0 0x100000000000 4 = A1+0:1* A1+1:1* A1+2:1* A1+3:1*
            expect contents P0 0x100000000000 5 = v3 v3 v3 v3 v0
            """)
        #expect(out.error == nil && out.failures == [], "\(out.failures)")
        #expect(anonPages(m, "P0") == 512)
        let swapents = withUnsafePointer(to: m.k.mm(m.mm("P0")).pointee.rss) {
            $0.withMemoryRebound(to: Int64.self, capacity: 4) { $0[MMCounter.swapents.rawValue] }
        }
        #expect(swapents == 0)
        #expect(m.checkViolations() == [])
    }

    @Test func aTraceWithoutTHPSettingsKeepsItsRulesAfterACollapse() throws {
        // No `thp` statement: mappings are VM_NOHUGEPAGE from the start and
        // faults make small folios, even after MADV_COLLAPSE made a PMD leaf
        // (which the fault, split, fork and unmap paths must then handle).
        let (m, out) = try machine("""
            proc P0
            P0 mmap 0x100000000000 1024 rw anon-private
            P0 madvise 0x100000000000 1024 hugepage
            P0 write 0x100000000000 512
            P0 madvise 0x100000000000 512 collapse
            P0 write 0x100000000000 2
            P0 write 0x100000200000
            P1 = fork P0
            P1 write 0x100000001000
            P0 mprotect 0x100000000000 1 r
            P0 mmap 0x100000400000 512 rw anon-private
            P0 write 0x100000400000 512
            P0 madvise 0x100000400000 512 collapse
            P0 munmap 0x100000000000 2
            P1 exit
            """)
        #expect(out.error == nil, "\(String(describing: out.error))")
        #expect(results(out) == ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "EINVAL", "ok", "ok"],
                "\(out.results)")
        #expect(m.thpSettings == nil)
        #expect(m.tokens("P0", Self.a + 0x20_0000, 1) == "A1:1")
        #expect(m.tokens("P0", Self.a + 0x2000, 1) == "A1+2:1")
        #expect(m.checkViolations() == [])
        // The saved state keeps that (RMAP_THP_PMD_LEAVES) and reopens sound.
        let dir = freshTempDir("collapse-saved")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(m.save(to: dir + "/a.arena") == nil)
        let loaded = try Machine(opening: dir + "/a.arena")
        #expect(loaded.thpSettings == nil && loaded.k.thpActive)
        #expect(loaded.checkViolations() == [])
    }
}
