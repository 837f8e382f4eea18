import CShims

/// The invariant checker: what the kernel relies on, checked over the whole
/// arena. Each violation names the object and the invariant. Models the
/// kernel's debug checks (validate_mm, anon_vma_interval_tree_verify,
/// page_mapcount accounting) and more.
final class Checker {
    let k: Kernel
    /// The incremental checker's record of the last check (nil: a full
    /// check, as every fresh checker makes; Checker+Incremental.swift).
    let memo: CheckerMemo?
    init(k: Kernel, memo: CheckerMemo? = nil) { self.k = k; self.memo = memo }
    var violations: [CheckerViolation] = []
    /// KSM mappings rmap_walk_ksm cannot reach by the kernel's design (not violations).
    var ksmUnregistered: [String] = []
    var ksmUnregisteredFrames = Set<PFN>()
    /// Per large folio (by head): the VM_LOCKED VMAs that map a page of it.
    var lockedFolioVMAs: [PFN: Set<UInt32>] = [:]
    /// Per PMD-order folio (by head): the PMD migration entries naming it
    /// (each holds a reference, as every migration entry of the model).
    var pmdMigrationEntries: [PFN: Int] = [:]
    /// Large folios (by head) a PTE migration entry names a page of.
    var pteMigratingFolios = Set<PFN>()
    let limit = 200
    /// The elements this check visited (mappings, rmap-walk visits, VMAs,
    /// AVCs, tree steps, frames, anon_vmas, page-table slots scanned): the
    /// measure of its cost, which tests bound by the size of the state
    /// (linear, not the square of the sharing) without timing anything.
    var work = 0
    /// The page-table slots the gap scan and the PUD census read (part of
    /// `work`): what the incremental checker saves.
    var tableSlots = 0
    /// The page-table pages one mm's gap scan and PUD census read, and the
    /// PMD tables its PUD entries name (scratch, per mm).
    var visited: [UInt32] = []
    var pmdRefs: [UInt32] = []
    /// One mm's gap violations (scratch).
    var gapFails: [CheckerViolation] = []

    func fail(_ kind: CheckerViolation.Kind, _ object: CheckerViolation.Object?, _ s: @autoclosure () -> String) {
        if violations.count < limit { violations.append(CheckerViolation(kind: kind, object: object, message: s())) }
    }

