import Rmap
import RmapTrace
// `rmap oracle-check`: the differential check of the model against the
// kernel oracle (`rmap-oracle`, Sources/RmapOracle) over the kernel corpus
// and over random kernel-only traces, with delta debugging of every
// difference. No Foundation: the oracle runs through posix_spawn, the
// workers are pthreads.
#if canImport(Glibc)
import Glibc
#endif

/// Options of `rmap oracle-check`.
public struct OracleCheckOptions: Sendable {
    /// The kernel oracle binary.
    public var oraclePath: String
    /// Random traces to check (seeds firstSeed ..< firstSeed + count).
    public var count: Int = 500
    public var firstSeed: UInt64 = 1
    /// Operation lines per random trace.
    public var statements: Int = 40
    /// Random traces with the KSM statements too (`rmap gen --kernel-only --ksm`).
    public var ksm = false
    /// Random traces about large folios (`rmap gen --large --kernel-only`):
    /// THP settings, PMD-sized and mTHP folios, their COW, splits and
    /// `thp shrink`. The oracle runs them one at a time.
    public var large = false
    /// With `large`: hugetlb statements too (`rmap gen --large --hugetlb`).
    public var hugetlb = false
    /// Where the minimised traces of differences are written.
    public var outDirectory: String = "oracle-failures"
    /// The corpus folder whose `.trace` files are checked first ("" for none).
    public var corpusDirectory: String = "Tests/Corpus/kernel"
    /// Worker threads, pinned round-robin to the CPUs this process may use
    /// (the oracle pins itself and its trace processes to its first allowed CPU).
    public var jobs: Int = 2
    /// Seconds before an oracle run is killed.
    public var timeoutSeconds: Double = 120
    /// Most candidate traces tried while minimising one difference.
    public var minimiseBudget: Int = 3000
    /// Options given to every oracle run before the trace (such as
    /// `--foreign-hugetlb-resv compensate`).
    public var oracleArguments: [String] = []

    public init(oraclePath: String) { self.oraclePath = oraclePath }
}

/// The totals of one `rmap oracle-check` run.
public struct OracleCheckReport: Sendable {
    public var passed = 0
    public var failed = 0
    public var skipped = 0
    /// Random traces run (the corpus traces not counted) and those of them
    /// the oracle skipped (exit 77, "cannot run here").
    public var randomRun = 0
    public var randomSkipped = 0
    /// Each distinct reason the oracle gave for a skip, with its count.
    public var skipReasons: [(reason: String, count: Int)] = []
    /// The minimised traces written, in check order.
    public var failurePaths: [String] = []
    /// 0 all agreed, 1 a difference, 2 a usage problem, 77 the oracle cannot run here.
    public var status: Int32 = 0
    public var seconds: Double = 0

    /// The last line of the output: `N passed, N failed[, N skipped]`.
    public var summary: String {
        "\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : "")
    }
}

/// One run of a program: its standard output and error, and its exit status
/// (128 + N when killed by signal N).
struct ProgramRun {
    var stdout: String
    var stderr: String
    var status: Int32
    var signal: Int32 = 0
    var timedOut = false
}

/// The model's and the kernel's answer for one trace text.
struct Comparison {
    var model: ProgramRun
    var kernel: ProgramRun
    /// The first lines of the oracle's internal errors before the run kept.
    var internalErrors: [String] = []
    /// Neither side rejected the trace (status 2) and the oracle ran it.
    var accepted: Bool { model.status != 2 && kernel.status != 2 && kernel.status != 77 }
    var differs: Bool { model.stdout != kernel.stdout || model.status != kernel.status }
}

/// Where the oracle binary is when none is given: next to the running
/// executable (the same `swift build` builds both), else the usual build folders.
public func defaultOraclePath() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    var candidates: [String] = []
    if n > 0 {
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if let slash = exe.lastIndex(of: "/") { candidates.append(String(exe[..<slash]) + "/rmap-oracle") }
    }
    candidates += [".build/debug/rmap-oracle", ".build/release/rmap-oracle"]
    return candidates.first { access($0, X_OK) == 0 } ?? candidates[0]
}

/// The differential check (`rmap oracle-check`). Lines for standard output go
/// to `emit` in a deterministic order (corpus by name, then seeds ascending);
/// progress goes to `progress`.
public enum OracleCheck {
    /// What is checked: a corpus file or a random seed.
    enum Item {
        case corpus(name: String, path: String)
        case seed(UInt64)

