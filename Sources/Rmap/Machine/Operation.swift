import CShims

// The vocabulary of the Machine API: what one operation of a process does,
// as the trace language spells it (RmapTrace parses it; the CLI, the C API
// and the fuzzers build it directly).

/// Page protection, with the PROT_* bit values of Linux.
public struct Prot: OptionSet, Hashable, Sendable, Equatable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = Prot(rawValue: 1)   // PROT_READ
    public static let write = Prot(rawValue: 2)  // PROT_WRITE
    public static let exec = Prot(rawValue: 4)   // PROT_EXEC
    /// PROT_NONE.
    public static let none: Prot = []

    /// Parses the trace spelling: `none` or a non-empty subsequence of `rwx` in that order.
    public static func named(_ s: String) -> Prot? {
        if s == "none" { return Prot.none }
        var prot: Prot = []
        var rest = Substring(s)
        if rest.first == "r" { prot.insert(.read); rest = rest.dropFirst() }
        if rest.first == "w" { prot.insert(.write); rest = rest.dropFirst() }
        if rest.first == "x" { prot.insert(.exec); rest = rest.dropFirst() }
        guard rest.isEmpty, !prot.isEmpty else { return nil }
        return prot
    }

    /// The trace spelling (`none`, `r`, `rw`, `rwx`, ...).
    public var name: String {
        if isEmpty { return "none" }
        return (contains(.read) ? "r" : "") + (contains(.write) ? "w" : "") + (contains(.exec) ? "x" : "")
    }

    /// The first three characters of a /proc/PID/maps permission field (`rw-`, `r-x`, `---`).
    public var mapsPerms: String {
        (contains(.read) ? "r" : "-") + (contains(.write) ? "w" : "-") + (contains(.exec) ? "x" : "-")
    }

    public var description: String { name }
}

/// What a `mmap` maps.
public enum MappingKind: Equatable, Hashable, Sendable, CustomStringConvertible {
    case anonPrivate
    case anonShared
    case filePrivate(file: String, pgoff: UInt64)
    case fileShared(file: String, pgoff: UInt64)
    /// `hugetlb-private` / `hugetlb-shared`: MAP_ANONYMOUS|MAP_HUGETLB with
    /// 2 MiB pages (docs/trace-format.md, Large pages). Parsed; not modelled
    /// yet (RmapTrace's `Machine.step` refuses them).
    case hugetlbPrivate
    case hugetlbShared

    public var isShared: Bool {
        switch self {
        case .anonShared, .fileShared, .hugetlbShared: return true
        case .anonPrivate, .filePrivate, .hugetlbPrivate: return false
        }
    }

    /// MAP_ANONYMOUS (the hugetlb kinds too).
    public var isAnonymous: Bool {
        switch self {
        case .anonPrivate, .anonShared, .hugetlbPrivate, .hugetlbShared: return true
        case .filePrivate, .fileShared: return false
        }
    }

    /// MAP_HUGETLB.
    public var isHugetlb: Bool {
        switch self {
        case .hugetlbPrivate, .hugetlbShared: return true
        case .anonPrivate, .anonShared, .filePrivate, .fileShared: return false
        }
    }

    /// The named file, if any.
    public var file: String? {
        switch self {
        case .filePrivate(let f, _), .fileShared(let f, _): return f
        case .anonPrivate, .anonShared, .hugetlbPrivate, .hugetlbShared: return nil
        }
    }

    /// The page offset into the named file (0 for anonymous mappings).
    public var pgoff: UInt64 {
        switch self {
        case .filePrivate(_, let p), .fileShared(_, let p): return p
        case .anonPrivate, .anonShared, .hugetlbPrivate, .hugetlbShared: return 0
        }
    }

    /// The trace spelling.
    public var description: String {
        switch self {
        case .anonPrivate: return "anon-private"
        case .anonShared: return "anon-shared"
        case .filePrivate(let f, let p): return "file-private:\(f)@\(p)"
        case .fileShared(let f, let p): return "file-shared:\(f)@\(p)"
        case .hugetlbPrivate: return "hugetlb-private"
        case .hugetlbShared: return "hugetlb-shared"
        }
    }
}

/// madvise() advice names, as spelled in a trace.
public enum Advice: String, Sendable, CaseIterable {
    case dontneed, free, cold, pageout, dontfork, dofork, wipeonfork, keeponfork
    /// MADV_MERGEABLE / MADV_UNMERGEABLE (KSM; model only).
    case mergeable, unmergeable

    /// True for the advice the kernel oracle cannot run (KSM: ksmd's timing is not the trace's).
    public var isModelOnly: Bool { self == .mergeable || self == .unmergeable }
}

