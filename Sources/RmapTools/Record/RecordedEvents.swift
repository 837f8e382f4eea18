/// One line of the tracefs instance's `trace` file, decoded.
public struct RecordedEvent: Sendable {
    public enum Kind: Sendable {
        /// exceptions:page_fault_user / page_fault_kernel (the kernel touching a
        /// user address, as copy_to_user does). `write` is error code bit 1.
        case fault(address: UInt64, write: Bool, user: Bool)
        case exec(filename: String, pid: Int32, oldPid: Int32)
        /// sched:sched_prepare_exec: the point of no return; from here the task's
        /// user addresses are the new image's.
        case prepareExec
        case exit(pid: Int32)
        /// task:task_newtask: `pid` is the new task, the event's task its creator.
        case newTask(pid: Int32, cloneFlags: UInt64)
        case rss(mmID: UInt32, curr: Bool, member: Int, bytes: Int64)
        case sysEnter(name: String, args: [UInt64])
        case sysExit(name: String, ret: Int64)
    }
    public var tid: Int32
    public var line: Int
    public var kind: Kind
}

public struct RecordedEventError: Error, CustomStringConvertible {
    public var description: String
}

/// Decodes the text of a tracefs `trace` file: `TASK-PID [CPU] FLAGS TIME: EVENT: FIELDS`.
/// Lines of other events are ignored; a line of a known event that cannot be
/// read is an error (a format this recorder does not know).
public func decodeTraceText(_ text: String) throws -> (events: [RecordedEvent], entries: (inBuffer: Int, written: Int)?) {
    var events: [RecordedEvent] = []
    var entries: (Int, Int)? = nil
    var lineNo = 0
    for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
        lineNo += 1
        let line = Substring(rawLine)
        if line.first == "#" {
            if let r = line.firstRange(of: "entries-in-buffer/entries-written: ") {
                let rest = line[r.upperBound...].split(separator: " ")[0].split(separator: "/")
                if rest.count == 2, let a = Int(rest[0]), let b = Int(rest[1]) { entries = (a, b) }
            }
            continue
        }
        if line.isEmpty { continue }
        guard let bracket = line.firstRange(of: "] ") ,
              let open = line[..<bracket.lowerBound].lastIndex(of: "[") else { continue }
        let taskPid = line[..<open].trimmingSpaces()
        guard let dash = taskPid.lastIndex(of: "-"), let tid = Int32(taskPid[taskPid.index(after: dash)...]) else {
            throw RecordedEventError(description: "trace line \(lineNo): no TASK-PID: \(line)")
        }
        // FLAGS TIME: EVENT: FIELDS
        let afterCPU = line[bracket.upperBound...]
        guard let c1 = afterCPU.firstRange(of: ": ") else { continue }
        let rest = afterCPU[c1.upperBound...]
        // Syscall events print `sys_mmap(addr: 0, ...)` and `sys_mmap -> 0x...`.
        if rest.hasPrefix("sys_") {
            if let paren = rest.firstIndex(of: "("), !rest[..<paren].contains(" ") {
                let name = rest[..<paren]
                let body = rest[rest.index(after: paren)...]
                var args: [UInt64] = []
                for part in body.dropLast().split(separator: ",") {
                    let kv = part.split(separator: ":")
                    var t = kv.count == 2 ? kv[1].trimmingSpaces() : ""
                    if t.hasPrefix("0x") { t = t.dropFirst(2) }
                    guard kv.count == 2, let v = UInt64(t, radix: 16) else {
                        throw RecordedEventError(description: "trace line \(lineNo): cannot read syscall arguments: \(line)")
                    }
                    args.append(v)
                }
                events.append(RecordedEvent(tid: tid, line: lineNo, kind: .sysEnter(name: String(name.dropFirst(4)), args: args)))
                continue
            }
            if let arrow = rest.firstRange(of: " -> ") {
                let n = rest[..<arrow.lowerBound]
                var v = rest[arrow.upperBound...].trimmingSpaces()
                if v.hasPrefix("0x") { v = v.dropFirst(2) }
                guard let u = UInt64(v, radix: 16) else {
                    throw RecordedEventError(description: "trace line \(lineNo): cannot read a syscall result: \(line)")
                }
                events.append(RecordedEvent(tid: tid, line: lineNo, kind: .sysExit(name: String(n.dropFirst(4)), ret: Int64(bitPattern: u))))
                continue
            }
            continue
        }
        guard let c2 = rest.firstIndex(of: ":") else { continue }
        let name = rest[..<c2]
        let fields = parseFields(rest[c2...].dropFirst())
        func num(_ k: String, hex: Bool = false) throws -> UInt64 {
            guard var s = fields[k] else { throw RecordedEventError(description: "trace line \(lineNo): no field '\(k)': \(line)") }
            var radix = 10
            if s.hasPrefix("0x") { s = String(s.dropFirst(2)); radix = 16 } else if hex { radix = 16 }
            if s.hasSuffix("B") { s = String(s.dropLast()) }
            if let v = UInt64(s, radix: radix) { return v }
            if let v = Int64(s, radix: radix) { return UInt64(bitPattern: v) }
            throw RecordedEventError(description: "trace line \(lineNo): field '\(k)' is not a number: \(line)")
        }
        switch name {
        case "page_fault_user", "page_fault_kernel":
            // A kernel symbol in `address` (%ps) is not a user address: skip.
            guard let a = fields["address"], a.hasPrefix("0x") else { continue }
            let address = try num("address"), code = try num("error_code")
            events.append(RecordedEvent(tid: tid, line: lineNo, kind: .fault(address: address, write: code & 2 != 0, user: name == "page_fault_user")))
        case "sched_process_exec":
            events.append(RecordedEvent(tid: tid, line: lineNo, kind: .exec(filename: fields["filename"] ?? "?", pid: Int32(truncatingIfNeeded: try num("pid")), oldPid: Int32(truncatingIfNeeded: try num("old_pid")))))
        case "sched_prepare_exec":
            events.append(RecordedEvent(tid: tid, line: lineNo, kind: .prepareExec))
        case "sched_process_exit":
            events.append(RecordedEvent(tid: tid, line: lineNo, kind: .exit(pid: Int32(truncatingIfNeeded: try num("pid")))))
        case "task_newtask":
            events.append(RecordedEvent(tid: tid, line: lineNo, kind: .newTask(pid: Int32(truncatingIfNeeded: try num("pid")), cloneFlags: try num("clone_flags", hex: true))))
        case "rss_stat":
            let member: Int
            switch fields["type"] ?? "" {
            case "MM_FILEPAGES": member = 0
            case "MM_ANONPAGES": member = 1
            case "MM_SWAPENTS": member = 2
            case "MM_SHMEMPAGES": member = 3
            default: throw RecordedEventError(description: "trace line \(lineNo): unknown rss_stat type: \(line)")
            }
            events.append(RecordedEvent(tid: tid, line: lineNo, kind: .rss(mmID: UInt32(truncatingIfNeeded: try num("mm_id")), curr: try num("curr") != 0, member: member, bytes: Int64(bitPattern: try num("size")))))
        default:
            continue
        }
    }
    return (events, entries)
}

