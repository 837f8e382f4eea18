// bench-model: the model side of `make bench-kernel`, and the walk table.
//
//   bench-model workloads [-n PAGES] [-r REPS]
//       anon-fault, cow-fault, file-fault, fork-per-pte, munmap-per-page and
//       exit-per-page on the model, the same workloads as
//       Benchmarks/kernel/bench_kernel.c: one line `NAME NS` each (ns per
//       page or PTE, the median of REPS runs on a warm arena).
//   bench-model walk [-r REPS]
//       rmap_walk per visited mapping for a page mapped 1..10,000 times
//       (anon fork tree, shared file), and try_to_unmap per page.
//   bench-model forkloop [-n GENERATIONS]
//       the seeds' fork loop: live anon_vmas and AVCs per reuse policy.
//   bench-model variants [-r REPS] [--svg DIR]
//       the reverse-map designs (anon_vma, PV lists, full scan): walk, fork,
//       exit and bytes per mapping as sharing grows (Variants.swift); with
//       --svg, the curves as SVG files in DIR.
import BenchSupport
import Glibc
import Rmap
import RmapTrace
import RmapTools
import RmapVariants

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func fmt(_ x: Double) -> String {
    let r = (x * 10).rounded() / 10
    return String(r)
}

var args = Array(CommandLine.arguments.dropFirst())
let mode = args.isEmpty ? "workloads" : args.removeFirst()
var n = 65_536
var reps = 7
var svgDir: String?
while !args.isEmpty {
    let a = args.removeFirst()
    if a == "--svg", !args.isEmpty { svgDir = args.removeFirst(); continue }
    guard let v = args.first.flatMap({ Int($0) }) else { fatalError("usage: bench-model MODE [-n N] [-r REPS]") }
    args.removeFirst()
    switch a {
    case "-n": n = v
    case "-r": reps = v
    default: fatalError("unknown option \(a)")
    }
}

let base = Scenario.base
let pages = UInt64(n)

/// Runs `body` `reps + 1` times on one machine (the first run warms the
/// arena: its memory is faulted in by the host kernel once); each run
/// returns the timed nanoseconds. The median of the warm runs, per unit.
func measure(_ m: Machine, units: Int, _ body: () -> UInt64) -> Double {
    _ = body()
    var xs: [Double] = []
    for _ in 0..<reps { xs.append(Double(body()) / Double(units)) }
    return median(xs)
}

func workloads() {
    // anon-fault: write-fault N fresh anonymous pages.
    do {
        let m = Scenario.machine(pages: n)
        let ns = measure(m, units: n) {
            let mm = m.benchProcess()
            precondition(m.benchMmapAnon(mm: mm, addr: base, pages: pages))
            let t0 = now()
            let ok = m.benchFault(mm: mm, addr: base, pages: pages, write: true)
            let t1 = now()
            precondition(ok == n)
            m.benchExit(mm: mm)
            return t1 - t0
        }
        print("anon-fault \(fmt(ns))")
    }
    // cow-fault: fork a process with N written pages; the child writes them.
    do {
        let m = Scenario.machine(pages: n)
        let ns = measure(m, units: n) {
            let p = Scenario.populated(m, pages: n)
            let c = m.benchFork(mm: p)
            let t0 = now()
            let ok = m.benchFault(mm: c, addr: base, pages: pages, write: true)
            let t1 = now()
            precondition(ok == n)
            m.benchExit(mm: c)
            m.benchExit(mm: p)
            return t1 - t0
        }
        print("cow-fault \(fmt(ns))")
    }
    // file-fault: read-fault a private mapping of an N-page cached file,
    // fault-around included (16 pages per fault); per page.
    do {
        let m = Scenario.machine(pages: n)
        precondition(m.createFile("f", pages: pages) == .ok)
        precondition(m.createProcess("reader") == .ok)
        let mm = m.mmIndex(of: "reader")!
        let ns = measure(m, units: n) {
            precondition(m.perform("reader", .mmap(addr: base, pages: pages, prot: .read,
                                                   kind: .filePrivate(file: "f", pgoff: 0))) == .ok)
            let t0 = now()
            let ok = m.benchFault(mm: mm, addr: base, pages: pages, write: false)
            let t1 = now()
            precondition(ok == n)
            precondition(m.benchMunmap(mm: mm, addr: base, pages: pages))
            return t1 - t0
        }
        print("file-fault \(fmt(ns))")
    }
    // fork-per-pte: fork of a process with N written pages, per PTE copied.
    do {
        let m = Scenario.machine(pages: n)
        let ns = measure(m, units: n) {
            let p = Scenario.populated(m, pages: n)
            let t0 = now()
            let c = m.benchFork(mm: p)
            let t1 = now()
            precondition(!c.isNone)
            m.benchExit(mm: c)
            m.benchExit(mm: p)
            return t1 - t0
        }
        print("fork-per-pte \(fmt(ns))")
    }
    // munmap-per-page: munmap of N written pages.
    do {
        let m = Scenario.machine(pages: n)
        let ns = measure(m, units: n) {
            let p = Scenario.populated(m, pages: n)
            let t0 = now()
            let ok = m.benchMunmap(mm: p, addr: base, pages: pages)
            let t1 = now()
            precondition(ok)
            m.benchExit(mm: p)
            return t1 - t0
        }
        print("munmap-per-page \(fmt(ns))")
    }
    // exit-per-page: exit of a process with N written pages.
    do {
        let m = Scenario.machine(pages: n)
        let ns = measure(m, units: n) {
            let p = Scenario.populated(m, pages: n)
            let t0 = now()
            m.benchExit(mm: p)
            return now() - t0
        }
        print("exit-per-page \(fmt(ns))")
    }
}