        var label: String {
            switch self {
            case .corpus(let name, _): return "corpus \(name)"
            case .seed(let s): return "seed \(s)"
            }
        }
        var outName: String {
            switch self {
            case .corpus(let name, _): return name
            case .seed(let s): return "seed-\(s).trace"
            }
        }
    }

    /// The outcome of one item, in the lines it prints.
    struct ItemResult {
        enum Kind { case passed, failed, skipped }
        var kind: Kind
        var lines: [String] = []
        var failurePath: String?
        var skipReason: String?
    }

    public static func run(_ o: OracleCheckOptions, emit: @escaping (String) -> Void,
                           progress: @escaping (String) -> Void = { _ in }) -> OracleCheckReport {
        var report = OracleCheckReport()
        let t0 = now()
        guard access(o.oraclePath, X_OK) == 0 else {
            emit("rmap oracle-check: no kernel oracle at \(o.oraclePath) (build it: swift build --product rmap-oracle)")
            report.status = 2
            return report
        }
        guard let scratch = makeTempDirectory() else {
            emit("rmap oracle-check: cannot create a temporary folder: \(String(cString: strerror(errno)))")
            report.status = 2
            return report
        }
        defer { removeTree(scratch) }

        // Can the oracle run at all? (root, readable PFNs)
        let probe = Worker(index: 0, scratch: scratch, options: o)
        let p = probe.compare("proc P0\nP0 mmap 0x100000000000 1 rw anon-private\nP0 write 0x100000000000\nobserve P0 0x100000000000 1\n")
        if p.kernel.status == 77 {
            let why = p.kernel.stderr.split(separator: "\n").first.map(String.init) ?? "exit status 77"
            emit("rmap oracle-check: the kernel oracle cannot run on this machine (\(why)); nothing checked")
            report.status = 77
            return report
        }

        var items: [Item] = []
        if !o.corpusDirectory.isEmpty {
            guard let names = listTraces(o.corpusDirectory) else {
                emit("rmap oracle-check: cannot read the corpus folder \(o.corpusDirectory): \(String(cString: strerror(errno)))")
                report.status = 2
                return report
            }
            items += names.map { .corpus(name: $0, path: o.corpusDirectory + "/" + $0) }
        }
        if o.count > 0 {
            for i in 0..<UInt64(o.count) { items.append(.seed(o.firstSeed &+ i)) }
        }

        // Workers take items in order; results are printed in item order as
        // soon as every earlier item is done.
        let state = SharedState(count: items.count)
        let jobs = max(1, min(o.jobs, max(1, items.count)))
        let cpus = allowedCPUs()
        var threads: [pthread_t] = []
        for w in 0..<jobs {
            let cpu: Int? = (jobs > 1 && cpus.count > 1) ? cpus[w % cpus.count] : nil
            let worker = Worker(index: w + 1, scratch: scratch, options: o)
            let body = {
                if let cpu { pinCurrentThread(to: cpu) }
                while let i = state.take() {
                    let r = worker.check(items[i])
                    state.finish(i, r, emit: emit, progress: progress)
                }
            }
            if let t = startThread(body) { threads.append(t) } else { body() }
        }
        for t in threads { pthread_join(t, nil) }

        for (i, r) in state.results.enumerated() {
            guard let r else { continue }
            let random: Bool
            if case .seed = items[i] { random = true } else { random = false }
            if random { report.randomRun += 1 }
            switch r.kind {
            case .passed: report.passed += 1
            case .failed: report.failed += 1
            case .skipped:
                report.skipped += 1
                if random { report.randomSkipped += 1 }
                let why = r.skipReason ?? "(no message)"
                if let k = report.skipReasons.firstIndex(where: { $0.reason == why }) {
                    report.skipReasons[k].count += 1
                } else {
                    report.skipReasons.append((why, 1))
                }
            }
            if let f = r.failurePath { report.failurePaths.append(f) }
        }
        report.status = report.failed > 0 ? 1 : 0
        report.seconds = now() - t0
        return report
    }

    /// Results shared by the workers, under one mutex.
    final class SharedState {
        var mutex = pthread_mutex_t()
        var next = 0
        var printed = 0
        var done = 0
        var results: [ItemResult?]

