import Testing
import Foundation
import RmapTestSupport
@testable import Rmap
@testable import RmapTrace

/// Messages a person can act on (issue 17, item 21): a reason, not a number;
/// a byte order mark named as such; a usage error for an impossible option
/// value; the help naming defaults by name.
@Suite struct ActionableMessageTests {
    private func tempFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = NSTemporaryDirectory() + "rmap-messages-\(getpid())-\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func aByteOrderMarkIsNamed() throws {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        for text in ["proc P\nP mmap 0x100000000000 1 rw anon-private\n", "", "\n"] {
            do {
                _ = try TraceParser.parse(bytes: bom + Array(text.utf8), file: "t.trace")
                Issue.record("a trace starting with a BOM was accepted")
            } catch {
                #expect(error.line == 1 && error.column == 1, "\(error)")
                #expect(error.message.contains("byte order mark"), "\(error)")
            }
            #expect(throws: TraceError.self) { try TraceParser.parse("\u{FEFF}" + text, file: "t.trace") }
        }
        // Elsewhere than at the start it is an ordinary character of a line.
        #expect(throws: TraceError.self) { try TraceParser.parse("proc P\n\u{FEFF}proc Q\n", file: "t.trace") }

        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let path = try tempFile("bom.trace", bom + Array("proc P\n".utf8))
        defer { unlink(path) }
        let r = try run(rmap, ["replay", path], timeout: 60)
        #expect(r.status == 2 && r.err.contains("\(path):1:1: error: the trace starts with a UTF-8 byte order mark"),
                "\(r.status) \(r.err)")
        #expect(!r.err.contains("unknown statement"), "\(r.err)")
    }

    /// `--frames` beyond what an arena table holds is a usage error (exit 64),
    /// for replay and stats, not a malformed trace (exit 2).
    @Test(arguments: ["replay", "stats"])
    func framesBeyondTheLargestTableIsAUsageError(_ command: String) throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let path = try tempFile("frames-\(command).trace", Array("proc P\n".utf8))
        defer { unlink(path) }
        for frames in ["1073741824", "4294967295"] {
            let r = try run(rmap, [command, "--frames", frames, path], timeout: 60)
            #expect(r.status == 64, "\(command) --frames \(frames): \(r.status) \(r.err)")
            #expect(r.err.contains("--frames must be at most 1073741823"), "\(r.err)")
        }
        let r = try run(rmap, [command, "--frames", "64", path], timeout: 60)
        #expect(r.status == 0, "\(r.err)")
    }

    /// Every command with `--reuse` lists the policies by name and shows the
    /// default by name (ReusePolicy's raw value, 2, before).
    @Test(arguments: ["replay", "stats", "demo", "fuzz", "dot"])
    func reuseHelpNamesTheDefault(_ command: String) throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let r = try run(rmap, [command, "--help"], timeout: 60)
        #expect(r.status == 0)
        // The help wraps lines: compare with the whitespace collapsed.
        let help = r.out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        // The --reuse entry: up to the next option (its text names --load).
        let start = try #require(help.range(of: "--reuse <reuse> anon_vma reuse policy"), "\(help)")
        let rest = help[start.upperBound...]
        let reuse = String(rest[..<(rest.firstMatch(of: /\s--(?!load)/)?.range.lowerBound ?? rest.endIndex)])
        #expect(reuse.contains("default: split"), "\(command): \(reuse)")
        for name in ["none", "degree", "split"] { #expect(reuse.contains(name), "\(command): \(reuse)") }
        for raw in ["default: 0", "default: 1", "default: 2"] {
            #expect(!reuse.contains(raw), "\(command): \(reuse)")
        }
    }

    @Test func loadingADirectoryOrAMissingFileSaysWhy() throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let trace = try tempFile("load.trace", Array("proc P\n".utf8))
        defer { unlink(trace) }
        let dir = try run(rmap, ["replay", "--load", NSTemporaryDirectory(), trace], timeout: 60)
        #expect(dir.status == 2 && dir.err.contains("cannot open the arena: it is a directory"), "\(dir.err)")
        let missing = try run(rmap, ["replay", "--load", "/nonexistent/x.arena", trace], timeout: 60)
        #expect(missing.status == 2 && missing.err.contains("No such file or directory"), "\(missing.err)")
        let empty = try tempFile("empty.arena", [])
        defer { unlink(empty) }
        let e = try run(rmap, ["replay", "--load", empty, trace], timeout: 60)
        #expect(e.status == 2 && e.err.contains("shorter than the header"), "\(e.err)")
        for r in [dir, missing, e] { #expect(!r.err.contains("errno"), "\(r.err)") }
    }

    /// An arena that cannot be reserved (here: under an address-space limit)
    /// names the reason, not an errno number.
    @Test func anArenaThatCannotBeReservedSaysWhy() throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let trace = try tempFile("reserve.trace", Array("proc P\n".utf8))
        defer { unlink(trace) }
        // 2^30 - 1 frames are 64 GiB of frame records: more than the limit allows.
        let r = try run("/bin/sh", ["-c", "ulimit -v 4000000 && exec \"$0\" replay --frames 1073741823 \"$1\"", rmap, trace],
                        timeout: 60)
        #expect(r.status == 2, "\(r.status) \(r.err)")
        #expect(r.err.contains("arena: cannot reserve") && r.err.contains("Cannot allocate memory"), "\(r.err)")
        #expect(!r.err.contains("errno"), "\(r.err)")
    }
}

