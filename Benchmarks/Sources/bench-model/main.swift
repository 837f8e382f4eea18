// bench-model: the model side of `make bench-kernel`, and the walk table.
//
//   bench-model workloads [-n PAGES] [-r REPS]
//       anon-fault, cow-fault, file-fault, fork-per-pte, munmap-per-page and
//       exit-per-page on the model, the same workloads as
//       Benchmarks/kernel/bench_kernel.c: one line `NAME NS` each (ns per
//       page or PTE, the median of REPS runs on a warm arena).
//       With them, the large-folio workloads: thp-fault (per 2 MiB THP
//       write fault, MADV_HUGEPAGE, enabled madvise), mthp-fault-64k (per
//       64 KiB folio write fault, `thp 64K always`), thp-cow-split (the
//       child of a fork writes one page per 2 MiB: PMD split and one small
//       page copied; per 2 MiB), and the hugetlb ones: hugetlb-fault (per
//       2 MiB hugetlb write fault of a private MAP_HUGETLB mapping:
//       hugetlb_no_page, a zeroed page from the pool consuming the
//       reservation), hugetlb-cow (the child of a fork writes one byte per
//       2 MiB: hugetlb_wp copies the whole huge page from the pool).
//       BENCH_ONLY=NAME[,NAME...] in the environment runs only those (to
//       profile one workload).
//   bench-model walk-thp [-r REPS]
//       rmap_walk per visited mapping for a PMD-mapped THP's head page mapped
//       1..10,000 times (fork tree over one THP).
//   bench-model walk [-r REPS]
//       rmap_walk per visited mapping for a page mapped 1..10,000 times
//       (anon fork tree, shared file), and try_to_unmap per page.
//       BENCH_MAPPINGS=N[,N...] times only those mapping counts (to profile
//       one); with BENCH_ONLY set, try_to_unmap runs only if it names it.
//   bench-model forkloop [-n GENERATIONS]
//       the seeds' fork loop: live anon_vmas and AVCs per reuse policy.
//   bench-model scale [-n PROCS] [-p PAGES]
//       the model at 10 million frames and PTEs (Scale.swift): the replay
//       of PROCS (10,000) processes writing PAGES (1,000) anonymous pages
//       each, the same with 100 times fewer processes, and a PROCS-process
//       fork tree over one PAGES-page region; wall, user and system time,
//       peak RSS, host page faults, ns per fault or PTE, one line each.
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

/// A usage error: what was wrong and the usage, on stderr; exit 2 (not a trap).
func usageError(_ what: String) -> Never {
    fputs(what + "\nusage: bench-model workloads|walk|walk-thp|forkloop|variants|scale|scale-run NAME"
          + " [-n N] [-r REPS] [-p PAGES] [--svg DIR] (the modes: Benchmarks/Sources/bench-model/main.swift)\n", stderr)
    exit(2)
}

