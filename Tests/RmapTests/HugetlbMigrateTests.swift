import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport
import CShims

/// Migration of hugetlb folios (Sources/Rmap/Hugetlb/HugetlbMigrate.swift):
/// the target from the pool or a temporary one, the pool counters after it,
/// the frames, the refused cases, the notifier ranges of try_to_migrate.
/// The traces are Tests/Corpus/model/hugetlb-migrate-*.
@Suite struct HugetlbMigrateTests {
    static let a: UInt64 = 0x1000_0000_0000

    func head(_ m: Machine, _ p: String, _ addr: UInt64) -> PFN { m.k.folioOf(m.frame(p, addr)) }

    @Test func aFreePageIsTheTargetAndTheOldOneGoesBackToThePool() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000 value=3\nP1 = fork P0")
        let old = head(m, "P0", Self.a)
        #expect(m.hugetlbPool == (2, 1, 0, 0))
        #expect(try run(m, "P0 migrate 0x100000000000") == ["ok"])
        let new = head(m, "P0", Self.a)
        #expect(new != old && head(m, "P1", Self.a) == new && m.k.folioIsHugetlb(new))
        // Mapped twice, not exclusive (read entries), one reference per mapping.
        #expect(m.k.folioMapcount(new) == 2 && m.k.page(new).pointee.refcount == 2)
        #expect(m.k.page(new).pointee.flags & PG.anonExclusive == 0)
        // The old folio is free on the pool's list; the counters as before.
        #expect(m.k.page(old).pointee.refcount == 0 && PFN(m.k.header.pointee.hugetlb_free_head) == old)
        #expect(m.hugetlbPool == (2, 1, 0, 0))
    }

    @Test func withoutASparePageATemporaryFolioIsTakenAndTheOldOneLeavesThePool() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 1\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-shared\nP0 write 0x100000000000")
        let old = head(m, "P0", Self.a)
        #expect(m.hugetlbPool == (1, 0, 0, 0))
        #expect(try run(m, "P0 migrate 0x100000000000") == ["ok"])
        let new = head(m, "P0", Self.a)
        // The new folio is the pool's (not temporary), in the page cache; the old one went to the buddy allocator.
        #expect(new != old && m.k.page(new).pointee.flags & PG.hugetlbTemporary == 0)
        #expect(m.k.isFree(T.frame, old.rawValue))
        let f = m.k.pageFile(new)
        #expect(m.k.hugetlbEntry(f, 0).map { PTE.pfn($0.pointee) } == new)
        #expect(m.k.page(new).pointee.refcount == 2)  // the mapping and the page cache
        #expect(m.hugetlbPool == (1, 0, 0, 0))
    }

    @Test func noTargetOrExtraReferencesFailAndChangeNothing() throws {
        var c = ArenaConfig()
        c.frames = 1600  // room for the pool of 2 (aligned), none for a third 2 MiB
        let m = try Machine(config: c)
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\nP0 write 0x100000000000\nP0 write 0x100000200000")
        let h0 = head(m, "P0", Self.a)
        // No free page, and the buddy allocator has no 2 MiB left: -ENOMEM.
        #expect(try run(m, "P0 migrate 0x100000000000") == ["fail"])
        #expect(head(m, "P0", Self.a) == h0 && m.hugetlbPool == (2, 0, 0, 0))
        #expect(m.tokens("P0", Self.a, 1) == "T1+0:1*")
        // A reference beyond the mappings: move_to_new_folio's -EAGAIN; the
        // entries map the old folio again (exclusive again: read-exclusive / write entries).
        let b = try Machine()
        _ = try run(b, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000")
        let h1 = head(b, "P0", Self.a)
        b.k.getPage(h1)
        #expect(try run(b, "P0 migrate 0x100000000000") == ["fail"])
        #expect(head(b, "P0", Self.a) == h1 && b.k.page(h1).pointee.flags & PG.anonExclusive != 0)
        #expect(b.hugetlbPool == (2, 1, 0, 0))
        b.k.putPage(h1)
        #expect(b.checkViolations() == [])
    }

    /// Records the notifier ranges (mmu_notifier_invalidate_range_start).
    final class RangeRecorder: MMUNotifier {
        var starts: [(mm: MMID, start: UInt64, end: UInt64)] = []
        func invalidateRangeStart(mm: MMID, start: UInt64, end: UInt64) { starts.append((mm, start, end)) }
    }

    @Test func tryToMigrateOnASharedPMDTableUnsharesWithTheWidenedRange() throws {
        let gib: UInt64 = 0x1000_8000_0000
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100080000000 262144 rw hugetlb-shared noreserve\nP0 write 0x100080000000\nP1 = fork P0\nP1 read 0x100080200000")
        let rec = RangeRecorder()
        m.register(rec, for: "P0")
        m.register(rec, for: "P1")
        #expect(try run(m, "P0 unmap 0x100080000000 512 migration") == ["ok"])
        // P0's VMA first: its shared table only unshared; P1's entry becomes
        // the migration entry; both over the whole GiB.
        #expect(rec.starts.count == 2)
        #expect(rec.starts.allSatisfy { $0.start == gib && $0.end == gib + Kernel.pudSize })
        #expect(rec.starts.map(\.mm) == [m.mm("P0"), m.mm("P1")])
        #expect(m.tokens("P0", gib, 1) == "-" && m.tokens("P1", gib, 1) == "M*")
        // The entry keeps the mapping's reference; the page cache keeps its own.
        let f = m.k.vmFile(m.vmaAt("P1", gib))
        let h = PTE.pfn(m.k.hugetlbEntry(f, 0)!.pointee)
        #expect(m.k.folioMapcount(h) == 0 && m.k.page(h).pointee.refcount == 2)
        // The parent's fault shares P1's table again and meets the entry: it is restored.
        #expect(try run(m, "P0 read 0x100080000000") == ["ok"])
        #expect(m.tokens("P0", gib, 1) == "T1+0:1*" && m.tokens("P1", gib, 1) == "T1+0:1*")
    }

    @Test func forkMakesAWriteEntryReadOnBothSidesAndDropsSoftDirty() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000\nP0 unmap 0x100000000000 512 migration")
        let pmd = m.k.pmdSlot(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.a)!
        #expect(PTE.swpType(pmd.pointee) == PTE.swpMigrationWrite)
        pmd.pointee |= PTE.swpSoftDirty  // as if the huge pte had been soft-dirty
        _ = try run(m, "P1 = fork P0")
        let cpmd = m.k.pmdSlot(root: m.k.mm(m.mm("P1")).pointee.pgd, key: Self.a)!
        #expect(PTE.swpType(pmd.pointee) == PTE.swpMigrationRead && cpmd.pointee == pmd.pointee)
        #expect(pmd.pointee & PTE.swpSoftDirty == 0)
        // Two entries, two references; no mapping.
        let h = PTE.swpOffsetPFN(pmd.pointee)
        #expect(m.k.page(h).pointee.refcount == 2 && m.k.folioMapcount(h) == 0)
        // Exit drops both (zap: huge_pte_clear), the folio goes back to the pool.
        _ = try run(m, "P1 exit\nP0 exit")
        #expect(m.k.page(h).pointee.refcount == 0 && m.hugetlbPool == (2, 2, 0, 0))
    }

    @Test func mlockPassesHugetlbVMAsOverButFaultsThemIn() throws {
        let m = try Machine()
        // A hugetlb VMA followed by an ordinary one, one mlock over both.
        _ = try run(m, "hugetlb 1\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 mmap 0x100000200000 4 rw anon-private")
        #expect(try run(m, "P0 mlock 0x100000001000 514") == ["ok"])
        let hv = m.vmaAt("P0", Self.a), av = m.vmaAt("P0", Self.a + 0x200000)
        let h = head(m, "P0", Self.a)
        // The hugetlb VMA: whole, not VM_LOCKED, not counted; its page faulted in by a write, never mlocked.
        #expect(m.k.vma(hv).pointee.vm_start == Self.a && m.k.vma(hv).pointee.vm_flags & VM.locked == 0)
        #expect(m.k.page(h).pointee.flags & (PG.mlocked | PG.unevictable) == 0)
        #expect(m.tokens("P0", Self.a, 1) == "T1+0:1*" && m.hugetlbPool == (1, 0, 0, 0))
        // The ordinary VMA: locked and counted (3 pages, split at the end).
        #expect(m.k.vma(av).pointee.vm_flags & VM.locked != 0)
        #expect(m.k.mm(m.mm("P0")).pointee.locked_vm == 3)
        #expect(try run(m, "P0 munlock 0x100000000000 516") == ["ok"])
        #expect(m.k.mm(m.mm("P0")).pointee.locked_vm == 0 && m.tokens("P0", Self.a, 1) == "T1+0:1*")
    }

    @Test func mkcleanWriteProtectsASharedHugeEntryAndExclusiveStaysRefused() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 1\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-shared\nP0 write 0x100000000000")
        let pmd = m.k.pmdSlot(root: m.k.mm(m.mm("P0")).pointee.pgd, key: Self.a)!
        #expect(PTE.isWrite(pmd.pointee) && PTE.isDirty(pmd.pointee))
        #expect(try run(m, "P0 mkclean 0x100000000000") == ["cleaned=1"])
        #expect(PTE.isPMDLeaf(pmd.pointee) && !PTE.isWrite(pmd.pointee) && !PTE.isDirty(pmd.pointee))
        for verb in ["exclusive"] {
            let out = m.replay(try TraceParser.parse("P0 \(verb) 0x100000000000", file: "h.trace", continuing: m.traceContext))
            #expect(out.error == "h.trace:1: error: large pages are not modelled yet: P0 \(verb) (\(verb) of a hugetlb page)")
        }
    }
}
