import Rmap
import RmapTrace
import RmapVariants
import CShims
#if canImport(Glibc)
import Glibc
#endif

/// What `rmap workload-study` measures on a recorded workload: replay
/// throughput, the reverse-map designs of issue 6 (anon_vma, PV lists, full
/// scan) at the workload's busiest moment, fork and exit with and without PV
/// lists, and the model's RSS counters at each exit beside the kernel's
/// (kmem:rss_stat, in the trace's comments).
public struct WorkloadStudy: Sendable {
    public var statements = 0
    /// Pages read or written by the trace's accesses.
    public var accessPages: UInt64 = 0
    public var replaySeconds = 0.0
    /// The busiest moment: the `observe` line (each comes just before an
    /// exit) with the most present PTEs mapping normal pages.
    public var peakLine = 0
    public var peakProcesses = 0
    public var peak: RmapMetadata? = nil
    public var peakPTEs = 0
    /// Distinct frames mapped at the peak, and how many the walks visited (a bounded sample).
    public var peakFrames = 0
    public var walkedFrames = 0
    /// Per design: mean ns per walk, mean rmap_one visits per walk, mean mappings found.
    public var walks: [(design: RmapDesign, ns: Double, visits: Double, mapped: Double)] = []
    /// Mean ns per `fork` and per `exit` statement: anon_vma alone, and with PV lists kept too.
    public var forkNs = (anonVMA: 0.0, pv: 0.0)
    public var exitNs = (anonVMA: 0.0, pv: 0.0)
    public var forks = 0, exits = 0
    /// Per exit with a kernel rss_stat comment: name, kernel pages, model pages
    /// (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES).
    public var rss: [(name: String, kernel: [Int64], model: [Int64])] = []
}

public struct WorkloadStudyError: Error, CustomStringConvertible { public var description: String }

@inline(__always) func nowNs() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

extension Machine {
    /// The distinct normal frames mapped by live processes (present PTEs).
    func mappedFrames() -> [PFN] {
        var seen: Set<UInt32> = []
        var out: [PFN] = []
        for (_, m) in processes.sorted(by: { $0.key < $1.key }) {
            var v = k.firstVMA(m)
            while !v.isNone {
                k.walkLeaves(root: k.mm(m).pointee.pgd, start: k.vma(v).pointee.vm_start, end: k.vma(v).pointee.vm_end) { _, s in
                    let f = k.vmNormalPage(s.pointee)
                    if !f.isNone, seen.insert(f.rawValue).inserted { out.append(f) }
                    return true
                }
                v = k.nextVMA(v)
            }
        }
        return out
    }

    /// get_mm_counter() of each counter, in pages.
    func rssCounters(_ name: String) -> [Int64]? {
        guard let m = processes[name] else { return nil }
        let r = k.mm(m).pointee.rss
        return [r.0, r.1, r.2, r.3]
    }
}

public func studyWorkload(path: String, maxWalkFrames: Int = 2000) throws -> WorkloadStudy {
    let bytes: [UInt8]
    switch readFileBytes(path) {
    case .failure(let e): throw WorkloadStudyError(description: e.message)
    case .success(let b): bytes = b
    }
    let trace = try TraceParser.parse(bytes: bytes, file: path)
    // The kernel's counters, from the recorder's comments: `# pN kernel rss_stat before ...: file=A anon=B swap=C shmem=D pages`.
    var kernelRSS: [String: [Int64]] = [:]
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("# p") && line.contains(" kernel rss_stat ") {
        let words = line.split(separator: " ")
        let values = words.compactMap { w -> Int64? in
            guard let eq = w.firstIndex(of: "=") else { return nil }
            return Int64(w[w.index(after: eq)...])
        }
        if values.count == 4 { kernelRSS[String(words[1])] = values }
    }
    var s = WorkloadStudy()
    s.statements = trace.lines.count
    for tl in trace.lines {
        if case .op(_, let op, _) = tl.statement {
            switch op {
            case .read(_, let n), .write(_, let n): s.accessPages += n
            default: break
            }
        }
    }

    // Pass 1 (anon_vma): the whole replay's time, fork and exit statements'
    // times, the peak, and the RSS counters before each exit.
    // Pass 2: the same with PV lists kept from the first statement.
    // Three rounds of both; each time is the least of the three (a busy machine).
    s.replaySeconds = .infinity
    s.forkNs = (.infinity, .infinity)
    s.exitNs = (.infinity, .infinity)
    for round in 0..<3 {
    for pv in [false, true] {
        let first = round == 0 && !pv
        let m = try Machine()
        m.tracksContentProvenance = false  // timed: no checker runs here
        if pv { guard m.enablePVLists() else { throw WorkloadStudyError(description: "PV lists: no room") } }
        var out = ReplayOutcome(keepsObservations: false)
        var forkTotal: UInt64 = 0, exitTotal: UInt64 = 0
        var forks = 0, exits = 0
        let t0 = nowNs()
        for tl in trace.lines {
            var kind = 0
            if case .op(let p, let op, _) = tl.statement {
                if case .fork = op { kind = 1 }
                if case .exit = op {
                    kind = 2
                    if first, let k = kernelRSS[p], let model = m.rssCounters(p) { s.rss.append((p, k, model)) }
                }
            }
            if first, case .observe = tl.statement {
                let md = m.rmapMetadata()
                if md.mappedPTEs > s.peakPTEs { s.peakPTEs = md.mappedPTEs; s.peakLine = tl.line; s.peakProcesses = m.processes.count }
            }
            let a = kind != 0 ? nowNs() : 0
            m.step(tl, file: path, into: &out)
            if kind == 1 { forkTotal += nowNs() - a; forks += 1 }
            if kind == 2 { exitTotal += nowNs() - a; exits += 1 }
            if let e = out.error { throw WorkloadStudyError(description: e) }
        }
        let total = Double(nowNs() - t0) / 1e9
        let forkMean = forks > 0 ? Double(forkTotal) / Double(forks) : 0
        let exitMean = exits > 0 ? Double(exitTotal) / Double(exits) : 0
        if !pv {
            s.replaySeconds = min(s.replaySeconds, total)
            s.forks = forks; s.exits = exits
            s.forkNs.anonVMA = min(s.forkNs.anonVMA, forkMean)
            s.exitNs.anonVMA = min(s.exitNs.anonVMA, exitMean)
        } else {
            s.forkNs.pv = min(s.forkNs.pv, forkMean)
            s.exitNs.pv = min(s.exitNs.pv, exitMean)
        }
    }
    }

    // Pass 3: to the peak, then PV lists built from the page tables and a
    // walk of (a sample of) every mapped frame in each design.
    let m = try Machine()
    m.tracksContentProvenance = false  // measured, not checked
    var out = ReplayOutcome(keepsObservations: false)
    for tl in trace.lines where tl.line < s.peakLine {
        m.step(tl, file: path, into: &out)
    }
    guard m.enablePVLists() else { throw WorkloadStudyError(description: "PV lists: no room") }
    s.peak = m.rmapMetadata()
    let frames = m.mappedFrames()
    s.peakFrames = frames.count
    let stride = max(1, frames.count / maxWalkFrames)
    let sample = Swift.stride(from: 0, to: frames.count, by: stride).map { frames[$0] }
    s.walkedFrames = sample.count
    for d in RmapDesign.allCases {
        var visits = 0, mapped = 0
        for f in sample { visits += m.benchWalk(frame: f, design: d); mapped += m.benchWalkMapped(frame: f, design: d) }
        // Timed: whole passes over the sample until 30 ms have gone by; the
        // least of five such rounds (a busy machine).
        var ns = Double.infinity
        var sink = 0
        for _ in 0..<5 {
            var passes = 0
            let t0 = nowNs()
            repeat {
                for f in sample { sink &+= m.benchWalkMapped(frame: f, design: d) }
                passes += 1
            } while nowNs() - t0 < 30_000_000
            ns = min(ns, Double(nowNs() - t0) / Double(passes * max(1, sample.count)))
        }
        if sink == -1 { print("") }
        let n = Double(max(1, sample.count))
        s.walks.append((d, ns, Double(visits) / n, Double(mapped) / n))
    }
    return s
}

