import Testing
import Foundation
import RmapTestSupport
@testable import Rmap

/// The arena's host pages (rmap_arena_advise_frames, issue 16): the frame
/// table on 4 KiB pages (MADV_NOHUGEPAGE, VmFlags `nh`), the page tables and
/// the other records with MADV_HUGEPAGE (`hg`), as /proc/self/smaps shows them.
@Suite struct ArenaHostPagesTests {
    @Test func framesOnSmallPagesTheRestOnHugePages() throws {
        guard getenv("RMAP_ARENA_SMALL_PAGES") == nil, getenv("RMAP_ARENA_HUGE_FRAMES") == nil else { return }
        let m = try Machine(config: .default)
        defer { withExtendedLifetime(m) {} }  // the arena must stay mapped while smaps is read
        let frames = UInt(bitPattern: m.k.frames)
        let lastFrame = UInt(bitPattern: m.k.frames + Int(ArenaConfig.default.frames) - 1)
        let tables = UInt(bitPattern: m.k.ptPages)
        let first = try #require(hostVmFlags(containing: frames), "no host mapping holds the frame table")
        let last = try #require(hostVmFlags(containing: lastFrame))
        let pt = try #require(hostVmFlags(containing: tables))
        #expect(first.contains("nh") && !first.contains("hg"), "\(first)")
        #expect(last.contains("nh") && !last.contains("hg"), "\(last)")
        // MADV_HUGEPAGE is advice the host may refuse (THP never): only where it took.
        if readProcFile("/sys/kernel/mm/transparent_hugepage/enabled")?
            .contains("[never]") == false {
            #expect(pt.contains("hg") && !pt.contains("nh"), "\(pt)")
        }
    }
}
