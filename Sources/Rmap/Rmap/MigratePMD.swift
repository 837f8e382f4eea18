import CShims

/// PMD migration entries (CONFIG_ARCH_ENABLE_THP_MIGRATION, x86-64):
/// try_to_migrate_one() meets a PMD-mapped THP without TTU_SPLIT_HUGE_PMD and
/// replaces the PMD by one migration entry (set_pmd_migration_entry);
/// remove_migration_pmd() maps the folio (the old one, or the new one after
/// a migration) by a PMD again (mm/huge_memory.c, mm/rmap.c, mm/migrate.c).
///
/// The entry is a swap-format PMD with the small-page migration types
/// (write, read-exclusive, read) and the swap soft-dirty bit, naming the
/// folio's head; like every migration entry of the model it keeps the
/// reference of the mapping it replaced (the stand-in for the migrator's
/// isolation reference: a trace can leave it behind) and carries no
/// accessed/dirty bits (Rmap/Migrate.swift). The PTE table deposited with
/// the PMD stays deposited. The MM counter still counts its 512 pages.
/// What meets one: a fault waits for it (the model finishes it:
/// remove_migration_pmd to the same folio), fork copies it
/// (copy_huge_pmd's is_swap_pmd branch), zap drops it (zap_huge_pmd),
/// mprotect makes a write entry a read one (change_huge_pmd), mremap moves
/// it whole (move_huge_pmd), and a VMA boundary or a partial zap inside it
/// splits it into 512 PTE migration entries (__split_huge_pmd_locked with
/// pmd_migration); observations show `M*` for each of its pages.
extension Kernel {
    /// set_pmd_migration_entry(): the PMD of `v` at `haddr` (a THP's leaf)
    /// becomes a migration entry: pmdp_invalidate, the dirty bit to the
    /// folio, PG_anon_exclusive shared away (folio_try_share_anon_rmap_pmd:
    /// no GUP pins in the model, it cannot fail) and remembered in the entry
    /// type, soft-dirty kept, folio_remove_rmap_pmd. Secondary MMUs are told
    /// (the MMU_NOTIFY_CLEAR range of try_to_migrate_one).
    func setPMDMigrationEntry(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) {
        let m = vmMM(v)
        mmuInvalidateRangeStart(m, haddr, haddr + Kernel.pmdSize)
        defer { mmuInvalidateRangeEnd(m, haddr, haddr + Kernel.pmdSize) }
        let e = pmd.pointee
        pmd.pointee = 0
        flushTLBPage()  // pmdp_invalidate()
        let head = PTE.pfn(e)
        let h = page(head)
        let exclusive = h.pointee.flags & PG.anonExclusive != 0
        if exclusive { h.pointee.flags &= ~PG.anonExclusive }
        if PTE.isDirty(e) { h.pointee.flags |= PG.dirty }
        let type = PTE.isWrite(e) ? PTE.swpMigrationWrite : exclusive ? PTE.swpMigrationReadExclusive : PTE.swpMigrationRead
        var swp = PTE.swpEntry(type: type, pfn: head)
        if e & PTE.softDirty != 0 { swp |= PTE.swpSoftDirty }
        pmd.pointee = swp
        folioRemoveRmapPMD(head, vma: v)
        if _slowPath(hooks.reverseMapOn) {
            for i in 0..<RMAP_PMD_NR { hooks.reverseMap!.removed(self, pfn: head.advanced(by: i), vma: v) }
        }
    }

    /// remove_migration_pmd(): the entry becomes a PMD of `new` (the folio
    /// migrated to, or the old one when the migration is undone): the VMA's
    /// protection, old (the model's entries carry no young bit), soft-dirty
    /// kept, writable for a write entry (pmd_mkwrite; an entry in a VMA made
    /// read-only since was made readable by change_huge_pmd), the anon rmap
    /// added exclusive unless a read entry (folio_add_anon_rmap_pmd). The
    /// entry's reference on `old` goes, the PMD takes one on `new`.
    func removeMigrationPMD(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>, old: PFN, new: PFN) {
        let e = pmd.pointee
        let flags = vma(v).pointee.vm_flags
        getPage(new)  // folio_get()
        var n = (PTE.make(pfn: new, prot: PTE.pageProt(vmFlags: flags)) | PTE.pse) & ~PTE.accessed  // pmd_mkold()
        if e & PTE.swpSoftDirty != 0 { n |= PTE.softDirty }
        let type = PTE.swpType(e)
        if type == PTE.swpMigrationWrite && flags & VM.write != 0 && n & PTE.present != 0 { n |= PTE.rw }
        folioAddAnonRmapPMD(new, vma: v, exclusive: type != PTE.swpMigrationRead)
        pmd.pointee = n
        if _slowPath(hooks.reverseMapOn) {
            for i in 0..<RMAP_PMD_NR {
                hooks.reverseMap!.anonAdded(self, pfn: new.advanced(by: i), vma: v, address: haddr + UInt64(i) << PAGE_SHIFT)
            }
        }
        putPage(old)  // the reference the entry held (model)
    }

