import Testing
import Foundation
@testable import RmapTools
@testable import RmapTrace
@testable import RmapVariants
import RmapTestSupport

/// The recorded real workloads (Tests/Corpus/workloads/*.trace.gz, `make
/// workloads`): each replays on the model with the invariant checker clean,
/// and on this kernel (rmap-oracle) to the same canonical observation.
let workloadNames = ["cc-O2", "git-commit", "make-j2", "python-import", "shell-loop", "threads"]

/// The decompressed trace, in a temporary file.
func workloadTrace(_ name: String) throws -> URL {
    let gz = packageRoot.appendingPathComponent("Tests/Corpus/workloads/\(name).trace.gz")
    let r = try run("/bin/sh", ["-c", "gzip -dc \"$0\"", gz.path])
    #expect(r.status == 0, "gzip -dc \(gz.path): \(r.err)")
    // A name of its own: the replay and oracle suites decompress the same workload at once.
    let url = URL(fileURLWithPath: NSTemporaryDirectory() + "rmap-workload-\(getpid())-\(UInt64.random(in: 0...UInt64.max))-\(name).trace")
    try r.out.write(to: url, atomically: true, encoding: .utf8)
    return url
}

@Suite struct WorkloadReplayTests {
    @Test func theCorpusHoldsEveryWorkload() {
        let dir = packageRoot.appendingPathComponent("Tests/Corpus/workloads")
        let have = Set(((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []))
        for n in workloadNames { #expect(have.contains("\(n).trace.gz"), "missing \(n).trace.gz") }
    }

    @Test(arguments: workloadNames)
    func replaysCleanly(_ name: String) throws {
        let url = try workloadTrace(name)
        defer { try? FileManager.default.removeItem(at: url) }
        let text = try String(contentsOf: url, encoding: .utf8)
        let lines = text.split(separator: "\n")
        // The header names the command and the machine, and its count is true.
        #expect(lines.first?.hasPrefix("# rmap record -- ") == true)
        #expect(lines.contains { $0.hasPrefix("# machine: ") })
        let summary = try #require(lines.first { $0.hasPrefix("# recorded ") && $0.dropFirst(11).first?.isNumber == true })
        let statements = lines.filter { !$0.hasPrefix("#") && !$0.isEmpty }.count
        #expect(summary.hasPrefix("# recorded \(statements) statements, "), "\(summary) but \(statements) statements")
        // Ends each process with a bounded observe, then its exit.
        #expect(lines.contains { $0.hasPrefix("observe ") })
        let s = replayFile(path: url.path, check: true, checkEvery: 50)
        #expect(s.stderr.isEmpty, "\(s.stderr.prefix(10).joined(separator: "\n"))")
        #expect(s.status == 0)
        #expect(s.stdout?.contains("\"observations\":[[") == true)
    }
}

@Suite(.enabled(if: canReadPFNs && oraclePath != nil, "needs root, readable PFNs and the rmap-oracle binary"))
struct WorkloadOracleTests {
    @Test(arguments: workloadNames)
    func modelAgreesWithKernel(_ name: String) throws {
        let url = try workloadTrace(name)
        defer { try? FileManager.default.removeItem(at: url) }
        let model = replayFile(path: url.path)
        let kernel = try run(oraclePath!, [url.path])
        #expect(kernel.status != 77, "the oracle skipped \(name): \(kernel.err)")
        #expect(model.stdout.map { $0 + "\n" } == kernel.out, "\(name)\nmodel:  \((model.stdout ?? "").prefix(2000))\nkernel: \(kernel.out.prefix(2000))")
        #expect(model.status == kernel.status)
    }
}

/// `rmap workload-study` on a recorded workload: the three designs find the
/// same mappings, and every exit the kernel counted is compared.
@Suite struct WorkloadStudyTests {
    @Test func threadsWorkload() throws {
        let url = try workloadTrace("threads")
        defer { try? FileManager.default.removeItem(at: url) }
        let s = try studyWorkload(path: url.path, maxWalkFrames: 300)
        let peak = try #require(s.peak)
        #expect(peak.mappedPTEs > 0 && s.peakFrames > 0 && s.walkedFrames > 0)
        #expect(peak.pvEntries == peak.mappedPTEs)        // one PV entry per PTE
        #expect(s.walks.map(\.design) == RmapDesign.allCases)
        let found = Set(s.walks.map(\.mapped))
        #expect(found.count == 1, "the designs found different mappings: \(s.walks)")
        #expect(s.walks.first { $0.design == .anonVMA }!.visits >= s.walks.first { $0.design == .pvLists }!.visits)
        #expect(s.forks == 1 && s.exits == 2)
        let text = try String(contentsOf: url, encoding: .utf8)
        let comments = text.split(separator: "\n").filter { $0.contains(" kernel rss_stat before ") }.count
        #expect(s.rss.count == comments && comments == 2)
    }
}

/// The translation, on events and snapshots made by hand.
@Suite struct RecordTranslatorTests {
    func ev(_ tid: Int32, _ k: RecordedEvent.Kind) -> RecordedEvent { RecordedEvent(tid: tid, line: 0, kind: k) }

    func execSnapshot(tid: Int32) -> CallSnapshot {
        var s = CallSnapshot(tid: tid, nr: 12, args: [0, 0, 0, 0, 0, 0])
        s.maps = [
            .init(start: 0x5555_0000_0000, end: 0x5555_0000_2000, perms: "r-xp", offset: 0x1000, inode: 7, dev: "fe:00", path: "/nonexistent/prog"),
            .init(start: 0x7fff_0000_0000, end: 0x7fff_0000_4000, perms: "rw-p", offset: 0, inode: 0, dev: "00:00", path: "[stack]"),
            .init(start: 0x7fff_1000_0000, end: 0x7fff_1000_2000, perms: "r-xp", offset: 0, inode: 0, dev: "00:00", path: "[vdso]"),
        ]
        s.present = [(0x7fff_0000_3000, 0x7fff_0000_4000)]
        return s
    }

    func translate(_ events: [RecordedEvent], _ snaps: [Int32: [CallSnapshot]]) -> (String, RecordTranslator) {
        var t = RecordTranslator(snapshots: snaps)
        t.translate(events)
        return (t.render(header: []).text, t)
    }

    @Test func execForkThreadsBrkAndFaults() throws {
        let events: [RecordedEvent] = [
            ev(10, .prepareExec),
            ev(10, .fault(address: 0x7fff_0000_2ff8, write: true, user: false)),   // create_elf_tables
            ev(10, .exec(filename: "/nonexistent/prog", pid: 10, oldPid: 10)),
            ev(10, .fault(address: 0x5555_0000_0010, write: false, user: true)),
            ev(10, .sysEnter(name: "brk", args: [0])),
            ev(10, .sysExit(name: "brk", ret: 0x5555_1000_0000)),
            ev(10, .sysEnter(name: "brk", args: [0x5555_1000_3000])),
            ev(10, .sysExit(name: "brk", ret: 0x5555_1000_3000)),
            ev(10, .newTask(pid: 11, cloneFlags: 0x3d0f00)),                       // a thread
            ev(11, .fault(address: 0x5555_1000_0000, write: true, user: true)),
            ev(11, .fault(address: 0x5555_1000_1000, write: true, user: true)),
            ev(10, .newTask(pid: 12, cloneFlags: 0x1200011)),                      // fork
            ev(12, .fault(address: 0x5555_1000_2000, write: false, user: true)),
            ev(12, .fault(address: 0x7fff_1000_0000, write: false, user: true)),   // vdso
            ev(12, .exit(pid: 12)),
            ev(11, .exit(pid: 11)),
            ev(10, .exit(pid: 10)),
        ]
        let (text, t) = translate(events, [10: [execSnapshot(tid: 10), CallSnapshot(tid: 10, nr: 12, args: [0x5555_1000_3000, 0, 0, 0, 0, 0])]])
        let body = text.split(separator: "\n").map(String.init)
        #expect(body.contains("file prog 3"))   // gone: sized by its mapping (pgoff 1 + 2 pages)
        let expected = [
            "proc p1",
            "p1 mmap 0x455500000000 2 rx file-private:prog@1",
            "p1 mmap 0x6fff00000000 4 rw anon-private",
            "p1 write 0x6fff00003000",               // present at exec, no fault: the kernel wrote it
            "p1 write 0x6fff00002000",               // the loader's fault, after the mappings
            "p1 read 0x455500000000",
            "p1 mmap 0x455510000000 3 rw anon-private",   // brk growth
            "p1 write 0x455510000000 2",             // the thread's faults, folded into p1 and merged
            "p2 = fork p1",
            "p2 read 0x455510002000",
        ]
        let ops = body.filter { !$0.hasPrefix("#") && !$0.hasPrefix("file ") && !$0.hasPrefix("observe ") && !$0.isEmpty }
        #expect(Array(ops.prefix(expected.count)) == expected, "\(ops)")
        #expect(ops.suffix(2) == ["p2 exit", "p1 exit"])
        #expect(t.skipped["faults on special mappings (vdso, vvar)"] == 1)
        #expect(t.skipped["special mappings at exec ([vdso])"] == 1)
        #expect(t.processes == 2)
        // Each process is observed before its exit.
        #expect(body.contains("observe p2 0x455500000000 2, p2 0x455510000000 3, p2 0x6fff00000000 4"))
        // The trace parses.
        _ = try TraceParser.parse(text, file: "t.trace")
    }

    @Test func mmapFixedFileSharedMremapMadviseAndSkips() throws {
        var mm = CallSnapshot(tid: 20, nr: 9, args: [0, 0x3000, 1, 0x1, 3, 0])
        mm.file = .init(size: 0x2800, dev: 1, inode: 99, path: "/data/my file+1.bin")
        let events: [RecordedEvent] = [
            ev(20, .exec(filename: "/x", pid: 20, oldPid: 20)),
            ev(20, .sysEnter(name: "mmap", args: [0, 0x3000, 1, 0x1, 3, 0])),
            ev(20, .sysExit(name: "mmap", ret: 0x7f00_0000_0000)),
            ev(20, .sysEnter(name: "mmap", args: [0x7f00_0000_0000, 0x1000, 3, 0x32, 0xffff_ffff, 0])),
            ev(20, .sysExit(name: "mmap", ret: 0x7f00_0000_0000)),
            ev(20, .sysEnter(name: "mremap", args: [0x7f00_0000_1000, 0x1000, 0x2000, 1, 0])),
            ev(20, .sysExit(name: "mremap", ret: 0x7f00_0010_0000)),
            ev(20, .sysEnter(name: "madvise", args: [0x7f00_0010_0000, 0x2000, 4])),
            ev(20, .sysExit(name: "madvise", ret: 0)),
            ev(20, .sysEnter(name: "madvise", args: [0x7f00_0010_0000, 0x2000, 3])),   // willneed
            ev(20, .sysExit(name: "madvise", ret: 0)),
            ev(20, .sysEnter(name: "munmap", args: [0x9000_0000_0000, 0x1000])),       // beyond the window
            ev(20, .sysExit(name: "munmap", ret: 0)),
            ev(20, .sysEnter(name: "mprotect", args: [0x7f00_0000_0000, 0x1000, 1])),
            ev(20, .sysExit(name: "mprotect", ret: -12)),                              // ENOMEM: nothing changed
            ev(20, .sysEnter(name: "mmap", args: [0x400000, 0x1000, 3, 0x22, 0xffff_ffff, 0])),
            ev(20, .sysExit(name: "mmap", ret: 0x400000)),                             // a non-PIE address moves up
            ev(20, .exit(pid: 20)),
        ]
        let (text, t) = translate(events, [20: [mm, CallSnapshot(tid: 20, nr: 9, args: [0x7f00_0000_0000, 0x1000, 3, 0x32, 0xffff_ffff, 0])]])
        let ops = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.hasPrefix("observe ") && !$0.isEmpty }
        #expect(ops == [
            "file my_file_1.bin 3",
            "proc p1",
            "p1 mmap 0x6f0000000000 3 r file-shared:my_file_1.bin@0",
            "p1 munmap 0x6f0000000000 1",                 // MAP_FIXED over a mapping
            "p1 mmap 0x6f0000000000 1 rw anon-private",
            "p1 mremap 0x6f0000001000 1 2 0x6f0000100000",
            "p1 madvise 0x6f0000100000 2 dontneed",
            "p1 mmap 0x100000400000 1 rw anon-private",
            "p1 exit",
        ], "\(ops)")
        #expect(t.skipped["madvise willneed (not in the trace language)"] == 1)
        #expect(t.skipped["munmap calls outside the address window"] == 1)
        #expect(t.skipped["failed mprotect calls (the kernel changed nothing)"] == 1)
        #expect(t.skippedTotal == 3)
        let summary = t.summary(statements: 9)
        #expect(summary.hasPrefix("recorded 9 statements, 3 skipped: "))
        _ = try TraceParser.parse(text, file: "t.trace")
    }

    @Test func rssStatFollowsTheMMNotTheTask() {
        // dup_mmap fills the child's counters from the parent's context (curr=0):
        // they belong to the child once one of its own events names its mm_id.
        let events: [RecordedEvent] = [
            ev(40, .exec(filename: "/x", pid: 40, oldPid: 40)),
            ev(40, .rss(mmID: 1, curr: true, member: 1, bytes: 8192)),
            ev(40, .newTask(pid: 41, cloneFlags: 0x1200011)),
            ev(40, .rss(mmID: 2, curr: false, member: 1, bytes: 8192)),
            ev(40, .rss(mmID: 2, curr: false, member: 0, bytes: 4096 * 3)),
            ev(41, .rss(mmID: 2, curr: true, member: 1, bytes: 4096 * 5)),
            ev(41, .exit(pid: 41)),
            ev(40, .rss(mmID: 2, curr: false, member: 1, bytes: 0)),   // exit_mmap, after the exit event
            // A vfork child's exec: its new mm's events (curr) before sched_process_exec
            // are not its parent's.
            ev(40, .newTask(pid: 42, cloneFlags: 0x4111)),
            ev(42, .prepareExec),
            ev(42, .rss(mmID: 3, curr: true, member: 1, bytes: 4096 * 7)),
            ev(42, .exec(filename: "/y", pid: 42, oldPid: 42)),
            // A fork child's exec: exec_mmap tears its old mm down before
            // sched_process_exec; its counters are those after acct_arg_size(bprm, 0)
            // (exec accounts the new stack's argument pages to the old mm while
            // it copies them: +1 before sched_prepare_exec, -1 just after).
            ev(42, .newTask(pid: 43, cloneFlags: 0x1200011)),
            ev(43, .rss(mmID: 4, curr: true, member: 1, bytes: 4096 * 9)),
            ev(43, .rss(mmID: 6, curr: false, member: 1, bytes: 4096)),      // get_arg_page in the new mm
            ev(43, .rss(mmID: 4, curr: true, member: 1, bytes: 4096 * 10)),  // acct_arg_size(bprm, 1)
            ev(43, .prepareExec),
            ev(43, .rss(mmID: 4, curr: true, member: 1, bytes: 4096 * 9)),   // acct_arg_size(bprm, 0)
            ev(43, .rss(mmID: 4, curr: false, member: 1, bytes: 0)),
            ev(43, .rss(mmID: 6, curr: true, member: 1, bytes: 4096 * 2)),   // the ELF loader's padzero
            ev(43, .exec(filename: "/z", pid: 43, oldPid: 43)),
            ev(43, .exit(pid: 43)),
            ev(42, .exit(pid: 42)),
            ev(40, .exit(pid: 40)),
        ]
        let (text, t) = translate(events, [:])
        #expect(text.contains("# p3 kernel rss_stat before exit: file=0 anon=7 swap=0 shmem=0 pages"), "\(text)")
        #expect(text.contains("# p4 kernel rss_stat before exec: file=0 anon=9 swap=0 shmem=0 pages"), "\(text)")
        #expect(text.contains("# p2 kernel rss_stat before exit: file=3 anon=5 swap=0 shmem=0 pages"), "\(text)")
        #expect(text.contains("# p1 kernel rss_stat before exit: file=0 anon=2 swap=0 shmem=0 pages"), "\(text)")
        #expect(text.contains("# p5 kernel rss_stat before exit: file=0 anon=2 swap=0 shmem=0 pages"), "\(text)")
        #expect(t.exitRSS.count == 5)
    }

    @Test func vforkChildSharesItsParentsProcessUntilExec() {
        let events: [RecordedEvent] = [
            ev(30, .exec(filename: "/bin/sh", pid: 30, oldPid: 30)),
            ev(30, .newTask(pid: 31, cloneFlags: 0x4111)),   // CLONE_VM | CLONE_VFORK | SIGCHLD
            ev(31, .exec(filename: "/bin/true", pid: 31, oldPid: 31)),
            ev(31, .exit(pid: 31)),
            ev(30, .exit(pid: 30)),
        ]
        let (text, _) = translate(events, [:])
        let ops = text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
        // No fork: the child's exec leaves p1 to its parent and starts p2.
        #expect(ops == ["proc p1", "proc p2", "p2 exit", "p1 exit"], "\(ops)")
    }

    @Test func decodesTracefsText() throws {
        let text = """
        # tracer: nop
        #
        # entries-in-buffer/entries-written: 5/5   #P:2
                    sh-1784    [001] d.... 16624.442341: page_fault_kernel: address=0x7fb2f0a8ea10 ip=__put_user_4 error_code=0x3
                    sh-1784    [001] d.... 16624.442350: page_fault_user: address=0x7fb2f0b65353 ip=0x7fb2f0b65353 error_code=0x14
             my task-12-1785    [001] ..... 16624.442970: sys_mmap(addr: 0, len: 0x2000, prot: 3, flags: 0x22, fd: 0xffffffff, off: 0)
                 sleep-1785    [001] ..... 16624.442970: sys_mmap -> 0x55b167638000
                    sh-1784    [001] ..... 16624.442640: task_newtask: pid=1785 comm=bash clone_flags=1200000 oom_score_adj=0
                    sh-1784    [001] ...1. 16624.442355: rss_stat: mm_id=2112655554 curr=1 type=MM_ANONPAGES size=65536B
        """
        let d = try decodeTraceText(text)
        #expect(d.entries?.inBuffer == 5 && d.entries?.written == 5)
        #expect(d.events.count == 6)
        guard case .fault(let a, let w, let u) = d.events[0].kind else { Issue.record("not a fault"); return }
        #expect(a == 0x7fb2f0a8ea10 && w && !u)
        guard case .fault(_, let w2, let u2) = d.events[1].kind else { Issue.record("not a fault"); return }
        #expect(!w2 && u2)
        guard case .sysEnter(let n, let args) = d.events[2].kind else { Issue.record("not sys_enter"); return }
        #expect(d.events[2].tid == 1785 && n == "mmap" && args == [0, 0x2000, 3, 0x22, 0xffff_ffff, 0])
        guard case .sysExit(_, let ret) = d.events[3].kind else { Issue.record("not sys_exit"); return }
        #expect(ret == 0x55b167638000)
        guard case .newTask(let pid, let flags) = d.events[4].kind else { Issue.record("not task_newtask"); return }
        #expect(pid == 1785 && flags == 0x1200000)
        guard case .rss(_, let curr, let member, let bytes) = d.events[5].kind else { Issue.record("not rss_stat"); return }
        #expect(curr && member == 1 && bytes == 65536)
        #expect(throws: RecordedEventError.self) {
            _ = try decodeTraceText("  sh-1 [000] ..... 1.0: sys_mmap(addr: zz)\n")
        }
    }
}

