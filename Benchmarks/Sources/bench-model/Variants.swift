// bench-model variants: the three reverse-map designs (anon_vma, PV lists,
// full scan) compared on walk time, fork and exit time and metadata bytes as
// sharing grows (issue #6). `make bench-variants`; `--svg DIR` also writes
// the curves (make pictures).
import BenchSupport
import Glibc
import Rmap
import RmapTrace
import RmapTools
import RmapVariants

/// ns per call of `body`: calibrated to about 20 ms a round, the median of
/// `reps` rounds (after one warm-up round).
func perCall(_ body: () -> Int) -> Double {
    var calls = 1
    while true {
        let t0 = now()
        var s = 0
        for _ in 0..<calls { s &+= body() }
        let dt = now() - t0
        if dt >= 20_000_000 || calls >= 1 << 24 { break }
        calls = dt == 0 ? calls * 16 : max(calls * 2, Int(Double(calls) * 22_000_000 / Double(dt)))
    }
    var xs: [Double] = []
    for _ in 0..<reps {
        var s = 0
        let t0 = now()
        for _ in 0..<calls { s &+= body() }
        let dt = now() - t0
        precondition(s >= 0)
        xs.append(Double(dt) / Double(calls))
    }
    return median(xs)
}

/// Right-aligned columns.
func row(_ cells: [String], _ widths: [Int]) -> String {
    zip(cells, widths).map { c, w in c.count >= w ? c : String(repeating: " ", count: w - c.count) + c }
        .joined(separator: "  ")
}

func sci(_ x: Double) -> String { x >= 100 ? String(Int(x.rounded())) : fmt(x) }

/// The measured points the pictures draw.
struct Curve { var name: String; var points: [(Double, Double)] }
var curves: [String: [Curve]] = [:]

func addPoint(_ chart: String, _ name: String, _ x: Double, _ y: Double) {
    var cs = curves[chart] ?? []
    if let i = cs.firstIndex(where: { $0.name == name }) { cs[i].points.append((x, y)) } else {
        cs.append(Curve(name: name, points: [(x, y)]))
    }
    curves[chart] = cs
}

let sharings = [1, 10, 100, 1_000]

