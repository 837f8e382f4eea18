import CShims

/// Kernel samepage merging (mm/ksm.c, the 6.x code): VM_MERGEABLE regions,
/// rmap_items per scanned (mm, address), the unstable tree rebuilt every
/// full scan, the stable tree of KSM pages, write-protected sharing, COW
/// break, unmerging and rmap_walk_ksm().
///
/// A frame's content is its `content` token (Machine writes store one), so
/// memcmp_pages is a comparison of tokens and calc_checksum a 32-bit hash
/// of the token, which can collide as the kernel's can. Both trees are the
/// model's augmented rbtree (`IntervalTree`): the stable tree keyed by the
/// KSM page's token (fixed, the page is write-protected), the unstable tree
/// by the checksum the scan saw (`oldchecksum`); every match found there is
/// then checked against the tree page's current token, as memcmp_pages does.
///
/// Left out (documented, not guessed): stable_node chains and
/// ksm_max_page_sharing (a stable node takes any number of sharers; a
/// second node with the same content becomes a separate tree node instead
/// of a chain dup), NUMA trees and migrate_nodes, ksm_use_zero_pages
/// (default off), THP splitting, the advisor, MMF_VM_MERGE_ANY (prctl).
/// `ksm scan` runs whole passes of ksm_do_scan, so the scan cursor
/// (struct ksm_scan) lives only for the pass; a pass that cannot allocate
/// an rmap_item ends early (the kernel would resume at its cursor).
/// An exiting mm's rmap_items are removed at exit (the kernel leaves them for
/// ksmd's next visit, which finds the mm exiting and removes them all).
/// The pgoff range rmap_walk_ksm() searches each rmap_item's anon_vma tree
/// for: a history mode, as `ReusePolicy` is (kept in bits 8-9 of the header's
/// `reuse_policy` word, so a saved state keeps it).
public enum KSMWalkMode: UInt32, Sendable, CaseIterable {
    /// 6.x mainline: the whole tree, [0, ULONG_MAX].
    case full = 0
    /// The series "KSM: Optimizations for rmap_walk_ksm" v4-v5: the
    /// rmap_item stores the VMA's vm_pgoff at merge time and the walk asks
    /// for [vm_pgoff, vm_pgoff]: a VMA split below the page after the merge
    /// no longer covers that pgoff, and its mapping is missed.
    case vmpgoff = 1
    /// The same series from v8: the page's linear_page_index() at merge
    /// time, which a split cannot change.
    case index = 2

    public var name: String {
        switch self {
        case .full: return "full"
        case .vmpgoff: return "vmpgoff"
        case .index: return "index"
        }
    }

    public static func named(_ s: String) -> KSMWalkMode? { allCases.first { $0.name == s } }
}

enum KSMFlag {
    /// SEQNR_MASK: low bits of the unstable tree seqnr.
    static let seqnrMask: UInt64 = 0x0ff
    /// UNSTABLE_FLAG: is a node of the unstable tree.
    static let unstable: UInt64 = 0x100
    /// STABLE_FLAG: is listed from the stable tree.
    static let stable: UInt64 = 0x200
    static let pageMask: UInt64 = ~(PAGE_SIZE - 1)
    /// MMF_VM_MERGEABLE: the mm has a ksm_mm_slot.
    static let mmMergeable: UInt32 = 1
}

/// root_stable_tree: stable nodes keyed by their page's content token.
struct KSMStableTree: IntervalTreeAccessor {
    let k: Kernel
    @inline(__always) func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node> {
        UnsafeMutableRawPointer(k.ksmNode(KSMNodeID(n))).advanced(by: MemoryLayout<rmap_ksm_node>.offset(of: \rmap_ksm_node.node)!)
            .assumingMemoryBound(to: rmap_rb_node.self)
    }
    @inline(__always) func start(_ n: UInt32) -> UInt64 { k.ksmNode(KSMNodeID(n)).pointee.content }
    @inline(__always) func last(_ n: UInt32) -> UInt64 { k.ksmNode(KSMNodeID(n)).pointee.content }
}

/// root_unstable_tree: rmap_items keyed by the checksum the scan saw.
struct KSMUnstableTree: IntervalTreeAccessor {
    let k: Kernel
    @inline(__always) func links(_ n: UInt32) -> UnsafeMutablePointer<rmap_rb_node> {
        UnsafeMutableRawPointer(k.ksmItem(KSMItemID(n))).advanced(by: MemoryLayout<rmap_ksm_item>.offset(of: \rmap_ksm_item.node)!)
            .assumingMemoryBound(to: rmap_rb_node.self)
    }
    @inline(__always) func start(_ n: UInt32) -> UInt64 { k.ksmItem(KSMItemID(n)).pointee.oldchecksum }
    @inline(__always) func last(_ n: UInt32) -> UInt64 { k.ksmItem(KSMItemID(n)).pointee.oldchecksum }
}

extension Kernel {
    var ksmStableTree: KSMStableTree { KSMStableTree(k: self) }
    var ksmUnstableTree: KSMUnstableTree { KSMUnstableTree(k: self) }

