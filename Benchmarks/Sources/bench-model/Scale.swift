// bench-model scale: the model at 10 million frames or PTEs (issue 16, item 5).
//
// Each workload runs in a child process of its own (this executable, mode
// `scale-run`), so that the figures the parent reads from wait4() are that
// workload's alone: wall clock (from the spawn to the child's exit, the
// arena's mapping and unmapping included), user and system time, peak RSS
// (ru_maxrss) and the host page faults (ru_minflt, what `perf stat -e
// page-faults` counts). The child prints its own timed part, from which the
// nanoseconds per fault or per PTE are computed.
//
//   replay       `rmap replay --frames 10485760` of a generated trace: PROCS
//                processes (default 10,000), each mapping PAGES (1,000)
//                private anonymous pages and writing them once: 10 million
//                frames. The trace is written to $TMPDIR (or /tmp) and removed
//                afterwards; nothing is committed.
//   replay-100k  the same trace with 100 processes (100,000 frames) in the
//                same arena: the cost per fault at 100 times fewer frames.
//   fork-tree    one process writes PAGES pages, then PROCS - 1 forks in a
//                binary tree (process i forks from process (i - 1) / 2): 10
//                million PTEs copied; then every process exits (10 million
//                PTEs zapped). ns per PTE for the forks and for the exits.
//
// RMAP_ARENA_SMALL_PAGES=1 in the environment keeps the arena on 4 KiB host
// pages (no MADV_HUGEPAGE): the before/after of the arena's huge pages.
// RMAP_ARENA_POPULATE=0 turns the arena's populator off (CShims/populate.c:
// the thread that faults in the frame table ahead of the model): its
// before/after. The children inherit the environment.
import BenchSupport
import Glibc
import Rmap
import RmapTools

/// The replay trace: `procs` processes with `pages` written anonymous pages each.
func scaleTrace(procs: Int, pages: Int) -> String {
    var s = ""
    s.reserveCapacity(procs * 100)
    for i in 0..<procs {
        s += "proc P\(i)\nP\(i) mmap 0x100000000000 \(pages) rw anon-private\nP\(i) write 0x100000000000 \(pages)\n"
    }
    return s
}

/// The arena of `rmap replay --frames 10485760`: 10 Mi frames, the other
/// tables at their defaults (they hold 10,000 processes).
func scaleConfig() -> ArenaConfig {
    var c = ArenaConfig()
    c.frames = 10_485_760
    return c
}

/// `scale-run NAME`: one workload, in this (child) process. Prints
/// `NAME key=value ...` with the timed nanoseconds and units.
func scaleRun(_ name: String, procs: Int, pages: Int) {
    switch name {
    case "replay", "replay-100k":
        guard let path = getenv("BENCH_SCALE_TRACE").map({ String(cString: $0) }) else {
            fatalError("scale-run \(name): BENCH_SCALE_TRACE is not set")
        }
        let t0 = now()
        let s = replayFile(path: path, config: scaleConfig(), observations: false)
        let t1 = now()
        guard s.status == 0 else { fatalError("scale-run \(name): replay failed: \(s.stderr)") }
        print("\(name) timed_ns=\(t1 - t0) units=\(procs * pages)")
    case "fork-tree":
        var c = Scenario.config(pages: pages, processes: procs)
        c.frames = UInt32(max(262_144, 2 * pages))
        let m: Machine
        do { m = try Machine(config: c) } catch { fatalError("arena: \(error)") }
        var mms = [Scenario.populated(m, pages: pages)]
        mms.reserveCapacity(procs)
        let t0 = now()
        for i in 1..<procs {
            let child = m.benchFork(mm: mms[(i - 1) / 2])
            precondition(!child.isNone, "fork \(i): ENOMEM")
            mms.append(child)
        }
        let t1 = now()
        for mm in mms.reversed() { m.benchExit(mm: mm) }
        let t2 = now()
        print("fork-tree timed_ns=\(t1 - t0) units=\((procs - 1) * pages) exit_ns=\(t2 - t1) exit_units=\(procs * pages)")
    default:
        fatalError("unknown scale workload \(name)")
    }
}