/// Names and sizes through the Swift API follow the trace language's rules
/// (issue 17, item 19), so every state the API makes saves and reopens: the
/// C API's checks (Tests/C/capi_test.c) rest on these.
@Suite struct MachineNameRuleTests {
    @Test func namesFollowTheTraceLanguage() throws {
        let m = try Machine(config: .tiny)
        for bad in ["", "a b", "\u{FF}", "é", "9x", "-x", ".x", "P\n", "Z = fork", String(repeating: "p", count: 65)] {
            #expect(m.createProcess(bad) == .errno(.EINVAL), "process \(bad.debugDescription)")
            #expect(m.createFile(bad, pages: 1) == .errno(.EINVAL), "file \(bad.debugDescription)")
        }
        #expect(m.createProcess(String(repeating: "p", count: 64)) == .ok)
        #expect(m.createProcess("_a.b-c9") == .ok)
        #expect(m.fork("_a.b-c9", child: "a b") == .errno(.EINVAL))
        #expect(m.fork("nobody", child: "a b") == .errno(.ESRCH))
        #expect(m.processes.count == 2)
    }

    @Test func fileSizesFollowTheTraceLanguage() throws {
        let m = try Machine(config: .tiny)
        for pages: UInt64 in [0, TraceParser.maxFilePages + 1, 1 << 32, UInt64.max] {
            #expect(m.createFile("f", pages: pages) == .errno(.EINVAL), "\(pages) pages")
        }
        #expect(m.files.isEmpty)
        #expect(m.createFile("f", pages: TraceParser.maxFilePages) == .ok)
        #expect(m.createFile("g", pages: 1) == .ok)
        #expect(m.createFile("g", pages: 1) == .errno(.EEXIST))
    }

    /// An exited process's name is used: re-creating it (by proc or fork) is
    /// EEXIST, before and after a save, and the state stays consistent.
    @Test func anExitedNameIsNotReused() throws {
        let m = try Machine(config: .tiny)
        #expect(m.createProcess("P") == .ok)
        #expect(m.createProcess("Q") == .ok)
        #expect(m.exit("Q") == .ok)
        #expect(m.createProcess("Q") == .errno(.EEXIST))
        #expect(m.fork("P", child: "Q") == .errno(.EEXIST))
        #expect(m.createProcess("P") == .errno(.EEXIST))
        #expect(m.check().isEmpty, "\(m.check())")
        let dir = freshTempDir("names")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/names.arena"
        #expect(m.save(to: path) == nil)
        let again = try Machine(opening: path)
        #expect(again.processOrder == ["P", "Q"] && again.processes.keys.sorted() == ["P"])
        #expect(again.createProcess("Q") == .errno(.EEXIST))
        #expect(again.fork("P", child: "Q") == .errno(.EEXIST))
        #expect(again.fork("P", child: "R") == .ok)
        #expect(again.check().isEmpty)
    }

    /// A hung run killed with SIGABRT (`timeout -s ABRT`, to get its backtrace)
    /// must end: the Swift backtracer prints the backtrace and returns, and for
    /// a signal sent from outside nothing faults again, so before
    /// rmap_die_on_fatal_signals the run went on after printing it. Also
    /// SIGSEGV sent from outside. (posix_spawn and waitpid, not Foundation's
    /// Process: the child's end is read from waitpid itself.)
    @Test(arguments: [SIGABRT, SIGSEGV])
    func aFatalSignalFromOutsideEndsTheRun(_ sig: Int32) throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let errPath = NSTemporaryDirectory() + "rmap-signal-\(getpid())-\(sig).err"
        defer { unlink(errPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // A run that would take hours: only the signal can end it.
        let args = [rmap, "fuzz", "--seed", "1", "--ops", "1000000000"]
        var env = ProcessInfo.processInfo.environment
        env["SWIFT_BACKTRACE"] = "enable=yes,interactive=no,symbolicate=off"
        let cArgs = args.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { cArgs.forEach { free($0) }; cEnv.forEach { free($0) } }
        // A process group of its own: the Swift backtracer it starts stays
        // behind it after a SIGSEGV from outside (asleep on a socket read,
        // one per `make test` before), and is killed with the group at the end.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attr, 0)
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, rmap, &actions, &attr, cArgs, cEnv)
        try #require(rc == 0, "posix_spawn: \(rc)")
        defer { kill(-pid, SIGKILL) }
        var status: Int32 = 0
        func ended() -> Bool { waitpid(pid, &status, WNOHANG) == pid }
        // Wait until it is running operations (its first progress line, after 5 s).
        let started = Date()
        var early = false
        while Date().timeIntervalSince(started) < 60,
              !((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "").contains("fuzz:") {
            if ended() { early = true; break }
            usleep(50_000)
        }
        try #require(!early, "the fuzz run ended by itself (status \(status))")
        kill(pid, sig)
        let sent = Date()
        var done = false
        while !done, Date().timeIntervalSince(sent) < 60 {
            done = ended()
            if !done { usleep(50_000) }
        }
        if !done { kill(pid, SIGKILL); _ = waitpid(pid, &status, 0) }
        let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        #expect(done, "rmap was still running 60 s after signal \(sig)")
        // WIFSIGNALED / WTERMSIG: the low seven bits are the signal.
        #expect(done && status & 0x7f == sig, "wait status \(status)")
        #expect(err.contains("Backtracing"), "the Swift backtracer did not run: \(err.prefix(300))")
    }
}
