import CShims

/// The anon_vma reuse policy of anon_vma_clone(): which history of the kernel
/// the model follows.
public enum ReusePolicy: UInt32, Sendable, CaseIterable {
    /// 2.6.34 - 3.18: a child never reuses an anon_vma; the hierarchy grows
    /// with every fork generation (the fork-loop problem of 2015).
    case none = 0
    /// 3.19 - 5.19 (commit 7a3ef208e662, the seeds' v5.15): reuse when
    /// `anon_vma->degree < 2`. It can reuse an anon_vma a VMA still uses
    /// (CVE-2022-42703).
    case degree = 1
    /// 6.0 and later (commit 2555283eb40d): reuse when
    /// `num_children < 2 && num_active_vmas == 0`.
    case split = 2

    public var name: String {
        switch self {
        case .none: return "none"
        case .degree: return "degree"
        case .split: return "split"
        }
    }

    public static func named(_ s: String) -> ReusePolicy? { allCases.first { $0.name == s } }
}

/// anon_vma and anon_vma_chain management (mm/rmap.c).
///
/// Both counter schemes are kept on every anon_vma whatever the policy:
/// `degree` (v3.19-v5.19: child anon_vmas + VMAs pointing here, plus the
/// self-parent link of a root) and `num_children`/`num_active_vmas` (6.x).
/// The policy only decides the reuse test in anonVMAClone.
extension Kernel {
    /// The header's `reuse_policy` word: the policy in its low byte, the
    /// KSM walk mode (`KSMWalkMode`) in bits 8-9.
    var reusePolicy: ReusePolicy { ReusePolicy(rawValue: header.pointee.reuse_policy & 0xff) ?? .split }

    /// Whether anon_vma `av` is a live object (freed records are poisoned).
    @inline(__always) func anonVMAIsLive(_ av: AnonVMAID) -> Bool {
        !av.isNone && av.rawValue < desc(T.anonVMA).pointee.capacity && !isFree(T.anonVMA, av.rawValue)
    }

    /// Times anon_vma_clone() reused an anon_vma still used by a VMA, and the last one.
    package var anonVMAReusedInUse: (count: UInt64, last: UInt64) { (header.pointee.anon_vma_reused_in_use, header.pointee.anon_vma_reused_last) }

    /// anon_vma_alloc(): refcount 1, its own root and parent.
    func anonVMAAlloc() -> AnonVMAID {
        let av = AnonVMAID(alloc(T.anonVMA))
        if av.isNone { return .none }
        let p = anonVMA(av)
        p.pointee.refcount = 1
        p.pointee.degree = 1  // v5.15: "Reference for first vma"
        p.pointee.root = av.rawValue
        p.pointee.parent = av.rawValue
        header.pointee.anon_vma_serial &+= 1  // wrapping: a saved state may hold any value
        p.pointee.serial = header.pointee.anon_vma_serial
        return av
    }

    // The anon_vma links of the arena's records (raw indices there).
    /// vma->anon_vma
    @inline(__always) func vmaAnonVMA(_ v: VMAID) -> AnonVMAID { AnonVMAID(vma(v).pointee.anon_vma) }
    @inline(__always) func setVMAAnonVMA(_ v: VMAID, _ av: AnonVMAID) { vma(v).pointee.anon_vma = av.rawValue }
    /// avc->anon_vma
    @inline(__always) func avcAnonVMA(_ a: AVCID) -> AnonVMAID { AnonVMAID(avc(a).pointee.anon_vma) }
    /// avc->vma
    @inline(__always) func avcVMA(_ a: AVCID) -> VMAID { VMAID(avc(a).pointee.vma) }
    /// The first entry of vma->anon_vma_chain (the most recent AVC).
    @inline(__always) func vmaAVCHead(_ v: VMAID) -> AVCID { AVCID(vma(v).pointee.avc_head) }
    /// The next entry of the same_vma list.
    @inline(__always) func avcSameVMANext(_ a: AVCID) -> AVCID { AVCID(avc(a).pointee.same_vma_next) }
    /// anon_vma_chain_alloc(): a zeroed AVC; none when the table is full.
    @inline(__always) func avcAlloc() -> AVCID { AVCID(alloc(T.avc)) }
    /// anon_vma_chain_free()
    @inline(__always) func avcFree(_ a: AVCID) { free(T.avc, a.rawValue) }
    /// anon_vma->root
    @inline(__always) func anonVMARootOf(_ av: AnonVMAID) -> AnonVMAID { AnonVMAID(anonVMA(av).pointee.root) }
    /// anon_vma->parent
    @inline(__always) func anonVMAParentOf(_ av: AnonVMAID) -> AnonVMAID { AnonVMAID(anonVMA(av).pointee.parent) }

    /// get_anon_vma()
    @inline(__always) func getAnonVMA(_ av: AnonVMAID) { anonVMA(av).pointee.refcount += 1 }

