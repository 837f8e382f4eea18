// The tests' shared support (as swift-collections' _CollectionsTestSupport):
// machines built from trace text, frame and anon_vma inspection, the corpus,
// the oracle binary and running programs. The one seeded RNG is RmapTrace's
// `SplitMix64`, re-exported here.
import Foundation
import Testing
import Rmap
@_exported import CShims
@_exported import RmapTrace


/// The package root, found from this file's path.
public let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Every `.trace` file under Tests/Corpus, sorted.
public func corpusTraces(_ sub: String? = nil) -> [URL] {
    var dir = packageRoot.appendingPathComponent("Tests/Corpus")
    if let sub { dir = dir.appendingPathComponent(sub) }
    guard let e = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { return [] }
    return e.compactMap { $0 as? URL }.filter { $0.pathExtension == "trace" }
        .sorted { $0.path < $1.path }
}

/// The corpus traces the model runs whole: every one, now that the model
/// runs every statement of the language (hugetlb included); CorpusTests
/// checks that each replays cleanly.
public func modelledCorpusTraces(_ sub: String? = nil) -> [URL] {
    corpusTraces(sub)
}

/// A machine with a trace's statements already run (fails the test on a parse error).
public func machine(_ text: String, reuse: ReusePolicy = .split, config: ArenaConfig = .default) throws -> (Machine, ReplayOutcome) {
    let m = try Machine(config: config, reuse: reuse)
    let trace = try TraceParser.parse(text, file: "test.trace")
    let out = m.replay(trace)
    return (m, out)
}

