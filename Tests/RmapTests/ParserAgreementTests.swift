import Foundation
import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

// The two parsers of the trace language agree (issue 12, item 5): the model's
// (TraceParser.parse(bytes:)) and the kernel oracle's (Sources/RmapOracle/parse.c,
// run as `rmap-oracle --parse-only`, which needs no root and touches nothing).
// On every corpus trace, on malformed traces (one bad line after a valid
// preamble, and whole-file oddities: NUL, CR LF, invalid UTF-8, long lines) and
// on randomly damaged generated traces, both accept or both reject, and when
// both reject, at the same FILE:LINE:COLUMN (the messages may differ). A trace
// the model accepts with statements the oracle cannot run (model-only verbs,
// `swap N`) must still parse on the oracle: it says it would skip it, at the
// first such line, and exits 77 without --parse-only.

// MARK: - Running both parsers

/// What one parser made of a trace: accepted, or rejected at a line and column.
private enum Verdict: Equatable, CustomStringConvertible {
    case accepted
    case rejected(line: Int, column: Int)

    var description: String {
        switch self {
        case .accepted: return "accepted"
        case .rejected(let l, let c): return "rejected at \(l):\(c)"
        }
    }
}

private struct OracleParse {
    var verdict: Verdict
    /// The line of the first statement the oracle cannot run (`would skip: line N: ...`).
    var skipLine: Int?
    var status: Int32
    var output: String
}

private struct ParseRunError: Error {}

/// The oracle binary (`make test` builds it before `swift test`): the test fails without it.
private func oracle() throws -> String {
    guard let path = oraclePath else {
        Issue.record("rmap-oracle is not built: run `swift build --product rmap-oracle` (make test does)")
        throw ParseRunError()
    }
    return path
}

/// A path of its own in the temporary folder (test cases run in parallel); the
/// caller removes the file.
private func scratchFile(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("rmap-parser-agreement-\(UUID().uuidString)-\(name)")
}

private func writeTrace(_ bytes: [UInt8], name: String) throws -> String {
    let url = scratchFile(name)
    try Data(bytes).write(to: url)
    return url.path
}

/// Runs the oracle with its output in files (a pipe read to its end, one after
/// the other, could fill the other pipe and hang both sides).
private func runOracle(_ args: [String]) throws -> (out: String, err: String, status: Int32) {
    let outURL = scratchFile("out"), errURL = scratchFile("err")
    _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
    _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
    defer {
        try? FileManager.default.removeItem(at: outURL)
        try? FileManager.default.removeItem(at: errURL)
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try oracle())
    p.arguments = args
    p.standardInput = FileHandle.nullDevice
    p.standardOutput = try FileHandle(forWritingTo: outURL)
    p.standardError = try FileHandle(forWritingTo: errURL)
    try p.run()
    p.waitUntilExit()
    let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
    let err = String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self)
    return (out, err, p.terminationStatus)
}

/// `rmap-oracle --parse-only PATH`: status 0 (accepted) or 2 with `PATH:LINE:COL: error: ...`.
private func oracleParse(_ path: String) throws -> OracleParse {
    let r = try runOracle(["--parse-only", path])
    let output = "exit \(r.status); stdout: \(r.out.debugDescription); stderr: \(r.err.debugDescription)"
    var skipLine: Int?
    for line in r.out.split(separator: "\n") where line.hasPrefix("would skip: line ") {
        skipLine = Int(line.dropFirst("would skip: line ".count).prefix { $0.isNumber })
    }
    switch r.status {
    case 0:
        return OracleParse(verdict: .accepted, skipLine: skipLine, status: r.status, output: output)
    case 2:
        // PATH:LINE:COL: error: MESSAGE (PATH is ours and holds no ':')
        let prefix = path + ":"
        if let first = r.err.split(separator: "\n").first, first.hasPrefix(prefix) {
            let fields = first.dropFirst(prefix.count).split(separator: ":", maxSplits: 2)
            if fields.count == 3, let l = Int(fields[0]), let c = Int(fields[1]), fields[2].hasPrefix(" error: ") {
                return OracleParse(verdict: .rejected(line: l, column: c), skipLine: nil, status: r.status, output: output)
            }
        }
        fallthrough
    default:
        Issue.record("rmap-oracle --parse-only: unexpected output: \(output)")
        throw ParseRunError()
    }
}

/// The statements the oracle cannot run: model-only verbs (`split` among them) and
/// `swap N` with N != 0. (KSM's `write ... value=`, `madvise mergeable/unmergeable`
/// and `ksm scan` it runs, and the other Large pages statements.)
private func firstOracleSkipLine(_ trace: Trace) -> Int? {
    let modelOnly: Set<String> = ["unmap", "reclaim", "migrate", "referenced", "mkclean", "poison", "device", "exclusive"]
    for l in trace.lines {
        switch l.statement {
        case .swap(let slots) where slots != 0: return l.line
        case .op(_, let op, _) where modelOnly.contains(op.verb): return l.line
        case .largePageOp(_, let op, _) where op.isModelOnly: return l.line
        default: continue
        }
    }
    return nil
}

