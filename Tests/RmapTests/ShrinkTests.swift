import Foundation
import Testing
@testable import RmapTools
import RmapTestSupport

/// The tools' one delta debugging (Shrink.swift), on predicates whose minimal
/// answers are known.
@Suite struct ShrinkTests {
    private static let lines = (0..<40).map { "line \($0)" }

    @Test func keepsExactlyTheLinesTheFailureNeeds() {
        var tested: [[String]] = []
        let needed: Set<String> = ["line 3", "line 17", "line 38"]
        let out = deltaDebug(Self.lines) { c in
            tested.append(c)
            return needed.isSubset(of: c)
        }
        #expect(out == ["line 3", "line 17", "line 38"])
        // Neither the input (the caller saw it fail) nor the empty list is tried.
        #expect(!tested.contains(Self.lines) && !tested.contains([]))
    }

    @Test func theResultIsOneMinimal() {
        // Fails while at least two lines of 5..9 remain, or "line 30" with "line 31":
        // no single line can go from the answer, whichever it is.
        let fails: ([String]) -> Bool = { c in
            c.filter { ["line 5", "line 6", "line 7", "line 8", "line 9"].contains($0) }.count >= 2
                || (c.contains("line 30") && c.contains("line 31"))
        }
        let out = deltaDebug(Self.lines, stillFails: fails)
        #expect(fails(out) && out.count == 2, "\(out)")
        for i in out.indices {
            var fewer = out
            fewer.remove(at: i)
            #expect(!fails(fewer))
        }
    }

    @Test func noiseGoesFirstInOneGo() {
        let withNoise = Self.lines.flatMap { ["# about \($0)", $0, ""] }
        var tested: [[String]] = []
        let out = deltaDebug(withNoise, noise: { $0.isEmpty || $0.hasPrefix("#") }) { c in
            tested.append(c)
            return c.contains("line 20")
        }
        #expect(out == ["line 20"])
        #expect(tested.first == Self.lines)
        // Noise the failure needs stays: the quiet list is only a first try.
        let kept = deltaDebug(withNoise, noise: { $0.hasPrefix("#") }) { $0.contains("# about line 7") && $0.contains("line 9") }
        #expect(kept == ["# about line 7", "line 9"])
    }

    @Test func declarationsStayWhenTheCandidatesMustParse() {
        // As the fuzzer asks: a trace whose processes are not declared does not parse, so does not fail.
        let trace = ["proc P0", "proc P1", "P0 read 1", "P1 read 2", "P1 write 3", "P0 exit"]
        let out = deltaDebug(trace) { c in
            let declared = Set(c.compactMap { $0.hasPrefix("proc ") ? String($0.dropFirst(5)) : nil })
            let parses = c.allSatisfy { $0.hasPrefix("proc ") || declared.contains(String($0.prefix(2))) }
            return parses && c.contains("P1 write 3")
        }
        #expect(out == ["proc P1", "P1 write 3"])
    }

    @Test func stopsAfterMaxTests() {
        var calls = 0
        let out = deltaDebug(Self.lines, maxTests: 5) { c in
            calls += 1
            return c.contains("line 0")
        }
        #expect(calls == 5)
        #expect(out.contains("line 0") && out.count < Self.lines.count)
        // Nothing to take away.
        #expect(deltaDebug(["only"]) { _ in true } == ["only"])
        #expect(deltaDebug([]) { _ in true } == [])
    }

    /// The oracle check's minimiser on a planted difference: a fake "kernel"
    /// (a script) that agrees with the model (`rmap replay --observe`) except on a
    /// trace where P1, forked from P0, writes: the difference is shrunk from a
    /// 30-line trace to the three lines it needs.
    @Test func oracleCheckShrinksAPlantedDifference() throws {
        guard let oracle = oraclePath else {
            Issue.record("rmap-oracle is not built (make test builds it and rmap)")
            return
        }
        let rmap = URL(fileURLWithPath: oracle).deletingLastPathComponent().appendingPathComponent("rmap").path
        guard FileManager.default.isExecutableFile(atPath: rmap) else {
            Issue.record("rmap is not built next to rmap-oracle: swift build --product rmap (make test does)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rmap-shrink-\(UUID().uuidString)")
        let corpus = dir.appendingPathComponent("corpus"), out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: corpus, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fake = dir.appendingPathComponent("fake-oracle").path
        try """
            #!/bin/sh
            if grep -q '^P1 = fork P0$' "$1" && grep -q '^P1 write ' "$1"; then
                echo '{"planted":"difference"}'
                exit 0
            fi
            exec '\(rmap)' replay --observe "$1"

            """.write(toFile: fake, atomically: true, encoding: .utf8)
        _ = chmod(fake, 0o755)
        let A = "0x100000000000"
        let trace = ["# a difference on line 14", "file f1 4", "proc P0", "proc Q", "P0 mmap \(A) 8 rw anon-private",
                     "Q mmap \(A) 4 r file-shared:f1@0", "P0 write \(A) 2", "Q read \(A) 4", "observe Q \(A) 4",
                     "P0 read 0x100000002000 2", "P1 = fork P0", "P2 = fork P1", "P1 read \(A)", "P1 write \(A) 3",
                     "observe P0 \(A) 4, P1 \(A) 4", "P2 write 0x100000004000", "P0 madvise \(A) 2 dontneed",
                     "Q munmap \(A) 1", "P2 exit", "observe P0 \(A) 8", "P0 mprotect \(A) 2 r", "P1 munmap \(A) 1",
                     "Q exit", "P0 write 0x100000006000 => ok", "P1 read 0x100000005000", "P0 mlock \(A) 1",
                     "P0 munlock \(A) 1", "observe P1 \(A) 8", "P1 exit", "P0 exit"]
        #expect(trace.count == 30)
        try (trace.joined(separator: "\n") + "\n").write(to: corpus.appendingPathComponent("planted.trace"),
                                                           atomically: true, encoding: .utf8)
        var o = OracleCheckOptions(oraclePath: fake)
        o.count = 0
        o.jobs = 1
        o.corpusDirectory = corpus.path
        o.outDirectory = out.path
        var lines: [String] = []
        let report = OracleCheck.run(o, emit: { lines.append($0) })
        #expect(report.failed == 1 && report.passed == 0, "\(lines)")
        guard let path = report.failurePaths.first, let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            Issue.record("no minimised trace: \(lines)")
            return
        }
        let body = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") }
        #expect(body == ["proc P0", "P1 = fork P0", "P1 write \(A) 3"], "\(text)")
        #expect(text.contains("minimised from 30 to 3 lines"), "\(text)")
    }
}
