// The package-benchmark suites of swift-rmap. `make bench` runs them; the
// gate is the malloc count of the walk and unmap paths (0), checked against
// Benchmarks/Thresholds by `make bench` (`benchmark thresholds check`), never
// the time.
//
// Forward paths: one iteration is a whole workload of `pages` pages (its
// setup and teardown are not measured), so per page = per iteration / pages.
// Walks, try_to_unmap, page_referenced and migrate are scaled (`.kilo`: 1,000 walks
// or pages per iteration): their time and malloc count read per walk and per
// page, so one malloc per walk or per page shows as 1 and fails the gate.
// munmap and exit are gated per whole workload.
import Benchmark
import Glibc
import BenchSupport
import Rmap
import RmapTools
import RmapVariants

let pages = 65_536
let base = Scenario.base

/// Whether the machine has a hardware PMU (a VM often has none; then the
/// instruction counter cannot be read, and asking for it costs 16 mallocs
/// per measurement).
let hasPMU = access("/sys/bus/event_source/devices/cpu", F_OK) == 0

/// Wall clock, throughput, malloc counts, and instructions where available.
/// (`.cpuTotal` is left out: 10 ms resolution, and it mallocs.)
let metrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal] + (hasPMU ? [.instructions] : [])

/// The gated benchmarks measure nothing that allocates by itself.
let gatedMetrics: [BenchmarkMetric] = [.wallClock, .throughput, .mallocCountTotal]

/// Any malloc on a walk or unmap path is a regression (0 tolerated).
let noMalloc: [BenchmarkMetric: BenchmarkThresholds] = [
    .mallocCountTotal: .init(absolute: [.p0: 0, .p25: 0, .p50: 0, .p75: 0, .p90: 0, .p99: 0, .p100: 0])
]

func forward(gated: Bool = false) -> Benchmark.Configuration {
    .init(metrics: gated ? gatedMetrics : metrics, timeUnits: .microseconds, warmupIterations: 2,
          maxDuration: .seconds(2), maxIterations: 50, thresholds: gated ? noMalloc : nil)
}

let scaled = Benchmark.Configuration(metrics: gatedMetrics, timeUnits: .nanoseconds, warmupIterations: 3,
                                     scalingFactor: .kilo, maxDuration: .seconds(1), maxIterations: 200,
                                     thresholds: noMalloc)

/// Model states built once per benchmark and kept across its iterations (the
/// closure runs once per iteration), so no iteration pays for a new arena's
/// first touch or for building a 10,000-process tree.
nonisolated(unsafe) var states: [String: Any] = [:]
func state<T>(_ key: String, _ make: () -> T) -> T {
    if let s = states[key] as? T { return s }
    let s = make()
    states[key] = s
    return s
}