private struct Comparison {
    var swift: Verdict
    var oracle: OracleParse
    var trace: Trace?
}

private func compare(_ bytes: [UInt8], name: String) throws -> Comparison {
    let path = try writeTrace(bytes, name: name)
    defer { try? FileManager.default.removeItem(atPath: path) }
    let swift: Verdict
    var trace: Trace?
    do {
        trace = try TraceParser.parse(bytes: bytes, file: path)
        swift = .accepted
    } catch {
        swift = .rejected(line: error.line, column: error.column)
    }
    return Comparison(swift: swift, oracle: try oracleParse(path), trace: trace)
}

/// Both parsers give the same verdict, and on an accepted trace the oracle would
/// skip exactly the traces with a statement it cannot run, from the same line.
@discardableResult
private func expectAgreement(_ bytes: [UInt8], name: String, _ what: @autoclosure () -> String,
                             sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Comparison {
    let c = try compare(bytes, name: name)
    #expect(c.swift == c.oracle.verdict,
            "\(what()): model \(c.swift), oracle \(c.oracle.verdict) (\(c.oracle.output))", sourceLocation: sourceLocation)
    if let t = c.trace, c.oracle.verdict == .accepted {
        #expect(c.oracle.skipLine == firstOracleSkipLine(t),
                "\(what()): oracle would skip from line \(String(describing: c.oracle.skipLine)), the model's trace has a statement the oracle cannot run on line \(String(describing: firstOracleSkipLine(t)))",
                sourceLocation: sourceLocation)
    }
    return c
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

// MARK: - Malformed lines

private let A = "0x100000000000"
private let top = "0x6ffffffff000"

/// Processes P0 and P1 alive, Dead exited; files f1 and f2 (RmapTestSupport).
private let base = parserPreamble