    @inline(__always) var ksmStableRoot: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(header).advanced(by: MemoryLayout<rmap_arena_header>.offset(of: \rmap_arena_header.ksm_stable_root)!)
            .assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) var ksmUnstableRoot: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(header).advanced(by: MemoryLayout<rmap_arena_header>.offset(of: \rmap_arena_header.ksm_unstable_root)!)
            .assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) func mmKSMRmapList(_ m: MMID) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(mm(m)).advanced(by: MemoryLayout<rmap_mm>.offset(of: \rmap_mm.ksm_rmap_list)!)
            .assumingMemoryBound(to: UInt32.self)
    }
    @inline(__always) func itemRmapList(_ i: KSMItemID) -> UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(ksmItem(i)).advanced(by: MemoryLayout<rmap_ksm_item>.offset(of: \rmap_ksm_item.rmap_list)!)
            .assumingMemoryBound(to: UInt32.self)
    }

    // MARK: KSM pages

    /// folio_test_ksm(): page->mapping tagged PAGE_MAPPING_KSM.
    @inline(__always) func pageIsKSM(_ pfn: PFN) -> Bool {
        page(folioOf(pfn)).pointee.mapping & PageMapping.flags == PageMapping.ksm
    }

    /// folio_stable_node(): the stable node of a KSM page (0: none, or not KSM).
    @inline(__always) func folioStableNode(_ pfn: PFN) -> KSMNodeID {
        let m = page(pfn).pointee.mapping
        guard m & PageMapping.flags == PageMapping.ksm, m & ~PageMapping.flags != 0 else { return .none }
        return KSMNodeID(index(table: T.ksmNode, offset: m & ~PageMapping.flags))
    }

    /// folio_set_stable_node(): page->mapping = stable_node | PAGE_MAPPING_KSM.
    @inline(__always) func folioSetStableNode(_ pfn: PFN, _ node: KSMNodeID) {
        page(pfn).pointee.mapping = (node.isNone ? 0 : offset(table: T.ksmNode, index: node.rawValue)) | PageMapping.ksm
    }

    /// rmap_item->head: the stable node a stable item is listed from.
    @inline(__always) func itemHead(_ i: KSMItemID) -> KSMNodeID { KSMNodeID(ksmItem(i).pointee.head) }

    /// The vm_pgoff a stable rmap_item records. In Linux 6.18 struct
    /// ksm_rmap_item keeps oldchecksum, age and remaining_skips in fields of
    /// their own, so they survive the stable phase: a KSM page's mapping
    /// that COW breaks and is written back with the same content merges
    /// again on the next scan (its checksum is unchanged), as the kernel
    /// oracle shows (a union overlaying them would need two scans).
    @inline(__always) func setItemPgoff(_ i: KSMItemID, _ pgoff: UInt64) {
        ksmItem(i).pointee.vm_pgoff = pgoff
    }

    /// The KSM walk mode of this machine (bits 8-9 of the header's reuse_policy word).
    var ksmWalkMode: KSMWalkMode {
        get { KSMWalkMode(rawValue: (header.pointee.reuse_policy >> 8) & 0x3) ?? .full }
        nonmutating set { header.pointee.reuse_policy = header.pointee.reuse_policy & 0xff | newValue.rawValue << 8 }
    }

    /// calc_checksum(): the kernel hashes the page (xxhash) into the u32
    /// rmap_item->oldchecksum; here a 32-bit hash of the content token (the
    /// low half of SplitMix64's finaliser). Like the kernel's, it can
    /// collide: equal checksums do not mean equal pages, and only the full
    /// comparison (memcmp_pages, pages_identical: token equality) decides a
    /// merge. A zeroed page's checksum is not the initial 0 of a new
    /// rmap_item's oldchecksum.
    @inline(__always) package static func ksmChecksum(_ content: UInt64) -> UInt64 {
        var z = content &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return UInt64(UInt32(truncatingIfNeeded: z ^ (z >> 31)))
    }

    // MARK: mm slots

    /// ksm_mm_head's list of mm slots (the header's head and tail, each
    /// mm's ksm_slot_next: raw indices in the arena).
    @inline(__always) var ksmMMHead: MMID {
        get { MMID(header.pointee.ksm_mm_head) }
        nonmutating set { header.pointee.ksm_mm_head = newValue.rawValue }
    }
    @inline(__always) var ksmMMTail: MMID {
        get { MMID(header.pointee.ksm_mm_tail) }
        nonmutating set { header.pointee.ksm_mm_tail = newValue.rawValue }
    }
    @inline(__always) func ksmSlotNext(_ m: MMID) -> MMID { MMID(mm(m).pointee.ksm_slot_next) }
    @inline(__always) func setKSMSlotNext(_ m: MMID, _ next: MMID) { mm(m).pointee.ksm_slot_next = next.rawValue }
    /// rmap_item->mm
    @inline(__always) func itemMM(_ i: KSMItemID) -> MMID { MMID(ksmItem(i).pointee.mm) }

    /// __ksm_enter(): the mm joins ksm_mm_head's list (at the tail: between
    /// `ksm scan` statements the cursor is at the head, and a new slot goes
    /// just behind it) and gets MMF_VM_MERGEABLE. The slot is part of the mm
    /// record, so nothing can fail.
    func ksmEnter(_ m: MMID) {
        let p = mm(m)
        guard p.pointee.ksm_flags & KSMFlag.mmMergeable == 0 else { return }
        p.pointee.ksm_flags |= KSMFlag.mmMergeable
        p.pointee.ksm_slot_next = 0
        if !ksmMMTail.isNone {
            setKSMSlotNext(ksmMMTail, m)
        } else {
            ksmMMHead = m
        }
        ksmMMTail = m
    }

    /// Takes the mm off ksm_mm_head's list (hash_del + list_del of the slot)
    /// and clears MMF_VM_MERGEABLE.
    func ksmRemoveSlot(_ m: MMID) {
        guard mm(m).pointee.ksm_flags & KSMFlag.mmMergeable != 0 else { return }
        var prev = MMID.none
        var x = ksmMMHead
        while !x.isNone && x != m { prev = x; x = ksmSlotNext(x) }
        if x == m {
            let next = ksmSlotNext(m)
            if prev.isNone { ksmMMHead = next } else { setKSMSlotNext(prev, next) }
            if ksmMMTail == m { ksmMMTail = prev }
        }
        mm(m).pointee.ksm_slot_next = 0
        mm(m).pointee.ksm_flags &= ~KSMFlag.mmMergeable
    }

    /// ksm_exit() / __ksm_exit() with what ksmd then does for an exiting mm
    /// (scan_get_next_rmap_item: remove_trailing_rmap_items of the whole
    /// list, free the slot). Called before the address space is torn down.
    func ksmExit(_ m: MMID) {
        guard mm(m).pointee.ksm_flags & KSMFlag.mmMergeable != 0 else { return }
        removeTrailingRmapItems(mmKSMRmapList(m))
        ksmRemoveSlot(m)
    }

    /// ksm_fork(): a child of a mergeable mm is entered too (its VMAs keep VM_MERGEABLE).
    func ksmFork(child: MMID, parent: MMID) {
        if mm(parent).pointee.ksm_flags & KSMFlag.mmMergeable != 0 { ksmEnter(child) }
    }

    // MARK: madvise

    /// vma_ksm_compatible() / ksm_compatible(): not shared, not hugetlb, not
    /// VM_SPECIAL (VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP). (No DAX, SAO, ADI here.)
    func vmaKSMCompatible(_ v: VMAID) -> Bool {
        let f = vma(v).pointee.vm_flags
        if f & (VM.shared | VM.mayshare | VM.hugetlb) != 0 { return false }
        if f & (VM.io | VM.dontexpand | VM.pfnmap | VM.mixedmap) != 0 { return false }
        return true
    }

    /// ksm_madvise(): MADV_MERGEABLE sets VM_MERGEABLE in `flags` (and enters
    /// the mm); MADV_UNMERGEABLE breaks every KSM page of [start, end) first
    /// (break_ksm), then clears it. An incompatible VMA ignores the advice.
    func ksmMadvise(_ v: VMAID, start: UInt64, end: UInt64, advice: Advice, flags: inout UInt64) -> Errno? {
        switch advice {
        case .mergeable:
            if vma(v).pointee.vm_flags & VM.mergeable != 0 { return nil }
            if !vmaKSMCompatible(v) { return nil }
            ksmEnter(vmMM(v))
            flags |= VM.mergeable
        case .unmergeable:
            if flags & VM.mergeable == 0 { return nil }  // just ignore the advice
            if vma(v).pointee.anon_vma != 0, let e = breakKSM(v, start, end) { return e }
            flags &= ~VM.mergeable
        default:
            break
        }
        return nil
    }

    /// break_ksm(): while [start, end) of `v` maps a KSM page (or holds a
    /// migration entry for one), unshare it with handle_mm_fault(
    /// FAULT_FLAG_UNSHARE): do_wp_page cannot reuse a KSM page, so
    /// wp_page_copy() gives the process an exclusive, read-only copy.
    /// ENOMEM when the fault runs out of memory.
    func breakKSM(_ v: VMAID, _ start: UInt64, _ end: UInt64) -> Errno? {
        let m = vmMM(v)
        var addr = start
        while true {
            // break_ksm_pmd_entry(): the first KSM page in [addr, end).
            var found: UInt64 = 0
            var slotFound: UnsafeMutablePointer<UInt64>?
            walkLeaves(root: mm(m).pointee.pgd, start: addr, end: end) { a, slot in
                let e = slot.pointee
                var pfn: PFN = .none
                if PTE.isPresent(e) {
                    pfn = vmNormalPage(e)
                } else if PTE.isMigrationEntry(e) {
                    pfn = PTE.swpOffsetPFN(e)
                }
                if !pfn.isNone && pageIsKSM(pfn) {
                    found = a
                    slotFound = slot
                    return false
                }
                return true
            }
            guard let slot = slotFound else { return nil }
            addr = found
            let e = slot.pointee
            if !PTE.isPresent(e) {
                // A fault on the migration entry waits for it to end (the
                // model finishes it: removeMigrationEntryOnFault), then retries.
                let pfn = PTE.swpOffsetPFN(e)
                restoreMigrationPTE(slot, vma: v, address: addr, old: pfn, new: pfn)
                continue
            }
            // handle_mm_fault(FAULT_FLAG_UNSHARE) -> do_wp_page -> wp_page_copy(unshare).
            let r = wpPageCopy(m, v, addr, slot, old: vmNormalPage(e), unshare: true)
            if r == .oom { return .ENOMEM }
            if r != .ok { return nil }
        }
    }

    // MARK: rmap items

    /// free_rmap_item()
    func freeRmapItem(_ i: KSMItemID) {
        let m = itemMM(i)
        if !m.isNone { mm(m).pointee.ksm_rmap_items -= 1 }
        free(T.ksmItem, i.rawValue)
    }

    /// hlist_del(&rmap_item->hlist)
    func ksmHlistDel(_ i: KSMItemID) {
        let p = ksmItem(i)
        let next = KSMItemID(p.pointee.hlist_next), prev = KSMItemID(p.pointee.hlist_prev)
        if !prev.isNone { ksmItem(prev).pointee.hlist_next = next.rawValue } else { ksmNode(itemHead(i)).pointee.hlist = next.rawValue }
        if !next.isNone { ksmItem(next).pointee.hlist_prev = prev.rawValue }
        p.pointee.hlist_next = 0
        p.pointee.hlist_prev = 0
    }

    /// remove_rmap_item_from_tree(): a stable item leaves its node's hlist
    /// (dropping its anon_vma reference); an unstable one leaves the
    /// unstable tree if this scan inserted it (an older tree was already
    /// dropped whole). The flags are cleared.
    func removeRmapItemFromTree(_ i: KSMItemID) {
        let p = ksmItem(i)
        if p.pointee.address & KSMFlag.stable != 0 {
            let node = itemHead(i)
            let kpfn = ksmGetFolio(node)
            if kpfn.isNone { return }  // the node was stale: remove_node_from_stable_tree did the rest
            ksmHlistDel(i)
            putPage(kpfn)
            let n = ksmNode(node)
            if n.pointee.hlist != 0 { header.pointee.ksm_pages_sharing -= 1 } else { header.pointee.ksm_pages_shared -= 1 }
            mm(MMID(p.pointee.mm)).pointee.ksm_merging_pages -= 1
            n.pointee.rmap_hlist_len -= 1
            putAnonVMA(AnonVMAID(p.pointee.anon_vma))
            setItemPgoff(i, 0)
            p.pointee.head = 0
            p.pointee.address &= KSMFlag.pageMask
        } else if p.pointee.address & KSMFlag.unstable != 0 {
            let age = UInt8(truncatingIfNeeded: header.pointee.ksm_seqnr &- p.pointee.address)
            if age == 0 { IntervalTree.remove(i.rawValue, root: ksmUnstableRoot, ksmUnstableTree) }
            header.pointee.ksm_pages_unshared -= 1
            p.pointee.address &= KSMFlag.pageMask
        }
    }

    /// remove_trailing_rmap_items(): frees every item from `link` on.
    func removeTrailingRmapItems(_ link: UnsafeMutablePointer<UInt32>) {
        while link.pointee != 0 {
            let i = KSMItemID(link.pointee)
            link.pointee = ksmItem(i).pointee.rmap_list
            removeRmapItemFromTree(i)
            freeRmapItem(i)
        }
    }

    /// get_next_rmap_item(): the item for `addr` in the mm's sorted list,
    /// freeing the items passed over (their pages are gone); a new one if
    /// there is none. 0 when the item table is full.
    func getNextRmapItem(_ m: MMID, _ link: UnsafeMutablePointer<UInt32>, _ addr: UInt64) -> KSMItemID {
        while link.pointee != 0 {
            let i = KSMItemID(link.pointee)
            if ksmItem(i).pointee.address & KSMFlag.pageMask == addr { return i }
            if ksmItem(i).pointee.address > addr { break }
            link.pointee = ksmItem(i).pointee.rmap_list
            removeRmapItemFromTree(i)
            freeRmapItem(i)
        }
        let i = KSMItemID(alloc(T.ksmItem))
        if i.isNone { return .none }
        let p = ksmItem(i)
        p.pointee.mm = m.rawValue
        mm(m).pointee.ksm_rmap_items += 1
        p.pointee.address = addr
        p.pointee.rmap_list = link.pointee
        link.pointee = i.rawValue
        return i
    }

    // MARK: the stable tree

    /// ksm_get_folio(): the stable node's page if it still holds the key
    /// (page->mapping == stable_node | PAGE_MAPPING_KSM: the "keyhole
    /// reference"), with a reference taken; otherwise the node is stale and
    /// is removed (remove_node_from_stable_tree) and the result is 0.
    func ksmGetFolio(_ node: KSMNodeID) -> PFN {
        let kpfn = PFN(ksmNode(node).pointee.kpfn)
        let expected = offset(table: T.ksmNode, index: node.rawValue) | PageMapping.ksm
        if !kpfn.isNone, kpfn.rawValue < desc(T.frame).pointee.bump, page(kpfn).pointee.mapping == expected,
           page(kpfn).pointee.refcount > 0 {
            getPage(kpfn)
            return kpfn
        }
        removeNodeFromStableTree(node)
        return .none
    }

    /// remove_node_from_stable_tree(): every item of the node loses its
    /// stable flag and anon_vma reference (they keep `head`, as in the
    /// kernel, but are no longer listed); the node leaves the tree and is freed.
    func removeNodeFromStableTree(_ node: KSMNodeID) {
        var i = KSMItemID(ksmNode(node).pointee.hlist)
        while !i.isNone {
            let p = ksmItem(i)
            let next = KSMItemID(p.pointee.hlist_next)
            if !next.isNone { header.pointee.ksm_pages_sharing -= 1 } else { header.pointee.ksm_pages_shared -= 1 }
            mm(MMID(p.pointee.mm)).pointee.ksm_merging_pages -= 1
            ksmNode(node).pointee.rmap_hlist_len -= 1
            putAnonVMA(AnonVMAID(p.pointee.anon_vma))
            setItemPgoff(i, 0)
            p.pointee.address &= KSMFlag.pageMask
            p.pointee.hlist_next = 0
            p.pointee.hlist_prev = 0
            i = next
        }
        IntervalTree.remove(node.rawValue, root: ksmStableRoot, ksmStableTree)  // stable_node_dup_del()
        free(T.ksmNode, node.rawValue)
    }

    /// is_page_sharing_candidate(): a node with at least one mapping left
    /// (ksm_max_page_sharing is not modelled).
    @inline(__always) func isPageSharingCandidate(_ node: KSMNodeID) -> Bool {
        ksmNode(node).pointee.rmap_hlist_len != 0
    }

    /// stable_tree_search(): a KSM page with the same content as `pfn`, with
    /// a reference (a KSM page itself: "ksm page forked"). Stale nodes met
    /// are removed and the search restarts. 0 when none.
    func stableTreeSearch(_ pfn: PFN) -> PFN {
        if !folioStableNode(pfn).isNone {
            getPage(pfn)
            return pfn
        }
        let content = page(pfn).pointee.content
        again: while true {
            let node = KSMNodeID(IntervalTree.iterFirst(root: ksmStableRoot.pointee, start: content, last: content, ksmStableTree))
            if node.isNone { return .none }
            let tree = ksmGetFolio(node)  // chain_prune() -> ksm_get_folio(NOLOCK)
            if tree.isNone { continue again }
            putPage(tree)  // memcmp_pages() said equal
            if !isPageSharingCandidate(node) { return .none }
            let locked = ksmGetFolio(node)  // KSM_GET_FOLIO_TRYLOCK
            if locked.isNone { continue again }
            return locked
        }
    }

    /// stable_tree_insert(): a new stable node for the KSM page `kpfn`
    /// (already write-protected and mapped), linked into the stable tree;
    /// the page's mapping points at it. 0 when the node table is full.
    func stableTreeInsert(_ kpfn: PFN) -> KSMNodeID {
        let content = page(kpfn).pointee.content
        // Stale nodes with this content are pruned first (chain()).
        while true {
            let node = KSMNodeID(IntervalTree.iterFirst(root: ksmStableRoot.pointee, start: content, last: content, ksmStableTree))
            if node.isNone { break }
            let tree = ksmGetFolio(node)
            if tree.isNone { continue }
            putPage(tree)
            break  // need_chain: not modelled, the new node is linked beside it
        }
        let node = KSMNodeID(alloc(T.ksmNode))
        if node.isNone { return .none }
        let n = ksmNode(node)
        n.pointee.hlist = 0
        n.pointee.kpfn = kpfn.rawValue
        n.pointee.rmap_hlist_len = 0
        n.pointee.content = content
        IntervalTree.insert(node.rawValue, root: ksmStableRoot, ksmStableTree)
        folioSetStableNode(kpfn, node)
        return node
    }

    /// stable_tree_append(): the item is listed from the node (hlist_add_head).
    func stableTreeAppend(_ i: KSMItemID, _ node: KSMNodeID) {
        let n = ksmNode(node), p = ksmItem(i)
        n.pointee.rmap_hlist_len += 1
        p.pointee.head = node.rawValue
        p.pointee.address |= KSMFlag.stable
        p.pointee.hlist_prev = 0
        p.pointee.hlist_next = n.pointee.hlist
        if n.pointee.hlist != 0 { ksmItem(KSMItemID(n.pointee.hlist)).pointee.hlist_prev = i.rawValue }
        n.pointee.hlist = i.rawValue
        if p.pointee.hlist_next != 0 { header.pointee.ksm_pages_sharing += 1 } else { header.pointee.ksm_pages_shared += 1 }
        mm(MMID(p.pointee.mm)).pointee.ksm_merging_pages += 1
    }

    // MARK: the unstable tree

    /// find_mergeable_vma(): the VM_MERGEABLE VMA with an anon_vma at `addr`.
    func findMergeableVMA(_ m: MMID, _ addr: UInt64) -> VMAID {
        let v = vmaLookup(m, addr)
        guard !v.isNone, vma(v).pointee.vm_flags & VM.mergeable != 0, vma(v).pointee.anon_vma != 0 else { return .none }
        return v
    }

    /// get_mergeable_page(): the anonymous page the item's (mm, address)
    /// maps, with a reference; 0 if none.
    func getMergeablePage(_ i: KSMItemID) -> PFN {
        let m = itemMM(i)
        let addr = ksmItem(i).pointee.address & KSMFlag.pageMask
        guard !findMergeableVMA(m, addr).isNone else { return .none }
        let pfn = mappedPage(m, addr)  // folio_walk_start(): a PTE or a PMD leaf
        guard !pfn.isNone, pageIsAnon(pfn) else { return .none }
        getPage(pfn)
        return pfn
    }

    /// unstable_tree_search_insert(): an item of the unstable tree whose
    /// page has the same content as `pfn` (returned with its page, which
    /// holds a reference), else `i` is inserted (UNSTABLE_FLAG and the
    /// seqnr in its address). A forked copy of the same page is not merged.
    func unstableTreeSearchInsert(_ i: KSMItemID, _ pfn: PFN) -> (item: KSMItemID, page: PFN) {
        let content = page(pfn).pointee.content
        let key = Kernel.ksmChecksum(content)
        var t = KSMItemID(IntervalTree.iterFirst(root: ksmUnstableRoot.pointee, start: key, last: key, ksmUnstableTree))
        while !t.isNone {
            let tree = getMergeablePage(t)
            if tree.isNone { return (.none, .none) }
            if tree == pfn { putPage(tree); return (.none, .none) }  // don't substitute a ksm page for a forked page
            if page(tree).pointee.content == content { return (t, tree) }  // memcmp_pages() == 0
            putPage(tree)
            t = KSMItemID(IntervalTree.iterNext(t.rawValue, start: key, last: key, ksmUnstableTree))
        }
        let p = ksmItem(i)
        p.pointee.address |= KSMFlag.unstable | (header.pointee.ksm_seqnr & KSMFlag.seqnrMask)
        p.pointee.oldchecksum = key
        IntervalTree.insert(i.rawValue, root: ksmUnstableRoot, ksmUnstableTree)
        header.pointee.ksm_pages_unshared += 1
        return (.none, .none)
    }

    // MARK: merging

    /// page_address_in_vma() for an anonymous page: where `v` maps it, nil
    /// when `v`'s anon_vma is not in the page's anon_vma tree.
    func pageAddressInVMA(_ pfn: PFN, _ v: VMAID) -> UInt64? {
        let vav = vmaAnonVMA(v)
        guard !vav.isNone else { return nil }
        if !pageIsKSM(pfn) {
            let av = pageAnonVMA(pfn)
            guard !av.isNone, anonVMARootOf(vav) == anonVMARootOf(av) else { return nil }
        }
        let head = folioOf(pfn)
        return vmaAddress(v, index: page(head).pointee.index &+ UInt64(head.distance(to: pfn)))
    }

    /// write_protect_page(): the PTE of `v` mapping `pfn` becomes read-only
    /// and clean (its dirty bit moves to the page), unless the page has a
    /// reference beyond its mappings, the caller's and the swap cache's
    /// (then the PTE is restored and the merge fails). An exclusive page is
    /// shared first (folio_try_share_anon_rmap_pte: no GUP pins here, it
    /// succeeds). `orig` receives the PTE. MMU notifiers: MMU_NOTIFY_CLEAR.
    func writeProtectPage(_ v: VMAID, _ pfn: PFN, orig: inout UInt64) -> Bool {
        guard let address = pageAddressInVMA(pfn, v) else { return false }
        let m = vmMM(v)
        mmuInvalidateRangeStart(m, address, address + PAGE_SIZE)
        defer { mmuInvalidateRangeEnd(m, address, address + PAGE_SIZE) }
        guard let slot = pageVMAMappedWalk(pfn, v, address) else { return false }
        var entry = slot.pointee
        let p = page(pfn)
        let anonExclusive = p.pointee.flags & PG.anonExclusive != 0
        if PTE.isWrite(entry) || PTE.isDirty(entry) || anonExclusive {
            let swapped: Int32 = p.pointee.flags & PG.swapcache != 0 ? 1 : 0
            entry = slot.pointee
            slot.pointee = 0
            flushTLBPage()  // ptep_clear_flush()
            if Int32(pageMapcount(pfn)) + 1 + swapped != p.pointee.refcount {
                slot.pointee = entry
                return false
            }
            if anonExclusive { p.pointee.flags &= ~PG.anonExclusive }
            if PTE.isDirty(entry) { p.pointee.flags |= PG.dirty }  // folio_mark_dirty()
            entry &= ~(PTE.dirty | PTE.rw)  // pte_mkclean(), pte_wrprotect()
            slot.pointee = entry
        }
        orig = entry
        return true
    }

    /// replace_page(): `v`'s PTE of `pfn` (still `orig`) maps the KSM page
    /// `kpfn` instead: read-only (vm_page_prot), the KSM page's rmap and
    /// reference added, the old page's removed (and its swap slot freed
    /// once unmapped). MM counters do not change (anon for anon).
    func replacePage(_ v: VMAID, _ pfn: PFN, _ kpfn: PFN, orig: UInt64) -> Bool {
        guard let addr = pageAddressInVMA(pfn, v) else { return false }
        let m = vmMM(v)
        guard let slot = leafSlot(root: mm(m).pointee.pgd, key: addr) else { return false }
        mmuInvalidateRangeStart(m, addr, addr + PAGE_SIZE)
        defer { mmuInvalidateRangeEnd(m, addr, addr + PAGE_SIZE) }
        guard slot.pointee == orig else { return false }  // pte_same()
        getPage(kpfn)
        folioAddAnonRmapPTE(kpfn, vma: v, address: addr, exclusive: false)  // RMAP_NONE
        let newpte = PTE.make(pfn: kpfn, prot: PTE.pageProt(vmFlags: vma(v).pointee.vm_flags))
        slot.pointee = 0
        flushTLBPage()  // ptep_clear_flush()
        slot.pointee = newpte
        folioRemoveRmapPTE(pfn, vma: v)
        if pageMapcount(pfn) == 0 && page(pfn).pointee.flags & PG.swapcache != 0 { folioFreeSwap(pfn) }
        putPage(pfn)
        return true
    }

    /// try_to_merge_one_page(): with `kpfn` 0, `pfn` itself becomes a KSM
    /// page (write-protected, mapping = PAGE_MAPPING_KSM with no node yet,
    /// accessed, dirty so reclaim swaps it); otherwise `pfn`'s mapping in `v`
    /// is replaced by `kpfn` if their contents are identical.
    func tryToMergeOnePage(_ v: VMAID, _ pfn: PFN, _ kpfn: PFN) -> Bool {
        if pfn == kpfn { return true }  // ksm page forked
        guard pageIsAnon(pfn) else { return false }
        // A page of a large folio: split_huge_page() first (the caller's
        // reference pins the page); a folio that cannot be split is not
        // merged. The split may map the page to the zero page (all zero):
        // then it is no longer mapped here and nothing merges.
        let head = folioOf(pfn)
        if _slowPath(folioIsLarge(head)) {
            guard splitFolio(head, pinned: pfn), pageMapcount(pfn) > 0 else { return false }
        }
        var orig: UInt64 = 0
        guard writeProtectPage(v, pfn, orig: &orig) else { return false }
        if kpfn.isNone {
            folioSetStableNode(pfn, .none)
            page(pfn).pointee.flags |= PG.referenced  // folio_mark_accessed()
            page(pfn).pointee.flags |= PG.dirty       // folio_mark_dirty() if clean
            return true
        }
        guard page(pfn).pointee.content == page(kpfn).pointee.content else { return false }  // pages_identical()
        return replacePage(v, pfn, kpfn, orig: orig)
    }

    /// try_to_merge_with_ksm_page(): merges the item's page into `kpfn`
    /// (0: makes it a KSM page), then the item records the VMA's anon_vma
    /// (with a reference) and vm_pgoff for rmap_walk_ksm.
    func tryToMergeWithKSMPage(_ i: KSMItemID, _ pfn: PFN, _ kpfn: PFN) -> Bool {
        let v = findMergeableVMA(itemMM(i), ksmItem(i).pointee.address & KSMFlag.pageMask)
        guard !v.isNone, tryToMergeOnePage(v, pfn, kpfn) else { return false }
        removeRmapItemFromTree(i)  // unstable nid is in union with stable anon_vma
        let av = vmaAnonVMA(v)
        ksmItem(i).pointee.anon_vma = av.rawValue
        // The series' v4-v5 store the VMA's vm_pgoff, v8 the page's
        // linear_page_index(vma, address) (6.x mainline keeps none: the walk
        // needs none).
        let r = vma(v).pointee
        let addr = ksmItem(i).pointee.address & KSMFlag.pageMask
        setItemPgoff(i, ksmWalkMode == .index ? r.vm_pgoff &+ ((addr &- r.vm_start) >> PAGE_SHIFT) : r.vm_pgoff)
        getAnonVMA(av)
        return true
    }

    /// try_to_merge_two_pages(): `pfn` becomes a KSM page and `tree` is
    /// merged into it; if the second step fails, the first is undone
    /// (break_cow). Returns the KSM page or 0.
    func tryToMergeTwoPages(_ i: KSMItemID, _ pfn: PFN, _ ti: KSMItemID, _ tree: PFN) -> PFN {
        guard tryToMergeWithKSMPage(i, pfn, .none) else { return .none }
        if !tryToMergeWithKSMPage(ti, tree, pfn) {
            breakCOW(i)
            return .none
        }
        return pfn
    }

    /// break_cow(): undoes a merge of an item not yet stable: drops its
    /// anon_vma reference and unshares its page (break_ksm on one page).
    func breakCOW(_ i: KSMItemID) {
        let p = ksmItem(i)
        putAnonVMA(AnonVMAID(p.pointee.anon_vma))
        setItemPgoff(i, 0)
        let addr = p.pointee.address & KSMFlag.pageMask
        let v = findMergeableVMA(MMID(p.pointee.mm), addr)
        if !v.isNone { _ = breakKSM(v, addr, addr + PAGE_SIZE) }
    }

    /// cmp_and_merge_page(): a KSM page already listed for this item is left
    /// alone; any other page must have kept its checksum since the last
    /// scan. Then: merge into an identical stable page, or with an identical
    /// page of the unstable tree (both become one new KSM page in the stable
    /// tree), or enter the unstable tree.
    func cmpAndMergePage(_ pfn: PFN, _ i: KSMItemID) {
        let stableNode = folioStableNode(pfn)
        if !stableNode.isNone {
            if itemHead(i) == stableNode && ksmItem(i).pointee.address & KSMFlag.stable != 0 { return }
        } else {
            removeRmapItemFromTree(i)
            let checksum = Kernel.ksmChecksum(page(pfn).pointee.content)  // calc_checksum()
            if ksmItem(i).pointee.oldchecksum != checksum {
                ksmItem(i).pointee.oldchecksum = checksum
                return
            }
            // try_to_merge_with_zero_page(): ksm_use_zero_pages is off.
        }
        let kpfn = stableTreeSearch(pfn)
        if kpfn == pfn && itemHead(i) == stableNode && ksmItem(i).pointee.address & KSMFlag.stable != 0 {
            putPage(kpfn)
            return
        }
        removeRmapItemFromTree(i)
        if !kpfn.isNone {
            if tryToMergeWithKSMPage(i, pfn, kpfn) {
                stableTreeAppend(i, folioStableNode(kpfn))
            }
            putPage(kpfn)
            return
        }
        let (ti, tree) = unstableTreeSearchInsert(i, pfn)
        guard !ti.isNone else { return }
        let k = tryToMergeTwoPages(i, pfn, ti, tree)
        putPage(tree)
        guard !k.isNone else { return }
        let node = stableTreeInsert(k)
        if !node.isNone {
            stableTreeAppend(ti, node)
            stableTreeAppend(i, node)
        } else {
            breakCOW(ti)
            breakCOW(i)
        }
    }

    /// should_skip_rmap_item() (ksm_smart_scan, on by default): a page that
    /// failed to merge for 3 scans is skipped for 1, 2, 4 then 8 scans. Only
    /// a KSM page is exempt: an item still listed from the stable tree whose
    /// page a write replaced ages like any other (6.18; the oracle shows it).
    func shouldSkipRmapItem(_ pfn: PFN, _ i: KSMItemID) -> Bool {
        if pageIsKSM(pfn) { return false }
        let p = ksmItem(i)
        let age = p.pointee.age
        if age != UInt8.max { p.pointee.age += 1 }
        if age < 3 { return false }
        if p.pointee.remaining_skips == 0 {
            p.pointee.remaining_skips = age <= 3 ? 1 : age <= 5 ? 2 : age <= 8 ? 4 : 8  // skip_age()
            return false
        }
        p.pointee.remaining_skips -= 1
        removeRmapItemFromTree(i)
        return true
    }

    /// One full pass of ksmd: ksm_do_scan() until scan_get_next_rmap_item()
    /// completes the list. The unstable tree starts empty; each mm on the
    /// list is scanned VMA by VMA (VM_MERGEABLE ones with an anon_vma), each
    /// present anonymous page (ksm_next_page_pmd_entry) gets its rmap_item
    /// and cmp_and_merge_page(); items of pages that are gone are freed; an
    /// mm with no VM_MERGEABLE VMA left leaves the list; then seqnr++.
    /// Returns false when an rmap_item could not be allocated (the pass ended early).
    @discardableResult
    func ksmScanPass() -> Bool {
        ksmUnstableRoot.pointee = 0  // root_unstable_tree = RB_ROOT
        var m = ksmMMHead
        while !m.isNone {
            let nextSlot = ksmSlotNext(m)
            var address: UInt64 = 0
            var link = mmKSMRmapList(m)
            var v = firstVMA(m)
            while !v.isNone {
                let p = vma(v).pointee
                if p.vm_flags & VM.mergeable == 0 { v = nextVMA(v); continue }
                if address < p.vm_start { address = p.vm_start }
                if p.anon_vma == 0 { address = p.vm_end }
                while address < p.vm_end {
                    var pfn: PFN = .none
                    // ksm_next_page_pmd_entry() / folio_walk_start(): a page of a
                    // PMD-mapped THP is scanned like any page (the huge zero
                    // page is not anonymous: skipped).
                    walkLeaves(root: mm(m).pointee.pgd, start: address, end: p.vm_end, pmd: { haddr, pmd in
                        let head = PTE.pfn(pmd.pointee)
                        guard PTE.isPMDLeaf(pmd.pointee), head != hugeZeroPFN else { return true }  // folio_walk_start: no folio for a migration entry
                        let a = max(address, haddr)
                        pfn = head.advanced(by: UInt32((a - haddr) >> PAGE_SHIFT))
                        address = a
                        return false
                    }) { a, slot in
                        let e = slot.pointee
                        guard PTE.isPresent(e) else { return true }
                        let f = vmNormalPage(e)
                        guard !f.isNone, pageIsAnon(f) else { return true }
                        pfn = f
                        address = a
                        return false
                    }
                    if pfn.isNone { address = p.vm_end; break }
                    getPage(pfn)  // folio_get()
                    let i = getNextRmapItem(m, link, address)
                    if i.isNone {
                        putPage(pfn)
                        return false
                    }
                    link = itemRmapList(i)
                    address += PAGE_SIZE
                    if !shouldSkipRmapItem(pfn, i) { cmpAndMergePage(pfn, i) }
                    putPage(pfn)
                }
                v = nextVMA(v)
            }
            // Nuke all the rmap_items above the last one scanned.
            removeTrailingRmapItems(link)
            if address == 0 { ksmRemoveSlot(m) }  // no VM_MERGEABLE VMA: like __ksm_exit
            m = nextSlot
        }
        header.pointee.ksm_seqnr &+= 1  // ksm_scan.seqnr wraps, as the kernel's unsigned long does
        return true
    }

    // MARK: the walk

    /// rmap_walk_ksm(): for each rmap_item of the page's stable node, the
    /// VMAs of its anon_vma's tree (the whole tree, [0, ULONG_MAX], as 6.x
    /// up to 6.17 does) that cover the item's address: first those of the
    /// item's own mm, then (search_new_forks) those of other mms, forked
    /// since ksmd passed. `ksmWalkMode` picks the AVC range: the full one,
    /// or the series "KSM: Optimizations for rmap_walk_ksm"'s
    /// [rmap_item->vm_pgoff, rmap_item->vm_pgoff] (v4-v5: the VMA's pgoff at
    /// merge time; v8: the page's index).
    @inline(__always)
    func rmapWalkKSM<C: RmapWalkControl>(_ pfn: PFN, _ c: inout C) {
        let node = folioStableNode(pfn)
        guard !node.isNone else { return }
        let ctx = RmapContext(k: self)
        let tree = avcTree
        let narrow = ksmWalkMode != .full
        for pass in 0..<2 {
            let searchNewForks = pass == 1
            var i = KSMItemID(ksmNode(node).pointee.hlist)
            while !i.isNone {
                let p = ksmItem(i).pointee
                let addr = p.address & KSMFlag.pageMask
                let root = anonVMARoot(AnonVMAID(p.anon_vma)).pointee
                var a = AVCID(narrow ? IntervalTree.iterFirst(root: root, start: p.vm_pgoff, last: p.vm_pgoff, tree)
                                     : IntervalTree.first(root: root, tree))
                while !a.isNone {
                    let v = avcVMA(a)
                    a = AVCID(narrow ? IntervalTree.iterNext(a.rawValue, start: p.vm_pgoff, last: p.vm_pgoff, tree)
                                     : IntervalTree.next(a.rawValue, tree))
                    let r = vma(v).pointee
                    if addr < r.vm_start || addr >= r.vm_end { continue }
                    if (p.mm == r.mm) == searchNewForks { continue }
                    if c.invalidVMA(ctx, vma: v) { continue }
                    if !c.rmapOne(ctx, pfn: pfn, vma: v, address: addr) { return }
                    if c.done(ctx, pfn: pfn) { return }
                }
                i = KSMItemID(p.hlist_next)
            }
        }
    }
}
