import CShims

/// VMA split and merge (mm/vma.c, 6.x): __split_vma, vma_merge_new_range,
/// vma_merge_existing_range, vma_expand, dup_anon_vma and the merge tests.
struct VMAMergeDesc {
    var start: UInt64
    var end: UInt64
    var flags: UInt64
    var file: FileID
    var pgoff: UInt64
    /// vmg->anon_vma: the anon_vma the range brings (middle's, or the copied VMA's).
    var anonVMA: AnonVMAID = .none
    /// vmg->middle: the VMA being modified (existing range), 0 for a new range.
    var middle: VMAID = .none
    /// vmg->copied_from: the VMA mremap copies (new range only).
    var copiedFrom: VMAID = .none
}

extension Kernel {
    /// VM_IGNORE_MERGE
    static let ignoreMerge: UInt64 = VM.softdirty
    /// VM_SPECIAL
    static let vmSpecial: UInt64 = VM.io | VM.dontexpand | VM.pfnmap | VM.mixedmap

    /// vma_is_fork_child(): a VMA with anon_vma and more than one AVC (it was
    /// forked and may hold COW pages of its parents).
    @inline(__always) func vmaIsForkChild(_ v: VMAID) -> Bool {
        !v.isNone && vma(v).pointee.anon_vma != 0 && !avcListIsSingular(v)
    }

    /// is_mergeable_vma()
    @inline(__always) func isMergeableVMA(_ v: VMAID, _ d: VMAMergeDesc) -> Bool {
        (vma(v).pointee.vm_flags ^ d.flags) & ~Kernel.ignoreMerge == 0 && vmFile(v) == d.file
    }

    /// is_mergeable_anon_vma()
    func isMergeableAnonVMA(_ tgt: VMAID, _ d: VMAMergeDesc) -> Bool {
        let tgtAnon = vmaAnonVMA(tgt)
        let srcAnon = d.anonVMA
        if tgtAnon.isNone && !srcAnon.isNone {
            return !vmaIsForkChild(d.middle) && !vmaIsForkChild(d.copiedFrom)
        }
        if !tgtAnon.isNone && srcAnon.isNone { return !vmaIsForkChild(tgt) }
        return srcAnon == tgtAnon
    }

    /// can_vma_merge_before(): the range can join the front of `next`.
    func canVMAMergeBefore(_ next: VMAID, _ d: VMAMergeDesc) -> Bool {
        isMergeableVMA(next, d) && isMergeableAnonVMA(next, d)
            && vma(next).pointee.vm_pgoff == d.pgoff + ((d.end - d.start) >> PAGE_SHIFT)
    }

    /// can_vma_merge_after(): the range can join the end of `prev`.
    func canVMAMergeAfter(_ prev: VMAID, _ d: VMAMergeDesc) -> Bool {
        isMergeableVMA(prev, d) && isMergeableAnonVMA(prev, d)
            && vma(prev).pointee.vm_pgoff + vmaPages(prev) == d.pgoff
    }

    /// can_vma_merge_left()
    func canVMAMergeLeft(_ prev: VMAID, _ d: VMAMergeDesc) -> Bool {
        !prev.isNone && vma(prev).pointee.vm_end == d.start && canVMAMergeAfter(prev, d)
    }

    /// can_vma_merge_right(): with a left merge too, prev and next must also
    /// agree with each other on anon_vma.
    func canVMAMergeRight(_ prev: VMAID, _ next: VMAID, _ d: VMAMergeDesc, left: Bool) -> Bool {
        guard !next.isNone, d.end == vma(next).pointee.vm_start, canVMAMergeBefore(next, d) else { return false }
        if !left { return true }
        let pa = vma(prev).pointee.anon_vma, na = vma(next).pointee.anon_vma
        return pa == 0 || na == 0 || pa == na
    }

    /// dup_anon_vma(): an unfaulted destination takes the source's anon_vma
    /// (and its AVCs) before it absorbs the source's range. False on ENOMEM.
    func dupAnonVMA(dst: VMAID, src: VMAID) -> Bool {
        guard !src.isNone, vma(src).pointee.anon_vma != 0, vma(dst).pointee.anon_vma == 0 else { return true }
        guard available(T.avc) >= UInt32(avcListLength(src)) else { return false }
        vma(dst).pointee.anon_vma = vma(src).pointee.anon_vma
        return anonVMAClone(dst: dst, src: src)
    }