/// One line after `base` each (those marked `standalone` on their own): most from
/// TraceParserTests' error tests, and the cases where the two parsers once differed.
private let badLines: [String] = [
    // unknown statements and operations
    "frobnicate 1 2", "  Files f1 8", "123", "=> ok", "\tP0 frob \(A)", "P0 Read \(A)", "P0", "P0 # read",
    "P5 = spoon P1", "P0 = spoon P1", "P2 =", "P2 = fork", "P2 = fork 3", "é", "= fork P0", "P9", "P9 exit",
    "P0 fork P1", "ksm", "ksm scan 0", "ksm scan 1001", "ksm scan x", "ksm scan 2 3", "ksm scan => ok", "ksm scan 1 => ok",
    // bad numbers
    "P0 read 0x1000000000zz", "P0 read 12abc", "P0 read -4096", "P0 mmap \(A) 4x rw anon-private",
    "P0 read \(A) 1.5", "P0 read 0x10000000000000000", "P0 read \(A) 18446744073709551616", "file f3 -3", "file f3 x",
    "P0 mremap \(A) 1 two", "P0 mremap \(A) one 2", "P0 mremap \(A) 1 2 nowhere", "observe P0 \(A) four",
    "file f3 16777217", "file f3 0", "P0 read 0X100000000000", "P0 read 0x", "P0 read +17592186044416",
    "P0 write \(A) value=", "P0 write \(A) value=x", "P0 write \(A) 2 value=18446744073709551616",
    "P0 write \(A) value=18446744073709551615 => ok", "P0 write \(A) value=0xffffffffffffffff",
    "P0 read \(A) 0x10000000000000000zz", "P0 read value=3", "P0 read \(A) value=3",
    // addresses and ranges
    "P0 read 0x100000000001", "P0 mmap 0x100000000800 1 r anon-private", "P0 mremap \(A) 1 1 0x200000000010",
    "observe P0 \(A) 1, P1 17592186044417 1", "expect P0 0x100000000fff 1 = -", "P0 read 0", "P0 read 0xfffffffff000",
    "P0 munmap 0x700000000000 1", "observe P0 0x700000001000 1", "P0 read 0x1", "P0 mremap \(A) 1 1 0x7fff00000000",
    "P0 mmap \(top) 2 rw anon-private", "P0 read 0x6fffffffe000 3", "P0 write \(A) 0x600000001",
    "P0 munmap \(A) 18446744073709551615", "P0 mremap \(top) 2 1", "P0 mremap \(top) 1 2", "P0 mremap \(A) 1 2 \(top)",
    "P0 unmap \(top) 2 ignore_mlock", "observe P0 \(top) 2", "expect P0 \(top) 2 = - -",
    "P0 mmap \(A) 16777217 rw anon-private", "P0 mmap \(A) 0x5ffffffff none anon-private => ENOMEM",
    // zero pages
    "P0 mmap \(A) 0 rw anon-private", "P0 read \(A) 0", "P0 write \(A) 0x0", "P0 unmap \(A) 0", "P0 mremap \(A) 1 0",
    "P0 madvise \(A) 0 cold", "observe P0 \(A) 0", "expect P0 \(A) 0 =",
    // processes
    "P9 read \(A)", "P2 = fork P9", "observe P0 \(A) 1, P9 \(A) 1", "expect P9 \(A) 1 = -", "P1 = fork P0",
    "Dead read \(A)", "Dead exit", "P2 = fork Dead", "observe Dead \(A) 1", "expect P0 \(A) 1, Dead \(A) 1 = - -",
    "proc Dead", "Dead = fork P0", "P0 = fork P0", "proc P1", "proc P2 P3", "proc", "proc 9p", "proc P-é",
    "proc " + String(repeating: "p", count: 65), "proc file", "proc expect", "file = fork P0", "expect = fork P0",
    "observe = fork P0", "proc ksm", String(repeating: "q", count: 65) + " = fork P0",
    "P0 read \(A), P1", "P2 = fork P0,", "P0 exit now",
    // files
    "P0 mmap \(A) 1 r file-private:f3@0", "P0 mmap \(A) 1 r file-shared:F1@0", "file f1 2", "file f2 x", "file",
    "file f3", "file 9f 1", "file f3 1 2", "file " + String(repeating: "f", count: 65) + " 1",
    // mapping kinds and protections
    "P0 mmap \(A) 1 r anon", "P0 mmap \(A) 1 r anon-Private", "P0 mmap \(A) 1 r file-private",
    "P0 mmap \(A) 1 r file:f1@0", "P0 mmap \(A) 1 r file-private:f1", "P0 mmap \(A) 1 r file-shared:@3",
    "P0 mmap \(A) 1 r file-shared:9f@3", "P0 mmap \(A) 1 r file-shared:nofile@0", "P0 mmap \(A) 1 r file-private:f1@",
    "P0 mmap \(A) 1 r file-private:f1@x", "P0 mmap \(A) 1 r file-private:f1@-1",
    "P0 mmap \(A) 1 r file-private:f1@99999999999999999999", "P0 mmap \(A) 1 r file-private:f1@4294967297",
    "P0 mmap \(A) 1 r file-private:f1@4294967296 => ok", "P0 mmap \(A) 1 r file-private:f1@1099511627776",
    "P0 mmap \(A) 1 r file-shared:é@0", "P0 mmap \(A) 1 r file-private:f1@0,1",
    "P0 mmap \(A) 1 rw file-shared:f1@0=>EEXIST", "P0 mmap \(A) 1 r", "P0 mprotect \(A) 1 wr", "P0 mprotect \(A) 1 rr",
    "P0 mmap \(A) 1 NONE anon-private", "P0 mmap \(A) 1 rw- anon-private", "P0 mprotect \(A) 1",
    "P0 mprotect \(A) 1 => ok", "P0 mmap \(A) 4 => ok",
    // advice and TTU flags
    "P0 madvise \(A) 2 willneed", "P0 madvise \(A) 2 DONTNEED", "P0 madvise \(A) 2", "P0 madvise \(A) dontneed",
    "P0 unmap \(A) 1 ignore_mlock,bogus", "P0 unmap \(A) TTU_IGNORE_MLOCK", "P0 unmap \(A) ignore_mlock,",
    "P0 unmap \(A) ,ignore_mlock", "P0 unmap \(A) ignore_mlock, batch_flush", "P0 unmap \(A) 1 ignore_mlock batch_flush",
    "P0 unmap \(A) ignore_mlock,,batch_flush", "P0 unmap \(A) 2x ignore_mlock", "P0 unmap \(A) 1 ignore_mlock,é",
    "P0 unmap \(A) " + String(repeating: "m", count: 40), "P0 unmap => ok",
    "P0 device \(A) x", "P0 device \(A) 0 coherent", "P0 device \(A) coherent 2", "P0 device \(A) 2 coherent coherent",
    "P0 poison \(A) 2 x", "P0 exclusive", "P0 reclaim \(A) ignore_mlock", "P0 migrate \(A) 1,2",
    // missing tokens, at the end or at '=>'
    "P0 mmap \(A) 4 rw", "P0 mmap \(A) 4 rw   \t# comment", "P0 mmap \(A)", "P0 mmap", "P0 munmap \(A)",
    "P0 mlock \(A)", "P0 munlock \(A)", "P0 mremap \(A) 1", "P0 mremap \(A)", "P0 read", "observe", "observe P0",
    "observe P0 \(A)", "observe P0 \(A) 1,", "observe P0 \(A) 1 ,", "observe P0 \(A) 1 P1", "observe P0 \(A) 1,,P1 \(A) 1",
    "observe ,P0 \(A) 1", "observe P0,\(A),1",
    // trailing garbage
    "P0 read \(A) 1 2", "P0 mmap \(A) 1 r anon-private extra", "P0 mremap \(A) 1 1 0x200000000000 x",
    "P2 = fork P0 P1", "P0 read \(A)\u{0}", "P0 read \(A),", "P0 read \(A) 1,", "P0 exit,",
    // observe contents / expect contents
    "observe contents P0 \(A) 1", "observe contents", "observe contents P0", "observe contents 0x1 1",
    "observe contents P0 \(A) 1, P1 \(A) 2", "observe contents contents \(A) 1", "observe contents ,P0 \(A) 1",
    "expect contents P0 \(A) 1 = v0", "expect contents P0 \(A) 2 = - v9e3779b97f4a7c15",
    "expect contents P0 \(A) 1 = v00", "expect contents P0 \(A) 1 = V1", "expect contents P0 \(A) 1 = vA",
    "expect contents P0 \(A) 1 = v10000000000000000", "expect contents P0 \(A) 1 = A1:1", "expect contents P0 \(A) 2 = v1",
    "expect contents P0 \(A) 1 = v1 v2", "expect contents P0 \(A) 1", "expect contents P0 \(A) 1 =", "expect contents = v1",
    "expect P0 \(A) 1 = v1", "expect contents P9 \(A) 1 = -",
    // expect
    "expect P0 \(A) 3 = - -", "expect P0 \(A) 1 =", "expect P0 \(A) 2 = -   # one missing", "expect P0 \(A) 1, P1 \(A) 2 = - -",
    "expect P0 \(A) 2 = - Z S", "expect P0 \(A) 1 = A1:1 A1:1", "expect P0 \(A) 1", "expect P0 \(A) 1 - ", "expect",
    "expect P0 \(A) 2 = -,Z", "expect P0 \(A) 1,P1 \(A) 1 = - -,", "expect P0 \(A) 1 = = -", "expect P0 \(A) 1 == -",
    "expect P0 \(A) 1= -",
    // observation tokens
    "expect P0 \(A) 2 = - A0:1", "expect P0 \(A) 2 = - A1", "expect P0 \(A) 2 = - A1:", "expect P0 \(A) 2 = - a1:1",
    "expect P0 \(A) 2 = - Y", "expect P0 \(A) 2 = - A1:x", "expect P0 \(A) 2 = - A01:1", "expect P0 \(A) 2 = - B1:1",
    "expect P0 \(A) 2 = - --", "expect P0 \(A) 2 = - z", "expect P0 \(A) 2 = - A:1", "expect P0 \(A) 2 = - F1:1:1",
    "expect P0 \(A) 2 = - 1", "expect P0 \(A) 2 = - A1;1", "expect P0 \(A) 2 = - =", "expect P0 \(A) 2 = - A1:-1",
    "expect P0 \(A) 2 = - A1:01", "expect P0 \(A) 2 = - A1:00", "expect P0 \(A) 2 = - K\u{212A}1:1",
    "expect P0 \(A) 2 = - \u{212A}1:1", "expect P0 \(A) 2 = - T1:1",  // A1+0:1 and Z*: see largePageLines
    "expect P0 \(A) 7 = H D X S M Z A12:0",
    // results
    "P0 read \(A) => okay", "P0 read \(A) => OK", "P0 read \(A) => E", "P0 read \(A) => EX", "P0 read \(A) => eINVAL",
    "P0 read \(A) => E1NVAL", "P0 read \(A) => EINVALXXXXXXXXXXX", "P0 read \(A) => EINVALXXXXXXXXXX",
    "P0 read \(A) => SIGKILL", "P0 read \(A) => referenced=", "P0 read \(A) => referenced=x",
    "P0 read \(A) => referenced=-1", "P0 read \(A) => cleaned=1x", "P0 read \(A) => cleaned=99999999999999999999",
    "P0 read \(A) => =", "P0 read \(A) => =>", "P0 read \(A) => referenced=01", "P0 read \(A) => cleaned=00",
    "P0 read \(A) => referenced=+1", "P0 read \(A) => referenced=0x1", "P0 read \(A) => cleaned=18446744073709551615",
    "P0 read \(A) =>", "P0 read \(A) =>   # nothing", "P0 read \(A) => ok ok", "P0 read \(A) 1 ok",
    "P0 read \(A) => ok,x", "P0 read \(A) => EHWPOISON", "P0 exit\t=>\tok",
    "proc P2 => ok", "file f3 1 => ok", "observe P0 \(A) 1 => ok", "expect P0 \(A) 1 = - => ok",
    "P0 mmap 0x1 0 wr anon => bogus", "P0 read \(A) 2 => bogus", "P0 frob => ok", "P9 read \(A) => bogus",
    // swap after processes, twice, too large
    "swap 4", "  swap 4", "swap x", "swap",
    // characters
    "P0 read \(A)\r\r", "P0\rread \(A)", "P0 read\u{B}\(A)", "P0 read \(A)\u{C}", "\u{FEFF}proc P2",
    "P0 read \(A) # \u{0} in a comment", "P0 read \u{E9}\u{E9} 1", "observe P0 \u{E9} 1", "expect P0 \(A) 1 = \u{E9}",
    "P0 mmap \(A) 1 r file-shared:f\u{E9}@0",
]

