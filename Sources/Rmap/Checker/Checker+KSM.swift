import CShims

/// The KSM invariants (mm/ksm.c's data structures): the mm slot list, each
/// mm's sorted rmap_item list, the stable tree and its hlists, the
/// keyhole between a KSM frame and its stable node, the counters, and no
/// leaked item or node. (That every PTE of a KSM frame is found by
/// rmap_walk_ksm is checked with the other frames, in `run`.)
extension Checker {
    func checkKSM(mms: [MMID]) {
        let live = Set(mms)
        var onList = Set<MMID>()
        var m = k.ksmMMHead
        var last = MMID.none
        var steps = 0
        while !m.isNone && steps < 1 << 20 {
            steps += 1
            if !live.contains(m) { fail(.ksmMMList, .mm(m), "ksm: mm \(m) on ksm_mm_head's list is not a live process"); break }
            if k.mm(m).pointee.ksm_flags & KSMFlag.mmMergeable == 0 { fail(.ksmMMList, .mm(m), "ksm: mm \(m) on the list without MMF_VM_MERGEABLE") }
            if !onList.insert(m).inserted { fail(.ksmMMList, .mm(m), "ksm: mm \(m) twice on the list"); break }
            last = m
            m = k.ksmSlotNext(m)
        }
        if last != k.ksmMMTail { fail(.ksmMMList, nil, "ksm: list tail \(k.header.pointee.ksm_mm_tail), last slot \(last)") }
        var items = 0
        var unstable: UInt64 = 0
        for mi in mms {
            let p = k.mm(mi).pointee
            if p.ksm_flags & KSMFlag.mmMergeable != 0 && !onList.contains(mi) { fail(.ksmMMList, .mm(mi), "ksm: mm \(mi) has MMF_VM_MERGEABLE but no slot on the list") }
            if p.ksm_flags & KSMFlag.mmMergeable == 0 && p.ksm_rmap_list != 0 { fail(.ksmMMList, .mm(mi), "ksm: mm \(mi) has rmap_items but no slot") }
            var i = p.ksm_rmap_list
            var prevAddr: UInt64 = 0
            var n: UInt32 = 0
            var merging: UInt64 = 0
            while i != 0 && n < 1 << 24 {
                n += 1
                let it = k.ksmItem(KSMItemID(i)).pointee
                if MMID(it.mm) != mi { fail(.ksmRmapList, .ksmItem(KSMItemID(i)), "ksm: rmap_item \(i) on mm \(mi)'s list names mm \(it.mm)") }
                let a = it.address & KSMFlag.pageMask
                if n > 1 && a <= prevAddr { fail(.ksmRmapList, .mm(mi), "ksm: mm \(mi)'s rmap_items not in address order at \(hex(a))") }
                prevAddr = a
                if it.address & KSMFlag.stable != 0 {
                    merging += 1
                    let node = it.head
                    if node == 0 || node >= k.desc(T.ksmNode).pointee.bump || k.isFree(T.ksmNode, node) {
                        fail(.ksmStableItem, .ksmItem(KSMItemID(i)), "ksm: stable rmap_item \(i) heads no live stable node (\(node))")
                    } else if !hlistContains(node, i) {
                        fail(.ksmStableItem, .ksmItem(KSMItemID(i)), "ksm: stable rmap_item \(i) is not on its node \(node)'s hlist")
                    }
                    let av = k.anonVMA(AnonVMAID(it.anon_vma)).pointee
                    if it.anon_vma == 0 || av.refcount < 1 || k.isFree(T.anonVMA, it.anon_vma) {
                        fail(.ksmStableItem, .ksmItem(KSMItemID(i)), "ksm: stable rmap_item \(i) holds no live anon_vma (\(it.anon_vma))")
                    }
                } else if it.address & KSMFlag.unstable != 0 {
                    unstable += 1
                }
                i = it.rmap_list
            }
            items += Int(n)
            if n != p.ksm_rmap_items { fail(.ksmCounters, .mm(mi), "ksm: mm \(mi): ksm_rmap_items \(p.ksm_rmap_items), list holds \(n)") }
            if merging != p.ksm_merging_pages { fail(.ksmCounters, .mm(mi), "ksm: mm \(mi): ksm_merging_pages \(p.ksm_merging_pages), stable items \(merging)") }
        }
        if k.live(T.ksmItem) != UInt32(items) { fail(.leak, nil, "ksm: \(k.live(T.ksmItem)) rmap_items live, \(items) on the mms' lists (leak)") }
        if unstable != k.header.pointee.ksm_pages_unshared {
            fail(.ksmCounters, nil, "ksm: pages_unshared \(k.header.pointee.ksm_pages_unshared), unstable rmap_items \(unstable)")
        }
        // The stable tree: every node sound, its hlist matching its count.
        for e in IntervalTree.check(root: k.ksmStableRoot.pointee, k.ksmStableTree, limit: 1 << 22) { fail(.ksmStableTree, nil, "ksm: stable tree: \(e)") }
        var nodes = 0
        var shared: UInt64 = 0, sharing: UInt64 = 0
        var node = IntervalTree.first(root: k.ksmStableRoot.pointee, k.ksmStableTree)
        while node != 0 && nodes < 1 << 22 {
            nodes += 1
            let n = k.ksmNode(KSMNodeID(node)).pointee
            var len: Int32 = 0
            var i = n.hlist
            var prev: UInt32 = 0
            while i != 0 && len < 1 << 24 {
                len += 1
                let it = k.ksmItem(KSMItemID(i)).pointee
                if it.head != node || it.address & KSMFlag.stable == 0 { fail(.ksmHlist, .ksmItem(KSMItemID(i)), "ksm: rmap_item \(i) on node \(node)'s hlist is not stable on it") }
                if it.hlist_prev != prev { fail(.ksmHlist, .ksmNode(KSMNodeID(node)), "ksm: node \(node)'s hlist back link broken at rmap_item \(i)") }
                prev = i
                i = it.hlist_next
            }
            if len != n.rmap_hlist_len { fail(.ksmHlist, .ksmNode(KSMNodeID(node)), "ksm: node \(node): rmap_hlist_len \(n.rmap_hlist_len), hlist holds \(len)") }
            if len > 0 { shared += 1; sharing += UInt64(len - 1) }
            // The keyhole: a node whose page still holds its key names that page.
            let expected = k.offset(table: T.ksmNode, index: node) | PageMapping.ksm
            let kpfn = PFN(n.kpfn)
            if !kpfn.isNone, kpfn.rawValue < k.desc(T.frame).pointee.bump, k.page(kpfn).pointee.mapping == expected,
               k.page(kpfn).pointee.content != n.content {
                fail(.ksmContent, .ksmNode(KSMNodeID(node)), "ksm: node \(node): KSM frame \(n.kpfn) content changed under write protection")
            }
            node = IntervalTree.next(node, k.ksmStableTree)
        }
        if k.live(T.ksmNode) != UInt32(nodes) { fail(.leak, nil, "ksm: \(k.live(T.ksmNode)) stable nodes live, \(nodes) in the stable tree (leak)") }
        if shared != k.header.pointee.ksm_pages_shared || sharing != k.header.pointee.ksm_pages_sharing {
            fail(.ksmCounters, nil, "ksm: pages_shared/sharing \(k.header.pointee.ksm_pages_shared)/\(k.header.pointee.ksm_pages_sharing), stable tree holds \(shared)/\(sharing)")
        }
        // Every KSM frame with a node is that node's page; no KSM PTE is writable.
        let d = k.desc(T.frame).pointee
        var f: UInt32 = 1
        while f < d.bump {
            defer { f += 1 }
            let pfn = PFN(f)
            let p = k.page(pfn).pointee
            if k.isFree(T.frame, f) || p.flags & PG.tail != 0 || p.mapping & PageMapping.flags != PageMapping.ksm { continue }
            let nodeIdx = k.folioStableNode(pfn)
            // A KSM frame without a node can still be mapped: try_to_merge_two_pages()
            // made it KSM, the second merge failed and break_cow() unshared only
            // the item's own mapping (others that fork-share it keep it).
            if nodeIdx.isNone { continue }
            if nodeIdx.rawValue >= k.desc(T.ksmNode).pointee.bump || k.ksmNode(nodeIdx).pointee.kpfn != f {
                fail(.ksmStableNode, .frame(pfn), "frame \(f): KSM mapping names stable node \(nodeIdx), which does not name it")
            }
            if p.flags & PG.anonExclusive != 0 { fail(.ksmAnonExclusive, .frame(pfn), "frame \(f): KSM frame marked PG_anon_exclusive") }
        }
    }