    /// The mms of the live processes; `provenance`: the content writes
    /// recorded since the machine started (nil: not kept).
    func run(mms: [MMID], provenance: ContentProvenance? = nil) {
        // Which mms' page tables no statement reached since the last check
        // (before this check's own walks reach them).
        memo?.begin(mms: mms, k: k)
        defer { memo?.end(k: k) }
        // Counts by the id's raw value in flat arrays (DenseCounts), sized by
        // the tables' high-water marks: no hashing per PTE.
        let frameBump = k.desc(T.frame).pointee.bump
        var mapcount = DenseCounts(size: frameBump)      // PTEs mapping each frame
        var mappedLocked = DenseCounts(size: frameBump)  // per frame: mappings by VM_LOCKED VMAs
        var exclusiveRefs = DenseCounts(size: frameBump) // device-exclusive entries naming each frame
        var anonVMAUsers = DenseCounts(size: k.desc(T.anonVMA).pointee.bump)  // VMAs whose vma->anon_vma is this
        var writablePrivate: [(pfn: PFN, mm: MMID, addr: UInt64)] = []  // writable PTEs of private VMAs
        var writableShared = DenseCounts(size: k.desc(T.file).pointee.bump)  // per file: VMAs with VM_SHARED | VM_MAYWRITE
        // Every mapping, for the walk check (the incremental checker's kept
        // with its capacity from check to check).
        var mappedBy = memo?.takeMappings() ?? []
        mappedBy.reserveCapacity(Int(k.live(T.frame)))
        var entire = DenseCounts(size: frameBump)        // PMDs mapping each large folio (by head)
        var folioMMs: [PFN: [MMID: Int]] = [:]  // per large folio: mappings (PTEs and PMDs) per mm
        var pmdLeaves: [UInt32: Int] = [:]      // PMD leaves per PMD table
        var writablePMDs: [(head: PFN, mm: MMID, addr: UInt64)] = []
        var hugetlbMaps: [PFN: Int] = [:]       // entries mapping each hugetlb folio (by head)
        var hugetlbSeen = Set<UnsafeMutablePointer<UInt64>>()  // hugetlb entries counted (shared PMD tables)
        var hugetlbMigration: [PFN: Int] = [:]  // hugetlb migration entries naming each folio (by head)
        var swapRefs: [UInt64: Int] = [:]       // swap PTEs naming each swap slot
        var vmaCount = 0
        var avcCount = 0
        // Per PMD table: the PUD entries naming it (the incremental checker's
        // is kept zeroed between checks).
        var pudEntries = memo?.takePUDCounts(size: Int(k.desc(T.ptPage).pointee.bump))
            ?? [UInt32](repeating: 0, count: Int(k.desc(T.ptPage).pointee.bump))
        var pmdShareSuspect = false
        for (mi, m) in mms.enumerated() {
            let errs = IntervalTree.check(root: k.mm(m).pointee.mm_rb, k.mmTree, limit: 1 << 22)
            for e in errs { fail(.vmaTree, .mm(m), "mm \(m): VMA tree: \(e)") }
            var rss = RSSCensus()
            var v = k.firstVMA(m)
            var prevEnd: UInt64 = 0
            var n: UInt32 = 0
            var lockedPages: UInt64 = 0
            var totalPages: UInt64 = 0
            while !v.isNone {
                n += 1
                vmaCount += 1
                work &+= 1
                let p = k.vma(v).pointee
                if p.vm_flags & VM.locked != 0 { lockedPages += (p.vm_end - p.vm_start) >> 12 }
                totalPages &+= (p.vm_end &- p.vm_start) >> 12
                if p.file != 0 && p.vm_flags & VM.shared != 0 && p.vm_flags & VM.maywrite != 0 {
                    writableShared.add(p.file)
                }
                if MMID(p.mm) != m { fail(.vmaMM, .vma(v), "vma \(v): vm_mm is \(p.mm), expected \(m)") }
                if p.vm_start >= p.vm_end || p.vm_start & 0xfff != 0 || p.vm_end & 0xfff != 0 {
                    fail(.vmaRange, .vma(v), "vma \(v): bad range \(hex(p.vm_start))-\(hex(p.vm_end))")
                }
                if p.vm_start < prevEnd { fail(.vmaOverlap, .vma(v), "vma \(v): overlaps the previous VMA") }
                prevEnd = p.vm_end
                if p.anon_vma != 0 { anonVMAUsers.add(p.anon_vma) }
                // AVC list: every AVC points back at this VMA and is in its anon_vma's tree.
                var a = AVCID(p.avc_head)
                var sawOwn = p.anon_vma == 0
                var steps = 0
                while !a.isNone && steps < 100_000 {
                    avcCount += 1
                    steps += 1
                    work &+= 1
                    let c = k.avc(a).pointee
                    if VMAID(c.vma) != v { fail(.avcVMA, .avc(a), "avc \(a): on vma \(v)'s list but avc->vma is \(c.vma)") }
                    if c.anon_vma == p.anon_vma { sawOwn = true }
                    if !treeContains(k.anonVMARoot(AnonVMAID(c.anon_vma)).pointee, a.rawValue, k.avcTree) {
                        fail(.avcInTree, .avc(a), "avc \(a): not in anon_vma \(c.anon_vma)'s interval tree")
                    }
                    if k.anonVMA(AnonVMAID(c.anon_vma)).pointee.root != k.anonVMA(AnonVMAID(p.anon_vma == 0 ? c.anon_vma : p.anon_vma)).pointee.root {
                        fail(.avcRoot, .avc(a), "avc \(a): anon_vma \(c.anon_vma) has a different root from vma \(v)'s anon_vma")
                    }
                    a = AVCID(c.same_vma_next)
                }
                if !sawOwn { fail(.vmaOwnAVC, .vma(v), "vma \(v): no AVC links it to its own anon_vma \(p.anon_vma)") }
                if p.file != 0 && !treeContains(k.iMMapRoot(FileID(p.file)).pointee, v.rawValue, k.iMMap) {
                    fail(.iMMap, .vma(v), "vma \(v): not in its file's i_mmap")
                }
                // Page-table census of the VMA.
                k.walkLeaves(root: k.mm(m).pointee.pgd, start: p.vm_start, end: p.vm_end, pmd: { haddr, slot in
                    work &+= 1
                    let e = slot.pointee
                    if p.vm_flags & VM.hugetlb != 0 {
                        censusHugetlbLeaf(m, v, haddr, slot, maps: &hugetlbMaps, seen: &hugetlbSeen, mappedBy: &mappedBy,
                                          migration: &hugetlbMigration)
                        if PTE.isPMDLeaf(e) && PTE.isWrite(e) && p.vm_flags & VM.shared == 0 { writablePMDs.append((PTE.pfn(e), m, haddr)) }
                        return true
                    }
                    pmdLeaves[k.ptPageIndex(of: slot), default: 0] += 1
                    if haddr < p.vm_start || haddr + Kernel.pmdSize > p.vm_end || p.file != 0 || p.vm_flags & VM.shared != 0 {
                        fail(.pmdLeaf, .vma(v), "vma \(v): PMD leaf at \(hex(haddr)) not inside a private anonymous VMA's range")
                    }
                    if PTE.isPMDMigrationEntry(e) {
                        // A PMD migration entry: counted in MM_ANONPAGES, no
                        // mapping, naming the head of a live PMD-order folio
                        // (its deposited table is counted above).
                        let head = PTE.swpOffsetPFN(e)
                        guard !head.isNone, head.rawValue < k.desc(T.frame).pointee.bump, !k.isFree(T.frame, head.rawValue),
                              k.folioIsLarge(head), k.folioOrder(head) == RMAP_PMD_ORDER, head.rawValue & (RMAP_PMD_NR - 1) == 0,
                              k.pageIsAnon(head) else {
                            fail(.pmdLeaf, .mm(m), "mm \(m): PMD migration entry at \(hex(haddr)) names frame \(head), not the head of a live anonymous PMD-order folio")
                            return true
                        }
                        rss[MMCounter.anon.rawValue] += Int64(RMAP_PMD_NR)
                        pmdMigrationEntries[head, default: 0] += 1
                        return true
                    }
                    let head = PTE.pfn(e)
                    if head == k.hugeZeroPFN && !head.isNone {
                        if PTE.isWrite(e) {
                            fail(.writablePrivateNotExclusive, .mm(m), "mm \(m): the huge zero page mapped writable at \(hex(haddr))")
                        }
                        return true
                    }
                    guard !head.isNone, head.rawValue < k.desc(T.frame).pointee.bump, !k.isFree(T.frame, head.rawValue),
                          k.folioIsLarge(head), k.folioOrder(head) == RMAP_PMD_ORDER, head.rawValue & (RMAP_PMD_NR - 1) == 0 else {
                        fail(.pmdLeaf, .mm(m), "mm \(m): PMD leaf at \(hex(haddr)) maps frame \(head), not the head of a live PMD-order folio")
                        return true
                    }
                    entire.add(head)
                    folioMMs[head, default: [:]][m, default: 0] += 1
                    rss[MMCounter.anon.rawValue] += Int64(RMAP_PMD_NR)
                    mappedBy.append((head, v, haddr))
                    if p.vm_flags & VM.locked != 0 { lockedFolioVMAs[head, default: []].insert(v.rawValue) }
                    if PTE.isWrite(e) && p.vm_flags & VM.shared == 0 {
                        writablePMDs.append((head, m, haddr))
                        if k.page(head).pointee.flags & PG.anonExclusive == 0 {
                            fail(.writablePrivateNotExclusive, .frame(head), "frame \(head): THP mapped writable by private vma \(v) at \(hex(haddr)) but not exclusive")
                        }
                    }
                    return true
                }) { addr, slot in
                    work &+= 1
                    let e = slot.pointee
                    guard e != 0 else { return true }
                    if PTE.isPresent(e) {
                        let pfn = k.vmNormalPage(e)
                        if PTE.isWrite(e) && PTE.pfn(e) == k.zeroPFN {
                            fail(.writablePrivateNotExclusive, .mm(m), "mm \(m): the shared zero page mapped writable at \(hex(addr))")
                        }
                        if pfn.isNone { return true }
                        // A writable PTE of a private mapping maps an exclusive
                        // anonymous page (6.x: PageAnonExclusive is what lets
                        // do_wp_page reuse it; never a KSM or page-cache page).
                        if PTE.isWrite(e) && p.vm_flags & VM.shared == 0 {
                            writablePrivate.append((pfn, m, addr))
                            if !k.pageIsAnon(pfn) || k.pageIsKSM(pfn) || k.page(pfn).pointee.flags & PG.anonExclusive == 0 {
                                fail(.writablePrivateNotExclusive, .frame(pfn), "frame \(pfn): mapped writable by private vma \(v) at \(hex(addr)) but not an exclusive anonymous page")
                            }
                        }
                        mapcount.add(pfn)
                        let head = k.folioOf(pfn)
                        if head != pfn || k.folioIsLarge(head) {
                            folioMMs[head, default: [:]][m, default: 0] += 1
                            if p.vm_flags & VM.locked != 0 { lockedFolioVMAs[head, default: []].insert(v.rawValue) }
                        }
                        if p.vm_flags & VM.locked != 0 { mappedLocked.add(pfn) }
                        rss[k.mmCounterFor(pfn).rawValue] += 1
                        mappedBy.append((pfn, v, addr))
                        if PTE.isWrite(e) && k.pageIsKSM(pfn) { fail(.ksmWritable, .frame(pfn), "frame \(pfn): KSM frame mapped writable by vma \(v) at \(hex(addr))") }
                        if k.page(pfn).pointee.flags & PG.devicePrivate != 0 { fail(.devicePrivatePresent, .frame(pfn), "frame \(pfn): device-private frame mapped by a present PTE at \(hex(addr))") }
                    } else if PTE.isMigrationEntry(e) {
                        let pfn = PTE.swpOffsetPFN(e)
                        rss[k.mmCounterFor(pfn).rawValue] += 1
                        let head = k.folioOf(pfn)
                        if head != pfn || k.folioIsLarge(head) { pteMigratingFolios.insert(head) }
                    } else if PTE.isRealSwapEntry(e) {
                        rss[MMCounter.swapents.rawValue] += 1
                        swapRefs[PTE.swpOffset(e), default: 0] += 1
                        // An exclusive swap entry (SWP_EXCLUSIVE, set by
                        // try_to_unmap_one for an exclusive page, cleared by
                        // fork's copy) is the slot's only swap reference.
                        if e & PTE.swpExclusive != 0, let s = k.swapSlot(PTE.swpOffset(e)), s.pointee.count != 1 {
                            fail(.swapExclusivity, .mm(m), "mm \(m): exclusive swap entry at \(hex(addr)), but its slot \(PTE.swpOffset(e)) has \(s.pointee.count) swap references")
                        }
                    } else if PTE.isDevicePrivateEntry(e) {
                        // A device-private entry maps its page: counted, and found by the walk.
                        let pfn = PTE.swpOffsetPFN(e)
                        if pfn.rawValue >= k.desc(T.frame).pointee.bump || k.page(pfn).pointee.flags & PG.devicePrivate == 0
                            || k.isFree(T.frame, pfn.rawValue) {
                            fail(.devicePrivateEntry, .mm(m), "mm \(m): device-private entry at \(hex(addr)) names frame \(pfn), which is no live device-private frame")
                        } else {
                            mapcount.add(pfn)
                            rss[k.mmCounterFor(pfn).rawValue] += 1
                            mappedBy.append((pfn, v, addr))
                        }
                    } else if PTE.isDeviceExclusiveEntry(e) {
                        // Counted in RSS, holding a reference, out of the rmap.
                        let pfn = PTE.swpOffsetPFN(e)
                        if pfn.rawValue >= k.desc(T.frame).pointee.bump || k.isFree(T.frame, pfn.rawValue)
                            || !k.pageIsAnon(pfn) {
                            fail(.deviceExclusiveEntry, .mm(m), "mm \(m): device-exclusive entry at \(hex(addr)) names frame \(pfn), which is no live anonymous frame")
                        } else {
                            rss[k.mmCounterFor(pfn).rawValue] += 1
                            exclusiveRefs.add(pfn)
                        }
                    } else if PTE.isHWPoisonEntry(e) {
                        let pfn = PTE.swpOffsetPFN(e)
                        if pfn.rawValue >= k.desc(T.frame).pointee.bump || k.page(pfn).pointee.flags & PG.hwpoison == 0
                            || k.isFree(T.frame, pfn.rawValue) {
                            fail(.hwpoisonEntry, .mm(m), "mm \(m): hwpoison entry at \(hex(addr)) names frame \(pfn), which is not a poisoned live frame")
                        }
                    }
                    return true
                }
                v = k.nextVMA(v)
            }
            if lockedPages != k.mm(m).pointee.locked_vm {
                fail(.mmLockedVM, .mm(m), "mm \(m): locked_vm \(k.mm(m).pointee.locked_vm), VM_LOCKED VMAs span \(lockedPages) pages")
            }
            if totalPages != k.mm(m).pointee.total_vm {
                fail(.mmTotalVM, .mm(m), "mm \(m): total_vm \(k.mm(m).pointee.total_vm), VMAs span \(totalPages) pages")
            }
            if n != k.mm(m).pointee.map_count { fail(.mmMapCount, .mm(m), "mm \(m): map_count \(k.mm(m).pointee.map_count), VMAs \(n)") }
            // Nothing mapped outside the VMAs: the gaps' page-table slots
            // (Checker+PageTables.swift), the first leaf of each gap
            // reported; then the PUD entries of this mm, for the PMD-share
            // rule, while its upper tables are in the cache. The incremental
            // checker replays the last check's findings for an mm whose
            // tables no statement reached and whose VMA ranges are the same.
            if let memo, memo.unchanged(mmIndex: mi, m, k: k) {
                for j in memo.gapFails(m) { let f = memo.failPool[j]; fail(f.kind, f.object, f.message) }
                for j in memo.pmdRefs(m) { countPUDEntry(memo.refPool[j], &pudEntries, suspect: &pmdShareSuspect) }
            } else {
                visited.removeAll(keepingCapacity: true)
                pmdRefs.removeAll(keepingCapacity: true)
                gapFails.removeAll(keepingCapacity: true)
                var prev: UInt64 = 0
                v = k.firstVMA(m)
                while true {
                    let end = !v.isNone ? k.vma(v).pointee.vm_start : (1 << 47)
                    firstLeafIn(root: k.mm(m).pointee.pgd, start: prev, end: end, pmd: { addr in
                        gapFails.append(CheckerViolation(kind: .pteOutsideVMA, object: .mm(m), message: "mm \(m): PMD leaf at \(hex(addr)) outside every VMA"))
                    }) { addr in
                        gapFails.append(CheckerViolation(kind: .pteOutsideVMA, object: .mm(m), message: "mm \(m): PTE at \(hex(addr)) outside every VMA"))
                    }
                    if v.isNone { break }
                    prev = k.vma(v).pointee.vm_end
                    v = k.nextVMA(v)
                }
                for f in gapFails { fail(f.kind, f.object, f.message) }
                countPUDEntries(m, &pudEntries, suspect: &pmdShareSuspect)
                memo?.record(m, k: k, tables: visited, pmdRefs: pmdRefs, gapFails: gapFails)
            }
            for c in MMCounter.checked where k.mmCounter(m, c) != rss[c.rawValue] {
                fail(.rssCounter, .mm(m), "mm \(m): \(c) counter \(k.mmCounter(m, c)), page tables hold \(rss[c.rawValue])")
            }
        }
        checkFoundByWalks(mappedBy)
        memo?.giveMappings(&mappedBy)
        // Frames: mapcount and refcount.
        let d = k.desc(T.frame).pointee
        var i: UInt32 = 1
        while i < d.bump {
            defer { i += 1 }
            work &+= 1
            let pfn = PFN(i)
            let p = k.page(pfn).pointee
            if k.isFree(T.frame, i) { continue }  // free (poisoned; the first word is the free-list link)
            if pfn == k.zeroPFN { continue }
            if !k.hugeZeroPFN.isNone && pfn >= k.hugeZeroPFN && pfn < k.hugeZeroPFN.advanced(by: RMAP_PMD_NR) { continue }
            let census = mapcount[pfn]
            if Int(p.mapcount) + 1 != census {
                fail(.mapcount, .frame(pfn), "frame \(i): _mapcount \(p.mapcount) but \(census) PTEs map it")
            }
            // hugetlb folios: checkHugetlb (after this loop).
            if p.flags & (PG.head | PG.tail) != 0 && k.folioIsHugetlb(k.folioOf(pfn)) { continue }
            if p.flags & PG.hugetlbRawHWPoison != 0 { checkHugetlbRawHWPoison(pfn, census: census) }
            if p.flags & (PG.head | PG.tail) != 0 {
                checkLargeFolioPage(pfn, census: census, mapcount: mapcount, entire: entire, folioMMs: folioMMs)
                continue
            }
            if Int(p.refcount) < census + (exclusiveRefs[pfn]) {
                fail(.refcount, .frame(pfn), "frame \(i): _refcount \(p.refcount) below its \(census) mappings and \(exclusiveRefs[pfn]) device-exclusive entries")
            }
            // PG_mlocked on a mapped page exactly when a VM_LOCKED VMA maps
            // it (mlock_vma_page on every locked mapping, munlock_vma_page
            // with try_to_munlock when one goes).
            // (Not for a KSM frame with a mapping rmap_walk_ksm cannot reach:
            // try_to_munlock's walk cannot find that VMA either; nor for a
            // device-private frame: mlock_pte_range skips non-present entries.)
            if census > 0 && (p.flags & PG.mlocked != 0) != (mappedLocked[pfn] > 0) && !ksmUnregisteredFrames.contains(pfn)
                && p.flags & PG.devicePrivate == 0 {
                fail(.mlock, .frame(pfn), "frame \(i): PG_mlocked \(p.flags & PG.mlocked != 0) but mapped by a VM_LOCKED VMA: \(mappedLocked[pfn] > 0)")
            }
            if p.refcount <= 0 { fail(.refcount, .frame(pfn), "frame \(i): live with _refcount \(p.refcount)") }
            // PG_anon_exclusive: mapped by one PTE at most (fork clears it on
            // the pages it shares: folio_try_dup_anon_rmap_pte()).
            if p.flags & PG.anonExclusive != 0 && census > 1 {
                fail(.anonExclusiveShared, .frame(pfn), "frame \(i): PG_anon_exclusive but \(census) PTEs map it")
            }
            // do_swap_page() maps a swap-cache page exclusive only when no
            // other swap entry refers to its slot (the entry said
            // SWP_EXCLUSIVE, or the swap count was this PTE's alone).
            if p.flags & (PG.swapcache | PG.anonExclusive) == PG.swapcache | PG.anonExclusive,
               let s = k.swapSlot(PTE.swpOffset(p.private_)), s.pointee.count > 0 {
                fail(.swapExclusivity, .frame(pfn), "frame \(i): PG_anon_exclusive in the swap cache while \(s.pointee.count) swap entries still refer to its slot")
            }
            if p.mapping & PageMapping.flags == PageMapping.anon && census > 0 {
                let av = k.pageAnonVMA(pfn)
                if av.isNone || k.anonVMA(av).pointee.refcount <= 0 || k.isFree(T.anonVMA, av.rawValue) {
                    fail(.pageAnonVMA, .frame(pfn), "frame \(i): page->mapping points at freed anon_vma \(av)")
                }
            }
        }
        // A page mapped more than once is write-protected in every private
        // mapping (COW: fork write-protects both sides, wp_page_copy gives
        // the writer its own copy).
        for w in writablePrivate {
            let n = (mapcount[w.pfn]) + (entire[k.folioOf(w.pfn)])
            if n > 1 {
                fail(.sharedPageWritable, .frame(w.pfn), "frame \(w.pfn): mapped by \(n) PTEs and PMDs, writable in a private mapping of mm \(w.mm) at \(hex(w.addr))")
            }
        }
        for w in writablePMDs {
            let n = (entire[w.head]) + (hugetlbMaps[w.head] ?? 0) + (0..<RMAP_PMD_NR).reduce(0) { $0 + (mapcount[w.head.advanced(by: $1)]) }
            if n > 1 {
                fail(.sharedPageWritable, .frame(w.head), "frame \(w.head): THP mapped \(n) times, writable by a PMD of mm \(w.mm) at \(hex(w.addr))")
            }
        }
        // One deposited PTE table per PMD leaf, in the leaf's PMD table.
        for (table, n) in pmdLeaves where k.depositedPTETables(pmdTable: table).count != n {
            fail(.pmdLeaf, nil, "page table \(table): \(n) PMD leaves but \(k.depositedPTETables(pmdTable: table).count) deposited PTE tables")
        }
        checkDeferredSplitQueue(mapcount: mapcount, entire: entire)
        checkHugetlb(maps: hugetlbMaps, migration: hugetlbMigration)
        checkSwapMap(refs: swapRefs)
        checkPMDShares(mms: mms, count: pudEntries, suspect: pmdShareSuspect)
        memo?.givePUDCounts(pudEntries, mms: mms)
        // i_mmap_writable counts the file's VM_SHARED|VM_MAYWRITE VMAs
        // (mapping_map_writable() / mapping_unmap_writable()).
        let fd = k.desc(T.file).pointee
        var f: UInt32 = 1
        while f < fd.bump {
            defer { f += 1 }
            if k.isFree(T.file, f) { continue }
            let w = k.file(FileID(f)).pointee.i_mmap_writable
            if Int(w) != writableShared[f] {
                fail(.iMMapWritable, nil, "file \(f): i_mmap_writable \(w), shared writable VMAs \(writableShared[f])")
            }
        }
        checkAnonVMAs(users: anonVMAUsers)
        let reuse = k.anonVMAReusedInUse
        if reuse.count > 0 {
            fail(.anonVMAReusedInUse, .anonVMA(AnonVMAID(UInt32(truncatingIfNeeded: reuse.last))), "anon_vma \(reuse.last): anon_vma_clone() reused an anon_vma that a VMA still uses (\(reuse.count) time(s); CVE-2022-42703)")
        }
        if k.live(T.vma) != UInt32(vmaCount) { fail(.leak, nil, "vma table: \(k.live(T.vma)) live, \(vmaCount) in the mms (leak)") }
        if k.live(T.avc) != UInt32(avcCount) { fail(.leak, nil, "avc table: \(k.live(T.avc)) live, \(avcCount) on VMA lists (leak)") }
        if k.live(T.mm) != UInt32(mms.count) { fail(.leak, nil, "mm table: \(k.live(T.mm)) live, \(mms.count) processes (leak)") }
        checkKSM(mms: mms)
        checkMovable(mapped: mapcount)
        if let provenance, provenance.enabled { checkContentProvenance(provenance, mapcount: mapcount, entire: entire) }
    }

