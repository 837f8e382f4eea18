// The C API of swift-rmap (see rmap.h next to this file). A machine is an
// opaque pointer to a retained `Machine`; strings returned to C are
// malloc'ed and freed with rmap_free().
import Rmap
import RmapTrace
import RmapTools
#if canImport(Glibc)
import Glibc
#endif

public typealias Handle = UnsafeMutableRawPointer

@inline(__always) func machine(_ h: Handle) -> Machine { Unmanaged<Machine>.fromOpaque(h).takeUnretainedValue() }

func cString(_ s: String) -> UnsafeMutablePointer<CChar> { strdup(s)! }

func code(_ r: OpResult) -> CInt {
    switch r {
    case .ok: return 0
    case .errno(let e):
        switch e {
        case .EPERM: return -1
        case .ESRCH: return -3
        case .ENOMEM: return -12
        case .EFAULT: return -14
        case .EBUSY: return -16
        case .EEXIST: return -17
        case .EINVAL: return -22
        case .EAGAIN: return -11
        case .EHWPOISON: return -133
        }
    case .sigsegv: return -1000
    case .sigbus: return -1001
    case .fail: return -1002
    case .notModelled: return -1003  // RMAP_NOT_MODELLED
    case .referenced(let n), .cleaned(let n): return CInt(n)
    }
}

@_cdecl("rmap_machine_create")
public func rmap_machine_create(_ frames: UInt32, _ reuse: UnsafePointer<CChar>?) -> Handle? {
    var cfg = ArenaConfig.default
    if frames != 0 { cfg.frames = frames }
    var policy = ReusePolicy.split
    if let reuse { guard let p = ReusePolicy.named(String(cString: reuse)) else { return nil }; policy = p }
    guard let m = try? Machine(config: cfg, reuse: policy) else { return nil }
    return Unmanaged.passRetained(m).toOpaque()
}

@_cdecl("rmap_machine_open")
public func rmap_machine_open(_ path: UnsafePointer<CChar>, _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> Handle? {
    do {
        let m = try Machine(opening: String(cString: path))
        return Unmanaged.passRetained(m).toOpaque()
    } catch {
        if let err, errlen > 0 { _ = error.description.withCString { strncpy(err, $0, errlen - 1) }; err[errlen - 1] = 0 }
        return nil
    }
}

@_cdecl("rmap_machine_save")
public func rmap_machine_save(_ h: Handle, _ path: UnsafePointer<CChar>) -> CInt {
    machine(h).save(to: String(cString: path)) == nil ? 0 : -1
}

@_cdecl("rmap_machine_destroy")
public func rmap_machine_destroy(_ h: Handle?) {
    guard let h else { return }
    Unmanaged<Machine>.fromOpaque(h).release()
}

@_cdecl("rmap_free")
public func rmap_free(_ p: UnsafeMutableRawPointer?) { free(p) }

@_cdecl("rmap_run_trace")
public func rmap_run_trace(_ h: Handle, _ text: UnsafePointer<CChar>, _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                           _ errors: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let m = machine(h)
    let context = m.traceContext
    do {
        let trace = try TraceParser.parse(String(cString: text), file: "trace", continuing: context)
        let out = m.replay(trace)
        if let e = out.error {
            // A statement that cannot run on this arena (a table full at `proc`
            // or `file`, `swap` beyond the swap map): the run stopped there.
            json?.pointee = nil
            errors?.pointee = cString((out.failures + [e]).joined(separator: "\n"))
            return 2
        }
        json?.pointee = cString(out.canonicalJSON)
        errors?.pointee = cString(out.failures.joined(separator: "\n"))
        return out.failures.isEmpty ? 0 : 1
    } catch {
        json?.pointee = nil
        errors?.pointee = cString(error.description)
        return 2
    }
}

@_cdecl("rmap_file_create")
public func rmap_file_create(_ h: Handle, _ name: UnsafePointer<CChar>, _ pages: UInt64) -> CInt {
    code(machine(h).createFile(String(cString: name), pages: pages))
}

@_cdecl("rmap_process_create")
public func rmap_process_create(_ h: Handle, _ name: UnsafePointer<CChar>) -> CInt {
    code(machine(h).createProcess(String(cString: name)))
}

@_cdecl("rmap_fork")
public func rmap_fork(_ h: Handle, _ parent: UnsafePointer<CChar>, _ child: UnsafePointer<CChar>) -> CInt {
    code(machine(h).fork(String(cString: parent), child: String(cString: child)))
}

@_cdecl("rmap_exit")
public func rmap_exit(_ h: Handle, _ name: UnsafePointer<CChar>) -> CInt {
    code(machine(h).exit(String(cString: name)))
}

/// One operation line of the trace language without the process name,
/// e.g. "mmap 0x100000000000 4 rw anon-private" or "write 0x100000000000 2".
@_cdecl("rmap_op")
public func rmap_op(_ h: Handle, _ process: UnsafePointer<CChar>, _ line: UnsafePointer<CChar>) -> CInt {
    let m = machine(h)
    let p = String(cString: process)
    let context = m.traceContext
    guard let t = try? TraceParser.parse("\(p) \(String(cString: line))", file: "op", continuing: context),
          let first = t.lines.first, case .op(let name, let op, _) = first.statement else { return -22 }
    return code(m.perform(name, op))
}

public typealias rmap_walk_fn = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>, UInt64, UInt64) -> CInt

struct CWalk: RmapWalkControl {
    let machine: Machine
    let fn: rmap_walk_fn
    let ctx: UnsafeMutableRawPointer?
    var visited: CInt = 0
    mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        visited += 1
        let r = m.vmaRange(vma)
        let name = machine.processName(mm: r.mm) ?? "?"
        return name.withCString { fn(ctx, $0, r.start, address) } != 0
    }
}

/// Calls `fn(ctx, process, vma_start, address)` for each mapping the rmap
/// walk of the frame at (process, addr) visits; nonzero from fn continues.
/// Returns the number visited, or -14 (EFAULT) when no frame is mapped there.
@_cdecl("rmap_walk")
public func rmap_walk(_ h: Handle, _ process: UnsafePointer<CChar>, _ addr: UInt64, _ fn: rmap_walk_fn,
                      _ ctx: UnsafeMutableRawPointer?) -> CInt {
    let m = machine(h)
    var c = CWalk(machine: m, fn: fn, ctx: ctx)
    guard m.rmapWalk(process: String(cString: process), addr: addr, &c) else { return -14 }
    return c.visited
}

/// The observation of "P ADDR PAGES[, ...]" as JSON: {"tokens":[...],"vmas":[...]}.
@_cdecl("rmap_observe")
public func rmap_observe(_ h: Handle, _ targets: UnsafePointer<CChar>) -> UnsafeMutablePointer<CChar>? {
    let m = machine(h)
    let context = m.traceContext
    guard let t = try? TraceParser.parse("observe \(String(cString: targets))", file: "observe", continuing: context),
          let first = t.lines.first, case .observe(let targets) = first.statement else { return nil }
    return cString(m.observationJSON(targets))
}

/// Runs the invariant checker: 0 when clean, else the number of violations
/// (and *report, if given, lists them one per line).
@_cdecl("rmap_check")
public func rmap_check(_ h: Handle, _ report: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let v = machine(h).check()
    report?.pointee = cString(v.joined(separator: "\n"))
    return CInt(v.count)
}

/// Statistics of the current state as JSON (`Machine.stats()`).
@_cdecl("rmap_stats_json")
public func rmap_stats_json(_ h: Handle) -> UnsafeMutablePointer<CChar>? {
    cString(machine(h).stats().json)
}
