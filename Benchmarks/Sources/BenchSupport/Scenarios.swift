import Rmap
import RmapTools
import RmapVariants

/// The workloads shared by the package-benchmark suites and `bench-model`:
/// each builds a model state through the public `Machine` API (setup, not
/// timed) and hands back what the timed part needs.
public enum Scenario {
    /// Where every workload maps its first page.
    public static let base: UInt64 = 0x1000_0000_0000
    public static let pageSize: UInt64 = 4096

    /// An arena large enough for `pages`-page workloads with two copies of
    /// each page (COW) and `processes` processes.
    public static func config(pages: Int = 65_536, processes: Int = 64) -> ArenaConfig {
        var c = ArenaConfig()
        c.frames = UInt32(max(262_144, 3 * pages + 1024))
        c.mms = UInt32(max(1024, processes + 64))
        // Four page-table pages per process for one page, one PTE page per 512 pages.
        c.ptPages = UInt32(max(65_536, 6 * processes + 4 * (pages / 512 + 4)))
        c.vmas = UInt32(max(262_144, 4 * processes))
        c.anonVMAs = UInt32(max(262_144, 2 * processes))
        c.avcs = UInt32(max(524_288, 40 * processes))
        c.names = UInt32(max(65_536, 2 * processes))
        return c
    }

    public static func machine(pages: Int = 65_536, processes: Int = 64, reuse: ReusePolicy = .split) -> Machine {
        do { return try Machine(config: config(pages: pages, processes: processes), reuse: reuse) } catch {
            fatalError("arena: \(error)")
        }
    }

    /// An unnamed process with `pages` private anonymous pages at `base`,
    /// each written once (so each has its own frame).
    public static func populated(_ m: Machine, pages: Int) -> MMID {
        let mm = m.benchProcess()
        precondition(!mm.isNone && m.benchMmapAnon(mm: mm, addr: base, pages: UInt64(pages)))
        precondition(m.benchFault(mm: mm, addr: base, pages: UInt64(pages), write: true) == pages)
        return mm
    }

    /// A page mapped `n` times by a fork tree: process i > 0 is forked from
    /// process (i - 1) / 2, after the first wrote the page. Returns the frame.
    public static func anonForkTree(_ m: Machine, mappings n: Int) -> PFN {
        var mms = [populated(m, pages: 1)]
        mms.reserveCapacity(n)
        for i in 1..<max(n, 1) {
            let c = m.benchFork(mm: mms[(i - 1) / 2])
            precondition(!c.isNone, "fork \(i) failed: arena too small")
            mms.append(c)
        }
        let f = m.benchFrame(mm: mms[0], addr: base)
        precondition(!f.isNone && m.benchWalk(frame: f) == n, "fork tree: \(m.benchWalk(frame: f)) != \(n)")
        return f
    }

    /// A fork tree of `n` processes sharing `pages` written anonymous pages
    /// (process i > 0 forked from (i - 1) / 2 after the first wrote them).
    /// Returns the mm indices in creation order.
    public static func forkTree(_ m: Machine, processes n: Int, pages: Int) -> [MMID] {
        var mms = [populated(m, pages: pages)]
        mms.reserveCapacity(n)
        for i in 1..<max(n, 1) {
            let c = m.benchFork(mm: mms[(i - 1) / 2])
            precondition(!c.isNone, "fork \(i) failed: arena too small")
            mms.append(c)
        }
        return mms
    }

    /// A one-page file mapped shared (read) by `n` processes, each having
    /// read it. Returns the frame.
    public static func sharedFile(_ m: Machine, mappings n: Int) -> PFN {
        precondition(m.createFile("f", pages: 1) == .ok)
        var first = MMID.none
        for i in 0..<n {
            let name = "p\(i)"
            precondition(m.createProcess(name) == .ok)
            precondition(m.perform(name, .mmap(addr: base, pages: 1, prot: .read,
                                               kind: .fileShared(file: "f", pgoff: 0))) == .ok)
            precondition(m.perform(name, .read(addr: base, pages: 1)) == .ok)
            if i == 0 { first = m.mmIndex(of: name)! }
        }
        let f = m.benchFrame(mm: first, addr: base)
        precondition(!f.isNone && m.benchWalk(frame: f) == n, "shared file: \(m.benchWalk(frame: f)) != \(n)")
        return f
    }

    /// The seeds' fork loop (002): a process with one written anonymous page
    /// forks, the parent exits, the child writes the page, and again, for
    /// `generations`. Returns the live anon_vmas and AVCs at the end (the
    /// last child alive), then ends the last child.
    public static func forkLoop(_ m: Machine, generations: Int) -> (anonVMAs: Int, avcs: Int) {
        var p = populated(m, pages: 1)
        for _ in 0..<generations {
            let c = m.benchFork(mm: p)
            precondition(!c.isNone, "fork loop: arena too small")
            m.benchExit(mm: p)
            precondition(m.benchFault(mm: c, addr: base, pages: 1, write: true) == 1)
            p = c
        }
        let live = m.liveObjects()
        m.benchExit(mm: p)
        return (Int(live["anonVMAs"] ?? 0), Int(live["avcs"] ?? 0))
    }
}