    /// put_anon_vma() / __put_anon_vma(): frees at zero, then drops the root's
    /// reference a non-root anon_vma holds.
    func putAnonVMA(_ av: AnonVMAID) {
        let p = anonVMA(av)
        p.pointee.refcount -= 1
        guard p.pointee.refcount == 0 else { return }
        let root = AnonVMAID(p.pointee.root)
        free(T.anonVMA, av.rawValue)
        if root != av {
            anonVMA(root).pointee.refcount -= 1
            if anonVMA(root).pointee.refcount == 0 { free(T.anonVMA, root.rawValue) }
        }
    }

    /// anon_vma_chain_link(): the AVC joins the head of the VMA's same_vma list
    /// and the anon_vma's interval tree.
    func anonVMAChainLink(vma v: VMAID, avc a: AVCID, anonVMA av: AnonVMAID) {
        let c = avc(a)
        c.pointee.vma = v.rawValue
        c.pointee.anon_vma = av.rawValue
        let head = vmaAVCHead(v)
        c.pointee.same_vma_next = head.rawValue
        c.pointee.same_vma_prev = 0
        if !head.isNone { avc(head).pointee.same_vma_prev = a.rawValue }
        vma(v).pointee.avc_head = a.rawValue
        IntervalTree.insert(a.rawValue, root: anonVMARoot(av), avcTree)
    }

    /// list_del(&avc->same_vma)
    func avcListDel(_ a: AVCID) {
        let c = avc(a).pointee
        let prev = AVCID(c.same_vma_prev), next = AVCID(c.same_vma_next)
        if !prev.isNone { avc(prev).pointee.same_vma_next = next.rawValue }
        else { vma(VMAID(c.vma)).pointee.avc_head = next.rawValue }
        if !next.isNone { avc(next).pointee.same_vma_prev = prev.rawValue }
    }

    /// list_is_singular(&vma->anon_vma_chain)
    @inline(__always) func avcListIsSingular(_ v: VMAID) -> Bool {
        let h = vmaAVCHead(v)
        return !h.isNone && avcSameVMANext(h).isNone
    }

    @inline(__always) package func avcListLength(_ v: VMAID) -> Int {
        var n = 0
        var a = vmaAVCHead(v)
        while !a.isNone { n += 1; a = avcSameVMANext(a) }
        return n
    }

    /// anon_vma_compatible() (mm/vma.c)
    func anonVMACompatible(_ a: VMAID, _ b: VMAID) -> Bool {
        let x = vma(a).pointee, y = vma(b).pointee
        return x.vm_end == y.vm_start && x.file == y.file
            && (x.vm_flags ^ y.vm_flags) & ~(VM.accessFlags | VM.softdirty) == 0
            && y.vm_pgoff == x.vm_pgoff + ((y.vm_start - x.vm_start) >> PAGE_SHIFT)
    }

    /// reusable_anon_vma()
    func reusableAnonVMA(_ old: VMAID, _ a: VMAID, _ b: VMAID) -> AnonVMAID {
        guard anonVMACompatible(a, b) else { return .none }
        let av = vmaAnonVMA(old)
        return !av.isNone && avcListIsSingular(old) ? av : .none
    }

    /// find_mergeable_anon_vma(): the anon_vma of an adjacent VMA this one
    /// could later merge with, tried next first, then prev.
    func findMergeableAnonVMA(_ v: VMAID) -> AnonVMAID {
        let next = nextVMA(v)
        if !next.isNone && vma(next).pointee.vm_start == vma(v).pointee.vm_end {
            let av = reusableAnonVMA(next, v, next)
            if !av.isNone { return av }
        }
        let prev = prevVMA(v)
        if !prev.isNone { return reusableAnonVMA(prev, prev, v) }
        return .none
    }

    /// anon_vma_prepare(): gives the VMA an anon_vma (a mergeable
    /// neighbour's, or a new root) before its first anonymous page. False on
    /// ENOMEM, with nothing changed.
    @inline(__always) func anonVMAPrepare(_ v: VMAID) -> Bool {
        // anon_vma_prepare(): the inline test; the work is out of line, as
        // in the kernel, so a fault on a VMA that has its anon_vma pays a load.
        if _fastPath(vma(v).pointee.anon_vma != 0) { return true }
        return anonVMAPrepareSlow(v)
    }

    /// __anon_vma_prepare(): the out-of-line part of `anonVMAPrepare`.
    @inline(never) func anonVMAPrepareSlow(_ v: VMAID) -> Bool {
        guard available(T.avc) >= 1, available(T.anonVMA) >= 1 else { return false }
        let a = avcAlloc()
        var av = findMergeableAnonVMA(v)
        if av.isNone {
            av = anonVMAAlloc()
            anonVMA(av).pointee.num_children += 1  // self-parent link for new root
        }
        setVMAAnonVMA(v, av)
        anonVMAChainLink(vma: v, avc: a, anonVMA: av)
        anonVMA(av).pointee.degree += 1          // v5.15: vma reference or self-parent link
        anonVMA(av).pointee.num_active_vmas += 1 // 6.x
        return true
    }

