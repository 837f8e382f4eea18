import CShims
#if canImport(Glibc)
import Glibc
#endif

extension Arena {
    /// The record size each table must have (the C layout of this build).
    /// A page-table page is RMAP_PT_RECORD_SIZE bytes (4 KiB and a cache line
    /// of colouring); `validateHeader` also accepts the RMAP_PT_PAGE_SIZE of
    /// the arenas saved before, read with their own stride.
    static let recordSizes: [Int32: UInt32] = [
        T.frame: UInt32(MemoryLayout<rmap_page>.size), T.ptPage: RMAP_PT_RECORD_SIZE, T.ptDesc: UInt32(MemoryLayout<rmap_ptdesc>.size),
        T.mm: UInt32(MemoryLayout<rmap_mm>.size), T.vma: UInt32(MemoryLayout<rmap_vma>.size),
        T.anonVMA: UInt32(MemoryLayout<rmap_anon_vma>.size), T.avc: UInt32(MemoryLayout<rmap_avc>.size),
        T.file: UInt32(MemoryLayout<rmap_file>.size), T.swap: UInt32(MemoryLayout<rmap_swap_slot>.size),
        T.name: UInt32(MemoryLayout<rmap_name>.size),
        T.ksmItem: UInt32(MemoryLayout<rmap_ksm_item>.size), T.ksmNode: UInt32(MemoryLayout<rmap_ksm_node>.size),
    ]

    /// Opens a saved arena. Only the header is checked here (magic, layout
    /// version, sizes, every table inside the file and in order, counters in
    /// range); the objects are checked by `Machine(opening:)` before use.
    ///
    /// With `privately` (the default) the file is opened read-only and its
    /// state is read into memory of the arena's own (anonymous, private): no
    /// later change of the file (a writer, a truncation, a save over it)
    /// reaches the model, and what is validated is what the model uses. Only
    /// the byte ranges a save writes are read (`usedRanges`); holes are not
    /// read, so they cost no memory. A file that changes while it is read is
    /// rejected. Without `privately` the file itself is mapped MAP_SHARED and
    /// is the state (it needs write access; a file this process owns).
    public init(opening path: String, privately: Bool = true) throws(ArenaError) {
        guard privately else {
            var size: UInt64 = 0
            guard let p = rmap_arena_open(path, &size, 0) else {
                throw ArenaError(message: "\(path): cannot open the arena: \(Arena.reason(errno_value()))")
            }
            if let problem = Arena.validateHeader(p, size: size) {
                _ = rmap_arena_unmap(p, size)
                throw ArenaError(message: "\(path): not a valid arena: \(problem)")
            }
            self.base = p
            self.size = size
            self.populator = nil  // the file is the state: see init(config:path:)
            return
        }
        let (p, size) = try Arena.readCopy(path)
        // The copy is anonymous memory of the arena's own: the model grows
        // from the loaded state's bumps as in a new arena.
        var hdr = p.load(as: rmap_arena_header.self)
        self.base = p
        self.size = size
        self.populator = rmap_populator_create(p, size, &hdr)
    }

    /// strerror of an errno value.
    static func reason(_ e: Int32) -> String { String(cString: strerror(e)) }