    /// Every present PTE is found by an rmap walk of its frame.
    /// A KSM frame is the exception the kernel makes: rmap_walk_ksm finds
    /// the mappings its stable node lists (and forks of their mms), not a
    /// mapping KSM never registered (a page merged while fork-shared with a
    /// process whose VMA is not mergeable; a KSM page swapped back in where
    /// ksmd dropped the item). Those are noted in `ksmUnregistered`; a listed
    /// mapping the walk misses is a violation.
    /// One walk per frame (not one per mapping: with P processes sharing a
    /// page that was P walks of P VMAs, and the checker cost the cube of the
    /// sharing), its visits compared with the mappings the census found.
    func checkFoundByWalks(_ mappings: [(pfn: PFN, vma: VMAID, addr: UInt64)]) {
        guard !mappings.isEmpty else { return }
        // Group the mappings by frame (a counting sort: frames in the order
        // of their first mapping, mappings in census order), no hashing.
        let frames = Int(k.desc(T.frame).pointee.bump)
        var group = [Int32](repeating: -1, count: frames)  // per frame: its group
        var far: [PFN: Int32] = [:]                          // frames beyond the table (corrupt entries)
        var order: [PFN] = []
        var sizes: [Int32] = []
        var groupOf = [Int32](repeating: 0, count: mappings.count)
        for (j, m) in mappings.enumerated() {
            let i = Int(m.pfn.rawValue)
            var g = i < frames ? group[i] : far[m.pfn] ?? -1
            if g < 0 {
                g = Int32(order.count)
                order.append(m.pfn)
                sizes.append(0)
                if i < frames { group[i] = g } else { far[m.pfn] = g }
            }
            sizes[Int(g)] += 1
            groupOf[j] = g
        }
        var start = [Int](repeating: 0, count: order.count + 1)
        for g in 0..<order.count { start[g + 1] = start[g] + Int(sizes[g]) }
        var fill = start
        var sorted = [(vma: VMAID, addr: UInt64)](repeating: (VMAID.none, 0), count: mappings.count)
        for (j, m) in mappings.enumerated() {
            let g = Int(groupOf[j])
            sorted[fill[g]] = (m.vma, m.addr)
            fill[g] += 1
        }
        // Per VMA (by raw value): the frame's epoch that expects it, the
        // address expected and whether the walk visited it there.
        let vmas = Int(k.desc(T.vma).pointee.bump)
        // The incremental checker keeps the marks between checks (epochs
        // go on from check to check: no clearing, no allocation).
        let (expect, epochBase) = memo?.vmaMarks(count: vmas, epochs: order.count) ?? (VMAMarks(count: vmas), 0)
        defer { if memo == nil { expect.deallocate() } }
        for (g, pfn) in order.enumerated() {
            let epoch = epochBase + UInt32(g + 1)
            let ms = sorted[start[g]..<start[g + 1]]
            work &+= ms.count
            var unique = true
            for (v, addr) in ms {
                let i = Int(v.rawValue)
                guard i < vmas, expect.epoch[i] != epoch else { unique = false; break }
                expect.epoch[i] = epoch
                expect.addr[i] = addr
                expect.found[i] = false
            }
            var missed: [(vma: VMAID, addr: UInt64)] = []
            if unique {
                var c = ExpectedVisits(marks: expect, epoch: epoch)
                k.rmapWalk(pfn, &c)
                work &+= c.visits
                for (v, addr) in ms where !expect.found[Int(v.rawValue)] { missed.append((v, addr)) }
            } else {
                // A VMA mapping the frame at two addresses (KSM merges pages
                // of one VMA): compare the (VMA, address) pairs.
                var c = VisitsControl()
                k.rmapWalk(pfn, &c)
                work &+= c.visited.count
                for (v, addr) in ms where !c.visited.contains(VisitsControl.Visit(vma: v, address: addr)) { missed.append((v, addr)) }
            }
            for (v, addr) in missed {
                if k.pageIsKSM(pfn) && !ksmNodeLists(pfn, mm: k.vmMM(v), addr) {
                    ksmUnregistered.append("frame \(pfn): KSM mapping by vma \(v) at \(hex(addr)) has no rmap_item")
                    ksmUnregisteredFrames.insert(pfn)
                    continue
                }
                fail(.pteWithoutRmap, .frame(pfn), "frame \(pfn): mapped by vma \(v) at \(hex(addr)) but the rmap walk does not find it")
            }
        }
    }

