import CShims

/// The deep validation of an opened arena (see `Machine(opening:)`).
struct ArenaValidator {
    let k: Kernel
    var live: [[Bool]] = []
    /// References held by non-present entries (migration and
    /// device-exclusive entries keep the reference of the mapping they
    /// replaced), by folio head: counted by validatePageTables.
    var entryRefs: [UInt32: Int] = [:]
    /// Swap entries in page tables and page caches, by slot (swap_map's
    /// census): counted by validatePageTables.
    var swapRefs: [UInt64: Int] = [:]

    init(k: Kernel) { self.k = k }

    func bump(_ t: Int32) -> UInt32 { k.desc(t).pointee.bump }
    func ok(_ t: Int32, _ i: UInt32) -> Bool { i != 0 && i < bump(t) && live[Int(t)][Int(i)] }
    func okOr0(_ t: Int32, _ i: UInt32) -> Bool { i == 0 || ok(t, i) }

    /// The first problem, or nil when the arena may be used.
    mutating func validate() -> String? {
        // Free lists: every link inside the used records, no cycle, counts agree.
        for t in Int32(0)..<Int32(RMAP_T_COUNT) {
            let d = k.desc(t).pointee
            var l = [Bool](repeating: true, count: Int(d.bump))
            l[0] = false
            var i = d.free_head
            var n: UInt32 = 0
            while i != 0 {
                guard i < d.bump, l[Int(i)] else { return "table \(t): free list broken at record \(i)" }
                l[Int(i)] = false
                n += 1
                i = (k.base + Int(d.offset) + Int(i) * Int(d.record_size)).load(as: UInt32.self)
            }
            if t == T.frame {
                // Free runs of large folios (per order, threaded through each
                // run's first frame): whole, aligned, inside the used frames.
                for order in UInt32(0)...RMAP_PMD_ORDER {
                    var r = k.folioFreeHead(order: order)
                    guard order >= 2 || r == 0 else { return "frames: a free run list of order \(order)" }
                    let size = UInt32(1) << order
                    var runs: UInt32 = 0
                    while r != 0 {
                        runs += 1
                        guard runs <= d.bump / size, r & (size - 1) == 0, UInt64(r) + UInt64(size) <= UInt64(d.bump),
                              (r..<(r + size)).allSatisfy({ l[Int($0)] }) else {
                            return "frames: free run list of order \(order) broken at frame \(r)"
                        }
                        for f in r..<(r + size) { l[Int(f)] = false }
                        n += size
                        r = (k.base + Int(d.offset) + Int(r) * Int(d.record_size)).load(as: UInt32.self)
                    }
                }
            }
            guard n + d.live == d.bump - 1 else { return "table \(t): \(d.live) live + \(n) free != \(d.bump - 1) used records" }
            // A free record is poisoned after its link (Kernel.free): the
            // checker tells free records by that, so it must hold.
            if t != T.ptPage && t != T.ptDesc && t != T.swap {
                let size = Int(d.record_size)
                for r in 1..<Int(d.bump) where !l[r] {
                    let rec = k.base + Int(d.offset) + r * size
                    for b in 4..<size where rec.load(fromByteOffset: b, as: UInt8.self) != Kernel.poisonFree {
                        return "table \(t): free record \(r) is not poisoned"
                    }
                }
            }
            live.append(l)
        }
        if let e = validateObjects() { return e }
        if let e = validatePageTables() { return e }
        if let e = validateTrees() { return e }
        if let e = validateCounters() { return e }
        return nil
    }

    /// The nodes of a sound tree (validateTrees passed), in no order.
    func treeNodes<A: IntervalTreeAccessor>(_ root: UInt32, _ a: A) -> [UInt32] {
        var out: [UInt32] = []
        var stack: [UInt32] = root == 0 ? [] : [root]
        while let n = stack.popLast() {
            out.append(n)
            let l = a.links(n).pointee
            if l.left != 0 { stack.append(l.left) }
            if l.right != 0 { stack.append(l.right) }
        }
        return out
    }