        init(count: Int) {
            results = Array(repeating: nil, count: count)
            pthread_mutex_init(&mutex, nil)
        }
        deinit { pthread_mutex_destroy(&mutex) }

        func take() -> Int? {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            guard next < results.count else { return nil }
            next += 1
            return next - 1
        }

        func finish(_ i: Int, _ r: ItemResult, emit: (String) -> Void, progress: (String) -> Void) {
            pthread_mutex_lock(&mutex)
            defer { pthread_mutex_unlock(&mutex) }
            results[i] = r
            done += 1
            while printed < results.count, let p = results[printed] {
                for l in p.lines { emit(l) }
                printed += 1
            }
            if done % 250 == 0 || done == results.count { progress("oracle-check: \(done)/\(results.count) traces") }
        }
    }

    /// One worker: its own scratch files, so workers never share a file.
    struct Worker {
        var index: Int
        var tracePath: String
        var outPath: String
        var errPath: String
        var options: OracleCheckOptions

        init(index: Int, scratch: String, options: OracleCheckOptions) {
            self.index = index
            tracePath = "\(scratch)/w\(index).trace"
            outPath = "\(scratch)/w\(index).out"
            errPath = "\(scratch)/w\(index).err"
            self.options = options
        }

        /// Both sides on one trace text. An internal error of the oracle
        /// (status 3: a system call of its own failed, a worker died) is not
        /// the kernel's answer: the oracle is run up to twice more, and the
        /// messages of the failed attempts are kept.
        func compare(_ text: String) -> Comparison {
            _ = writeFile(tracePath, text)
            let s = replayFile(path: tracePath)
            let model = ProgramRun(stdout: s.stdout.map { $0 + "\n" } ?? "",
                                   stderr: s.stderr.map { $0 + "\n" }.joined(), status: s.status)
            var internalErrors: [String] = []
            var kernel = runOracle()
            while kernel.status == 3 && internalErrors.count < 2 {
                internalErrors.append(firstLine(kernel.stderr))
                kernel = runOracle()
            }
            return Comparison(model: model, kernel: kernel, internalErrors: internalErrors)
        }

        func runOracle() -> ProgramRun {
            runProgram(options.oraclePath, options.oracleArguments + [tracePath], stdoutPath: outPath, stderrPath: errPath,
                       timeout: options.timeoutSeconds)
        }

        func check(_ item: Item) -> ItemResult {
            let text: String
            switch item {
            case .corpus(_, let path):
                guard let t = readText(path) else {
                    return ItemResult(kind: .failed, lines: ["FAIL \(item.label): cannot read \(path)"])
                }
                text = t
            case .seed(let seed):
                var g = TraceGenerator(seed: seed, kernelOnly: true)
                g.ksm = options.ksm
                g.large = options.large
                g.hugetlb = options.hugetlb
                text = g.generate(statements: max(1, options.statements))
            }
            let c = compare(text)
            // runs the machine disturbed (its reclaim, khugepaged), each run again by the oracle itself
            let voided = c.kernel.stderr.split(separator: "\n").filter { $0.hasPrefix("rmap-oracle: run ") && $0.contains(" void: ") }
            let notes = c.internalErrors.map { "note \(item.label): the oracle failed internally and was run again: \($0)" }
                + voided.map { "note \(item.label): \($0.dropFirst("rmap-oracle: ".count))" }
            if c.kernel.status == 77 {
                return ItemResult(kind: .skipped, lines: notes + ["skipped \(item.label): \(skipLine(c.kernel.stderr))"],
                                  skipReason: skipLine(c.kernel.stderr))
            }
            guard c.differs else { return ItemResult(kind: .passed, lines: notes) }
            // Does the difference reproduce? (The kernel side is a live system.)
            var reproduced = 1
            for _ in 0..<2 where compare(text).differs { reproduced += 1 }
            var r = reproduced > 1 ? minimiseAndWrite(item, text: text, first: c)
                                   : writeUnreproduced(item, text: text, first: c)
            r.lines = notes + r.lines
            return r
        }

        func origin(_ item: Item) -> String {
            switch item {
            case .corpus(let name, _): return "corpus trace \(name)"
            case .seed(let s): return "seed \(s) (rmap gen --kernel-only\(options.ksm ? " --ksm" : "")\(options.large ? " --large" : "")\(options.hugetlb ? " --hugetlb" : "") --seed \(s) --statements \(options.statements))"
            }
        }