var args = Array(CommandLine.arguments.dropFirst())
let mode = args.isEmpty ? "workloads" : args.removeFirst()
var n = 65_536
var nGiven = false
var reps = 7
var perProcess = 1_000
var svgDir: String?
let scaleName = mode == "scale-run" && !args.isEmpty ? args.removeFirst() : ""
while !args.isEmpty {
    let a = args.removeFirst()
    if a == "--svg", !args.isEmpty { svgDir = args.removeFirst(); continue }
    guard let v = args.first.flatMap({ Int($0) }), v > 0 else {
        usageError("bench-model: \(a) needs a positive count\(args.first.map { ", got '\($0)'" } ?? "")")
    }
    args.removeFirst()
    switch a {
    case "-n": n = v; nGiven = true
    case "-r": reps = v
    case "-p": perProcess = v
    default: usageError("bench-model: unknown option '\(a)'")
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

/// BENCH_ONLY=NAME[,NAME...] runs only those workloads (for profiling one).
func want(_ name: String) -> Bool {
    guard let only = getenv("BENCH_ONLY") else { return true }
    return String(cString: only).split(separator: ",").contains { $0 == name }
}

func workloads() {
    // anon-fault: write-fault N fresh anonymous pages.
    if want("anon-fault") {
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
    if want("cow-fault") {
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
    if want("file-fault") {
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
    if want("fork-per-pte") {
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
    if want("munmap-per-page") {
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
    if want("exit-per-page") {
        let m = Scenario.machine(pages: n)
        let ns = measure(m, units: n) {
            let p = Scenario.populated(m, pages: n)
            let t0 = now()
            m.benchExit(mm: p)
            return now() - t0
        }
        print("exit-per-page \(fmt(ns))")
    }
    largeFolioWorkloads()
}

let pmdBytes: UInt64 = 2 << 20
let mthpBytes: UInt64 = 64 << 10

/// A machine with THP configured (`thp enabled madvise`, 2M inherit, and
/// with `mthp64` `thp 64K always`) and a named process "t" for MADV_HUGEPAGE.
func thpMachine(pages: Int, processes: Int = 64, mthp64: Bool = false) -> (Machine, MMID) {
    let m = Scenario.machine(pages: pages, processes: processes)
    precondition(m.setTHP(enabled: .madvise) == .ok)
    if mthp64 { precondition(m.setTHP(order: 4, mode: .always) == .ok) }
    precondition(m.createProcess("t") == .ok)
    return (m, m.mmIndex(of: "t")!)
}

/// mmap of `pages` anonymous pages at `base` in "t", MADV_HUGEPAGE when `hugepage`.
func thpRegion(_ m: Machine, _ mm: MMID, pages: UInt64, hugepage: Bool) {
    precondition(m.benchMmapAnon(mm: mm, addr: base, pages: pages))
    if hugepage { precondition(m.madviseHugepage("t", addr: base, pages: pages, hugepage: true) == .ok) }
}

func thpStat(_ m: Machine, _ name: String) -> UInt64 {
    m.thpStats.first { $0.name == name }!.value
}

func largeFolioWorkloads() {
    // thp-fault: one write per 2 MiB of a MADV_HUGEPAGE region: a PMD-mapped THP each.
    if want("thp-fault") {
        let (m, mm) = thpMachine(pages: n)
        let count = Int(pages * Scenario.pageSize / pmdBytes)
        let ns = measure(m, units: count) {
            thpRegion(m, mm, pages: pages, hugepage: true)
            let a0 = thpStat(m, "thp_fault_alloc")
            let t0 = now()
            let ok = m.benchFaultStride(mm: mm, addr: base, count: count, stride: pmdBytes, write: true)
            let t1 = now()
            precondition(ok == count && thpStat(m, "thp_fault_alloc") - a0 == UInt64(count), "thp-fault fell back")
            precondition(m.benchMunmap(mm: mm, addr: base, pages: pages))
            return t1 - t0
        }
        print("thp-fault \(fmt(ns))")
    }
    // mthp-fault-64k: one write per 64 KiB of a region without madvise, `thp 64K always`.
    if want("mthp-fault-64k") {
        let (m, mm) = thpMachine(pages: n, mthp64: true)
        let count = Int(pages * Scenario.pageSize / mthpBytes)
        let ns = measure(m, units: count) {
            thpRegion(m, mm, pages: pages, hugepage: false)
            let a0 = thpStat(m, "mthp_anon_fault_alloc")
            let t0 = now()
            let ok = m.benchFaultStride(mm: mm, addr: base, count: count, stride: mthpBytes, write: true)
            let t1 = now()
            precondition(ok == count && thpStat(m, "mthp_anon_fault_alloc") - a0 == UInt64(count),
                         "mthp-fault-64k fell back")
            precondition(m.benchMunmap(mm: mm, addr: base, pages: pages))
            return t1 - t0
        }
        print("mthp-fault-64k \(fmt(ns))")
    }
    // thp-cow-split: fork of a THP-backed region; the child writes one page
    // per 2 MiB (do_huge_pmd_wp_page splits the PMD, do_wp_page copies one page).
    if want("thp-cow-split") {
        let (m, mm) = thpMachine(pages: n)
        let count = Int(pages * Scenario.pageSize / pmdBytes)
        let ns = measure(m, units: count) {
            thpRegion(m, mm, pages: pages, hugepage: true)
            precondition(m.benchFaultStride(mm: mm, addr: base, count: count, stride: pmdBytes, write: true) == count)
            let c = m.benchFork(mm: mm)
            precondition(!c.isNone)
            let s0 = thpStat(m, "thp_split_pmd")
            let t0 = now()
            let ok = m.benchFaultStride(mm: c, addr: base, count: count, stride: pmdBytes, write: true)
            let t1 = now()
            precondition(ok == count && thpStat(m, "thp_split_pmd") - s0 == UInt64(count), "thp-cow-split: no split")
            m.benchExit(mm: c)
            precondition(m.benchMunmap(mm: mm, addr: base, pages: pages))
            return t1 - t0
        }
        print("thp-cow-split \(fmt(ns))")
    }
    hugetlbWorkloads()
}

/// A machine whose pool holds `hugePages` 2 MiB pages (`hugetlb N`) and a
/// process "t"; the frames hold the pool and the rest of the workloads.
func hugetlbMachine(hugePages: Int) -> (Machine, MMID) {
    let m = Scenario.machine(pages: (hugePages + 8) * 512)
    precondition(m.setHugetlbPool(pages: UInt64(hugePages)) == .ok, "the arena cannot hold the hugetlb pool")
    precondition(m.createProcess("t") == .ok)
    return (m, m.mmIndex(of: "t")!)
}

/// `t mmap base PAGES rw hugetlb-private` (Machine.mmap, as replay runs it).
func hugetlbRegion(_ m: Machine) {
    precondition(m.mmap("t", addr: base, pages: pages, prot: [.read, .write], kind: .hugetlbPrivate, noreserve: false) == .ok)
}

func hugetlbWorkloads() {
    let count = Int(pages * Scenario.pageSize / pmdBytes)
    // hugetlb-fault: one write per 2 MiB of a private hugetlb mapping:
    // hugetlb_no_page takes a reserved page from the pool and zeroes it.
    if want("hugetlb-fault") {
        let (m, mm) = hugetlbMachine(hugePages: count)
        let ns = measure(m, units: count) {
            hugetlbRegion(m)
            let free0 = m.hugetlbPool.free
            let t0 = now()
            let ok = m.benchFaultStride(mm: mm, addr: base, count: count, stride: pmdBytes, write: true)
            let t1 = now()
            precondition(ok == count && free0 - m.hugetlbPool.free == UInt64(count), "hugetlb-fault: no huge page")
            precondition(m.perform("t", .munmap(addr: base, pages: pages)) == .ok)
            return t1 - t0
        }
        print("hugetlb-fault \(fmt(ns))")
    }
    // hugetlb-cow: fork of a process whose private hugetlb mapping is
    // written; the child writes one byte per 2 MiB (hugetlb_wp: a new page
    // from the pool, the whole 2 MiB copied).
    if want("hugetlb-cow") {
        let (m, mm) = hugetlbMachine(hugePages: 2 * count)
        let ns = measure(m, units: count) {
            hugetlbRegion(m)
            precondition(m.benchFaultStride(mm: mm, addr: base, count: count, stride: pmdBytes, write: true) == count)
            let c = m.benchFork(mm: mm)
            precondition(!c.isNone)
            let free0 = m.hugetlbPool.free
            let t0 = now()
            let ok = m.benchFaultStride(mm: c, addr: base, count: count, stride: pmdBytes, write: true)
            let t1 = now()
            precondition(ok == count && free0 - m.hugetlbPool.free == UInt64(count), "hugetlb-cow: no copy")
            m.benchExit(mm: c)
            precondition(m.perform("t", .munmap(addr: base, pages: pages)) == .ok)
            return t1 - t0
        }
        print("hugetlb-cow \(fmt(ns))")
    }
}

/// rmap_walk of a PMD-mapped THP's head page mapped by 1..10,000 processes
/// (a fork tree over one THP), per visited mapping.
func walksTHP() {
    print("rmap_walk of a PMD-mapped THP's head page, per visited mapping (ns), median of \(reps) rounds, warm caches")
    print("mappings  thp-fork-tree  thp-pmd-mapped")
    for count in [1, 10, 100, 1_000, 10_000] {
        let rounds = max(1, 2_000_000 / count)
        let (m, root) = thpMachine(pages: 512, processes: count)
        thpRegion(m, root, pages: 512, hugepage: true)
        precondition(m.benchFault(mm: root, addr: base, pages: 1, write: true) == 1)
        var mms = [root]
        mms.reserveCapacity(count)
        for i in 1..<max(count, 1) {
            let c = m.benchFork(mm: mms[(i - 1) / 2])
            precondition(!c.isNone, "fork \(i) failed: arena too small")
            mms.append(c)
        }
        let f = m.benchFrame(mm: root, addr: base)
        precondition(!f.isNone && m.benchWalk(frame: f) == count && m.benchWalkPMDMapped(frame: f) == count,
                     "THP fork tree: \(m.benchWalk(frame: f)) walked, \(m.benchWalkPMDMapped(frame: f)) PMD-mapped, want \(count)")
        func time(pmd: Bool) -> Double {
            measure(m, units: rounds * count) {
                var s = 0
                let t0 = now()
                if pmd {
                    for _ in 0..<rounds { s &+= m.benchWalkPMDMapped(frame: f) }
                } else {
                    for _ in 0..<rounds { s &+= m.benchWalk(frame: f) }
                }
                let t1 = now()
                precondition(s == rounds * count)
                return t1 - t0
            }
        }
        let cols = [time(pmd: false), time(pmd: true)]
        print(String(count).padding(8) + cols.map { fmt($0).padding(15) }.joined(separator: ""))
    }
}

/// BENCH_MAPPINGS=N[,N...] runs the walk table for those mapping counts only
/// (default 1, 10, 100, 1,000 and 10,000).
func mappingCounts() -> [Int] {
    guard let only = getenv("BENCH_MAPPINGS") else { return [1, 10, 100, 1_000, 10_000] }
    return String(cString: only).split(separator: ",").map {
        guard let c = Int($0), c > 0 else { fatalError("BENCH_MAPPINGS: not a positive count: \($0)") }
        return c
    }
}

func walks() {
    print("rmap_walk per visited mapping (ns), median of \(reps) rounds, warm caches")
    print("mappings  anon-fork-tree  anon-mapped  shared-file  file-mapped")
    for count in mappingCounts() {
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
    guard want("try_to_unmap") else { return }
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
case "walk-thp": walksTHP()
case "forkloop": forkLoop()
case "variants": variants(svgDir: svgDir)
case "scale": scale(procs: nGiven ? n : 10_000, pages: perProcess)
case "scale-run": scaleRun(scaleName, procs: n, pages: perProcess)
default: usageError("bench-model: unknown mode '\(mode)'")
}
