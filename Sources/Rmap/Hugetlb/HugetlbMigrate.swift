import CShims

extension PG {
    /// HPG_temporary: a hugetlb folio allocated from the buddy allocator for
    /// a migration (alloc_migrate_hugetlb_folio), counted in nr_huge_pages
    /// but not as surplus; free_huge_folio() gives it back to the buddy
    /// allocator. A successful migration moves the mark to the old folio
    /// (move_hugetlb_state).
    static let hugetlbTemporary: UInt64 = 1 << 27
}

/// Migration of hugetlb folios (6.18): try_to_migrate_one()'s
/// folio_test_hugetlb parts (mm/rmap.c), unmap_and_move_huge_page() and
/// remove_migration_pte()'s hugetlb branch (mm/migrate.c), the target from
/// the pool (alloc_hugetlb_folio_nodemask, mm/hugetlb.c).
///
/// A hugetlb migration entry is a swap-format PMD with the migration types
/// (write, read-exclusive, read) and the swap soft-dirty bit, naming the
/// folio's head, as a THP's PMD migration entry (observed `M*`); it has no
/// deposited table. Like every migration entry of the model it keeps the
/// reference of the mapping it replaced and no rmap (hugetlb_remove_rmap
/// ran), and carries no accessed/dirty bits.
extension Kernel {
    /// try_to_migrate() of a hugetlb folio: per mapping in walk order, with
    /// the notifier range widened for a VMA that may share its PMD table
    /// (adjust_range_if_pmd_sharing_possible): a file folio's shared PMD
    /// table is only unshared (huge_pmd_unshare; that VMA's walk ends, the
    /// other sharers still map it); otherwise the entry is cleared and
    /// flushed (huge_ptep_clear_flush), its dirty bit given to the folio, an
    /// exclusive anonymous folio shared (hugetlb_try_share_anon_rmap: no GUP
    /// pins in the model, it cannot fail), the migration entry set
    /// (set_huge_pte_at) and the mapping removed (hugetlb_remove_rmap).
    /// True when no mapping is left.
    @discardableResult
    func tryToMigrateHugetlb(_ head: PFN) -> Bool {
        let anon = pageIsAnon(head)
        forEachHugetlbMappingWidened(head) { v, address, pmd in
            if !anon && hugePMDUnshare(v, address) { return }
            setHugetlbMigrationEntry(v, address, pmd)
        }
        return folioMapcount(head) == 0
    }

    /// The body of try_to_migrate_one() for one hugetlb entry of `v` at
    /// `haddr` (inside the caller's notifier range).
    func setHugetlbMigrationEntry(_ v: VMAID, _ haddr: UInt64, _ pmd: UnsafeMutablePointer<UInt64>) {
        let e = pmd.pointee
        pmd.pointee = 0
        flushTLBPage()  // huge_ptep_clear_flush()
        let head = PTE.pfn(e)
        let h = page(head)
        if PTE.isDirty(e) { h.pointee.flags |= PG.dirty }  // folio_mark_dirty()
        if h.pointee.flags & PG.hwpoison != 0 {
            // try_to_migrate_one()'s PageHWPoison branch: a hwpoison entry
            // (set_huge_pte_at, hugetlb_count_sub), no migration entry; the
            // mapping and its reference go.
            pmd.pointee = makeHWPoisonPTE(head)
            hugetlbRemoveRmap(head)
            putPage(head)
            return
        }
        let exclusive = pageIsAnon(head) && h.pointee.flags & PG.anonExclusive != 0
        if exclusive { h.pointee.flags &= ~PG.anonExclusive }  // hugetlb_try_share_anon_rmap()
        let type = PTE.isWrite(e) ? PTE.swpMigrationWrite : exclusive ? PTE.swpMigrationReadExclusive : PTE.swpMigrationRead
        var swp = PTE.swpEntry(type: type, pfn: head)
        if e & PTE.softDirty != 0 { swp |= PTE.swpSoftDirty }
        pmd.pointee = swp
        hugetlbRemoveRmap(head)
        // folio_put() of the mapping's reference: the entry keeps it (model).
    }