/// The Large pages additions (docs/trace-format.md), valid and malformed, one line
/// after `base` each and on its own like `badLines` (issue 13 item 8, issue 14).
/// The oracle's parser learns them on its own branch: until both land, these
/// cases disagree wherever the oracle still rejects the whole addition.
private let largePageLines: [String] = [
    // settings: valid alone, after a process `must come before`
    "thp enabled always", "thp enabled madvise", "thp enabled never", "thp 16K always", "thp 32K inherit",
    "thp 64K madvise", "thp 128K never", "thp 256K always", "thp 512K inherit", "thp 1M madvise", "thp 2M never",
    "hugetlb 0", "hugetlb 4", "hugetlb 0x10", "hugetlb 16777216", "  thp 2M always", "\thugetlb 1",
    // malformed settings
    "thp", "thp enabled", "thp enabled inherit", "thp enabled ALWAYS", "thp 2M", "thp 2M sometimes", "thp 4M always",
    "thp 2m always", "thp 16k never", "thp scan", "thp 2M always now", "thp enabled always always", "thp => ok",
    "thp enabled always => ok", "thp 2M always # comment", "thp enabled,always", "hugetlb", "hugetlb x", "hugetlb -1",
    "hugetlb 16777217", "hugetlb 99999999999999999999", "hugetlb 1 2", "hugetlb 1 => ok", "hugetlb 0x", "thp \u{E9}",
    // thp shrink: anywhere
    "thp shrink", "thp shrink   # comment", "thp shrink 2", "thp shrink now", "thp shrink => ok", "thp shrink,",
    // thp and hugetlb still name processes when a verb or '=' follows
    "thp exit", "thp read \(A)", "hugetlb read \(A)", "thp = fork P0", "hugetlb = fork P0", "thp frob",
    // split
    "P0 split \(A)", "P0 split \(A) 4", "P0 split \(A) 0x200 => ok", "P0 split \(A) => EINVAL", "P0 split",
    "P0 split => ok", "P0 split 0x100000000800", "P0 split \(A) 0", "P0 split \(top) 2", "P0 split \(A) 1 2",
    "P0 split \(A) huge", "P9 split \(A)", "Dead split \(A)", "P0 split \(A) => bogus", "P0 split \(A),",
    // madvise advice
    "P0 madvise \(A) 512 hugepage", "P0 madvise \(A) 512 nohugepage => ok", "P0 madvise \(A) 512 collapse => EAGAIN",
    "P0 madvise \(A) 2 huge", "P0 madvise \(A) 2 HUGEPAGE", "P0 madvise \(A) 2 hugepage collapse", "P0 madvise \(A) hugepage",
    // mmap kinds and noreserve
    "P0 mmap \(A) 512 rw hugetlb-private", "P0 mmap \(A) 512 rw hugetlb-shared => ENOMEM",
    "P0 mmap \(A) 512 rw hugetlb-shared noreserve", "P0 mmap \(A) 1 rw anon-private noreserve => ok",
    "P0 mmap \(A) 1 r file-shared:f1@2 noreserve", "P0 mmap \(A) 1 r anon-shared noreserve",
    "P0 mmap 0x100000001000 3 r hugetlb-private", "P0 mmap \(A) 1 rw hugetlb", "P0 mmap \(A) 1 rw hugetlb-Private",
    "P0 mmap \(A) 1 rw hugetlb-private:f1@0", "P0 mmap \(A) 1 rw noreserve", "P0 mmap \(A) 1 rw anon-private noreserve noreserve",
    "P0 mmap \(A) 1 rw anon-private NORESERVE", "P0 mmap \(A) 1 rw anon-private noreserve,",
    "P0 mmap \(A) 1 rw hugetlb-shared => SIGBUS extra", "P0 mmap \(A) 1 rw anon-private noreserve=>ok",
    // SIGBUS (a result already)
    "P0 read \(A) => SIGBUS", "P0 write \(A) 2 => SIGBUS",
    // observation tokens
    "expect P0 \(A) 2 = A1+0:1 A1+511:1*", "expect P0 \(A) 2 = A12+7:0 T1+0:1*", "expect P0 \(A) 2 = T3+511:2* Z*",
    "expect P0 \(A) 2 = M* A99999999999999999999+0:1", "expect P0 \(A) 2 = - A1+0:1", "expect P0 \(A) 2 = - Z*",
    "expect P0 \(A) 2 = - A1+:1", "expect P0 \(A) 2 = - A1+512:1",
    "expect P0 \(A) 2 = - A1+01:1", "expect P0 \(A) 2 = - A1+0:1**", "expect P0 \(A) 2 = - Z**", "expect P0 \(A) 2 = - A1+0",
    "expect P0 \(A) 2 = - A1+0;1", "expect P0 \(A) 2 = - A1+0:01*", "expect P0 \(A) 2 = - A1+0:1*x",
    "expect P0 \(A) 2 = - F1+0:1", "expect P0 \(A) 2 = - K1+0:1*", "expect P0 \(A) 2 = - A1:1*", "expect P0 \(A) 2 = - F1:1*",
    "expect P0 \(A) 2 = - T1:1", "expect P0 \(A) 2 = - T1:1*", "expect P0 \(A) 2 = - T1+0:1", "expect P0 \(A) 2 = - S*",
    "expect P0 \(A) 2 = - -*", "expect P0 \(A) 2 = - H*", "expect P0 \(A) 2 = - *", "expect P0 \(A) 2 = - A*",
    "expect P0 \(A) 2 = Z* Z* Z*", "expect P0 \(A) 1 = Z *", "expect contents P0 \(A) 1 = Z*",
    // the hugetlb pool (issue 20): observe hugetlb / expect hugetlb = total=N free=N resv=N surplus=N
    "observe hugetlb", "observe hugetlb x", "observe hugetlb \(A) 1", "observe hugetlb, P0 \(A) 1",
    "expect hugetlb = total=4 free=4 resv=1 surplus=0", "expect hugetlb = total=0 free=-1 resv=-12 surplus=0",
    "expect hugetlb", "expect hugetlb =", "expect hugetlb = total=4", "expect hugetlb = total=4 free=4 resv=1",
    "expect hugetlb = free=4 total=4 resv=1 surplus=0", "expect hugetlb = total=04 free=4 resv=1 surplus=0",
    "expect hugetlb = total=-0 free=4 resv=1 surplus=0", "expect hugetlb = total=+1 free=4 resv=1 surplus=0",
    "expect hugetlb = total=4 free=4 resv=1 surplus=0 x", "expect hugetlb = total= free=4 resv=1 surplus=0",
    "expect hugetlb = total=1234567890123456789 free=0 resv=0 surplus=0", "expect hugetlb total=4",
    "expect hugetlb = total=4 free=4 resv=1 surplus=0 => ok", "observe hugetlb => ok", "expect hugetlb \(A) 1 = Z",
]