extension Machine {
    /// The mm index of live process `p`; 0 (the null record, safe to read)
    /// when there is none, so a model bug fails a test instead of crashing it.
    public func mm(_ p: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> MMID {
        guard let m = mmOf(p) else {
            Issue.record("no live process \(p)", sourceLocation: sourceLocation)
            return .none
        }
        return m
    }
    /// The PTE of process `p` at `addr` (0 for none).
    public func pte(_ p: String, _ addr: UInt64) -> UInt64 {
        k.leafSlot(root: k.mm(mm(p)).pointee.pgd, key: addr)?.pointee ?? 0
    }
    /// The normal frame process `p` maps at `addr` (0 for none).
    public func frame(_ p: String, _ addr: UInt64) -> PFN { mappedFrame(mm(p), addr) }
    /// The VMA of process `p` containing `addr` (0 if none).
    public func vmaAt(_ p: String, _ addr: UInt64) -> VMAID {
        guard let mm = mmOf(p) else { return .none }
        return k.vmaLookup(mm, addr)
    }
    /// The anon_vma of that VMA.
    public func anonVMAAt(_ p: String, _ addr: UInt64) -> UInt32 {
        let v = vmaAt(p, addr)
        return v.isNone ? 0 : k.vma(v).pointee.anon_vma
    }
    public func anonVMAInfo(_ av: UInt32) -> rmap_anon_vma_info {
        let p = k.anonVMA(AnonVMAID(av)).pointee
        return rmap_anon_vma_info(root: p.root, parent: p.parent, refcount: p.refcount, degree: p.degree,
                                  numChildren: p.num_children, numActiveVMAs: p.num_active_vmas)
    }
    /// Frame `pfn`'s struct page, checked first: a frame number outside the
    /// table's used records (a model bug) fails the test and gives the null
    /// record 0, instead of reading outside the arena and crashing the run.
    public func frameRecord(_ pfn: PFN, sourceLocation: Testing.SourceLocation = #_sourceLocation)
        -> UnsafeMutablePointer<rmap_page>
    {
        guard pfn.rawValue < k.desc(T.frame).pointee.bump else {
            Issue.record("frame \(pfn) is outside the frame table (\(k.desc(T.frame).pointee.bump) used)",
                         sourceLocation: sourceLocation)
            return k.page(PFN.none)
        }
        return k.page(pfn)
    }
    /// Whether frame `pfn` is free (on the frame table's free list, poisoned).
    public func frameIsFree(_ pfn: PFN) -> Bool {
        pfn.rawValue < k.desc(T.frame).pointee.bump && k.isFree(T.frame, pfn.rawValue)
    }
    public func tokens(_ p: String, _ addr: UInt64, _ pages: UInt64) -> String {
        observeTokens([Target(process: p, addr: addr, pages: pages, location: SourceLocation(line: 0, column: 0))])
            .joined(separator: " ")
    }
}

public struct rmap_anon_vma_info: Equatable {
    public init(root: UInt32, parent: UInt32, refcount: Int32, degree: UInt32, numChildren: UInt32, numActiveVMAs: UInt32) {
        self.root = root; self.parent = parent; self.refcount = refcount; self.degree = degree
        self.numChildren = numChildren; self.numActiveVMAs = numActiveVMAs
    }
    public var root: UInt32, parent: UInt32, refcount: Int32, degree: UInt32, numChildren: UInt32, numActiveVMAs: UInt32
}

/// Whether this process can read PFNs (root with CAP_SYS_ADMIN): the kernel
/// oracle needs it.
public let canReadPFNs: Bool = {
    guard geteuid() == 0 else { return false }
    var x: UInt64 = 0
    let fd = open("/proc/self/pagemap", O_RDONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    withUnsafeMutablePointer(to: &x) { $0.pointee = 1 }  // touch the page
    let off = (UInt64(UInt(bitPattern: withUnsafePointer(to: &x) { UnsafeRawPointer($0) })) / 4096) * 8
    var e: UInt64 = 0
    guard pread(fd, &e, 8, off_t(off)) == 8 else { return false }
    return e & (1 << 63) != 0 && e & ((1 << 55) - 1) != 0
}()

/// The oracle binary built by `make test` (swift build --product rmap-oracle).
/// The one built with these tests (next to the test bundle, e.g. with
/// `swift test --scratch-path DIR`) comes first, so a stale `.build` copy is
/// not used.
public let oraclePath: String? = {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for dir in [here, here.deletingLastPathComponent()] {
        let p = dir.appendingPathComponent("rmap-oracle").path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    for c in [".build/debug/rmap-oracle", ".build/release/rmap-oracle"] {
        let p = packageRoot.appendingPathComponent(c).path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}()

/// The `rmap` command built with these tests (next to the test bundle, as
/// `oraclePath` finds the oracle), or nil when it was not built.
public let rmapPath: String? = {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for dir in [here, here.deletingLastPathComponent()] {
        let p = dir.appendingPathComponent("rmap").path
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), !isDir.boolValue,
           FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    for c in [".build/debug/rmap", ".build/release/rmap"] {
        let p = packageRoot.appendingPathComponent(c).path
        if FileManager.default.isExecutableFile(atPath: p) { return p }
    }
    return nil
}()

/// Runs a program for at most `timeout` seconds (then SIGKILL): its stdout,
/// stderr, exit status, and whether it had to be killed. Output goes through
/// files, so a chatty program cannot block on a full pipe.
public func run(_ path: String, _ args: [String], timeout: Double) throws
    -> (out: String, err: String, status: Int32, timedOut: Bool)
{
    let base = NSTemporaryDirectory() + "rmap-run-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let outPath = base + ".out", errPath = base + ".err"
    defer { unlink(outPath); unlink(errPath) }
    FileManager.default.createFile(atPath: outPath, contents: nil)
    FileManager.default.createFile(atPath: errPath, contents: nil)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
    p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while p.isRunning {
        if Date() > deadline { timedOut = true; kill(p.processIdentifier, SIGKILL); break }
        usleep(20_000)
    }
    p.waitUntilExit()
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return (out, err, p.terminationStatus, timedOut)
}

/// Runs a program; its stdout, stderr and exit status.
public func run(_ path: String, _ args: [String]) throws -> (out: String, err: String, status: Int32) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let o = Pipe(), e = Pipe()
    p.standardOutput = o
    p.standardError = e
    try p.run()
    let od = o.fileHandleForReading.readDataToEndOfFile()
    let ed = e.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self), p.terminationStatus)
}


extension SplitMix64 {
    /// A uniform-enough value in 0..<n (n > 0).
    public mutating func below(_ n: UInt64) -> UInt64 { next() % n }
    public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// A trace preamble the parser tests build on: processes P0 and P1 alive,
/// Dead exited; files f1 (8 pages) and f2 (16 pages). 6 lines.
public let parserPreamble = """
    file f1 8
    file f2 16
    proc P0
    proc P1
    proc Dead
    Dead exit
    """

/// A fresh, empty directory for one test (under the temporary folder, named
/// after this process and `name`); the caller removes it.
public func freshTempDir(_ name: String) -> String {
    let d = NSTemporaryDirectory() + "rmap-\(getpid())-\(name)"
    try? FileManager.default.removeItem(atPath: d)
    mkdir(d, 0o755)
    return d
}

/// A /proc file read to its end (its size reads as 0, so read until EOF).
public func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// The VmFlags (`hg`, `nh`, ...) of the host mapping of this process that
/// holds `address`, from /proc/self/smaps; nil when no mapping holds it.
public func hostVmFlags(containing address: UInt) -> [String]? {
    guard let smaps = readProcFile("/proc/self/smaps") else { return nil }
    var inside = false
    for line in smaps.split(separator: "\n") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = fields.first else { continue }
        if first == "VmFlags:" {
            if inside { return fields.dropFirst().map(String.init) }
        } else if !first.hasSuffix(":") {
            // A mapping's first line: "lo-hi perms offset dev inode [path]".
            let ends = first.split(separator: "-")
            if ends.count == 2, let lo = UInt(ends[0], radix: 16), let hi = UInt(ends[1], radix: 16) {
                inside = lo <= address && address < hi
            }
        }
    }
    return nil
}

/// Replays `text` on `m` (continuing its trace), expects no error, no failed
/// expectation and no checker violation after it, and returns the results
/// of its statements: the hugetlb suites' step.
public func run(_ m: Machine, _ text: String,
                sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> [String] {
    let out = m.replay(try TraceParser.parse(text, file: "h.trace", continuing: m.traceContext))
    #expect(out.error == nil && out.failures.isEmpty, "\(out.error ?? "") \(out.failures)",
            sourceLocation: sourceLocation)
    #expect(m.checkViolations() == [], "\(text)", sourceLocation: sourceLocation)
    return out.results.map(\.1)
}

