// The C API of swift-rmap (see rmap.h next to this file).
//
// A machine handle is a small box in memory of its own (`HandleBox`): a magic
// word, the retained `Machine`, the walk-in-progress flag and the message of
// the last failed call. Every entry point checks its arguments before use:
// NULL pointers give -EINVAL, a handle that is not a live machine gives
// RMAP_MISUSE (the registry of live handles is asked first, so a destroyed or
// made-up handle is never read; the magic word then catches a live handle
// whose memory was overwritten), and a call from inside an rmap_walk callback
// on the machine being walked gives -EBUSY. Strings returned to C are
// malloc'ed and freed with rmap_free().
import Rmap
import RmapTrace
import RmapTools
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public typealias Handle = UnsafeMutableRawPointer

// MARK: - Result codes (rmap.h)

let RMAP_SIGSEGV: CInt = -1000
let RMAP_SIGBUS: CInt = -1001
let RMAP_FAIL: CInt = -1002
let RMAP_NOT_MODELLED: CInt = -1003
let RMAP_MISUSE: CInt = -1004

func code(_ r: OpResult) -> CInt {
    switch r {
    case .ok: return 0
    case .errno(let e):
        switch e {
        case .EPERM: return -EPERM
        case .ESRCH: return -ESRCH
        case .ENOMEM: return -ENOMEM
        case .EFAULT: return -EFAULT
        case .EBUSY: return -EBUSY
        case .EEXIST: return -EEXIST
        case .EINVAL: return -EINVAL
        case .EAGAIN: return -EAGAIN
        case .EHWPOISON: return -133
        }
    case .sigsegv: return RMAP_SIGSEGV
    case .sigbus: return RMAP_SIGBUS
    case .fail: return RMAP_FAIL
    case .notModelled: return RMAP_NOT_MODELLED
    case .referenced(let n), .cleaned(let n): return CInt(clamping: n)
    }
}

// MARK: - Handles

/// What an `rmap_machine *` points at.
struct HandleBox {
    /// `HandleBox.live` while the handle may be used; anything else means the
    /// box was overwritten (or is being destroyed) and the machine is not touched.
    var magic: UInt64
    let machine: Unmanaged<Machine>
    /// An rmap_walk of this machine is running (its callback may call in).
    var busy: Bool
    /// rmap_machine_destroy was called from a walk callback: the walk frees the box.
    var destroyPending: Bool
    /// The message of the last failed call (malloc'ed), nil after a success.
    var lastError: UnsafeMutablePointer<CChar>?

    static let live: UInt64 = 0x6869_6361_6d70_616d  // "mapmachi" in memory order
    static let dying: UInt64 = 0x676e_6979_6470_616d  // "mapdying"
}

/// The addresses of the live handles. Consulted before a handle is read, so
/// that a destroyed or made-up handle is refused without reading it.
let liveHandles = Mutex<Set<UInt>>([])

/// Why a call without a live machine failed, per thread (rmap_last_error(NULL)).
let threadErrorKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()

func setThreadError(_ message: String) {
    free(pthread_getspecific(threadErrorKey))
    pthread_setspecific(threadErrorKey, strdup(message))
}

func cString(_ s: String) -> UnsafeMutablePointer<CChar> { strdup(s)! }

/// The handle's box, or the code to return (the reason recorded).
func enter(_ h: Handle?, _ function: StaticString) -> Result<UnsafeMutablePointer<HandleBox>, CallFailure> {
    guard let h else {
        setThreadError("\(function): the machine is NULL")
        return .failure(CallFailure(code: -EINVAL))
    }
    guard liveHandles.withLock({ $0.contains(UInt(bitPattern: h)) }) else {
        setThreadError("\(function): not a live rmap machine (destroyed, or not made by rmap_machine_create or rmap_machine_open)")
        return .failure(CallFailure(code: RMAP_MISUSE))
    }
    let box = h.assumingMemoryBound(to: HandleBox.self)
    guard box.pointee.magic == HandleBox.live else {
        setThreadError(box.pointee.magic == HandleBox.dying
                       ? "\(function): the machine was destroyed (from an rmap_walk callback)"
                       : "\(function): the machine's memory was overwritten; it is not used again")
        return .failure(CallFailure(code: RMAP_MISUSE))
    }
    if box.pointee.busy {
        fail(box, "\(function): called from an rmap_walk callback of this machine: the machine is busy until the walk returns")
        return .failure(CallFailure(code: -EBUSY))
    }
    clearError(box)
    return .success(box)
}

