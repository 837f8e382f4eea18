import CShims

/// The result of one operation line, spelled as the trace language spells it.
public enum OpResult: Equatable, Sendable, CustomStringConvertible {
    case ok
    case errno(Errno)
    case sigsegv
    case sigbus
    /// A model-only operation returned false.
    case fail
    case referenced(Int)
    case cleaned(Int)
    /// The statement reached a path the model does not run yet (named): no
    /// result stands for it; the replay stops with an error.
    case notModelled(String)

    public var description: String {
        switch self {
        case .ok: return "ok"
        case .errno(let e): return e.rawValue
        case .sigsegv: return "SIGSEGV"
        case .sigbus: return "SIGBUS"
        case .fail: return "fail"
        case .referenced(let n): return "referenced=\(n)"
        case .cleaned(let n): return "cleaned=\(n)"
        case .notModelled(let what): return "not modelled yet: \(what)"
        }
    }
}

/// A modelled machine: one arena holding every kernel object, the named
/// processes and files of a trace, and the forward operations on them.
/// Everything the command line does goes through this type.
public final class Machine {
    package let arena: Arena
    package let k: Kernel
    /// Live processes by name: their mm's index (the public view is `processes`).
    package internal(set) var mmByName: [String: UInt32] = [:]
    /// `liveMMs` kept between checks: a process created or forked is
    /// appended, one that exits removed (nil: computed again).
    var liveMMsCache: [MMID]?
    /// The mms of the live processes in creation order (what the checker
    /// checks), without a lookup by name per process and check.
    package var liveMMs: [MMID] {
        if let l = liveMMsCache { return l }
        let l = processOrder.compactMap { mmOf($0) }
        liveMMsCache = l
        return l
    }
    /// The incremental checker's memory (`checksIncrementally`).
    var checkerMemo: CheckerMemo?
    /// Live processes by name: their mm.
    public var processes: [String: MMID] { mmByName.mapValues { MMID($0) } }
    /// Process names in creation order (live or not), for reports.
    public internal(set) var processOrder: [String] = []
    /// Files by name: their address_space index.
    package internal(set) var fileByName: [String: UInt32] = [:]
    /// Files by name: their address_space.
    public var files: [String: FileID] { fileByName.mapValues { FileID($0) } }
    public internal(set) var fileOrder: [String] = []
    /// The arena name record of each live process (so exit can clear it).
    var processNameRecord: [String: UInt32] = [:]
    /// Every process name used, live or exited (a name is used once).
    var processNamesUsed: Set<String> = []
    /// Who wrote each frame's content, through what mapping (beside the
    /// arena, not saved: Checker/Checker+Provenance.swift).
    package let provenance = ContentProvenance()
    /// Whether writes are checked and recorded for the checker's content
    /// provenance rule (`CheckerViolation.Kind.contentProvenance`); on by
    /// default. Off, the records are dropped and the rule checks nothing.
    public var tracksContentProvenance: Bool {
        get { provenance.enabled }
        set { provenance.enabled = newValue }
    }

    /// A machine over a new arena: in memory, or MAP_SHARED on the file at
    /// `path` (the state then persists there and reopens with `init(opening:)`).
    public init(config: ArenaConfig = .default, reuse: ReusePolicy = .split, ksmWalk: KSMWalkMode = .full,
                path: String? = nil) throws(ArenaError) {
        arena = try Arena(config: config, path: path)
        k = arena.kernel
        k.header.pointee.reuse_policy = reuse.rawValue
        k.ksmWalkMode = ksmWalk
        k.header.pointee.hugetlb_resv_mode = config.hugetlbResvMode.rawValue
        guard k.initZeroPage() else { throw ArenaError(message: "arena: no frame for the zero page") }
    }

    /// Reopens a saved machine (`save(to:)`, or an arena created with
    /// `path:`). With `privately`, the file is not changed by what follows.
    /// The header, every index of every object, the page tables, the trees
    /// and the invariants are checked before the machine is returned; a file
    /// that fails is rejected with the first problem.
    public init(opening path: String, privately: Bool = true) throws(ArenaError) {
        arena = try Arena(opening: path, privately: privately)
        k = arena.kernel
        var v = ArenaValidator(k: k)
        if let e = v.validate() { throw ArenaError(message: "\(path): rejected: \(e)") }
        loadNames()
        // The anon_vma reuse of the "degree" policy (CVE-2022-42703) is a
        // state that policy makes, not a damaged file.
        if let e = checkViolations().first(where: { $0.kind != .anonVMAReusedInUse }) {
            throw ArenaError(message: "\(path): rejected: inconsistent state: \(e)")
        }
    }

