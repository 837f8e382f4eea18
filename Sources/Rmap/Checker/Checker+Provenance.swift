import CShims

/// Content provenance: who wrote each frame's content token, through what
/// mapping, checked when the write happens and again over the whole state.
///
/// A user write is the one place a frame's content changes in place (every
/// kernel copy, wp_page_copy, migration, collapse, swap-in, fills a frame it
/// has just allocated). A write is only sound through a present, writable
/// PTE (or PMD) of the writer that maps the frame written, and only when the
/// mapping may write that frame: in a private mapping, the writer's own
/// exclusive anonymous page (a new page, a reused one or the copy
/// wp_page_copy just made: PG_anon_exclusive, mapped once, found by an rmap
/// walk from the writer's VMA); in a VM_SHARED mapping, the page of that
/// file (or shmem object) at that index. Never the zero page, a KSM page, a
/// page-cache page through a private mapping or a page another mm maps.
///
/// The record is kept beside the arena, not in it (it is what the checker
/// knows of the history, not kernel state): one per frame, keyed by the
/// frame's folio's allocation serial so that a frame freed and reused is not
/// judged by its previous life. A loaded state starts with none. Not saved.
package final class ContentProvenance {
    /// One frame's last user write.
    struct Write {
        /// The frame's folio head's allocation serial at the write.
        var serial: UInt64 = 0
        /// The token written.
        var token: UInt64 = 0
        var address: UInt64 = 0
        /// The page index it was written as: linear_page_index in the
        /// writer's VMA (anonymous: page->index; file: the pgoff).
        var index: UInt64 = 0
        /// The writer (0: no record).
        var mm: UInt32 = 0
        /// A private write: the root of the page's anon_vma; a shared one: the file.
        var owner: UInt32 = 0
        var shared = false
    }

    /// Records are kept and checked while this is on (the default). Turning
    /// it off forgets them: writes made meanwhile are not known.
    package var enabled = true {
        didSet { if !enabled { writes.removeAll(); violations.removeAll() } }
    }
    /// By frame number, grown on demand.
    var writes: ContiguousArray<Write> = []
    /// Writes found unsound when they happened (the first `limit`); the
    /// checker reports them from then on.
    var violations: [CheckerViolation] = []
    let limit = 16

    package init() {}

    func fail(_ object: CheckerViolation.Object, _ message: String) {
        if violations.count < limit {
            violations.append(CheckerViolation(kind: .contentProvenance, object: object, message: message))
        }
    }
}

extension Kernel {
    /// A user write of `token` at `addr` of mm `m`, after handle_mm_fault()
    /// returned: the token goes to the frame the writer's page table maps
    /// there (nothing for the zero page). With `provenance`, the write is
    /// checked as the MMU would allow it and recorded.
    func userWrite(_ m: MMID, _ addr: UInt64, _ token: UInt64, _ provenance: ContentProvenance?) {
        let pfn = mappedPage(m, addr)
        if !pfn.isNone { page(pfn).pointee.content = token }
        if let provenance { recordWrite(m, addr, pfn, token, provenance) }
    }