struct CallFailure: Error { let code: CInt }

func clearError(_ box: UnsafeMutablePointer<HandleBox>) {
    if let e = box.pointee.lastError {
        free(e)
        box.pointee.lastError = nil
    }
}

/// Records `message` as the machine's last error.
func fail(_ box: UnsafeMutablePointer<HandleBox>, _ message: String) {
    clearError(box)
    box.pointee.lastError = strdup(message)
}

/// Runs `body` with the live machine of `h`; the code of a refusal otherwise.
func call(_ h: Handle?, _ function: StaticString,
          _ body: (UnsafeMutablePointer<HandleBox>, Machine) -> CInt) -> CInt {
    switch enter(h, function) {
    case .failure(let f): return f.code
    case .success(let box): return body(box, box.pointee.machine.takeUnretainedValue())
    }
}

/// `call` for the entry points that return a string (NULL on a refusal).
func callReturningString(_ h: Handle?, _ function: StaticString,
                         _ body: (UnsafeMutablePointer<HandleBox>, Machine) -> UnsafeMutablePointer<CChar>?)
    -> UnsafeMutablePointer<CChar>? {
    switch enter(h, function) {
    case .failure: return nil
    case .success(let box): return body(box, box.pointee.machine.takeUnretainedValue())
    }
}

/// A new handle for `m`.
func makeHandle(_ m: Machine) -> Handle {
    let box = UnsafeMutablePointer<HandleBox>.allocate(capacity: 1)
    box.initialize(to: HandleBox(magic: HandleBox.live, machine: .passRetained(m), busy: false,
                                 destroyPending: false, lastError: nil))
    let h = Handle(box)
    liveHandles.withLock { _ = $0.insert(UInt(bitPattern: h)) }
    return h
}

/// Frees a handle: out of the registry first, then the magic word cleared.
func finalize(_ box: UnsafeMutablePointer<HandleBox>) {
    liveHandles.withLock { _ = $0.remove(UInt(bitPattern: Handle(box))) }
    box.pointee.magic = 0
    clearError(box)
    box.pointee.machine.release()
    box.deinitialize(count: 1)
    box.deallocate()
}

/// A C string as UTF-8 text, or nil (and the reason recorded) when it is not valid UTF-8.
func text(_ p: UnsafePointer<CChar>, _ box: UnsafeMutablePointer<HandleBox>, _ what: String) -> String? {
    if let s = String(validatingCString: p) { return s }
    fail(box, "\(what) is not valid UTF-8")
    return nil
}

/// A name argument checked against the trace language's rules: NULL, not
/// UTF-8, not `[A-Za-z_][A-Za-z0-9_.-]*` of 1 to 64 characters, or (for a
/// process) a reserved word, is EINVAL with the reason recorded.
func name(_ p: UnsafePointer<CChar>?, _ box: UnsafeMutablePointer<HandleBox>, _ what: String,
          process: Bool = true) -> String? {
    guard let p else { fail(box, "\(what) is NULL"); return nil }
    guard let s = String(validatingCString: p), Machine.isValidName(s) else {
        fail(box, "\(what) is not a name ([A-Za-z_][A-Za-z0-9_.-]*, 1 to \(Machine.maxNameLength) characters)")
        return nil
    }
    if process && TraceParser.reservedWords.contains(s) {
        fail(box, "\(what) '\(s)' is a reserved word of the trace language")
        return nil
    }
    return s
}

/// The outcome of an operation: its code, the result recorded when it is not `ok`.
func outcome(_ box: UnsafeMutablePointer<HandleBox>, _ r: OpResult, _ what: String) -> CInt {
    switch r {
    case .ok, .referenced, .cleaned: break
    default: fail(box, "\(what): \(r)")
    }
    return code(r)
}

// MARK: - Machines

@_cdecl("rmap_machine_create")
public func rmap_machine_create(_ frames: UInt32, _ reuse: UnsafePointer<CChar>?) -> Handle? {
    var cfg = ArenaConfig.default
    if frames != 0 {
        guard frames >= 2, frames <= ArenaConfig.maxCapacity else {
            setThreadError("rmap_machine_create: frames must be 0 (the default) or 2 to \(ArenaConfig.maxCapacity), got \(frames)")
            return nil
        }
        cfg.frames = frames
    }
    var policy = ReusePolicy.split
    if let reuse {
        guard let s = String(validatingCString: reuse), let p = ReusePolicy.named(s) else {
            setThreadError("rmap_machine_create: unknown reuse policy (expected none, degree, split or NULL)")
            return nil
        }
        policy = p
    }
    do {
        return makeHandle(try Machine(config: cfg, reuse: policy))
    } catch {
        setThreadError("rmap_machine_create: \(error.description)")
        return nil
    }
}

