import Testing
import RmapTestSupport
import CShims
@testable import Rmap
@testable import RmapTrace

/// `poison ADDR PAGES` over several huge pages steps as 6.18's
/// madvise_inject_error() does: `start += page_size(compound_head(page))`
/// from ADDR as given (not rounded down to the huge page), and the first
/// memory_failure() that fails ends the call (`if (ret) return ret;`): the
/// huge pages after it are not poisoned.
@Suite struct HugetlbPoisonRangeTests {
    static let a: UInt64 = 0x1000_0000_0000
    static let b: UInt64 = 0x1000_0020_0000  // the second huge page

    /// From 4 KiB into the first huge page, 512 pages end 4 KiB into the
    /// second: the next step (ADDR + 2 MiB) is at the end, so the second huge
    /// page is not poisoned (it stays mapped and in the pool).
    @Test func anUnalignedRangeStepsFromItsOwnStart() throws {
        let (m, run) = try HugetlbPoisonTests.machine("hugetlb 3\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\n"
            + "P0 write 0x100000000000 1024")
        #expect(m.hugetlbPool == (3, 1, 0, 0))
        #expect(try run("P0 poison 0x100000001000 512") == ["ok"])
        #expect(m.tokens("P0", Self.a, 1) == "H*")
        #expect(m.tokens("P0", Self.b, 1) != "H*")
        #expect(!m.k.mappedPage(m.mm("P0"), Self.b).isNone)
        #expect(m.hugetlbPool == (2, 1, 0, 0))  // one folio dissolved, not two
        #expect(m.checkViolations() == [])
    }

    /// The first huge page's memory_failure is EBUSY (its freed folio
    /// restores a reservation: available_huge_pages 0, no dissolve); the
    /// second huge page, shared by the parent, is left as it was.
    @Test func theFirstFailureEndsTheCall() throws {
        let (m, run) = try HugetlbPoisonTests.machine("hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\n"
            + "P0 write 0x100000000000 1024\nP1 = fork P0\nP0 madvise 0x100000000000 512 dontneed")
        #expect(try run("P1 poison 0x100000000000 1024") == ["EBUSY"])
        #expect(m.tokens("P1", Self.a, 1) == "H*")
        #expect(m.tokens("P1", Self.b, 1) != "H*" && m.tokens("P0", Self.b, 1) != "H*")
        let second = m.k.mappedPage(m.mm("P0"), Self.b)
        #expect(!second.isNone && m.k.page(m.k.folioOf(second)).pointee.flags & PG.hwpoison == 0)
        #expect(m.checkViolations() == [])
    }

    /// An address of a hugetlb mapping with no page yet: get_user_pages_fast()
    /// falls back to a read fault, which takes a page from the pool
    /// (hugetlb_no_page, consuming the reservation), and that page is
    /// poisoned and, anonymous, dissolved. With the pool empty the fault is
    /// VM_FAULT_SIGBUS: EFAULT, and nothing changes.
    @Test func anAddressWithNoPageYetIsFaultedInThenPoisoned() throws {
        let (m, run) = try HugetlbPoisonTests.machine("hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private\n"
            + "P0 write 0x100000000000 512")
        #expect(m.hugetlbPool == (2, 1, 1, 0))
        #expect(try run("P0 poison 0x100000200000 1") == ["ok"])
        #expect(m.tokens("P0", Self.b, 1) == "H*")
        #expect(m.hugetlbPool == (1, 0, 0, 0))  // faulted in (the reservation used), then dissolved
        #expect(m.checkViolations() == [])

        let (m2, run2) = try HugetlbPoisonTests.machine("hugetlb 1\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private noreserve\n"
            + "P0 write 0x100000000000 512")
        #expect(m2.hugetlbPool == (1, 0, 0, 0))
        #expect(try run2("P0 poison 0x100000200000 1") == ["EFAULT"])
        #expect(m2.tokens("P0", Self.b, 1) != "H*")
        #expect(m2.hugetlbPool == (1, 0, 0, 0))
        #expect(m2.checkViolations() == [])
    }
}