    /// remove_migration_pte() of a hugetlb entry: it becomes a huge entry of
    /// `new` (the folio migrated to, or the old one when the migration is
    /// undone): the VMA's protection, old and clean (the model's entries
    /// carry neither bit), soft-dirty kept, writable for a write entry in a
    /// writable VMA (pte_mkwrite); hugetlb_add_anon_rmap (exclusive unless a
    /// read entry) or hugetlb_add_file_rmap. The entry's reference on `old`
    /// goes, the mapping takes one on `new`.
    func removeHugetlbMigrationEntry(_ v: VMAID, _ pmd: UnsafeMutablePointer<UInt64>, old: PFN, new: PFN) {
        let e = pmd.pointee
        let flags = vma(v).pointee.vm_flags
        getPage(new)  // folio_get()
        var n = (PTE.make(pfn: new, prot: PTE.pageProt(vmFlags: flags)) | PTE.pse) & ~(PTE.accessed | PTE.rw)
        if e & PTE.swpSoftDirty != 0 { n |= PTE.softDirty }
        let type = PTE.swpType(e)
        if type == PTE.swpMigrationWrite && flags & VM.write != 0 && n & PTE.present != 0 { n |= PTE.rw }
        hugetlbAddFileRmap(new)
        if pageIsAnon(new) && type != PTE.swpMigrationRead { page(new).pointee.flags |= PG.anonExclusive }
        pmd.pointee = n
        putPage(old)  // the reference the entry held (model)
    }

    /// Every hugetlb migration entry naming the folio at `head`, in rmap
    /// walk order (page_vma_mapped_walk with PVMW_MIGRATION over the
    /// anon_vma tree or the file's i_mmap at its index); an entry in a PMD
    /// table shared by several VMAs is found once.
    func hugetlbMigrationEntries(_ head: PFN) -> [(vma: VMAID, pmd: UnsafeMutablePointer<UInt64>)] {
        var out: [(VMAID, UnsafeMutablePointer<UInt64>)] = []
        hugetlbRmapWalk(head) { v, _, pmd in
            if PTE.isPMDMigrationEntry(pmd.pointee), PTE.swpOffsetPFN(pmd.pointee) == head,
               !out.contains(where: { $0.1 == pmd }) {
                out.append((v, pmd))
            }
        }
        return out
    }

    /// alloc_migration_target() for a hugetlb folio:
    /// alloc_hugetlb_folio_nodemask() takes a free page no reservation
    /// holds (available_huge_pages), else alloc_migrate_hugetlb_folio()
    /// allocates a fresh one from the buddy allocator, marked temporary and
    /// counted in nr_huge_pages but not as surplus. One reference; .none when
    /// neither can be had.
    func allocHugetlbMigrationTarget() -> PFN {
        if availableHugePages > 0 {
            let head = dequeueHugetlbFolio()
            if !head.isNone { return head }
        }
        let head = allocFolio(order: RMAP_PMD_ORDER)
        guard !head.isNone else { return .none }
        let p = page(head)
        p.pointee.flags = PG.head | PG.hugetlb | PG.hugetlbTemporary
        p.pointee.refcount = 1  // fresh huge pages are frozen; folio_ref_unfreeze(folio, 1)
        header.pointee.nr_huge_pages += 1
        return head
    }