    /// Issue 17, items 4 and 5: what the objects say of each other, exactly
    /// where it can be derived, so that no later statement meets a counter
    /// it cannot trust (a refcount one low is a use after free at exit; one
    /// at 2^31 - 1 traps at the next get). Each tree's nodes belong to it;
    /// refcounts equal their references; flags and header counters hold
    /// only what the model writes.
    func validateCounters() -> String? {
        // swap_map[] equals its census: the swap entries of page tables and
        // page caches that name each slot.
        let slots = k.header.pointee.swap_slots
        for (off, _) in swapRefs where off < 1 || off > slots { return "swap entry for slot \(off), outside the device" }
        if slots > 0 {
            for s in 1...slots where Int(k.swapMap[Int(s)].count) != swapRefs[s] ?? 0 {
                return "swap slot \(s): swap count \(k.swapMap[Int(s)].count), \(swapRefs[s] ?? 0) swap entries name it"
            }
        }
        let h = k.header.pointee
        // Tree nodes name their tree's owner, and each is in one tree only.
        var inTree = [Bool](repeating: false, count: Int(bump(T.vma)))
        for m in 1..<bump(T.mm) where live[Int(T.mm)][Int(m)] {
            for v in treeNodes(k.mm(MMID(m)).pointee.mm_rb, k.mmTree) {
                guard ok(T.vma, v), !inTree[Int(v)], k.vma(VMAID(v)).pointee.mm == m else { return "mm \(m): VMA tree holds vma \(v) of another mm" }
                inTree[Int(v)] = true
            }
        }
        var vmasOfFile = [UInt32](repeating: 0, count: Int(bump(T.file)))
        inTree = [Bool](repeating: false, count: Int(bump(T.vma)))
        for f in 1..<bump(T.file) where live[Int(T.file)][Int(f)] {
            for v in treeNodes(k.file(FileID(f)).pointee.i_mmap, k.iMMap) {
                guard ok(T.vma, v), !inTree[Int(v)], k.vma(VMAID(v)).pointee.file == f else { return "file \(f): i_mmap holds vma \(v) of another file" }
                inTree[Int(v)] = true
            }
        }
        // VMA flags as mmap makes them (VM_MAY* always; VM_SHARED with
        // VM_MAYSHARE, only over a file; a shmem file mapped shared only).
        let known = VM.read | VM.write | VM.exec | VM.shared | VM.mayread | VM.maywrite | VM.mayexec | VM.mayshare
            | VM.growsdown | VM.pfnmap | VM.locked | VM.io | VM.seqRead | VM.randRead | VM.dontcopy | VM.dontexpand
            | VM.lockonfault | VM.account | VM.noreserve | VM.hugetlb | VM.wipeonfork | VM.dontdump | VM.softdirty
            | VM.mixedmap | VM.hugepage | VM.nohugepage | VM.mergeable | VM.hugetlbResvMask
        for v in 1..<bump(T.vma) where live[Int(T.vma)][Int(v)] {
            let f = k.vma(VMAID(v)).pointee.file
            let fl = k.vma(VMAID(v)).pointee.vm_flags
            let shared = fl & VM.shared != 0
            guard fl & ~known == 0, fl & (VM.mayread | VM.maywrite | VM.mayexec) == VM.mayread | VM.maywrite | VM.mayexec,
                  shared == (fl & VM.mayshare != 0), !shared || f != 0,
                  f == 0 || shared || k.file(FileID(f)).pointee.kind != FileKind.shmem.rawValue else {
                return "vma \(v): flags 0x\(String(fl, radix: 16)) are no mapping's"
            }
            guard f == 0 || inTree[Int(v)] else { return "vma \(v): not in its file \(f)'s i_mmap" }
            if f != 0 { vmasOfFile[Int(f)] += 1 }
        }
        var inAVCTree = [Bool](repeating: false, count: Int(bump(T.avc)))
        for av in 1..<bump(T.anonVMA) where live[Int(T.anonVMA)][Int(av)] {
            for a in treeNodes(k.anonVMA(AnonVMAID(av)).pointee.rb_root, k.avcTree) {
                guard ok(T.avc, a), !inAVCTree[Int(a)], k.avc(AVCID(a)).pointee.anon_vma == av else { return "anon_vma \(av): tree holds avc \(a) of another anon_vma" }
                inAVCTree[Int(a)] = true
            }
        }
        // A file's references: its trace name and each VMA (fput at zero frees
        // it); its page count: the pages its cache holds.
        var named = [Bool](repeating: false, count: Int(bump(T.file)))
        for i in 1..<bump(T.name) where live[Int(T.name)][Int(i)] && k.names[Int(i)].kind == UInt32(RMAP_NAME_FILE) {
            named[Int(k.names[Int(i)].index)] = true
        }
        for f in 1..<bump(T.file) where live[Int(T.file)][Int(f)] {
            let p = k.file(FileID(f)).pointee
            let refs = Int64(vmasOfFile[Int(f)]) + (named[Int(f)] ? 1 : 0)
            guard refs >= 1, Int64(p.refcount) == refs else { return "file \(f): refcount \(p.refcount), references \(refs) (its name and VMAs)" }
            // A hugetlbfs file's entry is one 2 MiB folio (nrpages counts base pages).
            let perEntry: UInt64 = p.kind == FileKind.hugetlbfs.rawValue ? UInt64(RMAP_PMD_NR) : 1
            var cached: UInt64 = 0
            k.walkLeaves(root: p.cache_root, start: 0, end: 1 << 48) { _, slot in
                if slot.pointee & PTE.present != 0 { cached += perEntry }
                return true
            }
            guard p.nrpages == cached else { return "file \(f): nrpages \(p.nrpages), its cache holds \(cached)" }
        }
        // An anon_vma's references (get_anon_vma / put_anon_vma): its own
        // while its tree is not empty (unlink_anon_vmas drops it), one from
        // each anon_vma whose root it is (anon_vma_fork), one from each stable
        // KSM rmap_item naming it (try_to_merge_with_ksm_page).
        var refs = [Int64](repeating: 0, count: Int(bump(T.anonVMA)))
        for av in 1..<bump(T.anonVMA) where live[Int(T.anonVMA)][Int(av)] {
            let p = k.anonVMA(AnonVMAID(av)).pointee
            if p.rb_root != 0 { refs[Int(av)] += 1 }
            if p.root != av { refs[Int(p.root)] += 1 }
        }
        for i in 1..<bump(T.ksmItem) where live[Int(T.ksmItem)][Int(i)] {
            let p = k.ksmItem(KSMItemID(i)).pointee
            // The low bits: SEQNR_MASK, UNSTABLE_FLAG, STABLE_FLAG, never both
            // flags; the address a user page's (ksm scan walks from it).
            guard p.address & ~(KSMFlag.pageMask | 0x3ff) == 0, p.address & (KSMFlag.stable | KSMFlag.unstable) != KSMFlag.stable | KSMFlag.unstable,
                  p.address & KSMFlag.pageMask < 1 << 47 else { return "ksm rmap_item \(i): bad address 0x\(String(p.address, radix: 16))" }
            if p.address & KSMFlag.stable != 0 { refs[Int(p.anon_vma)] += 1 }
        }
        for av in 1..<bump(T.anonVMA) where live[Int(T.anonVMA)][Int(av)] {
            let p = k.anonVMA(AnonVMAID(av)).pointee
            guard refs[Int(av)] >= 1, Int64(p.refcount) == refs[Int(av)] else {
                return "anon_vma \(av): refcount \(p.refcount), references \(refs[Int(av)])"
            }
        }
        // Frames: only the flags the model defines; the zero page is the
        // reserved, unmapped page initZeroPage made (the checker's census
        // skips it: anything else there would escape every check).
        let hz = h.huge_zero_pfn
        for i in 1..<bump(T.frame) where live[Int(T.frame)][Int(i)] {
            let p = k.page(PFN(i)).pointee
            let f = p.flags
            guard f & ~PG.known == 0 else { return "frame \(i): undefined flag bits 0x\(String(f & ~PG.known, radix: 16))" }
            // PG_reserved: the zero page and the huge zero folio only (put_page
            // never frees a reserved frame: anything else would leak).
            guard f & PG.reserved == 0 || i == h.zero_pfn || (hz != 0 && i >= hz && i < hz + RMAP_PMD_NR) else {
                return "frame \(i): PG_reserved on a frame that is not a zero page"
            }
            // A large anonymous folio at rest holds one reference per mapping,
            // PTE or PMD (folio_expected_ref_count(); a split needs exactly that),
            // plus one per migration or device-exclusive entry that replaced
            // a mapping. hugetlb folios count entire mappings only (the
            // hugetlbFolio checker rule).
            // A folio in the swap cache holds one more per page (THP_SWAP).
            if f & PG.head != 0 && i != hz && f & PG.hugetlb == 0
                && p.mapping & PageMapping.flags == PageMapping.anon {
                let cache = f & PG.swapcache != 0 ? Int(k.folioNrPages(PFN(i))) : 0
                let expected = k.folioLargeMapcount(PFN(i)) + (entryRefs[i] ?? 0) + cache
                guard Int(p.refcount) == expected else {
                    return "frame \(i): large folio refcount \(p.refcount), mappings, entries and swap cache \(expected)"
                }
            }
        }
        let z = k.page(k.zeroPFN).pointee
        guard z.flags & (PG.reserved | PG.head | PG.tail) == PG.reserved, z.mapping == 0, z.mapcount == -1 else {
            return "the zero page \(k.zeroPFN) is not the reserved zero page"
        }
        // The CVE-2022-42703 counter is made only by the "degree" policy, and
        // names the anon_vma of its last reuse.
        if k.reusePolicy == .degree {
            guard (h.anon_vma_reused_in_use == 0) == (h.anon_vma_reused_last == 0),
                  h.anon_vma_reused_last < UInt64(bump(T.anonVMA)) else { return "anon_vma reuse counter inconsistent" }
        } else {
            guard h.anon_vma_reused_in_use == 0, h.anon_vma_reused_last == 0 else {
                return "anon_vma reuse counter \(h.anon_vma_reused_in_use) under a policy that never reuses an anon_vma in use"
            }
        }
        return nil
    }

