import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// Every trace of the corpus replays on the model with every expectation
/// holding and the invariant checker clean after every statement.
@Suite struct CorpusTests {
    /// The parameterised tests over these directories run nothing, and
    /// pass, when a directory is empty or moved: each must hold its traces.
    @Test func corpusIsNotEmpty() {
        #expect(corpusTraces().count >= 20)
        #expect(corpusTraces("kernel").count >= 40)
        #expect(corpusTraces("model").count >= 5)
        #expect(corpusTraces("fuzz").count >= 1)
        #expect(corpusTraces("kernel-large").count >= 20)
    }

    @Test(arguments: corpusTraces())
    func replaysCleanly(_ url: URL) throws {
        // The leak of issue 20 is a violation in the default 6.18 mode by
        // design (HugetlbMremapTests checks that): cleanly in `fixed`.
        var config = ArenaConfig.default
        if url.path.contains("/kernel-hugetlb-leak/") { config.hugetlbResvMode = .fixed }
        let s = replayFile(path: url.path, config: config, check: true)
        // Every corpus trace runs on the model (hugetlb included), checked
        // after every statement.
        #expect(s.stderr.isEmpty, "\(s.stderr.prefix(10).joined(separator: "\n"))")
        #expect(s.status == 0)
        // A corpus trace must assert something.
        let text = try String(contentsOf: url, encoding: .utf8)
        let trace = try TraceParser.parse(text, file: url.lastPathComponent)
        let asserts = trace.lines.filter {
            switch $0.statement {
            case .expect, .expectContents: return true
            case .op(_, _, let e): return e != nil
            default: return false
            }
        }
        #expect(asserts.count >= 1, "\(url.lastPathComponent) asserts nothing")
    }
}

/// The differential check: the kernel-side corpus gives the same canonical
/// observation on the model as on this machine's kernel. Skipped (and
/// reported skipped) without root or readable PFNs.
@Suite(.enabled(if: canReadPFNs && oraclePath != nil, "needs root, readable PFNs and the rmap-oracle binary"))
struct OracleDifferentialTests {
    @Test(arguments: corpusTraces("kernel") + corpusTraces("kernel-large"))
    func modelAgreesWithKernel(_ url: URL) throws {
        let model = replayFile(path: url.path)
        let kernel = try oracleRun(url.path)
        // The one skip allowed: hugetlb reservations held by others on this
        // machine (a reservation leaked by `make hugetlb-leak` stays until
        // reboot) in the one case the compensate mode cannot keep exact (see
        // oracleRun). Said, not silent; the model's side of the trace is still
        // checked by CorpusTests.replaysCleanly.
        if kernel.status == 77 && kernel.err.contains("hugetlb reservations of others") {
            print("OracleDifferentialTests: \(url.lastPathComponent) skipped: \(kernel.err)")
            return
        }
        #expect(kernel.status != 77, "the oracle skipped a kernel-side trace: \(kernel.err)")
        #expect(model.stdout.map { $0 + "\n" } == kernel.out, "\(url.lastPathComponent)\nmodel:  \(model.stdout ?? "")\nkernel: \(kernel.out)")
        #expect(model.status == kernel.status)
    }

    /// A few fixed random traces (`rmap gen --kernel-only --statements 40 --seed N`)
    /// give the same bytes on the model and on this kernel; `make oracle`
    /// (`rmap oracle-check`) runs many more and minimises any difference.
    @Test(arguments: Array(UInt64(1)...20))
    func randomTraceAgreesWithKernel(_ seed: UInt64) throws {
        try agree(seed: seed, ksm: false)
    }

    /// The same with KSM statements (`rmap gen --kernel-only --ksm
    /// --statements 60 --seed N`): the oracle drives ksmd for `ksm scan`.
    @Test(arguments: Array(UInt64(1)...6))
    func randomKSMTraceAgreesWithKernel(_ seed: UInt64) throws {
        try agree(seed: seed, ksm: true)
    }

    /// Large-folio traces (`rmap gen --large --kernel-only --statements 40
    /// --seed N`): THP and mTHP faults, the huge zero page, COW after fork,
    /// PMD splits, `thp shrink`. The oracle runs them one at a time with the
    /// machine's THP settings set for each; `rmap oracle-check --large` runs many.
    /// Seeds 7, 114, 153 and 174 differed at first (`rmap oracle-check
    /// --large --count 200`): a fork child's fault where the parent left an
    /// empty PTE table (the kernel copies the table), and no large folio in an
    /// mremap-moved anonymous VMA (the kernel checks no pgoff there); both
    /// fixed in the model (kernel-large corpus 29 and 30). Seeds 1718 and
    /// 1829 (`--count 700 --first-seed 1300`): the zero-page remap of a split
    /// must follow the rmap walk's order with mlock, and MADV_DONTNEED over a
    /// PMD's span frees empty PTE tables (CONFIG_PT_RECLAIM); corpus 32, 33.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8, 9, 114, 153, 174, 1718, 1829])
    func randomLargeTraceAgreesWithKernel(_ seed: UInt64) throws {
        try agree(seed: seed, ksm: false, large: true)
    }

    /// Random hugetlb traces (`rmap gen --large --hugetlb --kernel-only
    /// --statements 40 --seed N`): the pool, reservations, faults, COW and the
    /// owner's unmap of a child, fork, mremap, PMD sharing. `rmap oracle-check
    /// --large --hugetlb` runs many (2,000 at 40 and 80 statements, 2026-12-02).
    @Test(arguments: Array(UInt64(1)...6))
    func randomHugetlbTraceAgreesWithKernel(_ seed: UInt64) throws {
        try agree(seed: seed, ksm: false, large: true, hugetlb: true)
    }

    /// The oracle on one trace. On a machine holding hugetlb reservations of
    /// others (the default oracle then says 77), run again with
    /// `--foreign-hugetlb-resv compensate`, exact but for one case it voids
    /// (77 again, docs/oracle.md), so that hugetlb traces are compared there too.
    func oracleRun(_ path: String) throws -> (out: String, err: String, status: Int32) {
        let first = try run(oraclePath!, [path])
        guard first.status == 77 && first.err.contains("hugetlb reservations of others") else { return first }
        return try run(oraclePath!, ["--foreign-hugetlb-resv", "compensate", path])
    }

    func agree(seed: UInt64, ksm: Bool, large: Bool = false, hugetlb: Bool = false) throws {
        var g = TraceGenerator(seed: seed, kernelOnly: true)
        g.ksm = ksm
        g.large = large
        g.hugetlb = hugetlb
        let text = g.generate(statements: ksm ? 60 : 40)
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("rmap-oracle-test-\(getpid())-\(ksm ? "ksm-" : "")\(large ? "large-" : "")\(hugetlb ? "hugetlb-" : "")seed-\(seed).trace")
        try text.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let model = replayFile(path: url.path)
        let kernel = try oracleRun(url.path)
        if hugetlb && kernel.status == 77 && kernel.err.contains("hugetlb reservations of others") {
            print("OracleDifferentialTests: hugetlb seed \(seed) skipped: \(kernel.err)")
            return
        }
        #expect(kernel.status != 77, "the oracle skipped a kernel-only trace: \(kernel.err)")
        #expect(model.stdout.map { $0 + "\n" } == kernel.out,
                "seed \(seed) (rmap gen --kernel-only\(ksm ? " --ksm --statements 60" : "")\(large ? " --large" : "")\(hugetlb ? " --hugetlb" : "") --seed \(seed))\nmodel:  \(model.stdout ?? "")\nkernel: \(kernel.out)")
        #expect(model.status == kernel.status)
    }
}
