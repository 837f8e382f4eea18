import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// mlock, migrate_vma (`device`) and make_device_exclusive (`exclusive`) on
/// large folios, with expectations derived by hand from 6.18's mm/mlock.c,
/// mm/internal.h, mm/rmap.c, mm/migrate_device.c and mm/gup.c.
@Suite struct LargeFolioMlockDeviceTests {
    static let b: UInt64 = 0x1000_0040_0000

    func head(_ m: Machine, _ p: String, _ addr: UInt64) throws -> PFN {
        let pfn = m.frame(p, addr)
        try #require(!pfn.isNone)
        return m.k.folioOf(pfn)
    }
    func mlocked(_ m: Machine, _ head: PFN) -> Bool { m.k.page(head).pointee.flags & PG.mlocked != 0 }

    // MARK: mlock

    /// A 64 KiB folio cut by the mlock range is not mlocked (allow_mlock_munlock:
    /// step 8 != 16); one inside the range is, with mlock_count 1; no tail
    /// carries the flag.
    @Test func mlockNeedsTheWholeFolioInTheRange() throws {
        let (m, out) = try machine("""
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000400000 32 rw anon-private
            P0 write 0x100000400000
            P0 write 0x100000410000
            P0 mlock 0x100000400000 8
            P0 mlock 0x100000410000 16
            """)
        #expect(out.failures == [] && out.error == nil)
        let h1 = try head(m, "P0", Self.b), h2 = try head(m, "P0", Self.b + 0x10000)
        #expect(m.k.folioIsLarge(h1) && m.k.folioNrPages(h1) == 16 && m.k.folioNrPages(h2) == 16)
        #expect(!mlocked(m, h1) && m.k.folioMlockCount(h1) == 0)
        #expect(mlocked(m, h2) && m.k.folioMlockCount(h2) == 1)
        for i in 1..<16 { #expect(m.k.page(h1.advanced(by: i)).pointee.flags & PG.mlocked == 0) }
        #expect(m.checkViolations() == [])
    }

    /// mlock_pte_range's PMD branch mlocks a PMD-mapped THP; splitting its
    /// PMD in the locked VMA (a VMA boundary inside it) munlocks it
    /// (folio_remove_rmap_pmd -> munlock_vma_folio), although the folio is
    /// still fully mapped there by PTEs; a new THP faulted into a locked VMA
    /// is mlocked at once (mlock_new_folio, count 1).
    @Test func pmdMappedTHPIsMlockedAndAPMDSplitMunlocksIt() throws {
        let (m, _) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000400000 1024 rw anon-private
            P0 write 0x100000400000
            P0 mlock 0x100000400000 512
            P0 mlock 0x100000600000 512
            """)
        let thp = try head(m, "P0", Self.b)
        #expect(m.tokens("P0", Self.b, 1) == "A1+0:1*")
        #expect(mlocked(m, thp) && m.k.folioMlockCount(thp) == 1)
        let fresh = try head(m, "P0", Self.b + 0x200000)  // populated by mlock: a new THP in a locked VMA
        #expect(m.tokens("P0", Self.b + 0x200000, 1) == "A1+0:1*" && mlocked(m, fresh) && m.k.folioMlockCount(fresh) == 1)
        #expect(m.perform("P0", .mprotect(addr: Self.b + 0x100000, pages: 256, prot: .read)) == .ok)
        #expect(m.tokens("P0", Self.b, 1) == "A1+0:1")
        #expect(!mlocked(m, thp) && m.k.folioMlockCount(thp) == 0)
        #expect(m.checkViolations() == [])
    }

    /// mlock_count counts the locked VMAs that mlocked the folio: the
    /// parent and a fork child each mlock the whole folio (count 2); the
    /// parent's munlock leaves it mlocked (count 1); the child's exit
    /// (munlock_vma_folio at the zap) clears it.
    @Test func mlockCountAcrossProcesses() throws {
        let (m, _) = try machine("""
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000400000 16 rw anon-private
            P0 write 0x100000400000
            P0 mprotect 0x100000400000 16 r
            P1 = fork P0
            P0 mlock 0x100000400000 16
            P1 mlock 0x100000400000 16
            """)
        let h = try head(m, "P0", Self.b)
        #expect(m.tokens("P1", Self.b, 2) == "A1+0:2 A1+1:2")
        #expect(mlocked(m, h) && m.k.folioMlockCount(h) == 2)
        #expect(m.perform("P0", .munlock(addr: Self.b, pages: 16)) == .ok)
        #expect(mlocked(m, h) && m.k.folioMlockCount(h) == 1)
        #expect(m.checkViolations() == [])
        #expect(m.perform("P1", .exit) == .ok)
        #expect(!mlocked(m, h) && m.k.folioMlockCount(h) == 0)
        #expect(m.checkViolations() == [])
    }

    /// Mapping pages of a large folio (folio_add_anon_rmap_ptes) never
    /// mlocks it: a folio unmapped by `unmap ... migration` in a locked VMA
    /// (ignore_mlock, ignore_access) and faulted back is not mlocked again.
    @Test func remappingALargeFolioDoesNotMlockIt() throws {
        let (m, out) = try machine("""
            thp enabled never
            thp 64K always
            proc P0
            P0 mmap 0x100000400000 16 rw anon-private
            P0 write 0x100000400000
            P0 mlock 0x100000400000 16
            P0 unmap 0x100000400000 16 migration,ignore_mlock,ignore_access => ok
            P0 read 0x100000400000 16
            """)
        #expect(out.failures == [] && out.error == nil)
        let h = try head(m, "P0", Self.b)
        #expect(m.tokens("P0", Self.b, 2) == "A1+0:1 A1+1:1")
        #expect(!mlocked(m, h))
        #expect(m.checkViolations() == [])
    }

    /// Reclaim's walks restore a missed mlock only for a folio one locked
    /// VMA maps whole ("Only mlock fully mapped pages": ptes == nr_pages),
    /// with mlock_count 0 (the folio is isolated, the putback sets 0).
    /// try_to_unmap with TTU_SPLIT_HUGE_PMD splits the THP's PMD in the
    /// locked VMA (folio_remove_rmap_pmd: munlocked), then finds all 512
    /// PTEs there and mlocks it again; a munlock then clears it at once. A
    /// folio missing a page, or cut by a VMA boundary, is not mlocked by the
    /// walks (try_to_unmap, folio_referenced).
    @Test func reclaimWalksRestoreTheMlockOfAWholeFolioOnly() throws {
        let (m, _) = try machine("""
            thp enabled always
            thp 64K always
            proc P0
            P0 mmap 0x100000400000 1024 rw anon-private
            P0 write 0x100000400000
            P0 mlock 0x100000400000 512
            P0 mmap 0x100000800000 32 rw anon-private
            P0 write 0x100000800000
            P0 write 0x100000810000
            P0 mlock 0x100000800000 32
            P0 munmap 0x10000080f000 1
            P0 mprotect 0x100000818000 8 r
            P0 munlock 0x100000810000 16
            P0 mlock 0x100000810000 16
            """)
        let thp = try head(m, "P0", Self.b), cut = try head(m, "P0", Self.b + 0x400000), split = try head(m, "P0", Self.b + 0x410000)
        #expect(m.tokens("P0", Self.b, 1) == "A1+0:1*" && mlocked(m, thp))
        #expect(m.k.folioNrPages(cut) == 16 && !mlocked(m, cut))
        #expect(m.k.folioNrPages(split) == 16 && !mlocked(m, split))  // two VMAs: the mlock walk of each sees half
        #expect(m.perform("P0", .unmap(addr: Self.b, pages: 1, flags: [.splitHugePMD, .ignoreAccess])) == .fail)
        #expect(m.tokens("P0", Self.b, 1) == "A1+0:1")
        #expect(mlocked(m, thp) && m.k.folioMlockCount(thp) == 0)
        #expect(m.checkViolations() == [])
        #expect(m.perform("P0", .munlock(addr: Self.b, pages: 512)) == .ok)
        #expect(!mlocked(m, thp))
        for a in [Self.b + 0x400000, Self.b + 0x410000] {
            #expect(m.perform("P0", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .fail)
            #expect(m.perform("P0", .referenced(addr: a, pages: 1)) == .referenced(0))
            // folio_referenced_one: a locked VMA that maps the folio in part
            // neither counts its PTEs young nor reports VM_LOCKED.
            #expect(m.referenced(process: "P0", addr: a)?.locked == false)
        }
        #expect(!mlocked(m, cut) && !mlocked(m, split))
        #expect(m.checkViolations() == [])
    }

    // MARK: device (migrate_vma)

    /// migrate_vma_collect_pmd splits a PMD-mapped THP (split_folio: the
    /// never-written pages go to the zero page) and migrates the pages
    /// asked for; a page of a PTE-mapped large folio is not collected
    /// (PageTransCompound): `fail`, the folio left as it was.
    @Test func deviceSplitsAPMDMappedTHPAndSkipsAPTEMappedFolio() throws {
        let (m, out) = try machine("""
            thp enabled madvise
            thp 64K always
            proc P0
            P0 mmap 0x100000400000 1024 rw anon-private
            P0 madvise 0x100000400000 512 hugepage
            P0 write 0x100000400000 2
            P0 write 0x100000600000
            P0 device 0x100000401000 => ok
            P0 device 0x100000601000 2 => fail
            """)
        #expect(out.failures == [] && out.error == nil, "\(out.failures)")
        #expect(m.tokens("P0", Self.b, 3) == "A1:1 D Z")
        #expect(m.tokens("P0", Self.b + 0x200000, 3) == "A1+0:1 A1+1:1 A1+2:1")
        #expect(m.checkViolations() == [])
    }

    /// A THP with an extra reference cannot be split (can_split_folio):
    /// migrate_vma_collect_skip, nothing migrated, the PMD stays.
    @Test func deviceSkipsATHPThatCannotBeSplit() throws {
        let (m, _) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000400000 512 rw anon-private
            P0 write 0x100000400000
            """)
        let h = try head(m, "P0", Self.b)
        m.k.getPage(h)  // a pin, as GUP would hold
        #expect(m.perform("P0", .device(addr: Self.b, pages: 2, coherent: false)) == .fail)
        #expect(m.tokens("P0", Self.b, 2) == "A1+0:1* A1+1:1*")
        m.k.putPage(h)
        #expect(m.checkViolations() == [])
    }