    func validateObjects() -> String? {
        let frameCap = bump(T.frame)
        guard ok(T.frame, k.zeroPFN.rawValue) else { return "the zero page is not a live frame" }
        if let e = validateFolios() { return e }
        for i in 1..<frameCap where live[Int(T.frame)][Int(i)] {
            let p = k.page(PFN(i)).pointee
            if p.flags & PG.tail != 0 {
                // A tail's mapping and index words hold folio fields (checked
                // by validateFolios); its own counters only.
                if p.mapcount < -1 || p.mapcount > 1 << 24 || p.refcount != 0 { return "frame \(i): tail page with bad counts" }
                continue
            }
            switch p.mapping & PageMapping.flags {
            case 0:
                if p.mapping != 0 && !ok(T.file, k.index(table: T.file, offset: p.mapping)) {
                    return "frame \(i): mapping is not a live file"
                }
            case PageMapping.anon:
                if k.index(table: T.anonVMA, offset: p.mapping & ~PageMapping.flags) == 0 {
                    return "frame \(i): mapping is not an anon_vma record"
                }
            case PageMapping.movable:
                if p.mapping != k.balloonMops | PageMapping.movable && p.mapping != PageMapping.movable {
                    return "frame \(i): movable mapping names no known movable_operations"
                }
                guard okOr0(T.frame, p.next), okOr0(T.frame, p.prev) else { return "frame \(i): balloon list link out of range" }
            case PageMapping.ksm:
                let off = p.mapping & ~PageMapping.flags
                if off != 0 && !ok(T.ksmNode, k.index(table: T.ksmNode, offset: off)) {
                    return "frame \(i): KSM mapping is not a live stable node"
                }
            default:
                return "frame \(i): mapping kind \(p.mapping & PageMapping.flags) is not supported"
            }
            if p.mapcount < -1 || p.refcount < 0 { return "frame \(i): negative counts" }
            if p.mapcount > 1 << 24 || p.refcount > 1 << 30 { return "frame \(i): counts out of range" }
            if p.flags & PG.swapcache != 0 {
                // A swap-cache folio holds its slots, naturally aligned:
                // page j at folio->swap + j.
                guard p.flags & PG.tail == 0, validSwapEntry(p.private_) else { return "frame \(i): bad swap entry" }
                let off = PTE.swpOffset(p.private_)
                let nr = p.flags & PG.head != 0 ? UInt64(k.folioNrPages(PFN(i))) : 1
                guard off % nr == 0, off + nr - 1 <= k.header.pointee.swap_slots,
                      (0..<nr).allSatisfy({ j in
                          let s = k.swapMap[Int(off + j)]
                          return s.flags & Kernel.swapHasCache != 0 && s.cache_frame == i + UInt32(j)
                      }) else { return "frame \(i): its swap-cache slots do not hold it" }
            }
        }
        for i in 1..<bump(T.mm) where live[Int(T.mm)][Int(i)] {
            let p = k.mm(MMID(i)).pointee
            guard ok(T.ptPage, p.pgd), okOr0(T.vma, p.mm_rb) else { return "mm \(i): bad pgd or VMA tree root" }
        }
        for i in 1..<bump(T.vma) where live[Int(T.vma)][Int(i)] {
            let p = k.vma(VMAID(i)).pointee
            guard ok(T.mm, p.mm), okOr0(T.file, p.file), okOr0(T.anonVMA, p.anon_vma), okOr0(T.avc, p.avc_head),
                  links(T.vma, p.mm_rb), links(T.vma, p.shared_rb) else { return "vma \(i): an index is out of range" }
            guard p.vm_start < p.vm_end, p.vm_start & 0xfff == 0, p.vm_end & 0xfff == 0, p.vm_end <= 1 << 47,
                  p.vm_pgoff < 1 << 40 else { return "vma \(i): bad range" }
            // A hugetlb VMA: 2 MiB aligned, over a hugetlbfs file, and only it.
            let hugetlbfs = p.file != 0 && k.file(FileID(p.file)).pointee.kind == FileKind.hugetlbfs.rawValue
            guard (p.vm_flags & VM.hugetlb != 0) == hugetlbfs,
                  p.vm_flags & VM.hugetlbResvMask == 0 || p.vm_flags & VM.hugetlb != 0,
                  p.vm_flags & VM.hugetlb == 0 || ((p.vm_start | p.vm_end) & ~Kernel.hpageMask == 0 && p.vm_pgoff & 511 == 0) else {
                return "vma \(i): hugetlb flags, file or alignment wrong"
            }
        }
        for i in 1..<bump(T.anonVMA) where live[Int(T.anonVMA)][Int(i)] {
            let p = k.anonVMA(AnonVMAID(i)).pointee
            guard ok(T.anonVMA, p.root), ok(T.anonVMA, p.parent), okOr0(T.avc, p.rb_root) else {
                return "anon_vma \(i): an index is out of range"
            }
        }
        for i in 1..<bump(T.avc) where live[Int(T.avc)][Int(i)] {
            let p = k.avc(AVCID(i)).pointee
            guard ok(T.vma, p.vma), ok(T.anonVMA, p.anon_vma), okOr0(T.avc, p.same_vma_next),
                  okOr0(T.avc, p.same_vma_prev), links(T.avc, p.rb) else { return "avc \(i): an index is out of range" }
        }
        for i in 1..<bump(T.file) where live[Int(T.file)][Int(i)] {
            let p = k.file(FileID(i)).pointee
            guard okOr0(T.vma, p.i_mmap), ok(T.ptPage, p.cache_root), p.kind >= 1 && p.kind <= 3,
                  p.size_pages < 1 << 32 else { return "file \(i): bad fields" }
        }
        if let e = validateKSMObjects() { return e }
        guard okOr0(T.frame, k.balloonHead.rawValue), k.header.pointee.balloon_head < UInt64(bump(T.frame)) else { return "balloon list head out of range" }
        var bn: UInt32 = 0
        var bp = k.balloonHead
        while !bp.isNone {
            bn += 1
            guard bn < bump(T.frame), ok(T.frame, bp.rawValue), k.pageIsBalloonMovable(bp) else { return "balloon list broken at frame \(bp)" }
            bp = PFN(k.page(bp).pointee.next)
        }
        let slots = k.header.pointee.swap_slots
        if slots > 0 {
            for s in 1...slots {
                let sl = k.swapMap[Int(s)]
                let c = sl.cache_frame
                if !okOr0(T.frame, c) { return "swap slot \(s): cache frame out of range" }
                // SWAP_HAS_CACHE names a page of a swap-cache folio at this
                // slot; a free slot has no flags (the counts: validateCounters).
                guard sl.flags & ~(Kernel.swapHasCache | Kernel.swapOrderMask) == 0,
                      (sl.flags & Kernel.swapHasCache != 0) == (c != 0),
                      sl.count > 0 || sl.flags & Kernel.swapHasCache != 0 || sl.flags == 0 else {
                    return "swap slot \(s): bad flags 0x\(String(sl.flags, radix: 16))"
                }
                if c != 0 {
                    let head = k.folioOf(PFN(c))
                    guard k.page(head).pointee.flags & PG.swapcache != 0,
                          PTE.swpOffset(k.swapCacheEntry(PFN(c))) == UInt64(s) else {
                        return "swap slot \(s): cache frame \(c) is not in the swap cache there"
                    }
                }
            }
        }
        var seen = Set<String>()
        for i in 1..<bump(T.name) where live[Int(T.name)][Int(i)] {
            let p = k.names[Int(i)]
            guard p.len >= 1, p.len <= UInt32(RMAP_NAME_MAX) else { return "name \(i): bad length" }
            let name = Machine.nameString(p)
            guard isNameSyntax(Array(name.unicodeScalars)), name.utf8.count == Int(p.len) else { return "name \(i): not a valid name" }
            if p.kind == UInt32(RMAP_NAME_FILE) {
                guard ok(T.file, p.index) else { return "file name '\(name)': not a live file" }
            } else if p.kind == UInt32(RMAP_NAME_PROCESS) {
                guard okOr0(T.mm, p.index) else { return "process name '\(name)': not a live mm" }
            } else {
                return "name \(i): unknown kind \(p.kind)"
            }
            if p.index != 0 {
                guard seen.insert("\(p.kind):\(name)").inserted else { return "name '\(name)' is used twice" }
            }
        }
        return nil
    }

