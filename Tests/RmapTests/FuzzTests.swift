import Testing
import Foundation
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// Short fuzz campaigns with fixed seeds in every history mode, and the
/// saved regression traces.
@Suite struct FuzzTests {
    @Test(arguments: [ReusePolicy.split, .none])
    func shortCampaignIsClean(_ policy: ReusePolicy) {
        for seed: UInt64 in [1, 2, 3] {
            var o = FuzzOptions()
            o.seed = seed
            o.ops = 1500
            o.reuse = policy
            let r = Fuzzer(options: o).run()
            #expect(r.violations == 0, "seed \(seed): \(r.firstViolation ?? "")\n\(r.minimizedTrace ?? "")")
            #expect(r.ops == 1500)
        }
    }

    /// Under `degree` the only violation the fuzzer may find is the double
    /// reuse; it finds it quickly and shrinks it to a short trace.
    @Test func degreeFindsOnlyTheDoubleReuse() {
        var found = 0
        for seed: UInt64 in 1...3 {
            var o = FuzzOptions()
            o.seed = seed
            o.ops = 20_000
            o.reuse = .degree
            let r = Fuzzer(options: o).run()
            if let v = r.firstViolation {
                found += 1
                #expect(r.firstViolationKind == .anonVMAReusedInUse, "\(v)")
                let statements = (r.minimizedTrace ?? "").split(separator: "\n").filter { !$0.hasPrefix("#") }
                #expect(statements.count <= 30, "\(r.minimizedTrace ?? "")")
            }
        }
        #expect(found >= 2)
    }

    @Test func sameSeedSameRun() {
        var o = FuzzOptions()
        o.seed = 7
        o.ops = 600
        o.reuse = .degree
        let a = Fuzzer(options: o).run(), b = Fuzzer(options: o).run()
        #expect(a.ops == b.ops && a.runs == b.runs && a.firstViolation == b.firstViolation && a.minimizedTrace == b.minimizedTrace)
    }

    @Test(arguments: corpusTraces("fuzz"))
    func regressionFailsInDegreeAndPassesInSplit(_ url: URL) {
        let split = replayFile(path: url.path, reuse: .split, check: true)
        #expect(split.status == 0, "\(split.stderr)")
        let degree = replayFile(path: url.path, reuse: .degree, check: true)
        #expect(degree.status == 1)
        #expect(degree.stderr.contains { $0.contains("CVE-2022-42703") })
    }
}