/// `k=v k=v ...` (values without spaces, except that comm may hold any byte: it is not used).
func parseFields(_ body: Substring) -> [String: String] {
    var out: [String: String] = [:]
    for part in body.split(separator: " ") {
        guard let eq = part.firstIndex(of: "=") else { continue }
        out[String(part[..<eq])] = String(part[part.index(after: eq)...])
    }
    return out
}

/// One seccomp notification of the recorder's child (CShims/record.c): the call,
/// the file behind an mmap'd descriptor, and every mapping at that moment.
public struct CallSnapshot: Sendable {
    public struct Mapping: Sendable {
        public var start: UInt64, end: UInt64
        public var perms: String
        public var offset: UInt64
        public var inode: UInt64
        public var dev: String
        public var path: String
    }
    public struct FileInfo: Sendable {
        public var size: UInt64, dev: UInt64, inode: UInt64, path: String
    }
    public var tid: Int32
    public var nr: Int
    public var args: [UInt64]
    public var file: FileInfo?
    public var maps: [Mapping] = []
    /// Runs of pages present (or swapped out) at that moment: [start, end).
    public var present: [(UInt64, UInt64)] = []
}

public func decodeSnapshots(_ text: String) throws -> [Int32: [CallSnapshot]] {
    var out: [Int32: [CallSnapshot]] = [:]
    var cur: CallSnapshot? = nil
    var lineNo = 0
    for line in text.split(separator: "\n") {
        lineNo += 1
        guard let tag = line.first else { continue }
        let rest = line.dropFirst(2)
        func bad() -> RecordedEventError { RecordedEventError(description: "snapshot line \(lineNo): cannot read: \(line)") }
        switch tag {
        case "N":
            let w = rest.split(separator: " ")
            guard w.count == 8, let tid = Int32(w[0]), let nr = Int(w[1]) else { throw bad() }
            let args = try w[2...].map { (s: Substring) -> UInt64 in guard let v = UInt64(s, radix: 16) else { throw bad() }; return v }
            cur = CallSnapshot(tid: tid, nr: nr, args: args)
        case "F":
            let w = rest.split(separator: " ", maxSplits: 3)
            guard w.count == 4, let s = UInt64(w[0], radix: 16), let d = UInt64(w[1], radix: 16), let i = UInt64(w[2], radix: 16) else { throw bad() }
            cur?.file = .init(size: s, dev: d, inode: i, path: String(w[3]))
        case "M":
            // start-end perms offset dev inode [path]
            let w = rest.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard w.count >= 5 else { throw bad() }
            let se = w[0].split(separator: "-")
            guard se.count == 2, let s = UInt64(se[0], radix: 16), let e = UInt64(se[1], radix: 16),
                  let off = UInt64(w[2], radix: 16), let ino = UInt64(w[4]) else { throw bad() }
            let path = w.count == 6 ? String(w[5].trimmingSpaces()) : ""
            cur?.maps.append(.init(start: s, end: e, perms: String(w[1]), offset: off, inode: ino, dev: String(w[3]), path: path))
        case "P":
            let w = rest.split(separator: " ")
            guard w.count == 2, let s = UInt64(w[0], radix: 16), let e = UInt64(w[1], radix: 16) else { throw bad() }
            cur?.present.append((s, e))
        case "E":
            if let c = cur { out[c.tid, default: []].append(c) }
            cur = nil
        default: throw bad()
        }
    }
    return out
}
