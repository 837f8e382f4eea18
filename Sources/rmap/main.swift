import ArgumentParser
import Rmap
import RmapTrace
import RmapTools
import RmapVariants
import CShims

#if canImport(Glibc)
import Glibc
#endif

struct RmapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rmap",
        abstract: "A model of the Linux kernel's reverse mapping (rmap).",
        subcommands: [Replay.self, Demo.self, Gen.self, Fuzz.self, Dot.self, Stats.self, OracleCheckCommand.self, Record.self, WorkloadStudyCommand.self])
}

func writeStderr(_ s: String) {
    var line = s
    if !line.hasSuffix("\n") { line += "\n" }
    // write(2) on fd 2: Glibc's `stderr` is a shared mutable global to Swift 6.
    line.utf8CString.withUnsafeBufferPointer { _ = write(STDERR_FILENO, $0.baseAddress, $0.count - 1) }
}

/// The values of `--reuse`: `ReusePolicy`'s names. A String raw value, so
/// that the help lists them and shows the default by name (ArgumentParser
/// shows a CaseIterable enum's raw value, and ReusePolicy's is the number the
/// arena stores).
enum ReuseArgument: String, CaseIterable, ExpressibleByArgument {
    case none, degree, split

    var policy: ReusePolicy {
        switch self {
        case .none: return .none
        case .degree: return .degree
        case .split: return .split
        }
    }

    static var allValueDescriptions: [String: String] {
        ["none": "a child never reuses an anon_vma (2.6.34 - 3.18)",
         "degree": "reuse when degree < 2 (3.19 - 5.19; CVE-2022-42703)",
         "split": "reuse when num_children < 2 and num_active_vmas == 0 (6.0 and later)"]
    }
}

/// `--reuse` of the commands that start a new machine (demo, fuzz, dot).
struct ReuseOption: ParsableArguments {
    @Option(help: "anon_vma reuse policy.")
    var reuse: ReuseArgument = .split

    var policy: ReusePolicy { reuse.policy }
}

/// The values of `--hugetlb-resv` (issue 20): `HugetlbResvMode`'s names.
enum HugetlbResvArgument: String, CaseIterable, ExpressibleByArgument {
    case v6_18 = "6.18", fixed

    var mode: HugetlbResvMode { self == .fixed ? .fixed : .v6_18 }

    static var allValueDescriptions: [String: String] {
        ["6.18": "as Linux 6.18: a partial mremap of a private hugetlb mapping orphans the reservations of the part left behind",
         "fixed": "the reservation map splits with the VMA: the part left behind keeps its reservations and gives them back at unmap"]
    }
}

/// `--reuse` and `--frames` of the commands that may continue a saved state
/// (replay, stats): optional, so that giving one with --load is refused
/// (`validateArenaOptions`) rather than ignored.
struct ArenaOptions: ParsableArguments {
    @Option(help: "anon_vma reuse policy (default: split; with --load, the saved state's).")
    var reuse: ReuseArgument?

    @Option(help: "Page frames in the arena, 2 to \(ArenaConfig.maxCapacity) (default 262144 = 1 GiB of modelled memory); a trace that needs more gets ENOMEM.")
    var frames: UInt32?

    var policy: ReusePolicy { (reuse ?? .split).policy }

    @Option(name: .customLong("hugetlb-resv"), help: "How mremap keeps private hugetlb reservations (default: 6.18; with --load, the saved state's).")
    var hugetlbResv: HugetlbResvArgument?
}

