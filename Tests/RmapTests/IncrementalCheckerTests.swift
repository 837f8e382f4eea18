import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
import RmapTestSupport

/// The incremental checker (`Machine.checksIncrementally`, what `rmap
/// replay --check` runs: Checker/Checker+Incremental.swift) gives the full
/// checker's violations, in the same order, after every statement: over the
/// corpus, over random traces, and after defects planted through the
/// model's own page-table accessor or behind its back (a VMA changed with
/// its page tables untouched).
@Suite struct IncrementalCheckerTests {
    /// Replays `trace` on `m`, comparing the incremental and the full check
    /// after every statement; returns the differences found.
    func verifiedReplay(_ m: Machine, _ trace: Trace) -> [String] {
        m.checksIncrementally = true
        var mismatches: [String] = []
        _ = m.replay(trace) { tl in
            let (_, mismatch) = m.checkViolationsVerified()
            if m.liveMMs != m.processOrder.compactMap({ m.mmOf($0) }), mismatches.count < 5 {
                mismatches.append("\(trace.file):\(tl.line): liveMMs \(m.liveMMs) kept wrong")
            }
            if let mismatch, mismatches.count < 5 { mismatches.append("\(trace.file):\(tl.line): \(mismatch)") }
        }
        return mismatches
    }

    @Test(arguments: corpusTraces())
    func corpusTraceChecksTheSameIncrementally(_ url: URL) throws {
        var config = ArenaConfig.default
        if url.path.contains("/kernel-hugetlb-leak/") { config.hugetlbResvMode = .fixed }
        let m = try Machine(config: config)
        let trace = try TraceParser.parse(String(contentsOf: url, encoding: .utf8), file: url.lastPathComponent)
        #expect(verifiedReplay(m, trace) == [])
    }

    @Test(arguments: 0..<12)
    func randomTraceChecksTheSameIncrementally(_ seed: Int) throws {
        var g = TraceGenerator(seed: UInt64(seed) &* 0x9e37_79b9 &+ 17)
        if seed >= 4 { g.large = true }
        if seed >= 8 { g.hugetlb = true }
        let text = g.generate(statements: 150)
        let m = try Machine()
        let trace = try TraceParser.parse(text, file: "gen\(seed).trace")
        #expect(verifiedReplay(m, trace) == [])
    }

    /// Every kind of violation the checker knows, planted after a first
    /// (clean) incremental check: the next incremental check finds it, and
    /// says what a full check says.
    @Test(arguments: CheckerViolation.Kind.allCases)
    func everyKindIsCaughtIncrementally(_ kind: CheckerViolation.Kind) throws {
        let fixture = CheckerTests()
        let m = try fixture.fixture()
        m.checksIncrementally = true
        #expect(m.checkViolations() == [])
        #expect(m.checkViolations() == [])
        try fixture.plant(kind, in: m)
        let (v, mismatch) = m.checkViolationsVerified()
        #expect(mismatch == nil)
        #expect(v.contains { $0.kind == kind }, "\(kind): \(v)")
    }

    static let twoProcesses = """
        proc P
        P mmap 0x100000000000 16 rw anon-private => ok
        P write 0x100000000000 16 => ok
        C = fork P => ok
        """

    /// A PTE written through the model's accessor (`Kernel.ptPage`) in a
    /// gap of a table the last check found clean.
    @Test func aPTEWrittenOutsideAVMAAfterACheckIsCaught() throws {
        let (m, out) = try machine(Self.twoProcesses)
        #expect(out.failures == [])
        m.checksIncrementally = true
        #expect(m.checkViolations() == [] && m.checkViolations() == [])
        #expect(m.checkerMemo!.rescanned == 0)  // nothing reached since: all replayed
        let k = m.k
        let first = k.leafSlot(root: k.mm(m.mm("C")).pointee.pgd, key: 0x100000000000)!.pointee
        let gap = k.leafSlot(root: k.mm(m.mm("C")).pointee.pgd, key: 0x100000000000 + 20 * 4096)!
        #expect(gap.pointee == 0)
        gap.pointee = first & ~PTE.rw
        let (v, mismatch) = m.checkViolationsVerified()
        #expect(mismatch == nil)
        #expect(v.contains { $0.kind == .pteOutsideVMA && $0.message == "mm \(m.mm("C")): PTE at 0x100000014000 outside every VMA" }, "\(v)")
        #expect(m.checkerMemo!.rescanned == 1)  // C only
    }

