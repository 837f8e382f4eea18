import Foundation
import Testing
import RmapTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The machine's reclaim under the oracle (docs/oracle.md, "When the machine
/// disturbs a run"). This VM pages out unmapped page cache it finds cold (a
/// DAMON `pageout` scheme) and kswapd reclaims under pressure: a page of a
/// trace's file evicted while the trace runs is read back by the next fault
/// (a major fault) and fault-around maps only what is cached, so the kernel's
/// observation is no longer the trace's. The oracle watches the trace's page
/// cache and runs a disturbed trace again from the start (at most 4 runs,
/// then 77 saying why). `RMAP_ORACLE_EVICT=LINE[,RUNS]` makes the oracle
/// evict every trace file's unmapped pages itself just before statement
/// LINE, in its first RUNS runs: the machine's reclaim on cue.
@Suite(.enabled(if: canReadPFNs && oraclePath != nil, "needs root, readable PFNs and the rmap-oracle binary"))
struct OracleReclaimTests {
    static func writeTrace(_ text: String, _ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "rmap-oracle-reclaim-\(getpid())-\(name)-\(UUID().uuidString).trace"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    /// The oracle on `trace`, with the reclaim on cue when `evict` is given.
    static func oracle(_ trace: String, evict: String? = nil) throws -> (out: String, err: String, status: Int32) {
        let env = evict.map { ["RMAP_ORACLE_EVICT=\($0)"] } ?? []
        let r = try run("/usr/bin/env", env + [oraclePath!, trace], timeout: 120)
        #expect(!r.timedOut)
        return (r.out, r.err, r.status)
    }

    /// The lines of stderr that say a run was void.
    static func voidLines(_ err: String) -> [Substring] {
        err.split(separator: "\n").filter { $0.contains(" void: ") }
    }

    /// `text` run quietly and then with the reclaim on cue `evict`: both
    /// end 0 with the same observation, the quiet run says nothing (the watch
    /// sees no eviction where there is none); the disturbed run's void lines.
    static func runsAgain(_ text: String, _ name: String, evict: String) throws -> [Substring] {
        let trace = try writeTrace(text, name)
        defer { unlink(trace) }
        let quiet = try oracle(trace)
        #expect(quiet.status == 0 && quiet.err.isEmpty, "\(quiet.status): \(quiet.err)")
        let disturbed = try oracle(trace, evict: evict)
        #expect(disturbed.status == 0, "\(disturbed.status): \(disturbed.err)")
        #expect(disturbed.out == quiet.out)
        return voidLines(disturbed.err)
    }

    /// No statement of this trace evicts: it is watched through the workers'
    /// major faults and a count of the cached pages at each observation.
    static let faultTrace = """
        file f1 64
        proc P0
        P0 mmap 0x100000000000 64 r file-private:f1@0 => ok
        P0 read 0x100000000000 => ok
        observe P0 0x100000000000 64
        P0 read 0x100000020000 => ok
        observe P0 0x100000000000 64
        P0 exit => ok
        """

    /// Evicted before a read fault (line 6: the fault reads its page back, a
    /// major fault) or before an observation (line 5: pages out, nothing
    /// read back): the run is void and run again, and the observation is the
    /// undisturbed run's.
    @Test(arguments: [(6, "process P0 took 1 major faults"), (5, "of the 64 pages of file f1 were evicted by the machine")])
    func evictedWithoutAnEvictingStatementRunsAgain(_ line: Int, _ said: String) throws {
        let voids = try Self.runsAgain(Self.faultTrace, "fault-\(line)", evict: "\(line)")
        #expect(voids.count == 1 && voids[0].hasPrefix("rmap-oracle: run 1 of at most 4 void: line \(line): ")
                && voids[0].contains(said), "\(voids)")
    }