extension KSMWalkMode: ExpressibleByArgument {
    public init?(argument: String) {
        guard let m = KSMWalkMode.named(argument) else { return nil }
        self = m
    }
    public static var allValueStrings: [String] { allCases.map(\.name) }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay traces on the model.",
        discussion: """
            Exit status: 0 when every expectation held, 1 when one failed, 2 when a trace \
            is malformed (FILE:LINE:COLUMN: error: MESSAGE on standard error) or a statement \
            cannot run on this arena (FILE:LINE: error: MESSAGE: a proc or file with the \
            arena's table full, a swap beyond the swap map).
            """)

    @Flag(help: "Print the canonical observation (one JSON line per trace).")
    var observe = false

    @OptionGroup var arena: ArenaOptions

    @Option(name: .customLong("ksm-walk"), help: "rmap_walk_ksm's pgoff range: full (6.x mainline), vmpgoff (the series 'KSM: Optimizations for rmap_walk_ksm' v4-v5) or index (its v8) (default: full; with --load, the saved state's).")
    var ksmWalk: KSMWalkMode?

    @Flag(help: "Run the invariant checker after every statement (see --check-every).")
    var check = false

    @Option(help: "With --check: the checker after every K-th statement and after the last (default 1).")
    var checkEvery: Int = 1

    @Flag(help: "Use a tiny arena (64 frames, 16 page-table pages, a few objects of each kind).")
    var tinyArena = false

    @Option(help: "Write the final state to this arena file (one trace only).")
    var save: String?

    @Option(help: "Continue from the state saved in this arena file (one trace only).")
    var load: String?

    @Argument(help: "Trace files.")
    var traces: [String]

    func validate() throws {
        if (save != nil || load != nil) && traces.count != 1 {
            throw ValidationError("--save and --load take exactly one trace")
        }
        try validateArenaOptions(arena, tinyArena: tinyArena, load: load)
        if ksmWalk != nil && load != nil {
            throw ValidationError("--ksm-walk cannot apply with --load: the loaded state keeps its KSM walk mode")
        }
        if checkEvery < 1 { throw ValidationError("--check-every must be at least 1, got \(checkEvery)") }
    }

    func run() throws {
        var config = tinyArena ? ArenaConfig.tiny : ArenaConfig.default
        if let frames = arena.frames { config.frames = frames }
        if let mode = arena.hugetlbResv { config.hugetlbResvMode = mode.mode }
        var status: Int32 = 0
        for path in traces {
            let s = RmapTools.replayFile(path: path, reuse: arena.policy, ksmWalk: ksmWalk ?? .full, config: config, check: check,
                                         checkEvery: checkEvery, load: load, save: save, observations: observe)
            if let out = s.stdout, observe { print(out) }
            for e in s.stderr { writeStderr(e) }
            status = max(status, s.status)
        }
        if status != 0 { throw ExitCode(status) }
    }
}

/// The arena options of `replay` and `stats`: refused when they cannot
/// apply, never adjusted. A loaded state keeps its own arena and reuse policy.
func validateArenaOptions(_ arena: ArenaOptions, tinyArena: Bool, load: String?) throws {
    let frames = arena.frames, reuse = arena.reuse
    if let frames, frames < 2 {
        throw ValidationError("--frames must be at least 2 (the zero page takes one frame), got \(frames)")
    }
    if let frames, frames > ArenaConfig.maxCapacity {
        throw ValidationError("--frames must be at most \(ArenaConfig.maxCapacity) (2^30 - 1, the largest arena table), got \(frames)")
    }
    if frames != nil && tinyArena {
        throw ValidationError("--frames and --tiny-arena cannot be combined (the tiny arena has \(ArenaConfig.tiny.frames) frames)")
    }
    guard load != nil else { return }
    if frames != nil { throw ValidationError("--frames cannot apply with --load: the loaded state keeps its arena") }
    if tinyArena { throw ValidationError("--tiny-arena cannot apply with --load: the loaded state keeps its arena") }
    if reuse != nil { throw ValidationError("--reuse cannot apply with --load: the loaded state keeps its reuse policy") }
    if arena.hugetlbResv != nil {
        throw ValidationError("--hugetlb-resv cannot apply with --load: the loaded state keeps its hugetlb reservation mode")
    }
}

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the built-in scenario on the default arena and print a report.")

    @OptionGroup var reuseOption: ReuseOption

    func run() throws {
        let (report, ok) = RmapTools.runDemo(reuse: reuseOption.policy)
        print(report, terminator: "")
        if !ok { throw ExitCode(1) }
    }
}

