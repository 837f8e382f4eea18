import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport
import CShims

/// mprotect and the flag-changing madvise advice on hugetlb VMAs
/// (Kernel.hugetlbChangeProtection, Kernel.vmaModify's hugetlb rules). The
/// kernel side is in Tests/Corpus/kernel-large/61-64.
@Suite struct HugetlbMprotectTests {
    static let a: UInt64 = 0x1000_0000_0000
    static let gib: UInt64 = 0x1000_8000_0000

    /// P's VMAs as (start, end, flags).
    func vmas(_ m: Machine, _ p: String) -> [(UInt64, UInt64, UInt64)] {
        m.k.vmasIntersecting(m.mm(p), 0, TraceLimits.maxAddress).map {
            let v = m.k.vma($0).pointee
            return (v.vm_start, v.vm_end, v.vm_flags)
        }
    }

    func entry(_ m: Machine, _ p: String, _ addr: UInt64) -> UInt64 {
        m.k.pmdSlot(root: m.k.mm(m.mm(p)).pointee.pgd, key: addr)?.pointee ?? 0
    }

    @Test func aPrivateEntryIsWriteProtectedAndTheNextWriteReusesItsExclusiveFolio() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\nP0 write 0x100000000000")
        let before = entry(m, "P0", Self.a)
        #expect(PTE.isWrite(before) && PTE.isDirty(before))
        // The whole VMA: no split; the entry keeps frame, dirty and young bits.
        #expect(try run(m, "P0 mprotect 0x100000000000 1024 r") == ["ok"])
        var e = entry(m, "P0", Self.a)
        #expect(PTE.isPMDLeaf(e) && !PTE.isWrite(e) && PTE.isDirty(e) && PTE.pfn(e) == PTE.pfn(before))
        #expect(vmas(m, "P0").count == 1)
        // Back to rw: a private mapping's vm_page_prot has no write bit, so
        // the entry stays read-only (no MM_CP_TRY_CHANGE_WRITABLE for hugetlb).
        #expect(try run(m, "P0 mprotect 0x100000000000 1024 rw") == ["ok"])
        e = entry(m, "P0", Self.a)
        #expect(PTE.isPMDLeaf(e) && !PTE.isWrite(e))
        // hugetlb_wp reuses the exclusive folio: same frame, writable.
        #expect(try run(m, "P0 write 0x100000000000") == ["ok"])
        e = entry(m, "P0", Self.a)
        #expect(PTE.isWrite(e) && PTE.pfn(e) == PTE.pfn(before))
        #expect(m.hugetlbPool == (2, 1, 1, 0))
        // PROT_NONE: the entry stays (pte_present: _PAGE_PROTNONE), access faults.
        #expect(try run(m, "P0 mprotect 0x100000000000 1024 none\nP0 read 0x100000000000") == ["ok", "SIGSEGV"])
        e = entry(m, "P0", Self.a)
        #expect(PTE.isPMDLeaf(e) && e & PTE.present == 0 && PTE.pfn(e) == PTE.pfn(before))
        #expect(m.tokens("P0", Self.a, 1) == "T1+0:1*")
    }

    @Test func aSharedEntryBecomesWritableAgainAsVmPageProtSays() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 1\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-shared\nP0 read 0x100000000000")
        #expect(try run(m, "P0 mprotect 0x100000000000 512 r") == ["ok"])
        #expect(!PTE.isWrite(entry(m, "P0", Self.a)))
        // hugetlbfs does no dirty tracking: vm_page_prot is PAGE_SHARED.
        #expect(try run(m, "P0 mprotect 0x100000000000 512 rw") == ["ok"])
        #expect(PTE.isWrite(entry(m, "P0", Self.a)))
    }

    @Test func splitsOnlyAtHugePageBoundariesAndNeverMerges() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 3\nproc P0\nP0 mmap 0x100000000000 1536 rw hugetlb-private")
        // Unaligned start: EINVAL, nothing changed.
        #expect(try run(m, "P0 mprotect 0x100000001000 511 r") == ["EINVAL"])
        #expect(vmas(m, "P0").count == 1)
        // Aligned start, unaligned end: the start's split stays, then EINVAL.
        #expect(try run(m, "P0 mprotect 0x100000200000 1 r") == ["EINVAL"])
        #expect(vmas(m, "P0").map { $0.0 } == [Self.a, Self.a + 0x200000])
        #expect(vmas(m, "P0").allSatisfy { $0.2 & VM.write != 0 })
        // The middle huge page read-only: three VMAs.
        #expect(try run(m, "P0 mprotect 0x100000200000 512 r") == ["ok"])
        #expect(vmas(m, "P0").map { $0.0 } == [Self.a, Self.a + 0x200000, Self.a + 0x400000])
        // Back to rw over the whole middle VMA: a hugetlb VMA never merges
        // (VM_DONTEXPAND): three VMAs stay.
        #expect(try run(m, "P0 mprotect 0x100000200000 512 rw") == ["ok"])
        #expect(vmas(m, "P0").count == 3 && vmas(m, "P0").allSatisfy { $0.2 & VM.write != 0 })
        // Nor grows over part of a neighbour: prev [0, 2 MiB) and the range
        // agree, but VM_DONTEXPAND (VM_SPECIAL) stops every merge, so the
        // VMA splits at the range's end instead, or refuses where that is
        // unaligned.
        let p = try Machine()
        _ = try run(p, "hugetlb 3\nproc P0\nP0 mmap 0x100000000000 1536 rw hugetlb-private")
        #expect(try run(p, "P0 mprotect 0x100000000000 512 r\nP0 mprotect 0x100000200000 1 r") == ["ok", "EINVAL"])
        #expect(try run(p, "P0 mprotect 0x100000200000 512 r") == ["ok"])
        #expect(vmas(p, "P0").map { [$0.0, $0.1] } == [[Self.a, Self.a + 0x200000], [Self.a + 0x200000, Self.a + 0x400000],
                                                       [Self.a + 0x400000, Self.a + 0x600000]])
    }

    @Test func migrationEntriesLoseTheirWritePermission() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000\n"
                     + "P0 mmap 0x100000200000 512 rw hugetlb-shared\nP0 write 0x100000200000")
        #expect(try run(m, "P0 unmap 0x100000000000 1024 migration") == ["ok"])
        for addr in [Self.a, Self.a + 0x200000] {
            let e = entry(m, "P0", addr)
            #expect(PTE.isPMDMigrationEntry(e) && PTE.swpType(e) == PTE.swpMigrationWrite)
        }
        #expect(try run(m, "P0 mprotect 0x100000000000 1024 r") == ["ok"])
        // Anonymous: read-exclusive; the hugetlbfs page: read.
        #expect(PTE.swpType(entry(m, "P0", Self.a)) == PTE.swpMigrationReadExclusive)
        #expect(PTE.swpType(entry(m, "P0", Self.a + 0x200000)) == PTE.swpMigrationRead)
        // The faults wait for the migration to end and map the folio read-only.
        #expect(try run(m, "P0 read 0x100000000000 1\nP0 read 0x100000200000 1") == ["ok", "ok"])
        #expect(PTE.isPMDLeaf(entry(m, "P0", Self.a)) && !PTE.isWrite(entry(m, "P0", Self.a)))
    }

    @Test func aSharedPMDTableIsUnsharedWithTheWidenedRange() throws {
        let m = try Machine()
        _ = try run(m, """
            hugetlb 2
            proc P0
            P0 mmap 0x100080000000 262144 rw hugetlb-shared noreserve
            P0 write 0x100080000000
            P1 = fork P0
            P1 read 0x100080200000
            """)
        let rec = HugetlbTests.RangeRecorder()
        m.register(rec, for: "P1")
        let table = m.k.pmdTable(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.gib)
        #expect(m.k.pmdShareCount(table) == 1)
        // The child's whole VMA read-only: no split; its PUD entry goes
        // (huge_pmd_unshare), the parent keeps the table and both pages.
        #expect(try run(m, "P1 mprotect 0x100080000000 262144 r") == ["ok"])
        #expect(m.k.pmdShareCount(table) == 0)
        #expect(m.k.pmdTable(root: m.k.mm(m.mm("P1")).pointee.pgd, key: Self.gib) == 0)
        #expect(rec.starts.count == 1 && rec.starts.first.map { $0.start == Self.gib && $0.end == Self.gib + Kernel.pudSize } == true)
        #expect(m.tokens("P1", Self.gib, 1) == "-" && m.tokens("P0", Self.gib, 1) == "T1+0:1*")
        #expect(PTE.isWrite(m.k.pmdSlot(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.gib)!.pointee))
        // Its next fault gets a table of its own (the flags differ from the
        // parent's: page_table_shareable refuses), read-only.
        #expect(try run(m, "P1 read 0x100080000000\nP1 write 0x100080000000") == ["ok", "SIGSEGV"])
        #expect(m.tokens("P1", Self.gib, 1) == "T1+0:2*")
    }

    @Test func flagAdviceSplitsAtHugePageBoundaries() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\nP0 write 0x100000000000 1024")
        // dontfork on the first huge page: split there; the child gets only the second.
        #expect(try run(m, "P0 madvise 0x100000000000 512 dontfork") == ["ok"])
        #expect(vmas(m, "P0").map { $0.2 & VM.dontcopy != 0 } == [true, false])
        #expect(try run(m, "P0 madvise 0x100000000000 1 dofork") == ["EINVAL"])
        #expect(try run(m, "P0 madvise 0x100000000000 1024 wipeonfork") == ["EINVAL"])
        #expect(try run(m, "P0 madvise 0x100000000000 1024 keeponfork") == ["ok"])
        #expect(try run(m, "P0 madvise 0x100000000000 1024 hugepage") == ["ok"])
        #expect(vmas(m, "P0").allSatisfy { $0.2 & VM.hugepage != 0 } && vmas(m, "P0").count == 2)
        #expect(try run(m, "P0 madvise 0x100000000000 1024 collapse") == ["EINVAL"])
        // KSM: vma_ksm_compatible refuses VM_HUGETLB, nothing changes.
        #expect(try run(m, "P0 madvise 0x100000000000 1024 mergeable") == ["ok"])
        #expect(vmas(m, "P0").allSatisfy { $0.2 & VM.mergeable == 0 })
        #expect(try run(m, "P1 = fork P0") == ["ok"])
        #expect(m.tokens("P1", Self.a, 1) == "-" && m.tokens("P1", Self.a + 0x200000, 1) == "T1+0:2*")
    }
}