    /// The room a merge or split may need: one VMA and a clone of the largest AVC list.
    func vmaOpHasRoom(_ v: VMAID) -> Bool {
        available(T.vma) >= 2 && available(T.avc) >= UInt32(2 * (avcListLength(v) + 2))
    }

    /// Removes a VMA absorbed by a merge (vma_complete's remove path):
    /// unlink its anon_vmas, take it off the trees, free it.
    func removeMergedVMA(_ v: VMAID) {
        vmaUnlinkFromMM(v)
        if vma(v).pointee.anon_vma != 0 || vma(v).pointee.avc_head != 0 { unlinkAnonVMAs(v) }
        vmAreaFree(v)
    }

    /// __split_vma(): splits `v` at `addr`; the new VMA takes the lower part
    /// when `newBelow`, else the upper part. Returns the new VMA, 0 on ENOMEM.
    func splitVMA(_ v: VMAID, at addr: UInt64, newBelow: Bool) -> VMAID {
        guard available(T.vma) >= 1, available(T.avc) >= UInt32(avcListLength(v)) else { return .none }
        // vma_adjust_trans_huge(): a PMD leaf across the new boundary is split.
        splitHugePMDIfNeeded(vmMM(v), addr)
        let n = vmAreaDup(v)
        let old = vma(v).pointee
        if newBelow {
            vma(n).pointee.vm_end = addr
        } else {
            vma(n).pointee.vm_start = addr
            vma(n).pointee.vm_pgoff += (addr - old.vm_start) >> PAGE_SHIFT
        }
        _ = anonVMAClone(dst: n, src: v)
        if newBelow {
            vmaSetRange(v, start: addr, end: old.vm_end, pgoff: old.vm_pgoff + ((addr - old.vm_start) >> PAGE_SHIFT))
        } else {
            vmaSetRange(v, start: old.vm_start, end: addr, pgoff: old.vm_pgoff)
        }
        vmaLink(n)
        return n
    }

    /// vma_merge_new_range(): a new range [d.start, d.end) joins prev and/or
    /// next. Returns the expanded VMA, 0 when no merge was possible.
    func vmaMergeNewRange(_ m: MMID, _ d: VMAMergeDesc, prev: VMAID, next: VMAID) -> VMAID {
        if d.flags & Kernel.vmSpecial != 0 || (prev.isNone && next.isNone) { return .none }
        let left = canVMAMergeLeft(prev, d)
        let right = canVMAMergeRight(prev, next, d, left: left)
        guard left || right else { return .none }
        guard vmaOpHasRoom(left ? prev : next) && (d.copiedFrom.isNone || vmaOpHasRoom(d.copiedFrom)) else { return .none }
        if left {
            // vma_expand(prev): over the new range, and over next too.
            if right {
                if !dupAnonVMA(dst: prev, src: next) { return .none }
            }
            if !d.copiedFrom.isNone && !dupAnonVMA(dst: prev, src: d.copiedFrom) { return .none }
            let newEnd = right ? vma(next).pointee.vm_end : d.end
            if right { removeMergedVMA(next) }
            vmaSetRange(prev, start: vma(prev).pointee.vm_start, end: newEnd, pgoff: vma(prev).pointee.vm_pgoff)
            return prev
        }
        if !d.copiedFrom.isNone && !dupAnonVMA(dst: next, src: d.copiedFrom) { return .none }
        vmaSetRange(next, start: d.start, end: vma(next).pointee.vm_end, pgoff: d.pgoff)
        return next
    }

