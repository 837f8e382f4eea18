import CShims
#if canImport(Glibc)
import Glibc
#endif

/// `rmap record`: runs a command under the kernel's tracepoints and writes what
/// it did to memory as a trace (docs/recording.md).
public struct RecordOutcome {
    public var trace: String
    public var summary: String
    /// The command's wait status.
    public var status: Int32
    public var statements: Int
    public var processes: Int
    public var faults: Int
    public var skipped: Int
}

public struct RecordError: Error, CustomStringConvertible { public var description: String }

/// The command's executable, as execvp would find it.
func resolveExecutable(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
    for dir in path.split(separator: ":") {
        let p = "\(dir)/\(name)"
        if access(p, X_OK) == 0 { return p }
    }
    return nil
}

func machineDescription() -> String {
    var u = utsname()
    uname(&u)
    func field<T>(_ t: T) -> String {
        withUnsafeBytes(of: t) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
    var now = time(nil)
    var tm = tm()
    gmtime_r(&now, &tm)
    var buf = [CChar](repeating: 0, count: 64)
    strftime(&buf, buf.count, "%Y-%m-%d %H:%M UTC", &tm)
    let date = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return "\(field(u.nodename)), Linux \(field(u.release)) \(field(u.machine)), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, on \(date)"
}

/// The lock rmap-oracle holds while it changes THP settings (Sources/RmapOracle/large.c).
let thpLockPath = "/tmp/rmap-oracle-large.lock"

/// `enabled=madvise, 2048kB=inherit` (sizes at `never` left out).
func thpSettingsDescription() -> String {
    let base = "/sys/kernel/mm/transparent_hugepage"
    func mode(_ path: String) -> String? {
        guard let t = readWholeFile(path), let o = t.firstIndex(of: "["), let c = t.firstIndex(of: "]"), o < c else { return nil }
        return String(t[t.index(after: o)..<c])
    }
    var parts = ["enabled=\(mode(base + "/enabled") ?? "?")"]
    for kb in [16, 32, 64, 128, 256, 512, 1024, 2048] {
        if let m = mode("\(base)/hugepages-\(kb)kB/enabled"), m != "never" { parts.append("\(kb)kB=\(m)") }
    }
    return parts.joined(separator: ", ") + " (the trace has no thp statement: its replay makes no large folio)"
}

public func recordCommand(_ argv: [String], label: String? = nil, bufferKB: Int = 65536,
                          options: RecordTranslator.Options = .init(), rawPath: String? = nil) throws -> RecordOutcome {
    guard getuid() == 0 else { throw RecordError(description: "rmap record needs root (tracefs and /proc/PID/pagemap)") }
    guard let cmd = argv.first, let path = resolveExecutable(cmd) else {
        throw RecordError(description: "rmap record: command not found: \(argv.first ?? "")")
    }
    var tmpl = Array("/tmp/rmap-record-XXXXXX".utf8CString)
    let snapFD = mkstemp(&tmpl)
    guard snapFD >= 0 else { throw RecordError(description: "rmap record: cannot create a temporary file") }
    let snapPath = String(cString: tmpl)
    defer { close(snapFD); unlink(snapPath) }

    let session: TracefsSession
    do { session = try TracefsSession(bufferKB: bufferKB) } catch { throw RecordError(description: "rmap record: \(error)") }
    defer { session.close() }

    // The THP settings are the machine's for the whole recording: rmap-oracle
    // changes them only under this lock (large-page traces), so hold it.
    let lock = open(thpLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    if lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) != 0 {
        let msg = Array("rmap record: waiting for \(thpLockPath) (an oracle is running a large-page trace)\n".utf8)
        _ = write(2, msg, msg.count)
        flock(lock, LOCK_EX)
    }
    defer { if lock >= 0 { flock(lock, LOCK_UN); close(lock) } }
    let thp = thpSettingsDescription()

    var err = [CChar](repeating: 0, count: 512)
    var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    let status = rmap_record_run(path, &cargs, session.path("set_event_pid"), session.path("tracing_on"), snapFD, &err, err.count)
    try? session.write("tracing_on", "0")
    if status < 0 {
        throw RecordError(description: "rmap record: \(String(cString: err))")
    }
    let lost = session.lostEvents()
    guard let text = readWholeFile(session.path("trace")) else { throw RecordError(description: "rmap record: cannot read the trace buffer") }
    session.close()
    // --raw: the tracefs text and the seccomp snapshots as read, for study.
    if let rawPath {
        guard let f = fopen(rawPath, "w") else { throw RecordError(description: "rmap record: cannot write \(rawPath)") }
        fputs(text, f)
        fclose(f)
        if let snapText = readWholeFile(snapPath), let g = fopen(rawPath + ".snapshots", "w") {
            fputs(snapText, g)
            fclose(g)
        }
    }
    if lost > 0 {
        throw RecordError(description: "rmap record: the trace buffer lost \(lost) events: record again with a larger --buffer-kb")
    }
    let decoded = try decodeTraceText(text)
    if let e = decoded.entries, e.inBuffer != e.written {
        throw RecordError(description: "rmap record: the trace buffer holds \(e.inBuffer) of \(e.written) events: record again with a larger --buffer-kb")
    }
    guard let snapText = readWholeFile(snapPath) else { throw RecordError(description: "rmap record: cannot read the snapshots") }
    let snaps = try decodeSnapshots(snapText)
    var tr = RecordTranslator(snapshots: snaps, options: options)
    tr.translate(decoded.events)
    let first = tr.render(header: [])
    let summary = tr.summary(statements: first.statements)
    var header = [
        "rmap record -- \(label ?? argv.joined(separator: " "))",
        "machine: \(machineDescription())",
        "sources: tracefs (syscalls, exceptions:page_fault_user/kernel, sched, task, kmem:rss_stat) and",
        "seccomp snapshots of /proc/PID/maps at each mmap and brk (docs/recording.md)",
        "addresses moved into [0x100000000000, 0x700000000000) by whole GiB: those from 0x200000000000 down by \("0x" + String(options.shift, radix: 16)) (\(options.shift >> 30) GiB), those below \("0x" + String(options.shift, radix: 16)) up by as much",
        "THP during the recording: \(thp)",
        "command exit status \(status & 0x7f == 0 ? "\((status >> 8) & 0xff)" : "signal \(status & 0x7f)"); \(tr.processes) processes, \(tr.faults) faults",
        summary,
    ]
    if !tr.notes.isEmpty {
        header.append("notes: " + tr.notes.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value))" }.joined(separator: ", "))
    }
    let out = tr.render(header: header)
    return RecordOutcome(trace: out.text, summary: summary, status: status, statements: out.statements,
                         processes: tr.processes, faults: tr.faults, skipped: tr.skippedTotal)
}