    /// The arena's populator: its state and the bytes it populated, once it
    /// has caught up (`Arena.populatorStatus()`); nil when the arena has none.
    package func populatorStatus() -> (state: Int32, bytes: UInt64)? { arena.populatorStatus() }

    public var reusePolicy: ReusePolicy { k.reusePolicy }
    /// The pgoff range rmap_walk_ksm searches (`--ksm-walk`).
    public var ksmWalkMode: KSMWalkMode { k.ksmWalkMode }

    /// Sets the size of the swap device in pages (`swap SLOTS`). A size
    /// beyond this arena's swap map (`swapMapSlots`) is refused with ENOMEM
    /// and changes nothing: the machine never runs with less swap than asked.
    public func setSwap(slots: UInt64) -> OpResult {
        guard slots <= swapMapSlots else { return .errno(.ENOMEM) }
        k.header.pointee.swap_slots = slots
        return .ok
    }

    /// `thp enabled MODE`: /sys/kernel/mm/transparent_hugepage/enabled
    /// (`inherit` is not a mode of this file: EINVAL). The first THP setting
    /// of a machine starts from the kernel's defaults (`enabled madvise`,
    /// `2M inherit`, every other size `never`) and lifts the VM_NOHUGEPAGE a
    /// machine without THP settings gives every new mapping.
    public func setTHP(enabled mode: THPMode) -> OpResult {
        guard mode != .inherit else { return .errno(.EINVAL) }
        k.thpSetEnabled(mode)
        return .ok
    }

    /// The kernel's THP defaults (`enabled madvise`, `2M inherit`, every
    /// other size `never`), which a trace with any `thp` statement starts
    /// from; nothing changes when the machine has THP settings already.
    public func configureTHPDefaults() {
        k.thpConfigure()
    }

    /// `thp SIZE MODE`: hugepages-<size>kB/enabled for folio `order`
    /// (2 to 9: 16 KiB to 2 MiB); EINVAL for another order.
    public func setTHP(order: UInt32, mode: THPMode) -> OpResult {
        guard order >= 2, order <= RMAP_PMD_ORDER else { return .errno(.EINVAL) }
        k.thpSetMode(order: order, mode)
        return .ok
    }

    /// The THP settings: `enabled` and the mode of each order 2...9; nil
    /// when the machine has none (no large folios are made).
    public var thpSettings: (enabled: THPMode, orders: [THPMode])? {
        guard k.thpConfigured else { return nil }
        return (k.thpEnabled, (UInt32(2)...RMAP_PMD_ORDER).map { k.thpMode(order: $0) })
    }

    /// The most swap slots this arena's swap map holds.
    public var swapMapSlots: UInt64 { UInt64(k.desc(T.swap).pointee.capacity) - 1 }

    /// When `createProcess` (or, with `file`, `createFile`) gave ENOMEM: the
    /// arena table it found full and that table's capacity; nil when none is.
    package func fullTableForCreating(file: Bool) -> (table: String, capacity: UInt32)? {
        let tables: [(Int32, String)] = [file ? (T.file, "file") : (T.mm, "mm"), (T.name, "name"),
                                         (T.ptPage, "page-table page")]
        for (t, name) in tables where k.available(t) < 1 { return (name, k.desc(t).pointee.capacity - 1) }
        return nil
    }

    /// The longest process or file name, in characters (the trace language's
    /// limit, and the arena's name record: `RMAP_NAME_MAX` bytes).
    public static let maxNameLength = Int(RMAP_NAME_MAX)
    /// The largest file, in pages (the trace language's `file` limit).
    public static let maxFilePages: UInt64 = 1 << 24

    /// A name a process or file may have: `[A-Za-z_][A-Za-z0-9_.-]*`, 1 to
    /// `maxNameLength` characters, the trace language's rule (and what the
    /// validator of a saved state accepts, so a state made through this API
    /// reopens).
    public static func isValidName(_ name: String) -> Bool {
        name.utf8.count <= maxNameLength && isNameSyntax(name.unicodeScalars)
    }