let benchmarks: @Sendable () -> Void = {
    // MARK: faults

    Benchmark("anon_fault.\(pages)_pages", configuration: forward()) { benchmark in
        let m = state("anon") { Scenario.machine(pages: pages) }
        let mm = m.benchProcess()
        precondition(m.benchMmapAnon(mm: mm, addr: base, pages: UInt64(pages)))
        benchmark.startMeasurement()
        blackHole(m.benchFault(mm: mm, addr: base, pages: UInt64(pages), write: true))
        benchmark.stopMeasurement()
        m.benchExit(mm: mm)
    }

    Benchmark("cow_fault.\(pages)_pages_in_fork_child", configuration: forward()) { benchmark in
        let m = state("cow") { Scenario.machine(pages: pages) }
        let p = Scenario.populated(m, pages: pages)
        let c = m.benchFork(mm: p)
        benchmark.startMeasurement()
        blackHole(m.benchFault(mm: c, addr: base, pages: UInt64(pages), write: true))
        benchmark.stopMeasurement()
        m.benchExit(mm: c)
        m.benchExit(mm: p)
    }

    Benchmark("file_fault.fault_around.\(pages)_pages", configuration: forward()) { benchmark in
        let m = state("file") { () -> Machine in
            let m = Scenario.machine(pages: pages)
            precondition(m.createFile("f", pages: UInt64(pages)) == .ok && m.createProcess("r") == .ok)
            return m
        }
        let mm = m.mmIndex(of: "r")!
        precondition(m.perform("r", .mmap(addr: base, pages: UInt64(pages), prot: .read,
                                          kind: .filePrivate(file: "f", pgoff: 0))) == .ok)
        benchmark.startMeasurement()
        blackHole(m.benchFault(mm: mm, addr: base, pages: UInt64(pages), write: false))
        benchmark.stopMeasurement()
        precondition(m.benchMunmap(mm: mm, addr: base, pages: UInt64(pages)))
    }

    // MARK: fork, munmap, exit

    Benchmark("fork.\(pages)_ptes_copied", configuration: forward()) { benchmark in
        let (m, p) = state("fork") { () -> (Machine, MMID) in
            let m = Scenario.machine(pages: pages)
            return (m, Scenario.populated(m, pages: pages))
        }
        benchmark.startMeasurement()
        let c = m.benchFork(mm: p)
        benchmark.stopMeasurement()
        m.benchExit(mm: c)
    }

    Benchmark("munmap.\(pages)_pages", configuration: forward(gated: true)) { benchmark in
        let m = state("munmap") { Scenario.machine(pages: pages) }
        let p = Scenario.populated(m, pages: pages)
        benchmark.startMeasurement()
        blackHole(m.benchMunmap(mm: p, addr: base, pages: UInt64(pages)))
        benchmark.stopMeasurement()
        m.benchExit(mm: p)
    }

    Benchmark("exit.\(pages)_pages", configuration: forward(gated: true)) { benchmark in
        let m = state("exit") { Scenario.machine(pages: pages) }
        let p = Scenario.populated(m, pages: pages)
        benchmark.startMeasurement()
        m.benchExit(mm: p)
        benchmark.stopMeasurement()
    }

    // MARK: rmap_walk

    for n in [1, 10, 100, 1_000, 10_000] {
        Benchmark("rmap_walk.anon_fork_tree.\(n)_mappings", configuration: scaled) { benchmark in
            let (m, f) = state("tree\(n)") { () -> (Machine, PFN) in
                let m = Scenario.machine(pages: 1, processes: n)
                return (m, Scenario.anonForkTree(m, mappings: n))
            }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(m.benchWalk(frame: f)) }
            benchmark.stopMeasurement()
        }
        Benchmark("rmap_walk.shared_file.\(n)_mappings", configuration: scaled) { benchmark in
            let (m, f) = state("file\(n)") { () -> (Machine, PFN) in
                let m = Scenario.machine(pages: 1, processes: n)
                return (m, Scenario.sharedFile(m, mappings: n))
            }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(m.benchWalk(frame: f)) }
            benchmark.stopMeasurement()
        }
    }

    Benchmark("rmap_walk_mapped.anon_fork_tree.1000_mappings", configuration: scaled) { benchmark in
        let (m, f) = state("tree1000") { () -> (Machine, PFN) in
            let m = Scenario.machine(pages: 1, processes: 1_000)
            return (m, Scenario.anonForkTree(m, mappings: 1_000))
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(m.benchWalkMapped(frame: f)) }
        benchmark.stopMeasurement()
    }

    // MARK: try_to_unmap, page_referenced

    Benchmark("try_to_unmap.file_page_mapped_once", configuration: scaled) { benchmark in
        let n = benchmark.scaledIterations.count
        let m = state("ttu-file") { () -> Machine in
            let m = Scenario.machine(pages: n)
            precondition(m.createFile("f", pages: UInt64(n)) == .ok && m.createProcess("p") == .ok)
            precondition(m.perform("p", .mmap(addr: base, pages: UInt64(n), prot: .read,
                                              kind: .fileShared(file: "f", pgoff: 0))) == .ok)
            return m
        }
        let mm = m.mmIndex(of: "p")!
        // Map the pages again (the previous iteration unmapped them).
        precondition(m.benchFault(mm: mm, addr: base, pages: UInt64(n), write: false) == n)
        let frames = (0..<n).map { m.benchFrame(mm: mm, addr: base + UInt64($0) * Scenario.pageSize) }
        benchmark.startMeasurement()
        for f in frames { blackHole(m.benchTryToUnmap(frame: f, flags: [.ignoreAccess])) }
        benchmark.stopMeasurement()
        precondition(frames.allSatisfy { m.benchWalkMapped(frame: $0) == 0 }, "try_to_unmap left a mapping")
    }

    Benchmark("try_to_unmap.anon_swapcache_page_mapped_9_times", configuration: scaled) { benchmark in
        // Anonymous pages in the swap cache: 10 processes share them, reclaim
        // swapped them out, 9 read them back (the 10th keeps a swap reference,
        // so the page stays in the swap cache and can be unmapped again).
        let n = benchmark.scaledIterations.count
        let m = state("ttu-anon") { () -> Machine in
            let m = Scenario.machine(pages: n, processes: 16)
            precondition(m.setSwap(slots: UInt64(n) + 16) == .ok, "more swap than the swap map holds")
            precondition(m.createProcess("p0") == .ok)
            precondition(m.perform("p0", .mmap(addr: base, pages: UInt64(n), prot: [.read, .write], kind: .anonPrivate)) == .ok)
            precondition(m.perform("p0", .write(addr: base, pages: UInt64(n))) == .ok)
            for i in 1..<10 { precondition(m.fork("p0", child: "p\(i)") == .ok) }
            precondition(m.perform("p0", .reclaim(addr: base, pages: UInt64(n))) == .ok)
            return m
        }
        // Swap the pages back in, in 9 processes (the previous iteration
        // left swap entries).
        for i in 1..<10 { precondition(m.perform("p\(i)", .read(addr: base, pages: UInt64(n))) == .ok) }
        let mm = m.mmIndex(of: "p1")!
        let frames = (0..<n).map { m.benchFrame(mm: mm, addr: base + UInt64($0) * Scenario.pageSize) }
        precondition(m.benchWalkMapped(frame: frames[0]) == 9)
        benchmark.startMeasurement()
        for f in frames { blackHole(m.benchTryToUnmap(frame: f, flags: [.ignoreAccess])) }
        benchmark.stopMeasurement()
        precondition(frames.allSatisfy { m.benchWalkMapped(frame: $0) == 0 }, "try_to_unmap left a mapping")
    }

    Benchmark("page_referenced.anon_page_mapped_10_times", configuration: scaled) { benchmark in
        let n = benchmark.scaledIterations.count
        let m = state("referenced") { () -> Machine in
            let m = Scenario.machine(pages: n, processes: 16)
            precondition(m.createProcess("p0") == .ok)
            precondition(m.perform("p0", .mmap(addr: base, pages: UInt64(n), prot: [.read, .write], kind: .anonPrivate)) == .ok)
            precondition(m.perform("p0", .write(addr: base, pages: UInt64(n))) == .ok)
            for i in 1..<10 { precondition(m.fork("p0", child: "p\(i)") == .ok) }
            return m
        }
        let mm = m.mmIndex(of: "p0")!
        let frames = (0..<n).map { m.benchFrame(mm: mm, addr: base + UInt64($0) * Scenario.pageSize) }
        benchmark.startMeasurement()
        for f in frames { blackHole(m.benchPageReferenced(frame: f)) }
        benchmark.stopMeasurement()
    }

    // MARK: migration

    for sharers in [1, 10] {
        Benchmark("migrate.anon_page_mapped_\(sharers)_times", configuration: scaled) { benchmark in
            // Anonymous pages written by p0 and shared with sharers - 1 forked
            // children; every iteration migrates each of them to a new frame
            // (try_to_migrate, copy, remove_migration_ptes). Per page.
            let n = benchmark.scaledIterations.count
            let m = state("migrate\(sharers)") { () -> Machine in
                let m = Scenario.machine(pages: n, processes: 16)
                precondition(m.createProcess("p0") == .ok)
                precondition(m.perform("p0", .mmap(addr: base, pages: UInt64(n), prot: [.read, .write], kind: .anonPrivate)) == .ok)
                precondition(m.perform("p0", .write(addr: base, pages: UInt64(n))) == .ok)
                for i in 1..<sharers { precondition(m.fork("p0", child: "p\(i)") == .ok) }
                return m
            }
            let mm = m.mmIndex(of: "p0")!
            let frames = (0..<n).map { m.benchFrame(mm: mm, addr: base + UInt64($0) * Scenario.pageSize) }
            benchmark.startMeasurement()
            for f in frames { blackHole(m.benchMigrate(frame: f)) }
            benchmark.stopMeasurement()
            precondition(m.benchFrame(mm: mm, addr: base) != frames[0], "the page did not move")
        }
    }

    // MARK: design variants (issue #6): PV lists and the full scan behind the walk API

    for n in [1, 10, 100, 1_000] {
        Benchmark("rmap_walk_variant.pv.anon_fork_tree.\(n)_mappings", configuration: scaled) { benchmark in
            let (m, f) = state("pvtree\(n)") { () -> (Machine, PFN) in
                let m = Scenario.machine(pages: 1, processes: n)
                let f = Scenario.anonForkTree(m, mappings: n)
                precondition(m.enablePVLists())
                return (m, f)
            }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(m.benchPVWalkMapped(frame: f)) }
            benchmark.stopMeasurement()
        }
        // The page written by every child after the forks: mapped once.
        for design in [RmapDesign.anonVMA, .pvLists] {
            Benchmark("rmap_walk_variant.\(design.rawValue).cow_broken_tree.\(n)_vmas", configuration: scaled) { benchmark in
                let (m, f) = state("cow\(n)") { () -> (Machine, PFN) in
                    let m = Scenario.machine(pages: 1, processes: n)
                    let mms = Scenario.forkTree(m, processes: n, pages: 1)
                    for c in mms.dropFirst() { precondition(m.benchFault(mm: c, addr: base, pages: 1, write: true) == 1) }
                    precondition(m.enablePVLists())
                    return (m, m.benchFrame(mm: mms[0], addr: base))
                }
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations { blackHole(m.benchWalkMapped(frame: f, design: design)) }
                benchmark.stopMeasurement()
            }
        }
    }

    for n in [1, 10, 100] {
        Benchmark("rmap_walk_variant.scan.anon_fork_tree.\(n)_mappings", configuration: scaled) { benchmark in
            let (m, f) = state("scantree\(n)") { () -> (Machine, PFN) in
                let m = Scenario.machine(pages: 1, processes: n)
                return (m, Scenario.anonForkTree(m, mappings: n))
            }
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations { blackHole(m.benchWalkMapped(frame: f, design: .fullScan)) }
            benchmark.stopMeasurement()
        }
    }

    Benchmark("fork_variant.pv.\(pages)_ptes_copied", configuration: forward()) { benchmark in
        let (m, p) = state("forkpv") { () -> (Machine, MMID) in
            let m = Scenario.machine(pages: pages)
            let p = Scenario.populated(m, pages: pages)
            precondition(m.enablePVLists())
            return (m, p)
        }
        benchmark.startMeasurement()
        let c = m.benchFork(mm: p)
        benchmark.stopMeasurement()
        m.benchExit(mm: c)
    }

    // MARK: the seeds' fork loop

    for policy in [ReusePolicy.none, .degree, .split] {
        let generations = 200
        let config = Benchmark.Configuration(
            metrics: [.wallClock, .throughput, .mallocCountTotal,
                      .custom("anon_vmas live", polarity: .prefersSmaller, useScalingFactor: false),
                      .custom("AVCs live", polarity: .prefersSmaller, useScalingFactor: false)],
            timeUnits: .microseconds, maxDuration: .seconds(1), maxIterations: 20)
        Benchmark("fork_loop.\(policy).\(generations)_generations", configuration: config) { benchmark in
            let m = state("loop\(policy)") { Scenario.machine(pages: 1, processes: 64, reuse: policy) }
            benchmark.startMeasurement()
            let live = Scenario.forkLoop(m, generations: generations)
            benchmark.stopMeasurement()
            benchmark.measurement(.custom("anon_vmas live", polarity: .prefersSmaller, useScalingFactor: false), live.anonVMAs)
            benchmark.measurement(.custom("AVCs live", polarity: .prefersSmaller, useScalingFactor: false), live.avcs)
        }
    }
}
