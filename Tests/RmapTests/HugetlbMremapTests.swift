import Testing
import Foundation
@testable import Rmap
import RmapTrace
import RmapTools
import RmapTestSupport
import CShims

/// mremap of hugetlb mappings and the reservations it keeps (issue 20):
/// 6.18's orphan reservation, the `fixed` history mode, the checker's
/// hugetlbOrphanReservation, and the mode kept by saved states.
@Suite struct HugetlbMremapTests {
    /// The replay outcome and the checker's kinds after each statement.
    func replay(_ m: Machine, _ text: String) throws -> (out: ReplayOutcome, kinds: [Set<CheckerViolation.Kind>]) {
        var kinds: [Set<CheckerViolation.Kind>] = []
        let out = m.replay(try TraceParser.parse(text, file: "m.trace", continuing: m.traceContext)) { _ in
            kinds.append(Set(m.checkViolations().map(\.kind)))
        }
        #expect(out.error == nil && out.failures.isEmpty, "\(out.error ?? "") \(out.failures)")
        return (out, kinds)
    }

    func machine(_ mode: HugetlbResvMode) throws -> Machine {
        var c = ArenaConfig.default
        c.hugetlbResvMode = mode
        let m = try Machine(config: c)
        #expect(m.hugetlbResvMode == mode)
        return m
    }

    /// The issue's reproducer: 2 huge pages, the second moved, both unmapped.
    static let leak = """
        hugetlb 4
        proc P0
        P0 mmap 0x100000000000 1024 rw hugetlb-private => ok
        P0 mremap 0x100000200000 512 512 0x100040000000 => ok
        P0 munmap 0x100000000000 512 => ok
        P0 munmap 0x100040000000 512 => ok
        P0 exit
        """

    @Test func sixEighteenOrphansTheReservationOfThePartLeftBehind() throws {
        let m = try machine(.v6_18)
        let (_, kinds) = try replay(m, Self.leak)
        #expect(m.hugetlbPool == (4, 4, 1, 0))
        // Sound until the mremap; from it on, one orphan reservation, and nothing else.
        #expect(kinds[0..<3].allSatisfy { $0.isEmpty }, "\(kinds)")
        #expect(kinds[3...].allSatisfy { $0 == [.hugetlbOrphanReservation] }, "\(kinds)")
        let v = m.checkViolations()
        #expect(v.count == 1 && v[0].message.contains("1 orphan reservation") && v[0].message.contains("pool: total 4, free 4, reserved 1, surplus 0"), "\(v)")
    }

    @Test func fixedKeepsTheReservationWithThePartLeftBehind() throws {
        let m = try machine(.fixed)
        let (_, kinds) = try replay(m, Self.leak)
        #expect(m.hugetlbPool == (4, 4, 0, 0))
        #expect(kinds.allSatisfy { $0.isEmpty }, "\(kinds)")
    }

    @Test func theFaultOfThePartLeftBehindUsesItsReservationOnlyInFixed() throws {
        // Three huge pages, the middle one moved: in 6.18 the two parts left
        // behind no longer own theirs (a fault there takes a page no
        // reservation holds); in fixed both keep them.
        let text = """
            hugetlb 4
            proc P0
            P0 mmap 0x100000000000 1536 rw hugetlb-private => ok
            P0 mremap 0x100000200000 512 512 0x100040000000 => ok
            P0 write 0x100000400000 => ok
            """
        let a = try machine(.v6_18)
        _ = try replay(a, text)
        #expect(a.hugetlbPool == (4, 3, 3, 0))  // 3 reserved still: 2 orphans and the moved page's
        let b = try machine(.fixed)
        let (_, kinds) = try replay(b, text)
        #expect(b.hugetlbPool == (4, 3, 2, 0))
        #expect(kinds.allSatisfy { $0.isEmpty }, "\(kinds)")
        _ = try replay(b, "P0 exit")
        #expect(b.hugetlbPool == (4, 4, 0, 0) && b.checkViolations() == [])
    }