/// `rmap record` end to end on this machine (root): a short command is
/// recorded, replays with the checker, agrees with the oracle, and the
/// machine's tracing state is as it was (no instance left, tracefs mounted
/// or not as before).
@Suite(.enabled(if: canReadPFNs && oraclePath != nil, "needs root, readable PFNs and the rmap-oracle binary"))
struct RecordLiveTests {
    func tracingState() -> (mounted: Bool, instances: [String]) {
        let mounted = ((try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? "")
            .split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first == "/sys/kernel/tracing" }
        let inst = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/kernel/tracing/instances")) ?? []
        return (mounted, inst.filter { $0.hasPrefix("rmap-record-") }.sorted())
    }

    @Test func recordsAShortCommand() throws {
        let before = tracingState()
        let raw = NSTemporaryDirectory() + "rmap-record-live-\(getpid()).raw"
        defer { unlink(raw); unlink(raw + ".snapshots") }
        let o = try recordCommand(["/bin/sh", "-c", "/bin/true; /bin/true"], bufferKB: 4096, rawPath: raw)
        let after = tracingState()
        // --raw: the tracefs text the trace was made from (as many execs as the
        // trace has exec'd processes) and the /proc snapshots.
        let rawText = try String(contentsOfFile: raw, encoding: .utf8)
        #expect(rawText.contains("sched_process_exec:") && rawText.contains("rss_stat:"))
        let rawExecs = try decodeTraceText(rawText).events.filter { if case .exec = $0.kind { return true }; return false }.count
        let traceExecs = o.trace.split(separator: "\n").filter { $0.hasPrefix("# p") && $0.contains(": exec ") }.count
        #expect(rawExecs == traceExecs && rawExecs >= 3, "\(rawExecs) execs in the raw text, \(traceExecs) in the trace")
        #expect(try String(contentsOfFile: raw + ".snapshots", encoding: .utf8).hasPrefix("N "))
        #expect(after.mounted == before.mounted && after.instances == before.instances, "tracing state changed: \(before) -> \(after)")
        #expect(o.status == 0)
        // sh, and each /bin/true (dash forks or vforks it, then it execs).
        #expect(o.processes >= 3, "\(o.trace.prefix(3000))")
        #expect(o.faults > 50)
        #expect(o.summary.hasPrefix("recorded \(o.statements) statements, \(o.skipped) skipped"))
        #expect(o.trace.contains("# machine: ") && o.trace.contains("# THP during the recording: "))
        let url = URL(fileURLWithPath: NSTemporaryDirectory() + "rmap-record-live-\(getpid()).trace")
        try o.trace.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        let model = replayFile(path: url.path, check: true)
        #expect(model.status == 0 && model.stderr.isEmpty, "\(model.stderr.prefix(5))")
        let kernel = try run(oraclePath!, [url.path])
        #expect(model.stdout.map { $0 + "\n" } == kernel.out, "model: \((model.stdout ?? "").prefix(1500))\nkernel: \(kernel.out.prefix(1500))")
    }
}