    /// Reads the saved arena at `path` into new private memory (see `init(opening:)`).
    static func readCopy(_ path: String) throws(ArenaError) -> (UnsafeMutableRawPointer, UInt64) {
        func failure(_ what: String) -> ArenaError { ArenaError(message: "\(path): \(what)") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open the arena: \(reason(errno_value()))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw failure("cannot open the arena: \(reason(errno_value()))") }
        guard st.st_mode & S_IFMT != S_IFDIR else { throw failure("cannot open the arena: it is a directory") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw failure("cannot open the arena: not a regular file") }
        let size = UInt64(st.st_size)
        // The header first: it says which ranges hold the state, and a file
        // whose header is wrong is rejected before any memory is set aside.
        var hdr = rmap_arena_header()
        let hsize = MemoryLayout<rmap_arena_header>.size
        if size >= UInt64(hsize) {
            let n = withUnsafeMutableBytes(of: &hdr) { readFully(fd, $0.baseAddress!, hsize, at: 0) }
            if n < 0 { throw failure("cannot read the arena: \(reason(errno_value()))") }
            if n < hsize { throw failure("the file changed while it was read (it became shorter); nothing was loaded") }
        }
        if let problem = withUnsafeMutableBytes(of: &hdr, { validateHeader($0.baseAddress!, size: size) }) {
            throw failure("not a valid arena: \(problem)")
        }
        guard let p = rmap_arena_map(size, nil) else {
            throw failure("cannot set aside \(size) bytes for the arena: \(reason(errno_value()))")
        }
        p.storeBytes(of: hdr, as: rmap_arena_header.self)
        rmap_arena_advise_frames(p, &hdr)
        for r in usedRanges(hdr) where r.offset >= UInt64(hsize) {
            if let e = copyData(fd, into: p, r.offset, r.length) {
                _ = rmap_arena_unmap(p, size)
                throw failure(e)
            }
        }
        var after = stat()
        guard fstat(fd, &after) == 0, after.st_size == st.st_size, after.st_mtim.tv_sec == st.st_mtim.tv_sec,
              after.st_mtim.tv_nsec == st.st_mtim.tv_nsec else {
            _ = rmap_arena_unmap(p, size)
            throw failure("the file changed while it was read; nothing was loaded")
        }
        return (p, size)
    }