func variants(svgDir: String?) {
    // MARK: walk
    print("== rmap walk of one anonymous page shared by a fork tree of N processes (ns per walk; per mapping in brackets)")
    print("   anon_vma: rmap_walk + page_vma_mapped_walk per VMA; PV: the page's list, PTE read per entry (pmap level);")
    print("   PV+find_vma: the same list behind the rmap walk API (find_vma per entry); scan: every PTE of every process")
    let w = [7, 18, 18, 18, 18]
    print(row(["N", "anon_vma", "PV", "PV+find_vma", "scan"], w))
    for n in sharings {
        let m = Scenario.machine(pages: 1, processes: n)
        let mms = Scenario.forkTree(m, processes: n, pages: 1)
        let f = m.benchFrame(mm: mms[0], addr: base)
        precondition(m.enablePVLists())
        let a = perCall { m.benchWalkMapped(frame: f, design: .anonVMA) }
        let p = perCall { m.benchPVWalkMapped(frame: f) }
        let pf = perCall { m.benchWalkMapped(frame: f, design: .pvLists) }
        let s = perCall { m.benchWalkMapped(frame: f, design: .fullScan) }
        for d in RmapDesign.allCases { precondition(m.benchWalkMapped(frame: f, design: d) == n) }
        precondition(m.benchPVWalkMapped(frame: f) == n)
        let cell = { (x: Double) in "\(sci(x)) [\(fmt(x / Double(n)))]" }
        print(row(["\(n)", cell(a), cell(p), cell(pf), cell(s)], w))
        addPoint("walk", "anon_vma", Double(n), a / Double(n))
        addPoint("walk", "PV lists", Double(n), p / Double(n))
        addPoint("walk", "PV lists + find_vma", Double(n), pf / Double(n))
        addPoint("walk", "full scan", Double(n), s / Double(n))
    }

    print("\n== the same tree after every child wrote the page (COW): the parent's frame is mapped once (ns per walk)")
    print("   anon_vma still visits every VMA of the tree (VMAs visited in brackets); PV and scan find the one PTE")
    print(row(["N", "anon_vma", "PV", "PV+find_vma", "scan"], w))
    for n in sharings {
        let m = Scenario.machine(pages: 1, processes: n)
        let mms = Scenario.forkTree(m, processes: n, pages: 1)
        for c in mms.dropFirst() { precondition(m.benchFault(mm: c, addr: base, pages: 1, write: true) == 1) }
        let f = m.benchFrame(mm: mms[0], addr: base)
        precondition(m.enablePVLists())
        for d in RmapDesign.allCases { precondition(m.benchWalkMapped(frame: f, design: d) == 1) }
        let visited = m.benchWalk(frame: f, design: .anonVMA)
        let a = perCall { m.benchWalkMapped(frame: f, design: .anonVMA) }
        let p = perCall { m.benchPVWalkMapped(frame: f) }
        let pf = perCall { m.benchWalkMapped(frame: f, design: .pvLists) }
        let s = perCall { m.benchWalkMapped(frame: f, design: .fullScan) }
        print(row(["\(n)", "\(sci(a)) [\(visited)]", sci(p), sci(pf), sci(s)], w))
        addPoint("cow", "anon_vma", Double(n), a)
        addPoint("cow", "PV lists", Double(n), p)
        addPoint("cow", "full scan", Double(n), s)
    }

    print("\n== the scan's cost is the machine's mapped memory: a page shared by 10 processes, plus U unrelated")
    print("   processes with 1,024 written pages each (ns per walk)")
    let w3 = [7, 12, 12, 12, 14]
    print(row(["U", "PTEs", "anon_vma", "PV", "scan"], w3))
    for u in [0, 10, 100] {
        let m = Scenario.machine(pages: 1024 * max(u, 1), processes: u + 10)
        for _ in 0..<u { _ = Scenario.populated(m, pages: 1024) }
        let mms = Scenario.forkTree(m, processes: 10, pages: 1)
        let f = m.benchFrame(mm: mms[0], addr: base)
        precondition(m.enablePVLists())
        let ptes = m.rmapMetadata().mappedPTEs
        let a = perCall { m.benchWalkMapped(frame: f, design: .anonVMA) }
        let p = perCall { m.benchPVWalkMapped(frame: f) }
        let s = perCall { m.benchWalkMapped(frame: f, design: .fullScan) }
        print(row(["\(u)", "\(ptes)", sci(a), sci(p), sci(s)], w3))
    }

    // MARK: fork and exit
    let pages = 1_024
    print("\n== fork and exit as sharing grows: a fork tree of N processes sharing \(pages) written pages")
    print("   fork: one more child of the newest process (ns per PTE copied);")
    print("   exit: of the oldest process (its PV entries are at the tails of the lists) and of the newest (ns per PTE)")
    let w4 = [7, 12, 12, 14, 14, 14, 14]
    print(row(["N", "fork anon", "fork PV", "exit-old anon", "exit-old PV", "exit-new anon", "exit-new PV"], w4))
    for n in sharings {
        var cells = ["\(n)"]
        var forkNs: [Bool: Double] = [:], oldNs: [Bool: Double] = [:], newNs: [Bool: Double] = [:]
        for pv in [false, true] {
            let m = Scenario.machine(pages: pages, processes: n + 8)
            var mms = Scenario.forkTree(m, processes: n, pages: pages)
            if pv { precondition(m.enablePVLists()) }
            var xs: [Double] = []
            for _ in 0...reps {
                let t0 = now()
                let c = m.benchFork(mm: mms[n - 1])
                let t1 = now()
                precondition(!c.isNone)
                m.benchExit(mm: c)
                xs.append(Double(t1 - t0) / Double(pages))
            }
            forkNs[pv] = median(Array(xs.dropFirst()))
            // exit of the newest: fork a child of the newest, time its exit.
            xs = []
            for _ in 0...reps {
                let c = m.benchFork(mm: mms[n - 1])
                let t0 = now()
                m.benchExit(mm: c)
                xs.append(Double(now() - t0) / Double(pages))
            }
            newNs[pv] = median(Array(xs.dropFirst()))
            // exit of the oldest: once per rebuilt tree (it is gone after).
            xs = []
            for r in 0...reps {
                if r > 0 {
                    // Rebuilt with the PV lists maintained: the oldest's
                    // entries go in first, so they end up at the tails.
                    for mm in mms { m.benchExit(mm: mm) }
                    mms = Scenario.forkTree(m, processes: n, pages: pages)
                }
                let t0 = now()
                m.benchExit(mm: mms[0])
                xs.append(Double(now() - t0) / Double(pages))
                mms[0] = Scenario.populated(m, pages: 1)  // a stand-in, so the teardown loop stays uniform
            }
            oldNs[pv] = median(Array(xs.dropFirst()))
            if pv { precondition(m.pvCheck().isEmpty, "PV lists wrong after the fork/exit runs") }
        }
        cells += [fmt(forkNs[false]!), fmt(forkNs[true]!), fmt(oldNs[false]!), fmt(oldNs[true]!),
                  fmt(newNs[false]!), fmt(newNs[true]!)]
        print(row(cells, w4))
        addPoint("fork", "fork, anon_vma", Double(n), forkNs[false]!)
        addPoint("fork", "fork, PV lists", Double(n), forkNs[true]!)
        addPoint("fork", "exit of the oldest, anon_vma", Double(n), oldNs[false]!)
        addPoint("fork", "exit of the oldest, PV lists", Double(n), oldNs[true]!)
    }

    // MARK: metadata
    print("\n== reverse-map bytes per mapping (per PTE that maps a page): a fork tree of N processes sharing P pages")
    print("   anon_vma: live anon_vmas x \(RmapMetadata.anonVMARecordBytes) B + AVCs x \(RmapMetadata.avcRecordBytes) B (the model's records);"
          + " PV: \(RmapMetadata.pvEntryRecordBytes) B an entry (+4 B of list head in every frame); scan: 0")
    // This kernel's object sizes, when /proc/slabinfo is readable.
    let slab = slabObjectSizes()
    let kav = slab["anon_vma"], kavc = slab["anon_vma_chain"]
    if let kav, let kavc {
        print("   kernel B/map: the same counts at this kernel's slab object sizes (/proc/slabinfo: anon_vma \(kav) B, anon_vma_chain \(kavc) B)")
    }
    let w5 = [7, 6, 10, 10, 8, 14, 14, 10]
    print(row(["N", "P", "mappings", "anon_vmas", "AVCs", "anon_vma B/map", "kernel B/map", "PV B/map"], w5))
    for p in [1, 16, 1_024] {
        for n in sharings {
            let m = Scenario.machine(pages: p, processes: n)
            _ = Scenario.forkTree(m, processes: n, pages: p)
            precondition(m.enablePVLists())
            let md = m.rmapMetadata()
            precondition(md.pvEntries == md.mappedPTEs && md.mappedPTEs == n * p)
            let a = Double(md.anonVMABytes) / Double(md.mappedPTEs)
            let v = Double(md.pvEntryBytes) / Double(md.mappedPTEs)
            var kb = "-"
            if let kav, let kavc { kb = fmt(Double(md.anonVMAs * kav + md.avcs * kavc) / Double(md.mappedPTEs)) }
            print(row(["\(n)", "\(p)", "\(md.mappedPTEs)", "\(md.anonVMAs)", "\(md.avcs)", fmt(a), kb, fmt(v)], w5))
            addPoint("bytes", "anon_vma, P=\(p)", Double(n), a)
            if p == 1 { addPoint("bytes", "PV lists (any P)", Double(n), v) }
        }
    }
    if let dir = svgDir { writeSVGs(dir) }
}