/// `rmap gen --large --hugetlb` (and so `rmap fuzz` and `rmap oracle-check`)
/// draws mprotect and the flag advice in the hugetlb window, kernel-only
/// traces included; the model runs them with the checker clean.
@Suite struct HugetlbMprotectGeneratorTests {
    @Test func theGeneratorDrawsThemAndTheyRun() throws {
        var mprotects = 0, wholeGiB = 0, advice: Set<String> = []
        for seed in UInt64(1)...30 {
            var g = TraceGenerator(seed: seed, kernelOnly: true)
            g.large = true
            g.hugetlb = true
            let text = g.generate(statements: 200)
            for line in text.split(separator: "\n") where line.contains(" 0x10004") {
                let w = line.split(separator: " ")
                if w.count > 1 && w[1] == "mprotect" { mprotects += 1; if w[3] == "262144" { wholeGiB += 1 } }
                if w.count > 4 && w[1] == "madvise" && w[4] != "dontneed" { advice.insert(String(w[4])) }
            }
            let out = try Machine(config: .default).replay(try TraceParser.parse(text, file: "g.trace"))
            #expect(out.error == nil, "seed \(seed): \(out.error ?? "")")
        }
        #expect(mprotects > 20 && wholeGiB > 0)
        #expect(advice.isSuperset(of: ["dontfork", "dofork", "hugepage", "nohugepage", "collapse"]), "\(advice)")
    }
}


