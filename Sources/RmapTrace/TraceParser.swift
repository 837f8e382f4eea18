import Rmap
// The parser of the trace language, version 1 (see docs/trace-format.md).
//
// Parsing is one pass over the lines; the static checks (processes created before
// use and not exited, files declared before use, the placement of the settings
// `swap`, `thp` and `hugetlb`, observation sizes, `=> RESULT` syntax) run in
// line order, and inside a line left to right,
// so the first error reported is the leftmost one of the first bad line
// (`parse(bytes:)` decodes line by line: invalid UTF-8 is that line's error).
//
// Columns are 1-based and count Unicode scalars of the line (the line's characters:
// every valid token is ASCII). Memory is linear in the input; nothing is allocated
// per page of a statement.

public enum TraceParser {
    /// The most pages one `observe` or `expect` statement may cover (all targets together).
    public static let maxObservedPages: UInt64 = 1 << 20
    /// The lowest address a trace may name.
    public static let minAddress: UInt64 = 0x1000_0000_0000
    /// The end (exclusive) of the addresses a trace may name; every range ends at or below it.
    public static let maxAddress: UInt64 = 0x7000_0000_0000
    public static let pageSize: UInt64 = 4096
    /// The longest name (process or file): the machine's rule (`Machine.maxNameLength`).
    public static let maxNameLength = Machine.maxNameLength
    /// The largest `file` (pages): the machine's rule (`Machine.maxFilePages`).
    public static let maxFilePages: UInt64 = Machine.maxFilePages
    /// The largest `swap` (slots).
    public static let maxSwapSlots: UInt64 = 1 << 24
    /// The most passes one `ksm scan` may run.
    public static let maxKSMPasses: UInt64 = 1000
    /// The largest PGOFF of a file mapping.
    public static let maxPgoff: UInt64 = 1 << 32
    /// Words that start a non-operation statement; they cannot name a process.
    public static let reservedWords: Set<String> = ["file", "proc", "swap", "observe", "expect"]
    /// The verbs of `P VERB ...` operation lines.
    public static let verbs: Set<String> = [
        "exit", "mmap", "munmap", "mprotect", "mremap", "read", "write", "madvise", "mlock", "munlock",
        "unmap", "reclaim", "migrate", "referenced", "mkclean", "poison", "device", "exclusive",
        "split",
    ]
    /// The largest `hugetlb` pool (2 MiB pages): 4096, 8 GiB, the kernel oracle's
    /// limit too (MAX_HUGETLB_PAGES in Sources/RmapOracle/parse.c).
    public static let maxHugetlbPages: UInt64 = 4096

    /// Parses and statically checks a trace. Only `TraceError` is thrown.
    public static func parse(_ text: String, file: String) throws(TraceError) -> Trace {
        try parse(text, file: file, continuing: nil)
    }

    /// Parses a trace that continues a saved state (`rmap replay --load`):
    /// the processes and files of `context` exist already (so `swap` is no
    /// longer allowed).
    public static func parse(_ text: String, file: String, continuing context: TraceContext?) throws(TraceError) -> Trace {
        var parser = LineParser(file: file, continuing: context)
        var line: [Unicode.Scalar] = []
        var number = 1
        for scalar in text.unicodeScalars {
            if scalar == "\n" {
                try parser.parseLine(line, number: number)
                line.removeAll(keepingCapacity: true)
                number += 1
            } else {
                line.append(scalar)
            }
        }
        try parser.parseLine(line, number: number)
        return Trace(file: file, lines: parser.lines)
    }

    /// Parses raw bytes: invalid UTF-8 is an error at the first bad byte. Only `TraceError` is thrown.
    public static func parse(bytes: [UInt8], file: String) throws(TraceError) -> Trace {
        try parse(bytes: bytes, file: file, continuing: nil)
    }

    /// `parse(bytes:file:)` for a trace that continues a saved state.
    ///
    /// Lines are decoded and parsed one at a time, so errors come in line order whatever
    /// their kind: a line with invalid UTF-8 fails at its first bad byte (the column
    /// counts the scalars before it), after every earlier line has been checked.
    public static func parse(bytes: [UInt8], file: String, continuing context: TraceContext?) throws(TraceError) -> Trace {
        var parser = LineParser(file: file, continuing: context)
        var iterator = bytes.makeIterator()
        var decoder = Unicode.UTF8.ForwardParser()
        var line: [Unicode.Scalar] = []
        var number = 1, offset = 0
        decoding: while true {
            switch decoder.parseScalar(from: &iterator) {
            case .valid(let encoded):
                offset += encoded.count
                let scalar = Unicode.UTF8.decode(encoded)
                if scalar == "\n" {
                    try parser.parseLine(line, number: number)
                    line.removeAll(keepingCapacity: true)
                    number += 1
                } else {
                    line.append(scalar)
                }
            case .error:
                let byte = offset < bytes.count ? bytes[offset] : 0
                throw TraceError(file: file, line: number, column: line.count + 1,
                                 message: "invalid UTF-8 (byte 0x\(hex2(byte)))")
            case .emptyInput:
                break decoding
            }
        }
        try parser.parseLine(line, number: number)
        return Trace(file: file, lines: parser.lines)
    }

    private static func hex2(_ b: UInt8) -> String {
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
    }
}

// MARK: - Tokens

struct Token {
    var text: String
    /// 1-based column of the first scalar.
    var column: Int
    /// Length in Unicode scalars.
    var length: Int
    /// The column just after the token.
    var endColumn: Int { column + length }
}