    /// Whether the KSM frame's stable node lists an rmap_item for (mm, addr).
    func ksmNodeLists(_ pfn: PFN, mm m: MMID, _ addr: UInt64) -> Bool {
        let node = k.folioStableNode(pfn)
        guard !node.isNone else { return false }
        var i = k.ksmNode(node).pointee.hlist
        var n = 0
        while i != 0 && n < 1 << 24 {
            let it = k.ksmItem(KSMItemID(i)).pointee
            if MMID(it.mm) == m && it.address & KSMFlag.pageMask == addr { return true }
            i = it.hlist_next
            n += 1
        }
        return false
    }

    /// anon_vma counters, parents and roots; interval trees ordered with
    /// correct subtree maxima.
    func checkAnonVMAs(users: DenseCounts) {
        let d = k.desc(T.anonVMA).pointee
        var children = DenseCounts(size: d.bump)
        var live: [AnonVMAID] = []
        var i: UInt32 = 1
        while i < d.bump {
            defer { i += 1 }
            let p = k.anonVMA(AnonVMAID(i)).pointee
            if k.isFree(T.anonVMA, i) { continue }  // free
            live.append(AnonVMAID(i))
            // A root counts its self-parent link while its tree is not empty.
            if p.rb_root != 0 { children.add(p.parent) }
        }
        work &+= Int(d.bump)
        for av in live {
            let p = k.anonVMA(av).pointee
            for e in IntervalTree.check(root: p.rb_root, k.avcTree, limit: 1 << 22) { fail(.anonVMATree, .anonVMA(av), "anon_vma \(av): tree: \(e)") }
            if k.anonVMARootOf(AnonVMAID(p.root)).rawValue != p.root { fail(.anonVMARoot, .anonVMA(av), "anon_vma \(av): root \(p.root) is not a root") }
            // An anon_vma whose tree is empty is kept only by a reference
            // (a KSM rmap_item's get_anon_vma): its parent pointer is stale
            // in the kernel too (only the root is referenced), and unused.
            if p.rb_root != 0 && k.anonVMARootOf(AnonVMAID(p.parent)).rawValue != p.root { fail(.anonVMAParent, .anonVMA(av), "anon_vma \(av): parent \(p.parent) in another tree") }
            let u = UInt32(truncatingIfNeeded: users[av.rawValue])
            if p.num_active_vmas != u { fail(.anonVMACounters, .anonVMA(av), "anon_vma \(av): num_active_vmas \(p.num_active_vmas), VMAs using it \(u)") }
            let c = UInt32(truncatingIfNeeded: children[av.rawValue])
            if p.num_children != c { fail(.anonVMACounters, .anonVMA(av), "anon_vma \(av): num_children \(p.num_children), children \(c)") }
            if p.degree != c + u { fail(.anonVMACounters, .anonVMA(av), "anon_vma \(av): degree \(p.degree), children + VMAs \(c + u)") }
            if p.refcount < 1 { fail(.anonVMARefcount, .anonVMA(av), "anon_vma \(av): live with refcount \(p.refcount)") }
        }
    }