/// objsize of each slab cache in /proc/slabinfo (empty when unreadable).
func slabObjectSizes() -> [String: Int] {
    guard let f = fopen("/proc/slabinfo", "r") else { return [:] }
    defer { fclose(f) }
    var out: [String: Int] = [:]
    var buf = [CChar](repeating: 0, count: 1024)
    while fgets(&buf, Int32(buf.count), f) != nil {
        let fields = String(cString: buf).split(separator: " ", omittingEmptySubsequences: true)
        // name active_objs num_objs objsize ...
        if fields.count > 3, let size = Int(fields[3]) { out[String(fields[0])] = size }
    }
    return out
}

// MARK: pictures

func writeSVGs(_ dir: String) {
    let charts: [(String, String, String)] = [
        ("walk", "rmap walk per mapping (ns), page shared by N processes", "ns per mapping"),
        ("cow", "walk of a page mapped once after N-1 COWs (ns per walk)", "ns per walk"),
        ("fork", "fork and exit per PTE (ns), 1,024 pages shared by N", "ns per PTE"),
        ("bytes", "reverse-map bytes per mapping, N processes sharing P pages", "bytes per mapping"),
    ]
    for (key, title, ylabel) in charts {
        guard let cs = curves[key] else { continue }
        let path = "\(dir)/variants-\(key).svg"
        let svg = lineChart(title: title, xlabel: "N (processes sharing the page)", ylabel: ylabel, curves: cs)
        guard let f = fopen(path, "w") else { fatalError("cannot write \(path)") }
        fputs(svg, f)
        fclose(f)
        print("wrote \(path)")
    }
}