    /// vma_merge_existing_range(): [d.start, d.end) of d.middle gets new
    /// flags and may merge into prev and/or next. Returns the merged VMA, 0 if none.
    func vmaMergeExistingRange(_ d: VMAMergeDesc, prev: VMAID) -> VMAID {
        let middle = d.middle
        let leftSide = d.start == vma(middle).pointee.vm_start
        let rightSide = d.end == vma(middle).pointee.vm_end
        if d.flags & Kernel.vmSpecial != 0 || (!leftSide && !rightSide) { return .none }
        let mergeLeft = leftSide && canVMAMergeLeft(prev, d)
        var next = VMAID.none
        var mergeRight = false
        if rightSide {
            next = nextVMA(middle)
            mergeRight = canVMAMergeRight(prev, next, d, left: mergeLeft)
        }
        guard mergeLeft || mergeRight else { return .none }
        guard vmaOpHasRoom(middle) && (next.isNone || vmaOpHasRoom(next)) else { return .none }
        let removeMiddle = leftSide && rightSide
        if mergeLeft && mergeRight {
            // prev extends over middle and next; both are removed.
            if !dupAnonVMA(dst: prev, src: vma(next).pointee.anon_vma != 0 ? next : middle) { return .none }
            let end = vma(next).pointee.vm_end
            removeMergedVMA(middle)
            removeMergedVMA(next)
            vmaSetRange(prev, start: vma(prev).pointee.vm_start, end: end, pgoff: vma(prev).pointee.vm_pgoff)
            return prev
        }
        if mergeLeft {
            if !dupAnonVMA(dst: prev, src: middle) { return .none }
            if removeMiddle {
                removeMergedVMA(middle)
            } else {
                let mid = vma(middle).pointee
                vmaSetRange(middle, start: d.end, end: mid.vm_end,
                            pgoff: mid.vm_pgoff + ((d.end - mid.vm_start) >> PAGE_SHIFT))
            }
            vmaSetRange(prev, start: vma(prev).pointee.vm_start, end: d.end, pgoff: vma(prev).pointee.vm_pgoff)
            return prev
        }
        // merge right
        if !dupAnonVMA(dst: next, src: middle) { return .none }
        let nx = vma(next).pointee
        let pglen = (d.end - d.start) >> PAGE_SHIFT
        if removeMiddle {
            removeMergedVMA(middle)
        } else {
            vmaSetRange(middle, start: vma(middle).pointee.vm_start, end: d.start, pgoff: vma(middle).pointee.vm_pgoff)
        }
        vmaSetRange(next, start: d.start, end: nx.vm_end, pgoff: nx.vm_pgoff - pglen)
        return next
    }

    /// vma_modify_flags() (vma_modify): the VMA that now covers exactly
    /// [start, end) of `v` (merged or split out) with `flags` set; ENOMEM,
    /// or EINVAL for a hugetlb VMA that would split at an address that is
    /// not 2 MiB aligned (__split_vma's may_split; a split made before it
    /// stays). A hugetlb VMA never merges (hugetlbfs_file_mmap sets
    /// VM_DONTEXPAND, part of VM_SPECIAL). `prev` is the VMA before v, or 0.
    func vmaModify(_ v: VMAID, prev: VMAID, start: UInt64, end: UInt64, flags: UInt64) -> Result<VMAID, Errno> {
        let p = vma(v).pointee
        var d = VMAMergeDesc(start: start, end: end, flags: flags, file: FileID(p.file),
                             pgoff: p.vm_pgoff + ((start - p.vm_start) >> PAGE_SHIFT))
        d.anonVMA = AnonVMAID(p.anon_vma)
        d.middle = v
        let merged = vmaMergeExistingRange(d, prev: prev)
        if !merged.isNone {
            vma(merged).pointee.vm_flags = flags
            return .success(merged)
        }
        guard vmaOpHasRoom(v) else { return .failure(.ENOMEM) }
        if p.vm_start < start {
            if let e = hugetlbMaySplit(v, start) { return .failure(e) }
            if isHugetlbVMA(v) { hugetlbSplitUnshare(v, start) }  // hugetlb_split()
            if splitVMA(v, at: start, newBelow: true).isNone { return .failure(.ENOMEM) }
        }
        if vma(v).pointee.vm_end > end {
            if let e = hugetlbMaySplit(v, end) { return .failure(e) }
            if isHugetlbVMA(v) { hugetlbSplitUnshare(v, end) }
            if splitVMA(v, at: end, newBelow: false).isNone { return .failure(.ENOMEM) }
        }
        vma(v).pointee.vm_flags = flags
        return .success(v)
    }
}
