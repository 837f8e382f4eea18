import CShims

/// make_device_exclusive_range() and its restore (mm/rmap.c, mm/memory.c,
/// 6.x before the 6.15 rework): a device takes exclusive access to an
/// anonymous page; every CPU mapping becomes a device-exclusive entry (the
/// rmap goes, the entry keeps the PTE's reference and the MM counter); a CPU
/// access restores the PTE (restore_exclusive_pte). page_vma_mapped_walk
/// does not match these entries in the model (6.x check_pte does; no trace
/// can reach an exclusively held page through the rmap: its mapcount is 0).
struct MakeDeviceExclusiveControl: RmapWalkControl {
    let mm: MMID
    let address: UInt64
    var valid = false
    var ret = true

    /// Models `page_make_device_exclusive_one()`: within an
    /// MMU_NOTIFY_EXCLUSIVE range, a present PTE is cleared and flushed
    /// (ptep_clear_flush), its dirty bit moves to the folio, the walk is
    /// `valid` if the target (mm, address) was mapped writable, the entry
    /// is writable or readable as the PTE was, soft-dirty kept, and the rmap
    /// removed ("There is a reference on the page for the swap entry which
    /// has been removed, so shouldn't take another"). A non-present entry
    /// stops the walk.
    mutating func rmapOne(_ m: RmapContext, pfn pfnID: PFN, vma vID: VMAID, address a: UInt64) -> Bool {
        let pfn = pfnID, v = vID
        let k = m.k
        let mmi = k.vmMM(v)
        k.mmuInvalidateRangeStart(mmi, a, a + PAGE_SIZE)
        defer { k.mmuInvalidateRangeEnd(mmi, a, a + PAGE_SIZE) }
        guard let slot = k.pageVMAMappedWalk(pfn, v, a) else { return ret }
        let ptent = slot.pointee
        if !PTE.isPresent(ptent) {
            ret = false
            return ret
        }
        slot.pointee = 0
        k.flushTLBPage()  // ptep_clear_flush()
        if PTE.isDirty(ptent) { k.page(pfn).pointee.flags |= PG.dirty }
        if mmi == mm && a == address && PTE.isWrite(ptent) { valid = true }
        var e = PTE.swpEntry(type: PTE.swpDeviceExclusive, pfn: pfn)
        if PTE.isWrite(ptent) { e |= PTE.swpDeviceExclusiveWrite }
        if ptent & PTE.softDirty != 0 { e |= PTE.swpSoftDirty }
        slot.pointee = e
        k.folioRemoveRmapPTE(pfn, vma: v)
        return ret
    }

    /// folio_not_mapped()
    mutating func done(_ m: RmapContext, pfn: PFN) -> Bool { m.k.pageMapcount(pfn) == 0 }
}

extension Kernel {
    /// make_device_exclusive_range() for one page of `m` at `address`:
    /// get_user_pages_remote(FOLL_GET | FOLL_WRITE) faults the page in
    /// writable (breaking COW), then folio_make_device_exclusive() (anon
    /// folios only) walks the rmap; true when the target mapping was made
    /// exclusive and no mapping is left. The driver then drops its GUP
    /// reference (folio_unlock + folio_put after programming its MMU).
    /// .sigsegv / .oom come from the fault.
    ///
    /// A large folio (6.18 make_device_exclusive): GUP's FOLL_SPLIT_PMD
    /// splits a PMD leaf that maps the address before it looks at the page
    /// (follow_pmd_mask: split_huge_pmd, the folio stays whole, mapped by
    /// PTEs; the huge zero page becomes small zero-page PTEs), and a PMD the
    /// write fault just made is split on GUP's retry; only the one PTE at
    /// the address becomes a device-exclusive entry (the page is exclusive
    /// after FOLL_WRITE: no other PTE maps it). The model keeps its one
    /// convention for every page, small or large: the entry's page leaves
    /// the rmap (folio_remove_rmap_pte; a large folio left partially mapped
    /// is queued for deferred split) and the entry keeps the reference,
    /// where 6.15+ keeps the mapcount of a device-exclusive entry.
    func makeDeviceExclusive(_ m: MMID, _ address: UInt64) -> FaultResult? {
        // check_vma_flags(FOLL_WRITE) comes before the walk: no split in a
        // VMA that is missing or not writable (the fault then fails).
        let v = vmaLookup(m, address)
        let writable = !v.isNone && vma(v).pointee.vm_flags & VM.write != 0
        if writable { splitHugePMD(at: address, vma: v) }  // FOLL_SPLIT_PMD
        let r = handleMMFault(m, address, write: true)  // GUP FOLL_WRITE
        if r != .ok { return r }
        if writable { splitHugePMD(at: address, vma: v) }  // the retry after the fault
        guard let slot = leafSlot(root: mm(m).pointee.pgd, key: address) else { return .sigsegv }
        let pfn = vmNormalPage(slot.pointee)
        guard !pfn.isNone else { return .sigsegv }
        getPage(pfn)  // FOLL_GET
        defer { putPage(pfn) }
        guard pageIsAnon(pfn) else { return nil }
        var c = MakeDeviceExclusiveControl(mm: m, address: address)
        rmapWalk(pfn, &c)
        return c.valid && pageMapcount(pfn) == 0 ? .ok : nil
    }

    /// remove_device_exclusive_entry() -> restore_exclusive_pte(): the
    /// entry becomes an old PTE of the page (vm_page_prot), soft-dirty kept,
    /// dirty and writable (maybe_mkwrite) if the entry was writable; the
    /// anon rmap comes back (RMAP_NONE); the entry's reference becomes the
    /// PTE's. Then the fault is retried.
    func restoreExclusivePTE(_ v: VMAID, _ address: UInt64, _ slot: UnsafeMutablePointer<UInt64>) {
        let e = slot.pointee
        let pfn = PTE.swpOffsetPFN(e)
        let flags = vma(v).pointee.vm_flags
        var pte = PTE.make(pfn: pfn, prot: PTE.pageProt(vmFlags: flags)) & ~PTE.accessed  // pte_mkold
        if e & PTE.swpSoftDirty != 0 { pte |= PTE.softDirty }
        if e & PTE.swpDeviceExclusiveWrite != 0 {
            pte |= PTE.dirty
            if flags & VM.write != 0 && pte & PTE.present != 0 { pte |= PTE.rw }  // maybe_mkwrite
        }
        let m = vmMM(v)
        mmuInvalidateRangeStart(m, address, address + PAGE_SIZE)  // MMU_NOTIFY_EXCLUSIVE
        defer { mmuInvalidateRangeEnd(m, address, address + PAGE_SIZE) }
        folioAddAnonRmapPTE(pfn, vma: v, address: address, exclusive: false)
        slot.pointee = pte
    }
}