    /// KSM: every index of the mm slots, rmap_items and stable nodes in range.
    /// Fields the kernel leaves stale (the head of an item whose node was
    /// removed, the tree links of an item out of the unstable tree, the
    /// unstable root after a pass) need only be inside their table.
    func validateKSMObjects() -> String? {
        let h = k.header.pointee
        guard okOr0(T.ksmNode, h.ksm_stable_root), okOr0(T.mm, h.ksm_mm_head), okOr0(T.mm, h.ksm_mm_tail),
              h.ksm_unstable_root < bump(T.ksmItem) else { return "ksm: a root or list end is out of range" }
        for i in 1..<bump(T.mm) where live[Int(T.mm)][Int(i)] {
            let p = k.mm(MMID(i)).pointee
            guard okOr0(T.ksmItem, p.ksm_rmap_list), okOr0(T.mm, p.ksm_slot_next), p.ksm_flags <= 1 else {
                return "mm \(i): a KSM field is out of range"
            }
        }
        let items = bump(T.ksmItem)
        for i in 1..<items where live[Int(T.ksmItem)][Int(i)] {
            let p = k.ksmItem(KSMItemID(i)).pointee
            guard ok(T.mm, p.mm), okOr0(T.ksmItem, p.rmap_list), okOr0(T.ksmItem, p.hlist_next),
                  okOr0(T.ksmItem, p.hlist_prev), p.anon_vma < bump(T.anonVMA), p.head < bump(T.ksmNode),
                  p.node.parent < items, p.node.left < items, p.node.right < items else {
                return "ksm rmap_item \(i): an index is out of range"
            }
            if p.address & KSMFlag.stable != 0 {
                guard ok(T.ksmNode, p.head), ok(T.anonVMA, p.anon_vma) else { return "ksm rmap_item \(i): stable without a live node and anon_vma" }
            }
        }
        for i in 1..<bump(T.ksmNode) where live[Int(T.ksmNode)][Int(i)] {
            let p = k.ksmNode(KSMNodeID(i)).pointee
            guard p.kpfn < bump(T.frame), okOr0(T.ksmItem, p.hlist), links(T.ksmNode, p.node) else {
                return "ksm stable node \(i): an index is out of range"
            }
        }
        // Lists end: the mm slot list, each mm's items, each node's hlist.
        var n: UInt32 = 0
        var m = h.ksm_mm_head
        while m != 0 {
            n += 1
            guard n < bump(T.mm), ok(T.mm, m) else { return "ksm: mm slot list broken at mm \(m)" }
            m = k.mm(MMID(m)).pointee.ksm_slot_next
        }
        var seen = [Bool](repeating: false, count: Int(items))
        for mi in 1..<bump(T.mm) where live[Int(T.mm)][Int(mi)] {
            var i = k.mm(MMID(mi)).pointee.ksm_rmap_list
            while i != 0 {
                guard ok(T.ksmItem, i), !seen[Int(i)], k.ksmItem(KSMItemID(i)).pointee.mm == mi else { return "ksm: mm \(mi)'s rmap_item list broken at \(i)" }
                seen[Int(i)] = true
                i = k.ksmItem(KSMItemID(i)).pointee.rmap_list
            }
        }
        for ni in 1..<bump(T.ksmNode) where live[Int(T.ksmNode)][Int(ni)] {
            var i = k.ksmNode(KSMNodeID(ni)).pointee.hlist
            var c: UInt32 = 0
            while i != 0 {
                c += 1
                guard c < items, ok(T.ksmItem, i), k.ksmItem(KSMItemID(i)).pointee.head == ni else { return "ksm: stable node \(ni)'s hlist broken at \(i)" }
                i = k.ksmItem(KSMItemID(i)).pointee.hlist_next
            }
        }
        if let e = IntervalTree.check(root: h.ksm_stable_root, k.ksmStableTree, limit: Int(bump(T.ksmNode))).first { return "ksm stable tree: \(e)" }
        return nil
    }