    /// Whether node `n` is in the tree at `root`: its parent chain, each
    /// parent naming it as a child, ends at the root (a red-black tree is at
    /// most 2 log2(n + 1) deep: the chain is bounded). Logarithmic, where
    /// an in-order scan per node made the census quadratic in the sharing.
    func treeContains<A: IntervalTreeAccessor>(_ root: UInt32, _ n: UInt32, _ a: A) -> Bool {
        guard root != 0, n != 0 else { return false }
        var x = n
        for _ in 0..<128 {
            work &+= 1
            if x == root { return a.links(x).pointee.parent == 0 }
            let p = a.links(x).pointee.parent
            guard p != 0, a.links(p).pointee.left == x || a.links(p).pointee.right == x else { return false }
            x = p
        }
        return false
    }
}

/// One mm's RSS counters as its page tables hold them (no allocation).
struct RSSCensus {
    var c: (Int64, Int64, Int64, Int64) = (0, 0, 0, 0)
    subscript(_ i: Int) -> Int64 {
        get { switch i { case 0: c.0; case 1: c.1; case 2: c.2; default: c.3 } }
        set { switch i { case 0: c.0 = newValue; case 1: c.1 = newValue; case 2: c.2 = newValue; default: c.3 = newValue } }
    }
}

extension MMCounter {
    /// The counters the checker compares with the page tables.
    static let checked: [MMCounter] = [.file, .anon, .swapents, .shmem]
}

