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

    /// A bounded large-folio campaign (`rmap fuzz --large`: THP settings,
    /// hugepage advice, THP and mTHP faults, COW, partial unmaps, `thp
    /// shrink`, `split`) with the checker after every statement: no
    /// violation. (Its first runs found three model bugs, fixed: PG_mlocked
    /// of pages split from a folio in a VM_LOCKED VMA, a checker rule on the
    /// _mm_id slots stricter than the kernel, and an order-0 allocation that
    /// failed while free large-folio runs were left.)
    @Test func largeCampaignFindsNoViolation() {
        var o = FuzzOptions()
        o.seed = 1
        o.ops = 1500
        o.reuse = .split
        o.large = true
        o.keepGoing = true
        o.shrink = false
        let r = Fuzzer(options: o).run()
        #expect(r.ops >= 1500)
        #expect(r.runs >= 3)
        #expect(r.violations == 0, "\(r.distinct.map { $0.description + "\n" + $0.minimizedTrace })")
    }

    /// What the FuzzLargeOps libFuzzer target does, on fixed random inputs:
    /// `OpDecoder.largeTrace` writes traces that parse, with THP settings and
    /// the large-page statements, and the checker finds nothing.
    @Test func largeDecodedTracesParseAndRun() throws {
        var rng = SplitMix64(seed: 11)
        var large = 0, reverse = 0, violations = 0
        for _ in 0..<40 {
            let bytes = (0..<(4 * 60 + 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let text = OpDecoder.largeTrace(from: bytes)
            let trace = try TraceParser.parse(text, file: "large-ops.trace")
            #expect(trace.largePageSettings.anyTHPStatement)
            large += text.split(separator: "\n").filter {
                $0 == "thp shrink" || $0.contains(" split ") || $0.hasSuffix("hugepage")
            }.count
            reverse += text.split(separator: "\n").filter {
                $0.contains(" unmap ") || $0.contains(" migrate ") || $0.contains(" device ") || $0.contains(" exclusive ")
            }.count
            let m = try Machine(config: OpDecoder.arenaConfig(for: bytes, large: true))
            var out = ReplayOutcome()
            for tl in trace.lines {
                m.step(tl, file: trace.file, into: &out)
                if let v = m.checkViolations().first {
                    Issue.record("line \(tl.line): \(v)\n\(text)")
                    violations += 1
                    break
                }
            }
        }
        #expect(large > 40, "the decoder writes the large-page statements")
        #expect(reverse > 40, "and the model-only reverse statements")
        #expect(violations == 0)
    }

    /// FuzzLargeOps with the first byte's top bit: a hugetlb pool and
    /// hugetlb mmaps among the large-folio statements. The seeds in
    /// Fuzz/corpus/large-ops decode to hugetlb traces that map, fault,
    /// fork, mprotect, advise and unmap hugetlb pages; random inputs too;
    /// the checker finds nothing.
    @Test func largeDecodedHugetlbTracesParseAndRun() throws {
        let dir = packageRoot.appendingPathComponent("Fuzz/corpus/large-ops")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        let seeds = files.filter { $0.hasPrefix("seed-hugetlb") }
        #expect(seeds.count >= 3)
        // The seeds first, then what the target once crashed on (regress-*).
        var inputs = try (seeds + files.filter { $0.hasPrefix("regress-") }).map {
            [UInt8](try Data(contentsOf: dir.appendingPathComponent($0)))
        }
        var rng = SplitMix64(seed: 12)
        for _ in 0..<30 {
            var bytes = (0..<(4 * 60 + 2)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            bytes[0] |= 0x80
            inputs.append(bytes)
        }
        var hugetlbOps = 0
        for (n, bytes) in inputs.enumerated() {
            let text = OpDecoder.largeTrace(from: bytes)
            let trace = try TraceParser.parse(text, file: "large-ops.trace")
            #expect(text.contains("\nhugetlb "), "\(text)")
            let m = try Machine(config: OpDecoder.arenaConfig(for: bytes, large: true))
            var out = ReplayOutcome()
            for tl in trace.lines {
                m.step(tl, file: trace.file, into: &out)
                if let v = m.checkViolations().first {
                    Issue.record("line \(tl.line): \(v)\n\(text)")
                    break
                }
            }
            // The seeds: a hugetlb mapping made and faulted (a huge page
            // taken from the pool at some point).
            if n < seeds.count {
                #expect(out.results.contains { $0.1 == "ok" } && text.contains(" hugetlb-"), "\(text)")
                #expect(m.hugetlbPool.total > 0)
            }
            hugetlbOps += text.split(separator: "\n").filter { $0.contains(" hugetlb-") }.count
        }
        #expect(hugetlbOps > 30, "the decoder writes hugetlb mmaps")
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
