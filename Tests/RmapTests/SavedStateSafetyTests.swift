import Testing
import Foundation
@testable import Rmap
@testable import RmapTools
import RmapTestSupport
import CShims
#if canImport(Glibc)
import Glibc
#endif

/// Saved states: never lose one, never trust one (issue 17, items 1-3).
/// A save replaces its file whole or not at all and says why it failed; a
/// loaded state is the model's own copy, which no later change of the file
/// reaches, and loading needs only read access.
@Suite struct SavedStateSafetyTests {

    static func remove(_ d: String) { try? FileManager.default.removeItem(atPath: d) }

    static func write(_ text: String, _ path: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    static func bytes(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    static func entries(_ d: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: d)) ?? []).sorted()
    }

    /// Bytes the file occupies on disk (it is sparse).
    static func allocated(_ path: String) -> Int {
        var st = stat()
        guard stat(path, &st) == 0 else { return 0 }
        return Int(st.st_blocks) * 512
    }

    static let first = """
        proc A
        A mmap 0x100000000000 4 rw anon-private
        A write 0x100000000000 4
        """
    static let second = """
        B = fork A
        B write 0x100000001000
        A munmap 0x100000003000 1
        """

    // MARK: item 1

    /// `replay --load F --save F`: the save used to truncate the file the
    /// loaded state was still mapped from (SIGBUS, F left empty).
    @Test func replaySavesOverTheFileItLoaded() throws {
        let d = freshTempDir("same-file")
        defer { Self.remove(d) }
        let f = d + "/state.arena", t1 = d + "/1.trace", t2 = d + "/2.trace"
        try Self.write(Self.first, t1)
        try Self.write(Self.second, t2)
        let a = replayFile(path: t1, config: .tiny, save: f)
        #expect(a.status == 0, "\(a.stderr)")
        let b = replayFile(path: t2, load: f, save: f)
        #expect(b.status == 0, "\(b.stderr)")
        let m = try Machine(opening: f)
        let (whole, _) = try machine(Self.first + "\n" + Self.second, config: .tiny)
        #expect(m.processes.keys.sorted() == ["A", "B"])
        for p in ["A", "B"] {
            #expect(m.tokens(p, 0x1000_0000_0000, 4) == whole.tokens(p, 0x1000_0000_0000, 4))
        }
        #expect(Self.entries(d) == ["1.trace", "2.trace", "state.arena"], "a temporary file was left behind")
    }

    /// The same from the library: a machine opened from F, changed and saved
    /// to F; and a machine whose arena lives in F (`Machine(path:)`) saved to F.
    @Test func machineSavesOverItsOwnFile() throws {
        let d = freshTempDir("own-file")
        defer { Self.remove(d) }
        let f = d + "/state.arena"
        let (m0, _) = try machine(Self.first, config: .tiny)
        #expect(m0.save(to: f) == nil)
        let m = try Machine(opening: f)
        #expect(m.fork("A", child: "B") == .ok)
        #expect(m.save(to: f) == nil)
        #expect(m.checkViolations().isEmpty)
        #expect(try Machine(opening: f).processes.keys.sorted() == ["A", "B"])

        let g = d + "/mapped.arena"
        let shared = try Machine(config: .tiny, path: g)
        #expect(shared.createProcess("P") == .ok)
        #expect(shared.perform("P", .mmap(addr: 0x1000_0000_0000, pages: 2, prot: [.read, .write], kind: .anonPrivate)) == .ok)
        #expect(shared.perform("P", .write(addr: 0x1000_0000_0000, pages: 2)) == .ok)
        #expect(shared.save(to: g) == nil)
        #expect(shared.checkViolations().isEmpty)
        #expect(try Machine(opening: g).tokens("P", 0x1000_0000_0000, 2) == "A1:1 A2:1")
    }

    // MARK: item 2

    /// Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN).
    static let canMount: Bool = {
        guard geteuid() == 0 else { return false }
        let d = freshTempDir("mount-probe")
        defer { rmdir(d) }
        guard mount("none", d, "tmpfs", 0, "size=64k") == 0 else { return false }
        umount2(d, Int32(MNT_DETACH))
        return true
    }()

    /// A state big enough that its save does not fit where a small one did.
    static let big: String = {
        var s = ""
        for (i, p) in ["A", "B", "C", "D"].enumerated() {
            let a = "0x\(String(0x1000_0000_0000 + UInt64(i) << 30, radix: 16))"
            s += "proc \(p)\n\(p) mmap \(a) 8 rw anon-private\n\(p) write \(a) 8\n"
        }
        return s
    }()

    /// A save that runs out of space (ENOSPC on a small tmpfs) used to have
    /// truncated the previous file already, and said only "write failed".
    @Test(.enabled(if: canMount, "needs root to mount a small tmpfs"))
    func saveThatRunsOutOfSpaceKeepsThePreviousFile() throws {
        let scratch = freshTempDir("enospc-sizes"), mnt = freshTempDir("enospc-mnt")
        defer { Self.remove(scratch); rmdir(mnt) }
        let (small, _) = try machine("proc A\n", config: .tiny)
        let (large, _) = try machine(Self.big, config: .tiny)
        // Size the tmpfs from the two files' sizes on disk: the small state
        // fits, the large one does not fit even alone (so truncating the old
        // file first cannot make room for it), the two together do not fit.
        #expect(small.save(to: scratch + "/small") == nil)
        #expect(large.save(to: scratch + "/large") == nil)
        let smallBytes = Self.allocated(scratch + "/small"), largeBytes = Self.allocated(scratch + "/large")
        try #require(largeBytes >= smallBytes + 8192, "small \(smallBytes), large \(largeBytes)")
        let size = (largeBytes - 4096) / 4096 * 4096
        try #require(mount("none", mnt, "tmpfs", 0, "size=\(size)") == 0, "mount: \(String(cString: strerror(errno)))")
        defer { umount2(mnt, Int32(MNT_DETACH)) }
        let f = mnt + "/state.arena"
        #expect(small.save(to: f) == nil)
        let before = try #require(Self.bytes(f))
        let e = large.save(to: f)
        #expect(e != nil, "the save should have run out of space in \(size) bytes")
        #expect(e?.contains("No space left on device") == true, "\(e ?? "")")
        #expect(e?.contains(f) == true, "\(e ?? "")")
        #expect(Self.bytes(f) == before, "the previous state was damaged")
        #expect(try Machine(opening: f).processes.keys.sorted() == ["A"])
        #expect(Self.entries(mnt) == ["state.arena"], "a temporary file was left behind")
    }

    /// The same through the command line under a file-size limit (EFBIG,
    /// SIGXFSZ ignored): no root needed.
    @Test(.enabled(if: rmapPath != nil, "needs the rmap binary (swift build builds it)"))
    func cliSaveOverAFileSizeLimitKeepsThePreviousFile() throws {
        let d = freshTempDir("efbig")
        defer { Self.remove(d) }
        let f = d + "/state.arena", t1 = d + "/1.trace", t2 = d + "/2.trace"
        try Self.write(Self.first, t1)
        try Self.write(Self.big, t2)
        #expect(replayFile(path: t1, config: .tiny, save: f).status == 0)
        let before = try #require(Self.bytes(f))
        // dash counts ulimit -f in 512-byte blocks: 32 KiB, far below the tiny arena's size.
        let r = try run("/bin/sh", ["-c", "trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"",
                                    rmapPath!, "replay", "--tiny-arena", "--save", f, t2], timeout: 60)
        #expect(r.status == 2, "\(r.err)")
        #expect(r.err.contains("File too large") && r.err.contains(f), "\(r.err)")
        #expect(Self.bytes(f) == before, "the previous state was damaged")
        #expect(Self.entries(d) == ["1.trace", "2.trace", "state.arena"], "a temporary file was left behind")
    }

    /// A save keeps the permission bits of the file it replaces.
    @Test func saveKeepsTheModeOfTheFileItReplaces() throws {
        let d = freshTempDir("mode")
        defer { Self.remove(d) }
        let f = d + "/state.arena"
        let (m, _) = try machine(Self.first, config: .tiny)
        #expect(m.save(to: f) == nil)
        chmod(f, 0o640)
        #expect(m.save(to: f) == nil)
        var st = stat()
        #expect(stat(f, &st) == 0 && st.st_mode & 0o7777 == 0o640)
    }

    // MARK: item 3

    /// A writer changing the file after the load (same inode, same size)
    /// used to change the model's state under it (MAP_PRIVATE shows the
    /// page cache until a page is written).
    @Test func loadedStateDoesNotSeeLaterWrites() throws {
        let d = freshTempDir("writer")
        defer { Self.remove(d) }
        let f = d + "/state.arena"
        let (m0, _) = try machine(Self.first, config: .tiny)
        #expect(m0.save(to: f) == nil)
        let m = try Machine(opening: f)
        let tokens = m.tokens("A", 0x1000_0000_0000, 4)
        let size = try #require(Self.bytes(f)).count
        let fd = open(f, O_WRONLY)
        try #require(fd >= 0)
        let junk = [UInt8](repeating: 0xa5, count: size)
        #expect(pwrite(fd, junk, size, 0) == size)
        close(fd)
        #expect(m.tokens("A", 0x1000_0000_0000, 4) == tokens)
        #expect(m.checkViolations().isEmpty)
        #expect(m.fork("A", child: "B") == .ok)
        #expect(m.perform("B", .write(addr: 0x1000_0000_0000, pages: 4)) == .ok)
        #expect(m.checkViolations().isEmpty)
    }

    /// A truncation of the file after the load used to kill the model with
    /// SIGBUS at its next access.
    @Test func loadedStateSurvivesTruncation() throws {
        let d = freshTempDir("truncate")
        defer { Self.remove(d) }
        let f = d + "/state.arena"
        let (m0, _) = try machine(Self.first, config: .tiny)
        #expect(m0.save(to: f) == nil)
        let m = try Machine(opening: f)
        #expect(truncate(f, 0) == 0)
        #expect(m.checkViolations().isEmpty)
        #expect(m.perform("A", .write(addr: 0x1000_0000_0000, pages: 4)) == .ok)
        #expect(m.perform("A", .exit) == .ok)
        #expect(m.checkViolations().isEmpty)
    }

    /// A read-only file loads: a 0444 file, and (as root, whom permission
    /// bits do not stop) a file on a read-only bind mount. Loading used to
    /// open the file for writing (EACCES, EROFS).
    @Test func loadingNeedsOnlyReadAccess() throws {
        let d = freshTempDir("readonly"), out = freshTempDir("readonly-out")
        defer { Self.remove(d); Self.remove(out) }
        let f = d + "/state.arena", t2 = out + "/2.trace"
        let (m0, _) = try machine(Self.first, config: .tiny)
        #expect(m0.save(to: f) == nil)
        #expect(chmod(f, 0o444) == 0)
        try Self.write(Self.second, t2)
        var path = f
        var ro: String? = nil
        if geteuid() == 0 {
            let r = freshTempDir("readonly-mnt")
            try #require(mount(d, r, nil, UInt(MS_BIND), nil) == 0, "bind mount: \(String(cString: strerror(errno)))")
            ro = r
            try #require(mount("none", r, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY), nil) == 0,
                         "read-only remount: \(String(cString: strerror(errno)))")
            path = r + "/state.arena"
            #expect(open(path, O_RDWR) == -1 && errno == EROFS, "the mount is not read-only")
        }
        defer { if let ro { umount2(ro, Int32(MNT_DETACH)); rmdir(ro) } }
        let m = try Machine(opening: path)
        #expect(m.processes.keys.sorted() == ["A"])
        let r = replayFile(path: t2, load: path, save: out + "/next.arena")
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Machine(opening: out + "/next.arena").processes.keys.sorted() == ["A", "B"])
    }
}