/// The checker's marks per VMA for one frame's walk: the frame's epoch
/// (which frame expects the VMA), the address expected, whether visited.
struct VMAMarks {
    let epoch: UnsafeMutablePointer<UInt32>
    let addr: UnsafeMutablePointer<UInt64>
    let found: UnsafeMutablePointer<Bool>
    let count: Int
    init(count: Int) {
        self.count = count
        epoch = .allocate(capacity: max(count, 1)); epoch.initialize(repeating: 0, count: max(count, 1))
        addr = .allocate(capacity: max(count, 1)); addr.initialize(repeating: 0, count: max(count, 1))
        found = .allocate(capacity: max(count, 1)); found.initialize(repeating: false, count: max(count, 1))
    }
    func deallocate() { epoch.deallocate(); addr.deallocate(); found.deallocate() }
}

/// Marks the expected (VMA, address) pairs an rmap walk visits (a visit
/// elsewhere, or of a VMA the frame's census did not list, marks nothing).
struct ExpectedVisits: RmapWalkControl {
    let marks: VMAMarks
    let epoch: UInt32
    var visits = 0
    mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        visits += 1
        let i = Int(vma.rawValue)
        if i < marks.count && marks.epoch[i] == epoch && marks.addr[i] == address { marks.found[i] = true }
        return true
    }
}

