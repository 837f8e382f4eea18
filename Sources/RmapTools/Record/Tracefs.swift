import CShims
#if canImport(Glibc)
import Glibc
#endif

/// A private tracefs instance (`/sys/kernel/tracing/instances/rmap-record-PID`)
/// with the recorder's events enabled. `close()` disables them and removes the
/// instance (and unmounts tracefs if this session mounted it): the machine's
/// tracing state is as before, however the recorder ends, short of SIGKILL.
public final class TracefsSession {
    public static let root = "/sys/kernel/tracing"
    /// The events the recorder reads (Record/README in docs/recording.md).
    public static let events: [String] = [
        "sched/sched_prepare_exec", "sched/sched_process_exec", "sched/sched_process_exit", "task/task_newtask",
        "exceptions/page_fault_user", "exceptions/page_fault_kernel", "kmem/rss_stat",
    ] + ["mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "mlock", "mlock2",
         "munlock", "mlockall", "munlockall", "shmat", "shmdt", "process_madvise", "mseal",
         "pkey_mprotect"].flatMap { ["syscalls/sys_enter_\($0)", "syscalls/sys_exit_\($0)"] }

    public let dir: String
    private var mountedHere = false
    private var closed = false

    public struct Failure: Error, CustomStringConvertible { public var description: String }

    public init(bufferKB: Int) throws {
        if access(TracefsSession.root + "/instances", F_OK) != 0 {
            if mount("nodev", TracefsSession.root, "tracefs", 0, nil) != 0 {
                throw Failure(description: "tracefs is not mounted at \(TracefsSession.root) and mounting it failed: \(String(cString: strerror(errno)))")
            }
            mountedHere = true
        }
        dir = TracefsSession.root + "/instances/rmap-record-\(getpid())"
        if mkdir(dir, 0o755) != 0 {
            let e = String(cString: strerror(errno))
            if mountedHere { umount(TracefsSession.root) }
            throw Failure(description: "cannot create the tracefs instance \(dir): \(e)")
        }
        do {
            try write("tracing_on", "0")
            try write("buffer_size_kb", "\(bufferKB)")
            try write("options/event-fork", "1")
            for e in TracefsSession.events where access("\(dir)/events/\(e)/enable", F_OK) == 0 {
                try write("events/\(e)/enable", "1")
            }
        } catch {
            close()
            throw error
        }
    }

    public func write(_ file: String, _ text: String) throws {
        let path = "\(dir)/\(file)"
        let fd = open(path, O_WRONLY | O_TRUNC)
        guard fd >= 0 else { throw Failure(description: "\(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        let bytes = Array((text + "\n").utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw Failure(description: "\(path): writing '\(text)': \(String(cString: strerror(errno)))")
        }
    }

    public func path(_ file: String) -> String { "\(dir)/\(file)" }

    /// Events the ring buffer lost (per-CPU `overrun` plus `dropped events`).
    public func lostEvents() -> Int {
        var lost = 0
        var cpu = 0
        while let text = readWholeFile(path("per_cpu/cpu\(cpu)/stats")) {
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":")
                if parts.count == 2, parts[0] == "overrun" || parts[0] == "dropped events",
                   let n = Int(parts[1].trimmingSpaces()) { lost += n }
            }
            cpu += 1
        }
        return lost
    }

    /// Disables the events, clears the pid filter and removes the instance.
    public func close() {
        if closed { return }
        closed = true
        try? write("tracing_on", "0")
        for e in TracefsSession.events where access("\(dir)/events/\(e)/enable", F_OK) == 0 {
            try? write("events/\(e)/enable", "0")
        }
        try? write("set_event_pid", "")
        try? write("options/event-fork", "0")
        // rmdir fails while a file of the instance is open (EBUSY): retry briefly.
        for _ in 0..<50 {
            if rmdir(dir) == 0 || errno == ENOENT { break }
            usleep(100_000)
        }
        if mountedHere { umount(TracefsSession.root) }
    }

    deinit { close() }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" { s = s.dropLast() }
        return s
    }
}

/// The whole file as text, or nil when it cannot be opened. Reads in chunks
/// (tracefs files report size 0).
public func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        bytes.append(contentsOf: buf[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
}
