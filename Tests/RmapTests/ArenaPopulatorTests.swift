import Testing
import Foundation
import RmapTestSupport
import CShims
import RmapTrace
@testable import Rmap

/// The arena's populator (CShims/populate.c, issue 16): a thread that faults
/// in each table's memory a few megabytes ahead of its bump, started once a
/// table has RMAP_POPULATE_START_BYTES in use, never changing the arena's
/// contents.
@Suite struct ArenaPopulatorTests {
    /// Whether the populator may be on here (not turned off by the
    /// environment, some table on 4 KiB host pages, two or more CPUs).
    static var mayPopulate: Bool {
        getenv("RMAP_ARENA_POPULATE").map { String(cString: $0) } != "0"
            && rmap_arena_small_page_tables() != 0
            && sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2
    }
    /// The frame table is one the populator fills (the default layout).
    static var populatesFrames: Bool { rmap_arena_small_page_tables() & (1 << RMAP_T_FRAME) != 0 }

    /// A small arena but for the frame table: 400,000 frames (25.6 MB of
    /// records), the rest a few MB.
    static func config(populating: Bool) -> ArenaConfig {
        var c = ArenaConfig()
        c.frames = 400_000; c.ptPages = 2048; c.mms = 64; c.vmas = 1024; c.anonVMAs = 1024; c.avcs = 2048
        c.files = 64; c.swapSlots = 1024; c.names = 64; c.ksmItems = 1024; c.ksmNodes = 256
        c.populatesAhead = populating
        return c
    }

    /// 160,000 written pages: the frame table's bump reaches 10.2 MB, past
    /// the 8 MiB at which the thread starts.
    static let bigTrace = "proc P\nP mmap 0x100000000000 160000 rw anon-private\nP write 0x100000000000 160000\n"

    /// Which of the host pages of [from, to) (byte offsets in the arena) are resident (mincore).
    static func resident(_ m: Machine, _ from: Int, _ to: Int) -> [Bool] {
        let page = 4096
        let base = m.arena.base
        let lo = from / page * page, hi = (to + page - 1) / page * page
        var vec = [UInt8](repeating: 0, count: (hi - lo) / page)
        let rc = vec.withUnsafeMutableBufferPointer { mincore(base + lo, hi - lo, $0.baseAddress) }
        #expect(rc == 0)
        return vec.map { $0 & 1 != 0 }
    }

    @Test func aSmallMachineStartsNoThread() throws {
        let (m, out) = try machine("proc P\nP mmap 0x100000000000 1000 rw anon-private\nP write 0x100000000000 1000\n")
        #expect(out.error == nil)
        guard let s = m.populatorStatus() else {
            #expect(!Self.mayPopulate, "no populator although two CPUs are online")
            return
        }
        #expect(s.state == Int32(RMAP_POPULATOR_IDLE) && s.bytes == 0, "\(s)")
    }

    @Test func itRunsAheadOfTheBumpAndNoFurther() throws {
        guard Self.populatesFrames else { return }
        let (m, out) = try machine(Self.bigTrace, config: Self.config(populating: true))
        #expect(out.error == nil && out.failures.isEmpty)
        guard let s = m.populatorStatus() else {
            #expect(!Self.mayPopulate, "no populator although two CPUs are online")
            return
        }
        // OFF only where MADV_POPULATE_WRITE does not exist (Linux < 5.14).
        #expect(s.state == Int32(RMAP_POPULATOR_RUNNING), "\(s)")
        guard s.state == Int32(RMAP_POPULATOR_RUNNING) else { return }
        #expect(s.bytes > 0)
        let d = m.k.desc(T.frame).pointee
        let start = Int(d.offset), end = start + Int(d.capacity) * Int(d.record_size)
        let bump = start + Int(d.bump) * Int(d.record_size)
        // The last note was at a multiple of 256 records. The thread's lead
        // is a quarter of the bytes in use (2.5 MB here); it waits until the
        // bump has used half of it, so at least half is ahead at any time.
        let noted = start + Int(d.bump - 1) / 256 * 256 * Int(d.record_size)
        let ahead = Self.resident(m, bump, noted + (noted - start) / 8 - 4096)
        #expect(ahead.allSatisfy { $0 }, "\(ahead.filter { !$0 }.count) of \(ahead.count) pages ahead of the bump not populated")
        // Never more than the largest lead and one chunk past the last note.
        let far = noted + Int(RMAP_POPULATE_MAX_AHEAD) + (2 << 20)
        #expect(far < end)
        let beyond = Self.resident(m, far, end)
        #expect(!beyond.contains(true), "\(beyond.filter { $0 }.count) pages populated beyond the lead")
        #expect(m.checkViolations() == [])
    }

    @Test func theArenaIsTheSameWithAndWithoutIt() throws {
        let (a, outA) = try machine(Self.bigTrace, config: Self.config(populating: true))
        let (b, outB) = try machine(Self.bigTrace, config: Self.config(populating: false))
        #expect(outA.error == nil && outB.error == nil)
        let none = b.populatorStatus()
        #expect(none == nil)
        _ = a.populatorStatus()  // caught up: whatever it populates, it has
        // Without it, the pages past the bump stay untouched: the residency
        // test above tells the two apart. (Looked at before the comparison
        // below, whose reads map the zero page there.)
        if Self.populatesFrames {
            let d = b.k.desc(T.frame).pointee
            let bump = Int(d.offset) + Int(d.bump) * Int(d.record_size)
            #expect(!Self.resident(b, bump + 4096, bump + (1 << 20)).contains(true))
        }
        let sizeA = a.arena.size, sizeB = b.arena.size
        #expect(sizeA == sizeB)
        // The populated pages ahead of the bump read as zero, as never-touched ones do.
        let same = memcmp(a.arena.base, b.arena.base, Int(min(sizeA, sizeB))) == 0
        #expect(same)
    }

    @Test func aFileBackedArenaHasNone() throws {
        let dir = freshTempDir("populator")
        let m = try Machine(config: Self.config(populating: true), path: dir + "/arena")
        let status = m.populatorStatus()
        #expect(status == nil)
    }

    @Test func aLoadedArenaHasOneAndGrowsAsANewOne() throws {
        let dir = freshTempDir("populator-load")
        let (m, _) = try machine("proc P\nP mmap 0x100000000000 16 rw anon-private\nP write 0x100000000000 16\n",
                                 config: Self.config(populating: true))
        #expect(m.save(to: dir + "/s") == nil)
        let l = try Machine(opening: dir + "/s")
        let status = l.populatorStatus()
        guard let s = status else {
            #expect(!Self.mayPopulate, "no populator although two CPUs are online")
            return
        }
        #expect(s.state == Int32(RMAP_POPULATOR_IDLE))
        let out = l.replay(try TraceParser.parse("P munmap 0x100000000000 16\nP mmap 0x100000000000 160000 rw anon-private\n"
                                                 + "P write 0x100000000000 160000\n", file: "l.trace", continuing: l.traceContext))
        #expect(out.error == nil && out.failures.isEmpty)
        let afterStatus = l.populatorStatus()
        let after = try #require(afterStatus)
        #expect(after.state == Int32(RMAP_POPULATOR_RUNNING) && after.bytes > 0, "\(after)")
        #expect(l.checkViolations() == [])
    }
}