/// Every (VMA, address) an rmap walk visits.
struct VisitsControl: RmapWalkControl {
    struct Visit: Hashable { let vma: VMAID; let address: UInt64 }
    var visited = Set<Visit>()
    mutating func rmapOne(_ m: RmapContext, pfn: PFN, vma: VMAID, address: UInt64) -> Bool {
        visited.insert(Visit(vma: vma, address: address))
        return true
    }
}


extension Machine {
    /// Runs every invariant check; an empty list means the state is sound.
    /// Each violation names its invariant (`kind`): decide by that, not by
    /// the message. At most 200 are reported, in the checker's order.
    public func checkViolations() -> [CheckerViolation] {
        let c = Checker(k: k, memo: checkerMemo)
        c.run(mms: liveMMs, provenance: provenance)
        return c.violations
    }

    /// Whether `checkViolations()` is incremental: the first check is
    /// full, later ones scan again only the page tables a statement reached
    /// since the last check (and the mms whose VMA ranges changed), with the
    /// same violations as a full check (Checker+Incremental.swift). For a
    /// machine checked after every statement (`rmap replay --check`).
    /// Turned on, the model starts marking the page tables it reaches
    /// (`Kernel.ptTracking`) and the next check is full.
    public var checksIncrementally: Bool {
        get { checkerMemo != nil }
        set {
            if newValue && checkerMemo == nil { checkerMemo = CheckerMemo() }
            if !newValue { checkerMemo = nil }
            k.ptTracking.pointee = newValue
        }
    }