/// Whole traces with the Large pages additions, each its own file (see `largePageLines`).
private let largePageTraces: [(String, [UInt8])] = [
    ("the spec's example", bytes("""
        thp enabled madvise
        thp 64K always
        proc P0
        P0 mmap 0x100000000000 1024 rw anon-private
        P0 madvise 0x100000000000 512 hugepage
        P0 write 0x100000000000
        P0 read 0x100000200000
        P0 write 0x100000210000
        P1 = fork P0
        P1 write 0x100000000000
        observe P0 0x100000000000 2, P1 0x100000000000 2, P0 0x100000210000 2
        expect P0 0x100000000000 2, P1 0x100000000000 2, P0 0x100000210000 2 = A1+0:1* A1+1:2* A2:1 A1+1:2 A3+0:2 A3+1:2

        """)),
    ("settings in any order with swap and files", bytes("hugetlb 2\nswap 4\nthp enabled always\nfile f1 1\nthp 2M never\nthp enabled never\nproc P0\n")),
    ("hugetlb twice", bytes("hugetlb 2\nhugetlb 3\n")),
    ("hugetlb twice after a proc", bytes("hugetlb 2\nproc P0\nhugetlb 3\n")),
    ("thp after a proc", bytes("thp enabled always\nproc P0\nthp 2M always\n")),
    ("hugetlb after a proc, bad number", bytes("proc P0\nhugetlb x\n")),
    ("thp after a proc, bad size", bytes("proc P0\nthp 4M always\n")),
    ("thp shrink before and after processes", bytes("thp shrink\nproc P0\nthp shrink\nP0 exit\nthp shrink\n")),
    ("a process named thp", bytes("proc thp\nthp read \(A)\nthp shrink\n")),
    ("a process named thp, then a setting", bytes("proc thp\nthp enabled always\n")),
    ("split is model only", bytes("proc P0\nP0 mmap \(A) 512 rw anon-private\nP0 split \(A) 512 => ok\n")),
    ("hugetlb mappings", bytes("hugetlb 2\nproc P0\nP0 mmap 0x100000200000 512 rw hugetlb-shared\nP0 write 0x100000200000 => SIGBUS\nexpect P0 0x100000200000 1 = T1+0:1*\n")),
]

