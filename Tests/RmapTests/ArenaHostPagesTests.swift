import Testing
import Foundation
@testable import Rmap

/// The arena's host pages (rmap_arena_advise_frames, issue 16): the frame
/// table on 4 KiB pages (MADV_NOHUGEPAGE, VmFlags `nh`), the page tables and
/// the other records with MADV_HUGEPAGE (`hg`), as /proc/self/smaps shows them.
@Suite struct ArenaHostPagesTests {
    /// The VmFlags of the host mapping that contains `address`.
    private func vmFlags(containing address: UInt = 0) -> [String]? {
        // read(2) until the end: /proc files report a size of 0.
        let fd = open("/proc/self/smaps", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += buf[0..<n]
        }
        let text = String(decoding: bytes, as: UTF8.self)
        var inside = false
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = f.first, range.contains("-"), !range.hasSuffix(":") {
                let ends = range.split(separator: "-")
                if ends.count == 2, let lo = UInt(ends[0], radix: 16), let hi = UInt(ends[1], radix: 16) {
                    inside = lo <= address && address < hi
                }
            } else if inside, f.first == "VmFlags:" {
                return f.dropFirst().map(String.init)
            }
        }
        return nil
    }

    @Test func framesOnSmallPagesTheRestOnHugePages() throws {
        guard getenv("RMAP_ARENA_SMALL_PAGES") == nil, getenv("RMAP_ARENA_HUGE_FRAMES") == nil else { return }
        let m = try Machine(config: .default)
        defer { withExtendedLifetime(m) {} }  // the arena must stay mapped while smaps is read
        let frames = UInt(bitPattern: m.k.frames)
        let lastFrame = UInt(bitPattern: m.k.frames + Int(ArenaConfig.default.frames) - 1)
        let tables = UInt(bitPattern: m.k.ptPages)
        let first = try #require(vmFlags(containing: frames), "no host mapping holds the frame table")
        let last = try #require(vmFlags(containing: lastFrame))
        let pt = try #require(vmFlags(containing: tables))
        #expect(first.contains("nh") && !first.contains("hg"), "\(first)")
        #expect(last.contains("nh") && !last.contains("hg"), "\(last)")
        // MADV_HUGEPAGE is advice the host may refuse (THP never): only where it took.
        if (try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8))?
            .contains("[never]") == false {
            #expect(pt.contains("hg") && !pt.contains("nh"), "\(pt)")
        }
    }
}
