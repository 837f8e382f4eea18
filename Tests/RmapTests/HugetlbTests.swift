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

    func run(_ m: Machine, _ text: String) throws -> [String] {
        let out = m.replay(try TraceParser.parse(text, file: "h.trace", continuing: m.traceContext))
        #expect(out.error == nil && out.failures.isEmpty, "\(out.error ?? "") \(out.failures)")
        #expect(m.checkViolations() == [], "\(text)")
        return out.results.map(\.1)
    }

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
        // The rest of the reverse statements are refused by name.
        let out = m.replay(try TraceParser.parse("P0 migrate 0x100000000000", file: "h.trace", continuing: m.traceContext))
        #expect(out.error == "h.trace:1: error: large pages are not modelled yet: P0 migrate (migrate of a hugetlb page)")
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
