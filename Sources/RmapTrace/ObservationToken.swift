// One observation token (docs/trace-format.md, "Observation tokens", with the
// Large pages additions and the project's H, D and X), parsed: what the model
// can produce and compare, and what the parser checks `expect` tokens with.
//
//     token  := '-' | 'Z' | 'S' | 'M' | 'H' | 'D' | 'X' | 'Z*' | 'M*' | 'H*'
//             | [AFK] id ':' count                  a small frame
//             | 'A' id '+' sub ':' count ['*']      a page of a large anonymous folio
//             | 'T' id '+' sub ':' count '*'        a page of a hugetlb folio (always a PMD)
//     id     := [1-9][0-9]*
//     count  := '0' | [1-9][0-9]*
//     sub    := '0' | [1-9][0-9]*, below 512
//
// Numbers are written as the model prints them (no leading zero), so a token
// that could never match is an error. A trailing `*` marks a PMD leaf that
// maps a whole 2 MiB folio, which only a large folio's page (`+<sub>`), the
// huge zero page (`Z*`), a PMD migration entry (`M*`) and a hugetlb
// hwpoison entry (`H*`) can be. `id` and
// `count` may have any number of digits (the trace is still well formed;
// such a token just never matches).

/// A parsed observation token. `description` prints the canonical form.
public struct ObservationToken: Equatable, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Character, Equatable, Hashable, Sendable, CaseIterable {
        /// `-`: none (no mapping, or never faulted).
        case none = "-"
        /// `Z`: the shared zero page (`Z*`: the huge zero page).
        case zeroPage = "Z"
        /// `S`: a swap entry.
        case swap = "S"
        /// `M`: a migration entry (`M*`: a PMD migration entry).
        case migration = "M"
        /// `H`: a hwpoison entry (project addition; `H*`: a hugetlb one).
        case hwpoison = "H"
        /// `D`: a device-private entry (project addition).
        case devicePrivate = "D"
        /// `X`: a device-exclusive entry (project addition).
        case deviceExclusive = "X"
        /// `A`: an anonymous frame, or a page of a large anonymous folio.
        case anon = "A"
        /// `F`: a page-cache frame.
        case file = "F"
        /// `K`: a KSM frame.
        case ksm = "K"
        /// `T`: a page of a hugetlb folio.
        case hugetlb = "T"

