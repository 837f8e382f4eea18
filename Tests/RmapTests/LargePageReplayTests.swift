import Foundation
import Testing
@testable import RmapTrace
@testable import RmapTools
import RmapTestSupport

// What the model does not run yet on hugetlb mappings
// (TraceParserLargePageTests.stepRefusesWhatTheModelDoesNotRunYet):
// `rmap replay` stops at the first one like at a statement that cannot run on
// the arena, with exit status 2 and no observation.
@Suite struct LargePageReplayTests {
    @Test func replayStopsAtTheFirstStatementNotModelled() throws {
        let dir = freshTempDir("large-replay")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/l.trace"
        let text = """
            hugetlb 1
            proc P0
            P0 mmap 0x100000200000 512 rw hugetlb-private
            P0 mmap 0x100000000000 512 rw anon-private
            P0 mremap 0x100000000000 512 512 0x100000200000
            observe P0 0x100000200000 1
            """
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let s = replayFile(path: path, check: true)
        #expect(s.status == 2 && s.stdout == nil, "\(s)")
        #expect(s.stderr == ["\(path):5: error: large pages are not modelled yet: P0 mremap (mremap onto a hugetlb mapping)"], "\(s.stderr)")
    }

    @Test func aTraceWithoutThemRunsAsBefore() throws {
        let dir = freshTempDir("large-replay-none")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/n.trace"
        // `noreserve`-less mmaps, the old advice and SIGBUS as before; a process named thp.
        let text = """
            proc thp
            thp mmap 0x100000000000 4 rw anon-private
            thp write 0x100000000000 => ok
            thp madvise 0x100000000000 4 dontneed => ok
            expect thp 0x100000000000 2 = - -
            """
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        let s = replayFile(path: path, check: true)
        #expect(s.status == 0 && s.stderr.isEmpty, "\(s)")
    }
}
