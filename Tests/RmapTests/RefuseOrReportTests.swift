import Testing
import Foundation
@testable import Rmap
@testable import RmapTools
import RmapTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Refuse or report, never adjust silently (issue 17, item 10): a swap size
/// beyond the swap map, a `proc` or `file` the arena has no room for, and
/// command-line values that cannot apply are errors that say so, not a run
/// of something other than what was asked.
@Suite struct RefuseOrReportTests {

    /// Replays `text` (as `NAME.trace` in a fresh folder) on `config`.
    static func replay(_ text: String, _ name: String, config: ArenaConfig = .tiny) throws -> ReplayStatus {
        let d = freshTempDir("refuse-\(name)")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let path = d + "/\(name).trace"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return replayFile(path: path, config: config)
    }

    // MARK: the trace

    /// `swap N` beyond the swap map used to be clamped to it (8 slots in the
    /// tiny arena): the trace then ran with less swap than it said.
    @Test func swapBeyondTheSwapMapIsAnError() throws {
        let ok = try Self.replay("swap 8\nproc A\nA mmap 0x100000000000 1 rw anon-private\n", "swap-fits")
        #expect(ok.status == 0, "\(ok.stderr)")
        let r = try Self.replay("# more swap than the map\nswap 9\nproc A\nA mmap 0x100000000000 1 rw anon-private\n", "swap-big")
        #expect(r.status == 2)
        #expect(r.stdout == nil, "a trace with an error prints no observation")
        #expect(r.stderr.count == 1)
        let e = r.stderr.first ?? ""
        #expect(e.contains("swap-big.trace:2:") && e.contains("error:") && e.contains("swap map") && e.contains("8 slots"), "\(e)")
        // The default arena's swap map (262,144 slots) is smaller than the language's limit (2^24).
        let d = try Self.replay("swap 262145\n", "swap-default", config: .default)
        #expect(d.status == 2 && d.stderr.first?.contains("swap map") == true, "\(d.stderr)")
        // The library call refuses and leaves the swap size as it was.
        let m = try Machine(config: .tiny)
        #expect(m.setSwap(slots: 9) == .errno(.ENOMEM))
        #expect(m.k.header.pointee.swap_slots == 0)
        #expect(m.setSwap(slots: 8) == .ok)
        #expect(m.k.header.pointee.swap_slots == 8)
    }

    /// A `proc` the mm table has no room for used to report nothing; the
    /// process's later lines then got ESRCH.
    @Test func procWithTheMMTableFullIsReportedAtItsLine() throws {
        var text = ""
        for i in 0..<9 { text += "proc P\(i)\n" }
        text += "P8 mmap 0x100000000000 1 rw anon-private\n"
        let r = try Self.replay(text, "procs")
        #expect(r.status == 2)
        #expect(r.stdout == nil)
        let e = r.stderr.first ?? ""
        #expect(e.contains("procs.trace:9:") && e.contains("P8") && e.contains("mm table is full"), "\(r.stderr)")
    }

    /// The same for a `file` and the file table.
    @Test func fileWithTheFileTableFullIsReportedAtItsLine() throws {
        var text = "proc A\n"
        for i in 0..<5 { text += "file f\(i) 4\n" }
        text += "A mmap 0x100000000000 4 r file-private:f4@0\n"
        let r = try Self.replay(text, "files")
        #expect(r.status == 2)
        let e = r.stderr.first ?? ""
        #expect(e.contains("files.trace:6:") && e.contains("f4") && e.contains("file table is full"), "\(r.stderr)")
    }

    /// `replay` stops at the error: nothing after it runs, no expectation is judged.
    @Test func replayStopsAtAStatementThatCannotRun() throws {
        let m = try Machine(config: .tiny)
        var text = ""
        for i in 0..<9 { text += "proc P\(i)\n" }
        text += "P0 mmap 0x100000000000 1 rw anon-private => EINVAL\n"
        let out = m.replay(try TraceParser.parse(text, file: "t.trace"))
        #expect(out.error?.contains("t.trace:9:") == true, "\(out.error ?? "no error")")
        #expect(out.results.isEmpty && out.failures.isEmpty)
    }

    // MARK: the command line

    static let rmap = rmapPath ?? "/nonexistent/rmap"