/// `poison` on hugetlb pages: the whole of try_memory_failure_hugetlb
/// (Kernel.memoryFailureHugetlb). Expectations derived from 6.18's
/// mm/memory-failure.c and mm/hugetlb.c (model/hugetlb-poison*.trace have
/// the stories).
@Suite struct HugetlbPoisonTests {
    static let a: UInt64 = 0x1000_0000_0000

    /// A machine after `setup`, and a runner for more lines.
    static func machine(_ setup: String) throws -> (Machine, (String) throws -> [String]) {
        let m = try Machine()
        let out = m.replay(try TraceParser.parse(setup, file: "h.trace"))
        #expect(out.error == nil, "\(out)")
        func run(_ t: String) throws -> [String] {
            m.replay(try TraceParser.parse(t, file: "h.trace", continuing: m.traceContext)).results.map(\.1)
        }
        return (m, run)
    }

    /// An anonymous folio mapped by a parent and its fork child: unmapped in
    /// both (hwpoison_user_mappings), freed by me_huge_page's folio_put and
    /// dissolved (available_huge_pages 2): out of the pool, its frames free
    /// but the raw page (page 5), kept with one reference and PG_hwpoison;
    /// the entries still name the old head.
    @Test func anAnonymousFolioIsUnmappedEverywhereAndDissolved() throws {
        let (m, run) = try Self.machine("hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\n"
            + "P0 write 0x100000000000\nP1 = fork P0\nP1 read 0x100000000000")
        let head = m.k.mappedPage(m.mm("P0"), Self.a)
        let live = m.k.desc(T.frame).pointee.live
        #expect(m.hugetlbPool == (2, 1, 0, 0))
        #expect(try run("P0 poison 0x100000005000 2") == ["ok"])  // one memory_failure per huge page
        #expect(m.tokens("P0", Self.a, 1) == "H*" && m.tokens("P1", Self.a, 1) == "H*")
        #expect(m.hugetlbPool == (1, 1, 0, 0))
        let raw = head.advanced(by: 5)
        #expect(m.k.page(raw).pointee.flags & PG.hwpoison != 0 && m.k.page(raw).pointee.refcount == 1)
        #expect(m.k.desc(T.frame).pointee.live == live - RMAP_PMD_NR + 1)
        #expect(m.k.isFree(T.frame, head.rawValue) && !m.k.isFree(T.frame, raw.rawValue))
        let pmd = m.k.pmdSlot(root: m.k.mm(m.mm("P1")).pointee.pgd, key: Self.a)!
        #expect(PTE.isHWPoisonEntry(pmd.pointee) && PTE.swpOffsetPFN(pmd.pointee) == head)
        #expect(m.checkViolations() == [])
        // Through the entry: SIGBUS; a second poison cannot get the page (EFAULT).
        #expect(try run("P1 read 0x100000000000\nP1 poison 0x100000000000") == ["SIGBUS", "EFAULT"])
        // Planted: the kept raw page no longer says whose head the entries name.
        m.k.page(raw).pointee.flags &= ~PG.hugetlbRawHWPoison
        #expect(m.checkViolations().contains { $0.kind == .hwpoisonEntry })
        m.k.page(raw).pointee.flags |= PG.hugetlbRawHWPoison
        // Planted: a second reference on the raw page.
        m.k.page(raw).pointee.refcount = 2
        #expect(m.checkViolations().contains { $0.kind == .hugetlbPool })
        m.k.page(raw).pointee.refcount = 1
        // Zap clears the entries; the pool's other page still serves.
        #expect(try run("P0 munmap 0x100000000000 512\nP1 munmap 0x100000000000 512\n"
            + "P0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000") == ["ok", "ok", "ok", "ok"])
        #expect(m.hugetlbPool == (1, 0, 0, 0))
        #expect(m.checkViolations() == [])
    }

    /// Freeing restores the owner's reservation (restore_reserve after its
    /// MADV_DONTNEED while the child maps the page): free == reserved, so
    /// dissolve_free_hugetlb_folio refuses (EBUSY). The poisoned folio stays
    /// on the free list, counted, and is never handed out.
    @Test func withEveryFreePageReservedThePoisonedFolioStaysInThePoolUnused() throws {
        let (m, run) = try Self.machine("hugetlb 1\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\n"
            + "P0 write 0x100000000000\nP1 = fork P0\nP0 madvise 0x100000000000 512 dontneed")
        let head = m.k.mappedPage(m.mm("P1"), Self.a)
        #expect(m.hugetlbPool == (1, 0, 0, 0))
        #expect(try run("P1 poison 0x100000000000") == ["EBUSY"])
        #expect(m.hugetlbPool == (1, 1, 1, 0))
        #expect(m.k.page(head).pointee.refcount == 0 && m.k.page(head).pointee.flags & PG.hwpoison != 0)
        #expect(PFN(m.k.header.pointee.hugetlb_free_head) == head)
        #expect(m.checkViolations() == [])
        // The owner's reserved fault: the list holds only the poisoned folio.
        #expect(try run("P0 read 0x100000000000") == ["SIGBUS"])
        #expect(m.hugetlbPool == (1, 1, 1, 0))
        // Planted: the count says the poisoned folio is not free.
        m.k.header.pointee.free_huge_pages -= 1
        #expect(m.checkViolations().contains { $0.kind == .hugetlbPool })
        m.k.header.pointee.free_huge_pages += 1
        // A new reservation counts it free; the fault cannot have it.
        #expect(try run("P0 exit\nproc P3\nP3 mmap 0x100000000000 512 rw hugetlb-private\nP3 write 0x100000000000")
                == ["ok", "ok", "SIGBUS"])
        #expect(m.checkViolations() == [])
    }

    /// mlock over a hugetlb hwpoison entry is ENOMEM (6.18): __mm_populate ->
    /// populate_vma_page_range's GUP (FOLL_TOUCH, FOLL_WRITE or FOLL_FORCE;
    /// no FOLL_HWPOISON) faults; hugetlb_fault answers the hwpoison entry
    /// with VM_FAULT_HWPOISON_LARGE, vm_fault_to_errno() makes that -EFAULT
    /// without FOLL_HWPOISON, and __mlock_posix_error_return() turns -EFAULT
    /// into -ENOMEM. The pages before it are faulted in; the entry stays.
    @Test func mlockOverAHugetlbHWPoisonEntryIsENOMEM() throws {
        let (m, run) = try Self.machine("hugetlb 3\nproc P0\nP0 mmap 0x100000000000 1536 rw hugetlb-private\n"
            + "P0 write 0x100000200000\nP0 poison 0x100000200000")
        #expect(m.tokens("P0", Self.a + 0x20_0000, 1) == "H*")
        #expect(try run("P0 mlock 0x100000000000 1536") == ["ENOMEM"])
        #expect(m.tokens("P0", Self.a, 1) == "T1+0:1*")        // faulted in before the entry
        #expect(m.tokens("P0", Self.a + 0x20_0000, 1) == "H*")  // the entry stays
        #expect(m.tokens("P0", Self.a + 0x40_0000, 1) == "-")   // the walk ended there
        #expect(try run("P0 mlock 0x100000400000 512") == ["ok"])
        #expect(m.checkViolations() == [])
    }

    /// A saved state with hugetlb hwpoison entries (one naming a dissolved
    /// folio's head), the kept raw page and a poisoned folio on the free list
    /// reopens and runs on; a PMD hwpoison entry naming no frame is refused.
    @Test func poisonedStatesReopenAndABadEntryIsRefused() throws {
        let path = NSTemporaryDirectory() + "rmap-\(getpid())-hugetlb-poison.arena"
        defer { unlink(path); unlink(path + ".2") }
        let (m, _) = try Self.machine("hugetlb 3\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\n"
            + "P0 write 0x100000000000\nP1 = fork P0\nP0 poison 0x100000001000\n"
            + "P0 mmap 0x100000400000 512 rw hugetlb-private\nP0 write 0x100000400000\n"
            + "P0 mmap 0x100000800000 512 rw hugetlb-private\nP2 = fork P0\n"
            + "P0 madvise 0x100000400000 512 dontneed\nP2 poison 0x100000400000")
        // The first folio dissolved (3 -> 2 pages); the second's freeing
        // restored the owner's reservation with every free page reserved: EBUSY.
        #expect(m.hugetlbPool == (2, 2, 2, 0))
        #expect(m.save(to: path) == nil)
        let r = try Machine(opening: path)
        #expect(r.hugetlbPool == m.hugetlbPool && r.checkViolations() == [])
        #expect(r.tokens("P1", Self.a, 1) == "H*" && r.tokens("P2", Self.a + 0x40_0000, 1) == "H*")
        let out = r.replay(try TraceParser.parse("P0 read 0x100000000000\nP0 read 0x100000400000", file: "h.trace",
                                                  continuing: r.traceContext))
        #expect(out.results.map(\.1) == ["SIGBUS", "ok"])  // the owner's reservation: the free page not poisoned
        let c = try Machine(opening: path, privately: false)
        let pmd = c.k.pmdSlot(root: c.k.mm(c.mm("P1")).pointee.pgd, key: Self.a)!
        pmd.pointee = PTE.swpEntry(type: PTE.swpHWPoison, pfn: PFN(c.k.desc(T.frame).pointee.bump + 512))
        _ = c.save(to: path + ".2")
        do {
            _ = try Machine(opening: path + ".2")
            Issue.record("a PMD hwpoison entry for no frame: accepted")
        } catch {
            #expect("\(error)".contains("PMD hwpoison entry for no frame"), "\(error)")
        }
    }

    /// A hugetlbfs page: unmapped in every mapper, kept in the page cache
    /// with the memory-failure reference (truncate_error_folio ->
    /// hugetlbfs_error_remove_folio), in use for good.
    @Test func aFilePageIsUnmappedEverywhereAndKeptInThePageCache() throws {
        let (m, run) = try Self.machine("hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-shared\n"
            + "P0 write 0x100000000000\nP1 = fork P0\nP1 read 0x100000000000")
        let head = m.k.mappedPage(m.mm("P0"), Self.a)
        let ref = m.k.page(head).pointee.refcount  // the cache's and the two mappings'
        #expect(try run("P1 poison 0x100000000000") == ["ok"])
        #expect(m.tokens("P0", Self.a, 1) == "H*" && m.tokens("P1", Self.a, 1) == "H*")
        #expect(m.k.page(head).pointee.refcount == ref - 2 + 1)
        #expect(m.hugetlbPool == (2, 1, 1, 0))
        #expect(try run("P2 = fork P0\nP2 read 0x100000000000\nP0 poison 0x100000000000") == ["ok", "SIGBUS", "EFAULT"])
        #expect(m.checkViolations() == [])
        #expect(try run("P0 exit\nP1 exit\nP2 exit") == ["ok", "ok", "ok"])
        #expect(m.hugetlbPool == (2, 1, 0, 0))  // the other page back; the poisoned one held
        #expect(m.k.page(head).pointee.refcount == 1)
        #expect(m.checkViolations() == [])
    }
}

/// `split` (split_huge_pages_pid) passes hugetlb VMAs over
/// (vma_not_suitable_for_thp_split); it used to split a hugetlb folio as a
/// THP and stop on its missing deposited table (FuzzLargeOps,
/// Fuzz/corpus/large-ops/regress-split-hugetlb-folio).
@Suite struct HugetlbSplitTests {
    @Test func splitLeavesHugetlbFoliosWhole() throws {
        let m = try Machine()
        let text = "hugetlb 1\nthp enabled always\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\n"
            + "P0 write 0x100000000000\nP0 mmap 0x100000200000 512 rw anon-private\nP0 write 0x100000200000\n"
            + "P0 split 0x100000000000 1024"
        let out = m.replay(try TraceParser.parse(text, file: "h.trace"))
        #expect(out.error == nil && out.results.last?.1 == "ok", "\(out)")
        #expect(m.tokens("P0", 0x1000_0000_0000, 1) == "T1+0:1*")
        #expect(m.tokens("P0", 0x1000_0020_0000, 2) == "A1:1 Z")  // the THP beside it is split (a zero page to the zero page)
        #expect(m.checkViolations() == [])
    }
}

