import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport
import CShims

/// hugetlb on the model (Sources/Rmap/Hugetlb): the pool counters after
/// each step, as mm/hugetlb.c keeps them (HugePages_Total, _Free, _Rsvd,
/// _Surp), saved states with hugetlb pages, and what the validator refuses.
/// The kernel-side behaviour is in Tests/Corpus/kernel-large/15-22, 40-47.
@Suite struct HugetlbTests {
    static let a: UInt64 = 0x1000_0000_0000

    @Test func poolCountersFollowReservationsFaultsAndUnmaps() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 3\nproc P0")
        #expect(m.hugetlbPool == (3, 3, 0, 0))
        // A private mapping reserves every huge page it spans (1025 pages: 3).
        #expect(try run(m, "P0 mmap 0x100000000000 1025 rw hugetlb-private") == ["ok"])
        #expect(m.hugetlbPool == (3, 3, 3, 0))
        // A read fault consumes one reservation: free and reserved go down together.
        #expect(try run(m, "P0 read 0x100000200000") == ["ok"])
        #expect(m.hugetlbPool == (3, 2, 2, 0))
        // munmap of the faulted page: restored at zap, freed (resv + 1), given back at close (resv - 1).
        #expect(try run(m, "P0 munmap 0x100000200000 512") == ["ok"])
        #expect(m.hugetlbPool == (3, 3, 2, 0))
        // The rest goes at exit; nothing is left reserved.
        #expect(try run(m, "P0 write 0x100000000000\nP0 exit") == ["ok", "ok"])
        #expect(m.hugetlbPool == (3, 3, 0, 0))
    }

    @Test func aSharedFileKeepsItsPagesAndReservationsUntilItsLastMapping() throws {
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-shared\nP0 write 0x100000000000\nP1 = fork P0")
        #expect(m.hugetlbPool == (2, 1, 1, 0))
        // The parent's exit keeps the file (the child's VMA holds it): page and reservation stay.
        _ = try run(m, "P0 exit")
        #expect(m.hugetlbPool == (2, 1, 1, 0))
        #expect(m.tokens("P1", Self.a, 1) == "-")
        #expect(try run(m, "P1 read 0x100000000000") == ["ok"])
        #expect(m.tokens("P1", Self.a, 1) == "T1+0:1*")
        // The last mapping goes: hugetlbfs_evict_inode frees the page and the unused region.
        _ = try run(m, "P1 exit")
        #expect(m.hugetlbPool == (2, 2, 0, 0))
    }

    @Test func theOwnersExitLeavesTheCountOneShortUntilTheChildsPageIsFreed() throws {
        // The kernel's transient (kernel-large/47): resv_huge_pages below the maps, read signed.
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\nP0 write 0x100000000000\nP1 = fork P0\nP0 exit")
        #expect(m.hugetlbPool == (2, 1, -1, 0))
        _ = try run(m, "P1 exit")
        #expect(m.hugetlbPool == (2, 2, 0, 0))
    }

    @Test func referencedWalksEveryMappingOfTheFolioOnce() throws {
        // folio_referenced(): each entry tested and cleared young, once per folio.
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000\nP0 mmap 0x100000400000 512 rw hugetlb-shared\nP0 write 0x100000400000\nP1 = fork P0")
        #expect(try run(m, "P0 referenced 0x100000000000 512") == ["referenced=2"])
        #expect(try run(m, "P1 referenced 0x100000000000 3") == ["referenced=0"])
        #expect(try run(m, "P1 read 0x100000001000\nP0 referenced 0x100000000000") == ["ok", "referenced=1"])
        // A shared page: found through the hugetlbfs file's i_mmap.
        #expect(try run(m, "P1 read 0x100000400000") == ["ok"])
        #expect(m.tokens("P1", 0x1000_0040_0000, 1) == "T1+0:2*")
        #expect(try run(m, "P1 referenced 0x100000400000\nP1 referenced 0x100000400000") == ["referenced=2", "referenced=0"])
        // A page of the range without a folio: EFAULT.
        #expect(try run(m, "P1 referenced 0x1000001ff000 2") == ["EFAULT"])
        // `exclusive` is refused by name.
        let out = m.replay(try TraceParser.parse("P0 exclusive 0x100000000000", file: "h.trace", continuing: m.traceContext))
        #expect(out.error == "h.trace:1: error: large pages are not modelled yet: P0 exclusive (exclusive of a hugetlb page)")
    }

    /// Records the notifier ranges (mmu_notifier_invalidate_range_start).
    final class RangeRecorder: MMUNotifier {
        var starts: [(mm: MMID, start: UInt64, end: UInt64)] = []
        func invalidateRangeStart(mm: MMID, start: UInt64, end: UInt64) { starts.append((mm, start, end)) }
    }

    static let gib: UInt64 = 0x1000_8000_0000
    static let shared = """
        hugetlb 2
        proc P0
        P0 mmap 0x100080000000 262144 rw hugetlb-shared noreserve
        P0 write 0x100080000000
        P1 = fork P0
        P1 read 0x100080200000
        """

    func pmdTable(_ m: Machine, _ p: String) -> UInt32 {
        m.k.pmdTable(root: m.k.mm(m.mm(p)).pointee.pgd, key: Self.gib)
    }

    @Test func aWholeSharedGiBSharesItsPMDTableAndSplittingUnsharesIt() throws {
        let m = try Machine()
        _ = try run(m, Self.shared)
        // huge_pmd_share: one table, two PUD entries, share count 1; each page mapped once.
        #expect(pmdTable(m, "P0") == pmdTable(m, "P1") && pmdTable(m, "P0") != 0)
        #expect(m.k.pmdShareCount(pmdTable(m, "P0")) == 1)
        #expect(m.tokens("P0", Self.gib, 1) == "T1+0:1*" && m.tokens("P0", Self.gib + 0x200000, 1) == "T1+0:1*")
        // A VMA that covers no whole GiB never shares (want_pmd_share).
        _ = try run(m, "P1 munmap 0x100080200000 512")
        #expect(m.k.pmdShareCount(pmdTable(m, "P0")) == 0 && pmdTable(m, "P1") == 0)
        _ = try run(m, "P1 read 0x100080000000")
        #expect(pmdTable(m, "P1") != pmdTable(m, "P0") && m.tokens("P1", Self.gib, 1) == "T1+0:2*")
        // A private mapping of a whole GiB never shares either.
        let p = try Machine()
        _ = try run(p, "hugetlb 2\nproc P0\nP0 mmap 0x100080000000 262144 rw hugetlb-private noreserve\nP0 write 0x100080000000\nP1 = fork P0\nP1 read 0x100080200000")
        #expect(pmdTable(p, "P0") != pmdTable(p, "P1") && p.k.pmdShareCount(pmdTable(p, "P0")) == 0)
    }

    @Test func unmapOnASharedPMDTableUnsharesWithTheWidenedRange() throws {
        let m = try Machine()
        _ = try run(m, Self.shared)
        let rec = RangeRecorder()
        m.register(rec, for: "P0")
        m.register(rec, for: "P1")
        let flushes = m.tlbFlushes
        #expect(try run(m, "P0 unmap 0x100080000000 512") == ["ok"])
        // The PageHuge branch: P0's VMA first (i_mmap order); its range is
        // widened to the whole GiB, its shared table only unshared; then
        // P1's entry is cleared, over the same widened range.
        let p0 = m.mm("P0"), p1 = m.mm("P1")
        #expect(rec.starts.count == 2)
        #expect(rec.starts.first.map { $0.mm == p0 && $0.start == Self.gib && $0.end == Self.gib + Kernel.pudSize } == true)
        #expect(rec.starts.last.map { $0.mm == p1 && $0.start == Self.gib && $0.end == Self.gib + Kernel.pudSize } == true)
        // One flush for the unshare (tlb_unshare_pmd_ptdesc), one for the cleared entry.
        #expect(m.tlbFlushes - flushes == 2)
        #expect(pmdTable(m, "P0") == 0 && m.k.pmdShareCount(pmdTable(m, "P1")) == 0)
        #expect(m.tokens("P0", Self.gib, 1) == "-" && m.tokens("P1", Self.gib, 1) == "-")
        #expect(m.tokens("P1", Self.gib + 0x200000, 1) == "T1+0:1*")
        // An anonymous hugetlb page: refused as the kernel's VM_BUG_ON (EINVAL).
        let a = try Machine()
        _ = try run(a, "hugetlb 1\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000")
        #expect(try run(a, "P0 unmap 0x100000000000") == ["EINVAL"])
        #expect(a.tokens("P0", Self.a, 1) == "T1+0:1*")
    }

    @Test func aPoolTheArenaCannotHoldIsRefusedAndChangesNothing() throws {
        let m = try Machine(config: .tiny)
        let out = m.replay(try TraceParser.parse("hugetlb 64\nproc P0", file: "h.trace"))
        #expect(out.error == "h.trace:1: error: hugetlb 64: this arena's frames cannot hold the pool")
        #expect(m.hugetlbPool == (0, 0, 0, 0) && m.checkViolations() == [])
        #expect(m.setHugetlbPool(pages: 64) == .errno(.ENOMEM))
    }

    @Test func theStateReopensAndRunsOn() throws {
        let path = NSTemporaryDirectory() + "rmap-\(getpid())-hugetlb.arena"
        defer { unlink(path) }
        let m = try Machine()
        _ = try run(m, "hugetlb 3\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\nP0 write 0x100000000000\nP1 = fork P0\nP0 mmap 0x100000400000 512 rw hugetlb-shared\nP0 write 0x100000400000")
        #expect(m.save(to: path) == nil)
        let r = try Machine(opening: path)
        #expect(r.hugetlbPool == m.hugetlbPool && r.checkViolations() == [])
        // The owner's reservation survived: its second page faults; the child's COW then has no page.
        #expect(try run(r, "P0 read 0x100000200000\nP1 write 0x100000000000") == ["ok", "SIGBUS"])
        #expect(r.tokens("P0", Self.a, 1) == "T1+0:2*")
    }

    @Test func aDamagedPoolIsRejected() throws {
        let path = NSTemporaryDirectory() + "rmap-\(getpid())-hugetlb-bad.arena"
        defer { unlink(path) }
        let m = try Machine()
        _ = try run(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 512 rw hugetlb-private\nP0 write 0x100000000000")
        // Each damage, alone, is refused at load (never a crash).
        let damages: [(String, (Kernel) -> Void)] = [
            ("hugetlb free list broken", { k in k.page(PFN(k.header.pointee.hugetlb_free_head)).pointee.next = k.header.pointee.hugetlb_free_head }),
            ("hugetlb pool counters out of range", { k in k.header.pointee.free_huge_pages += 1 }),
            ("hugetlb flags, file or alignment wrong", { k in k.vma(VMAID(1)).pointee.vm_start += 0x1000 }),
        ]
        for (message, damage) in damages {
            let c = try Machine(opening: { () -> String in _ = m.save(to: path); return path }(), privately: false)
            damage(c.k)
            _ = c.save(to: path + ".2")
            defer { unlink(path + ".2") }
            do {
                _ = try Machine(opening: path + ".2")
                Issue.record("\(message): accepted")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}