    /// Runs `rmap ARGS` (at most 30 s).
    static func cli(_ args: [String]) throws -> (out: String, err: String, status: Int32, timedOut: Bool) {
        try run(rmap, args, timeout: 30)
    }

    /// `fuzz --seconds 0` (or nan, inf, a negative number) used to run forever.
    @Test(.enabled(if: rmapPath != nil, "needs the rmap binary (swift build builds it)"),
          arguments: ["0", "nan", "inf", "-1", "0.0"])
    func fuzzRefusesSecondsThatNeverEnd(_ s: String) throws {
        let r = try Self.cli(["fuzz", "--seconds=\(s)", "--out", NSTemporaryDirectory() + "rmap-fuzz-never"])
        #expect(!r.timedOut, "fuzz --seconds \(s) was still running after 30 s")
        #expect(r.status == 64, "\(r.err)")
        #expect(r.err.contains("--seconds") && r.err.contains("positive"), "\(r.err)")
    }

    /// `--frames 0` and `--frames 1` used to become 2 without a word.
    @Test(.enabled(if: rmapPath != nil, "needs the rmap binary (swift build builds it)"),
          arguments: [["replay", "--frames", "0"], ["replay", "--frames", "1"], ["stats", "--frames", "1"],
                      ["replay", "--tiny-arena", "--frames", "100"]])
    func framesOutOfRangeAreRefused(_ args: [String]) throws {
        let d = freshTempDir("frames-\(args.joined(separator: "-"))")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let t = d + "/t.trace"
        try "proc A\n".write(toFile: t, atomically: false, encoding: .utf8)
        let r = try Self.cli(args + [t])
        #expect(r.status == 64, "\(args): status \(r.status) \(r.err)")
        #expect(r.err.contains("--frames"), "\(r.err)")
        if args.contains("--tiny-arena") {
            #expect(r.err.contains("--tiny-arena"), "\(r.err)")
        } else {
            #expect(r.err.contains("at least 2"), "\(r.err)")
        }
    }

    /// With `--load`, the arena and the reuse policy are the saved state's:
    /// `--frames`, `--tiny-arena` and `--reuse` used to be ignored.
    @Test(.enabled(if: rmapPath != nil, "needs the rmap binary (swift build builds it)"),
          arguments: [["replay", "--frames", "100"], ["replay", "--tiny-arena"], ["replay", "--reuse", "none"],
                      ["stats", "--frames", "100"], ["stats", "--reuse", "degree"]])
    func optionsThatCannotApplyToALoadedStateAreRefused(_ args: [String]) throws {
        let d = freshTempDir("load-\(args.joined(separator: "-"))")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let t1 = d + "/1.trace", t2 = d + "/2.trace", f = d + "/s.arena"
        try "proc A\n".write(toFile: t1, atomically: false, encoding: .utf8)
        try "A mmap 0x100000000000 1 rw anon-private\n".write(toFile: t2, atomically: false, encoding: .utf8)
        #expect(replayFile(path: t1, config: .tiny, save: f).status == 0)
        let plain = try Self.cli([args[0], "--load", f, t2])
        #expect(plain.status == 0, "\(plain.err)")
        let r = try Self.cli([args[0], "--load", f] + args.dropFirst() + [t2])
        #expect(r.status == 64, "\(args): status \(r.status) \(r.err)")
        #expect(r.err.contains(args[1]) && r.err.contains("--load"), "\(r.err)")
    }

    /// The command line reports a swap size beyond the swap map like any
    /// trace error (exit 2, FILE:LINE).
    @Test(.enabled(if: rmapPath != nil, "needs the rmap binary (swift build builds it)"))
    func cliReportsSwapBeyondTheSwapMap() throws {
        let d = freshTempDir("cli-swap")
        defer { try? FileManager.default.removeItem(atPath: d) }
        let t = d + "/t.trace"
        try "swap 100\nproc A\n".write(toFile: t, atomically: false, encoding: .utf8)
        let r = try Self.cli(["replay", "--tiny-arena", "--observe", t])
        #expect(r.status == 2, "\(r.err)")
        #expect(r.out.isEmpty)
        #expect(r.err.contains("\(t):1:") && r.err.contains("swap map"), "\(r.err)")
    }
}
