import Foundation
import Testing
import RmapTools
import RmapTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The oracle leaves nothing behind (issue 17, items 11 and 13).
///
/// Item 11: the machine settings the oracle changes (KSM's `run`,
/// `pages_to_scan` and `sleep_millisecs`) come back within seconds however
/// the oracle ends, SIGKILL included, and its temporary folder goes: a
/// watchdog child holds the saved values, the lock and the folder, and puts
/// everything back when the oracle is gone.
///
/// Item 13: the oracle reads a trace as `rmap replay` does: at most
/// `maxTraceBytes`, a directory refused, a read error reported (never taken
/// for the end of the file).
///
/// The KSM tests change the machine's KSM settings for a moment: they run
/// one at a time (`.serialized`), change them only under the oracle's own
/// lock (/tmp/rmap-oracle-ksm.lock, which every KSM trace of every oracle
/// takes), and check under it that the settings are back.
@Suite(.serialized) struct OracleCleanupTests {
    static let ksmDir = "/sys/kernel/mm/ksm/"
    static let lockPath = "/tmp/rmap-oracle-ksm.lock"

    // MARK: KSM settings and the oracle's lock

    struct KSMSettings: Equatable, CustomStringConvertible {
        var run, pages, sleep: String
        var description: String { "run=\(run) pages_to_scan=\(pages) sleep_millisecs=\(sleep)" }
    }

