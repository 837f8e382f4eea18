import Testing
import Foundation
import RmapTestSupport

/// Every command that reads a trace reads it as replay does: bounded, a
/// directory refused, with `FILE: error: ...` and status 2 (issue 17, item 6).
@Suite struct TraceInputTests {
    @Test(arguments: ["replay", "dot", "stats"])
    func endlessOrDirectoryInputIsRefused(_ command: String) throws {
        let rmap = try #require(rmapPath, "the rmap binary is built by make test")
        let dir = try run(rmap, [command, NSTemporaryDirectory()], timeout: 60)
        #expect(!dir.timedOut && dir.status == 2, "\(command) dir: \(dir.status) \(dir.err)")
        #expect(dir.err.contains("error: is a directory"), "\(dir.err)")
        let zero = try run(rmap, [command, "/dev/zero"], timeout: 60)
        #expect(!zero.timedOut && zero.status == 2, "\(command) /dev/zero: \(zero.status) \(zero.err)")
        #expect(zero.err.contains("/dev/zero: error: trace larger than"), "\(zero.err)")
    }
}