/// A log-log line chart as plain SVG.
func lineChart(title: String, xlabel: String, ylabel: String, curves: [Curve]) -> String {
    let W = 720.0, H = 440.0, L = 80.0, R = 250.0, T = 40.0, B = 60.0
    let xs = curves.flatMap { $0.points.map { $0.0 } }, ys = curves.flatMap { $0.points.map { max($0.1, 1e-3) } }
    let x0 = floor(log10(xs.min()!)), x1 = max(ceil(log10(xs.max()!)), x0 + 1)
    let y0 = floor(log10(ys.min()!)), y1 = max(ceil(log10(ys.max()!)), y0 + 1)
    func px(_ x: Double) -> Double { L + (log10(x) - x0) / (x1 - x0) * (W - L - R) }
    func py(_ y: Double) -> Double { H - B - (log10(max(y, 1e-3)) - y0) / (y1 - y0) * (H - T - B) }
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]
    var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    s += "<text x=\"\(L)\" y=\"22\" font-size=\"14\">\(title)</text>\n"
    var e = x0
    while e <= x1 {
        let x = px(pow(10, e))
        s += "<line x1=\"\(x)\" y1=\"\(T)\" x2=\"\(x)\" y2=\"\(H - B)\" stroke=\"#ddd\"/>\n"
        s += "<text x=\"\(x)\" y=\"\(H - B + 16)\" text-anchor=\"middle\">\(Int(pow(10, e)))</text>\n"
        e += 1
    }
    e = y0
    while e <= y1 {
        let y = py(pow(10, e))
        s += "<line x1=\"\(L)\" y1=\"\(y)\" x2=\"\(W - R)\" y2=\"\(y)\" stroke=\"#ddd\"/>\n"
        let v = pow(10, e)
        s += "<text x=\"\(L - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(v >= 1 ? String(Int(v)) : String(v))</text>\n"
        e += 1
    }
    s += "<text x=\"\((L + W - R) / 2)\" y=\"\(H - 20)\" text-anchor=\"middle\">\(xlabel) (log)</text>\n"
    s += "<text transform=\"translate(18,\((T + H - B) / 2)) rotate(-90)\" text-anchor=\"middle\">\(ylabel) (log)</text>\n"
    for (i, c) in curves.enumerated() {
        let col = colors[i % colors.count]
        let pts = c.points.map { "\(px($0.0)),\(py($0.1))" }.joined(separator: " ")
        s += "<polyline fill=\"none\" stroke=\"\(col)\" stroke-width=\"2\" points=\"\(pts)\"/>\n"
        for p in c.points { s += "<circle cx=\"\(px(p.0))\" cy=\"\(py(p.1))\" r=\"3\" fill=\"\(col)\"/>\n" }
        let ly = T + 10 + Double(i) * 20
        s += "<line x1=\"\(W - R + 15)\" y1=\"\(ly)\" x2=\"\(W - R + 35)\" y2=\"\(ly)\" stroke=\"\(col)\" stroke-width=\"2\"/>\n"
        s += "<text x=\"\(W - R + 40)\" y=\"\(ly + 4)\">\(c.name)</text>\n"
    }
    return s + "</svg>\n"
}