        /// The header of a failure file: always `headerLineCount` lines.
        func header(_ item: Item, _ what: String, _ c: Comparison) -> [String] {
            let h = [
                "# rmap oracle-check: the model and the kernel disagree on this trace",
                "# origin: \(origin(item)); \(what)",
                "# model  (exit \(c.model.status)): \(oneLine(c.model.stdout))",
                "# kernel (exit \(c.kernel.status)): \(oneLine(c.kernel.stdout))",
                "# model stderr: \(oneLine(c.model.stderr))",
                "# kernel stderr: \(oneLine(c.kernel.stderr))",
            ]
            precondition(h.count == Worker.headerLineCount)
            return h
        }

        /// Writes a failure file; the lines `rmap oracle-check` prints for it.
        func writeFailure(_ item: Item, _ fileText: String, _ c: Comparison, flaky: Bool) -> ItemResult {
            mkdir(options.outDirectory, 0o755)
            let path = options.outDirectory + "/" + item.outName
            let tag = flaky ? "FAIL (did not reproduce)" : "FAIL"
            var lines = ["\(tag) \(item.label): \(path)"]
            if !writeFile(path, fileText) {
                lines = ["\(tag) \(item.label): cannot write \(path): \(String(cString: strerror(errno)))"]
                lines += fileText.split(separator: "\n").map { "  " + $0 }
            } else {
                lines.append("  model  (exit \(c.model.status)): \(oneLine(c.model.stdout))")
                lines.append("  kernel (exit \(c.kernel.status)): \(oneLine(c.kernel.stdout))")
                if c.kernel.status != 0 && c.kernel.status != 1 {
                    lines.append("  kernel stderr: \(oneLine(c.kernel.stderr))")
                }
            }
            return ItemResult(kind: .failed, lines: lines, failurePath: path)
        }

        /// A difference that does not reproduce (seen once, not in two reruns,
        /// or gone from the minimised trace): the whole trace, not minimised.
        func writeUnreproduced(_ item: Item, text: String, first: Comparison) -> ItemResult {
            let h = header(item, "not minimised: the difference did not reproduce reliably; line numbers "
                           + "below count without these \(Worker.headerLineCount) header lines", first)
            return writeFailure(item, h.joined(separator: "\n") + "\n" + text, first, flaky: true)
        }

        /// Delta debugging of a difference, then the minimised trace with its
        /// header in the output folder.
        func minimiseAndWrite(_ item: Item, text: String, first: Comparison) -> ItemResult {
            var original = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                .filter { !$0.isEmpty }
            // Large-page traces keep their first `thp enabled` line: without
            // any `thp` setting a trace means another experiment (no large
            // folio at all), and the minimisation would drift to whatever
            // difference that one shows.
            var pinned: [String] = []
            if options.large, let i = original.firstIndex(where: { $0.hasPrefix("thp enabled ") }) {
                pinned = [original.remove(at: i)]
            }
            // And its hugetlb pool (without it every hugetlb mmap is ENOMEM).
            if options.hugetlb, let i = original.firstIndex(where: { $0.hasPrefix("hugetlb ") }) {
                pinned.append(original.remove(at: i))
            }
            // An internal error of the oracle (3) counts as a reproduction only
            // when that is what the original trace gave.
            let allowInternal = first.kernel.status == 3
            var budget = options.minimiseBudget
            func stillDiffers(_ lines: [String]) -> Bool {
                guard budget > 0, !lines.isEmpty else { return false }
                budget -= 1
                let c = compare(Worker.body(pinned + lines, headerLines: 0))
                guard c.accepted, c.differs else { return false }
                return allowInternal || c.kernel.status != 3
            }
            // Delta debugging (Shrink.swift), comment lines first in one go (they
            // only move line numbers; `original` has no blank lines).
            var cur = deltaDebug(original, noise: { $0.trimmingLeadingBlanks.hasPrefix("#") },
                                 stillFails: stillDiffers)
            // Then single lines, the targets of `observe` lines, and pairs, to a
            // fixpoint (fewer targets can free the lines of a process only observed).
            var changed = true
            while changed && budget > 0 {
                changed = false
                var i = cur.count - 1
                while i >= 0 && budget > 0 {
                    var c = cur
                    c.remove(at: i)
                    if stillDiffers(c) { cur = c; changed = true }
                    i -= 1
                }
                if changed { continue }
                // Targets of an `observe` line, one at a time (so that the
                // processes only observed can go too).
                for i in cur.indices.reversed() where budget > 0 {
                    guard let observed = Worker.observeTargets(cur[i]) else { continue }
                    let head = observed.head
                    var targets = observed.targets
                    var t = targets.count - 1
                    while targets.count > 1 && t >= 0 && budget > 0 {
                        var fewer = targets
                        fewer.remove(at: t)
                        var c = cur
                        c[i] = head + fewer.joined(separator: ", ")
                        if stillDiffers(c) { cur = c; targets = fewer; changed = true }
                        t -= 1
                    }
                }
                if changed { continue }
                pairs: for a in stride(from: cur.count - 1, through: 1, by: -1) {
                    for b in stride(from: a - 1, through: 0, by: -1) {
                        guard budget > 0 else { break pairs }
                        var c = cur
                        c.remove(at: a)
                        c.remove(at: b)
                        if stillDiffers(c) { cur = c; changed = true; break pairs }
                    }
                }
            }

            // The final outputs, with the header's lines in place so that the
            // line numbers in the header are the file's; and does it reproduce?
            cur = pinned + cur
            let final = Worker.body(cur, headerLines: Worker.headerLineCount)
            var last = compare(final)
            var reproduced = last.differs ? 1 : 0
            for _ in 0..<2 {
                let c = compare(final)
                if c.differs { reproduced += 1; last = c }
            }
            if reproduced == 0 {
                return writeUnreproduced(item, text: text, first: first)
            }
            let h = header(item, "minimised from \(original.count + pinned.count) to \(cur.count) lines; the difference "
                           + "reproduced \(reproduced)/3 on the minimised trace", last)
            return writeFailure(item, h.joined(separator: "\n") + "\n" + cur.joined(separator: "\n") + "\n",
                                last, flaky: false)
        }

