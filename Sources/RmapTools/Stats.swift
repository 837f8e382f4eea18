import Rmap
import RmapTrace
import CShims

/// Statistics of a model state for `rmap stats`: what the rmap costs in
/// memory and in walk work. The walk figures answer the question the
/// anon_vma design is judged by: how many VMAs an rmap walk of a frame
/// visits (rmap_one calls) against how many of them really map it.
public struct ModelStats: Equatable, Sendable {
    /// One arena table: live objects, high-water mark, capacity, bytes of the live objects.
    public struct Table: Equatable, Sendable {
        public let name: String
        public let live: UInt32
        public let highWater: UInt32
        public let capacity: UInt32
        public let bytes: UInt64
    }
    public var tables: [Table] = []
    /// Processes alive, and their VMAs.
    public var processes = 0
    public var vmas = 0
    /// VMAs with an anon_vma, and the AVCs that link them (anon_vma_chain).
    public var anonVMAs = 0
    public var anonVMARoots = 0
    /// Depth of the deepest anon_vma below its root (a root is 0).
    public var maxAnonVMADepth = 0
    public var maxAVCsPerVMA = 0
    public var avcs = 0
    /// Frames mapped by at least one PTE, by kind ("anon", "file", "shmem", "ksm").
    public var mappedFrames: [String: Int] = [:]
    /// PTEs that map those frames (the sum of their mapcounts).
    public var mappings = 0
    /// rmap_one calls of one walk per mapped frame, summed; and the calls
    /// that found a PTE of the frame (page_vma_mapped_walk true).
    public var walkVisits = 0
    public var walkHits = 0
    /// The frame whose walk visited the most VMAs, with its visits and hits.
    public var worstWalk: (pfn: UInt32, visits: Int, hits: Int) = (0, 0, 0)
    /// anon_vma_clone() reuses of an anon_vma a VMA still used (the `degree`
    /// history's CVE-2022-42703 pattern).
    public var reusedInUse = 0

    public static func == (a: ModelStats, b: ModelStats) -> Bool {
        a.tables == b.tables && a.processes == b.processes && a.vmas == b.vmas && a.anonVMAs == b.anonVMAs
            && a.anonVMARoots == b.anonVMARoots && a.maxAnonVMADepth == b.maxAnonVMADepth
            && a.maxAVCsPerVMA == b.maxAVCsPerVMA && a.avcs == b.avcs && a.mappedFrames == b.mappedFrames
            && a.mappings == b.mappings && a.walkVisits == b.walkVisits && a.walkHits == b.walkHits
            && a.worstWalk == b.worstWalk && a.reusedInUse == b.reusedInUse
    }
}

extension Machine {
    /// Gathers `ModelStats` (one rmap walk per mapped frame; nothing changes).
    public func stats() -> ModelStats {
        var s = ModelStats()
        let names: [(String, Int32)] = [("frames", T.frame), ("page-table pages", T.ptPage), ("mm", T.mm),
                                        ("vma", T.vma), ("anon_vma", T.anonVMA), ("anon_vma_chain", T.avc),
                                        ("file", T.file), ("ksm rmap_item", T.ksmItem), ("ksm stable node", T.ksmNode)]
        for (n, t) in names {
            let d = k.desc(t).pointee
            s.tables.append(.init(name: n, live: d.live, highWater: d.high_water, capacity: d.capacity - 1,
                                  bytes: UInt64(d.live) * UInt64(d.record_size)))
        }
        for name in processOrder {
            guard let m = mmOf(name) else { continue }
            s.processes += 1
            var v = k.firstVMA(m)
            while !v.isNone {
                s.vmas += 1
                if k.vma(v).pointee.anon_vma != 0 { s.maxAVCsPerVMA = max(s.maxAVCsPerVMA, k.avcListLength(v)) }
                v = k.nextVMA(v)
            }
        }
        // The anon_vma forest: depth by following parents (a root is its own parent).
        let ad = k.desc(T.anonVMA).pointee
        var i: UInt32 = 1
        while i < ad.bump {
            defer { i += 1 }
            let p = k.anonVMA(AnonVMAID(i)).pointee
            if k.isFree(T.anonVMA, i) { continue }  // free
            s.anonVMAs += 1
            s.avcs += IntervalTree.count(root: p.rb_root, k.avcTree)
            if p.parent == i { s.anonVMARoots += 1; continue }
            var depth = 0
            var a = i
            while k.anonVMA(AnonVMAID(a)).pointee.parent != a && depth <= Int(ad.bump) {
                a = k.anonVMA(AnonVMAID(a)).pointee.parent
                depth += 1
            }
            s.maxAnonVMADepth = max(s.maxAnonVMADepth, depth)
        }
        // One walk per mapped frame.
        let fd = k.desc(T.frame).pointee
        i = 1
        while i < fd.bump {
            defer { i += 1 }
            let pfn = PFN(i)
            let p = k.page(pfn).pointee
            if k.isFree(T.frame, i) || pfn == k.zeroPFN || p.mapcount < 0 { continue }
            let kind: String
            switch k.page(k.folioOf(pfn)).pointee.mapping & PageMapping.flags {
            case PageMapping.anon: kind = "anon"
            case PageMapping.ksm: kind = "ksm"
            default: kind = p.flags & PG.swapbacked != 0 ? "shmem" : "file"
            }
            s.mappedFrames[kind, default: 0] += 1
            s.mappings += Int(p.mapcount) + 1
            var visits = CountingWalk()
            k.rmapWalk(pfn, &visits)
            var hits = MappedWalk()
            k.rmapWalk(pfn, &hits)
            s.walkVisits += visits.visited
            s.walkHits += hits.mapped
            if visits.visited > s.worstWalk.visits { s.worstWalk = (i, visits.visited, hits.mapped) }
        }
        s.reusedInUse = Int(k.anonVMAReusedInUse.count)
        return s
    }
}