struct Gen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a random, valid trace (deterministic for a seed).")

    @Option(help: "Random seed.")
    var seed: UInt64 = 1

    @Option(help: "Number of operation lines.")
    var statements: Int = 40

    @Flag(help: "Only statements the kernel oracle can run.")
    var kernelOnly = false

    @Flag(help: "With --kernel-only: the KSM statements too (madvise mergeable/unmergeable, write value=, ksm scan), which the oracle runs through ksmd.")
    var ksm = false

    @Flag(help: "Traces about large folios: THP settings, 2 MiB-aligned regions, hugepage advice, THP and mTHP faults, COW after fork, partial munmap/mprotect/mremap/dontneed, thp shrink (and, without --kernel-only, the model-only split, unmap with PMD migration entries, migrate, device, exclusive and referenced).")
    var large = false

    @Flag(help: "With --large: a hugetlb pool and hugetlb statements (mmaps of both kinds, faults, munmap, madvise dontneed) in a window of their own.")
    var hugetlb = false

    @Flag(help: "With --large, without --kernel-only: a swap device and reclaim of large folios (THP_SWAP: swapped whole or split), as rmap fuzz --large draws them.")
    var reclaim = false

    func validate() throws {
        if large && ksm { throw ValidationError("--large and --ksm cannot be combined") }
        if hugetlb && !large { throw ValidationError("--hugetlb needs --large") }
        if reclaim && (!large || kernelOnly) { throw ValidationError("--reclaim needs --large and no --kernel-only (the oracle runs without swap)") }
    }

    func run() throws {
        var g = TraceGenerator(seed: seed, kernelOnly: kernelOnly)
        g.ksm = !kernelOnly || ksm
        g.large = large
        g.hugetlb = hugetlb
        g.largeReclaim = reclaim
        print(g.generate(statements: max(1, min(statements, 1_000_000))), terminator: "")
    }
}

struct Fuzz: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deterministic random runs with the invariant checker; a violation is shrunk to a minimal trace.")

    @Option(help: "Random seed (the same seed gives the same run).")
    var seed: UInt64 = 1

    @Option(help: "Operation lines to run.")
    var ops: Int?

    @Option(help: "Seconds to run.")
    var seconds: Double?

    @OptionGroup var reuseOption: ReuseOption
    var reuse: ReusePolicy { reuseOption.policy }

    @Option(name: .customLong("ksm-walk"), help: "rmap_walk_ksm's pgoff range: full, vmpgoff or index (see replay).")
    var ksmWalk: KSMWalkMode = .full

    @Option(name: .customLong("check-every"), help: "Run the checker after every K statements.")
    var checkEvery: Int = 1

    @Option(help: "Folder for the minimised trace of a violation.")
    var out: String = "fuzz-failures"

    @Flag(help: "Large-folio runs (traces of `rmap gen --large`: THP settings, hugepage advice, thp shrink, split, and the model-only unmap (PMD migration entries), migrate, device, exclusive, referenced).")
    var large = false

    @Flag(help: "With --large: hugetlb statements too (rmap gen --large --hugetlb).")
    var hugetlb = false

    @Option(name: .customLong("hugetlb-resv"), help: "With --hugetlb: how mremap keeps private hugetlb reservations.")
    var hugetlbResv: HugetlbResvArgument = .v6_18

    @Flag(name: .customLong("keep-going"), help: "Go on after a violation: count them all, minimise the first of each kind (written as -1, -2, ... .trace).")
    var keepGoing = false

    func validate() throws {
        if ops == nil && seconds == nil { throw ValidationError("give --ops N or --seconds N") }
        if let ops, ops < 1 { throw ValidationError("--ops must be at least 1") }
        if let seconds, !(seconds.isFinite && seconds > 0) {
            throw ValidationError("--seconds must be a positive number of seconds, got \(seconds)")
        }
        if checkEvery < 1 { throw ValidationError("--check-every must be at least 1") }
        if hugetlb && !large { throw ValidationError("--hugetlb needs --large") }
    }

    func run() throws {
        var o = FuzzOptions()
        o.seed = seed
        o.ops = ops ?? 0
        o.seconds = seconds ?? 0
        o.reuse = reuse
        o.ksmWalk = ksmWalk
        o.checkEvery = checkEvery
        o.outDirectory = out
        o.large = large
        o.hugetlb = hugetlb
        o.hugetlbResv = hugetlbResv.mode
        o.keepGoing = keepGoing
        let r = Fuzzer(options: o).run { writeStderr($0) }
        let rate = r.seconds > 0 ? Int(Double(r.ops) / r.seconds) : 0
        print("ops \(r.ops), runs \(r.runs), ops/s \(rate), violations \(r.violations)")
        if keepGoing {
            print("distinct kinds: \(r.distinct.count)")
            for (i, d) in r.distinct.enumerated() {
                print("violation \(i + 1) (\(d.kind.rawValue), in \(r.runsByKind[d.kind] ?? 0) runs): \(d.description)")
                mkdir(out, 0o755)
                let path = "\(out)/fuzz-\(large ? "large-" : "")seed-\(seed)-\(reuse.name)-\(i + 1).trace"
                if let f = fopen(path, "w") {
                    fputs(d.minimizedTrace, f)
                    fclose(f)
                    print("minimised trace: \(path)")
                } else {
                    print(d.minimizedTrace, terminator: "")
                }
            }
            if r.violations > 0 { throw ExitCode(1) }
            return
        }
        if let v = r.firstViolation, let t = r.minimizedTrace {
            print("violation: \(v)")
            mkdir(out, 0o755)
            let path = "\(out)/fuzz-\(large ? "large-" : "")seed-\(seed)-\(reuse.name).trace"
            if let f = fopen(path, "w") {
                fputs(t, f)
                fclose(f)
                print("minimised trace: \(path)")
            } else {
                print(t, terminator: "")
            }
            throw ExitCode(1)
        }
    }
}