    /// A VMA moved in its mm without its PTEs (the tables untouched, the
    /// VMA ranges changed): the PTEs left behind are outside every VMA.
    @Test func aVMAMovedWithoutZapIsCaught() throws {
        let (m, out) = try machine(Self.twoProcesses)
        #expect(out.failures == [])
        m.checksIncrementally = true
        #expect(m.checkViolations() == [] && m.checkViolations() == [])
        let v = m.vmaAt("C", 0x100000000000).rawValue
        let marks = Array(UnsafeBufferPointer(start: m.k.ptDirty, count: 64))
        m.k.vma(VMAID(v)).pointee.vm_start += 0x100000
        m.k.vma(VMAID(v)).pointee.vm_end += 0x100000
        #expect(Array(UnsafeBufferPointer(start: m.k.ptDirty, count: 64)) == marks)  // no table reached
        let (found, mismatch) = m.checkViolationsVerified()
        #expect(mismatch == nil)
        #expect(found.contains { $0.kind == .pteOutsideVMA && $0.object == .mm(m.mm("C")) }, "\(found)")
    }

    static let sharedGiB: UInt64 = 0x1000_8000_0000

    /// A PMD table two mms share (huge_pmd_share), written through one of
    /// them; and a second PUD entry of that mm naming it.
    @Test func aSharedHugetlbPMDTableWrittenFromOneMMIsCaught() throws {
        let (m, out) = try machine(HugetlbTests.shared)
        #expect(out.failures == [] && out.error == nil)
        let k = m.k
        let table = k.pmdTable(root: k.mm(m.mm("P0")).pointee.pgd, key: Self.sharedGiB)
        #expect(table != 0 && table == k.pmdTable(root: k.mm(m.mm("P1")).pointee.pgd, key: Self.sharedGiB))
        m.checksIncrementally = true
        #expect(m.checkViolations() == [] && m.checkViolations() == [])
        // Through P0: the first huge page mapped a second time in the shared table.
        let slot = k.pmdSlot(root: k.mm(m.mm("P0")).pointee.pgd, key: Self.sharedGiB + 0x400000)!
        #expect(slot.pointee == 0)
        slot.pointee = k.pmdSlot(root: k.mm(m.mm("P0")).pointee.pgd, key: Self.sharedGiB)!.pointee
        var (v, mismatch) = m.checkViolationsVerified()
        #expect(mismatch == nil)
        #expect(v.contains { $0.kind == .hugetlbFolio }, "\(v)")
        slot.pointee = 0
        (v, mismatch) = m.checkViolationsVerified()
        #expect(mismatch == nil && v == [], "\(v)")
        // Through P0's PUD: the shared table named at the next GiB too.
        let pgd = k.ptPage(k.mm(m.mm("P0")).pointee.pgd)
        let pud = k.ptPage(PTE.tablePage(pgd[Kernel.index(Self.sharedGiB, level: 4)]))
        let i3 = Kernel.index(Self.sharedGiB, level: 3)
        #expect(pud[i3 + 1] == 0)
        pud[i3 + 1] = pud[i3]
        (v, mismatch) = m.checkViolationsVerified()
        #expect(mismatch == nil)
        #expect(v.contains { $0.kind == .hugetlbPMDShare }, "\(v)")
        #expect(v.contains { $0.kind == .pteOutsideVMA }, "\(v)")
    }

    /// Saved state reopened: a fresh machine, a full first check.
    @Test func aFreshMachineChecksInFull() throws {
        let (m, _) = try machine(Self.twoProcesses)
        #expect(!m.checksIncrementally)
        m.checksIncrementally = true
        #expect(m.checkViolations() == [])
        #expect(m.checkerMemo!.rescanned == 2)
        m.checksIncrementally = false
        #expect(m.checkerMemo == nil)
        // Off, the model marks nothing (a load and a branch per ptPage).
        let n = Int(m.k.desc(T.ptPage).pointee.bump)
        m.k.ptDirty.update(repeating: 0, count: n)
        let out = m.replay(try TraceParser.parse("D = fork P => ok\nD write 0x100000000000 => ok", file: "off.trace", continuing: m.traceContext))
        #expect(out.failures == [] && out.error == nil)
        #expect(Array(UnsafeBufferPointer(start: m.k.ptDirty, count: n + 8)).allSatisfy { $0 == 0 })
        // On again: the next check is full.
        m.checksIncrementally = true
        #expect(m.checkViolations() == [] && m.checkerMemo!.rescanned == 3)
    }
}
