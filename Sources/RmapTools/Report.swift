import Rmap
import RmapTrace
import CShims

/// Human-readable reports of the model's state, for the demo and `rmap` tools.
extension Machine {
    /// Processes and their VMAs, each with its anon_vma and AVC count.
    public func reportProcesses(maxProcesses: Int = 8) -> String {
        var s = ""
        let live = processOrder.filter { mmByName[$0] != nil }
        for name in live.prefix(maxProcesses) {
            let m = mmOf(name)!
            let mp = k.mm(m).pointee
            s += "  \(name) (mm \(m)): \(mp.map_count) VMAs, rss anon=\(k.mmCounter(m, .anon)) file=\(k.mmCounter(m, .file)) shmem=\(k.mmCounter(m, .shmem)) swap=\(k.mmCounter(m, .swapents)), hiwater=\(k.getMMHiwaterRss(m)), locked_vm=\(mp.locked_vm)\n"
            var v = k.firstVMA(m)
            while !v.isNone {
                let p = k.vma(v).pointee
                var extra = ""
                if p.anon_vma != 0 { extra += " anon_vma=av\(k.anonVMA(AnonVMAID(p.anon_vma)).pointee.serial) avcs=\(k.avcListLength(v))" }
                if p.vm_flags & VM.locked != 0 { extra += " locked" }
                if p.vm_flags & VM.dontcopy != 0 { extra += " dontfork" }
                if p.vm_flags & VM.wipeonfork != 0 { extra += " wipeonfork" }
                s += "    \(describeVMA(v))\(extra)\n"
                v = k.nextVMA(v)
            }
        }
        if live.count > maxProcesses { s += "  ... and \(live.count - maxProcesses) more processes\n" }
        return s
    }

    /// Frames by kind and mapcount (a census of the frame table).
    public func reportFrames() -> String {
        var hist: [String: [Int: Int]] = [:]
        var folios: [UInt32: (count: Int, pmdMapped: Int)] = [:]
        let d = k.desc(T.frame).pointee
        var i: UInt32 = 1
        var free = 0
        while i < d.bump {
            defer { i += 1 }

            if k.isFree(T.frame, i) { free += 1; continue }
            let pfn = PFN(i)
            let p = k.page(pfn).pointee
            // A page of a large folio counts as its folio's kind (the head's
            // mapping; a tail's mapping word holds folio counters).
            let h = k.page(k.folioOf(pfn)).pointee
            let large = p.flags & (PG.head | PG.tail) != 0 ? " (large folio)" : ""
            let kind: String
            if pfn == k.zeroPFN { kind = "zero page" }
            else if !k.hugeZeroPFN.isNone && k.folioOf(pfn) == k.hugeZeroPFN { kind = "huge zero page" }
            else if h.mapping & PageMapping.flags == PageMapping.anon { kind = "anon" + large }
            else if h.mapping & PageMapping.flags == PageMapping.ksm { kind = "ksm" }
            else if h.flags & PG.swapbacked != 0 { kind = "shmem" + large }
            else if h.mapping != 0 { kind = "file" }
            else { kind = "other" }
            hist[kind, default: [:]][Int(p.mapcount) + 1, default: 0] += 1
            if p.flags & PG.head != 0 && kind != "huge zero page" {
                let order = k.folioOrder(pfn)
                folios[order, default: (0, 0)].count += 1
                if k.folioEntireMapcount(pfn) > 0 { folios[order, default: (0, 0)].pmdMapped += 1 }
            }
        }
        var s = ""
        for kind in ["anon", "anon (large folio)", "file", "shmem", "ksm", "zero page", "huge zero page", "other"] {
            guard let h = hist[kind] else { continue }
            let total = h.values.reduce(0, +)
            // A page's mapcount here is its PTEs (a PMD mapping is the folio's entire mapcount).
            let parts = h.keys.sorted().map { "mapcount \($0): \(h[$0]!)" }.joined(separator: ", ")
            let shared = kind == "zero page" || kind == "huge zero page"
            s += "  \(kind.padding(9)) \(String(total).leftPad(6)) frames  (\(shared ? "shared, not counted" : parts))\n"
        }
        for (order, n) in folios.sorted(by: { $0.key > $1.key }) {
            let size = (4 << order) >= 1024 ? "\((4 << order) / 1024) MiB" : "\(4 << order) KiB"
            s += "  large folios of \(size): \(n.count) (\(n.pmdMapped) mapped by a PMD)\n"
        }
        s += "  free list \(String(free).leftPad(6)) frames, \(d.bump - 1) ever used of \(d.capacity - 1)\n"
        return s
    }

    /// The anon_vma forest: each root, its children by parent, with both
    /// counter schemes, refcount and the AVCs in each interval tree.
    public func reportAnonVMAs(maxLines: Int = 40) -> String {
        let d = k.desc(T.anonVMA).pointee
        var children: [UInt32: [UInt32]] = [:]
        var roots: [UInt32] = []
        var i: UInt32 = 1
        while i < d.bump {
            defer { i += 1 }
            let p = k.anonVMA(AnonVMAID(i)).pointee
            if k.isFree(T.anonVMA, i) { continue }
            if p.parent == i { roots.append(i) } else { children[p.parent, default: []].append(i) }
        }
        var s = ""
        var lines = 0
        func line(_ av: UInt32, _ depth: Int) {
            lines += 1
            if lines > maxLines { return }
            let p = k.anonVMA(AnonVMAID(av)).pointee
            let avcs = IntervalTree.count(root: p.rb_root, k.avcTree)
            s += "  " + String(repeating: "  ", count: depth)
                + "av\(p.serial): refcount=\(p.refcount) degree=\(p.degree) num_children=\(p.num_children) num_active_vmas=\(p.num_active_vmas) avcs=\(avcs)\n"
            for c in children[av] ?? [] { line(c, depth + 1) }
        }
        for r in roots { line(r, 0) }
        if lines > maxLines { s += "  ... \(lines - maxLines) more anon_vmas\n" }
        if roots.isEmpty { s += "  (none)\n" }
        return s
    }

    /// Live objects and the high-water mark of each table.
    public func reportArena() -> String {
        let names: [(String, Int32)] = [("frames", T.frame), ("page-table pages", T.ptPage), ("mm", T.mm),
                                        ("vma", T.vma), ("anon_vma", T.anonVMA), ("anon_vma_chain", T.avc),
                                        ("file", T.file)]
        var s = ""
        for (n, t) in names {
            let d = k.desc(t).pointee
            s += "  \(n.padding(17)) live \(String(d.live).leftPad(7))  high water \(String(d.high_water).leftPad(7))  capacity \(d.capacity - 1)\n"
        }
        s += "  arena reserved \(arena.byteSize >> 20) MiB (MAP_NORESERVE; only touched pages cost memory)\n"
        return s
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
