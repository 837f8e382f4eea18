#if canImport(Glibc)
import Glibc
#endif

/// Turns what `rmap record` saw (tracepoint events, in time order, and the
/// seccomp snapshots of mmap / brk calls) into a trace of the trace language.
///
/// One trace process per mm: threads (and CLONE_VM children such as vfork's
/// and posix_spawn's) fold into the process whose mm they share; a clone
/// without CLONE_VM is a `fork` (dup_mmap); exec (exec_mmap) drops the old mm
/// as exit does (`P exit` once no task uses it) and starts a new process with
/// the mappings the ELF loader made, read from /proc/PID/maps at the new
/// image's first mmap or brk (see docs/recording.md). Nothing is dropped in
/// silence: what the language cannot say is counted in `skipped`.
public struct RecordTranslator {
    public struct Options: Sendable {
        /// Subtracted from every address: a whole number of GiB, so every
        /// page-table alignment is kept.
        public var shift: UInt64 = 0x1000_0000_0000
        /// `observe` before each exit: at most this many pages of each mapped range ...
        public var observePagesPerRange: UInt64 = 16384
        /// ... and this many in all per process.
        public var observePagesPerProcess: UInt64 = 65536
        public init() {}
    }

    final class MM {
        let name: String
        var members: Set<Int32> = []
        /// Mapped ranges (original addresses), sorted and disjoint: what the
        /// trace has mapped so far (VMAs' union: enough to place faults).
        var ranges: [(UInt64, UInt64)] = []
        /// The special mappings (vdso, vvar): faults there are not replayed.
        var specials: [(UInt64, UInt64, String)] = []
        var stackStart: UInt64? = nil
        var brk: UInt64? = nil
        /// kmem:rss_stat, the last value of each counter (bytes) while this mm was current.
        var mmID: UInt32? = nil
        init(name: String) { self.name = name }

        func contains(_ a: UInt64) -> Bool { ranges.contains { $0.0 <= a && a < $0.1 } }
        func intersects(_ s: UInt64, _ e: UInt64) -> Bool { ranges.contains { $0.0 < e && s < $0.1 } }
        func add(_ s: UInt64, _ e: UInt64) {
            remove(s, e)
            ranges.append((s, e))
            ranges.sort { $0.0 < $1.0 }
            var merged: [(UInt64, UInt64)] = []
            for r in ranges {
                if let last = merged.last, last.1 >= r.0 { merged[merged.count - 1].1 = max(last.1, r.1) } else { merged.append(r) }
            }
            ranges = merged
        }
        func remove(_ s: UInt64, _ e: UInt64) {
            var out: [(UInt64, UInt64)] = []
            for r in ranges {
                if r.1 <= s || e <= r.0 { out.append(r); continue }
                if r.0 < s { out.append((r.0, s)) }
                if e < r.1 { out.append((e, r.1)) }
            }
            ranges = out
        }
    }

    public struct FileDecl { public var name: String; public var pages: UInt64 }

    public let options: Options
    var body: [String] = []
    public private(set) var files: [FileDecl] = []
    var fileByKey: [String: Int] = [:]
    var usedNames: Set<String> = ["file", "proc", "swap", "observe", "expect"]
    var tidMM: [Int32: MM] = [:]
    var nextProc = 0
    var pending: [Int32: (name: String, args: [UInt64], snap: CallSnapshot?)] = [:]
    var snapshots: [Int32: [CallSnapshot]]
    var snapCursor: [Int32: Int] = [:]
    public private(set) var skipped: [String: Int] = [:]
    public private(set) var notes: [String: Int] = [:]
    public private(set) var processes = 0
    public private(set) var faults = 0
    /// Per exited process: its name and the kernel's RSS counters at exit (pages: file, anon, swap, shmem).
    public private(set) var exitRSS: [(String, [Int64])] = []
    /// Pending run of faults (process, verb, first page, count): consecutive
    /// pages of one process and one kind become one statement.
    var run: (mm: String, verb: String, start: UInt64, count: UInt64)? = nil
    /// Faults of a task between sched_prepare_exec and sched_process_exec: the
    /// ELF loader's writes into the new image (padzero, create_elf_tables),
    /// replayed after the new image's mappings.
    var deferred: [Int32: [(UInt64, Bool)]] = [:]
    /// kmem:rss_stat: the last value of each counter (bytes), by hashed mm pointer.
    var rssByID: [UInt32: [Int64]] = [:]
    var execMMID: [Int32: UInt32] = [:]
    var execOldRSS: [Int32: [Int64]] = [:]
    /// The mm_id of the mm a task had at sched_prepare_exec (until sched_process_exec).
    var execOldID: [Int32: UInt32] = [:]

