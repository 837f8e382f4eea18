import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport
import CShims

/// Saved states: a run interrupted by `--save` and resumed by `--load` gives
/// the same results and observations as an uninterrupted run, and corrupted
/// arena files are rejected (never a crash or an out-of-bounds access).
@Suite struct SavedStateTests {
    func tempPath(_ name: String) -> String {
        NSTemporaryDirectory() + "rmap-\(getpid())-\(name)"
    }

    @Test(arguments: modelledCorpusTraces())
    func resumedRunMatchesUninterruptedRun(_ url: URL) throws {
        let text = try String(contentsOf: url, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let k = lines.count / 2
        let a = tempPath("a-\(url.lastPathComponent)"), b = tempPath("b-\(url.lastPathComponent)")
        let arena = tempPath("arena-\(url.lastPathComponent)")
        defer { for p in [a, b, arena] { unlink(p) } }
        try lines.prefix(k).joined(separator: "\n").write(toFile: a, atomically: true, encoding: .utf8)
        // The second half keeps its line numbers (blank lines stand for the first).
        try (Array(repeating: "", count: k) + lines.dropFirst(k)).joined(separator: "\n")
            .write(toFile: b, atomically: true, encoding: .utf8)
        let full = replayFile(path: url.path)
        let first = replayFile(path: a, save: arena)
        let second = replayFile(path: b, load: arena)
        #expect(first.status != 2 && second.status != 2, "\(first.stderr) \(second.stderr)")
        // A JSON shape change must fail here, not turn every part into "".
        func parts(_ s: ReplayStatus) throws -> (String, String) {
            let j = try #require(s.stdout, "no output: \(s.stderr)")
            let r = try #require(j.range(of: "\"results\":["), "\(j)")
            let o = try #require(j.range(of: "],\"observations\":["), "\(j)")
            return (String(j[r.upperBound..<o.lowerBound]), String(j[o.upperBound..<j.index(j.endIndex, offsetBy: -2)]))
        }
        let (fr, fo) = try parts(full), (ar, ao) = try parts(first), (br, bo) = try parts(second)
        #expect([ar, br].filter { !$0.isEmpty }.joined(separator: ",") == fr)
        #expect([ao, bo].filter { !$0.isEmpty }.joined(separator: ",") == fo)
    }

    /// The hugetlb seed of FuzzArena and `make arena-mutations`
    /// (Fuzz/corpus/arena/seed3-hugetlb.arena: a pool of two huge pages, a
    /// private one forked and a shared one made read-only, beside small
    /// pages) reopens sound and runs on: the child's write copies the
    /// fork-shared private page, and with the pool spent the owner's write
    /// unmaps the child's (unmap_ref_private).
    @Test func hugetlbSeedArenaReopensSoundAndRunsOn() throws {
        let path = packageRoot.appendingPathComponent("Fuzz/corpus/arena/seed3-hugetlb.arena").path
        let m = try Machine(opening: path)
        #expect(m.checkViolations() == [])
        #expect(m.hugetlbPool == (2, 0, 0, 0))
        let out = m.replay(try TraceParser.parse("P0 write 0x100000400000\nP1 write 0x100000000000\nP0 write 0x100000000000",
                                                 file: "s.trace", continuing: m.traceContext))
        #expect(out.error == nil && out.results.map(\.1) == ["SIGSEGV", "SIGBUS", "ok"], "\(out)")
        #expect(m.checkViolations() == [])
    }

    /// Inputs the FuzzArena target once crashed on (kept in its corpus as
    /// `regress-*`): each must be rejected with a message, or reopen sound.
    @Test func fuzzRegressionArenasAreRejectedOrSound() throws {
        let dir = packageRoot.appendingPathComponent("Fuzz/corpus/arena")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("regress-") }
        #expect(!files.isEmpty)
        for f in files {
            do {
                let m = try Machine(opening: dir.appendingPathComponent(f).path)
                #expect(m.checkViolations().allSatisfy { $0.kind == .anonVMAReusedInUse }, "\(f) reopened inconsistent")
            } catch {
                // Past the header (this layout's version): the deep validation rejects it.
                #expect("\(error)".contains(": rejected: "), "\(f): \(error)")
            }
        }
    }

    /// A state saved by another layout (version 3 kept the same bytes with
    /// unnamed header words) is rejected with a message naming both versions.
    @Test func otherLayoutVersionIsRejectedNamingTheVersion() throws {
        let path = tempPath("layout.arena")
        defer { unlink(path) }
        let (m, _) = try machine("proc a\na mmap 0x100000000000 2 rw anon-private\na write 0x100000000000 2\n",
                                 config: .tiny)
        #expect(m.save(to: path) == nil)
        _ = try Machine(opening: path)  // as saved: accepted
        let fd = open(path, O_RDWR)
        #expect(fd >= 0)
        var v: UInt32 = 3
        #expect(pwrite(fd, &v, 4, off_t(MemoryLayout<rmap_arena_header>.offset(of: \rmap_arena_header.layout_version)!)) == 4)
        close(fd)
        #expect(throws: ArenaError.self) { try Machine(opening: path) }
        do {
            _ = try Machine(opening: path)
        } catch {
            #expect(error.message.contains("layout version 3, this build reads version \(RMAP_LAYOUT_VERSION)"), "\(error.message)")
        }
        #expect(RMAP_LAYOUT_VERSION == 6)
    }