func walks() {
    print("rmap_walk per visited mapping (ns), median of \(reps) rounds, warm caches")
    print("mappings  anon-fork-tree  anon-mapped  shared-file  file-mapped")
    for count in [1, 10, 100, 1_000, 10_000] {
        let rounds = max(1, 2_000_000 / count)
        func time(_ m: Machine, _ f: PFN, mapped: Bool) -> Double {
            measure(m, units: rounds * count) {
                var s = 0
                let t0 = now()
                if mapped {
                    for _ in 0..<rounds { s &+= m.benchWalkMapped(frame: f) }
                } else {
                    for _ in 0..<rounds { s &+= m.benchWalk(frame: f) }
                }
                let t1 = now()
                precondition(s == rounds * count)
                return t1 - t0
            }
        }
        let am = Scenario.machine(pages: 1, processes: count)
        let af = Scenario.anonForkTree(am, mappings: count)
        let fm = Scenario.machine(pages: 1, processes: count)
        let ff = Scenario.sharedFile(fm, mappings: count)
        let cols = [time(am, af, mapped: false), time(am, af, mapped: true),
                    time(fm, ff, mapped: false), time(fm, ff, mapped: true)]
        print(String(count).padding(8) + cols.map { fmt($0).padding(13) }.joined(separator: ""))
    }
    // try_to_unmap per page: N file pages mapped once, unmapped (references
    // ignored), then faulted back (not timed).
    let m = Scenario.machine(pages: n)
    precondition(m.createFile("f", pages: pages) == .ok)
    precondition(m.createProcess("p") == .ok)
    precondition(m.perform("p", .mmap(addr: base, pages: pages, prot: .read,
                                      kind: .fileShared(file: "f", pgoff: 0))) == .ok)
    let mm = m.mmIndex(of: "p")!
    var frames = [PFN](repeating: .none, count: n)
    let ns = measure(m, units: n) {
        precondition(m.benchFault(mm: mm, addr: base, pages: pages, write: false) == n)
        for i in 0..<n { frames[i] = m.benchFrame(mm: mm, addr: base + UInt64(i) * Scenario.pageSize) }
        let t0 = now()
        for f in frames { precondition(m.benchTryToUnmap(frame: f, flags: [.ignoreAccess])) }
        return now() - t0
    }
    print("try_to_unmap per page (file page mapped once): \(fmt(ns)) ns")
}

func forkLoop() {
    let gens = n == 65_536 ? 1_000 : n
    print("fork loop, \(gens) generations (fork, parent exits, child writes):")
    for policy in [ReusePolicy.none, .degree, .split] {
        let m = Scenario.machine(pages: 1, processes: 64, reuse: policy)
        let t0 = now()
        let live = Scenario.forkLoop(m, generations: gens)
        let t1 = now()
        print("  \(policy): anon_vmas=\(live.anonVMAs) (\(fmt(Double(live.anonVMAs) / Double(gens))) per iteration)"
              + " avcs=\(live.avcs) (\(fmt(Double(live.avcs) / Double(gens))) per iteration)"
              + " \(fmt(Double(t1 - t0) / Double(gens))) ns per iteration")
    }
}

extension String {
    func padding(_ w: Int) -> String { count >= w ? self + " " : self + String(repeating: " ", count: w - count) }
}

switch mode {
case "workloads": workloads()
case "walk": walks()
case "forkloop": forkLoop()
case "variants": variants(svgDir: svgDir)
default: fatalError("unknown mode \(mode)")
}