    public init(snapshots: [Int32: [CallSnapshot]], options: Options = Options()) {
        self.snapshots = snapshots
        self.options = options
    }

    mutating func skip(_ reason: String, _ n: Int = 1) { skipped[reason, default: 0] += n }
    mutating func note(_ reason: String, _ n: Int = 1) { notes[reason, default: 0] += n }

    mutating func emit(_ s: String) {
        flushRun()
        body.append(s)
    }
    mutating func flushRun() {
        guard let r = run else { return }
        run = nil
        body.append("\(r.mm) \(r.verb) \(addr(r.start))" + (r.count > 1 ? " \(r.count)" : ""))
    }

    func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// Where an address goes in the trace: addresses from 0x200000000000 move
    /// down by `shift` (0x55.. PIE images and heaps, 0x7f.. libraries and
    /// stacks land in [0x100000000000, 0x700000000000)); addresses below
    /// 0x100000000000 (non-PIE images at 0x400000 and their heaps) move up by
    /// it. Both are whole numbers of GiB: every page-table alignment is kept.
    func moved(_ a: UInt64) -> UInt64 { a < options.shift ? a + options.shift : a - options.shift }
    func addr(_ a: UInt64) -> String { hex(moved(a)) }

    /// A range the trace can hold: wholly inside one of the two moved pieces.
    func inWindow(_ s: UInt64, _ e: UInt64) -> Bool {
        guard s < e else { return false }
        if e <= options.shift { return true }
        return s >= 2 * options.shift && e <= options.shift + 0x7000_0000_0000
    }

    static func pages(_ len: UInt64) -> UInt64 { (len + 4095) / 4096 }

    static func prot(_ p: UInt64) -> String {
        var s = ""
        if p & 1 != 0 { s += "r" }
        if p & 2 != 0 { s += "w" }
        if p & 4 != 0 { s += "x" }
        return s.isEmpty ? "none" : s
    }

    mutating func newMM(comment: String) -> MM {
        nextProc += 1
        processes += 1
        let m = MM(name: "p\(nextProc)")
        usedNames.insert(m.name)
        flushRun()
        body.append("# \(m.name): \(comment)")
        return m
    }

    // MARK: files

    static func sanitize(_ base: String) -> String {
        var s = String(base.unicodeScalars.map { c -> Character in
            let ok = (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || c == "_" || c == "." || c == "-"
            return ok ? Character(c) : "_"
        })
        if let f = s.unicodeScalars.first, !((f >= "a" && f <= "z") || (f >= "A" && f <= "Z") || f == "_") { s = "f_" + s }
        if s.isEmpty { s = "f_" }
        return String(s.prefix(56))
    }

    /// The trace's name of a file: its base name, made unique; sized as the
    /// file was (`size`), or, when that is unknown, as far as it was mapped.
    mutating func fileName(key: String, path: String, size: UInt64?, mappedEnd: UInt64) -> String {
        if let i = fileByKey[key] {
            if size == nil && files[i].pages < mappedEnd { files[i].pages = mappedEnd }
            return files[i].name
        }
        var base = path
        if base.hasSuffix(" (deleted)") { base = String(base.dropLast(10)) }
        if let slash = base.lastIndex(of: "/") { base = String(base[base.index(after: slash)...]) }
        let stem = RecordTranslator.sanitize(base)
        var name = stem
        var k = 2
        while usedNames.contains(name) { name = "\(stem)-\(k)"; k += 1 }
        usedNames.insert(name)
        var pages: UInt64
        if let size { pages = RecordTranslator.pages(size) } else { pages = mappedEnd; note("file sizes unknown (gone after the run): sized by the mappings") }
        pages = max(1, pages)
        files.append(FileDecl(name: name, pages: pages))
        fileByKey[key] = files.count - 1
        return name
    }

    /// stat(2) of a path: (size, st_dev, st_ino).
    static func statPath(_ path: String) -> (UInt64, UInt64, UInt64)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (UInt64(st.st_size), UInt64(st.st_dev), UInt64(st.st_ino))
    }

