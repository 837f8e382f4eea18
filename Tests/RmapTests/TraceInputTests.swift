import Testing
import Foundation
import RmapTestSupport
@testable import Rmap

/// Every command that reads a trace reads it as replay does: bounded, a
/// directory refused, with `FILE: error: ...` and status 2 (issue 17, item 6).
@Suite struct TraceInputTests {
    @Test(arguments: ["replay", "dot", "stats"])
    func endlessOrDirectoryInputIsRefused(_ command: String) throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let dir = try run(rmap, [command, NSTemporaryDirectory()], timeout: 60)
        #expect(!dir.timedOut && dir.status == 2, "\(command) dir: \(dir.status) \(dir.err)")
        #expect(dir.err.contains("error: is a directory"), "\(dir.err)")
        let zero = try run(rmap, [command, "/dev/zero"], timeout: 60)
        #expect(!zero.timedOut && zero.status == 2, "\(command) /dev/zero: \(zero.status) \(zero.err)")
        #expect(zero.err.contains("/dev/zero: error: trace larger than"), "\(zero.err)")
    }
}

/// An observation nobody prints is not kept (issue 17, item 7): replay
/// without --observe holds no observe tokens, whatever their size, and still
/// checks every expectation.
@Suite struct UnprintedObservationTests {
    @Test func observationsAreKeptOnlyWhenPrinted() throws {
        let text = """
            proc P0
            P0 mmap 0x100000000000 4 rw anon-private
            P0 write 0x100000000000 2
            observe P0 0x100000000000 1048576
            observe contents P0 0x100000000000 4
            expect P0 0x100000000000 4 = A1:1 A2:1 - -
            expect contents P0 0x100000000000 3 = v1 v2 -
            """
        let trace = try TraceParser.parse(text, file: "t.trace")
        let kept = try Machine(config: .tiny).replay(trace)
        #expect(kept.observations.map(\.tokens.count) == [1_048_576, 4])
        let dropped = try Machine(config: .tiny).replay(trace, keepingObservations: false)
        #expect(dropped.observations.isEmpty)
        // The same expectation failure either way (the contents are write tokens, not 1 and 2).
        #expect(dropped.failures == kept.failures && dropped.failures.count == 1, "\(dropped.failures)")
        #expect(dropped.results.map(\.result) == kept.results.map(\.result))
    }
}

/// `replay --check-every K` (issue 17, item 8): the checker after every K-th
/// statement and after the last; K must be at least 1.
@Suite struct CheckEveryTests {
    @Test func checkEveryRunsOnTheLastStatementAndRefusesZero() throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let path = NSTemporaryDirectory() + "rmap-check-every-\(getpid()).trace"
        defer { unlink(path) }
        // Sound throughout: every K passes; the checker must still have run (exit 0, nothing printed).
        try "proc P\nP mmap 0x100000000000 2 rw anon-private\nP write 0x100000000000 2\nC = fork P\nC write 0x100000000000\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        for k in ["1", "2", "100"] {
            let r = try run(rmap, ["replay", "--check", "--check-every", k, path], timeout: 60)
            #expect(r.status == 0 && r.err.isEmpty, "--check-every \(k): \(r.status) \(r.err)")
        }
        let zero = try run(rmap, ["replay", "--check", "--check-every", "0", path], timeout: 60)
        #expect(zero.status == 64 && zero.err.contains("--check-every must be at least 1"), "\(zero.status) \(zero.err)")
    }
}

/// `rmap-oracle --help` prints its usage and exits 0; an unknown option is a
/// usage error, not a trace path (issue 17, item 21).
@Suite struct OracleUsageTests {
    @Test func helpAndUnknownOptions() throws {
        let oracle = try #require(oraclePath, "rmap-oracle is built by make test")
        let help = try run(oracle, ["--help"], timeout: 30)
        #expect(help.status == 0 && help.out.hasPrefix("usage: rmap-oracle") && help.out.contains("--parse-only"), "\(help)")
        let bad = try run(oracle, ["--bogus", "x.trace"], timeout: 30)
        #expect(bad.status == 2 && bad.err.contains("unknown option '--bogus'"), "\(bad)")
    }
}
