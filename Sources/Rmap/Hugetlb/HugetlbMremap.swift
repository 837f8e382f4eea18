import CShims

/// How mremap keeps a private hugetlb mapping's reservations (issue 20): a
/// history mode like `ReusePolicy`, kept in the arena header
/// (`hugetlb_resv_mode`) so saved states keep it.
public enum HugetlbResvMode: UInt32, Sendable, CaseIterable {
    /// Linux 6.18 (mm/mremap.c copy_vma_and_data): after the move,
    /// clear_vma_resv_huge_pages() drops the reservation map and the
    /// HPAGE_RESV_OWNER flag of the whole old VMA, before the old range is
    /// unmapped (which splits it): the part of a partial move that stays
    /// behind loses its reservations' owner, and they are never given back
    /// (HugePages_Rsvd stays up for good).
    case v6_18 = 0
    /// The fix: the old VMA is split at the moved range first, so the map
    /// is dropped from the moved part only; the part left behind stays the
    /// owner and gives its reservations back at unmap
    /// (hugetlb_vm_op_close).
    case fixed = 1

    public var name: String {
        switch self {
        case .v6_18: return "6.18"
        case .fixed: return "fixed"
        }
    }

    public static func named(_ s: String) -> HugetlbResvMode? { allCases.first { $0.name == s } }
}

extension Kernel {
    var hugetlbResvMode: HugetlbResvMode { HugetlbResvMode(rawValue: header.pointee.hugetlb_resv_mode) ?? .v6_18 }

    /// mremap_to() of a hugetlb VMA with MREMAP_MAYMOVE|MREMAP_FIXED, the
    /// lengths already rounded to 2 MiB and checked (Machine.hugetlbOperation):
    /// a resizing move must lie in one VMA (EFAULT); the target is unmapped,
    /// then the tail beyond the new length (a shrinking move), then
    /// move_vma(). A multi-VMA move that meets VMAs other than hugetlb
    /// ones is refused by the caller (not modelled).
    func hugetlbMremapTo(_ m: MMID, addr: UInt64, oldLen: UInt64, newLen: UInt64, newAddr: UInt64,
                         unmap: (UInt64, UInt64) -> Errno?) -> Errno? {
        let v0 = vmaLookup(m, addr)
        guard !v0.isNone, isHugetlbVMA(v0) else { return .EFAULT }
        if oldLen == newLen && addr + oldLen > vma(v0).pointee.vm_end {
            // remap_move() (6.17+): a move that does not resize may span
            // VMAs and gaps after the first (vma_multi_allowed() lets hugetlb
            // VMAs in); each piece moves to the same offset, its own target
            // unmapped first.
            let end = addr + oldLen
            let list = vmasIntersecting(m, addr, end)
            guard list.allSatisfy({ isHugetlbVMA($0) }) else { return .EFAULT }  // Machine refuses these first
            let pieces = list.map { (max(vma($0).pointee.vm_start, addr), min(vma($0).pointee.vm_end, end)) }
            for (ps, pe) in pieces {
                if let e = hugetlbMremapTo(m, addr: ps, oldLen: pe - ps, newLen: pe - ps, newAddr: newAddr + (ps - addr),
                                           unmap: unmap) { return e }
            }
            return nil
        }
        if addr + min(oldLen, newLen) > vma(v0).pointee.vm_end { return .EFAULT }
        guard newAddr + newLen <= TraceLimits.maxAddress else { return .EINVAL }
        guard available(T.vma) >= 4, available(T.avc) >= UInt32(4 * (avcListLength(v0) + 2)),
              available(T.ptPage) >= Kernel.hugetlbTablesFor(0, newLen >> 21) + 6 else { return .ENOMEM }
        if let e = unmap(newAddr, newAddr + newLen) { return e }
        var len = oldLen
        if oldLen > newLen {
            if let e = unmap(addr + newLen, addr + oldLen) { return e }
            len = newLen
        }
        let v = vmaLookup(m, addr)
        guard !v.isNone, addr + len <= vma(v).pointee.vm_end else { return .EFAULT }
        return hugetlbMoveVMA(m, v, oldAddr: addr, len: len, newAddr: newAddr, unmap: unmap)
    }

    /// move_vma() / copy_vma_and_data() of a hugetlb VMA: copy_vma() at the
    /// new address (hugetlb VMAs never merge: VM_DONTEXPAND is VM_SPECIAL),
    /// which shares the old VMA's reservation map (vm_area_dup copies
    /// vm_private_data, hugetlb_vm_op_open takes a reference: the new VMA is
    /// an owner too); move_hugetlb_page_tables(); then
    /// clear_vma_resv_huge_pages(vma) (in 6.18 on the whole old VMA) and the
    /// unmap of the old range.
    func hugetlbMoveVMA(_ m: MMID, _ v: VMAID, oldAddr: UInt64, len: UInt64, newAddr: UInt64,
                        unmap: (UInt64, UInt64) -> Errno?) -> Errno? {
        if hugetlbResvMode == .fixed {
            // The fix: the map goes with the moved part only. Splitting first
            // gives the VMAs the old range's unmap would make.
            if vma(v).pointee.vm_start < oldAddr {
                hugetlbSplitUnshare(v, oldAddr)
                if splitVMA(v, at: oldAddr, newBelow: true).isNone { return .ENOMEM }  // v keeps the upper part
            }
            if vma(v).pointee.vm_end > oldAddr + len {
                hugetlbSplitUnshare(v, oldAddr + len)
                if splitVMA(v, at: oldAddr + len, newBelow: false).isNone { return .ENOMEM }
            }
        }
        let p = vma(v).pointee
        let nv = vmAreaDup(v)
        if nv.isNone { return .ENOMEM }
        vma(nv).pointee.vm_start = newAddr
        vma(nv).pointee.vm_end = newAddr + len
        vma(nv).pointee.vm_pgoff = p.vm_pgoff + ((oldAddr - p.vm_start) >> PAGE_SHIFT)
        guard anonVMAClone(dst: nv, src: v) else {
            vmAreaFree(nv)
            return .ENOMEM
        }
        vmaLink(nv)
        // move_hugetlb_page_tables(): entry by entry; a PMD table shared
        // with other mms is unshared from this one instead (its entries
        // stay with the sharers; the new range faults again).
        let root = mm(m).pointee.pgd
        var rstart = oldAddr, rend = oldAddr + len
        adjustRangeIfPMDSharingPossible(v, &rstart, &rend)
        mmuInvalidateRangeStart(m, rstart, rend)
        var off: UInt64 = 0
        while off < len {
            defer { off += Kernel.hpageSize }
            let a = oldAddr + off
            if hugePMDUnshare(v, a) {
                off = ((a | (Kernel.pudSize - 1)) + 1 - Kernel.hpageSize) - oldAddr
                continue
            }
            guard let s = pmdSlot(root: root, key: a), s.pointee != 0 else { continue }
            guard let d = pmdSlotAlloc(root: root, key: newAddr + off) else { continue }  // tables were checked above
            d.pointee = s.pointee
            s.pointee = 0
        }
        mmuInvalidateRangeEnd(m, rstart, rend)
        // clear_vma_resv_huge_pages() (hugetlb_dup_vma_private): the old VMA
        // no longer owns a map (its reference dropped, vm_private_data NULL).
        if vma(v).pointee.vm_flags & VM.mayshare == 0 { vma(v).pointee.vm_flags &= ~VM.hugetlbResvMask }
        _ = unmap(oldAddr, oldAddr + len)
        return nil
    }
}