    /// "fe:00" of /proc/PID/maps as glibc's makedev.
    static func devNumber(_ s: String) -> UInt64 {
        let p = s.split(separator: ":")
        guard p.count == 2, let ma = UInt64(p[0], radix: 16), let mi = UInt64(p[1], radix: 16) else { return 0 }
        return ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
    }

    // MARK: events

    public mutating func translate(_ events: [RecordedEvent]) {
        for i in events.indices { handle(events, i) }
        // Processes that outlived the recording (daemons): observed and ended here.
        let live = Set(tidMM.values.map { ObjectIdentifier($0) })
        for m in tidMM.values where live.contains(ObjectIdentifier(m)) && !m.members.isEmpty {
            m.members.removeAll()
            note("processes still running when the recording ended (observed and ended there)")
            endMM(m, why: "still running at the end of the recording")
        }
        flushRun()
    }

    mutating func handle(_ events: [RecordedEvent], _ i: Int) {
        let ev = events[i]
        switch ev.kind {
        case .newTask(let pid, let flags):
            guard let parent = tidMM[ev.tid] else { skip("tasks created outside the recorded tree"); return }
            if flags & 0x100 != 0 { // CLONE_VM: a thread, or vfork / posix_spawn's child until it execs
                parent.members.insert(pid)
                tidMM[pid] = parent
                if flags & 0x10000 == 0 { note("CLONE_VM children folded into their parent's process (vfork, posix_spawn)") }
                return
            }
            let child = newMM(comment: "forked by pid \(ev.tid), pid \(pid)")
            child.members = [pid]
            child.ranges = parent.ranges
            child.specials = parent.specials
            child.stackStart = parent.stackStart
            child.brk = parent.brk
            tidMM[pid] = child
            emit("\(child.name) = fork \(parent.name)")
        case .prepareExec:
            deferred[ev.tid] = []
            // exec_mmap's mmput tears the old mm down before sched_process_exec:
            // its counters as they were are the ones to keep.
            if let m = tidMM[ev.tid], let id = m.mmID {
                execOldID[ev.tid] = id
                if let rss = rssByID[id] { execOldRSS[ev.tid] = rss }
            }
        case .exec(let filename, let pid, let oldPid):
            let oldRSS = execOldRSS.removeValue(forKey: ev.tid)
            execOldID[ev.tid] = nil
            if let old = tidMM[oldPid] { leave(old, tid: oldPid, why: "exec", rss: oldRSS) }
            tidMM[oldPid] = nil
            if let old = tidMM[pid] { leave(old, tid: pid, why: "exec", rss: oldRSS) }
            let m = newMM(comment: "exec \(filename) (pid \(pid))")
            m.members = [pid]
            m.mmID = execMMID.removeValue(forKey: ev.tid)
            tidMM[pid] = m
            emit("proc \(m.name)")
            let loaderFaults = deferred.removeValue(forKey: ev.tid) ?? []
            execMappings(m, events, i, tid: pid, loaderFaults: Set(loaderFaults.map { $0.0 & ~0xfff }))
            for (a, w) in loaderFaults { fault(m, a & ~0xfff, write: w) }
        case .exit(let pid):
            guard let m = tidMM[pid] else { return }
            tidMM[pid] = nil
            leave(m, tid: pid, why: "exit")
        case .rss(let id, let curr, let member, let bytes):
            // Every event carries the counter's exact sum (percpu_counter_sum_positive)
            // and the hashed mm pointer. A `curr` event names the mm of its task;
            // the others (dup_mmap filling a child, exec's stack pages, reclaim)
            // are kept by mm_id until the mm they belong to is known.
            rssByID[id, default: [0, 0, 0, 0]][member] = bytes
            guard curr else { return }
            // Between sched_prepare_exec and sched_process_exec the task's mm
            // is already the new image's (exec_mmap): that id is the new process's.
            // Except the old mm's own: exec accounts the argument pages of the
            // new stack to the old mm while it builds them (acct_arg_size in
            // get_arg_page, fs/exec.c) and takes them back with
            // acct_arg_size(bprm, 0) just after sched_prepare_exec, before
            // exec_mmap: the old mm's counters at its end are those after that.
            if deferred[ev.tid] != nil {
                if id == execOldID[ev.tid] { execOldRSS[ev.tid, default: [0, 0, 0, 0]][member] = bytes } else { execMMID[ev.tid] = id }
                return
            }
            // An mm keeps its id for life: the first one seen is its own.
            if let m = tidMM[ev.tid], m.mmID == nil { m.mmID = id }
        case .fault(let address, let write, _):
            guard address < 0x8000_0000_0000 else { return }
            if deferred[ev.tid] != nil { deferred[ev.tid]!.append((address, write)); return }
            guard let m = tidMM[ev.tid] else { skip("faults before the command's first exec (the recorder's child)"); return }
            fault(m, address & ~0xfff, write: write)
        case .sysEnter(let name, let args):
            var snap: CallSnapshot? = nil
            if name == "mmap" || name == "brk" { snap = takeSnapshot(tid: ev.tid, nr: name == "mmap" ? 9 : 12, args: args) }
            pending[ev.tid] = (name, args, snap)
        case .sysExit(let name, let ret):
            guard let p = pending.removeValue(forKey: ev.tid), p.name == name else { return }
            guard let m = tidMM[ev.tid] else { skip("calls before the command's first exec (the recorder's child)"); return }
            if ret < 0 && ret > -4096 { skip("failed \(name) calls (the kernel changed nothing)"); return }
            syscall(m, name, p.args, ret: UInt64(bitPattern: ret), snap: p.snap)
        }
    }