    /// The huge zero page's PMD is split to small zero-page PTEs (the
    /// model's `device` answers EFAULT for a zero page, as for small pages).
    @Test func deviceSplitsTheHugeZeroPMD() throws {
        let (m, _) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000400000 512 rw anon-private
            P0 read 0x100000400000
            """)
        #expect(m.tokens("P0", Self.b, 1) == "Z*")
        #expect(m.perform("P0", .device(addr: Self.b, pages: 1, coherent: false)) == .errno(.EFAULT))
        #expect(m.tokens("P0", Self.b, 2) == "Z Z")
    }

    // MARK: exclusive (make_device_exclusive)

    /// FOLL_SPLIT_PMD: the PMD is split (the folio stays whole), the write
    /// fault reuses the exclusive page, and only that PTE becomes a
    /// device-exclusive entry; a CPU access restores it.
    @Test func exclusiveSplitsThePMDAndTakesOnePage() throws {
        let (m, out) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000400000 512 rw anon-private
            P0 write 0x100000400000
            P0 exclusive 0x100000403000 => ok
            """)
        #expect(out.failures == [] && out.error == nil)
        #expect(m.tokens("P0", Self.b + 0x2000, 3) == "A1+2:1 X A1+4:1")
        let h = try head(m, "P0", Self.b)
        #expect(m.k.folioLargeMapcount(h) == 511 && m.k.folioEntireMapcount(h) == 0)
        #expect(m.checkViolations() == [])
        #expect(m.perform("P0", .read(addr: Self.b + 0x3000, pages: 1)) == .ok)
        #expect(m.tokens("P0", Self.b + 0x2000, 3) == "A1+2:1 A1+3:1 A1+4:1")
        #expect(m.k.folioLargeMapcount(h) == 512)
        #expect(m.checkViolations() == [])
    }

    /// On a THP shared with a fork child, the parent's PMD is split first,
    /// then the write fault copies one small page (the folio is shared:
    /// __wp_can_reuse_large_anon_folio says no), and that copy is taken.
    @Test func exclusiveOnASharedTHPTakesACopy() throws {
        let (m, _) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000400000 512 rw anon-private
            P0 write 0x100000400000
            P1 = fork P0
            P0 exclusive 0x100000401000
            """)
        #expect(m.tokens("P0", Self.b, 3) == "A1+0:2 X A1+2:2")
        #expect(m.tokens("P1", Self.b, 3) == "A1+0:2* A1+1:1* A1+2:2*")
        #expect(m.checkViolations() == [])
    }

    /// No split in a VMA GUP refuses for FOLL_WRITE (check_vma_flags): the
    /// fault fails, the PMD stays.
    @Test func exclusiveInAReadOnlyVMAKeepsThePMD() throws {
        let (m, _) = try machine("""
            thp enabled always
            proc P0
            P0 mmap 0x100000400000 512 rw anon-private
            P0 write 0x100000400000
            P0 mprotect 0x100000400000 512 r
            """)
        #expect(m.perform("P0", .exclusive(addr: Self.b, pages: 1)) == .sigsegv)
        #expect(m.tokens("P0", Self.b, 1) == "A1+0:1*")
    }
}
