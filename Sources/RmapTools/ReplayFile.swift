import Rmap
import RmapTrace
import CShims
#if canImport(Glibc)
import Glibc
#endif

/// What `rmap replay` prints for one trace file, and its exit status.
public struct ReplayStatus: Sendable {
    /// The canonical observation (nil when the trace was rejected).
    public var stdout: String?
    public var stderr: [String]
    /// 0 passed, 1 an expectation failed, 2 the trace is malformed or
    /// unreadable, or a statement cannot run on this arena (`ReplayOutcome.error`).
    public var status: Int32
    /// The final state's statistics, when asked for (`rmap stats`).
    public var stats: ModelStats? = nil
}

/// The longest trace file accepted (bytes): bounded memory on any input.
public let maxTraceBytes = 64 << 20

/// Reads a whole trace file, at most `maxTraceBytes`; a message when it
/// cannot be read (every command that reads a trace reads it so).
public struct ReadError: Error { public var message: String }

public func readFileBytes(_ path: String) -> Result<[UInt8], ReadError> {
    guard let f = fopen(path, "rb") else { return .failure(ReadError(message: "\(path): error: cannot open: \(String(cString: strerror(errno)))")) }
    defer { fclose(f) }
    var st = stat()
    if fstat(fileno(f), &st) == 0 && st.st_mode & S_IFMT == S_IFDIR {
        return .failure(ReadError(message: "\(path): error: is a directory, not a trace file"))
    }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n > 0 { bytes.append(contentsOf: buf[0..<n]) }
        if bytes.count > maxTraceBytes { return .failure(ReadError(message: "\(path): error: trace larger than \(maxTraceBytes) bytes")) }
        if n < buf.count {
            if ferror(f) != 0 { return .failure(ReadError(message: "\(path): error: read failed")) }
            break
        }
    }
    return .success(bytes)
}

/// Parses and replays one trace file on a fresh machine (`rmap replay`).
/// With `check`, the invariant checker runs after every `checkEvery`-th
/// statement and after the last; each
/// violation is reported as `FILE:LINE: invariant violated: ...` (status 1).
/// With `load`, the trace continues the saved state in that file (its
/// processes and files exist already); with `save`, the final state is
/// written to that file. Without `observations`, observe lines are run but
/// not kept (the JSON then lists none): `rmap replay` without `--observe`.
public func replayFile(path: String, reuse: ReusePolicy = .split, ksmWalk: KSMWalkMode = .full, config: ArenaConfig = .default,
                       check: Bool = false, checkEvery: Int = 1, load: String? = nil, save: String? = nil,
                       withStats: Bool = false, observations: Bool = true) -> ReplayStatus {
    let bytes: [UInt8]
    switch readFileBytes(path) {
    case .failure(let m): return ReplayStatus(stdout: nil, stderr: [m.message], status: 2)
    case .success(let b): bytes = b
    }
    var loaded: Machine? = nil
    if let load {
        do { loaded = try Machine(opening: load) } catch {
            return ReplayStatus(stdout: nil, stderr: [error.description], status: 2)
        }
    }
    let trace: Trace
    do {
        let context = loaded?.traceContext
        trace = try TraceParser.parse(bytes: bytes, file: path, continuing: context)
    } catch {
        return ReplayStatus(stdout: nil, stderr: [error.description], status: 2)
    }
    let machine: Machine
    if let loaded {
        machine = loaded
    } else {
        do {
            machine = try Machine(config: config, reuse: reuse, ksmWalk: ksmWalk)
        } catch {
            return ReplayStatus(stdout: nil, stderr: [error.description], status: 2)
        }
    }
    // The content-provenance records serve the checker only: without
    // `check` they would cost a walk and a record per written page for nothing.
    machine.tracksContentProvenance = check
    // Checked after statement after statement: the incremental checker
    // (the same violations as a full check; with RMAP_CHECK_VERIFY=1 both
    // run after each statement and a difference is an error).
    machine.checksIncrementally = check
    let verify = check && getenv("RMAP_CHECK_VERIFY").map { String(cString: $0) == "1" } == true
    var violations: [String] = []
    var ran = 0
    let every = max(1, checkEvery)
    func runChecker(after line: Int) {
        guard violations.count < 100 else { return }
        if verify {
            let (vs, mismatch) = machine.checkViolationsVerified()
            if let mismatch { violations.append("\(path):\(line): checker mismatch: \(mismatch)") }
            for v in vs { violations.append("\(path):\(line): invariant violated: \(v)") }
            return
        }
        for v in machine.check() { violations.append("\(path):\(line): invariant violated: \(v)") }
    }
    let out = machine.replay(trace, keepingObservations: observations, after: check ? { tl in
        ran += 1
        if ran % every == 0 || ran == trace.lines.count { runChecker(after: tl.line) }
    } : nil)
    var errs = out.failures + violations
    if let e = out.error {
        // A statement that cannot run on this arena: like a trace error, no
        // observation and nothing saved (the state is only part of the trace's).
        return ReplayStatus(stdout: nil, stderr: errs + [e], status: 2)
    }
    let stats = withStats ? machine.stats() : nil
    if let save, let e = machine.save(to: save) {
        errs.append(e)
        return ReplayStatus(stdout: out.canonicalJSON, stderr: errs, status: 2, stats: stats)
    }
    return ReplayStatus(stdout: out.canonicalJSON, stderr: errs, status: errs.isEmpty ? 0 : 1, stats: stats)
}