/// The text report of `rmap workload-study`.
public func workloadStudyReport(name: String, _ s: WorkloadStudy, perExit: Bool = false) -> String {
    guard let peak = s.peak else { return "== \(name)\nno peak: the trace observes nothing" }
    func f1(_ x: Double) -> String { String(Int((x * 10).rounded()) / 10) + "." + String(Int((x * 10).rounded()) % 10) }
    var out: [String] = []
    out.append("== \(name)")
    out.append("replay: \(s.statements) statements, \(s.accessPages) pages accessed in \(f1(s.replaySeconds * 1000)) ms: \(Int(Double(s.statements) / s.replaySeconds)) statements/s, \(Int(Double(s.accessPages) / s.replaySeconds)) accessed pages/s")
    out.append("peak (line \(s.peakLine)): \(s.peakProcesses) processes, \(peak.mappedPTEs) PTEs mapping \(s.peakFrames) frames; \(peak.anonVMAs) anon_vmas, \(peak.avcs) AVCs")
    out.append("rmap metadata at the peak: anon_vma \(peak.anonVMABytes) B (\(f1(Double(peak.anonVMABytes) / Double(max(1, peak.mappedPTEs)))) B per mapping); PV lists \(peak.pvEntryBytes) B (\(f1(Double(peak.pvEntryBytes) / Double(max(1, peak.mappedPTEs)))) B per mapping) + \(peak.pvHeadBytesPerFrame) B per frame; full scan 0 B")
    for w in s.walks {
        out.append("walk \(w.design.rawValue): \(f1(w.ns)) ns per frame, \(f1(w.visits)) visits, \(f1(w.mapped)) mappings found (\(s.walkedFrames) of \(s.peakFrames) frames)")
    }
    out.append("fork: \(s.forks) x \(f1(s.forkNs.anonVMA / 1000)) us (anon_vma), \(f1(s.forkNs.pv / 1000)) us (+PV lists); exit: \(s.exits) x \(f1(s.exitNs.anonVMA / 1000)) us, \(f1(s.exitNs.pv / 1000)) us (+PV lists)")
    if !s.rss.isEmpty {
        var same = 0
        var dFile: Int64 = 0, dAnon: Int64 = 0, kFile: Int64 = 0, kAnon: Int64 = 0
        for r in s.rss {
            if r.kernel == r.model { same += 1 }
            dFile += r.model[0] - r.kernel[0]; dAnon += r.model[1] - r.kernel[1]
            kFile += r.kernel[0]; kAnon += r.kernel[1]
        }
        if perExit {
            for r in s.rss { out.append("  \(r.name): kernel file=\(r.kernel[0]) anon=\(r.kernel[1]) shmem=\(r.kernel[3]); model file=\(r.model[0]) anon=\(r.model[1]) shmem=\(r.model[3])") }
        }
        out.append("rss at exits: \(same) of \(s.rss.count) equal; summed over exits, model - kernel: file \(dFile) of \(kFile) pages, anon \(dAnon) of \(kAnon) pages")
    }
    return out.joined(separator: "\n")
}