@_cdecl("rmap_machine_open")
public func rmap_machine_open(_ path: UnsafePointer<CChar>?, _ err: UnsafeMutablePointer<CChar>?, _ errlen: Int) -> Handle? {
    func refuse(_ message: String) -> Handle? {
        setThreadError(message)
        if let err, errlen > 0 {
            _ = message.withCString { strncpy(err, $0, errlen - 1) }
            err[errlen - 1] = 0
        }
        return nil
    }
    guard let path else { return refuse("rmap_machine_open: the path is NULL") }
    guard let p = String(validatingCString: path) else { return refuse("rmap_machine_open: the path is not valid UTF-8") }
    do {
        return makeHandle(try Machine(opening: p))
    } catch {
        return refuse(error.description)
    }
}

@_cdecl("rmap_machine_save")
public func rmap_machine_save(_ h: Handle?, _ path: UnsafePointer<CChar>?) -> CInt {
    call(h, "rmap_machine_save") { box, m in
        guard let path else { fail(box, "rmap_machine_save: the path is NULL"); return -EINVAL }
        guard let p = text(path, box, "rmap_machine_save: the path") else { return -EINVAL }
        guard let e = m.saveReportingErrno(to: p) else { return 0 }
        fail(box, e.message)
        return e.errno > 0 ? -e.errno : -EIO
    }
}

@_cdecl("rmap_machine_destroy")
public func rmap_machine_destroy(_ h: Handle?) {
    guard let h else { return }
    guard liveHandles.withLock({ $0.contains(UInt(bitPattern: h)) }) else {
        setThreadError("rmap_machine_destroy: not a live rmap machine (destroyed already, or never made)")
        return
    }
    let box = h.assumingMemoryBound(to: HandleBox.self)
    guard box.pointee.magic == HandleBox.live else {
        // Overwritten memory: its machine pointer cannot be trusted; leaked.
        setThreadError("rmap_machine_destroy: the machine's memory was overwritten; it is not released")
        return
    }
    if box.pointee.busy {
        // From a walk callback: the handle is dead from now on, and the walk
        // frees it when it returns.
        box.pointee.magic = HandleBox.dying
        box.pointee.destroyPending = true
        return
    }
    finalize(box)
}

@_cdecl("rmap_free")
public func rmap_free(_ p: UnsafeMutableRawPointer?) { free(p) }

