import Testing
import Foundation
import RmapTestSupport
@testable import Rmap

/// The arena's host pages (rmap_arena_advise_frames, issue 16): the frame
/// table and the page-table pages with their descriptors on 4 KiB pages
/// (MADV_NOHUGEPAGE, VmFlags `nh`), the VMAs, anon_vmas, AVCs and the other
/// records with MADV_HUGEPAGE (`hg`), as /proc/self/smaps shows them.
@Suite struct ArenaHostPagesTests {
    @Test func framesAndPageTablesOnSmallPagesTheRestOnHugePages() throws {
        guard getenv("RMAP_ARENA_SMALL_PAGES") == nil, getenv("RMAP_ARENA_HUGE_FRAMES") == nil,
              getenv("RMAP_ARENA_SMALL_TABLES") == nil else { return }
        let m = try Machine(config: .default)
        defer { withExtendedLifetime(m) {} }  // the arena must stay mapped while smaps is read
        let frames = UInt(bitPattern: m.k.frames)
        let lastFrame = UInt(bitPattern: m.k.frames + Int(ArenaConfig.default.frames) - 1)
        let tables = UInt(bitPattern: m.k.ptPages)
        let lastTable = UInt(bitPattern: m.k.ptPages + (Int(ArenaConfig.default.ptPages) + 1) * 512 - 1)
        let descs = UInt(bitPattern: m.k.ptDescs)
        let vmas = UInt(bitPattern: m.k.vmas)
        let anonVMAs = UInt(bitPattern: m.k.anonVMAs)
        let first = try #require(hostVmFlags(containing: frames), "no host mapping holds the frame table")
        let last = try #require(hostVmFlags(containing: lastFrame))
        let pt = try #require(hostVmFlags(containing: tables))
        let ptLast = try #require(hostVmFlags(containing: lastTable))
        let pd = try #require(hostVmFlags(containing: descs))
        let vm = try #require(hostVmFlags(containing: vmas))
        let av = try #require(hostVmFlags(containing: anonVMAs))
        for (name, flags) in [("first frame", first), ("last frame", last), ("first page table", pt),
                              ("last page table", ptLast), ("ptdescs", pd)] {
            #expect(flags.contains("nh") && !flags.contains("hg"), "\(name): \(flags)")
        }
        // MADV_HUGEPAGE is advice the host may refuse (THP never): only where it took.
        if readProcFile("/sys/kernel/mm/transparent_hugepage/enabled")?
            .contains("[never]") == false {
            #expect(vm.contains("hg") && !vm.contains("nh"), "VMAs: \(vm)")
            #expect(av.contains("hg") && !av.contains("nh"), "anon_vmas: \(av)")
        }
    }
}