    /// Large folios: each head's order, alignment and tails; its counters in
    /// range; the huge zero folio; the deferred split queue; the THP settings.
    func validateFolios() -> String? {
        let h = k.header.pointee
        let frames = bump(T.frame)
        let known = UInt32(RMAP_THP_ENABLED_MASK | RMAP_THP_CONFIGURED | RMAP_THP_PMD_LEAVES)
        guard h.thp_flags & ~known == 0 else { return "THP settings: unknown flags \(h.thp_flags)" }
        for order in 0..<16 {
            let mode = (h.thp_order_modes >> (4 * UInt64(order))) & 0xf
            guard mode <= 3, mode == 0 || (2...Int(RMAP_PMD_ORDER)).contains(order) else { return "THP settings: bad mode for order \(order)" }
        }
        for i in 1..<frames where live[Int(T.frame)][Int(i)] && k.page(PFN(i)).pointee.flags & PG.head != 0 {
            guard i + 1 < frames, live[Int(T.frame)][Int(i + 1)] else { return "frame \(i): large folio without its second page" }
            let order = k.page(PFN(i + 1)).pointee.order
            guard order >= 2, order <= RMAP_PMD_ORDER else { return "frame \(i): large folio of order \(order)" }
            let nr = UInt32(1) << order
            guard i & (nr - 1) == 0, UInt64(i) + UInt64(nr) <= UInt64(frames) else { return "frame \(i): large folio not aligned or beyond the frames" }
            for t in (i + 1)..<(i + nr) {
                let tp = k.page(PFN(t)).pointee
                guard live[Int(T.frame)][Int(t)], tp.flags & PG.tail != 0, tp.flags & PG.head == 0, tp.next == i else {
                    return "frame \(t): not a tail of the folio at \(i)"
                }
            }
            let p1 = k.page(PFN(i + 1)).pointee
            let bound: Int32 = 1 << 24
            guard (-1...bound).contains(p1.large_mapcount), (-1...bound).contains(p1.entire_mapcount),
                  (0...(ENTIRELY_MAPPED + Int32(nr))).contains(p1.nr_pages_mapped),
                  (-1...bound).contains(p1.mm_id_mapcount.0), (-1...bound).contains(p1.mm_id_mapcount.1) else {
                return "frame \(i): large folio counters out of range"
            }
            guard k.page(PFN(i)).pointee.mapping & PageMapping.flags != PageMapping.ksm else { return "frame \(i): a large KSM folio" }
        }
        // A tail whose head is no head (validated above as a run).
        for i in 1..<frames where live[Int(T.frame)][Int(i)] && k.page(PFN(i)).pointee.flags & PG.tail != 0 {
            let head = k.page(PFN(i)).pointee.next
            guard head < i, ok(T.frame, head), k.page(PFN(head)).pointee.flags & PG.head != 0,
                  i < head + (UInt32(1) << k.page(PFN(head + 1)).pointee.order) else { return "frame \(i): a tail without its head" }
        }
        if h.huge_zero_pfn != 0 {
            let z = h.huge_zero_pfn
            guard ok(T.frame, z), k.page(PFN(z)).pointee.flags & (PG.head | PG.reserved) == PG.head | PG.reserved,
                  k.page(PFN(z + 1)).pointee.order == RMAP_PMD_ORDER else { return "the huge zero folio \(z) is no reserved PMD-order folio" }
        }
        var n: UInt32 = 0
        var f = h.deferred_split_head
        var prev: UInt32 = 0
        while f != 0 {
            n += 1
            guard n <= frames, ok(T.frame, f), k.page(PFN(f)).pointee.flags & PG.head != 0, k.page(PFN(f + 1)).pointee.order >= 2,
                  k.page(PFN(f + 1)).pointee.flags & PG.partiallyMapped != 0, k.page(PFN(f + 2)).pointee.deferred_prev == prev else {
                return "deferred split queue broken at frame \(f)"
            }
            prev = f
            f = k.page(PFN(f + 2)).pointee.deferred_next
        }
        guard n == h.deferred_split_len, prev == h.deferred_split_tail else { return "deferred split queue: length or tail wrong" }
        // hugetlb: PG_hugetlb marks PMD-order heads only; the free list is a
        // chain of unreferenced hugetlb heads, as long as free_huge_pages
        // (bounded by the frames); the counters are in range.
        for i in 1..<frames where live[Int(T.frame)][Int(i)]
            && k.page(PFN(i)).pointee.flags & (PG.hugetlb | PG.hugetlbRestoreReserve) != 0 {
            let p = k.page(PFN(i)).pointee
            guard p.flags & PG.head != 0, p.flags & PG.hugetlb != 0, k.page(PFN(i + 1)).pointee.order == RMAP_PMD_ORDER,
                  p.mapping & PageMapping.flags != PageMapping.movable else { return "frame \(i): hugetlb flags on no PMD-order folio" }
        }
        let maxHuge = UInt64(frames) / UInt64(RMAP_PMD_NR)
        var hn: UInt64 = 0
        var hf = h.hugetlb_free_head
        while hf != 0 {
            hn += 1
            guard hn <= maxHuge, ok(T.frame, hf), k.page(PFN(hf)).pointee.flags & PG.hugetlb != 0,
                  k.page(PFN(hf)).pointee.refcount == 0 else { return "hugetlb free list broken at frame \(hf)" }
            hf = k.page(PFN(hf)).pointee.next
        }
        guard hn == h.free_huge_pages, h.free_huge_pages <= h.nr_huge_pages, h.nr_huge_pages <= maxHuge,
              h.surplus_huge_pages == 0, h.hugetlb_resv_mode <= 1 else { return "hugetlb pool counters out of range" }
        for i in 1..<frames where live[Int(T.frame)][Int(i)] && k.page(PFN(i)).pointee.flags & PG.head != 0
            && k.page(PFN(i + 1)).pointee.flags & PG.partiallyMapped != 0 && k.page(PFN(i + 2)).pointee.deferred_prev == 0
            && h.deferred_split_head != i {
            return "frame \(i): marked partially mapped but not on the deferred split queue"
        }
        return nil
    }