@_cdecl("rmap_last_error")
public func rmap_last_error(_ h: Handle?) -> UnsafePointer<CChar> {
    let empty = UnsafeRawPointer(("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
    if let h, liveHandles.withLock({ $0.contains(UInt(bitPattern: h)) }) {
        let box = h.assumingMemoryBound(to: HandleBox.self)
        if box.pointee.magic == HandleBox.live { return UnsafePointer(box.pointee.lastError) ?? empty }
    }
    guard let e = pthread_getspecific(threadErrorKey) else { return empty }
    return UnsafePointer(e.assumingMemoryBound(to: CChar.self))
}

// MARK: - Traces and operations

@_cdecl("rmap_run_trace")
public func rmap_run_trace(_ h: Handle?, _ textPointer: UnsafePointer<CChar>?,
                           _ json: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                           _ errors: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    json?.pointee = nil
    errors?.pointee = nil
    let r = call(h, "rmap_run_trace") { box, m in
        guard let textPointer else { fail(box, "rmap_run_trace: the trace text is NULL"); return -EINVAL }
        // The bytes as a trace file's: invalid UTF-8 is an error at its line and column.
        let bytes = Array(UnsafeRawBufferPointer(start: textPointer, count: strlen(textPointer)))
        do {
            let trace = try TraceParser.parse(bytes: bytes, file: "trace", continuing: m.traceContext)
            let out = m.replay(trace)
            if let e = out.error {
                // A statement that cannot run on this arena (a table full at `proc`
                // or `file`, `swap` beyond the swap map): the run stopped there.
                fail(box, e)
                errors?.pointee = cString((out.failures + [e]).joined(separator: "\n"))
                return 2
            }
            json?.pointee = cString(out.canonicalJSON)
            errors?.pointee = cString(out.failures.joined(separator: "\n"))
            if !out.failures.isEmpty { fail(box, out.failures[0]) }
            return out.failures.isEmpty ? 0 : 1
        } catch {
            fail(box, String(describing: error))
            errors?.pointee = cString(String(describing: error))
            return 2
        }
    }
    if r < 0, let errors, errors.pointee == nil { errors.pointee = cString(String(cString: rmap_last_error(h))) }
    return r
}

@_cdecl("rmap_file_create")
public func rmap_file_create(_ h: Handle?, _ namePointer: UnsafePointer<CChar>?, _ pages: UInt64) -> CInt {
    call(h, "rmap_file_create") { box, m in
        guard let n = name(namePointer, box, "rmap_file_create: the file name", process: false) else { return -EINVAL }
        guard pages >= 1, pages <= Machine.maxFilePages else {
            fail(box, "rmap_file_create: a file has 1 to \(Machine.maxFilePages) pages, got \(pages)")
            return -EINVAL
        }
        return outcome(box, m.createFile(n, pages: pages), "file \(n) \(pages)")
    }
}

@_cdecl("rmap_process_create")
public func rmap_process_create(_ h: Handle?, _ namePointer: UnsafePointer<CChar>?) -> CInt {
    call(h, "rmap_process_create") { box, m in
        guard let n = name(namePointer, box, "rmap_process_create: the process name") else { return -EINVAL }
        return outcome(box, m.createProcess(n), "proc \(n)")
    }
}

@_cdecl("rmap_fork")
public func rmap_fork(_ h: Handle?, _ parentPointer: UnsafePointer<CChar>?, _ childPointer: UnsafePointer<CChar>?) -> CInt {
    call(h, "rmap_fork") { box, m in
        guard let parent = name(parentPointer, box, "rmap_fork: the parent's name"),
              let child = name(childPointer, box, "rmap_fork: the child's name") else { return -EINVAL }
        return outcome(box, m.fork(parent, child: child), "\(child) = fork \(parent)")
    }
}

@_cdecl("rmap_exit")
public func rmap_exit(_ h: Handle?, _ namePointer: UnsafePointer<CChar>?) -> CInt {
    call(h, "rmap_exit") { box, m in
        guard let n = name(namePointer, box, "rmap_exit: the process name") else { return -EINVAL }
        return outcome(box, m.exit(n), "\(n) exit")
    }
}

/// One operation line of the trace language for a live process, without
/// the process name ("mmap 0x100000000000 4 rw anon-private"): exactly one
/// statement, no line break, no `=> RESULT`.
@_cdecl("rmap_op")
public func rmap_op(_ h: Handle?, _ processPointer: UnsafePointer<CChar>?, _ linePointer: UnsafePointer<CChar>?) -> CInt {
    call(h, "rmap_op") { box, m in
        guard let p = name(processPointer, box, "rmap_op: the process name") else { return -EINVAL }
        guard let linePointer else { fail(box, "rmap_op: the line is NULL"); return -EINVAL }
        guard let line = text(linePointer, box, "rmap_op: the line") else { return -EINVAL }
        guard !line.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else {
            fail(box, "rmap_op: one statement per call: the line holds a line break")
            return -EINVAL
        }
        guard m.mmOf(p) != nil else {
            fail(box, "rmap_op: no live process '\(p)'")
            return -ESRCH
        }
        let statement = "\(p) \(line)"
        let trace: Trace
        do {
            trace = try TraceParser.parse(statement, file: "rmap_op", continuing: m.traceContext)
        } catch {
            fail(box, String(describing: error))
            return -EINVAL
        }
        guard trace.lines.count == 1, let tl = trace.lines.first else {
            fail(box, "rmap_op: '\(statement)' is not one operation")
            return -EINVAL
        }
        switch tl.statement {
        case .op(let name, let op, let expected) where name == p:
            guard expected == nil else { break }
            return outcome(box, m.perform(name, op), statement)
        case .largePageOp(let name, let op, let expected) where name == p:
            guard expected == nil else { break }
            let r: OpResult
            switch op {
            case .mmap(let addr, let pages, let prot, let kind, let noreserve):
                r = m.mmap(p, addr: addr, pages: pages, prot: prot, kind: kind, noreserve: noreserve)
            case .madvise(let addr, let pages, .collapse):
                r = m.madviseCollapse(p, addr: addr, pages: pages)
            case .madvise(let addr, let pages, let advice):
                r = m.madviseHugepage(p, addr: addr, pages: pages, hugepage: advice == .hugepage)
            case .split(let addr, let pages):
                r = m.split(p, addr: addr, pages: pages)
            }
            return outcome(box, r, statement)
        default:
            break
        }
        fail(box, "rmap_op: '\(statement)' is not an operation of process '\(p)' (one operation line, without '=> RESULT')")
        return -EINVAL
    }
}

// MARK: - The reverse map

public typealias rmap_walk_fn = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, UInt64, UInt64) -> CInt

struct CWalk: RmapWalkControl {
    /// Live processes by mm, built once per walk (a lookup per visit by
    /// scanning the names made a walk over N processes' mappings cost N^2).
    let names: [MMID: String]
    let fn: rmap_walk_fn
    let ctx: UnsafeMutableRawPointer?
    var visited: CInt = 0
    mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        visited += 1
        let r = m.vmaRange(vma)
        let name = names[r.mm] ?? "?"
        return name.withCString { fn(ctx, $0, r.start, address) } != 0
    }
}