/// Splits one line (without its terminator) into tokens: separated by spaces and tabs,
/// `#` starts a comment anywhere.
func lexLine(_ scalars: [Unicode.Scalar]) -> [Token] {
    var tokens: [Token] = []
    // A token is the scalars [start, i); it is made once it ends. ASCII (all
    // of a well-formed trace) is copied byte for byte into the String, not
    // appended a scalar at a time (measured: 8,600 -> 2,400 instructions per
    // line of `rmap replay`, issue 16).
    var start = -1
    var ascii = true
    func flush(_ end: Int) {
        guard start >= 0 else { return }
        let n = end - start
        let text: String
        if ascii {
            text = String(unsafeUninitializedCapacity: n) { buf in
                for j in 0..<n { buf[j] = UInt8(truncatingIfNeeded: scalars[start + j].value) }
                return n
            }
        } else {
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[start..<end])
            text = String(view)
        }
        tokens.append(Token(text: text, column: start + 1, length: n))
        start = -1
        ascii = true
    }
    var i = 0
    while i < scalars.count {
        let s = scalars[i]
        if s == "#" { break }
        if s == " " || s == "\t" {
            flush(i)
        } else {
            if start < 0 { start = i }
            if s.value >= 0x80 { ascii = false }
        }
        i += 1
    }
    flush(i)
    return tokens
}

/// Splits commas out of a token: `4,` → `4` `,`; `a,b` → `a` `,` `b`.
func splitCommas(_ token: Token) -> [Token] {
    guard token.text.unicodeScalars.contains(",") else { return [token] }
    var out: [Token] = []
    var current = String.UnicodeScalarView()
    var start = 0, length = 0
    for (i, s) in token.text.unicodeScalars.enumerated() {
        if s == "," {
            if length > 0 { out.append(Token(text: String(current), column: token.column + start, length: length)) }
            current = String.UnicodeScalarView()
            length = 0
            out.append(Token(text: ",", column: token.column + i, length: 1))
        } else {
            if length == 0 { start = i }
            current.append(s)
            length += 1
        }
    }
    if length > 0 { out.append(Token(text: String(current), column: token.column + start, length: length)) }
    return out
}