    /// folio_add_anon_rmap_pmd(): one more PMD maps the whole anonymous
    /// folio (__folio_add_rmap at RMAP_LEVEL_PMD: _entire_mapcount, and
    /// ENTIRELY_MAPPED in _nr_pages_mapped for the first); PG_anon_exclusive
    /// with RMAP_EXCLUSIVE. No mlock: __folio_add_anon_rmap mlocks small
    /// folios only.
    func folioAddAnonRmapPMD(_ head: PFN, vma v: VMAID, exclusive: Bool) {
        let p1 = page(head.advanced(by: 1))
        p1.pointee.entire_mapcount += 1
        if p1.pointee.entire_mapcount == 0 { p1.pointee.nr_pages_mapped += ENTIRELY_MAPPED }
        folioAddLargeMapcount(head, 1, vma: v)
        if exclusive { page(head).pointee.flags |= PG.anonExclusive }
    }

    /// A fault on a PMD migration entry (__handle_mm_fault:
    /// pmd_migration_entry_wait) waits for the migration; as for a PTE
    /// entry, the single-threaded model finishes the migration that left it
    /// the way a failed one ends (remove_migration_pmd to the same folio,
    /// for this PMD), then the access is retried.
    func removeMigrationPMDOnFault(_ m: MMID, _ v: VMAID, _ addr: UInt64,
                                   _ pmd: UnsafeMutablePointer<UInt64>, write: Bool) -> FaultResult {
        let head = PTE.swpOffsetPFN(pmd.pointee)
        removeMigrationPMD(v, addr & ~(Kernel.pmdSize - 1), pmd, old: head, new: head)
        return handleMMFault(m, addr, write: write)
    }

    /// __split_huge_pmd_locked() of a PMD migration entry (pmd_migration):
    /// the deposited PTE table takes 512 PTE migration entries, one per
    /// page, of the PMD entry's type (write, read-exclusive or read) with
    /// its soft-dirty bit. Each PTE entry holds a reference of its own (the
    /// model's convention), so the folio gains 511. No rmap changes: the
    /// entry had none.
    func splitPMDMigrationEntry(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) {
        let m = vmMM(v)
        let e = pmd.pointee
        let table = pmdTable(root: mm(m).pointee.pgd, key: haddr)
        let pgtable = withdrawPTETable(pmdTable: table)
        let ptes = ptPage(pgtable)
        let head = PTE.swpOffsetPFN(e)
        let type = PTE.swpType(e)
        let soft = e & PTE.swpSoftDirty
        for i in 0..<Int(RMAP_PMD_NR) { ptes[i] = PTE.swpEntry(type: type, pfn: head.advanced(by: i)) | soft }
        page(head).pointee.refcount += Int32(RMAP_PMD_NR) - 1
        pmd.pointee = (UInt64(pgtable) << 12) | Kernel.pageTableBits
        ptDesc(table).pointee.used += 1
        header.pointee.thp_split_pmd &+= 1
    }

    /// zap_huge_pmd() of a PMD migration entry: the entry goes with its
    /// deposited table (zap_deposited_table), MM_ANONPAGES loses the 512
    /// pages; no rmap (the entry had none); the model's entry reference is
    /// dropped.
    func zapPMDMigrationEntry(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) {
        let m = vmMM(v)
        let head = PTE.swpOffsetPFN(pmd.pointee)
        pmd.pointee = 0
        freePTPage(withdrawPTETable(pmdTable: pmdTable(root: mm(m).pointee.pgd, key: haddr)))
        addMMCounter(m, .anon, -Int64(RMAP_PMD_NR))
        putPage(head)
    }
}