    func links(_ t: Int32, _ n: rmap_rb_node) -> Bool {
        okOr0(t, n.parent) && okOr0(t, n.left) && okOr0(t, n.right) && n.color <= 1
    }

    func validSwapEntry(_ e: UInt64) -> Bool {
        PTE.isRealSwapEntry(e) && PTE.swpOffset(e) >= 1 && PTE.swpOffset(e) <= k.header.pointee.swap_slots
    }

    /// Each page-table page belongs to one tree, at the level its descriptor
    /// says; every leaf names something that exists.
    mutating func validatePageTables() -> String? {
        var owner = [Bool](repeating: false, count: Int(bump(T.ptPage)))
        var entryRefs: [UInt32: Int] = [:]
        var swapRefs: [UInt64: Int] = [:]
        defer { self.entryRefs = entryRefs; self.swapRefs = swapRefs }
        var sharedRefs: [UInt32: UInt32] = [:]  // PMD tables shared by hugetlb mappings: the extra references met
        func descend(_ table: UInt32, _ level: UInt32, cache: Bool, hugetlbfs: Bool = false) -> String? {
            // A PMD table with a share count (huge_pmd_share) is reached
            // from several PUD entries: checked once, the others counted.
            if ok(T.ptPage, table) && owner[Int(table)] && level == 2 && !cache && k.ptDesc(table).pointee.level == 2
                && k.ptDesc(table).pointee.ptl > 0 {
                sharedRefs[table, default: 0] += 1
                return sharedRefs[table]! <= k.ptDesc(table).pointee.ptl ? nil : "page-table page \(table) shared beyond its share count"
            }
            guard ok(T.ptPage, table), !owner[Int(table)] else { return "page-table page \(table) missing or shared" }
            guard k.ptDesc(table).pointee.ptl == 0 || (level == 2 && !cache) else { return "page-table page \(table): a share count on no PMD table" }
            owner[Int(table)] = true
            guard k.ptDesc(table).pointee.level == level else { return "page-table page \(table): level \(k.ptDesc(table).pointee.level), expected \(level)" }
            let e = k.ptPage(table)
            var leaves = 0
            for i in 0..<512 {
                let x = e[i]
                if x == 0 { continue }
                if level == 2 && !cache && PTE.isPMDLeaf(x) {
                    // A PMD leaf maps a PMD-order folio or the huge zero page.
                    let head = PTE.pfn(x)
                    guard ok(T.frame, head.rawValue), k.page(head).pointee.flags & PG.head != 0,
                          k.page(head.advanced(by: 1)).pointee.order == RMAP_PMD_ORDER else { return "PMD leaf 0x\(String(x, radix: 16)) maps no PMD-order folio" }
                    // A hugetlb entry has no deposited table.
                    if k.page(head).pointee.flags & PG.hugetlb == 0 { leaves += 1 }
                    continue
                }
                if level == 2 && !cache && PTE.isHWPoisonEntry(x) {
                    // A hugetlb hwpoison entry (memory_failure's unmap) names
                    // a frame, the folio's head, which a dissolve may have
                    // freed since; it holds no reference and no deposited table.
                    guard PTE.swpOffset(x) < UInt64(bump(T.frame)) else { return "PMD hwpoison entry for no frame" }
                    continue
                }
                if level == 2 && !cache && !PTE.isPMDTable(x) {
                    // A PMD migration entry names the head of a PMD-order folio
                    // (and keeps its deposited table); nothing else is allowed.
                    guard PTE.isPMDMigrationEntry(x), PTE.swpOffset(x) < UInt64(bump(T.frame)) else {
                        return "PMD entry 0x\(String(x, radix: 16)) is neither a table, a leaf nor a migration entry"
                    }
                    let head = PTE.swpOffsetPFN(x)
                    guard ok(T.frame, head.rawValue), k.page(head).pointee.flags & PG.head != 0,
                          k.page(head.advanced(by: 1)).pointee.order == RMAP_PMD_ORDER else { return "PMD migration entry 0x\(String(x, radix: 16)) names no PMD-order folio" }
                    entryRefs[head.rawValue, default: 0] += 1
                    // A hugetlb migration entry has no deposited table.
                    if k.page(head).pointee.flags & PG.hugetlb == 0 { leaves += 1 }
                    continue
                }
                if level > 1 {
                    if let err = descend(PTE.tablePage(x), level - 1, cache: cache, hugetlbfs: hugetlbfs) { return err }
                    continue
                }
                if hugetlbfs {
                    // The resv_map bits, and a cached hugetlb folio's head.
                    let folio = x & ~HugetlbEntry.bits
                    guard folio == 0 || (folio & ~(PTE.pfnMask | PTE.present) == 0 && folio & PTE.present != 0
                        && ok(T.frame, PTE.pfn(folio).rawValue) && k.page(PTE.pfn(folio)).pointee.flags & PG.hugetlb != 0) else {
                        return "hugetlbfs entry 0x\(String(x, radix: 16)) invalid"
                    }
                } else if cache {
                    if x == Kernel.shadowEntry { continue }
                    if validSwapEntry(x) {
                        swapRefs[PTE.swpOffset(x), default: 0] += 1
                        continue
                    }
                    guard x & PTE.present != 0, ok(T.frame, PTE.pfn(x).rawValue) else { return "page cache entry 0x\(String(x, radix: 16)) invalid" }
                } else if PTE.isPresent(x) {
                    guard ok(T.frame, PTE.pfn(x).rawValue) else { return "PTE 0x\(String(x, radix: 16)) maps no live frame" }
                } else if PTE.isDeviceExclusiveEntry(x) {
                    guard PTE.swpOffset(x) < UInt64(bump(T.frame)), ok(T.frame, UInt32(PTE.swpOffset(x))) else { return "device-exclusive entry for no live frame" }
                    entryRefs[k.folioOf(PFN(UInt32(PTE.swpOffset(x)))).rawValue, default: 0] += 1
                } else if PTE.isDevicePrivateEntry(x) {
                    guard PTE.swpOffset(x) < UInt64(bump(T.frame)), ok(T.frame, UInt32(PTE.swpOffset(x))) else { return "device-private entry for no live frame" }
                } else if PTE.isHWPoisonEntry(x) {
                    guard PTE.swpOffset(x) < UInt64(bump(T.frame)) else { return "hwpoison entry for no frame" }
                } else if PTE.isMigrationEntry(x) {
                    guard PTE.swpOffset(x) < UInt64(bump(T.frame)), ok(T.frame, UInt32(PTE.swpOffset(x))) else { return "migration entry for no live frame" }
                    entryRefs[k.folioOf(PFN(UInt32(PTE.swpOffset(x)))).rawValue, default: 0] += 1
                } else if !validSwapEntry(x) {
                    return "PTE 0x\(String(x, radix: 16)) is neither present, swap nor migration"
                } else {
                    swapRefs[PTE.swpOffset(x), default: 0] += 1
                }
            }
            // The PTE tables deposited with the PMD leaves (pmd_huge_pte):
            // one each, owned by nothing else; no other table holds any.
            var dep = k.ptDesc(table).pointee.next
            var deposits = 0
            while dep != 0 {
                deposits += 1
                guard level == 2, !cache, deposits <= leaves, ok(T.ptPage, dep), !owner[Int(dep)],
                      k.ptDesc(dep).pointee.level == 1 else { return "page-table page \(table): deposited table \(dep) invalid" }
                owner[Int(dep)] = true
                dep = k.ptDesc(dep).pointee.next
            }
            guard deposits == leaves else { return "page-table page \(table): \(leaves) PMD leaves, \(deposits) deposited tables" }
            return nil
        }
        for i in 1..<bump(T.mm) where live[Int(T.mm)][Int(i)] {
            if let e = descend(k.mm(MMID(i)).pointee.pgd, 4, cache: false) { return "mm \(i): \(e)" }
        }
        for i in 1..<bump(T.ptPage) where owner[Int(i)] && k.ptDesc(i).pointee.ptl != sharedRefs[i] ?? 0 {
            return "page-table page \(i): share count \(k.ptDesc(i).pointee.ptl), \(sharedRefs[i] ?? 0) other references"
        }
        for i in 1..<bump(T.file) where live[Int(T.file)][Int(i)] {
            let hugetlbfs = k.file(FileID(i)).pointee.kind == FileKind.hugetlbfs.rawValue
            if let e = descend(k.file(FileID(i)).pointee.cache_root, 4, cache: true, hugetlbfs: hugetlbfs) { return "file \(i): \(e)" }
        }
        return nil
    }