    /// pread until `len` bytes or end of file: the bytes read, -1 on an error (errno set).
    static func readFully(_ fd: Int32, _ to: UnsafeMutableRawPointer, _ len: Int, at offset: UInt64) -> Int {
        var done = 0
        while done < len {
            let n = pread(fd, to + done, len - done, off_t(offset + UInt64(done)))
            if n < 0 { if errno_value() == EINTR { continue }; return -1 }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// SEEK_DATA and SEEK_HOLE of Linux's <unistd.h> (_GNU_SOURCE, which Swift's Glibc does not define).
    static let seekData: Int32 = 3, seekHole: Int32 = 4

    /// Copies the file's bytes in [offset, offset + length) to the same
    /// offsets at `p`, skipping holes (SEEK_DATA / SEEK_HOLE; all of it where
    /// the file system cannot tell). An error message or nil.
    static func copyData(_ fd: Int32, into p: UnsafeMutableRawPointer, _ offset: UInt64, _ length: UInt64) -> String? {
        let end = offset + length
        var pos = offset
        while pos < end {
            var from = pos, to = end
            let d = lseek(fd, off_t(pos), Arena.seekData)
            if d < 0 {
                if errno_value() == ENXIO {
                    // No data from `pos` to the end of the file: a hole (zeros,
                    // as a copy by cp leaves a saved state), unless the file
                    // no longer reaches `end`.
                    var st = stat()
                    if fstat(fd, &st) == 0 && UInt64(st.st_size) >= end { return nil }
                    return "the file changed while it was read (it became shorter); nothing was loaded"
                }
                // No hole information: read the rest.
            } else {
                from = UInt64(d)
                if from >= end { return nil }
                let h = lseek(fd, d, Arena.seekHole)
                if h > d { to = min(end, UInt64(h)) }
            }
            let n = readFully(fd, p + Int(from), Int(to - from), at: from)
            if n < 0 { return "cannot read the arena: \(reason(errno_value()))" }
            if n < Int(to - from) { return "the file changed while it was read (it became shorter); nothing was loaded" }
            pos = to
        }
        return nil
    }

    /// The byte ranges of an arena that hold its state: the header, and each
    /// table up to its high-water mark (the rest of a table was never used
    /// and is zero). A save writes these; a load reads these.
    static func usedRanges(_ header: rmap_arena_header) -> [(offset: UInt64, length: UInt64)] {
        var h = header
        return withUnsafeMutablePointer(to: &h) { hp in
            var out: [(offset: UInt64, length: UInt64)] = [(0, UInt64(MemoryLayout<rmap_arena_header>.size))]
            for t in Int32(0)..<Int32(RMAP_T_COUNT) {
                let d = Kernel.desc(hp, t).pointee
                // The descriptors of page-table pages are indexed like the pages.
                // The swap map is never allocated from: slots 1...swap_slots are in use.
                var used: UInt64
                switch t {
                case T.ptDesc: used = UInt64(Kernel.desc(hp, T.ptPage).pointee.bump)
                case T.swap: used = hp.pointee.swap_slots &+ 1
                default: used = UInt64(d.bump)
                }
                used = min(used, UInt64(d.capacity))
                if used > 0 { out.append((d.offset, used * UInt64(d.record_size))) }
            }
            return out
        }
    }

    /// The first problem with the header of the `size` bytes at `p`, or nil.
    static func validateHeader(_ p: UnsafeMutableRawPointer, size: UInt64) -> String? {
        let hsize = UInt64(MemoryLayout<rmap_arena_header>.size)
        guard size >= hsize else { return "file of \(size) bytes is shorter than the header (\(hsize))" }
        let h = p.load(as: rmap_arena_header.self)
        guard h.magic == RMAP_ARENA_MAGIC else { return "bad magic 0x\(String(h.magic, radix: 16))" }
        guard h.layout_version == RMAP_LAYOUT_VERSION else {
            return "layout version \(h.layout_version), this build reads version \(RMAP_LAYOUT_VERSION)"
        }
        guard UInt64(h.header_size) == hsize else { return "header size \(h.header_size), expected \(hsize)" }
        guard h.total_size == size else { return "header says \(h.total_size) bytes, the file has \(size)" }
        guard h.reuse_policy & ~0x3ff == 0, h.reuse_policy & 0xff <= 2, h.reuse_policy >> 8 <= 2 else {
            return "unknown reuse policy or KSM walk mode 0x\(String(h.reuse_policy, radix: 16))"
        }
        var end = hsize
        for t in Int32(0)..<Int32(RMAP_T_COUNT) {
            let d = Kernel.desc(p.assumingMemoryBound(to: rmap_arena_header.self), t).pointee
            let name = "table \(t)"
            guard d.record_size == recordSizes[t] || (t == T.ptPage && d.record_size == RMAP_PT_PAGE_SIZE) else {
                return "\(name): record size \(d.record_size), expected \(recordSizes[t]!)"
            }
            guard d.offset % 4096 == 0, d.offset >= end else { return "\(name): offset \(d.offset) misaligned or overlapping" }
            guard d.capacity >= 2, d.capacity <= 1 << 30 else { return "\(name): capacity \(d.capacity) out of range" }
            let bytes = UInt64(d.capacity) * UInt64(d.record_size)
            guard d.offset <= size, bytes <= size - d.offset else { return "\(name): runs past the end of the file" }
            end = d.offset + bytes
            guard d.bump >= 1, d.bump <= d.capacity else { return "\(name): bump \(d.bump) outside [1, \(d.capacity)]" }
            guard d.free_head < d.bump else { return "\(name): free list head \(d.free_head) beyond the used records" }
            guard d.live <= d.bump - 1, d.high_water >= d.live, d.high_water <= d.capacity - 1 else {
                return "\(name): live \(d.live) / high water \(d.high_water) inconsistent"
            }
        }
        let frames = Kernel.desc(p.assumingMemoryBound(to: rmap_arena_header.self), T.frame).pointee
        guard h.zero_pfn >= 1, h.zero_pfn < frames.bump else { return "zero page \(h.zero_pfn) is not a used frame" }
        let swap = Kernel.desc(p.assumingMemoryBound(to: rmap_arena_header.self), T.swap).pointee
        guard h.swap_slots < UInt64(swap.capacity) else { return "swap size \(h.swap_slots) beyond the swap map" }
        return nil
    }

    /// Writes the arena to `path` (a sparse copy: `usedRanges`, the rest
    /// left as holes) as a database would: into a new file beside it, which
    /// is synced and then renamed over `path`, and the directory synced. The
    /// previous file stays whole until the rename: a save that fails leaves
    /// it as it was (and no temporary file). A state saved over the file it
    /// was loaded from is safe, since loading copied it. A symbolic link is
    /// followed (its target is replaced); the replaced file's permission bits
    /// (and, for root, owner) are kept. Returns nil, or an error message (the
    /// path and the reason) with the errno of the step that failed.
    func save(to path: String) -> (message: String, errno: Int32)? {
        var target = path
        var lst = stat()
        if lstat(path, &lst) == 0, lst.st_mode & S_IFMT == S_IFLNK, let r = realpath(path, nil) {
            target = String(cString: r)
            free(r)
        }
        let dir: String
        if let slash = target.lastIndex(of: "/") {
            dir = slash == target.startIndex ? "/" : String(target[..<slash])
        } else {
            dir = "."
        }
        var old = stat()
        let replacing = stat(target, &old) == 0
        if replacing && old.st_mode & S_IFMT == S_IFDIR { return ("\(path): cannot save: it is a directory", EISDIR) }
        let unchanged = replacing ? "\(path) is unchanged" : "nothing was written"
        var fd: Int32 = -1
        var tmp = ""
        for _ in 0..<16 {
            tmp = "\(dir)/.rmap-save-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 || errno_value() != EEXIST { break }
        }
        guard fd >= 0 else {
            let e = errno_value()
            return ("\(path): cannot save: cannot create a file in \(dir): \(Arena.reason(e)); \(unchanged)", e)
        }
        func failed(_ what: String, _ e: Int32) -> (message: String, errno: Int32) {
            if fd >= 0 { close(fd) }
            unlink(tmp)
            return ("\(path): cannot save: \(what): \(Arena.reason(e)); \(unchanged)", e)
        }
        let ranges = Arena.usedRanges(kernel.header.pointee)
        var end = size
        for t in Int32(0)..<Int32(RMAP_T_COUNT) {
            let d = kernel.desc(t).pointee
            end = max(end, d.offset + UInt64(d.capacity) * UInt64(d.record_size))
        }
        if ftruncate(fd, off_t(end)) != 0 { return failed("cannot size the new file to \(end) bytes", errno_value()) }
        for r in ranges {
            var done: UInt64 = 0
            while done < r.length {
                let n = pwrite(fd, base + Int(r.offset + done), Int(r.length - done), off_t(r.offset + done))
                if n < 0 {
                    if errno_value() == EINTR { continue }
                    return failed("write failed", errno_value())
                }
                done += UInt64(n)
            }
        }
        if replacing {
            if geteuid() == 0 { _ = fchown(fd, old.st_uid, old.st_gid) }
            if fchmod(fd, old.st_mode & 0o7777) != 0 { return failed("cannot set the permission bits", errno_value()) }
        }
        if fsync(fd) != 0 { return failed("sync failed", errno_value()) }
        let c = close(fd)
        fd = -1
        if c != 0 { return failed("close failed", errno_value()) }
        if rename(tmp, target) != 0 { return failed("cannot rename the new file over it", errno_value()) }
        // The rename is durable once the directory is synced.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            let r = fsync(dfd)
            let e = errno_value()
            close(dfd)
            if r != 0 && e != EINVAL {
                return ("\(path): saved, but syncing the directory \(dir) failed: \(Arena.reason(e)); the save may not survive a crash", e)
            }
        }
        return nil
    }
}