/// Spawns `bench-model scale-run NAME` and waits for it: its output line
/// and its resource usage, with the wall clock around it.
func spawnScaleRun(_ name: String, procs: Int, pages: Int, env extra: [String]) -> (String, rusage, UInt64) {
    let exe = "/proc/self/exe"
    let argv = [exe, "scale-run", name, "-n", String(procs), "-p", String(pages)]
    var cargv = argv.map { strdup($0) }
    cargv.append(nil)
    var envp: [UnsafeMutablePointer<CChar>?] = []
    var e = environ
    while let p = e.pointee {
        envp.append(strdup(p))
        e += 1
    }
    for x in extra { envp.append(strdup(x)) }
    envp.append(nil)
    defer {
        for p in cargv { free(p) }
        for p in envp { free(p) }
    }
    var fds: [Int32] = [0, 0]
    precondition(pipe(&fds) == 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var pid: pid_t = 0
    let t0 = now()
    let rc = posix_spawn(&pid, exe, &actions, nil, cargv, envp)
    posix_spawn_file_actions_destroy(&actions)
    precondition(rc == 0, "posix_spawn: \(rc)")
    close(fds[1])
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let r = read(fds[0], &buf, buf.count)
        if r <= 0 { break }
        out += buf[0..<r]
    }
    close(fds[0])
    var status: Int32 = 0
    var ru = rusage()
    _ = wait4(pid, &status, 0, &ru)
    let t1 = now()
    precondition(status == 0, "scale-run \(name) exited with status \(status)")
    return (String(decoding: out, as: UTF8.self).trimmingCharacters(), ru, t1 - t0)
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let l = s.last, l == "\n" || l == " " { s.removeLast() }
        return String(s)
    }

    /// The integer after `key=` in a `scale-run` line.
    func field(_ key: String) -> Double {
        for part in split(separator: " ") where part.hasPrefix(key + "=") {
            return Double(part.dropFirst(key.count + 1)) ?? .nan
        }
        return .nan
    }
}

func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }

/// `bench-model scale [-n PROCS] [-p PAGES]`: the three workloads, one line each.
func scale(procs: Int, pages: Int) {
    let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    let small = getenv("RMAP_ARENA_SMALL_PAGES") != nil
    let populate = getenv("RMAP_ARENA_POPULATE").map { String(cString: $0) } != "0"
    let tables = getenv("RMAP_ARENA_SMALL_TABLES").map { "RMAP_ARENA_SMALL_TABLES=\(String(cString: $0)) on 4 KiB host pages, the rest MADV_HUGEPAGE" }
    let layout = small ? "RMAP_ARENA_SMALL_PAGES set (MADV_NOHUGEPAGE: 4 KiB host pages)"
        : tables ?? "frames and page tables on 4 KiB host pages, the rest MADV_HUGEPAGE"
    print("# arena: \(layout); host THP enabled: \(thpMode())"
          + "; populator \(populate ? "on" : "off (RMAP_ARENA_POPULATE=0)")")
    let runs: [(String, Int)] = [("replay", procs), ("replay-100k", max(1, procs / 100)), ("fork-tree", procs)]
    for (name, p) in runs {
        var env: [String] = []
        var path: String?
        if name.hasPrefix("replay") {
            let f = "\(dir)/bench-model-scale-\(getpid())-\(p).trace"
            let text = scaleTrace(procs: p, pages: pages)
            guard let fp = fopen(f, "w") else { fatalError("cannot write \(f)") }
            fputs(text, fp)
            fclose(fp)
            env.append("BENCH_SCALE_TRACE=\(f)")
            path = f
        }
        let (line, ru, wall) = spawnScaleRun(name, procs: p, pages: pages, env: env)
        if let path { unlink(path) }
        let perUnit = line.field("timed_ns") / line.field("units")
        var s = "scale.\(name) procs=\(p) pages=\(pages) wall_s=\(fmt3(Double(wall) / 1e9))"
        s += " user_s=\(fmt3(seconds(ru.ru_utime))) sys_s=\(fmt3(seconds(ru.ru_stime)))"
        s += " maxrss_mib=\(fmt(Double(ru.ru_maxrss) / 1024)) page_faults=\(ru.ru_minflt + ru.ru_majflt)"
        if name == "fork-tree" {
            s += " ns_per_pte_forked=\(fmt(perUnit)) ns_per_pte_exited=\(fmt(line.field("exit_ns") / line.field("exit_units")))"
        } else {
            s += " ns_per_fault=\(fmt(perUnit))"
        }
        print(s)
    }
}

/// The host's THP mode (the bracketed word of transparent_hugepage/enabled):
/// the arena's pages depend on it, and an oracle run may change it for a while.
func thpMode() -> String {
    guard let f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r") else { return "none" }
    defer { fclose(f) }
    var buf = [CChar](repeating: 0, count: 256)
    guard fgets(&buf, 256, f) != nil else { return "unknown" }
    let line = String(cString: buf)
    guard let a = line.firstIndex(of: "["), let b = line.firstIndex(of: "]"), a < b else { return "unknown" }
    return String(line[line.index(after: a)..<b])
}

func fmt3(_ x: Double) -> String { String((x * 1000).rounded() / 1000) }