struct Dot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a Graphviz picture of the anon_vma / AVC / VMA graph after a trace (or the demo).")

    @Option(help: "Stop after this line of the trace.")
    var at: Int?

    @OptionGroup var reuseOption: ReuseOption
    var reuse: ReusePolicy { reuseOption.policy }

    @Flag(help: "Use the demo's built-in scenario instead of a trace file.")
    var demo = false

    @Argument(help: "Trace file.")
    var trace: String?

    func run() throws {
        guard demo || trace != nil else { throw ValidationError("give a trace file or --demo") }
        let name = demo ? "demo.trace" : trace!
        let parsed: Trace
        do {
            if demo {
                parsed = try TraceParser.parse(demoTrace, file: name)
            } else {
                // The same reader, limits and messages as replay.
                switch RmapTools.readFileBytes(name) {
                case .failure(let e): writeStderr(e.message); throw ExitCode(2)
                case .success(let bytes): parsed = try TraceParser.parse(bytes: bytes, file: name)
                }
            }
        } catch let e as TraceError {
            writeStderr(e.description)
            throw ExitCode(2)
        }
        let m = try Machine(reuse: reuse)
        var out = ReplayOutcome()
        for tl in parsed.lines where at == nil || tl.line <= at! {
            m.step(tl, file: name, into: &out)
            if let e = out.error { writeStderr(e); throw ExitCode(2) }  // a statement this arena cannot run
        }
        print(m.dot(title: "\(name)\(at.map { " at line \($0)" } ?? "") (reuse: \(reuse.name))"), terminator: "")
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a trace and print statistics of the final state: objects and bytes per table, the anon_vma forest, and the rmap walk cost (VMAs visited per frame against those that map it).",
        discussion: "Exit status as for replay; the statistics are printed whatever the expectations said.")

    @OptionGroup var arena: ArenaOptions

    @Flag(help: "Print one JSON object instead of the text report.")
    var json = false

    @Option(help: "Continue from the state saved in this arena file.")
    var load: String?

    @Argument(help: "Trace file.")
    var trace: String

    func validate() throws {
        try validateArenaOptions(arena, tinyArena: false, load: load)
    }

    func run() throws {
        var config = ArenaConfig.default
        if let frames = arena.frames { config.frames = frames }
        if let mode = arena.hugetlbResv { config.hugetlbResvMode = mode.mode }
        let s = RmapTools.replayFile(path: trace, reuse: arena.policy, config: config, load: load, withStats: true)
        for e in s.stderr { writeStderr(e) }
        if let st = s.stats { print(json ? st.json : st.text, terminator: json ? "\n" : "") }
        if s.status != 0 { throw ExitCode(s.status) }
    }
}