        /// Whether tokens of this kind name a frame: `<id>` and `<mapcount>`.
        public var hasFrame: Bool {
            switch self {
            case .anon, .file, .ksm, .hugetlb: return true
            case .none, .zeroPage, .swap, .migration, .hwpoison, .devicePrivate, .deviceExclusive: return false
            }
        }
    }

    public var kind: Kind
    /// The canonical frame or folio id (1 for the first met); nil unless `kind.hasFrame`.
    public var id: UInt64?
    /// The page of the large folio (0 is the head, below 512); nil for a small frame.
    public var sub: Int?
    /// The page's count as /proc/kpagecount gives it; nil unless `kind.hasFrame`.
    public var mapcount: UInt64?
    /// A PMD leaf that maps the whole 2 MiB folio (the trailing `*`).
    public var pmd: Bool

    /// The most pages a folio has (a PMD's worth): `sub` is below it.
    public static let maxFolioPages = 512

    /// A token without a frame (`-`, `Z`, `S`, `M`, `H`, `D`, `X`; `Z*`, `M*` and `H*` with `pmd`).
    public static func entry(_ kind: Kind, pmd: Bool = false) -> ObservationToken {
        ObservationToken(kind: kind, id: nil, sub: nil, mapcount: nil, pmd: pmd)
    }

    /// `A<id>:<mapcount>`, `F...`, `K...`: a small frame.
    public static func frame(_ kind: Kind, id: UInt64, mapcount: UInt64) -> ObservationToken {
        ObservationToken(kind: kind, id: id, sub: nil, mapcount: mapcount, pmd: false)
    }

    /// `A<id>+<sub>:<mapcount>[*]`, `T<id>+<sub>:<mapcount>*`: a page of a large folio.
    public static func largePage(_ kind: Kind, id: UInt64, sub: Int, mapcount: UInt64, pmd: Bool) -> ObservationToken {
        ObservationToken(kind: kind, id: id, sub: sub, mapcount: mapcount, pmd: pmd)
    }

    public init(kind: Kind, id: UInt64?, sub: Int?, mapcount: UInt64?, pmd: Bool) {
        self.kind = kind
        self.id = id
        self.sub = sub
        self.mapcount = mapcount
        self.pmd = pmd
    }

    /// Parses a token; nil when it is not well formed (see `problem(in:)`),
    /// or when its id or mapcount does not fit in 64 bits.
    public init?(_ text: String) {
        guard case .success(let t) = ObservationToken.scan(text) else { return nil }
        self = t
    }

    /// Why `text` is not a well-formed observation token, or nil when it is.
    /// (An id or mapcount too large for 64 bits is well formed.)
    public static func problem(in text: String) -> String? {
        switch scan(text) {
        case .success, .failure(.tooLarge): return nil
        case .failure(.malformed(let why)): return why
        }
    }

    /// The canonical spelling, as the model prints it.
    public var description: String {
        var s = String(kind.rawValue)
        if let id { s += String(id) }
        if let sub { s += "+" + String(sub) }
        if let mapcount { s += ":" + String(mapcount) }
        return pmd ? s + "*" : s
    }

    /// The reason given for a token that starts like none of the forms.
    static let noSuchToken = "no such token"

    enum ScanError: Error {
        case malformed(String)
        case tooLarge
    }

    /// Left to right; the first problem found is the reason given.
    static func scan(_ text: String) -> Result<ObservationToken, ScanError> {
        let b = Array(text.utf8)
        func ascii(_ c: UInt8) -> String { String(UnicodeScalar(c)) }
        guard let first = b.first, first < 0x80, let kind = Kind(rawValue: Character(UnicodeScalar(first))) else {
            return .failure(.malformed(noSuchToken))
        }
        let pmd = b.count > 1 && b.last == UInt8(ascii: "*")
        let body = pmd ? b.dropLast() : b[...]
        if pmd && body.count > 1 && body.last == UInt8(ascii: "*") { return .failure(.malformed("a token ends in at most one '*'")) }
        guard kind.hasFrame else {
            guard body.count == 1 else { return .failure(.malformed(noSuchToken)) }
            if pmd && kind != .zeroPage && kind != .migration && kind != .hwpoison {
                return .failure(.malformed("'\(ascii(first))' cannot end in '*' (a PMD leaf is A<id>+<sub>:<mapcount>*, T<id>+<sub>:<mapcount>*, Z*, M* or H*)"))
            }
            return .success(.entry(kind, pmd: pmd))
        }
        var i = body.startIndex
        // Decimal digits from i: the value (nil if it overflows) and where they end.
        func digits() -> (count: Int, value: UInt64?, leadingZero: Bool) {
            let start = i
            var value: UInt64? = 0
            while i < body.endIndex, body[i] >= 0x30, body[i] <= 0x39 {
                if let v = value {
                    let (m, o1) = v.multipliedReportingOverflow(by: 10)
                    let (a, o2) = m.addingReportingOverflow(UInt64(body[i] - 0x30))
                    value = o1 || o2 ? nil : a
                }
                i += 1
            }
            return (i - start, value, i - start > 1 && body[start] == 0x30)
        }
        func rest() -> String { String(decoding: body[i...], as: UTF8.self) }
        i += 1
        let id = digits()
        if id.count == 0 { return .failure(.malformed("expected a frame id (1, 2, ...) after '\(ascii(first))'")) }
        if body[i - id.count] == 0x30 { return .failure(.malformed("a frame id has no leading zero and starts at 1")) }
        var sub: Int?
        if i < body.endIndex, body[i] == UInt8(ascii: "+") {
            guard kind == .anon || kind == .hugetlb else {
                return .failure(.malformed("only A and T tokens have '+<sub>' (the page of a large folio)"))
            }
            i += 1
            let s = digits()
            if s.count == 0 { return .failure(.malformed("expected a page number (0 to 511) after '+'")) }
            if s.leadingZero { return .failure(.malformed("a page number has no leading zero")) }
            guard let v = s.value, v < UInt64(maxFolioPages) else {
                return .failure(.malformed("page \(String(decoding: body[(i - s.count)..<i], as: UTF8.self)) of a folio: a folio has at most \(maxFolioPages) pages (0 to 511)"))
            }
            sub = Int(v)
        }
        guard i < body.endIndex else {
            return .failure(.malformed("expected ':' and a mapcount after the \(sub == nil ? "id" : "page number")"))
        }
        guard body[i] == UInt8(ascii: ":") else {
            return .failure(.malformed("expected \(sub == nil && (kind == .anon || kind == .hugetlb) ? "'+' or ':'" : "':'") after the \(sub == nil ? "id" : "page number"), got '\(rest())'"))
        }
        i += 1
        let count = digits()
        if count.count == 0 { return .failure(.malformed("expected a mapcount after ':'")) }
        if count.leadingZero { return .failure(.malformed("a mapcount has no leading zero")) }
        if i < body.endIndex { return .failure(.malformed("unexpected '\(rest())' after the mapcount")) }
        if kind == .hugetlb && sub == nil { return .failure(.malformed("a hugetlb page is T<id>+<sub>:<mapcount>*")) }
        if kind == .hugetlb && !pmd { return .failure(.malformed("a hugetlb page is always a PMD leaf: it ends in '*'")) }
        if pmd && sub == nil {
            return .failure(.malformed("'*' marks a PMD leaf, which maps a large folio: A<id>+<sub>:<mapcount>* or T<id>+<sub>:<mapcount>*"))
        }
        guard let idValue = id.value, let countValue = count.value else { return .failure(.tooLarge) }
        if let sub { return .success(.largePage(kind, id: idValue, sub: sub, mapcount: countValue, pmd: pmd)) }
        return .success(.frame(kind, id: idValue, mapcount: countValue))
    }
}
