import Rmap
import RmapTrace
#if canImport(Glibc)
import Glibc
#endif

/// Options of a fuzz campaign (`rmap fuzz`).
public struct FuzzOptions: Sendable {
    public var seed: UInt64 = 1
    /// Stop after this many operation lines (0: no limit).
    public var ops: Int = 100_000
    /// Stop after this many seconds (0: no limit).
    public var seconds: Double = 0
    public var reuse: ReusePolicy = .split
    /// rmap_walk_ksm's pgoff range (`--ksm-walk`).
    public var ksmWalk: KSMWalkMode = .full
    /// Run the checker after every K statements.
    public var checkEvery: Int = 1
    /// Where a minimised trace is written.
    public var outDirectory: String = "fuzz-failures"
    /// Operation lines per generated run (each run is a fresh machine).
    public var statementsPerRun: Int = 300
    /// Large-folio runs: traces of `rmap gen --large` (THP settings, hugepage
    /// advice, `thp shrink`, `split`) on arenas with room for THPs.
    public var large = false
    /// With `large`: hugetlb statements too (`rmap gen --large --hugetlb`).
    public var hugetlb = false
    /// Go on after a violation (the run that showed it ends there): every
    /// violation is counted, and the first of each kind is minimised.
    public var keepGoing = false
    /// Shrink a violation's trace (off: the trace up to the violation, as is).
    public var shrink = true
    /// How mremap keeps private hugetlb reservations (`--hugetlb-resv`).
    public var hugetlbResv: HugetlbResvMode = .v6_18
    public init() {}
}

/// The outcome of a campaign.
public struct FuzzReport: Sendable {
    public var ops = 0
    public var runs = 0
    public var seconds = 0.0
    public var violations = 0
    /// The first violation and the minimised trace that shows it.
    public var firstViolation: String?
    /// The invariant the first violation broke (nil when the generator's
    /// trace did not parse).
    public var firstViolationKind: CheckerViolation.Kind?
    public var minimizedTrace: String?
    public var minimizedPath: String?
    /// With `keepGoing`: the first violation of each kind, in the order
    /// found, each with its minimised trace.
    public var distinct: [(kind: CheckerViolation.Kind, description: String, minimizedTrace: String)] = []
    /// With `keepGoing`: the runs that ended in a violation, by its kind.
    public var runsByKind: [CheckerViolation.Kind: Int] = [:]
}

/// Deterministic random runs over the model with the invariant checker.
///
/// Each run is a trace from `TraceGenerator` (all forward paths and the
/// model-only reverse operations, valid and failing calls) replayed on a fresh
/// machine whose arena is sometimes tiny, so arena exhaustion (ENOMEM with the
/// state unchanged) is exercised too. The checker runs every `checkEvery`
/// statements. The first violation stops the campaign; its trace is shrunk
/// by delta debugging to a minimal trace that still violates an invariant.
/// The same seed gives the same runs.
public struct Fuzzer {
    public var options: FuzzOptions
    public init(options: FuzzOptions) { self.options = options }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// The arena of run `i`: every fourth run is small enough to run out.
    static func config(_ rng: inout SplitMix64, large: Bool = false) -> ArenaConfig {
        var c = ArenaConfig()
        c.frames = 4096
        c.ptPages = 512
        c.mms = 64
        c.vmas = 1024
        c.anonVMAs = 1024
        c.avcs = 2048
        c.files = 16
        c.swapSlots = 256
        if large {
            c.frames = 8192
            c.swapSlots = 4096  // room for the generator's `swap` (THP_SWAP clusters of 512)
        }
        if rng.next() % 4 == 0 {
            // Large runs: sometimes room for a THP or two, sometimes not.
            c.frames = large ? 64 + UInt32(rng.next() % 1400) : 8 + UInt32(rng.next() % 120)
            c.ptPages = 6 + UInt32(rng.next() % 40)
            c.vmas = 8 + UInt32(rng.next() % 40)
            c.anonVMAs = 4 + UInt32(rng.next() % 24)
            c.avcs = 8 + UInt32(rng.next() % 48)
            c.mms = 4 + UInt32(rng.next() % 8)
        }
        return c
    }

    /// Runs the trace; the first violation and the line it followed, if any.
    static func firstViolation(_ trace: Trace, config: ArenaConfig, reuse: ReusePolicy, ksmWalk: KSMWalkMode = .full, every: Int,
                               stopAt limit: Int = Int.max) -> (line: Int, violation: CheckerViolation, statements: Int)? {
        guard let m = try? Machine(config: config, reuse: reuse, ksmWalk: ksmWalk) else { return nil }
        var out = ReplayOutcome()
        var n = 0
        for tl in trace.lines {
            m.step(tl, file: trace.file, into: &out)
            n += 1
            if n % max(1, every) == 0 || n == trace.lines.count {
                if let v = m.checkViolations().first { return (tl.line, v, n) }
            }
            if n >= limit { break }
        }
        return nil
    }