    static func readKnob(_ name: String) -> String? {
        (try? String(contentsOfFile: ksmDir + name, encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func writeKnob(_ name: String, _ value: String) -> Bool {
        let fd = open(ksmDir + name, O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return value.withCString { write(fd, $0, strlen($0)) } == value.utf8.count
    }

    static func readSettings() -> KSMSettings? {
        guard let r = readKnob("run"), let p = readKnob("pages_to_scan"), let s = readKnob("sleep_millisecs")
        else { return nil }
        return KSMSettings(run: r, pages: p, sleep: s)
    }

    /// Writes them as the oracle restores them: ksmd stopped first, never
    /// run=2 (that unmerges every page).
    static func writeSettings(_ s: KSMSettings) -> Bool {
        var ok = writeKnob("run", "0")
        ok = writeKnob("pages_to_scan", s.pages) && ok
        ok = writeKnob("sleep_millisecs", s.sleep) && ok
        if s.run != "2" { ok = writeKnob("run", s.run) && ok }
        return ok
    }

    /// The oracle's KSM lock, taken within `timeout` seconds (nil if not).
    static func takeLock(timeout: Double) -> Int32? {
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        let deadline = Date().addingTimeInterval(timeout)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if Date() > deadline { close(fd); return nil }
            usleep(10_000)
        }
        return fd
    }

    static func releaseLock(_ fd: Int32) {
        flock(fd, LOCK_UN)
        close(fd)
    }

    static var ksmAvailable: Bool {
        canReadPFNs && oraclePath != nil && readSettings() != nil
    }

    /// Settings no oracle sets and no machine has by default, so that a
    /// restore is told apart from values left by a run that took the
    /// changed ones for the originals.
    static let marked = KSMSettings(run: "0", pages: "137", sleep: "23")

    /// Runs `body` with the machine's KSM settings set to `marked` (under the
    /// oracle's lock, released while `body` runs) and puts the machine's own
    /// settings back afterwards, under the lock again.
    static func withMarkedSettings(_ body: () throws -> Void) throws {
        guard let fd = takeLock(timeout: 600) else {
            Issue.record("could not take \(lockPath) within 600 s")
            return
        }
        guard let machine = readSettings() else { releaseLock(fd); Issue.record("cannot read \(ksmDir)"); return }
        let set = writeSettings(marked)
        releaseLock(fd)
        defer {
            if let fd = takeLock(timeout: 600) {
                #expect(writeSettings(machine), "cannot put back \(machine)")
                #expect(readSettings() == machine)
                releaseLock(fd)
            } else {
                Issue.record("could not take \(lockPath) to put back \(machine)")
            }
        }
        #expect(set, "cannot set \(marked)")
        try body()
    }

    static func writeTrace(_ text: String, _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "rmap-oracle-cleanup-\(getpid())-\(name).trace"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    /// The children of process `pid`.
    static func children(_ pid: pid_t) -> [pid_t] {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)
        else { return [] }
        return s.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// A worker of the oracle `pid` that maps the trace file: its path (in
    /// the oracle's temporary folder), or nil while there is none yet.
    static func mappedTraceFile(of pid: pid_t) -> String? {
        for c in children(pid) {
            guard let maps = try? String(contentsOfFile: "/proc/\(c)/maps", encoding: .utf8) else { continue }
            for line in maps.split(separator: "\n") where line.hasPrefix("200000000000-") {
                if let slash = line.firstIndex(of: "/") { return String(line[slash...]) }
            }
        }
        return nil
    }

    /// A file-backed mapping (the oracle's temporary folder exists), two
    /// mergeable anonymous pages, and a thousand KSM passes: the oracle is
    /// in `ksm scan` for about a minute (ksmd sleeps 50 ms after each pass).
    static let longScan = """
        file f 2
        proc P0
        proc P1
        P0 mmap 0x200000000000 2 rw file-private:f@0 => ok
        P0 read 0x200000000000 2 => ok
        P0 mmap 0x100000000000 2 rw anon-private => ok
        P1 mmap 0x100000000000 2 rw anon-private => ok
        P0 write 0x100000000000 value=7 => ok
        P1 write 0x100000000000 value=7 => ok
        P0 madvise 0x100000000000 2 mergeable => ok
        P1 madvise 0x100000000000 2 mergeable => ok
        ksm scan 1000
        observe P0 0x100000000000 2
        """

    /// Starts the oracle on `longScan`, waits until it is in `ksm scan`
    /// (ksmd running, a worker mapping the trace file), sends it `signal`,
    /// and checks that the settings come back within seconds, under the
    /// lock, and that the temporary folder is gone.
    static func killDuringScan(signal sig: Int32) throws {
        let trace = try writeTrace(longScan, "kill-\(sig)")
        defer { unlink(trace) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: oraclePath!)
        p.arguments = [trace]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let pid = p.processIdentifier
        defer { if p.isRunning { kill(pid, SIGKILL) }; p.waitUntilExit() }

        // In the scan: a worker exists (the KSM settings were taken before
        // the first statement ran, so the lock is this oracle's) and ksmd runs.
        var folderFile: String? = nil
        var scanning = false
        let start = Date()
        while p.isRunning && Date().timeIntervalSince(start) < 600 {
            if folderFile == nil { folderFile = mappedTraceFile(of: pid) }
            if folderFile != nil && readKnob("run") == "1" { scanning = true; break }
            usleep(5_000)
        }
        try #require(scanning, "the oracle never reached `ksm scan` (status \(p.isRunning ? -1 : p.terminationStatus))")
        let folder = URL(fileURLWithPath: folderFile!).deletingLastPathComponent().path
        #expect(folder.hasPrefix("/tmp/rmap-oracle."), "\(folder)")
        #expect(readSettings() != marked, "the oracle changed the settings")
        usleep(200_000)  // a few passes

        kill(pid, sig)
        p.waitUntilExit()
        let killed = Date()
        #expect(p.terminationReason == .uncaughtSignal && p.terminationStatus == sig)

        // The lock comes free once the settings are back (taken by someone
        // else first only after that): within seconds unless another KSM
        // trace of another run holds it, which restores what it found.
        var fd = takeLock(timeout: 10)
        let seconds = Date().timeIntervalSince(killed)
        if fd == nil { fd = takeLock(timeout: 600) }
        let lock = try #require(fd, "could not take \(lockPath)")
        let after = readSettings()
        releaseLock(lock)
        #expect(after == marked, "KSM settings after the oracle died: \(after?.description ?? "unreadable"), before: \(marked)")
        #expect(seconds < 10, "the settings took \(seconds) s to come back")
        #expect(!FileManager.default.fileExists(atPath: folder), "\(folder) is left behind")
    }

    // MARK: item 11

    /// SIGKILL during `ksm scan` used to leave ksmd running (run=1) with
    /// pages_to_scan=1000000 and sleep_millisecs=50, and the next oracle
    /// took those as the originals; the temporary folder stayed.
    @Test(.enabled(if: ksmAvailable)) func sigkillDuringKSMScanRestoresSettings() throws {
        try Self.withMarkedSettings { try Self.killDuringScan(signal: SIGKILL) }
    }

    /// Any signal the oracle does not catch: SIGUSR1 (terminates by default).
    /// The oracle unblocks every signal first: started from this test runner
    /// it inherited most of them blocked (SIGINT, SIGTERM, SIGUSR1 among
    /// them), so a polite kill did nothing until the trace ended.
    @Test(.enabled(if: ksmAvailable)) func uncaughtSignalDuringKSMScanRestoresSettings() throws {
        try Self.withMarkedSettings { try Self.killDuringScan(signal: SIGUSR1) }
    }

    /// A KSM trace that runs to its end puts the settings back too, and
    /// leaves no folder (what the watchdog does on the ordinary path).
    @Test(.enabled(if: ksmAvailable)) func completeKSMTraceRestoresSettings() throws {
        let corpus = packageRoot.appendingPathComponent("Tests/Corpus/kernel/43-ksm-remerge.trace").path
        let text = "file g 1\n" + (try String(contentsOfFile: corpus, encoding: .utf8))
        let trace = try Self.writeTrace(text, "complete")
        defer { unlink(trace) }
        let before = Set((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [])
        try Self.withMarkedSettings {
            let r = try run(oraclePath!, [trace], timeout: 300)
            #expect(r.status == 0 && !r.timedOut, "\(r.err)")
            guard let fd = Self.takeLock(timeout: 600) else { Issue.record("no lock"); return }
            let after = Self.readSettings()
            Self.releaseLock(fd)
            #expect(after == Self.marked, "\(after?.description ?? "unreadable")")
        }
        // Another run's oracle may have a folder of its own for a moment:
        // only a folder that stays counts.
        var left: [String] = []
        for _ in 0..<50 {
            let now = Set((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [])
            left = now.subtracting(before).filter { $0.hasPrefix("rmap-oracle.") }.sorted()
            if left.isEmpty { break }
            usleep(100_000)
        }
        #expect(left.isEmpty, "left behind: \(left)")
    }

    // MARK: item 13

    /// The oracle under a 1 GiB address-space limit, as the issue found it
    /// (with no limit, the old oracle read /dev/zero until memory ran out).
    static func oracleLimited(_ args: [String], timeout: Double = 60) throws
        -> (out: String, err: String, status: Int32, timedOut: Bool)
    {
        try run("/bin/sh", ["-c", "ulimit -v 1048576 && exec \"$0\" \"$@\"", oraclePath!] + args, timeout: timeout)
    }

    /// /dev/zero: read forever (3.3 GB in 8 s), or under a memory limit the
    /// failed read taken for the end of the file and exit 0. Now: at most
    /// `maxTraceBytes`, then `FILE: error: trace larger than N bytes`, 2.
    @Test(.enabled(if: oraclePath != nil), arguments: [["--parse-only"], []])
    func endlessFileIsBounded(_ mode: [String]) throws {
        let r = try Self.oracleLimited(mode + ["/dev/zero"])
        #expect(!r.timedOut)
        #expect(r.status == 2, "status \(r.status): \(r.err)")
        #expect(r.err.contains("/dev/zero: error: trace larger than \(maxTraceBytes) bytes"), "\(r.err)")
        #expect(r.out.isEmpty, "\(r.out)")
    }

    /// A regular file one byte over the limit is refused; one of exactly the
    /// limit is read (empty lines: nothing to run), as `rmap replay` does.
    @Test(.enabled(if: oraclePath != nil)) func largeFileLimitIsReplays() throws {
        let path = NSTemporaryDirectory() + "rmap-oracle-cleanup-\(getpid())-large.trace"
        defer { unlink(path) }
        for (size, ok) in [(maxTraceBytes, true), (maxTraceBytes + 1, false)] {
            #expect(FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x0A, count: size)))
            let r = try run(oraclePath!, ["--parse-only", path], timeout: 60)
            if ok {
                #expect(r.status == 0 && r.out == "parsed 0 statements\n", "\(r.status) \(r.err)")
            } else {
                #expect(r.status == 2, "status \(r.status): \(r.err)")
                #expect(r.err == "\(path): error: trace larger than \(maxTraceBytes) bytes\n", "\(r.err)")
                let replay = replayFile(path: path)
                #expect(replay.status == 2 && replay.stderr.joined().contains("trace larger than \(maxTraceBytes) bytes"))
            }
        }
    }

    /// A directory used to be read as an empty trace (status 0, and run).
    @Test(.enabled(if: oraclePath != nil), arguments: [["--parse-only"], []])
    func directoryIsRefused(_ mode: [String]) throws {
        let r = try run(oraclePath!, mode + [NSTemporaryDirectory()], timeout: 60)
        #expect(r.status == 2, "status \(r.status): \(r.err)")
        #expect(r.err.contains(": error: is a directory, not a trace file"), "\(r.err)")
        #expect(r.out.isEmpty, "\(r.out)")
    }

    /// A read error (EIO from the oracle's own /proc/self/mem at offset 0)
    /// used to end the trace as if at end of file: status 0.
    @Test(.enabled(if: oraclePath != nil)) func readErrorIsReported() throws {
        let r = try run(oraclePath!, ["--parse-only", "/proc/self/mem"], timeout: 60)
        #expect(r.status == 2, "status \(r.status): \(r.err) \(r.out)")
        #expect(r.err.hasPrefix("/proc/self/mem: error: read failed"), "\(r.err)")
        #expect(r.out.isEmpty, "\(r.out)")
    }
}