    /// Non-LRU movable pages (the balloon): never mapped, on the balloon's
    /// list exactly when not isolated, the list and counts consistent.
    func checkMovable(mapped: DenseCounts) {
        var onList = Set<PFN>()
        var p = k.balloonHead
        var prev = PFN.none
        while !p.isNone && onList.count < 1 << 24 {
            if !onList.insert(p).inserted { fail(.balloonList, .frame(p), "balloon: list loops at frame \(p)"); break }
            if PFN(k.page(p).pointee.prev) != prev { fail(.balloonList, .frame(p), "balloon: back link of frame \(p) broken") }
            prev = p
            p = PFN(k.page(p).pointee.next)
        }
        if UInt64(onList.count) != k.header.pointee.balloon_pages { fail(.balloonCounters, nil, "balloon: \(k.header.pointee.balloon_pages) pages counted, \(onList.count) on the list") }
        var isolated: UInt64 = 0
        let d = k.desc(T.frame).pointee
        var f: UInt32 = 1
        while f < d.bump {
            defer { f += 1 }
            let pfn = PFN(f)
            let pg = k.page(pfn).pointee
            if k.isFree(T.frame, f) || pg.flags & PG.tail != 0 || pg.mapping & PageMapping.flags != PageMapping.movable { continue }
            if (mapped[pfn]) > 0 { fail(.movableMapped, .frame(pfn), "frame \(f): a non-LRU movable page is mapped") }
            if k.pageIsBalloonMovable(pfn) {
                if pg.flags & PG.isolated != 0 { isolated += 1 }
                if (pg.flags & PG.isolated == 0) != onList.contains(pfn) { fail(.balloonIsolated, .frame(pfn), "frame \(f): balloon page isolated \(pg.flags & PG.isolated != 0) but on the list \(onList.contains(pfn))") }
            } else if pg.mapping != PageMapping.movable {
                fail(.movableOps, .frame(pfn), "frame \(f): PAGE_MAPPING_MOVABLE with unknown movable_operations")
            }
        }
        for x in onList where !k.pageIsBalloonMovable(x) { fail(.balloonList, .frame(x), "balloon: frame \(x) on the list is not a balloon page") }
        if isolated != k.header.pointee.balloon_isolated { fail(.balloonCounters, nil, "balloon: isolated_pages \(k.header.pointee.balloon_isolated), isolated balloon pages \(isolated)") }
    }

    func hlistContains(_ node: UInt32, _ item: UInt32) -> Bool {
        var i = k.ksmNode(KSMNodeID(node)).pointee.hlist
        var n = 0
        while i != 0 && n < 1 << 24 {
            if i == item { return true }
            i = k.ksmItem(KSMItemID(i)).pointee.hlist_next
            n += 1
        }
        return false
    }
}