    mutating func takeSnapshot(tid: Int32, nr: Int, args: [UInt64]) -> CallSnapshot? {
        guard let q = snapshots[tid] else { return nil }
        let c = snapCursor[tid, default: 0]
        guard c < q.count else { return nil }
        let s = q[c]
        guard s.nr == nr, s.args.prefix(args.count).elementsEqual(args.prefix(s.args.count)) else {
            note("snapshots that did not match their call (ignored)")
            return nil
        }
        snapCursor[tid] = c + 1
        return s
    }

    mutating func leave(_ m: MM, tid: Int32, why: String, rss: [Int64]? = nil) {
        m.members.remove(tid)
        if m.members.isEmpty { endMM(m, why: why, rss: rss) }
    }

    /// The mm is gone (exit_mmap, or exec_mmap's mmput): observe a bounded sample, then exit.
    mutating func endMM(_ m: MM, why: String, rss knownRSS: [Int64]? = nil) {
        var targets: [String] = []
        var total: UInt64 = 0
        for r in m.ranges where inWindow(r.0, r.1) && total < options.observePagesPerProcess {
            let n = min(RecordTranslator.pages(r.1 - r.0), options.observePagesPerRange, options.observePagesPerProcess - total)
            targets.append("\(m.name) \(addr(r.0)) \(n)")
            total += n
        }
        if !targets.isEmpty { emit("observe " + targets.joined(separator: ", ")) }
        let byID = m.mmID.flatMap { rssByID.removeValue(forKey: $0) }
        if let rss = knownRSS ?? byID {
            let pages = rss.map { $0 / 4096 }
            emit("# \(m.name) kernel rss_stat before \(why): file=\(pages[0]) anon=\(pages[1]) swap=\(pages[2]) shmem=\(pages[3]) pages")
            exitRSS.append((m.name, pages))
        }
        emit("\(m.name) exit")
    }