/// Whole traces, each its own file.
private let badTraces: [(String, [UInt8])] = [
    ("swap twice", bytes("swap 4\nswap 8\n")),
    ("swap too large", bytes("swap 16777217\n")),
    ("swap after a file and a proc", bytes("file f1 1\nproc P0\nswap 2\n")),
    ("swap after a proc, bad number", bytes("proc P0\nswap x\n")),
    ("swap 0 after a proc", bytes("proc P0\nswap 0\n")),
    ("swap 0 runs", bytes("swap 0\nproc P0\n")),
    ("swap 0x40", bytes("swap 0x40\nproc P0\n")),
    ("empty", []),
    ("only blanks and comments", bytes("\n\n   \n\t\n# c\n")),
    ("no final newline", bytes("proc P0\nP0 read \(A)")),
    ("no final newline, bad", bytes("proc P0\nP0 read 0x1")),
    ("CRLF", bytes("proc P0\r\nP0 mmap \(A) 4 rw anon-private\r\nP0 read \(A) 4 => ok\r\n")),
    ("CRLF, bad", bytes("proc P0\r\nP0 mmap \(A) 4 rw\r\n")),
    ("CR only", bytes("proc P0\rP0 read \(A)\r")),
    ("NUL in a token", bytes("proc P0\nP0 read \(A)") + [0] + bytes("\n")),
    ("NUL at the start", [0] + bytes("proc P0\n")),
    ("NUL after a CR", bytes("proc P0\r") + [0] + bytes("\n")),
    ("NUL in a comment", bytes("proc P0 # ") + [0] + bytes("\nP0 read \(A)\n")),
    ("invalid UTF-8", bytes("proc P1\nP1 r\u{E9}") + [0xFF, 0x0A]),
    ("overlong", [0xC0, 0x80]),
    ("truncated at the end", bytes("proc P0\r\n\r\n# \u{1F600}") + [0xE2, 0x82]),
    ("bad line before a bad byte", bytes("frob\n") + [0x80]),
    ("bad byte before a bad line", bytes("proc P0\n") + [0x80] + bytes("\nfrob")),
    ("bad byte in a comment", bytes("proc P0 # ") + [0xED, 0xA0, 0x80] + bytes("\n")),
    ("bad byte after a CR", bytes("proc P0\r") + [0xF5] + bytes("\n")),
    ("beyond U+10FFFF", bytes("proc P0 ") + [0xF4, 0x90, 0x80, 0x80]),
    ("four-byte scalar then an error", bytes("proc P0\nP0 read \u{1F600} 1\n")),
    ("a very long line", bytes("proc P0\nP0 read \(A)" + String(repeating: " ", count: 100_000) + "x\n")),
    ("a very long token", bytes("proc P0\nP0 read " + String(repeating: "1", count: 100_000) + "\n")),
    ("a very long comment", bytes("proc P0\n#" + String(repeating: "#", count: 200_000) + "\nP0 exit x\n")),
    ("many targets", bytes("proc P0\nobserve " + Array(repeating: "P0 \(A) 1000", count: 1100).joined(separator: ",") + "\n")),
    ("a continuation glued to '=>'", bytes("proc P0\nP0 read \(A) =>ok\n")),
    ("a UTF-8 byte order mark", [0xEF, 0xBB, 0xBF] + bytes("proc P0\n")),
    ("a byte order mark alone", [0xEF, 0xBB, 0xBF]),
]