struct OracleCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oracle-check",
        abstract: "Compare the model with the kernel oracle on the kernel corpus and on random kernel-only traces.",
        discussion: """
            Each difference is minimised by delta debugging and written to the --out folder \
            (seed-N.trace, or the corpus file's name) with both outputs in its header. The last \
            line is `N passed, N failed` (`, N skipped` appended when any). Exit status: 0 all \
            agreed, 1 a difference, 77 the oracle cannot run here (not root, PFNs hidden).
            """)

    @Option(help: "The kernel oracle binary (default: rmap-oracle next to this executable).")
    var oracle: String?

    @Option(help: "Random traces to check.")
    var count: Int = 500

    @Option(name: .customLong("first-seed"), help: "Seed of the first random trace.")
    var firstSeed: UInt64 = 1

    @Option(help: "Operation lines per random trace.")
    var statements: Int = 40

    @Option(help: "Folder for the minimised traces of differences.")
    var out: String = "oracle-failures"

    @Option(help: "Folder of kernel-side corpus traces checked first (empty: none; default Tests/Corpus/kernel, none with --large).")
    var corpus: String?

    @Option(help: "Parallel workers.")
    var jobs: Int = 2

    @Flag(help: "Random traces with the KSM statements too (the oracle drives ksmd; one KSM trace at a time).")
    var ksm = false

    @Flag(help: "Random traces about large folios (rmap gen --large --kernel-only; the oracle runs them one at a time). The corpus is then none unless --corpus is given; the skips (exit 77) are counted and reported.")
    var large = false

    @Flag(help: "With --large: hugetlb statements too (rmap gen --large --hugetlb --kernel-only).")
    var hugetlb = false

    @Option(name: .customLong("minimise-budget"), help: "Most candidate traces run while minimising one difference.")
    var minimiseBudget: Int = 3000

    @Option(name: .customLong("foreign-hugetlb-resv"), help: "Given to the oracle: skip (the default: a hugetlb trace on a machine holding hugetlb reservations of others is 77) or compensate (run it with the pool sized over them; less exact).")
    var foreignHugetlbResv: String?

    func validate() throws {
        if let v = foreignHugetlbResv, v != "skip" && v != "compensate" {
            throw ValidationError("--foreign-hugetlb-resv must be skip or compensate")
        }
        if large && ksm { throw ValidationError("--large and --ksm cannot be combined") }
        if hugetlb && !large { throw ValidationError("--hugetlb needs --large") }
        if minimiseBudget < 0 { throw ValidationError("--minimise-budget must not be negative") }
        if count < 0 { throw ValidationError("--count must not be negative") }
        if statements < 1 || statements > 1_000_000 { throw ValidationError("--statements must be in 1...1000000") }
        if jobs < 1 || jobs > 256 { throw ValidationError("--jobs must be in 1...256") }
    }

    func run() throws {
        var o = OracleCheckOptions(oraclePath: oracle ?? defaultOraclePath())
        o.count = count
        o.firstSeed = firstSeed
        o.statements = statements
        o.outDirectory = out
        o.corpusDirectory = corpus ?? (large ? "" : "Tests/Corpus/kernel")
        o.jobs = jobs
        o.ksm = ksm
        o.large = large
        o.hugetlb = hugetlb
        o.minimiseBudget = minimiseBudget
        if let v = foreignHugetlbResv { o.oracleArguments = ["--foreign-hugetlb-resv", v] }
        let r = OracleCheck.run(o, emit: { print($0); fflush(nil) }, progress: { writeStderr($0) })
        if r.status == 0 || r.status == 1 {
            print("checked in \((r.seconds * 10).rounded() / 10) s with \(jobs) jobs")
            if r.randomRun > 0 {
                let pct = (Double(r.randomSkipped) * 1000 / Double(r.randomRun)).rounded() / 10
                print("random traces: \(r.randomRun), skipped by the oracle (exit 77, cannot run here): \(r.randomSkipped) (\(pct)%)")
            }
            for (why, n) in r.skipReasons { print("  skipped \(n)x: \(why)") }
            print(r.summary)
        }
        if r.status != 0 { throw ExitCode(r.status) }
    }
}

