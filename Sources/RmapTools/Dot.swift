import Rmap
import RmapTrace
import CShims

/// Graphviz pictures of the reverse map, like the seeds' figures: VMAs by
/// process, the anon_vmas with both counter schemes and their refcounts,
/// the AVCs linking them, the fork hierarchy, the files' i_mmap, and which
/// anon_vma each anonymous page's mapping points to (`rmap dot`).
extension Machine {
    public func dot(title: String = "rmap", maxPages: Int = 32) -> String {
        var s = "digraph rmap {\n  graph [rankdir=LR, fontname=\"Helvetica\", label=\"\(dotEscape(title))\", labelloc=t];\n"
        s += "  node [fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8];\n"
        // Processes and their VMAs.
        for name in processOrder {
            guard let m = mmOf(name) else { continue }
            s += "  subgraph \"cluster_\(dotEscape(name))\" {\n    label=\"\(dotEscape(name)) (mm \(m))\"; style=rounded;\n"
            var v = k.firstVMA(m)
            while !v.isNone {
                s += "    vma\(v) [shape=box, label=\"\(dotEscape(describeVMA(v)))\"];\n"
                v = k.nextVMA(v)
            }
            s += "  }\n"
        }
        // anon_vmas and the fork hierarchy.
        let d = k.desc(T.anonVMA).pointee
        var i: UInt32 = 1
        while i < d.bump {
            defer { i += 1 }
            let p = k.anonVMA(AnonVMAID(i)).pointee
            if k.isFree(T.anonVMA, i) { continue }
            let root = p.root == i
            s += "  av\(i) [shape=ellipse, \(root ? "style=bold, " : "")label=\"av\(p.serial)\(root ? " (root)" : "")\\nrefcount=\(p.refcount) degree=\(p.degree)\\nnum_children=\(p.num_children) num_active_vmas=\(p.num_active_vmas)\"];\n"
            if p.parent != i { s += "  av\(i) -> av\(p.parent) [style=dotted, label=\"parent\"];\n" }
        }
        // AVCs: each VMA to every anon_vma it is chained to; its own anon_vma in bold.
        for name in processOrder {
            guard let m = mmOf(name) else { continue }
            var v = k.firstVMA(m)
            while !v.isNone {
                let own = k.vma(v).pointee.anon_vma
                var a = k.vma(v).pointee.avc_head
                while a != 0 {
                    let av = k.avc(AVCID(a)).pointee.anon_vma
                    s += "  vma\(v) -> av\(av) [\(av == own ? "penwidth=2, label=\"anon_vma\"" : "style=dashed, label=\"avc\"")];\n"
                    a = k.avc(AVCID(a)).pointee.same_vma_next
                }
                if k.vma(v).pointee.file != 0 { s += "  vma\(v) -> file\(k.vma(v).pointee.file) [color=gray40, label=\"i_mmap\"];\n" }
                v = k.nextVMA(v)
            }
        }
        for (name, f) in files.sorted(by: { $0.value < $1.value }) {
            s += "  file\(f) [shape=folder, label=\"\(dotEscape(name))\\n\(k.file(f).pointee.nrpages) cached pages\"];\n"
        }
        // Anonymous pages: where page->mapping points.
        let fd = k.desc(T.frame).pointee
        var shown = 0, hidden = 0
        var pfn: UInt32 = 1
        while pfn < fd.bump {
            defer { pfn += 1 }
            let folio = PFN(pfn)
            let p = k.page(folio).pointee
            guard !k.isFree(T.frame, pfn), p.flags & PG.tail == 0, p.mapping & PageMapping.flags == PageMapping.anon,
                  k.folioMapcount(folio) > 0 else { continue }
            if shown >= maxPages { hidden += 1; continue }
            shown += 1
            let av = k.pageAnonVMA(folio)
            let excl = p.flags & PG.anonExclusive != 0 ? "\\nexclusive" : ""
            if k.folioIsLarge(folio) {
                // A large folio: one node, its order and folio counters.
                let pmds = k.folioEntireMapcount(folio)
                s += "  page\(pfn) [shape=box3d, fontsize=8, label=\"folio pfn \(pfn) order \(k.folioOrder(folio))\\nindex \(p.index) mapcount \(k.folioMapcount(folio)) (PMD \(pmds))\(excl)\"];\n"
            } else {
                s += "  page\(pfn) [shape=note, fontsize=8, label=\"pfn \(pfn)\\nindex \(p.index) mapcount \(Int(p.mapcount) + 1)\(excl)\"];\n"
            }
            s += "  page\(pfn) -> av\(av) [color=firebrick, label=\"mapping\"];\n"
        }
        if hidden > 0 { s += "  more [shape=plaintext, label=\"... \(hidden) more anonymous pages\"];\n" }
        s += "}\n"
        return s
    }
}

func dotEscape(_ s: String) -> String {
    var o = ""
    for c in s { if c == "\"" || c == "\\" { o.append("\\") }; o.append(c) }
    return o
}
