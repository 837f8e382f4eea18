import Testing
@testable import Rmap
import RmapTestSupport

/// The checker's cost is linear in the state it checks (issue 17 item 8:
/// `replay --check` of N forks of one process once cost the cube of N).
/// Measured without a clock: the checker counts the elements it visits
/// (`Checker.work`: mappings, rmap-walk visits, VMAs, AVCs, tree steps,
/// frames, anon_vmas, page-table slots scanned), and the count is bounded by
/// a small multiple of the state's size. One rmap walk per mapping instead
/// of per frame (N walks of N VMAs per shared page), or a scan of every
/// AVC per VMA, makes it grow with the square of N and fails here.
@Suite struct CheckerCostTests {
    /// P maps 16 anonymous pages and 4 pages of a shared file, touches
    /// them all, and forks `n` times: every frame is mapped n + 1 times.
    static func forks(_ n: Int) -> String {
        var t = """
            file F 4
            proc P
            P mmap 0x100000000000 16 rw anon-private => ok
            P write 0x100000000000 16 => ok
            P mmap 0x200000000000 4 rw file-shared:F@0 => ok
            P read 0x200000000000 4 => ok

            """
        for i in 1...n { t += "C\(i) = fork P => ok\n" }
        return t
    }

    struct Cost {
        var work: Int
        /// Mapped PTEs, VMAs, AVCs, anon_vmas, live frames.
        var elements: Int
        var ptPages: Int
    }

    func cost(_ n: Int) throws -> Cost {
        let (m, out) = try machine(Self.forks(n))
        #expect(out.failures == [])
        let c = Checker(k: m.k)
        c.run(mms: m.processOrder.compactMap { m.mmOf($0) })
        #expect(c.violations == [])
        let k = m.k
        let ptes = (n + 1) * (16 + 4)
        let elements = ptes + Int(k.live(T.vma)) + Int(k.live(T.avc)) + Int(k.live(T.anonVMA)) + Int(k.live(T.frame))
        return Cost(work: c.work, elements: elements, ptPages: Int(k.live(T.ptPage)))
    }

    @Test func workIsBoundedByTheStateOnForks() throws {
        for n in [50, 200, 400] {
            let c = try cost(n)
            // Each mapping: its census visit, its place in the walk check
            // and its visit by the frame's walk; each VMA and AVC, a few
            // steps (the AVC's tree membership: log of the sharing); each
            // page-table page at most its 512 slots twice (the gaps between
            // VMAs, the PUD census of the PMD-share rule).
            let bound = 6 * c.elements + 2 * 512 * c.ptPages
            #expect(c.work <= bound, "\(n) forks: \(c.work) elements visited, bound \(bound) (\(c.elements) objects, \(c.ptPages) page-table pages)")
            #expect(c.work >= c.elements, "\(n) forks: \(c.work) elements visited, fewer than the \(c.elements) objects checked")
        }
    }

    /// The incremental checker (what `replay --check` runs) after one more
    /// fork scans the page tables the fork reached (the parent's and the
    /// child's), not every mm's: the page-table slots it reads, and the mms
    /// it scans, are the same after 50 forks as after 400.
    @Test func incrementalWorkAfterAForkIsBoundedByTheChangedTables() throws {
        var slots: [Int] = []
        for n in [50, 400] {
            let (m, out) = try machine(Self.forks(n))
            #expect(out.failures == [])
            m.checksIncrementally = true
            let memo = try #require(m.checkerMemo)
            let first = Checker(k: m.k, memo: memo)
            first.run(mms: m.liveMMs)
            #expect(first.violations == [] && memo.rescanned == n + 1)
            let more = m.replay(try TraceParser.parse("C\(n + 1) = fork P => ok", file: "more.trace", continuing: m.traceContext))
            #expect(more.failures == [] && more.error == nil)
            let c = Checker(k: m.k, memo: memo)
            c.run(mms: m.liveMMs)
            #expect(c.violations == [])
            #expect(memo.rescanned == 2, "\(n) forks: \(memo.rescanned) mms scanned after one fork")
            // Each scanned mm: at most its 4 tables' 512 slots, twice (the gaps, the PUD census).
            #expect(c.tableSlots <= 2 * 4 * 2 * 512, "\(n) forks: \(c.tableSlots) slots")
            #expect(first.tableSlots >= (n + 1) * 512, "\(n) forks, full check: \(first.tableSlots) slots")
            slots.append(c.tableSlots)
        }
        #expect(slots[0] == slots[1], "page-table slots read after one fork: \(slots)")
    }

    /// Doubling the forks doubles the work (a quadratic checker quadruples it).
    @Test func workGrowsLinearlyWithTheForks() throws {
        let a = try cost(200), b = try cost(400)
        let ratio = Double(b.work) / Double(a.work)
        #expect(ratio < 2.2, "work \(a.work) at 200 forks, \(b.work) at 400: ratio \(ratio)")
    }

    /// The gap scan reports what the leaf walk it replaced reported: the
    /// first PTE of each gap, at the gap's start plus whole pages (a VMA
    /// end that is not page-aligned gives an address that is not either).
    @Test func theGapScanReportsAsTheLeafWalkDid() throws {
        let (m, out) = try machine("""
            proc P
            P mmap 0x100000000000 4 rw anon-private => ok
            P write 0x100000000000 4 => ok
            """)
        #expect(out.failures == [])
        let v = m.vmaAt("P", 0x100000000000)
        m.k.vma(v).pointee.vm_end = 0x100000002010  // pages 2 and 3 outside, the gap from 0x...2010
        let outside = m.checkViolations().filter { $0.kind == .pteOutsideVMA }.map(\.message)
        #expect(outside == ["mm \(m.mm("P")): PTE at 0x100000002010 outside every VMA"])
        var walked: [String] = []
        m.k.walkLeaves(root: m.k.mm(m.mm("P")).pointee.pgd, start: 0x100000002010, end: 1 << 47) { addr, slot in
            if slot.pointee != 0 { walked.append("mm \(m.mm("P")): PTE at \(hex(addr)) outside every VMA") }
            return slot.pointee == 0
        }
        #expect(outside == walked)
    }
}