// A fatal signal sent from outside (timeout -s ABRT on a hung run) must end the
// process after the Swift backtracer has printed its backtrace (rmap_signals.h).
_ = rmap_die_on_fatal_signals()
RmapCommand.main()

/// `rmap record [--out FILE] -- CMD [ARGS...]` (docs/recording.md).
struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command (as root) under the kernel's tracepoints and write what it did to memory as a trace.",
        discussion: """
            Follows the command and every descendant: mmap, munmap, mprotect, mremap, madvise, \
            brk, the mlock family, every page fault, fork, exec and exit, through a private \
            tracefs instance that is removed however the recorder ends. Prints \
            `recorded N statements, M skipped: ...` on standard error. Exit status: 0 when the \
            trace was written (whatever the command's status, which the trace header records), \
            1 when recording failed.
            """)

    @Option(help: "Write the trace here (default: standard output).")
    var out: String?

    @Option(help: "The command as the trace header names it (default: the command line).")
    var label: String?

    @Option(help: "Per-CPU trace buffer in KiB (a recording that overflows it fails).")
    var bufferKb: Int = 65536

    @Option(help: "Also write the raw tracefs text here (and the seccomp snapshots to FILE.snapshots).")
    var raw: String?

    @Argument(parsing: .captureForPassthrough, help: "-- CMD [ARGS...]")
    var command: [String] = []

    func run() throws {
        var argv = command
        if argv.first == "--" { argv.removeFirst() }
        guard !argv.isEmpty else { throw ValidationError("give a command: rmap record [--out FILE] -- CMD [ARGS...]") }
        let outcome: RecordOutcome
        do {
            outcome = try recordCommand(argv, label: label, bufferKB: bufferKb, rawPath: raw)
        } catch {
            writeStderr("\(error)")
            throw ExitCode(1)
        }
        if let out {
            guard let f = fopen(out, "w") else { writeStderr("rmap record: cannot write \(out)"); throw ExitCode(1) }
            fputs(outcome.trace, f)
            fclose(f)
        } else {
            print(outcome.trace, terminator: "")
        }
        writeStderr(outcome.summary)
    }
}

/// `rmap workload-study TRACE...` (docs/recording.md).
struct WorkloadStudyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workload-study",
        abstract: "Measure a recorded workload: replay throughput, the rmap designs (anon_vma, PV lists, full scan) at its busiest moment, fork and exit with and without PV lists, and the model's RSS at each exit against the kernel's rss_stat.")

    @Option(help: "Walk at most this many of the frames mapped at the peak.")
    var maxWalkFrames: Int = 2000

    @Flag(help: "List the kernel's and the model's RSS counters at each exit.")
    var perExit = false

    @Argument(help: "Trace files (as rmap record writes them).")
    var traces: [String]

    func run() throws {
        for t in traces {
            do {
                let s = try studyWorkload(path: t, maxWalkFrames: maxWalkFrames)
                print(workloadStudyReport(name: t, s, perExit: perExit))
            } catch {
                writeStderr("\(error)")
                throw ExitCode(2)
            }
        }
    }
}