// MARK: - Tests

@Suite struct ParserAgreementTests {
    @Test func theOracleIsBuilt() throws {
        #expect(oraclePath != nil, "rmap-oracle is not built: run `swift build --product rmap-oracle` (make test does)")
    }

    @Test func corpusTracesParseOnBothSides() throws {
        let fuzzCorpus = packageRoot.appendingPathComponent("Fuzz/corpus/parser")
        let extra = (try? FileManager.default.contentsOfDirectory(at: fuzzCorpus, includingPropertiesForKeys: nil)) ?? []
        let traces = corpusTraces() + extra.filter { $0.pathExtension == "trace" }.sorted { $0.path < $1.path }
        #expect(traces.count > 50)
        var skipped = 0
        for url in traces {
            let data = try [UInt8](Data(contentsOf: url))
            let c = try expectAgreement(data, name: url.lastPathComponent, url.path)
            #expect(c.swift == .accepted, "\(url.path): the corpus must parse")
            if c.oracle.skipLine != nil { skipped += 1 }
        }
        // The model-only corpus (Tests/Corpus/model) parses on the oracle too, which would skip it.
        #expect(skipped > 0)
    }

    @Test(arguments: badLines)
    func malformedLine(_ bad: String) throws {
        try expectAgreement(bytes(base + "\n" + bad + "\n"), name: "line.trace", bad.debugDescription)
        // On its own too (no processes, no files): other errors, `swap` allowed.
        try expectAgreement(bytes(bad), name: "alone.trace", "alone: " + bad.debugDescription)
    }

    @Test(arguments: largePageLines)
    func largePageLine(_ line: String) throws {
        try expectAgreement(bytes(base + "\n" + line + "\n"), name: "line.trace", line.debugDescription)
        try expectAgreement(bytes(line), name: "alone.trace", "alone: " + line.debugDescription)
    }

    @Test func largePageWholeTraces() throws {
        for (i, (what, data)) in largePageTraces.enumerated() {
            try expectAgreement(data, name: "large-\(i).trace", what)
        }
    }

    @Test func malformedTraces() throws {
        for (i, (what, data)) in badTraces.enumerated() {
            try expectAgreement(data, name: "whole-\(i).trace", what)
        }
    }

    @Test func manyProcessesParseAndTheOracleWouldSkipThem() throws {
        // The oracle runs at most 1000 processes: a run-time limit (exit 77), not a parse error.
        let text = (0...1000).map { "proc p\($0)" }.joined(separator: "\n") + "\np1000 exit\n"
        let c = try compare(bytes(text), name: "procs.trace")
        #expect(c.swift == .accepted && c.oracle.verdict == .accepted, "\(c.oracle.output)")
        #expect(c.oracle.skipLine == 1001, "\(c.oracle.output)")
    }