    /// Every tree is a sound augmented rbtree and every AVC list ends.
    func validateTrees() -> String? {
        for i in 1..<bump(T.mm) where live[Int(T.mm)][Int(i)] {
            if let e = IntervalTree.check(root: k.mm(MMID(i)).pointee.mm_rb, k.mmTree, limit: Int(bump(T.vma))).first { return "mm \(i): \(e)" }
        }
        for i in 1..<bump(T.file) where live[Int(T.file)][Int(i)] {
            if let e = IntervalTree.check(root: k.file(FileID(i)).pointee.i_mmap, k.iMMap, limit: Int(bump(T.vma))).first { return "file \(i): \(e)" }
        }
        for i in 1..<bump(T.anonVMA) where live[Int(T.anonVMA)][Int(i)] {
            if let e = IntervalTree.check(root: k.anonVMA(AnonVMAID(i)).pointee.rb_root, k.avcTree, limit: Int(bump(T.avc))).first { return "anon_vma \(i): \(e)" }
        }
        for v in 1..<bump(T.vma) where live[Int(T.vma)][Int(v)] {
            var a = k.vma(VMAID(v)).pointee.avc_head
            var prev: UInt32 = 0
            var n: UInt32 = 0
            while a != 0 {
                n += 1
                guard n < bump(T.avc), k.avc(AVCID(a)).pointee.vma == v, k.avc(AVCID(a)).pointee.same_vma_prev == prev else {
                    return "vma \(v): AVC list broken at avc \(a)"
                }
                prev = a
                a = k.avc(AVCID(a)).pointee.same_vma_next
            }
        }
        return nil
    }
}