    mutating func fault(_ m: MM, _ page: UInt64, write: Bool) {
        if !m.contains(page) {
            if m.specials.contains(where: { $0.0 <= page && page < $0.1 }) { skip("faults on special mappings (vdso, vvar)"); return }
            if let ss = m.stackStart, page < ss, ss - page <= 1 << 20, inWindow(page, ss) {
                // expand_stack: the stack VMA grows down to the page (as an adjacent mmap, which merges).
                emit("\(m.name) mmap \(addr(page)) \(RecordTranslator.pages(ss - page)) rw anon-private")
                m.add(page, ss)
                m.stackStart = page
                note("stack expansions (replayed as an adjacent mmap)")
            } else {
                skip("faults outside every recorded mapping")
                return
            }
        }
        guard inWindow(page, page + 4096) else { skip("faults outside the address window"); return }
        faults += 1
        let verb = write ? "write" : "read"
        if let r = run, r.mm == m.name, r.verb == verb, r.start + r.count * 4096 == page {
            run!.count += 1
            return
        }
        flushRun()
        run = (m.name, verb, page, 1)
    }

    /// The mappings of a new image, as /proc/PID/maps showed them at its first
    /// mmap or brk (the task held there by seccomp), and the pages present then
    /// that no fault of the image had made (the arguments and environment that
    /// exec copied onto the stack: the kernel wrote them).
    mutating func execMappings(_ m: MM, _ events: [RecordedEvent], _ i: Int, tid: Int32, loaderFaults: Set<UInt64>) {
        guard let q = snapshots[tid], snapCursor[tid, default: 0] < q.count else {
            skip("execs without a snapshot (no mmap or brk before exit): no initial mappings")
            return
        }
        let s = q[snapCursor[tid, default: 0]]
        // Faults of the image before that call, and mm calls (which the snapshot already shows).
        var faulted = loaderFaults
        var j = i + 1
        while j < events.count {
            let e = events[j]
            j += 1
            guard e.tid == tid else { continue }
            if case .fault(let a, _, _) = e.kind { faulted.insert(a & ~0xfff); continue }
            if case .sysEnter(let name, _) = e.kind {
                if name == "mmap" || name == "brk" { break }
                note("mm calls between an exec and its snapshot")
            }
            if case .exit = e.kind { break }
            if case .exec = e.kind { break }
        }
        for v in s.maps {
            let special = v.path.hasPrefix("[") && v.path != "[stack]" && v.path != "[heap]"
            if special { m.specials.append((v.start, v.end, v.path)); skip("special mappings at exec (\(v.path))"); continue }
            guard inWindow(v.start, v.end) else { skip("mappings outside the address window"); continue }
            let shared = v.perms.dropFirst(3).first == "s"
            let protBits: UInt64 = (v.perms.first == "r" ? 1 : 0) | (v.perms.dropFirst().first == "w" ? 2 : 0) | (v.perms.dropFirst(2).first == "x" ? 4 : 0)
            let n = RecordTranslator.pages(v.end - v.start)
            var kind: String
            if v.inode == 0 {
                kind = shared ? "anon-shared" : "anon-private"
            } else {
                let st = RecordTranslator.statPath(v.path)
                let dev = RecordTranslator.devNumber(v.dev)
                let same = st.map { $0.1 == dev && $0.2 == v.inode } ?? false
                let name = fileName(key: "\(dev):\(v.inode)", path: v.path, size: same ? st!.0 : nil, mappedEnd: v.offset / 4096 + n)
                kind = (shared ? "file-shared:" : "file-private:") + "\(name)@\(v.offset / 4096)"
            }
            emit("\(m.name) mmap \(addr(v.start)) \(n) \(RecordTranslator.prot(protBits)) \(kind)")
            m.add(v.start, v.end)
            if v.path == "[stack]" { m.stackStart = v.start }
            if v.inode == 0 {
                // Present anonymous pages no fault made: written by the kernel at exec.
                for (ps, pe) in s.present where ps < v.end && v.start < pe {
                    var a = max(ps, v.start)
                    while a < min(pe, v.end) {
                        if !faulted.contains(a) {
                            emit("\(m.name) write \(addr(a))")
                            note("pages the kernel wrote at exec (arguments, environment; replayed as writes)")
                        }
                        a += 4096
                    }
                }
            }
        }
    }