/// Calls `fn(ctx, process, vma_start, address)` for each mapping the rmap
/// walk of the frame at (process, addr) visits; nonzero from fn continues.
/// The machine is busy meanwhile: calls on it from `fn` get -EBUSY.
@_cdecl("rmap_walk")
public func rmap_walk(_ h: Handle?, _ processPointer: UnsafePointer<CChar>?, _ addr: UInt64, _ fn: rmap_walk_fn?,
                      _ ctx: UnsafeMutableRawPointer?) -> CInt {
    call(h, "rmap_walk") { box, m in
        guard let p = name(processPointer, box, "rmap_walk: the process name") else { return -EINVAL }
        guard let fn else { fail(box, "rmap_walk: the callback is NULL"); return -EINVAL }
        guard m.mmOf(p) != nil else { fail(box, "rmap_walk: no live process '\(p)'"); return -ESRCH }
        var names: [MMID: String] = [:]
        names.reserveCapacity(m.processes.count)
        for (n, mm) in m.processes { names[mm] = n }
        var c = CWalk(names: names, fn: fn, ctx: ctx)
        box.pointee.busy = true
        let found = m.rmapWalk(process: p, addr: addr, &c)
        box.pointee.busy = false
        if box.pointee.destroyPending {
            finalize(box)  // rmap_machine_destroy from the callback
            return found ? c.visited : -EFAULT
        }
        guard found else { fail(box, "rmap_walk: no frame is mapped at \(p) \(hex(addr))"); return -EFAULT }
        clearError(box)  // what a refused call from the callback left: this call succeeded
        return c.visited
    }
}

/// The observation of "P ADDR PAGES[, ...]" as JSON: {"tokens":[...],"vmas":[...]}.
@_cdecl("rmap_observe")
public func rmap_observe(_ h: Handle?, _ targetsPointer: UnsafePointer<CChar>?) -> UnsafeMutablePointer<CChar>? {
    callReturningString(h, "rmap_observe") { box, m in
        guard let targetsPointer else { fail(box, "rmap_observe: the targets are NULL"); return nil }
        guard let targets = text(targetsPointer, box, "rmap_observe: the targets") else { return nil }
        guard !targets.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else {
            fail(box, "rmap_observe: the targets hold a line break")
            return nil
        }
        do {
            let t = try TraceParser.parse("observe \(targets)", file: "rmap_observe", continuing: m.traceContext)
            guard t.lines.count == 1, case .observe(let list) = t.lines[0].statement else {
                fail(box, "rmap_observe: expected targets 'P ADDR PAGES[, P ADDR PAGES...]'")
                return nil
            }
            return cString(m.observationJSON(list))
        } catch {
            fail(box, String(describing: error))
            return nil
        }
    }
}

/// Runs the invariant checker: 0 when clean, else the number of violations
/// (and *report, if given, lists them one per line).
@_cdecl("rmap_check")
public func rmap_check(_ h: Handle?, _ report: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    report?.pointee = nil
    return call(h, "rmap_check") { box, m in
        let v = m.check()
        report?.pointee = cString(v.joined(separator: "\n"))
        if let first = v.first { fail(box, first) }
        return CInt(clamping: v.count)
    }
}

/// Statistics of the current state as JSON (`Machine.stats()`).
@_cdecl("rmap_stats_json")
public func rmap_stats_json(_ h: Handle?) -> UnsafeMutablePointer<CChar>? {
    callReturningString(h, "rmap_stats_json") { _, m in cString(m.stats().json) }
}