    /// `file NAME PAGES`: a file whose pages are all resident and clean.
    /// EINVAL for a name that is not `isValidName` or a size outside
    /// 1...`maxFilePages`; EEXIST for a name a file has; ENOMEM (nothing
    /// changed) when a table is full.
    public func createFile(_ name: String, pages: UInt64) -> OpResult {
        guard Machine.isValidName(name), pages >= 1, pages <= Machine.maxFilePages else { return .errno(.EINVAL) }
        guard fileByName[name] == nil else { return .errno(.EEXIST) }
        guard k.available(T.name) >= 1 else { return .errno(.ENOMEM) }
        let f = k.createFile(pages: pages, kind: .regular)
        guard !f.isNone else { return .errno(.ENOMEM) }
        k.file(f).pointee.serial = UInt64(fileOrder.count)  // the ordinal: its pages' content tokens
        _ = recordName(name, kind: UInt32(RMAP_NAME_FILE), index: f.rawValue)
        fileByName[name] = f.rawValue
        fileOrder.append(name)
        return .ok
    }

    /// `proc NAME`: a process with an empty address space. EINVAL for a
    /// name that is not `isValidName`; EEXIST for the name of a process,
    /// live or exited (as in a trace, a name is used once: the saved state
    /// keeps the exited one's record); ENOMEM (nothing changed) when a table
    /// is full.
    public func createProcess(_ name: String) -> OpResult {
        guard Machine.isValidName(name) else { return .errno(.EINVAL) }
        guard !processNamesUsed.contains(name) else { return .errno(.EEXIST) }
        guard k.available(T.name) >= 1 else { return .errno(.ENOMEM) }
        let m = k.mmAlloc()
        guard !m.isNone else { return .errno(.ENOMEM) }
        processNameRecord[name] = recordName(name, kind: UInt32(RMAP_NAME_PROCESS), index: m.rawValue)
        mmByName[name] = m.rawValue
        processOrder.append(name)
        liveMMsCache?.append(m)
        processNamesUsed.insert(name)
        return .ok
    }

    /// The mm of process `name` (mmByName keeps the raw index, as the saved state does).
    package func mmOf(_ name: String) -> MMID? { mmByName[name].map { MMID($0) } }

    /// Stores a name in the arena's name table (creation order kept).
    func recordName(_ name: String, kind: UInt32, index: UInt32) -> UInt32 {
        let r = k.alloc(T.name)
        if r == 0 { return 0 }
        k.header.pointee.name_order &+= 1  // wrapping: a hostile saved state may hold any value
        let p = k.names + Int(r)
        p.pointee.kind = kind
        p.pointee.index = index
        p.pointee.order = UInt32(truncatingIfNeeded: k.header.pointee.name_order)
        let bytes = Array(name.utf8.prefix(Int(RMAP_NAME_MAX)))
        p.pointee.len = UInt32(bytes.count)
        withUnsafeMutableBytes(of: &p.pointee.name) { buf in
            for (i, b) in bytes.enumerated() { buf[i] = b }
        }
        return r
    }

    /// `CHILD = fork PARENT`: ESRCH when PARENT is not a live process;
    /// for CHILD the rules of `createProcess` (EINVAL, EEXIST, ENOMEM).
    public func fork(_ parent: String, child: String) -> OpResult {
        guard let pm = mmOf(parent) else { return .errno(.ESRCH) }
        guard Machine.isValidName(child) else { return .errno(.EINVAL) }
        guard !processNamesUsed.contains(child) else { return .errno(.EEXIST) }
        guard k.available(T.name) >= 1 else { return .errno(.ENOMEM) }
        let c = k.dupMMap(pm)
        guard !c.isNone else { return .errno(.ENOMEM) }
        processNameRecord[child] = recordName(child, kind: UInt32(RMAP_NAME_PROCESS), index: c.rawValue)
        mmByName[child] = c.rawValue
        processOrder.append(child)
        liveMMsCache?.append(c)
        processNamesUsed.insert(child)
        return .ok
    }

    /// `P exit`
    public func exit(_ name: String) -> OpResult {
        guard let m = mmOf(name) else { return .errno(.ESRCH) }
        k.exitMMap(m)
        if let r = processNameRecord.removeValue(forKey: name) { k.names[Int(r)].index = 0 }
        mmByName[name] = nil
        liveMMsCache?.removeAll { $0 == m }
        return .ok
    }

