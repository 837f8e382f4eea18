import Foundation
import Testing
@testable import Rmap
import RmapTestSupport

/// Issue 17, item 24: the KSM walk range as a history mode. The corpus
/// trace ksm-walk-split splits a VMA below merged pages: 6.x's full range
/// and v8's page index find every mapping (same observation, clean
/// checker); v4-v5's vm_pgoff misses the two above the split.
@Suite struct KSMWalkModeTests {
    func run(_ mode: KSMWalkMode) throws -> (ReplayOutcome, [CheckerViolation.Kind]) {
        let url = packageRoot.appendingPathComponent("Tests/Corpus/model/ksm-walk-split.trace")
        let trace = try TraceParser.parse(String(contentsOf: url, encoding: .utf8), file: url.lastPathComponent)
        let m = try Machine(ksmWalk: mode)
        #expect(m.ksmWalkMode == mode)
        var out = ReplayOutcome()
        var kinds: [CheckerViolation.Kind] = []
        for tl in trace.lines {
            m.step(tl, file: trace.file, into: &out)
            kinds += m.checkViolations().map(\.kind)
        }
        return (out, kinds)
    }

    @Test func fullAndIndexAgreeVMPgoffLosesTheMappingsAboveASplit() throws {
        let (full, fullKinds) = try run(.full)
        let (index, indexKinds) = try run(.index)
        let (vmpgoff, vmpgoffKinds) = try run(.vmpgoff)
        #expect(full.failures == [] && fullKinds == [])
        #expect(index.failures == [] && indexKinds == [])
        #expect("\(index.observations)" == "\(full.observations)" && "\(index.results)" == "\(full.results)")
        #expect(!vmpgoffKinds.isEmpty && vmpgoffKinds.allSatisfy { $0 == .pteWithoutRmap })
        #expect(vmpgoff.failures.count == 1, "the migration leaves two mappings behind: \(vmpgoff.failures)")
    }

    /// A saved state keeps its mode (beside the reuse policy in one header word).
    @Test func aSavedStateKeepsItsKSMWalkMode() throws {
        let path = NSTemporaryDirectory() + "rmap-\(getpid())-ksmwalk.arena"
        defer { unlink(path) }
        let m = try Machine(config: .tiny, reuse: .degree, ksmWalk: .vmpgoff)
        #expect(m.save(to: path) == nil)
        let loaded = try Machine(opening: path)
        #expect(loaded.ksmWalkMode == .vmpgoff && loaded.reusePolicy == .degree)
    }
}
