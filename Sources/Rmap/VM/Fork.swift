import CShims

/// fork(): dup_mmap() and copy_page_range() (kernel/fork.c, mm/memory.c).
extension Kernel {
    /// vma_needs_copy(): page tables are copied only where the child could
    /// not fault the same pages back in: PFN/mixed maps and VMAs with an
    /// anon_vma (they may hold COW pages). Everything else faults lazily.
    @inline(__always) func vmaNeedsCopy(dst: VMAID, src: VMAID) -> Bool {
        if vma(dst).pointee.vm_flags & VM.copyOnFork != 0 { return true }
        return vma(src).pointee.anon_vma != 0
    }

    /// dup_mmap(): a child mm with a copy of every VMA except VM_DONTCOPY
    /// ones; VM_WIPEONFORK VMAs start empty; VM_LOCKED is not inherited.
    /// Returns the child mm, or 0 on ENOMEM with nothing left behind.
    package func dupMMap(_ parent: MMID) -> MMID {
        let child = mmAlloc()
        if child.isNone { return .none }
        ksmFork(child: child, parent: parent)  // ksm_fork()
        var pv = firstVMA(parent)
        while !pv.isNone {
            defer { pv = nextVMA(pv) }
            let pf = vma(pv).pointee.vm_flags
            if pf & VM.dontcopy != 0 { continue }
            guard available(T.vma) >= 1, available(T.avc) >= UInt32(avcListLength(pv) + 1),
                  available(T.anonVMA) >= 1 else { exitMMap(child); return .none }
            let v = vmAreaDup(pv)
            vma(v).pointee.mm = child.rawValue
            vma(v).pointee.vm_flags &= ~(VM.lockedMask | VM.hugetlbResvMask)  // + hugetlb_dup_vma_private()
            if pf & VM.wipeonfork != 0 {
                vma(v).pointee.anon_vma = 0
            } else {
                _ = anonVMAFork(v, parent: pv)
            }
            vmaLink(v)
            if pf & VM.wipeonfork == 0 && vmaNeedsCopy(dst: v, src: pv) {
                let copied = pf & VM.hugetlb != 0 ? copyHugetlbPageRange(dst: v, src: pv) : copyPTERange(dst: v, src: pv)
                if !copied { exitMMap(child); return .none }
            }
        }
        return child
    }

    /// copy_pte_range() / copy_present_pte() / copy_nonpresent_pte().
    /// COW mappings write-protect both sides; the child's PTEs are old (and
    /// clean in shared mappings); anon pages lose their exclusive marker.
    /// False on ENOMEM (page tables).
    /// The child's PTE table for `addr` (copy_pte_range's pte_alloc_map_lock),
    /// allocated even when the parent's holds nothing; false on ENOMEM.
    @inline(never)
    func allocChildPTETable(_ dm: MMID, _ addr: UInt64) -> Bool {
        available(T.ptPage) >= 3 && leafSlotAlloc(root: mm(dm).pointee.pgd, key: addr) != nil
    }

    func copyPTERange(dst: VMAID, src: VMAID) -> Bool {
        let sm = vmMM(src), dm = vmMM(dst)
        let flags = vma(src).pointee.vm_flags
        let cow = VM.isCOW(flags)
        var ok = true
        let srcStart = vma(src).pointee.vm_start
        walkLeaves(root: mm(sm).pointee.pgd, start: srcStart, end: vma(src).pointee.vm_end, pmd: { haddr, spmd in
            // copy_pmd_range(): a PMD leaf is copied whole (copy_huge_pmd).
            if !copyHugePMD(dst: dst, src: src, haddr, spmd) { ok = false }
            return ok
        }) { addr, sslot in
            var e = sslot.pointee
            guard e != 0 else {
                // copy_pte_range() allocates the child's PTE table for every
                // table the parent has in the VMA, even one holding nothing
                // (pte_alloc_map_lock before the copy loop): the child's
                // PMD is then not none, and a later fault there is no THP.
                if _slowPath(addr & (Kernel.pmdSize - 1) == 0 || addr == srcStart) && !allocChildPTETable(dm, addr) {
                    ok = false
                    return false
                }
                return true
            }
            if PTE.isDeviceExclusiveEntry(e) {
                // copy_nonpresent_pte(): try_restore_exclusive_pte() in the
                // parent, then the PTE is copied as a present one.
                restoreExclusivePTE(src, addr, sslot)
                e = sslot.pointee
            }
            guard available(T.ptPage) >= 3, let dslot = leafSlotAlloc(root: mm(dm).pointee.pgd, key: addr) else {
                ok = false
                return false
            }
            if !PTE.isPresent(e) {
                if PTE.isRealSwapEntry(e) {
                    guard swapDuplicate(e) else { return true }
                    addMMCounter(dm, .swapents, 1)
                    e &= ~PTE.swpExclusive
                    sslot.pointee &= ~PTE.swpExclusive
                } else if PTE.isDevicePrivateEntry(e) {
                    // copy_nonpresent_pte(): the page is shared; a writable
                    // entry becomes readable on both sides of a COW mapping.
                    let pfn = PTE.swpOffsetPFN(e)
                    getPage(pfn)
                    folioDupAnonRmapPTE(pfn, dst: dst)
                    addMMCounter(dm, mmCounterFor(pfn), 1)
                    if cow && PTE.swpType(e) == PTE.swpDevicePrivateWrite {
                        e = PTE.swpEntry(type: PTE.swpDevicePrivateRead, offset: PTE.swpOffset(e)) | (e & PTE.swpSoftDirty)
                        sslot.pointee = e
                    }
                } else if PTE.isMigrationEntry(e) {
                    let pfn = PTE.swpOffsetPFN(e)
                    addMMCounter(dm, mmCounterFor(pfn), 1)
                    getPage(pfn)  // the model's entries hold a reference (Rmap/Migrate.swift)
                    if cow && PTE.swpType(e) != PTE.swpMigrationRead {
                        // make_readable_migration_entry() on both sides.
                        e = PTE.swpEntry(type: PTE.swpMigrationRead, offset: PTE.swpOffset(e)) | (e & PTE.swpSoftDirty)
                        sslot.pointee = e
                    }
                }
                dslot.pointee = e
                return true
            }
            let pfn = vmNormalPage(e)
            if !pfn.isNone {
                getPage(pfn)
                if pageIsAnon(pfn) {
                    folioDupAnonRmapPTE(pfn, dst: dst)
                    if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.ptesDuplicated(self, pfn: pfn, mm: dm, address: addr) }
                } else {
                    folioAddFileRmapPTE(pfn, vma: dst)
                }
                addMMCounter(dm, mmCounterFor(pfn), 1)
            }
            if cow && PTE.isWrite(e) {
                sslot.pointee = e & ~PTE.rw  // ptep_set_wrprotect()
                e &= ~PTE.rw
            }
            if flags & VM.shared != 0 { e &= ~PTE.dirty }
            e &= ~PTE.accessed  // pte_mkold()
            dslot.pointee = e
            return true
        }
        return ok
    }
}