    /// Runs the campaign. `progress` gets a line now and then on long runs.
    public func run(progress: (String) -> Void = { _ in }) -> FuzzReport {
        var report = FuzzReport()
        let t0 = Fuzzer.now()
        var lastProgress = t0
        var master = SplitMix64(seed: options.seed)
        while true {
            if options.ops > 0 && report.ops >= options.ops { break }
            if options.seconds > 0 && Fuzzer.now() - t0 >= options.seconds { break }
            let runSeed = master.next()
            var cfgRNG = SplitMix64(seed: runSeed ^ 0x5eed)
            var config = Fuzzer.config(&cfgRNG, large: options.large)
            config.hugetlbResvMode = options.hugetlbResv
            var n = options.statementsPerRun
            if options.ops > 0 { n = min(n, options.ops - report.ops) }
            var g = TraceGenerator(seed: runSeed, kernelOnly: false)
            g.ksm = true
            g.large = options.large
            g.hugetlb = options.hugetlb
            g.hugetlbMremap = options.hugetlb  // model-only, never drawn for the oracle
            g.largeReclaim = options.large    // model-only: swap and reclaim of large folios
            let text = g.generate(statements: max(1, n))
            guard let trace = try? TraceParser.parse(text, file: "fuzz.trace") else {
                report.violations += 1
                report.firstViolation = "the generator wrote a trace the parser rejects (seed \(runSeed))"
                report.minimizedTrace = text
                break
            }
            report.runs += 1
            let opsInRun = trace.lines.filter { if case .op = $0.statement { return true } else { return false } }.count
            if let v = Fuzzer.firstViolation(trace, config: config, reuse: options.reuse, ksmWalk: options.ksmWalk, every: options.checkEvery) {
                report.violations += 1
                report.ops += trace.lines.prefix(v.statements).filter { if case .op = $0.statement { return true } else { return false } }.count
                let description = "run seed \(runSeed): after line \(v.line): \(v.violation)"
                report.runsByKind[v.violation.kind, default: 0] += 1
                if options.keepGoing && report.distinct.contains(where: { $0.kind == v.violation.kind }) { continue }
                if report.firstViolation == nil {
                    report.firstViolation = description
                    report.firstViolationKind = v.violation.kind
                }
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                let kept = Array(lines.prefix(v.line))
                let minimal = options.shrink ? Fuzzer.shrink(kept, config: config, reuse: options.reuse, ksmWalk: options.ksmWalk) : kept
                var header = "# rmap fuzz\(options.large ? " --large" : "")\(options.hugetlb ? " --hugetlb" : "") --seed \(options.seed) --reuse \(options.reuse.name)\(options.hugetlb ? " --hugetlb-resv \(options.hugetlbResv.name)" : "")\(options.ksmWalk == .full ? "" : " --ksm-walk \(options.ksmWalk.name)"): run seed \(runSeed)\n"
                header += "# arena: frames \(config.frames), pt pages \(config.ptPages), vmas \(config.vmas), anon_vmas \(config.anonVMAs), avcs \(config.avcs), mms \(config.mms)\n"
                header += "# violation: \(v.violation)\n"
                let minimized = header + minimal.joined(separator: "\n") + "\n"
                if report.minimizedTrace == nil { report.minimizedTrace = minimized }
                guard options.keepGoing else { break }
                report.distinct.append((v.violation.kind, description, minimized))
                progress("fuzz: \(description) (new kind \(v.violation.kind.rawValue), minimised)")
                continue
            }
            report.ops += opsInRun
            let t = Fuzzer.now()
            if t - lastProgress >= 5 {
                lastProgress = t
                progress("fuzz: \(report.ops) ops, \(report.runs) runs, \(Int(Double(report.ops) / (t - t0))) ops/s, \(report.violations) violations")
            }
        }
        report.seconds = Fuzzer.now() - t0
        return report
    }

    /// The smallest subset of the trace's lines (`deltaDebug`, Shrink.swift) that
    /// still parses and still violates an invariant, with the checker after every
    /// statement. Comments, blank lines and `observe` lines go first, in one go.
    static func shrink(_ lines: [String], config: ArenaConfig, reuse: ReusePolicy, ksmWalk: KSMWalkMode = .full) -> [String] {
        func fails(_ c: [String]) -> Bool {
            guard let t = try? TraceParser.parse(c.joined(separator: "\n"), file: "shrink.trace") else { return false }
            return firstViolation(t, config: config, reuse: reuse, ksmWalk: ksmWalk, every: 1) != nil
        }
        return deltaDebug(lines, noise: { $0.isEmpty || $0.hasPrefix("#") || $0.hasPrefix("observe") },
                          maxTests: 20_000, stillFails: fails)
    }
}
