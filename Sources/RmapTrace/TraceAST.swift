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
