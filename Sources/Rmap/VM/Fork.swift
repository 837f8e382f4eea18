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

    /// copy_page_range() down to copy_pte_range(), one PTE table at a time:
    /// the child's table is found or allocated once per parent table
    /// (pte_alloc_map_lock, even for a table holding nothing: the child's
    /// PMD is then not none, and a later fault there is no THP), the PTEs
    /// are copied in one pass over the parent's table, and the child's MM
    /// counters are added once per table (add_mm_rss_vec). A PMD leaf is
    /// copied whole (copy_pmd_range -> copy_huge_pmd). False on ENOMEM
    /// (page tables).
    func copyPTERange(dst: VMAID, src: VMAID) -> Bool {
        let sm = vmMM(src), dm = vmMM(dst)
        var ok = true
        walkPTETables(root: mm(sm).pointee.pgd, start: vma(src).pointee.vm_start, end: vma(src).pointee.vm_end, pmd: { haddr, spmd in
            if !copyHugePMD(dst: dst, src: src, haddr, spmd) { ok = false }
            return ok
        }) { addr, spte, n in
            guard available(T.ptPage) >= 3, let dpte = leafSlotAlloc(root: mm(dm).pointee.pgd, key: addr) else {
                ok = false
                return false
            }
            var rss = MMRssVec()
            var i = 0
            while i < n {
                if spte[i] == 0 {
                    i += 1
                } else {
                    i += copyPTEs(dst: dst, src: src, dm, addr &+ UInt64(i) << PAGE_SHIFT, dpte + i, spte + i, max: n - i, &rss)
                }
            }
            addMMRssVec(dm, rss)
            return true
        }
        return ok
    }

    /// copy_nonpresent_pte() and copy_present_ptes() for the non-none PTE at
    /// `sslot`: COW mappings write-protect both sides; the child's PTEs are
    /// old (and clean in shared mappings); anon pages lose their exclusive
    /// marker. PTEs that map consecutive pages of one large folio go as one
    /// batch (folio_pte_batch_flags, folio_ref_add,
    /// folio_try_dup_anon_rmap_ptes); the batch's bounds change no state,
    /// since each PTE keeps its own bits. Returns the PTEs copied.
    @inline(__always)
    func copyPTEs(dst: VMAID, src: VMAID, _ dm: MMID, _ addr: UInt64, _ dslot: UnsafeMutablePointer<UInt64>,
                  _ sslot: UnsafeMutablePointer<UInt64>, max: Int, _ rss: inout MMRssVec) -> Int {
        let flags = vma(src).pointee.vm_flags
        let cow = VM.isCOW(flags)
        var e = sslot.pointee
        if _slowPath(PTE.isDeviceExclusiveEntry(e)) {
            // copy_nonpresent_pte(): try_restore_exclusive_pte() in the
            // parent, then the PTE is copied as a present one.
            restoreExclusivePTE(src, addr, sslot)
            e = sslot.pointee
        }
        if _slowPath(!PTE.isPresent(e)) {
            copyNonpresentPTE(dst: dst, dm, dslot, sslot, e, cow: cow, &rss)
            return 1
        }
        let pfn = vmNormalPage(e)
        var nr = 1
        if !pfn.isNone {
            if _slowPath(page(pfn).pointee.flags & (PG.head | PG.tail) != 0) {
                // copy_present_ptes() on a large folio: one batch.
                let ignore = PTE.accessed | PTE.rw | PTE.softDirty | (flags & VM.shared != 0 ? PTE.dirty : 0)
                nr = folioPTEBatch(pfn, sslot, e, max: max, ignoring: ignore)
                page(folioOf(pfn)).pointee.refcount += Int32(nr)  // folio_ref_add()
                if pageIsAnon(pfn) {
                    folioDupAnonRmapPTEs(pfn, UInt32(nr), dst: dst)
                    if _slowPath(hooks.reverseMapOn) {
                        for j in 0..<nr {
                            hooks.reverseMap!.ptesDuplicated(self, pfn: pfn.advanced(by: UInt32(j)), mm: dm,
                                                             address: addr &+ UInt64(j) << PAGE_SHIFT)
                        }
                    }
                } else {
                    for j in 0..<nr { folioAddFileRmapPTE(pfn.advanced(by: UInt32(j)), vma: dst) }
                }
                rss.add(mmCounterFor(pfn), Int64(nr))
            } else {
                getPage(pfn)
                if pageIsAnon(pfn) {
                    folioDupAnonRmapPTE(pfn, dst: dst)
                    if _slowPath(hooks.reverseMapOn) { hooks.reverseMap!.ptesDuplicated(self, pfn: pfn, mm: dm, address: addr) }
                } else {
                    folioAddFileRmapPTE(pfn, vma: dst)
                }
                rss.add(mmCounterFor(pfn), 1)
            }
        }
        // __copy_present_ptes(), each PTE with its own bits.
        for j in 0..<nr {
            var pte = sslot[j]
            if cow && PTE.isWrite(pte) {
                pte &= ~PTE.rw
                sslot[j] = pte  // wrprotect_ptes()
            }
            if flags & VM.shared != 0 { pte &= ~PTE.dirty }  // pte_mkclean()
            dslot[j] = pte & ~PTE.accessed  // pte_mkold(), set_ptes()
        }
        return nr
    }

    /// copy_nonpresent_pte(): swap, device-private and migration entries.
    @inline(never)
    func copyNonpresentPTE(dst: VMAID, _ dm: MMID, _ dslot: UnsafeMutablePointer<UInt64>,
                           _ sslot: UnsafeMutablePointer<UInt64>, _ entry: UInt64, cow: Bool, _ rss: inout MMRssVec) {
        var e = entry
        if PTE.isRealSwapEntry(e) {
            guard swapDuplicate(e) else { return }
            rss.add(.swapents, 1)
            e &= ~PTE.swpExclusive
            sslot.pointee &= ~PTE.swpExclusive
        } else if PTE.isDevicePrivateEntry(e) {
            // The page is shared; a writable entry becomes readable on
            // both sides of a COW mapping.
            let pfn = PTE.swpOffsetPFN(e)
            getPage(pfn)
            folioDupAnonRmapPTE(pfn, dst: dst)
            rss.add(mmCounterFor(pfn), 1)
            if cow && PTE.swpType(e) == PTE.swpDevicePrivateWrite {
                e = PTE.swpEntry(type: PTE.swpDevicePrivateRead, offset: PTE.swpOffset(e)) | (e & PTE.swpSoftDirty)
                sslot.pointee = e
            }
        } else if PTE.isMigrationEntry(e) {
            let pfn = PTE.swpOffsetPFN(e)
            rss.add(mmCounterFor(pfn), 1)
            getPage(pfn)  // the model's entries hold a reference (Rmap/Migrate.swift)
            if cow && PTE.swpType(e) != PTE.swpMigrationRead {
                // make_readable_migration_entry() on both sides.
                e = PTE.swpEntry(type: PTE.swpMigrationRead, offset: PTE.swpOffset(e)) | (e & PTE.swpSoftDirty)
                sslot.pointee = e
            }
        }
        dslot.pointee = e
    }

    /// folio_pte_batch() / folio_pte_batch_flags(): how many PTEs from
    /// `ptep` (whose first entry is `pte`, mapping `pfn`) map consecutive
    /// pages of `pfn`'s folio with the same bits, the bits in `ignoring`
    /// aside; at most `max`, and never past the folio's last page.
    @inline(__always)
    func folioPTEBatch(_ pfn: PFN, _ ptep: UnsafeMutablePointer<UInt64>, _ pte: UInt64, max: Int, ignoring: UInt64) -> Int {
        let head = folioOf(pfn)
        let limit = min(max, Int(head.rawValue) + Int(folioNrPages(head)) - Int(pfn.rawValue))
        let mask = ~ignoring
        var expected = pte
        var nr = 1
        while nr < limit {
            expected &+= PAGE_SIZE  // pte_next_pfn()
            if (ptep[nr] ^ expected) & mask != 0 { break }
            nr += 1
        }
        return nr
    }
}