    @Test func movedPagesKeepTheirContentsAndTheOldRangeIsGone() throws {
        for mode in HugetlbResvMode.allCases {
            let m = try machine(mode)
            let (out, _) = try replay(m, """
                hugetlb 2
                proc P0
                P0 mmap 0x100000000000 1024 rw hugetlb-private
                P0 write 0x100000200000 value=9
                P0 mremap 0x100000200000 512 512 0x100040000000
                observe contents P0 0x100040000000 1
                P0 read 0x100000200000
                """)
            #expect(out.observations.first?.tokens == ["v9"])
            #expect(out.results.last?.result == "SIGSEGV")
        }
    }

    @Test func savedStatesKeepTheMode() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hugetlb-resv-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for mode in HugetlbResvMode.allCases {
            let m = try machine(mode)
            _ = try replay(m, "hugetlb 2\nproc P0\nP0 mmap 0x100000000000 1024 rw hugetlb-private")
            let path = dir.appendingPathComponent("\(mode.name).arena").path
            #expect(m.save(to: path) == nil)
            let r = try Machine(opening: path)
            #expect(r.hugetlbResvMode == mode)
            // The loaded state runs the rest of the trace in its own mode.
            _ = try replay(r, "P0 mremap 0x100000200000 512 512 0x100040000000\nP0 exit")
            #expect(r.hugetlbPool.reserved == (mode == .fixed ? 0 : 1))
        }
    }

    @Test func theModesHaveTheirCommandLineNames() {
        #expect(HugetlbResvMode.named("6.18") == .v6_18 && HugetlbResvMode.named("fixed") == .fixed)
        #expect(HugetlbResvMode.named("6.17") == nil)
    }
}

/// The random traces draw hugetlb mremap only for the fuzzer (model-only):
/// the oracle's `--large --hugetlb` traces must never leak on the kernel.
@Suite struct HugetlbMremapGeneratorTests {
    func hugetlbMremaps(_ seed: UInt64, _ on: Bool) -> Int {
        var g = TraceGenerator(seed: seed, kernelOnly: false)
        g.large = true
        g.hugetlb = true
        g.hugetlbMremap = on
        return g.generate(statements: 300).split(separator: "\n").filter { $0.contains(" mremap 0x1000400") }.count
    }

    @Test func onlyTheFuzzerDrawsThem() {
        #expect((1...20).map { hugetlbMremaps($0, false) }.reduce(0, +) == 0)
        #expect((1...20).map { hugetlbMremaps($0, true) }.reduce(0, +) > 0)
    }
}

/// The kernel trace of the leak (Tests/Corpus/kernel-hugetlb-leak, run on
/// the kernel only by `make hugetlb-leak`): on the model, in 6.18, the
/// observation the kernel gives and the orphan reservation; in fixed, none.
@Suite struct HugetlbLeakCorpusTests {
    @Test func theLeakTraceLeaksIn618AndNotInFixed() throws {
        let url = try #require(corpusTraces("kernel-hugetlb-leak").first)
        for mode in HugetlbResvMode.allCases {
            var c = ArenaConfig.default
            c.hugetlbResvMode = mode
            let s = replayFile(path: url.path, config: c, check: true, observations: true)
            let last = try #require(s.stdout?.components(separatedBy: "[[").last)
            let resv = mode == .fixed ? 0 : 1
            #expect(last.contains("\"total=4\",\"free=4\",\"resv=\(resv)\",\"surplus=0\""), "\(mode): \(s.stdout ?? "")")
            if mode == .fixed {
                #expect(s.stderr.isEmpty && s.status == 0, "\(s.stderr)")
            } else {
                #expect(!s.stderr.isEmpty && s.stderr.allSatisfy { $0.contains("orphan reservation") }, "\(s.stderr)")
            }
        }
    }
}