/// try_to_unmap() flags (TTU_*), as the model numbers them.
public struct TTUFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let migration = TTUFlags(rawValue: 1 << 0)
    public static let munlock = TTUFlags(rawValue: 1 << 1)
    public static let splitHugePMD = TTUFlags(rawValue: 1 << 2)
    public static let ignoreMlock = TTUFlags(rawValue: 1 << 3)
    public static let ignoreAccess = TTUFlags(rawValue: 1 << 4)
    public static let ignoreHWPoison = TTUFlags(rawValue: 1 << 5)
    public static let batchFlush = TTUFlags(rawValue: 1 << 6)
    public static let rmapLocked = TTUFlags(rawValue: 1 << 7)
    public static let splitFreeze = TTUFlags(rawValue: 1 << 8)

    /// The trace names, in bit order (name `allNames[i]` is bit `1 << i`).
    public static let allNames: [String] = [
        "migration", "munlock", "split_huge_pmd", "ignore_mlock", "ignore_access",
        "ignore_hwpoison", "batch_flush", "rmap_locked", "split_freeze",
    ]

    /// The flag with trace name `s` (lower case, no `TTU_` prefix), or nil.
    public static func named(_ s: String) -> TTUFlags? {
        guard let i = allNames.firstIndex(of: s) else { return nil }
        return TTUFlags(rawValue: 1 << UInt32(i))
    }

    /// The names of the set bits, in bit order.
    public var names: [String] {
        TTUFlags.allNames.indices.filter { rawValue & (1 << UInt32($0)) != 0 }.map { TTUFlags.allNames[$0] }
    }

    /// The trace spelling: a comma list of names (empty when no flag is set).
    public var description: String { names.joined(separator: ",") }
}

/// What an operation line does. The process is in `Statement.op`.
public enum Operation: Equatable, Sendable {
    /// `P2 = fork P`: the operation's process is P, the child P2.
    case fork(child: String)
    case exit
    case mmap(addr: UInt64, pages: UInt64, prot: Prot, kind: MappingKind)
    case munmap(addr: UInt64, pages: UInt64)
    case mprotect(addr: UInt64, pages: UInt64, prot: Prot)
    /// Without `to`: resize in place only. With `to`: MREMAP_MAYMOVE|MREMAP_FIXED to `to`.
    case mremap(addr: UInt64, oldPages: UInt64, newPages: UInt64, to: UInt64?)
    /// `pages` is 1 when the trace omits it (likewise for every optional PAGES below).
    case read(addr: UInt64, pages: UInt64)
    case write(addr: UInt64, pages: UInt64)
    /// `P write ADDR [PAGES] value=V`: each page's frame gets content token V (model only).
    case writeValue(addr: UInt64, pages: UInt64, value: UInt64)
    case madvise(addr: UInt64, pages: UInt64, advice: Advice)
    case mlock(addr: UInt64, pages: UInt64)
    case munlock(addr: UInt64, pages: UInt64)
    // Model only:
    case unmap(addr: UInt64, pages: UInt64, flags: TTUFlags)
    case reclaim(addr: UInt64, pages: UInt64)
    case migrate(addr: UInt64, pages: UInt64)
    case referenced(addr: UInt64, pages: UInt64)
    case mkclean(addr: UInt64, pages: UInt64)
    /// `P poison ADDR [PAGES]`: memory_failure()'s first step on the frame (model only).
    case poison(addr: UInt64, pages: UInt64)
    /// `P device ADDR [PAGES] [coherent]`: migrate_vma of each page's frame to
    /// device memory, private (the default) or coherent (model only).
    case device(addr: UInt64, pages: UInt64, coherent: Bool)
    /// `P exclusive ADDR [PAGES]`: make_device_exclusive_range() on P's pages (model only).
    case exclusive(addr: UInt64, pages: UInt64)

    /// True for the statements the kernel oracle cannot run.
    public var isModelOnly: Bool {
        switch self {
        case .unmap, .reclaim, .migrate, .referenced, .mkclean, .writeValue, .poison, .device, .exclusive: return true
        case .madvise(_, _, let advice): return advice.isModelOnly
        default: return false
        }
    }

    /// The verb as spelled in a trace (`fork` for `P2 = fork P`).
    public var verb: String {
        switch self {
        case .fork: return "fork"
        case .exit: return "exit"
        case .mmap: return "mmap"
        case .munmap: return "munmap"
        case .mprotect: return "mprotect"
        case .mremap: return "mremap"
        case .read: return "read"
        case .write, .writeValue: return "write"
        case .madvise: return "madvise"
        case .mlock: return "mlock"
        case .munlock: return "munlock"
        case .unmap: return "unmap"
        case .reclaim: return "reclaim"
        case .migrate: return "migrate"
        case .referenced: return "referenced"
        case .mkclean: return "mkclean"
        case .poison: return "poison"
        case .device: return "device"
        case .exclusive: return "exclusive"
        }
    }
}