extension ModelStats {
    /// The report `rmap stats` prints.
    public var text: String {
        var o = "tables (live / high water / capacity, bytes live):\n"
        for t in tables {
            o += "  \(t.name.padding(17)) \(String(t.live).leftPad(8)) \(String(t.highWater).leftPad(8)) \(String(t.capacity).leftPad(9))  \(String(t.bytes).leftPad(10)) B\n"
        }
        o += "processes \(processes), VMAs \(vmas)\n"
        o += "anon_vmas \(anonVMAs) (roots \(anonVMARoots), max depth \(maxAnonVMADepth)), AVCs \(avcs), max AVCs per VMA \(maxAVCsPerVMA)\n"
        let kinds = ["anon", "file", "shmem", "ksm"].compactMap { k in mappedFrames[k].map { "\(k) \($0)" } }
        o += "mapped frames: \(kinds.isEmpty ? "none" : kinds.joined(separator: ", ")); PTEs mapping them \(mappings)\n"
        let frames = mappedFrames.values.reduce(0, +)
        if frames > 0 {
            let per = Double(walkVisits) / Double(frames)
            let useful = walkVisits == 0 ? 0 : 100 * Double(walkHits) / Double(walkVisits)
            o += "rmap walks: \(walkVisits) VMAs visited for \(frames) frames (\(fmt(per)) per frame), \(walkHits) mapped the frame (\(fmt(useful))%)\n"
            o += "worst walk: frame \(worstWalk.pfn), \(worstWalk.visits) VMAs visited, \(worstWalk.hits) mapped it\n"
        }
        if reusedInUse > 0 { o += "anon_vma reused while in use: \(reusedInUse) time(s) (CVE-2022-42703)\n" }
        return o
    }

    /// The same figures as one JSON object (keys sorted, one line).
    public var json: String {
        func q(_ s: String) -> String { "\"\(s)\"" }
        let tablesJSON = tables.map {
            "{\(q("bytes")):\($0.bytes),\(q("capacity")):\($0.capacity),\(q("high_water")):\($0.highWater),\(q("live")):\($0.live),\(q("name")):\(q($0.name))}"
        }.joined(separator: ",")
        let framesJSON = mappedFrames.keys.sorted().map { "\(q($0)):\(mappedFrames[$0]!)" }.joined(separator: ",")
        return "{\(q("anon_vma_roots")):\(anonVMARoots),\(q("anon_vmas")):\(anonVMAs),\(q("avcs")):\(avcs),"
            + "\(q("mapped_frames")):{\(framesJSON)},\(q("mappings")):\(mappings),"
            + "\(q("max_anon_vma_depth")):\(maxAnonVMADepth),\(q("max_avcs_per_vma")):\(maxAVCsPerVMA),"
            + "\(q("processes")):\(processes),\(q("reused_in_use")):\(reusedInUse),\(q("tables")):[\(tablesJSON)],"
            + "\(q("vmas")):\(vmas),\(q("walk_hits")):\(walkHits),\(q("walk_visits")):\(walkVisits),"
            + "\(q("worst_walk")):{\(q("hits")):\(worstWalk.hits),\(q("pfn")):\(worstWalk.pfn),\(q("visits")):\(worstWalk.visits)}}"
    }

    private func fmt(_ x: Double) -> String {
        let r = (x * 100).rounded() / 100
        return String(r)
    }
}