    /// Runs one operation of process `name`.
    public func perform(_ name: String, _ op: Operation) -> OpResult {
        switch op {
        case .fork(let child): return fork(name, child: child)
        case .exit: return exit(name)
        default: break
        }
        guard let m = mmOf(name) else { return .errno(.ESRCH) }
        func r(_ e: Errno?) -> OpResult { e.map { .errno($0) } ?? .ok }
        if let h = hugetlbOperation(m, op) { return h }  // a range meeting a hugetlb VMA (Machine+Hugetlb.swift)
        switch op {
        case .fork, .exit:
            preconditionFailure("fork and exit return above")
        case .mmap(let addr, let pages, let prot, let kind):
            if kind.isHugetlb {
                return r(k.hugetlbMmap(m, addr: addr, pages: pages, prot: VM.fromProt(prot), shared: kind.isShared, noreserve: false))
            }
            var f = FileID.none
            if let name = kind.file {
                guard let fi = fileByName[name] else { return .errno(.EINVAL) }
                f = FileID(fi)
            }
            return r(k.doMmap(m, addr: addr, pages: pages, prot: VM.fromProt(prot), shared: kind.isShared,
                              file: f, pgoff: kind.pgoff))
        case .munmap(let addr, let pages):
            return r(k.doMunmap(m, addr, addr + pages << PAGE_SHIFT))
        case .mprotect(let addr, let pages, let prot):
            return r(k.doMprotect(m, start: addr, end: addr + pages << PAGE_SHIFT, prot: VM.fromProt(prot)))
        case .mremap(let addr, let oldPages, let newPages, let to):
            return r(k.doMremap(m, addr: addr, oldLen: oldPages << PAGE_SHIFT, newLen: newPages << PAGE_SHIFT, to: to))
        case .read(let addr, let pages):
            return access(m, addr, pages, write: false)
        case .write(let addr, let pages):
            return access(m, addr, pages, write: true)
        case .writeValue(let addr, let pages, let value):
            return access(m, addr, pages, write: true, value: value)
        case .madvise(let addr, let pages, let advice):
            return r(k.doMadvise(m, start: addr, end: addr + pages << PAGE_SHIFT, advice: advice))
        case .mlock(let addr, let pages):
            return r(k.doMlock(m, start: addr, end: addr + pages << PAGE_SHIFT, lock: true))
        case .munlock(let addr, let pages):
            return r(k.doMlock(m, start: addr, end: addr + pages << PAGE_SHIFT, lock: false))
        case .unmap, .reclaim, .migrate, .referenced, .mkclean, .poison, .device:
            return performReverse(m, op)
        case .exclusive(let addr, let pages):
            // One make_device_exclusive_range() call per page; the first
            // fault error ends the line, a page not made exclusive is `fail`.
            var result = OpResult.ok
            var a = addr
            for _ in 0..<pages {
                switch k.makeDeviceExclusive(m, a) {
                case .ok?: break
                case nil: result = .fail
                case .sigsegv?: return .sigsegv
                case .sigbus?: return .sigbus
                case .oom?: return .errno(.ENOMEM)
                }
                a += PAGE_SIZE
            }
            return result
        }
    }

    /// One access per page in address order; the first fault ends the line.
    /// A write stores a content token in the frame it wrote: `value`, or
    /// one derived from the writer and the address (`rmap_write_token`,
    /// shared with the oracle through CShims/include/rmap_content.h);
    /// `Kernel.userWrite` checks and records it (content provenance).
    func access(_ m: MMID, _ addr: UInt64, _ pages: UInt64, write: Bool, value: UInt64? = nil) -> OpResult {
        var a = addr
        for _ in 0..<pages {
            switch k.handleMMFault(m, a, write: write) {
            case .ok: break
            case .sigsegv: return .sigsegv
            case .sigbus: return .sigbus
            case .oom: return .errno(.ENOMEM)
            }
            if write {
                k.userWrite(m, a, value ?? rmap_write_token(m.rawValue, a), provenance.enabled ? provenance : nil)
            }
            a += PAGE_SIZE
        }
        return .ok
    }

    /// `ksm scan [PASSES]`: full passes of ksmd (ksm_do_scan over every
    /// mergeable mm). A pass that runs out of rmap_items ends the statement.
    public func ksmScan(passes: UInt64 = 1) {
        for _ in 0..<passes where !k.ksmScanPass() { break }
    }

}

// Single-threaded by design: a Machine, its Kernel handle and its hooks are
// used from one thread at a time (the kernel's locks are modelled as fields,
// not taken). Swift 6's checker keeps them from crossing threads until a
// concurrent model exists.
@available(*, unavailable, message: "a Machine is single-threaded: use it from one thread")
extension Machine: Sendable {}

@available(*, unavailable, message: "the arena handle is single-threaded")
extension Kernel: Sendable {}

@available(*, unavailable, message: "the hooks are single-threaded")
extension KernelHooks: Sendable {}