/// Quotes a piece of the input for a message: control characters escaped, long text shortened.
func quoted(_ s: String) -> String {
    var out = "'"
    var n = 0
    for scalar in s.unicodeScalars {
        if n == 40 {
            out += "..."
            break
        }
        n += 1
        if scalar.value < 0x20 || scalar.value == 0x7F || (scalar.value >= 0x80 && scalar.value < 0xA0) {
            out += "\\u{" + String(scalar.value, radix: 16) + "}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    return out + "'"
}

enum NumberParse {
    case value(UInt64)
    case invalid
    case tooLarge
}

/// Decimal or `0x` hex, no sign, no overflow.
func parseNumber<S: Collection>(_ s: S) -> NumberParse where S.Element == Unicode.Scalar {
    let scalars = Array(s)
    var radix: UInt64 = 10
    var digits = scalars[...]
    if scalars.count > 2 && scalars[0] == "0" && scalars[1] == "x" {
        radix = 16
        digits = scalars.dropFirst(2)
    }
    if digits.isEmpty { return .invalid }
    var value: UInt64 = 0
    var overflow = false
    for s in digits {
        let d: UInt64
        switch s.value {
        case 0x30...0x39: d = UInt64(s.value - 0x30)
        case 0x61...0x66 where radix == 16: d = UInt64(s.value - 0x61 + 10)
        case 0x41...0x46 where radix == 16: d = UInt64(s.value - 0x41 + 10)
        default: return .invalid
        }
        if overflow { continue }
        let (m, o1) = value.multipliedReportingOverflow(by: radix)
        let (a, o2) = m.addingReportingOverflow(d)
        if o1 || o2 { overflow = true } else { value = a }
    }
    return overflow ? .tooLarge : .value(value)
}

/// `-` (nothing readable without a fault) or `v` and the value in lower-case
/// hex without leading zeros (`v0`, `v7`, `v9e3779b97f4a7c15`).
func isContentToken(_ text: String) -> Bool {
    let b = Array(text.utf8)
    if b == [UInt8(ascii: "-")] { return true }
    guard b.count >= 2, b.count <= 17, b[0] == UInt8(ascii: "v") else { return false }
    if b.count > 2 && b[1] == UInt8(ascii: "0") { return false }
    return b.dropFirst().allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
}

/// See `ObservationToken` for the grammar (with the Large pages forms).
func isObservationToken(_ text: String) -> Bool {
    ObservationToken.problem(in: text) == nil
}

/// `ok`, `fail`, `SIGSEGV`, `SIGBUS`, `referenced=N`, `cleaned=N` (N decimal, as the model
/// prints it: no leading zero) or `E[A-Z]{2,15}`.
func isResult(_ text: String) -> Bool {
    switch text {
    case "ok", "fail", "SIGSEGV", "SIGBUS": return true
    default: break
    }
    for prefix in ["referenced=", "cleaned="] where text.hasPrefix(prefix) {
        let digits = Array(text.unicodeScalars.dropFirst(prefix.count))
        guard !digits.isEmpty, digits.allSatisfy({ $0.value >= 0x30 && $0.value <= 0x39 }) else { return false }
        if digits.count > 1 && digits[0] == "0" { return false }
        if case .value = parseNumber(digits) { return true }
        return false
    }
    let b = Array(text.utf8)
    guard b.count >= 3, b.count <= 16, b[0] == UInt8(ascii: "E") else { return false }
    return b.dropFirst().allSatisfy { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
}

// MARK: - Cursor over the statement's tokens

struct Cursor {
    let tokens: [Token]
    var index = 0
    /// Tokens at or after `end` are not the statement's (they follow `=>`).
    let end: Int
    /// Where a missing token is reported, and how the place is described.
    let endColumn: Int
    let endDescription: String

    var atEnd: Bool { index >= end }
    func peek() -> Token? { index < end ? tokens[index] : nil }
    mutating func next() -> Token? {
        guard index < end else { return nil }
        defer { index += 1 }
        return tokens[index]
    }
}

// MARK: - The line parser and its static state

/// The names a continued trace may use without creating them.
public struct TraceContext: Sendable, Equatable {
    public var processes: [String]
    public var exitedProcesses: [String]
    public var files: [String]
    public init(processes: [String], exitedProcesses: [String] = [], files: [String]) {
        self.processes = processes
        self.exitedProcesses = exitedProcesses
        self.files = files
    }
}

extension Machine {
    /// What a trace continuing this machine may name: its live and exited
    /// processes (creation order) and its files.
    public var traceContext: TraceContext {
        TraceContext(processes: processOrder.filter { mmByName[$0] != nil },
                     exitedProcesses: processOrder.filter { mmByName[$0] == nil }, files: fileOrder)
    }
}

struct LineParser {
    let file: String
    var lines: [TraceLine] = []
    var line = 0
    /// Every process ever created, and whether it is still alive.
    var processes: [String: Bool] = [:]
    var files: Set<String> = []
    var swapLine: Int?
    var hugetlbLine: Int?
    /// The first line that was a process statement (`proc` or an operation line).
    var firstProcessLine: Int?

    init(file: String, continuing context: TraceContext? = nil) {
        self.file = file
        if let context {
            for p in context.processes { processes[p] = true }
            for p in context.exitedProcesses { processes[p] = false }
            files = Set(context.files)
            // Line 0 stands for the saved state: it had process statements.
            if !context.processes.isEmpty || !context.exitedProcesses.isEmpty { firstProcessLine = 0 }
        }
    }

    func error(_ column: Int, _ message: String) -> TraceError {
        TraceError(file: file, line: line, column: max(1, column), message: message)
    }

    func missing(_ c: Cursor, _ what: String) -> TraceError {
        error(c.endColumn, "expected \(what), got \(c.endDescription)")
    }

    /// The message for a trace that starts with U+FEFF (the parser of the oracle says the same).
    static let byteOrderMarkMessage = "the trace starts with a UTF-8 byte order mark (bytes EF BB BF), "
        + "which a trace may not have: save it as UTF-8 without a BOM"

    mutating func parseLine(_ raw: [Unicode.Scalar], number: Int) throws(TraceError) {
        line = number
        if number == 1 && raw.first == "\u{FEFF}" { throw error(1, LineParser.byteOrderMarkMessage) }
        var scalars = raw
        if scalars.last == "\r" { scalars.removeLast() }
        var tokens = lexLine(scalars)
        guard let first = tokens.first else { return }

        if first.text == "observe" || first.text == "expect" {
            // Commas separate targets: split them out of every token before `=` / `=>`.
            var split: [Token] = [first]
            var inTargets = true
            for t in tokens.dropFirst() {
                if t.text == "=" || t.text == "=>" { inTargets = false }
                if inTargets { split += splitCommas(t) } else { split.append(t) }
            }
            tokens = split
        }

        let arrow = tokens.firstIndex { $0.text == "=>" }
        let end = arrow ?? tokens.count
        let cursor: Cursor
        if let a = arrow {
            cursor = Cursor(tokens: tokens, index: 1, end: end, endColumn: tokens[a].column, endDescription: "'=>'")
        } else {
            cursor = Cursor(tokens: tokens, index: 1, end: end, endColumn: tokens[end - 1].endColumn,
                            endDescription: "end of line")
        }

        if first.text == "ksm" && tokens.count > 1 && tokens[1].text == "scan" {
            // `ksm scan [PASSES]` ("scan" is no operation, so a process named ksm keeps its verbs).
            var c = cursor
            c.index = 2
            var passes: UInt64 = 1
            if c.peek() != nil {
                let (n, nTok) = try self.number(&c, "a pass count")
                guard n >= 1 && n <= TraceParser.maxKSMPasses else {
                    throw error(nTok.column, "ksm scan passes must be between 1 and \(TraceParser.maxKSMPasses), got \(quoted(nTok.text))")
                }
                passes = n
            }
            if let extra = c.peek() {
                throw error(extra.column, "unexpected \(quoted(extra.text)) after the statement")
            }
            if let a = arrow {
                throw error(tokens[a].column, "'=> RESULT' is only allowed on operation lines")
            }
            lines.append(TraceLine(line: number, statement: .ksmScan(passes: passes)))
            return
        }

        if (first.text == "thp" || first.text == "hugetlb")
            && !(tokens.count > 1 && (tokens[1].text == "=" || TraceParser.verbs.contains(tokens[1].text))) {
            // `thp ...` and `hugetlb PAGES` (Large pages): neither word is reserved, so a
            // process may still be named so; followed by a verb or `=`, it is that process.
            var c = cursor
            let statement = first.text == "thp" ? try parseTHP(first, &c) : try parseHugetlb(first, &c)
            if let extra = c.peek() {
                throw error(extra.column, "unexpected \(quoted(extra.text)) after the statement")
            }
            if let a = arrow {
                throw error(tokens[a].column, "'=> RESULT' is only allowed on operation lines")
            }
            lines.append(TraceLine(line: number, statement: statement))
            return
        }

        if TraceParser.reservedWords.contains(first.text) {
            if tokens.count > 1 && tokens[1].text == "=" {
                throw error(first.column, "'\(first.text)' is a reserved word and cannot name a process")
            }
            var c = cursor
            let statement = try parseKeywordStatement(first, &c)
            if let extra = c.peek() {
                throw error(extra.column, "unexpected \(quoted(extra.text)) after the statement")
            }
            if let a = arrow {
                throw error(tokens[a].column, "'=> RESULT' is only allowed on operation lines")
            }
            lines.append(TraceLine(line: number, statement: statement))
            return
        }

        var c = cursor
        let (process, operation) = try parseOperation(first, &c)
        if let extra = c.peek() {
            throw error(extra.column, "unexpected \(quoted(extra.text)) after the operation")
        }
        var expected: String?
        if let a = arrow {
            guard a + 1 < tokens.count else {
                throw error(tokens[a].endColumn, "expected a result after '=>', got end of line")
            }
            let result = tokens[a + 1]
            guard isResult(result.text) else {
                throw error(result.column, "expected a result (ok, fail, SIGSEGV, SIGBUS, referenced=N, cleaned=N or an errno name such as EINVAL), got \(quoted(result.text))")
            }
            if a + 2 < tokens.count {
                throw error(tokens[a + 2].column, "unexpected \(quoted(tokens[a + 2].text)) after the result")
            }
            expected = result.text
        }
        if firstProcessLine == nil { firstProcessLine = number }
        switch operation {
        case .core(let op):
            lines.append(TraceLine(line: number, statement: .op(process: process, operation: op, expected: expected)))
        case .largePage(let op):
            lines.append(TraceLine(line: number, statement: .largePageOp(process: process, operation: op, expected: expected)))
        }
    }

    // MARK: Large pages settings

    /// `thp enabled MODE`, `thp SIZE MODE` (settings: before any process
    /// statement) or `thp shrink` (anywhere). The cursor is after `thp`.
    mutating func parseTHP(_ keyword: Token, _ c: inout Cursor) throws(TraceError) -> Statement {
        if let w = c.peek(), w.text == "shrink" {
            _ = c.next()
            return .thpShrink
        }
        try checkSettingPlacement(keyword)
        let sizes = THPSize.allCases.map(\.name).joined(separator: " ")
        guard let what = c.next() else { throw missing(c, "'enabled', a size (\(sizes)) or 'shrink' after 'thp'") }
        if what.text == "enabled" {
            guard let m = c.next() else { throw missing(c, "a THP mode (always, madvise or never)") }
            guard let mode = THPEnabledMode(rawValue: m.text) else {
                throw error(m.column, "expected a THP mode (always, madvise or never), got \(quoted(m.text))")
            }
            return .thpEnabled(mode)
        }
        guard let size = THPSize(name: what.text) else {
            throw error(what.column, "expected 'enabled', a size (\(sizes)) or 'shrink' after 'thp', got \(quoted(what.text))")
        }
        guard let m = c.next() else { throw missing(c, "a THP size mode (always, inherit, madvise or never)") }
        guard let mode = THPSizeMode(rawValue: m.text) else {
            throw error(m.column, "expected a THP size mode (always, inherit, madvise or never), got \(quoted(m.text))")
        }
        return .thpSize(size, mode)
    }

    /// `hugetlb PAGES`: at most once, before any process statement. The cursor is after `hugetlb`.
    mutating func parseHugetlb(_ keyword: Token, _ c: inout Cursor) throws(TraceError) -> Statement {
        let pages = try parseCountSetting(keyword, &c, previous: hugetlbLine, what: "a huge page count",
                                          max: TraceParser.maxHugetlbPages) {
            "the hugetlb pool must be at most \(TraceParser.maxHugetlbPages) pages, got \($0)"
        }
        hugetlbLine = line
        return .hugetlb(pages: pages)
    }

    /// A setting given at most once (`swap`, `hugetlb`), before any process
    /// statement, with a count of at most `max`: the count. `what` names it
    /// when it is missing; `tooLarge` says why a larger one (quoted) is refused.
    func parseCountSetting(_ keyword: Token, _ c: inout Cursor, previous: Int?, what: String, max: UInt64,
                           tooLarge: (String) -> String) throws(TraceError) -> UInt64 {
        if let previous {
            throw error(keyword.column, "'\(keyword.text)' is given twice (first on line \(previous))")
        }
        try checkSettingPlacement(keyword)
        let (n, tok) = try number(&c, what)
        guard n <= max else { throw error(tok.column, tooLarge(quoted(tok.text))) }
        return n
    }

    /// A setting (`swap`, `thp`, `hugetlb`) must come before any process statement.
    func checkSettingPlacement(_ keyword: Token) throws(TraceError) {
        if let p = firstProcessLine {
            throw error(keyword.column, "'\(keyword.text)' must come before any process statement ("
                        + (p == 0 ? "the saved state this trace continues has processes)" : "line \(p) is one)"))
        }
    }

    // MARK: Statements other than operation lines

    mutating func parseKeywordStatement(_ keyword: Token, _ c: inout Cursor) throws(TraceError) -> Statement {
        switch keyword.text {
        case "file":
            guard let nameTok = c.next() else { throw missing(c, "a file name") }
            try checkNameSyntax(nameTok, "a file name")
            if files.contains(nameTok.text) {
                throw error(nameTok.column, "file \(quoted(nameTok.text)) is already declared")
            }
            let (pages, pagesTok) = try number(&c, "a page count")
            guard pages >= 1 && pages <= TraceParser.maxFilePages else {
                throw error(pagesTok.column, "file size must be between 1 and \(TraceParser.maxFilePages) pages, got \(quoted(pagesTok.text))")
            }
            files.insert(nameTok.text)
            return .file(name: nameTok.text, pages: pages)

        case "proc":
            guard let nameTok = c.next() else { throw missing(c, "a process name") }
            try checkNewProcess(nameTok)
            processes[nameTok.text] = true
            if firstProcessLine == nil { firstProcessLine = line }
            return .proc(name: nameTok.text)

        case "swap":
            let slots = try parseCountSetting(keyword, &c, previous: swapLine, what: "a slot count",
                                              max: TraceParser.maxSwapSlots) {
                "swap size must be at most \(TraceParser.maxSwapSlots) slots, got \($0)"
            }
            swapLine = line
            return .swap(slots: slots)

        case "observe":
            if hugetlbPoolFollows(c, isExpect: false) {
                _ = c.next()
                return .observeHugetlb
            }
            if contentsFollows(c) {
                _ = c.next()
                return .observeContents(try parseTargets(&c, isExpect: false))
            }
            let targets = try parseTargets(&c, isExpect: false)
            return .observe(targets)

        default: // "expect"
            if hugetlbPoolFollows(c, isExpect: true) {
                _ = c.next()
                return .expectHugetlb(tokens: try hugetlbPoolTokens(&c))
            }
            if contentsFollows(c) {
                _ = c.next()
                let targets = try parseTargets(&c, isExpect: true)
                let tokens = try expectTokens(&c, targets, article: "a", what: "content token", valid: isContentToken,
                                              forms: "- or v<hex value>, such as v0 or v1f")
                return .expectContents(targets, tokens: tokens)
            }
            let targets = try parseTargets(&c, isExpect: true)
            let tokens = try expectTokens(&c, targets, article: "an", what: "observation token", valid: isObservationToken,
                                          problem: ObservationToken.problem(in:),
                                          forms: "-, Z, S, M, H, D, X, A<id>:<mapcount>, F<id>:<mapcount>, K<id>:<mapcount>, "
                                              + "A<id>+<sub>:<mapcount>, T<id>+<sub>:<mapcount>*, Z*, M* or H*; '*' marks a PMD leaf")
            return .expect(targets, tokens: tokens)
        }
    }

    /// `observe hugetlb` / `expect hugetlb = ...`: the word `hugetlb` then
    /// the end of the line (observe) or `=` (expect); a process named
    /// hugetlb is followed by its address.
    func hugetlbPoolFollows(_ c: Cursor, isExpect: Bool) -> Bool {
        guard c.index < c.end, c.tokens[c.index].text == "hugetlb" else { return false }
        if c.index + 1 == c.end { return true }
        return isExpect && c.tokens[c.index + 1].text == "="
    }

    /// After `expect hugetlb`: `=` and the four counters, in order, each
    /// `NAME=N` with N a decimal number, possibly negative.
    func hugetlbPoolTokens(_ c: inout Cursor) throws(TraceError) -> [String] {
        guard c.next() != nil else { throw missing(c, "'='") }
        var tokens: [String] = []
        for name in HugetlbPoolView.names {
            guard let t = c.next() else { throw missing(c, "'\(name)=N' (the pool's \(name) count)") }
            guard HugetlbPoolView.isToken(t.text, name: name) else {
                throw error(t.column, "expected '\(name)=N' (the pool's \(name) count, a decimal number), got \(quoted(t.text))")
            }
            tokens.append(t.text)
        }
        if let t = c.next() { throw error(t.column, "unexpected \(quoted(t.text)) after the hugetlb pool's four counts") }
        return tokens
    }

    /// `observe contents ...` / `expect contents ...`: the word `contents`
    /// followed by something other than a number (a process named contents
    /// is followed by its address, which starts with a digit).
    func contentsFollows(_ c: Cursor) -> Bool {
        guard c.index + 1 < c.end, c.tokens[c.index].text == "contents" else { return false }
        guard let s = c.tokens[c.index + 1].text.unicodeScalars.first else { return false }
        return !(s.value >= 0x30 && s.value <= 0x39)
    }

    /// After `=`: one token per page of the targets, each `valid`. `problem`, when
    /// given, says why a token is not (nil when it is; `ObservationToken.noSuchToken`
    /// for a token like none of the forms, which gets `forms`).
    mutating func expectTokens(_ c: inout Cursor, _ targets: [Target], article: String, what: String,
                               valid: (String) -> Bool, problem: ((String) -> String?)? = nil,
                               forms: String) throws(TraceError) -> [String] {
        guard let eq = c.next() else { throw missing(c, "'='") }  // parseTargets stops only at '=' or the end
        var total: UInt64 = 0
        for t in targets { total += t.pages }
        var tokens: [String] = []
        while let t = c.next() {
            if let problem, let why = problem(t.text), why != ObservationToken.noSuchToken {
                throw error(t.column, "expected \(article) \(what), got \(quoted(t.text)): \(why)")
            }
            guard valid(t.text) else { throw error(t.column, "expected \(article) \(what) (\(forms)), got \(quoted(t.text))") }
            guard UInt64(tokens.count) < total else {
                throw error(t.column, "too many \(what)s: the targets cover \(total) page\(total == 1 ? "" : "s")")
            }
            tokens.append(t.text)
        }
        guard UInt64(tokens.count) == total else {
            // Reported just after the last token of the statement (the last token, or '=').
            let column = c.index > 0 ? c.tokens[c.index - 1].endColumn : eq.endColumn
            throw error(column, "expected \(total) \(what)\(total == 1 ? "" : "s") (one per page), got \(tokens.count)")
        }
        return tokens
    }

    /// `P ADDR PAGES[, P ADDR PAGES ...]`, stopping at the end or (for expect) at `=`.
    mutating func parseTargets(_ c: inout Cursor, isExpect: Bool) throws(TraceError) -> [Target] {
        var targets: [Target] = []
        var total: UInt64 = 0
        while true {
            guard let p = c.next() else { throw missing(c, "a process name") }
            try checkNameSyntax(p, "a process name")
            try checkAlive(p)
            let (addr, addrTok) = try address(&c, "an address")
            let (pages, pagesTok) = try pageCount(&c)
            try checkRange(addr, addrTok, pages, pagesTok)
            total += pages  // each range is below 2^35 pages: no overflow
            if total > TraceParser.maxObservedPages {
                throw error(pagesTok.column, "\(isExpect ? "expect" : "observe") covers \(total) pages, more than the limit of \(TraceParser.maxObservedPages)")
            }
            targets.append(Target(process: p.text, addr: addr, pages: pages,
                                  location: SourceLocation(line: line, column: p.column)))
            guard let sep = c.peek() else {
                if isExpect { throw missing(c, "',' or '='") }
                return targets
            }
            if sep.text == "," {
                _ = c.next()
                continue
            }
            if isExpect && sep.text == "=" { return targets }
            throw error(sep.column, "expected \(isExpect ? "',' or '='" : "',' or end of line"), got \(quoted(sep.text))")
        }
    }

    // MARK: Operation lines

    /// An operation line's operation: one the core's `Operation` carries, or one of the Large pages additions.
    enum ParsedOperation {
        case core(Operation)
        case largePage(LargePageOperation)
    }

    mutating func parseOperation(_ first: Token, _ c: inout Cursor) throws(TraceError) -> (String, ParsedOperation) {
        // `P2 = fork P`
        if let eq = c.peek(), eq.text == "=" {
            try checkNewProcess(first)
            _ = c.next()
            guard let fork = c.next() else { throw missing(c, "'fork'") }
            guard fork.text == "fork" else { throw error(fork.column, "expected 'fork', got \(quoted(fork.text))") }
            guard let parent = c.next() else { throw missing(c, "a process name") }
            try checkNameSyntax(parent, "a process name")
            try checkAlive(parent)
            processes[first.text] = true
            return (parent.text, .core(.fork(child: first.text)))
        }

        let known = processes[first.text] != nil
        guard isNameSyntax(first.text.unicodeScalars) else {
            throw error(first.column, "unknown statement \(quoted(first.text))")
        }
        guard let verb = c.next() else {
            if known { throw missing(c, "an operation after \(quoted(first.text))") }
            throw error(first.column, "unknown statement \(quoted(first.text))")
        }
        guard TraceParser.verbs.contains(verb.text) else {
            if known { throw error(verb.column, "unknown operation \(quoted(verb.text))") }
            throw error(first.column, "unknown statement \(quoted(first.text))")
        }
        try checkNameSyntax(first, "a process name")
        try checkAlive(first)

        let op: Operation
        switch verb.text {
        case "exit":
            processes[first.text] = false
            op = .exit
        case "mmap":
            // `P mmap ADDR PAGES PROT KIND [noreserve]`
            let (addr, pages) = try addressAndPages(&c)
            let prot = try protection(&c)
            let kind = try mappingKind(&c)
            var noreserve = false
            if let w = c.peek(), w.text == "noreserve" { _ = c.next(); noreserve = true }
            if noreserve || kind.isHugetlb {
                return (first.text, .largePage(.mmap(addr: addr, pages: pages, prot: prot, kind: kind, noreserve: noreserve)))
            }
            op = .mmap(addr: addr, pages: pages, prot: prot, kind: kind)
        case "munmap":
            let (addr, pages) = try addressAndPages(&c)
            op = .munmap(addr: addr, pages: pages)
        case "mprotect":
            let (addr, pages) = try addressAndPages(&c)
            op = .mprotect(addr: addr, pages: pages, prot: try protection(&c))
        case "mremap":
            let (addr, addrTok) = try address(&c, "an address")
            let (old, oldTok) = try pageCount(&c, "an old page count")
            try checkRange(addr, addrTok, old, oldTok)
            let (new, newTok) = try pageCount(&c, "a new page count")
            var to: UInt64?
            if c.peek() != nil {
                let (dest, destTok) = try address(&c, "a destination address")
                try checkRange(dest, destTok, new, destTok)
                to = dest
            } else {
                // Resizing in place grows the range at ADDR: it must stay below the limit too.
                try checkRange(addr, addrTok, new, newTok)
            }
            op = .mremap(addr: addr, oldPages: old, newPages: new, to: to)
        case "write":
            // `P write ADDR [PAGES] [value=V]`
            let (addr, addrTok) = try address(&c, "an address")
            var pages: UInt64 = 1
            if let next = c.peek(), !next.text.hasPrefix("value=") {
                let (p, pTok) = try pageCount(&c)
                try checkRange(addr, addrTok, p, pTok)
                pages = p
            }
            if let v = c.peek(), v.text.hasPrefix("value=") {
                _ = c.next()
                let digits = v.text.unicodeScalars.dropFirst(6)
                switch parseNumber(digits) {
                case .value(let value): op = .writeValue(addr: addr, pages: pages, value: value)
                case .invalid: throw error(v.column + 6, "expected a content value (decimal or 0x hex) after 'value=', got \(quoted(String(String.UnicodeScalarView(digits))))")
                case .tooLarge: throw error(v.column + 6, "number too large: \(quoted(String(String.UnicodeScalarView(digits))))")
                }
            } else {
                op = .write(addr: addr, pages: pages)
            }
        case "device":
            // `P device ADDR [PAGES] [coherent]`
            let (addr, addrTok) = try address(&c, "an address")
            var pages: UInt64 = 1
            if let next = c.peek(), next.text != "coherent" {
                let (p, pTok) = try pageCount(&c)
                try checkRange(addr, addrTok, p, pTok)
                pages = p
            }
            var coherent = false
            if let k = c.peek(), k.text == "coherent" { _ = c.next(); coherent = true }
            op = .device(addr: addr, pages: pages, coherent: coherent)
        case "split":
            // `P split ADDR [PAGES]` (Large pages; model only)
            let (addr, pages) = try addressAndOptionalPages(&c)
            return (first.text, .largePage(.split(addr: addr, pages: pages)))
        case "read", "reclaim", "migrate", "referenced", "mkclean", "poison", "exclusive":
            let (addr, pages) = try addressAndOptionalPages(&c)
            switch verb.text {
            case "read": op = .read(addr: addr, pages: pages)
            case "reclaim": op = .reclaim(addr: addr, pages: pages)
            case "migrate": op = .migrate(addr: addr, pages: pages)
            case "referenced": op = .referenced(addr: addr, pages: pages)
            case "poison": op = .poison(addr: addr, pages: pages)
            case "exclusive": op = .exclusive(addr: addr, pages: pages)
            default: op = .mkclean(addr: addr, pages: pages)
            }
        case "madvise":
            let (addr, pages) = try addressAndPages(&c)
            guard let a = c.next() else { throw missing(c, "an advice") }
            if let large = LargePageAdvice(rawValue: a.text) {
                return (first.text, .largePage(.madvise(addr: addr, pages: pages, advice: large)))
            }
            guard let advice = Advice(rawValue: a.text) else {
                let names = Advice.allCases.map(\.rawValue) + LargePageAdvice.allCases.map(\.rawValue)
                throw error(a.column, "expected an advice (\(names.joined(separator: ", "))), got \(quoted(a.text))")
            }
            op = .madvise(addr: addr, pages: pages, advice: advice)
        case "mlock":
            let (addr, pages) = try addressAndPages(&c)
            op = .mlock(addr: addr, pages: pages)
        case "munlock":
            let (addr, pages) = try addressAndPages(&c)
            op = .munlock(addr: addr, pages: pages)
        default: // "unmap"
            let (addr, addrTok) = try address(&c, "an address")
            var pages: UInt64 = 1
            if let next = c.peek(), let s = next.text.unicodeScalars.first, s.value >= 0x30 && s.value <= 0x39 {
                let (p, pTok) = try pageCount(&c)
                try checkRange(addr, addrTok, p, pTok)
                pages = p
            }
            var flags: TTUFlags = []
            if let f = c.next() { flags = try ttuFlags(f) }
            op = .unmap(addr: addr, pages: pages, flags: flags)
        }
        return (first.text, .core(op))
    }

    // MARK: Operands

    func number(_ c: inout Cursor, _ what: String) throws(TraceError) -> (UInt64, Token) {
        guard let t = c.next() else { throw missing(c, what) }
        switch parseNumber(t.text.unicodeScalars) {
        case .value(let v): return (v, t)
        case .invalid: throw error(t.column, "expected \(what), got \(quoted(t.text))")
        case .tooLarge: throw error(t.column, "number too large: \(quoted(t.text))")
        }
    }

    /// A page-aligned address in [minAddress, maxAddress).
    func address(_ c: inout Cursor, _ what: String) throws(TraceError) -> (UInt64, Token) {
        let (v, t) = try number(&c, what)
        guard v >= TraceParser.minAddress && v < TraceParser.maxAddress else {
            throw error(t.column, "address \(hex(v)) is not in [\(hex(TraceParser.minAddress)), \(hex(TraceParser.maxAddress)))")
        }
        guard v % TraceParser.pageSize == 0 else {
            throw error(t.column, "address \(hex(v)) is not a multiple of 4096")
        }
        return (v, t)
    }

    func pageCount(_ c: inout Cursor, _ what: String = "a page count") throws(TraceError) -> (UInt64, Token) {
        let (v, t) = try number(&c, what)
        guard v >= 1 else { throw error(t.column, "expected \(what) of at least 1, got \(quoted(t.text))") }
        return (v, t)
    }

    /// The range [addr, addr + pages * 4096) must end at or below maxAddress; reported at `at`.
    func checkRange(_ addr: UInt64, _ addrTok: Token, _ pages: UInt64, _ at: Token) throws(TraceError) {
        let room = (TraceParser.maxAddress - addr) / TraceParser.pageSize  // addr < maxAddress, aligned
        guard pages <= room else {
            throw error(at.column, "\(pages) page\(pages == 1 ? "" : "s") at \(hex(addr)) end beyond \(hex(TraceParser.maxAddress)) (at most \(room) fit)")
        }
    }

    func addressAndPages(_ c: inout Cursor) throws(TraceError) -> (UInt64, UInt64) {
        let (addr, addrTok) = try address(&c, "an address")
        let (pages, pagesTok) = try pageCount(&c)
        try checkRange(addr, addrTok, pages, pagesTok)
        return (addr, pages)
    }

    func addressAndOptionalPages(_ c: inout Cursor) throws(TraceError) -> (UInt64, UInt64) {
        let (addr, addrTok) = try address(&c, "an address")
        guard c.peek() != nil else { return (addr, 1) }
        let (pages, pagesTok) = try pageCount(&c)
        try checkRange(addr, addrTok, pages, pagesTok)
        return (addr, pages)
    }

    func protection(_ c: inout Cursor) throws(TraceError) -> Prot {
        guard let t = c.next() else { throw missing(c, "a protection") }
        guard let prot = Prot.named(t.text) else {
            throw error(t.column, "expected a protection (none, or r, w, x in that order such as rw), got \(quoted(t.text))")
        }
        return prot
    }

    func mappingKind(_ c: inout Cursor) throws(TraceError) -> MappingKind {
        guard let t = c.next() else { throw missing(c, "a mapping kind") }
        switch t.text {
        case "anon-private": return .anonPrivate
        case "anon-shared": return .anonShared
        case "hugetlb-private": return .hugetlbPrivate
        case "hugetlb-shared": return .hugetlbShared
        default: break
        }
        let scalars = Array(t.text.unicodeScalars)
        for (prefix, shared) in [("file-private:", false), ("file-shared:", true)] {
            let p = Array(prefix.unicodeScalars)
            guard scalars.count >= p.count, Array(scalars[..<p.count]) == p else { continue }
            let rest = scalars[p.count...]
            let restColumn = t.column + p.count
            guard let at = rest.firstIndex(of: "@") else {
                throw error(restColumn, "expected FILE@PGOFF after '\(prefix)', got \(quoted(String(String.UnicodeScalarView(rest))))")
            }
            let name = rest[..<at]
            let nameText = String(String.UnicodeScalarView(name))
            guard isNameSyntax(name) else {
                throw error(restColumn, "expected a file name, got \(quoted(nameText))")
            }
            guard name.count <= TraceParser.maxNameLength else {
                throw error(restColumn, "name \(quoted(nameText)) is longer than \(TraceParser.maxNameLength) characters")
            }
            guard files.contains(nameText) else {
                throw error(restColumn, "unknown file \(quoted(nameText))")
            }
            let pgoffScalars = scalars[(at + 1)...]
            let pgoffColumn = t.column + at + 1
            let pgoffText = String(String.UnicodeScalarView(pgoffScalars))
            let pgoff: UInt64
            switch parseNumber(pgoffScalars) {
            case .value(let v): pgoff = v
            case .invalid: throw error(pgoffColumn, "expected a page offset, got \(quoted(pgoffText))")
            case .tooLarge: throw error(pgoffColumn, "number too large: \(quoted(pgoffText))")
            }
            guard pgoff <= TraceParser.maxPgoff else {
                throw error(pgoffColumn, "page offset \(pgoff) is larger than \(TraceParser.maxPgoff)")
            }
            return shared ? .fileShared(file: nameText, pgoff: pgoff) : .filePrivate(file: nameText, pgoff: pgoff)
        }
        throw error(t.column, "expected a mapping kind (anon-private, anon-shared, file-private:FILE@PGOFF, file-shared:FILE@PGOFF, hugetlb-private or hugetlb-shared), got \(quoted(t.text))")
    }

    /// A comma list of TTU flag names: `ignore_mlock,batch_flush`.
    func ttuFlags(_ t: Token) throws(TraceError) -> TTUFlags {
        var flags: TTUFlags = []
        var current = String.UnicodeScalarView()
        var start = 0
        let scalars = Array(t.text.unicodeScalars)
        for i in 0...scalars.count {
            if i == scalars.count || scalars[i] == "," {
                let name = String(current)
                guard let f = TTUFlags.named(name) else {
                    if name.isEmpty {
                        throw error(t.column + start, "expected a TTU flag name, got \(i == scalars.count ? "end of list" : "','")")
                    }
                    throw error(t.column + start, "unknown TTU flag \(quoted(name)) (expected one of \(TTUFlags.allNames.joined(separator: ", ")))")
                }
                flags.insert(f)
                current = String.UnicodeScalarView()
                start = i + 1
            } else {
                current.append(scalars[i])
            }
        }
        return flags
    }

    // MARK: Names and processes

    func checkNameSyntax(_ t: Token, _ what: String) throws(TraceError) {
        guard isNameSyntax(t.text.unicodeScalars) else {
            throw error(t.column, "expected \(what), got \(quoted(t.text))")
        }
        guard t.length <= TraceParser.maxNameLength else {
            throw error(t.column, "name \(quoted(t.text)) is longer than \(TraceParser.maxNameLength) characters")
        }
    }

    /// A name for a new process (`proc P`, `P2 = fork P`): never used before.
    func checkNewProcess(_ t: Token) throws(TraceError) {
        try checkNameSyntax(t, "a process name")
        if TraceParser.reservedWords.contains(t.text) {
            throw error(t.column, "'\(t.text)' is a reserved word and cannot name a process")
        }
        if let alive = processes[t.text] {
            throw error(t.column, alive ? "process \(quoted(t.text)) already exists"
                                        : "process name \(quoted(t.text)) was already used (the process has exited)")
        }
    }

    func checkAlive(_ t: Token) throws(TraceError) {
        guard let alive = processes[t.text] else {
            throw error(t.column, "unknown process \(quoted(t.text))")
        }
        guard alive else { throw error(t.column, "process \(quoted(t.text)) has exited") }
    }
}