    /// migrate_pages() of a hugetlb folio (migrate_hugetlbs,
    /// unmap_and_move_huge_page): isolated (folio_isolate_hugetlb: in use);
    /// a target from the pool (`fail` when none can be had: -ENOMEM);
    /// try_to_migrate (Kernel.tryToMigrateHugetlb); move_to_new_folio()
    /// copies the data, the mapping and index, the flags
    /// (folio_migrate_flags) and, for a hugetlbfs page, its page-cache slot
    /// (migrate_huge_page_move_mapping); a folio with references beyond its
    /// mappings and its page-cache slot is not moved (-EAGAIN: `fail`, the
    /// old folio mapped again). remove_migration_ptes() maps the new folio
    /// (or the old one) wherever an entry was; move_hugetlb_state() hands the
    /// temporary mark to the old folio, which goes back to the pool (or to
    /// the buddy allocator when temporary); a target not used goes back too.
    package func migrateHugetlbFolio(_ head: PFN) -> LargeReverseResult {
        // folio_isolate_hugetlb() refuses a folio that is not migratable:
        // memory failure cleared that of a poisoned one.
        if page(head).pointee.flags & PG.hwpoison != 0 { return .fail }
        let cached = !pageIsAnon(head) && page(head).pointee.mapping != 0 ? 1 : 0
        let expected = folioMapcount(head) + cached
        let dst = allocHugetlbMigrationTarget()
        guard !dst.isNone else { return .fail }
        getPage(head)  // isolation (folio_isolate_hugetlb)
        if folioMapcount(head) > 0 { tryToMigrateHugetlb(head) }
        // move_to_new_folio(): folio_migrate_mapping() / migrate_huge_page_move_mapping()
        // count the references against the expected ones (+1: isolation).
        let moved = folioMapcount(head) == 0 && Int(page(head).pointee.refcount) == expected + 1
        if moved {
            for i in 0..<RMAP_PMD_NR {
                page(dst.advanced(by: i)).pointee.content = page(head.advanced(by: i)).pointee.content
            }
            let sh = page(head), dh = page(dst)
            dh.pointee.mapping = sh.pointee.mapping
            dh.pointee.index = sh.pointee.index
            let copied = PG.dirty | PG.referenced | PG.uptodate | PG.young | PG.idle
            dh.pointee.flags |= sh.pointee.flags & copied
            sh.pointee.flags &= ~PG.dirty
            if cached == 1 {
                // migrate_huge_page_move_mapping(): the cache's slot and
                // reference go to the new folio.
                let f = pageFile(head)
                if let slot = hugetlbEntry(f, sh.pointee.index >> 9) {
                    slot.pointee = (slot.pointee & HugetlbEntry.bits) | PTE.make(pfn: dst, prot: PTE.present)
                }
                getPage(dst)
                putPage(head)
            }
        }
        let to = moved ? dst : head
        for (v, pmd) in hugetlbMigrationEntries(head) { removeHugetlbMigrationEntry(v, pmd, old: head, new: to) }
        if moved {
            // move_hugetlb_state(): the temporary mark goes to the old folio.
            if page(dst).pointee.flags & PG.hugetlbTemporary != 0 {
                page(dst).pointee.flags &= ~PG.hugetlbTemporary
                page(head).pointee.flags |= PG.hugetlbTemporary
            }
            // The old folio's page-cache link goes (it is freed below).
            page(head).pointee.mapping = 0
        }
        putPage(head)  // folio_putback_hugetlb(): the isolation reference
        putPage(dst)   // the allocation's reference (freed when not used)
        return moved ? .ok : .fail
    }

    /// A fault on a hugetlb migration entry (hugetlb_fault:
    /// migration_entry_wait_huge) waits for the migration; the
    /// single-threaded model finishes it the way a failed one ends:
    /// remove_migration_ptes(folio, folio) maps the same folio again at
    /// every entry that names it (not only this one: hugetlb_wp decides
    /// reuse on the mapcount alone, which must not miss a waiting mapping),
    /// then the fault is retried.
    func hugetlbMigrationEntryFault(_ v: VMAID, _ pmd: UnsafeMutablePointer<UInt64>) {
        let head = PTE.swpOffsetPFN(pmd.pointee)
        for (w, p) in hugetlbMigrationEntries(head) { removeHugetlbMigrationEntry(w, p, old: head, new: head) }
        if PTE.isPMDMigrationEntry(pmd.pointee) { removeHugetlbMigrationEntry(v, pmd, old: head, new: head) }
    }
}