    @Test func withoutParseOnlyAMalformedTraceIs2AndAModelOnlyOne77() throws {
        // Nothing runs in either case: the parse comes first.
        let bad = try writeTrace(bytes("proc P0\nP0 unmap \(A) 1 migration,bogus\n"), name: "bad-run.trace")
        let r = try runOracle([bad])
        #expect(r.status == 2 && r.err.hasPrefix(bad + ":2:37: error: "), "\(r)")
        let skip = try writeTrace(bytes("proc P0\nP0 unmap \(A) 1 migration,ignore_access\n"), name: "skip-run.trace")
        defer {
            try? FileManager.default.removeItem(atPath: bad)
            try? FileManager.default.removeItem(atPath: skip)
        }
        let s = try runOracle([skip])
        #expect(s.status == 77 && s.err.contains("line 2: 'unmap' is a model-only statement"), "\(s)")
        let p = try oracleParse(skip)
        #expect(p.verdict == .accepted && p.skipLine == 2, "\(p.output)")
    }

    /// Generated traces (kernel-only, with KSM, and with model-only statements),
    /// then damaged: a token replaced, deleted or inserted, or two lines swapped.
    @Test func damagedGeneratedTraces() throws {
        var rng = SplitMix64(seed: 0x5EED_A9EE)
        var rejected = 0, accepted = 0
        for i in 0..<(240 * scale) {
            var g = TraceGenerator(seed: UInt64(i + 1), kernelOnly: i % 3 != 2)
            g.ksm = i % 3 == 1
            var lines = g.generate(statements: 25).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let k = rng.below(lines.count)
            var words = lines[k].split(separator: " ").map(String.init)
            switch i % 5 {
            case 0 where !words.isEmpty: words[rng.below(words.count)] = vocabulary[rng.below(vocabulary.count)]
            case 1 where !words.isEmpty: words.remove(at: rng.below(words.count))
            case 2: words.insert(vocabulary[rng.below(vocabulary.count)], at: rng.below(words.count + 1))
            case 3: lines.swapAt(k, rng.below(lines.count))
            default: break  // intact
            }
            if i % 5 != 3 { lines[k] = words.joined(separator: rng.below(4) == 0 ? "\t" : " ") }
            let c = try expectAgreement(bytes(lines.joined(separator: "\n")), name: "gen-\(i).trace", "generated trace \(i), line \(k + 1): \(lines[k].debugDescription)")
            if c.swift == .accepted { accepted += 1 } else { rejected += 1 }
        }
        #expect(accepted > 50 && rejected > 50, "accepted \(accepted), rejected \(rejected)")
    }

    /// Lines of words from the language's own vocabulary (glued with commas,
    /// tabs, CRs at times) after valid preambles.
    @Test func tokenSoup() throws {
        let preambles = ["", base + "\n", "swap 4\nfile f1 8\nproc P0\n", "proc P0\nP1 = fork P0\nksm scan\n"]
        var rng = SplitMix64(seed: 0x5EED_50AB)
        var rejected = 0, accepted = 0
        for i in 0..<(300 * scale) {
            var text = preambles[rng.below(preambles.count)]
            for _ in 0..<(1 + rng.below(3)) {
                let n = 1 + rng.below(8)
                var line = ""
                for w in 0..<n {
                    if w > 0 { line += [" ", " ", "\t", ",", " , ", "  "][rng.below(6)] }
                    line += vocabulary[rng.below(vocabulary.count)]
                }
                text += line + (rng.below(10) == 0 ? "\r\n" : "\n")
            }
            let c = try expectAgreement(bytes(text), name: "soup-\(i).trace", "soup \(i): \(text.debugDescription)")
            if c.swift == .accepted { accepted += 1 } else { rejected += 1 }
        }
        // Soup is nearly always malformed (a few traces of the 300 parse): the positions are what it tests.
        #expect(rejected > 250 * scale, "accepted \(accepted), rejected \(rejected)")
    }
}

/// The random tests' size: PARSER_AGREEMENT_SCALE=N runs N times as many cases.
private let scale = max(1, Int(ProcessInfo.processInfo.environment["PARSER_AGREEMENT_SCALE"] ?? "") ?? 1)

/// Words of the language and near misses, for the random tests.
private let vocabulary = [
    "file", "proc", "swap", "observe", "expect", "fork", "=", "=>", ",", "exit", "mmap", "munmap", "mprotect",
    "mremap", "read", "write", "madvise", "mlock", "munlock", "unmap", "reclaim", "migrate", "referenced",
    "mkclean", "poison", "device", "exclusive", "coherent", "ksm", "scan", "split", "thp", "P0", "P1", "P2", "Q",
    "Dead", "f1", "f2", "nofile", A, "0x100000001000", top, "0x700000000000", "0x100000000001", "0", "1", "2", "0x10",
    "1048577", "18446744073709551616", "none", "rw", "wr", "anon-private", "anon-shared", "file-shared:f1@0",
    "file-private:f1@", "file-private:f2@0x1", "hugetlb-private", "dontneed", "mergeable", "hugepage",
    "ignore_mlock,batch_flush", "migration,", "split_freeze", "ok", "EINVAL", "EHWPOISON", "SIGBUS", "E1",
    "referenced=1", "cleaned=01", "value=7", "value=", "value=0x", "-", "Z", "H", "X", "A1:1", "A1:01", "K2:1", "A1+0:1",
    "Z*", "1,", ",P1", "exit,", "=>ok", "#", "# c", "\u{E9}", "\u{0}", "\r", "\u{FEFF}",
]