    /// A saved state whose zero blocks are holes (as `cp` copies it: the
    /// tail of a table's used range is then a hole up to the end of the
    /// file, where SEEK_DATA says ENXIO) loads like the original.
    @Test func aSparseCopyLoads() throws {
        let path = tempPath("sparse-src.arena"), copy = tempPath("sparse-copy.arena")
        defer { unlink(path); unlink(copy) }
        let (m, _) = try machine("proc a\na mmap 0x100000000000 2 rw anon-private\na write 0x100000000000 2\n",
                                 config: .tiny)
        #expect(m.save(to: path) == nil)
        let r = try run("/bin/cp", ["--sparse=always", path, copy])
        #expect(r.status == 0, "\(r.err)")
        var st = stat()
        #expect(stat(copy, &st) == 0 && Int(st.st_blocks) * 512 < Int(st.st_size), "the copy is not sparse")
        let loaded = try Machine(opening: copy)
        #expect(loaded.tokens("a", 0x1000_0000_0000, 2) == m.tokens("a", 0x1000_0000_0000, 2))
        #expect(loaded.check() == [])
    }

    /// The header's serial counters at 2^64 - 1 in a saved state wrap
    /// instead of trapping on the next object (issue 17, item 4: arithmetic
    /// over values read from a file never traps).
    @Test(arguments: ["name_order", "anon_vma_serial", "ksm_seqnr", "next_frame_serial"])
    func serialCountersAtTheirMaximumWrap(_ name: String) throws {
        let field: WritableKeyPath<rmap_arena_header, UInt64> = switch name {
        case "name_order": \.name_order
        case "anon_vma_serial": \.anon_vma_serial
        case "ksm_seqnr": \.ksm_seqnr
        default: \.next_frame_serial
        }
        let path = tempPath("serial-\(name).arena")
        defer { unlink(path) }
        let (m, _) = try machine("proc a\na mmap 0x100000000000 2 rw anon-private\na write 0x100000000000 2\n",
                                 config: .tiny)
        #expect(m.save(to: path) == nil)
        let fd = open(path, O_RDWR)
        try #require(fd >= 0)
        var v = UInt64.max
        #expect(pwrite(fd, &v, 8, off_t(MemoryLayout<rmap_arena_header>.offset(of: field)!)) == 8)
        close(fd)
        let loaded = try Machine(opening: path)
        let trace = try TraceParser.parse("""
            proc b
            b mmap 0x100000000000 2 rw anon-private
            b write 0x100000000000 2 value=5
            a write 0x100000000000 2 value=5
            c = fork b
            a madvise 0x100000000000 2 mergeable
            b madvise 0x100000000000 2 mergeable
            ksm scan 3
            """, file: "t.trace", continuing: loaded.traceContext)
        let out = loaded.replay(trace)
        #expect(out.results.allSatisfy { $0.result == "ok" }, "\(out.results)")
        #expect(loaded.check() == [])
    }

    @Test func corruptedArenaFilesAreRejectedOrSound() throws {
        var cfg = ArenaConfig()
        cfg.frames = 256; cfg.ptPages = 64; cfg.mms = 16; cfg.vmas = 64; cfg.anonVMAs = 64; cfg.avcs = 128
        cfg.files = 8; cfg.swapSlots = 16; cfg.names = 32
        let (m, _) = try machine("""
            file f 16
            proc A
            A mmap 0x100000000000 8 rw anon-private
            A mmap 0x100000010000 8 r file-shared:f@0
            A mmap 0x100000020000 4 rw anon-shared
            A write 0x100000000000 6
            A read 0x100000010000
            A write 0x100000020000 2
            B = fork A
            B write 0x100000001000
            A mprotect 0x100000002000 2 r
            """, config: cfg)
        let clean = tempPath("clean.arena")
        defer { unlink(clean) }
        #expect(m.save(to: clean) == nil)
        let good = try Machine(opening: clean)
        #expect(good.processes.keys.sorted() == ["A", "B"])
        #expect(good.tokens("B", 0x1000_0000_0000, 2) == m.tokens("B", 0x1000_0000_0000, 2))
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: clean)))
        // The bytes that matter: the header and the used records of every table.
        var hot: [Range<Int>] = [0..<MemoryLayout<rmap_arena_header>.size]
        for t in Int32(0)..<Int32(RMAP_T_COUNT) {
            let d = m.k.desc(t).pointee
            let used = t == T.ptDesc ? m.k.desc(T.ptPage).pointee.bump : d.bump
            hot.append(Int(d.offset)..<Int(d.offset) + Int(used) * Int(d.record_size))
        }
        var rng = SplitMix64(seed: 42)
        var rejected = 0, accepted = 0
        let path = tempPath("corrupt.arena")
        defer { unlink(path) }
        for _ in 0..<400 {
            var b = bytes
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let r = hot[Int(rng.next() % UInt64(hot.count))]
                guard !r.isEmpty else { continue }
                let i = r.lowerBound + Int(rng.next() % UInt64(r.count))
                b[i] = rng.next() % 3 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : b[i] ^ (1 << UInt8(rng.next() % 8))
            }
            if rng.next() % 10 == 0 { b = Array(b.prefix(Int(rng.next() % UInt64(b.count)))) }
            try Data(b).write(to: URL(fileURLWithPath: path))
            do {
                let x = try Machine(opening: path)
                accepted += 1
                // Accepted: it must be usable.
                for p in x.processes.keys.sorted() {
                    _ = x.perform(p, .write(addr: 0x1000_0000_0000, pages: 8))
                    _ = x.perform(p, .munmap(addr: 0x1000_0000_0000, pages: 2))
                }
                #expect(x.checkViolations().allSatisfy { $0.kind == .anonVMAReusedInUse })
            } catch {
                rejected += 1
                #expect(error.description.contains("rejected") || error.description.contains("not a valid arena") || error.description.contains("cannot open"))
            }
        }
        #expect(rejected > 200)
    }
}