    /// Whether anon_vma_clone() would reuse `av` for a child (the policy's test).
    @inline(__always) func mayReuse(_ av: AnonVMAID, src: VMAID) -> Bool {
        let p = anonVMA(av).pointee
        switch reusePolicy {
        case .none: return false
        case .degree: return av != vmaAnonVMA(src) && p.degree < 2
        case .split: return p.num_children < 2 && p.num_active_vmas == 0
        }
    }

    /// anon_vma_clone(): attaches `dst` to every anon_vma `src` is attached to,
    /// oldest first, reusing one when dst has none yet (fork) and the policy
    /// allows. False on ENOMEM with dst unchanged (checked up front, so the
    /// kernel's unwinding is never needed).
    func anonVMAClone(dst: VMAID, src: VMAID) -> Bool {
        let list = collectAVCs(src)
        guard available(T.avc) >= UInt32(list.count) else { return false }
        var i = list.count - 1
        while i >= 0 {  // list_for_each_entry_reverse
            let av = avcAnonVMA(list[i])
            let a = avcAlloc()
            anonVMAChainLink(vma: dst, avc: a, anonVMA: av)
            if vma(dst).pointee.anon_vma == 0 && vma(src).pointee.anon_vma != 0 && mayReuse(av, src: src) {
                if anonVMA(av).pointee.num_active_vmas > 0 {
                    // The reuse CVE-2022-42703 is about: an anon_vma that a
                    // VMA still uses (possible under `degree` only). Recorded
                    // for the checker, as a kernel WARN would be.
                    header.pointee.anon_vma_reused_in_use += 1
                    header.pointee.anon_vma_reused_last = UInt64(av.rawValue)
                }
                setVMAAnonVMA(dst, av)
            }
            i -= 1
        }
        if vma(dst).pointee.anon_vma != 0 {
            let av = vmaAnonVMA(dst)
            anonVMA(av).pointee.degree += 1
            anonVMA(av).pointee.num_active_vmas += 1
        }
        return true
    }

    /// anon_vma_fork(): the child VMA joins the parent's anon_vmas and gets
    /// its own (or reuses one) for its COWed pages. False on ENOMEM, nothing changed.
    func anonVMAFork(_ v: VMAID, parent pv: VMAID) -> Bool {
        let pav = vmaAnonVMA(pv)
        guard !pav.isNone else { return true }
        guard available(T.avc) >= UInt32(avcListLength(pv)) + 1, available(T.anonVMA) >= 1 else { return false }
        vma(v).pointee.anon_vma = 0
        _ = anonVMAClone(dst: v, src: pv)
        if vma(v).pointee.anon_vma != 0 { return true }
        let av = anonVMAAlloc()
        let a = avcAlloc()
        anonVMA(av).pointee.num_active_vmas += 1
        anonVMA(av).pointee.root = anonVMA(pav).pointee.root
        anonVMA(av).pointee.parent = pav.rawValue
        getAnonVMA(anonVMARootOf(av))
        setVMAAnonVMA(v, av)
        anonVMAChainLink(vma: v, avc: a, anonVMA: av)
        anonVMA(pav).pointee.degree += 1
        anonVMA(pav).pointee.num_children += 1
        return true
    }

    /// unlink_anon_vmas(): detaches the VMA from every anon_vma; anon_vmas
    /// whose tree becomes empty drop their parent's child count and a reference.
    func unlinkAnonVMAs(_ v: VMAID) {
        var a = vmaAVCHead(v)
        while !a.isNone {
            let next = avcSameVMANext(a)
            let av = avcAnonVMA(a)
            IntervalTree.remove(a.rawValue, root: anonVMARoot(av), avcTree)
            if anonVMARoot(av).pointee == 0 {
                // Leave empty anon_vmas on the list: freed below.
                let parent = anonVMAParentOf(av)
                anonVMA(parent).pointee.degree -= 1
                anonVMA(parent).pointee.num_children -= 1
            } else {
                avcListDel(a)
                avcFree(a)
            }
            a = next
        }
        let own = vmaAnonVMA(v)
        if !own.isNone {
            anonVMA(own).pointee.degree -= 1
            anonVMA(own).pointee.num_active_vmas -= 1
            vma(v).pointee.anon_vma = 0
        }
        a = vmaAVCHead(v)
        while !a.isNone {
            let next = avcSameVMANext(a)
            let av = avcAnonVMA(a)
            avcListDel(a)
            avcFree(a)
            putAnonVMA(av)
            a = next
        }
    }
}