        static let headerLineCount = 6

        /// The trace text of `lines`, after `headerLines` comment lines.
        static func body(_ lines: [String], headerLines: Int) -> String {
            String(repeating: "#\n", count: headerLines) + lines.joined(separator: "\n") + "\n"
        }

        /// The targets of an `observe` line (nil for any other line).
        /// An `observe` line's statement head (`observe ` or `observe contents `)
        /// and its targets, each as `P ADDR PAGES`; nil for any other line.
        static func observeTargets(_ line: String) -> (head: String, targets: [String])? {
            let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = code.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.first == "observe" else { return nil }
            var rest = code.drop { $0 == " " || $0 == "\t" }.dropFirst("observe".count)
            var head = "observe "
            // `observe contents P ...` (a process named contents is followed by a number).
            if words.count > 2, words[1] == "contents", let c = words[2].first, !c.isNumber {
                rest = rest.drop { $0 == " " || $0 == "\t" }.dropFirst("contents".count)
                head = "observe contents "
            }
            return (head, rest.split(separator: ",").map {
                $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ")
            })
        }
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// The oracle's reason for a skip: its `skipped:` line (notes such as
/// `--foreign-hugetlb-resv compensate`'s may come before it), else the first.
func skipLine(_ s: String) -> String {
    s.split(separator: "\n").first { $0.contains("skipped:") }.map(String.init) ?? firstLine(s)
}

func firstLine(_ s: String) -> String {
    s.split(separator: "\n").first.map(String.init) ?? "(no message)"
}

/// Several lines as one (` | ` between them), for headers and reports.
func oneLine(_ s: String) -> String {
    let t = s.split(separator: "\n").joined(separator: " | ")
    return t.isEmpty ? "(none)" : t
}

extension String {
    var trimmingLeadingBlanks: Substring { drop { $0 == " " || $0 == "\t" } }
}

// MARK: - Processes, threads and files (Glibc)

/// Runs `path args` with standard input from /dev/null and standard output
/// and error into the given files; kills it (SIGTERM, then SIGKILL) after
/// `timeout` seconds.
func runProgram(_ path: String, _ args: [String], stdoutPath: String, stderrPath: String,
                timeout: Double) -> ProgramRun {
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&fa, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_addopen(&fa, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &fa, nil, argv, environ)
    guard rc == 0 else {
        return ProgramRun(stdout: "", stderr: "cannot run \(path): \(String(cString: strerror(rc)))\n", status: 127)
    }
    var st: Int32 = 0
    let deadline = OracleCheck.now() + timeout
    var timedOut = false
    var pause: UInt32 = 100  // µs, doubling up to 5 ms
    while true {
        let w = waitpid(pid, &st, WNOHANG)
        if w == pid { break }
        if w < 0 && errno != EINTR { st = 0x7f; break }
        if !timedOut && OracleCheck.now() > deadline {
            timedOut = true
            kill(pid, SIGTERM)
            usleep(2_000_000)
            kill(pid, SIGKILL)
        }
        usleep(pause)
        pause = min(pause * 2, 5000)
    }
    var r = ProgramRun(stdout: readText(stdoutPath) ?? "", stderr: readText(stderrPath) ?? "", status: 0)
    if st & 0x7f == 0 {
        r.status = (st >> 8) & 0xff
    } else {
        r.signal = st & 0x7f
        r.status = 128 + r.signal
        r.stderr += "(killed by signal \(r.signal))\n"
    }
    if timedOut {
        r.timedOut = true
        r.stderr += "(timed out after \(Int(timeout)) s)\n"
    }
    return r
}

func readText(_ path: String) -> String? {
    guard case .success(let b) = readFileBytes(path) else { return nil }
    return String(decoding: b, as: UTF8.self)
}

func writeFile(_ path: String, _ text: String) -> Bool {
    guard let f = fopen(path, "wb") else { return false }
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    return fclose(f) == 0 && n == bytes.count
}

func makeTempDirectory() -> String? {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array((base + "/rmap-oracle-check.XXXXXX").utf8CString)
    return template.withUnsafeMutableBufferPointer { b in
        mkdtemp(b.baseAddress!).map { String(cString: $0) }
    }
}

/// Removes the files of a flat folder, then the folder.
func removeTree(_ dir: String) {
    if let d = opendir(dir) {
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name != "." && name != ".." { unlink(dir + "/" + name) }
        }
        closedir(d)
    }
    rmdir(dir)
}

/// The `.trace` files of a folder (not recursive), sorted by name.
func listTraces(_ dir: String) -> [String]? {
    guard let d = opendir(dir) else { return nil }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name.hasSuffix(".trace") { names.append(name) }
    }
    return names.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
}

