import Rmap
// The settings and operations of the trace language's Large pages additions
// (docs/trace-format.md, "Large pages (additions, version 1)"): what the
// parser gives the model. The model does not run them yet.

/// `/sys/kernel/mm/transparent_hugepage/enabled`, as `thp enabled MODE` sets it.
public enum THPEnabledMode: String, Equatable, Hashable, Sendable, CaseIterable {
    case always, madvise, never
}

/// `/sys/kernel/mm/transparent_hugepage/hugepages-<SIZE>/enabled`, as
/// `thp SIZE MODE` sets it. `inherit` follows `enabled`.
public enum THPSizeMode: String, Equatable, Hashable, Sendable, CaseIterable {
    case always, inherit, madvise, never
}

/// A multi-size THP size of `thp SIZE MODE`: the folio order is the raw value
/// (16K is order 2, ..., 2M is order 9, the PMD size).
public enum THPSize: Int, Equatable, Hashable, Sendable, CaseIterable, Comparable {
    case size16K = 2, size32K, size64K, size128K, size256K, size512K, size1M, size2M

    /// The folio order (log2 of its pages).
    public var order: Int { rawValue }
    /// 4 KiB pages in a folio of this size.
    public var pages: Int { 1 << rawValue }
    /// The trace spelling (`16K` ... `2M`).
    public var name: String {
        let kib = 4 << rawValue
        return kib >= 1024 ? "\(kib / 1024)M" : "\(kib)K"
    }

    /// The size spelled `s` (`16K`, `2M`; upper case only, as sysfs names them), or nil.
    public init?(name s: String) {
        guard let size = THPSize.allCases.first(where: { $0.name == s }) else { return nil }
        self = size
    }

    public static func < (a: THPSize, b: THPSize) -> Bool { a.rawValue < b.rawValue }
}

/// The THP and hugetlb settings a trace runs with (`Trace.largePageSettings`).
///
/// A trace without any `thp` statement makes no large folio: `enabled never`,
/// every size `never`, and every mapping is VM_NOHUGEPAGE from the start
/// (`mappingsStartNoHugepage`). The first `thp` statement switches to the
/// kernel's defaults (`enabled madvise`, `2M inherit`, every other size
/// `never`, no VM_NOHUGEPAGE) before it applies; later ones apply in order.
public struct LargePageSettings: Equatable, Hashable, Sendable {
    /// Whether the trace has at least one `thp` statement: `thp enabled`,
    /// `thp SIZE` or `thp shrink` (a project decision: the contract says "any
    /// `thp` statement", and `thp shrink` is one, wherever it is).
    public var anyTHPStatement: Bool
    public var enabled: THPEnabledMode
    /// The mode of each size, indexed by `THPSize` (every size has one).
    public var sizes: [THPSize: THPSizeMode]
    /// `hugetlb PAGES`: huge pages (2 MiB) in the pool.
    public var hugetlbPages: UInt64

    public init(anyTHPStatement: Bool, enabled: THPEnabledMode, sizes: [THPSize: THPSizeMode], hugetlbPages: UInt64) {
        self.anyTHPStatement = anyTHPStatement
        self.enabled = enabled
        self.sizes = sizes
        self.hugetlbPages = hugetlbPages
    }

    /// A trace without `thp` and `hugetlb` statements: no large folio, no pool.
    public static let initial = LargePageSettings(
        anyTHPStatement: false, enabled: .never,
        sizes: Dictionary(uniqueKeysWithValues: THPSize.allCases.map { ($0, THPSizeMode.never) }), hugetlbPages: 0)

    /// The kernel's defaults, where a trace's first `thp` statement starts from.
    public static let kernelDefaults = LargePageSettings(
        anyTHPStatement: true, enabled: .madvise,
        sizes: Dictionary(uniqueKeysWithValues: THPSize.allCases.map { ($0, $0 == .size2M ? THPSizeMode.inherit : .never) }),
        hugetlbPages: 0)

    /// Every mapping the trace makes is VM_NOHUGEPAGE from the start (no `thp` statement).
    public var mappingsStartNoHugepage: Bool { !anyTHPStatement }

    /// The mode of one size as set (`inherit` kept).
    public func mode(_ size: THPSize) -> THPSizeMode { sizes[size] ?? .never }

    /// The mode that decides for one size: `inherit` resolved through `enabled`.
    public func effectiveMode(_ size: THPSize) -> THPEnabledMode {
        switch mode(size) {
        case .always: return .always
        case .madvise: return .madvise
        case .never: return .never
        case .inherit: return enabled
        }
    }

    /// Applies one statement (settings change, and `thp shrink` counts as a
    /// `thp` statement; every other statement is ignored).
    public mutating func apply(_ statement: Statement) {
        switch statement {
        case .thpShrink:
            startTHP()
        case .thpEnabled(let mode):
            startTHP()
            enabled = mode
        case .thpSize(let size, let mode):
            startTHP()
            sizes[size] = mode
        case .hugetlb(let pages):
            hugetlbPages = pages
        default:
            break
        }
    }

    private mutating func startTHP() {
        guard !anyTHPStatement else { return }
        let pool = hugetlbPages
        self = .kernelDefaults
        hugetlbPages = pool
    }
}

/// The madvise advice of the Large pages additions (MADV_HUGEPAGE,
/// MADV_NOHUGEPAGE, MADV_COLLAPSE). Apart from the core's `Advice` until the
/// model implements them (a case there must be handled by its madvise).
public enum LargePageAdvice: String, Equatable, Hashable, Sendable, CaseIterable {
    case hugepage, nohugepage, collapse
}

/// An operation line of the Large pages additions (`Statement.largePageOp`).
public enum LargePageOperation: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// `P mmap ADDR PAGES PROT KIND [noreserve]` with a hugetlb KIND, or any
    /// KIND with `noreserve` (MAP_NORESERVE).
    case mmap(addr: UInt64, pages: UInt64, prot: Prot, kind: MappingKind, noreserve: Bool)
    /// `P madvise ADDR PAGES hugepage|nohugepage|collapse`.
    case madvise(addr: UInt64, pages: UInt64, advice: LargePageAdvice)
    /// `P split ADDR [PAGES]` (`pages` 1 when omitted): split_huge_pages for a
    /// pid and a range (model only).
    case split(addr: UInt64, pages: UInt64)

    /// True for the statements the kernel oracle cannot run (`split`: debugfs
    /// is closed to writes on the oracle's machine).
    public var isModelOnly: Bool {
        switch self {
        case .split: return true
        case .mmap, .madvise: return false
        }
    }

    /// The verb as spelled in a trace.
    public var verb: String {
        switch self {
        case .mmap: return "mmap"
        case .madvise: return "madvise"
        case .split: return "split"
        }
    }

    /// The trace spelling without the process name: `split 0x100000000000 2`.
    public var description: String {
        func h(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        switch self {
        case .mmap(let a, let n, let prot, let kind, let noreserve):
            return "mmap \(h(a)) \(n) \(prot.name) \(kind)" + (noreserve ? " noreserve" : "")
        case .madvise(let a, let n, let advice): return "madvise \(h(a)) \(n) \(advice.rawValue)"
        case .split(let a, let n): return "split \(h(a)) \(n)"
        }
    }
}
