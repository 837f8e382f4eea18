import CShims

/// Capacities of the arena's tables. The defaults model 1 GiB of memory
/// (262,144 frames of 4 KiB): a runaway trace exhausts them and gets ENOMEM
/// within seconds, while real scenarios (thousands of processes) fit.
public struct ArenaConfig: Sendable, Equatable {
    public var frames: UInt32 = 262_144
    public var ptPages: UInt32 = 65_536
    public var mms: UInt32 = 16_384
    public var vmas: UInt32 = 262_144
    public var anonVMAs: UInt32 = 262_144
    public var avcs: UInt32 = 524_288
    public var files: UInt32 = 16_384
    public var swapSlots: UInt32 = 262_144
    /// Process and file names (each `proc`, fork child and `file`).
    public var names: UInt32 = 65_536
    /// KSM rmap_items (one per scanned page of a VM_MERGEABLE region) and
    /// stable-tree nodes (one per KSM page).
    public var ksmItems: UInt32 = 262_144
    public var ksmNodes: UInt32 = 65_536
    /// Not a capacity: whether an anonymous arena may fault in its memory a
    /// few megabytes ahead of the model on another CPU (the populator,
    /// CShims/populate.c: a thread started once a table has 8 MiB in use;
    /// off with one CPU, without MADV_POPULATE_WRITE, for a file-backed
    /// arena, or with RMAP_ARENA_POPULATE=0 in the environment). It changes
    /// which thread pays the host's page faults, never the arena's contents.
    public var populatesAhead = true
    /// Not a capacity: the history mode a new machine starts in for mremap
    /// of private hugetlb mappings (issue 20; kept in the arena header).
    public var hugetlbResvMode: HugetlbResvMode = .v6_18

    public init() {}

    /// The most objects one table may hold (each capacity, `frames`
    /// included, is 1 to this; CShims' RMAP_MAX_CAPACITY less the reserved
    /// record 0).
    public static let maxCapacity: UInt32 = (1 << 30) - 1

    public static let `default` = ArenaConfig()

    /// A few kilobytes of tables: for saved-state seeds and exhaustion tests.
    public static let tiny: ArenaConfig = {
        var c = ArenaConfig()
        c.frames = 64; c.ptPages = 16; c.mms = 8; c.vmas = 32; c.anonVMAs = 32; c.avcs = 64
        c.files = 4; c.swapSlots = 8; c.names = 16; c.ksmItems = 32; c.ksmNodes = 16
        return c
    }()

    var c: rmap_arena_config {
        rmap_arena_config(frames: frames, pt_pages: ptPages, mms: mms, vmas: vmas,
                          anon_vmas: anonVMAs, avcs: avcs, files: files, swap_slots: swapSlots, names: names,
                          ksm_items: ksmItems, ksm_nodes: ksmNodes)
    }
}

public struct ArenaError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// The owner of one arena mapping. It unmaps the region when it goes away.
/// Models nothing of the kernel: it is the model's physical memory.
public struct Arena: ~Copyable {
    let base: UnsafeMutableRawPointer
    let size: UInt64
    /// The populator of an anonymous arena (`ArenaConfig.populatesAhead`),
    /// nil when it is off. Stopped before the arena is unmapped.
    let populator: OpaquePointer?

    /// Reserves a new arena (anonymous, or MAP_SHARED on `path`) and writes its header.
    public init(config: ArenaConfig = .default, path: String? = nil) throws(ArenaError) {
        var cfg = config.c
        var hdr = rmap_arena_header()
        let size = rmap_arena_layout(&cfg, &hdr)
        guard size != 0 else {
            throw ArenaError(message: "arena: a capacity is 0 or larger than \(ArenaConfig.maxCapacity)")
        }
        let p: UnsafeMutableRawPointer?
        if let path { p = rmap_arena_map(size, path) } else { p = rmap_arena_map(size, nil) }
        guard let p else {
            let e = errno_value()
            throw ArenaError(message: "arena: cannot reserve \(size) bytes\(path.map { " on \($0)" } ?? ""): "
                             + String(cString: strerror(e)))
        }
        p.storeBytes(of: hdr, as: rmap_arena_header.self)
        if path == nil { rmap_arena_advise_frames(p, &hdr) }
        self.base = p
        self.size = size
        // A file-backed arena has none: populating its pages ahead would
        // allocate the file's blocks beyond the state a save needs.
        populator = path == nil && config.populatesAhead ? rmap_populator_create(p, size, &hdr) : nil
    }

    deinit {
        if let populator { rmap_populator_destroy(populator) }
        _ = rmap_arena_unmap(base, size)
    }

    /// The unsafe handle the model works through.
    var kernel: Kernel { Kernel(base: base, populator: populator) }

    /// The populator's state (`RMAP_POPULATOR_*`, nil when the arena has
    /// none) and the bytes it has populated, after it has caught up with the
    /// model (tests: the figures are then the same from run to run).
    package func populatorStatus() -> (state: Int32, bytes: UInt64)? {
        // (Machine.populatorStatus() is the same, for callers that cannot
        // borrow the noncopyable arena, such as test macros.)
        guard let populator else { return nil }
        rmap_populator_quiesce(populator)
        var bytes: UInt64 = 0
        let st = rmap_populator_state(populator, &bytes)
        return (st, bytes)
    }

    public var byteSize: UInt64 { size }
}

@inline(__always) func errno_value() -> Int32 {
    #if canImport(Glibc)
    return Glibc.errno
    #else
    return 0
    #endif
}

#if canImport(Glibc)
import Glibc
#endif