/// sched_getaffinity / sched_setaffinity (glibc declares them only under
/// _GNU_SOURCE, which the Glibc module is not built with): looked up once.
typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32
let affinityCalls: (get: AffinityCall, set: AffinityCall)? = {
    guard let h = dlopen(nil, RTLD_NOW), let g = dlsym(h, "sched_getaffinity"),
          let s = dlsym(h, "sched_setaffinity") else { return nil }
    return (unsafeBitCast(g, to: AffinityCall.self), unsafeBitCast(s, to: AffinityCall.self))
}()
let cpuSetBytes = 128  // sizeof(cpu_set_t)

/// The CPUs this process may run on.
func allowedCPUs() -> [Int] {
    guard let calls = affinityCalls else { return [] }
    var set = [UInt8](repeating: 0, count: cpuSetBytes)
    guard set.withUnsafeMutableBytes({ calls.get(0, cpuSetBytes, $0.baseAddress!) }) == 0 else { return [] }
    return (0..<(cpuSetBytes * 8)).filter { set[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
}

/// Pins the calling thread to one CPU. The oracle pins itself to the first
/// CPU it may use, so each worker's oracle runs get that worker's CPU.
func pinCurrentThread(to cpu: Int) {
    guard let calls = affinityCalls, cpu < cpuSetBytes * 8 else { return }
    var set = [UInt8](repeating: 0, count: cpuSetBytes)
    set[cpu / 8] |= 1 << UInt8(cpu % 8)
    _ = set.withUnsafeMutableBytes { calls.set(0, cpuSetBytes, $0.baseAddress!) }
}

/// Starts a pthread running `body`; nil if it cannot be created.
func startThread(_ body: @escaping () -> Void) -> pthread_t? {
    final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
    let arg = Unmanaged.passRetained(Box(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { p in
        let box = Unmanaged<Box>.fromOpaque(p!).takeRetainedValue()
        box.body()
        return nil
    }, arg)
    if rc != 0 {
        Unmanaged<Box>.fromOpaque(arg).release()
        return nil
    }
    return t
}