    /// The incremental check and a full one of the same state
    /// (`checksIncrementally` on; RMAP_CHECK_VERIFY=1 for `replay --check`):
    /// the incremental check's violations, and a description of how the full
    /// check's differ (nil when they are the same list).
    public func checkViolationsVerified() -> (violations: [CheckerViolation], mismatch: String?) {
        guard let memo = checkerMemo else { return (checkViolations(), nil) }
        // The full check's walks mark the tables they reach: the marks the
        // incremental check reads are kept aside meanwhile.
        let n = min(Int(k.desc(T.ptPage).pointee.bump), k.ptDirtyMask + 1)
        let saved = Array(UnsafeBufferPointer(start: k.ptDirty, count: n))
        let full = Checker(k: k)
        full.run(mms: liveMMs, provenance: provenance)
        saved.withUnsafeBufferPointer { k.ptDirty.update(from: $0.baseAddress!, count: n) }
        let inc = Checker(k: k, memo: memo)
        inc.run(mms: liveMMs, provenance: provenance)
        if inc.violations == full.violations { return (inc.violations, nil) }
        let only = { (a: [CheckerViolation], b: [CheckerViolation]) in a.filter { !b.contains($0) }.prefix(3).map(\.description) }
        return (inc.violations, "incremental check: \(inc.violations.count) violations, full check: \(full.violations.count); only incremental: \(only(inc.violations, full.violations)); only full: \(only(full.violations, inc.violations))")
    }

    /// The violations' messages (`checkViolations()`), for printing.
    public func check() -> [String] {
        checkViolations().map(\.description)
    }

    /// The present PTEs of KSM frames that rmap_walk_ksm cannot reach
    /// because KSM never registered them (see `Checker.checkFoundByWalk`).
    public func ksmUnregisteredMappings() -> [String] {
        let c = Checker(k: k)
        c.run(mms: liveMMs)
        return c.ksmUnregistered
    }

    /// Live objects per table (frames include the zero page and page-cache pages).
    public func liveObjects() -> [String: UInt32] {
        ["frames": k.live(T.frame), "ptPages": k.live(T.ptPage), "mms": k.live(T.mm), "vmas": k.live(T.vma),
         "anonVMAs": k.live(T.anonVMA), "avcs": k.live(T.avc), "files": k.live(T.file)]
    }
}