    /// The write-time half of the rule: what the writer's translation was
    /// when it wrote, and whether that mapping may write the frame.
    func recordWrite(_ m: MMID, _ addr: UInt64, _ pfn: PFN, _ token: UInt64, _ prov: ContentProvenance) {
        let a = addr & ~(PAGE_SIZE - 1)
        var failed = false
        func fail(_ why: String) {
            failed = true
            prov.fail(pfn.isNone ? .mm(m) : .frame(pfn),
                      pfn.isNone ? "mm \(m): a write at \(hex(a)) \(why)"
                                 : "frame \(pfn): written by mm \(m) at \(hex(a)) \(why)")
        }
        let v = vmaLookup(m, a)
        guard !v.isNone else { return fail("outside every VMA") }
        let root = mm(m).pointee.pgd
        var entry: UInt64 = 0
        var byPMD = false
        if let pmd = pmdSlot(root: root, key: a), PTE.isPMDLeaf(pmd.pointee) {
            entry = pmd.pointee
            byPMD = true
        } else if let s = leafSlot(root: root, key: a) {
            entry = s.pointee
        }
        guard PTE.isPresent(entry) else { return fail("through a non-present entry \(hex(entry))") }
        guard !pfn.isNone else { return fail("through a PTE of the \(byPMD ? "huge " : "")zero page: the write went nowhere") }
        // The frame holds the token now: a sound write is recorded, so the
        // check-time half judges the frame's content by it; an unsound one,
        // named here, leaves no record to judge by.
        let head = folioOf(pfn)
        var w = ContentProvenance.Write(serial: page(head).pointee.serial, token: token, address: a,
                                        index: linearPageIndex(v, a), mm: m.rawValue)
        defer {
            if prov.writes.count <= Int(pfn.rawValue) {
                prov.writes.append(contentsOf: repeatElement(ContentProvenance.Write(),
                                                             count: Int(pfn.rawValue) + 1 - prov.writes.count))
            }
            prov.writes[Int(pfn.rawValue)] = failed ? ContentProvenance.Write() : w
        }
        let av = pageAnonVMA(pfn)
        w.shared = vma(v).pointee.vm_flags & VM.shared != 0
        w.owner = w.shared ? vmFile(v).rawValue : av.isNone ? 0 : anonVMARootOf(av).rawValue
        guard PTE.isWrite(entry) else { return fail("through a read-only \(byPMD ? "PMD" : "PTE")") }
        if w.shared {
            // A shared mapping writes the page cache of its own file. The
            // page's index is its folio's plus its place in it (a hugetlb
            // folio's tails keep no index of their own).
            let index = page(head).pointee.index &+ UInt64(pfn.rawValue - head.rawValue)
            if pageFile(pfn) != vmFile(v) || index != w.index {
                fail("through a shared mapping of file \(vmFile(v)) at index \(w.index), but the frame is not that page")
            }
            return
        }
        // A private mapping writes only the writer's own exclusive anonymous page.
        if pageIsKSM(pfn) { return fail("through a private mapping, but it is a KSM page") }
        if !pageIsAnon(pfn) { return fail("through a private mapping, but it is a page-cache page") }
        let n = precisePageMapcount(pfn)
        if n != 1 { return fail("through a private mapping, but \(n) PTEs and PMDs map it") }
        // A PMD-mapped THP keeps PG_anon_exclusive on its head page.
        if page(byPMD ? head : pfn).pointee.flags & PG.anonExclusive == 0 {
            return fail("through a private mapping, but it is not PG_anon_exclusive")
        }
        // The rmap reaches the writer: the writer's VMA is on the page's
        // anon_vma (an AVC links them) and maps the page's index at `a`
        // (what rmap_walk_anon would visit).
        let index = page(head).pointee.index &+ UInt64(pfn.rawValue - head.rawValue)
        w.index = index
        var c = AVCID(vma(v).pointee.avc_head)
        var linked = false
        var steps = 0
        while !c.isNone && steps < 1 << 20 {
            if AnonVMAID(avc(c).pointee.anon_vma) == av { linked = true; break }
            c = AVCID(avc(c).pointee.same_vma_next)
            steps += 1
        }
        if !linked || vmaAddress(v, index: index) != a {
            fail("through a private mapping, but the page (anon_vma \(av), index \(index)) is not in the writer's rmap")
        }
    }
}

extension Checker {
    /// The check-time half: every frame that still holds a recorded write
    /// (same folio since) still reads the token written (its content changed
    /// in place only through a recorded write) and still belongs where the
    /// writer put it: the same file and index for a shared write (while in
    /// a page cache); for a
    /// private write, while mapped and not merged by KSM, the same anon_vma
    /// family (root) and index, so the writer's rmap still reaches it.
    /// `mapcount`: the PTE census of each frame; `entire`: the PMDs of each
    /// large folio.
    func checkContentProvenance(_ prov: ContentProvenance, mapcount: DenseCounts, entire: DenseCounts) {
        for v in prov.violations { fail(v.kind, v.object, v.message) }
        let bump = k.desc(T.frame).pointee.bump
        for (i, w) in prov.writes.enumerated() where w.mm != 0 {
            let pfn = PFN(UInt32(i))
            guard pfn.rawValue < bump, !k.isFree(T.frame, pfn.rawValue) else { continue }
            let head = k.folioOf(pfn)
            guard head.rawValue < bump, !k.isFree(T.frame, head.rawValue),
                  k.page(head).pointee.serial == w.serial else { continue }  // freed, reused or split since
            let by = "mm \(w.mm) at \(hex(w.address))"
            let content = k.page(pfn).pointee.content
            if content != w.token {
                fail(.contentProvenance, .frame(pfn), "frame \(pfn): content \(hex(content)) changed in place since \(by) wrote \(hex(w.token)), with no write through a mapping")
                continue
            }
            if w.shared {
                // A page that left the page cache (hwpoison, truncation) and
                // is still held belongs to no file: nothing to compare.
                let f = k.pageFile(pfn)
                let index = k.page(head).pointee.index &+ UInt64(pfn.rawValue - head.rawValue)
                if !f.isNone && (f.rawValue != w.owner || index != w.index) {
                    fail(.contentProvenance, .frame(pfn), "frame \(pfn): written by \(by) through a shared mapping of file \(w.owner) at index \(w.index), no longer that page")
                }
                continue
            }
            if k.pageIsKSM(pfn) || (mapcount[pfn]) + (entire[head]) == 0 { continue }
            let av = k.pageAnonVMA(pfn)
            if av.isNone {
                fail(.contentProvenance, .frame(pfn), "frame \(pfn): written by \(by) as an anonymous page, mapped but no longer anonymous")
                continue
            }
            guard !k.isFree(T.anonVMA, av.rawValue) else { continue }  // the pageAnonVMA rule's
            let index = k.page(head).pointee.index &+ UInt64(pfn.rawValue - head.rawValue)
            if k.anonVMARootOf(av).rawValue != w.owner || index != w.index {
                fail(.contentProvenance, .frame(pfn), "frame \(pfn): written by \(by) under anon_vma root \(w.owner) at index \(w.index), now under root \(k.anonVMARootOf(av)) at index \(index): out of the writer's rmap")
            }
        }
    }
}