    // MARK: system calls

    static let advice: [UInt64: String] = [4: "dontneed", 8: "free", 20: "cold", 21: "pageout", 10: "dontfork",
                                           11: "dofork", 18: "wipeonfork", 19: "keeponfork", 12: "mergeable", 13: "unmergeable"]
    static let adviceNames: [UInt64: String] = [0: "normal", 1: "random", 2: "sequential", 3: "willneed", 9: "remove",
                                                14: "hugepage", 15: "nohugepage", 16: "dontdump", 17: "dodump",
                                                22: "populate_read", 23: "populate_write", 25: "collapse",
                                                102: "guard_install", 103: "guard_remove"]

    mutating func syscall(_ m: MM, _ name: String, _ a: [UInt64], ret: UInt64, snap: CallSnapshot?) {
        let P = m.name
        func rangeOK(_ s: UInt64, _ e: UInt64) -> Bool {
            if inWindow(s, e) { return true }
            skip("\(name) calls outside the address window")
            return false
        }
        switch name {
        case "mmap":
            let len = a[1], prot = a[2], flags = a[3], fd = Int32(truncatingIfNeeded: a[4]), off = a[5]
            let n = RecordTranslator.pages(len)
            let s = ret, e = ret + n * 4096
            guard rangeOK(s, e) else { return }
            if flags & 0x40000 != 0 { skip("MAP_HUGETLB mmaps"); return }
            if flags & 0x10 != 0 && m.intersects(s, e) {
                // MAP_FIXED replaces what was there: the trace's mmap does not (MAP_FIXED_NOREPLACE).
                emit("\(P) munmap \(addr(s)) \(n)")
                note("MAP_FIXED mmaps over mappings (replayed as munmap, mmap)")
            }
            let shared = flags & 0x3 != 0x2
            var kind: String
            if flags & 0x20 != 0 || fd < 0 {
                kind = shared ? "anon-shared" : "anon-private"
            } else if let f = snap?.file {
                kind = (shared ? "file-shared:" : "file-private:") + fileName(key: "\(f.dev):\(f.inode)", path: f.path, size: f.size, mappedEnd: off / 4096 + n) + "@\(off / 4096)"
                if f.size == 0 { skip("mmaps of empty files"); return }
            } else {
                skip("file mmaps whose file is unknown (no snapshot)")
                m.add(s, e)
                return
            }
            if flags & 0x4000 != 0 { note("MAP_NORESERVE dropped (it would make a large-page trace)") }
            if flags & 0x100 != 0 { note("MAP_GROWSDOWN mapped as a plain mapping") }
            emit("\(P) mmap \(addr(s)) \(n) \(RecordTranslator.prot(prot)) \(kind)")
            m.add(s, e)
            if flags & 0x2000 != 0 { emit("\(P) mlock \(addr(s)) \(n)") } // MAP_LOCKED
            if flags & 0x8000 != 0 { // MAP_POPULATE: populate_vma_page_range, FOLL_WRITE for private writable
                emit("\(P) \(prot & 2 != 0 && !shared ? "write" : "read") \(addr(s)) \(n)")
                note("MAP_POPULATE replayed as accesses")
            }
        case "munmap":
            let n = RecordTranslator.pages(a[1])
            guard rangeOK(a[0], a[0] + n * 4096) else { m.remove(a[0], a[0] + n * 4096); return }
            emit("\(P) munmap \(addr(a[0])) \(n)")
            m.remove(a[0], a[0] + n * 4096)
            if let ss = m.stackStart, !m.contains(ss) { m.stackStart = nil }
        case "mprotect":
            let n = RecordTranslator.pages(a[1])
            if a[2] & ~UInt64(7) != 0 { skip("mprotect with PROT_GROWSDOWN/UP or PROT_SEM"); return }
            guard rangeOK(a[0], a[0] + n * 4096) else { return }
            emit("\(P) mprotect \(addr(a[0])) \(n) \(RecordTranslator.prot(a[2]))")
        case "mremap":
            let old = a[0], oldN = RecordTranslator.pages(a[1]), newN = RecordTranslator.pages(a[2]), flags = a[3]
            if flags & 4 != 0 { skip("mremap with MREMAP_DONTUNMAP"); return }
            if oldN == 0 { skip("mremap of length 0 (a second mapping of shared memory)"); return }
            guard rangeOK(old, old + oldN * 4096), rangeOK(ret, ret + newN * 4096) else { return }
            if ret == old {
                emit("\(P) mremap \(addr(old)) \(oldN) \(newN)")
                if newN < oldN { m.remove(old + newN * 4096, old + oldN * 4096) } else { m.add(old, old + newN * 4096) }
            } else {
                emit("\(P) mremap \(addr(old)) \(oldN) \(newN) \(addr(ret))")
                m.remove(old, old + oldN * 4096)
                m.add(ret, ret + newN * 4096)
            }
        case "madvise":
            let n = RecordTranslator.pages(a[1])
            guard let adv = RecordTranslator.advice[a[2]] else {
                skip("madvise \(RecordTranslator.adviceNames[a[2]] ?? "advice \(a[2])") (not in the trace language)")
                return
            }
            guard n > 0, rangeOK(a[0], a[0] + n * 4096) else { return }
            emit("\(P) madvise \(addr(a[0])) \(n) \(adv)")
        case "brk":
            let new = ret
            guard let cur = m.brk else {
                m.brk = new
                if a[0] != 0 { note("first brk calls that were not brk(0)") }
                return
            }
            m.brk = new
            let ca = (cur + 4095) & ~4095, na = (new + 4095) & ~4095
            if na > ca {
                guard rangeOK(ca, na) else { return }
                emit("\(P) mmap \(addr(ca)) \((na - ca) / 4096) rw anon-private")
                m.add(ca, na)
                note("brk growths (replayed as an adjacent mmap, which merges as do_brk_flags does)")
            } else if na < ca {
                guard rangeOK(na, ca) else { return }
                emit("\(P) munmap \(addr(na)) \((ca - na) / 4096)")
                m.remove(na, ca)
            }
        case "mlock", "mlock2", "munlock":
            let n = RecordTranslator.pages(a[1] + (a[0] & 4095))
            let s = a[0] & ~4095
            if name == "mlock2" && a[2] != 0 { skip("mlock2 with MLOCK_ONFAULT"); return }
            guard n > 0, rangeOK(s, s + n * 4096) else { return }
            emit("\(P) \(name == "munlock" ? "munlock" : "mlock") \(addr(s)) \(n)")
        default:
            skip("\(name) calls (not in the trace language)")
        }
    }

    /// The trace: header, files, then the statements.
    public func render(header: [String]) -> (text: String, statements: Int) {
        var out = header.map { "# " + $0 }
        out.append("")
        for f in files { out.append("file \(f.name) \(f.pages)") }
        out.append(contentsOf: body)
        let statements = files.count + body.filter { !$0.hasPrefix("#") }.count
        return (out.joined(separator: "\n") + "\n", statements)
    }

    public var skippedTotal: Int { skipped.values.reduce(0, +) }

    /// `recorded N statements, M skipped: reason (count), ...`
    public func summary(statements: Int) -> String {
        let reasons = skipped.sorted { $0.value > $1.value }.map { "\($0.key) (\($0.value))" }
        return "recorded \(statements) statements, \(skippedTotal) skipped" + (reasons.isEmpty ? "" : ": " + reasons.joined(separator: ", "))
    }
}
