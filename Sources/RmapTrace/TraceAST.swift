import Rmap
// The abstract syntax of the trace language, version 1 (see docs/trace-format.md).
// Produced by `TraceParser`; consumed by the model interpreter and the kernel oracle.

/// A position in a trace file. Both fields are 1-based; `column` counts Unicode
/// scalars (code points) of the line, which for every valid token is its characters.
public struct SourceLocation: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// One `P ADDR PAGES` target of an `observe` or `expect` statement.
public struct Target: Equatable, Sendable {
    public var process: String
    public var addr: UInt64
    public var pages: UInt64
    /// Where the target's process name is.
    public var location: SourceLocation

    public init(process: String, addr: UInt64, pages: UInt64, location: SourceLocation) {
        self.process = process
        self.addr = addr
        self.pages = pages
        self.location = location
    }
}

/// One statement of a trace.
public enum Statement: Equatable, Sendable {
    case file(name: String, pages: UInt64)
    case proc(name: String)
    case swap(slots: UInt64)
    /// An operation line; `expected` is the RESULT token after `=>`, if any.
    case op(process: String, operation: Operation, expected: String?)
    case observe([Target])
    /// `tokens` has exactly one token per page of the targets.
    case expect([Target], tokens: [String])
    /// `observe contents TARGET...`: the value each page reads back, without
    /// a fault (docs/trace-format.md, Project additions).
    case observeContents([Target])
    /// `expect contents TARGET... = VALUE...`: one content token per page.
    case expectContents([Target], tokens: [String])
    /// `ksm scan [PASSES]`: PASSES full scans of ksmd (model only).
    case ksmScan(passes: UInt64)
    /// `observe hugetlb`: the hugetlb pool as this trace sees it
    /// (docs/trace-format.md, "The hugetlb pool"): `total=N free=N resv=N surplus=N`.
    case observeHugetlb
    /// `expect hugetlb = total=N free=N resv=N surplus=N`.
    case expectHugetlb(tokens: [String])

    // Large pages (docs/trace-format.md, "Large pages (additions, version 1)").
    // Parsed; the model does not run them yet (`Machine.step` reports an error).
    // `Trace.largePageSettings` folds the settings statements.

    /// `thp enabled MODE` (a setting: before any process statement).
    case thpEnabled(THPEnabledMode)
    /// `thp SIZE MODE` (a setting: before any process statement).
    case thpSize(THPSize, THPSizeMode)
    /// `hugetlb PAGES`: the hugetlb pool, in 2 MiB pages (a setting, at most once).
    case hugetlb(pages: UInt64)
    /// `thp shrink`: the deferred-split shrinker runs (anywhere; no result).
    case thpShrink
    /// An operation line of the Large pages additions: `P split`, `P madvise
    /// ... hugepage|nohugepage|collapse`, and `P mmap` with a hugetlb KIND or
    /// `noreserve`. Kept apart from `.op` until the core's `Operation` and
    /// `Advice` carry them (adding cases there needs `Machine.perform` and
    /// madvise to handle them); so `.op` never holds anything the model
    /// cannot run.
    case largePageOp(process: String, operation: LargePageOperation, expected: String?)
}

extension Statement {
    /// Whether this is one of the Large pages additions (`Machine.step`
    /// refuses them: the model does not implement large pages yet).
    public var isLargePageStatement: Bool {
        switch self {
        case .thpEnabled, .thpSize, .hugetlb, .thpShrink, .largePageOp, .observeHugetlb, .expectHugetlb: return true
        case .op(_, .mmap(_, _, _, let kind), _): return kind.isHugetlb
        case .file, .proc, .swap, .op, .observe, .expect, .observeContents, .expectContents, .ksmScan: return false
        }
    }

    /// The trace spelling of a Large pages statement (`thp 64K always`,
    /// `P0 split 0x100000000000 2 => ok`); nil for the others.
    public var largePageDescription: String? {
        switch self {
        case .thpEnabled(let mode): return "thp enabled \(mode.rawValue)"
        case .thpSize(let size, let mode): return "thp \(size.name) \(mode.rawValue)"
        case .hugetlb(let pages): return "hugetlb \(pages)"
        case .thpShrink: return "thp shrink"
        case .observeHugetlb: return "observe hugetlb"
        case .expectHugetlb(let tokens): return "expect hugetlb = " + tokens.joined(separator: " ")
        case .largePageOp(let p, let op, let expected):
            return "\(p) \(op)" + (expected.map { " => \($0)" } ?? "")
        case .op(let p, .mmap(let a, let n, let prot, let kind), let expected) where kind.isHugetlb:
            // Not what the parser makes (it gives `.largePageOp`), but the API can build it.
            let op = LargePageOperation.mmap(addr: a, pages: n, prot: prot, kind: kind, noreserve: false)
            return "\(p) \(op)" + (expected.map { " => \($0)" } ?? "")
        default: return nil
        }
    }
}

/// A statement and its 1-based line number.
public struct TraceLine: Equatable, Sendable {
    public var line: Int
    public var statement: Statement

    public init(line: Int, statement: Statement) {
        self.line = line
        self.statement = statement
    }
}

/// A parsed trace: its statements in order (blank and comment-only lines are dropped).
public struct Trace: Equatable, Sendable {
    public var file: String
    public var lines: [TraceLine]

    public init(file: String, lines: [TraceLine]) {
        self.file = file
        self.lines = lines
    }

    /// The THP and hugetlb settings the trace runs with: its `thp` and
    /// `hugetlb` statements (the settings all before any process statement;
    /// `thp shrink`, anywhere, only marks the trace as one with a `thp`
    /// statement) applied in order to `LargePageSettings.initial`.
    public var largePageSettings: LargePageSettings {
        var s = LargePageSettings.initial
        for l in lines { s.apply(l.statement) }
        return s
    }
}

/// A malformed or inconsistent trace. `line` and `column` are 1-based.
public struct TraceError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var line: Int
    public var column: Int
    public var message: String

    public init(file: String, line: Int, column: Int, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
    }

    /// `FILE:LINE:COLUMN: error: MESSAGE`
    public var description: String { "\(file):\(line):\(column): error: \(message)" }
}

/// The hugetlb pool as a trace sees it (`observe hugetlb`,
/// docs/trace-format.md "The hugetlb pool"): on the oracle HugePages_Total,
/// _Free, _Rsvd and _Surp less what they were before the trace's first
/// statement, plus the pages its `hugetlb PAGES` asked for in total and free
/// (so that other users of the machine's pool do not show); on the model,
/// whose pool serves the trace alone, its own counts.
public enum HugetlbPoolView {
    public static let names = ["total", "free", "resv", "surplus"]

    /// `total=N free=N resv=N surplus=N`.
    public static func tokens(total: Int64, free: Int64, resv: Int64, surplus: Int64) -> [String] {
        ["total=\(total)", "free=\(free)", "resv=\(resv)", "surplus=\(surplus)"]
    }

    /// `NAME=N`: N decimal, `-` for a negative one, no leading zero, no `+`.
    public static func isToken(_ s: String, name: String) -> Bool {
        guard s.hasPrefix(name + "=") else { return false }
        var digits = Substring(s.dropFirst(name.count + 1))
        let negative = digits.hasPrefix("-")
        if negative { digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return false }
        return digits == "0" ? !negative : !digits.hasPrefix("0")
    }
}
