import Testing
@testable import RmapTools
import RmapTestSupport

/// `rmap demo` (what `make demo` runs) holds every expectation and invariant
/// of its three parts, and its large-folio trace is the kernel corpus trace
/// the oracle checks (Tests/Corpus/kernel-large/28-demo-large-folios.trace).
@Suite struct DemoTests {
    @Test func theDemoHolds() {
        let (report, ok) = runDemo()
        #expect(ok, "\(report.suffix(2000))")
        #expect(report.contains("== Large folios: THP, the huge zero page, mTHP"))
        #expect(report.contains("large folios of 2 MiB: 1 (1 mapped by a PMD)"))
        #expect(report.contains("large-folio expectations: all held"))
    }

    @Test func theLargeDemoIsTheCorpusTrace() throws {
        let url = corpusTraces("kernel-large").first { $0.lastPathComponent == "28-demo-large-folios.trace" }
        let text = try String(contentsOf: try #require(url), encoding: .utf8)
        #expect(text.trimmingCharacters(in: .newlines) == demoLargeTrace.trimmingCharacters(in: .newlines))
    }
}