    /// Evicted as it was written (between the fsync and the count of its
    /// cached pages): the same.
    @Test func evictedAsItWasWrittenRunsAgain() throws {
        let voids = try Self.runsAgain(Self.faultTrace, "written", evict: "1")
        #expect(voids.count == 1 && voids[0].hasSuffix("void: file f1: 64 of its 64 pages were evicted by the machine "
                                                        + "(its reclaim: DAMON pageout, kswapd) as it was written; running the trace again"),
                "\(voids)")
    }

    /// This trace pages out file pages itself (reclaim_pages): those are the
    /// trace's, never a void; the page cache is counted before and after every
    /// statement, and pages gone while no statement ran are the machine's.
    static let pageoutTrace = """
        file f1 16
        proc P0
        P0 mmap 0x100000000000 8 rw file-shared:f1@0 => ok
        P0 read 0x100000000000 => ok
        P0 madvise 0x100000002000 2 pageout => ok
        expect P0 0x100000000000 8 = F1:1 F2:1 - - F3:1 F4:1 F5:1 F6:1
        P0 read 0x100000003000 => ok
        observe P0 0x100000000000 8
        P0 exit => ok
        """

    @Test func evictedBesideTheTracesOwnPageoutRunsAgain() throws {
        // before the read that follows the trace's own pageout: 14 pages
        // were cached (16 less the 2 paged out), the cue takes the 8 unmapped
        let voids = try Self.runsAgain(Self.pageoutTrace, "pageout", evict: "7")
        #expect(voids.count == 1 && voids[0].contains("line 7: 8 of the 14 cached pages of file f1 were evicted by the machine"),
                "\(voids)")
    }

    /// Disturbed in every run: after 4 runs, 77 saying why (a skip, never a
    /// difference or an internal error), nothing printed on stdout.
    @Test func disturbedInEveryRunIsSkipped() throws {
        let trace = try Self.writeTrace(Self.faultTrace, "always")
        defer { unlink(trace) }
        let r = try Self.oracle(trace, evict: "6,9")
        #expect(r.status == 77, "\(r.status): \(r.err)")
        #expect(r.out.isEmpty)
        #expect(Self.voidLines(r.err).count == 3, "\(r.err)")
        #expect(r.err.contains("rmap-oracle: skipped: the machine disturbed each of 4 runs of the trace; the last: line 6: "),
                "\(r.err)")
    }

    /// The next run reads the trace again from its path: a trace read from a
    /// pipe cannot be, so a disturbed run of one is 77 saying so (it was a
    /// run of an empty trace, status 0, before).
    @Test func aTraceFromAPipeIsNotRunAgain() throws {
        let trace = try Self.writeTrace(Self.faultTrace, "pipe")
        defer { unlink(trace) }
        let r = try run("/bin/sh", ["-c", "cat \"$0\" | RMAP_ORACLE_EVICT=6 \"$1\" /dev/stdin", trace, oraclePath!], timeout: 120)
        #expect(r.status == 77 && r.out.isEmpty, "\(r.status): \(r.out) \(r.err)")
        #expect(r.err.contains("skipped: the machine disturbed the run (line 6: ")
                && r.err.contains("a trace that is not a regular file cannot be run again"), "\(r.err)")
    }

    /// Nothing of a void run outlives its exec: the pipes of 103 processes
    /// (the shell-loop workload) within an open-file limit of 1,024, three
    /// runs voided, the fourth runs. With the pipes inherited by each next
    /// run, the third ran out of descriptors (77).
    @Test func aVoidRunLeavesNoDescriptorsToTheNext() throws {
        let url = try workloadTrace("shell-loop")
        defer { try? FileManager.default.removeItem(at: url) }
        let text = try String(contentsOf: url, encoding: .utf8)
        let procs = text.split(separator: "\n").filter { $0.hasPrefix("proc ") || $0.contains(" = fork ") }.count
        #expect(procs > 100)
        let read = try #require(text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            .first { $0.offset > 2000 && ($0.element.contains(" read ") || $0.element.contains(" write ")) })
        let r = try run("/usr/bin/prlimit", ["--nofile=1024", "/usr/bin/env", "RMAP_ORACLE_EVICT=\(read.offset + 1),3",
                                             oraclePath!, url.path], timeout: 300)
        #expect(r.status == 0, "\(r.status): \(r.err.suffix(600))")
        #expect(Self.voidLines(r.err).count == 3, "\(r.err.suffix(600))")
    }

    // MARK: a large-page trace run again: its settings put back every time

    static let thpDir = "/sys/kernel/mm/transparent_hugepage/"
    static let largeLock = "/tmp/rmap-oracle-large.lock"

    /// What a large-page trace changes and must put back (docs/oracle.md).
    static func largeSettings() -> [String: String] {
        var knobs = ["enabled", "use_zero_page", "shrink_underused", "khugepaged/max_ptes_none",
                     "khugepaged/max_ptes_shared", "khugepaged/max_ptes_swap",
                     "khugepaged/scan_sleep_millisecs", "khugepaged/alloc_sleep_millisecs"]
        let sizes = (try? FileManager.default.contentsOfDirectory(atPath: thpDir))?.filter { $0.hasPrefix("hugepages-") } ?? []
        knobs += sizes.map { "\($0)/enabled" }
        var v: [String: String] = [:]
        for k in knobs {
            v[k] = (try? String(contentsOfFile: thpDir + k, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        v["nr_hugepages"] = (try? String(contentsOfFile: "/proc/sys/vm/nr_hugepages", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return v
    }

    /// The settings read under the oracle's large-page lock (no other
    /// large-page trace runs then, so they are the machine's own).
    static func largeSettingsUnderLock() -> [String: String]? {
        let fd = open(largeLock, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let deadline = Date().addingTimeInterval(600)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if Date() > deadline { return nil }
            usleep(10_000)
        }
        defer { flock(fd, LOCK_UN) }
        return largeSettings()
    }

    @Test func aLargePageTraceRunAgainPutsEverySettingBack() throws {
        let trace = try Self.writeTrace("thp enabled always\n" + Self.faultTrace, "large")
        defer { unlink(trace) }
        let before = try #require(Self.largeSettingsUnderLock())
        #expect(before["enabled"]?.isEmpty == false)
        // line 7 of this trace is the second read
        let r = try Self.oracle(trace, evict: "7,9")
        #expect(r.status == 77 && Self.voidLines(r.err).count == 3, "\(r.status): \(r.err)")
        let after = try #require(Self.largeSettingsUnderLock())
        #expect(after == before)
    }
}
