import CShims

/// Page migration: try_to_migrate() (mm/rmap.c), the copy to a new frame and
/// remove_migration_ptes() (mm/migrate.c), for one small folio.
///
/// A migration entry names the old frame (offset = PFN) with the 6.x type:
/// write (the PTE was writable), read-exclusive (read-only but
/// PG_anon_exclusive), read. The model encodes no accessed/dirty bits in it
/// (migration_entry_supports_ad() false: "keep the old behavior", the v5.15
/// behaviour), so a restored PTE is old and clean. A migration entry keeps
/// the reference of the PTE it replaced: the model's stand-in for the
/// migrator's isolation reference, which keeps the frame alive while any
/// entry (one left by `unmap ... migration`, or one copied at fork) names it.
extension Kernel {
    /// The migration entry for a PTE `pteval` of `pfn` (try_to_migrate_one):
    /// make_writable / make_readable_exclusive / make_readable_migration_entry,
    /// with the soft-dirty bit. An exclusive anon page stops being exclusive
    /// (folio_try_share_anon_rmap_pte: the model has no GUP pins, so sharing
    /// always succeeds); the entry remembers it.
    /// For a device-private entry (try_to_migrate_one's folio_is_device_private
    /// branch) the writability is the entry's and soft-dirty is its swap bit.
    @inline(__always) func makeMigrationPTE(_ pfn: PFN, _ pteval: UInt64) -> UInt64 {
        let p = page(pfn)
        let anonExclusive = pageIsAnon(pfn) && p.pointee.flags & PG.anonExclusive != 0
        if anonExclusive { p.pointee.flags &= ~PG.anonExclusive }
        let writable = PTE.isDevicePrivateEntry(pteval) ? PTE.swpType(pteval) == PTE.swpDevicePrivateWrite
            : PTE.isWrite(pteval)
        if PTE.isDevicePrivateEntry(pteval) {
            var e = PTE.swpEntry(type: writable ? PTE.swpMigrationWrite
                                 : anonExclusive ? PTE.swpMigrationReadExclusive : PTE.swpMigrationRead, pfn: pfn)
            if pteval & PTE.swpSoftDirty != 0 { e |= PTE.swpSoftDirty }
            return e
        }
        let type = writable ? PTE.swpMigrationWrite
            : anonExclusive ? PTE.swpMigrationReadExclusive : PTE.swpMigrationRead
        var e = PTE.swpEntry(type: type, pfn: pfn)
        if pteval & PTE.softDirty != 0 { e |= PTE.swpSoftDirty }
        return e
    }

    /// One migration entry `slot` of VMA `v` at `address`, naming `old`,
    /// becomes a PTE of `new` (the body of remove_migration_pte()): old and
    /// clean, writable for a write entry (if the VMA still is), soft-dirty
    /// kept, the rmap added (exclusive unless a read entry), the entry's
    /// reference of `old` dropped and one of `new` taken. MM counters do not
    /// change: they counted the entry.
    func restoreMigrationPTE(_ slot: UnsafeMutablePointer<UInt64>, vma v: VMAID, address: UInt64,
                             old: PFN, new: PFN) {
        let e = slot.pointee
        let flags = vma(v).pointee.vm_flags
        if page(new).pointee.flags & PG.devicePrivate != 0 {
            // remove_migration_pte(): device-private memory is mapped by a
            // device-private entry (writable for a write entry), soft-dirty kept.
            let write = PTE.swpType(e) == PTE.swpMigrationWrite && flags & VM.write != 0
            var ent = PTE.swpEntry(type: write ? PTE.swpDevicePrivateWrite : PTE.swpDevicePrivateRead, pfn: new)
            if e & PTE.swpSoftDirty != 0 { ent |= PTE.swpSoftDirty }
            getPage(new)
            folioAddAnonRmapPTE(new, vma: v, address: address, exclusive: PTE.swpType(e) != PTE.swpMigrationRead)
            slot.pointee = ent
            putPage(old)
            return
        }
        var pte = PTE.make(pfn: new, prot: PTE.pageProt(vmFlags: flags)) & ~PTE.accessed  // pte_mkold
        if e & PTE.swpSoftDirty != 0 { pte |= PTE.softDirty }
        let type = PTE.swpType(e)
        // pte_mkwrite(); an entry in a VMA made read-only since would have
        // been made readable by change_pte_range().
        if type == PTE.swpMigrationWrite && flags & VM.write != 0 && pte & PTE.present != 0 { pte |= PTE.rw }
        getPage(new)  // folio_get()
        if pageIsAnon(new) {
            folioAddAnonRmapPTE(new, vma: v, address: address, exclusive: type != PTE.swpMigrationRead)
        } else {
            folioAddFileRmapPTE(new, vma: v)
        }
        slot.pointee = pte
        putPage(old)  // the reference the entry held (model)
    }
}

/// try_to_migrate()'s rmap_one.
struct TryToMigrateControl: RmapWalkControl {
    var ret = true

    // invalid_migration_vma(): vma_is_temporary_stack(), for anon non-KSM
    // folios. The model never has exec's temporary stack, so the protocol's
    // default (no VMA skipped) is that hook.

    /// Models `try_to_migrate_one()` (mm/rmap.c), 6.x: within an
    /// invalidate_range_start/end pair, the PTE is cleared and flushed
    /// (ptep_clear_flush), its dirty bit moves to the page, and a migration
    /// entry replaces it (write / read-exclusive / read, soft-dirty kept);
    /// the rmap goes, the MM counters stay (they count the entry). Left out:
    /// PMD/hugetlb and device-private entries, HWPoison, pte_unused,
    /// arch_unmap_one, uffd-wp, TTU_BATCH_FLUSH (migrate_pages passes it for
    /// MIGRATE_ASYNC only; the model migrates synchronously), the A/D bits of
    /// the entry (see above), GUP pins (folio_try_share_anon_rmap_pte cannot
    /// fail). The entry keeps the PTE's page reference (model).
    mutating func rmapOne(_ m: RmapContext, pfn pfnID: PFN, vma vID: VMAID, address: UInt64) -> Bool {
        let pfn = pfnID, v = vID
        let k = m.k
        let mmi = k.vmMM(v)
        k.mmuInvalidateRangeStart(mmi, address, address + PAGE_SIZE)
        defer { k.mmuInvalidateRangeEnd(mmi, address, address + PAGE_SIZE) }
        guard let slot = k.pageVMAMappedWalk(pfn, v, address) else { return ret }
        let pteval = slot.pointee
        slot.pointee = 0
        k.flushTLBPage()
        if PTE.isPresent(pteval) && PTE.isDirty(pteval) { k.page(pfn).pointee.flags |= PG.dirty }
        slot.pointee = k.makeMigrationPTE(pfn, pteval)
        k.folioRemoveRmapPTE(pfn, vma: v)
        return ret
    }

    /// folio_not_mapped()
    mutating func done(_ m: RmapContext, pfn: PFN) -> Bool { m.k.pageMapcount(pfn) == 0 }
}

/// remove_migration_ptes()'s rmap_one: walks the destination frame (which
/// has the source's mapping and index) and converts entries naming `src`.
struct RemoveMigrationPTEControl: RmapWalkControl {
    let src: PFN
    var restored = 0

    /// Models `remove_migration_pte()` (mm/migrate.c): each migration entry
    /// of the VMA that names `src` becomes a PTE of the walked frame with
    /// its rmap added (see `restoreMigrationPTE`). No notifier call: the
    /// entry was non-present. Left out: the shared-zeropage remap of unused
    /// THP subpages, device-private and hugetlb PTEs, uffd-wp.
    mutating func rmapOne(_ m: RmapContext, pfn dstID: PFN, vma vID: VMAID, address: UInt64) -> Bool {
        let dst = dstID, v = vID
        let k = m.k
        guard let slot = k.pageVMAMappedWalk(src, v, address, migration: true) else { return true }
        k.restoreMigrationPTE(slot, vma: v, address: address, old: src, new: dst)
        restored += 1
        return true
    }
}

/// Where migratePage() puts the page: system RAM (migrate_pages), or the
/// device memory of a driver (migrate_vma_setup/pages/finalize):
/// MEMORY_DEVICE_PRIVATE (mapped by device-private entries) or
/// MEMORY_DEVICE_COHERENT (CPU-addressable, mapped by present PTEs).
package enum MigrateTarget { case system, devicePrivate, deviceCoherent }

extension Kernel {
    /// try_to_migrate(): replaces every PTE of `pfn` by a migration entry.
    /// True when no mapping remains. Models `try_to_migrate()` (mm/rmap.c):
    /// flags are 0 (synchronous migration ignores mlock and references).
    @discardableResult
    func tryToMigrate(_ pfn: PFN) -> Bool {
        var c = TryToMigrateControl()
        rmapWalk(pfn, &c)
        return pageMapcount(pfn) == 0
    }

    /// remove_migration_ptes(src, dst): every migration entry naming `src`
    /// in the VMAs that may map `dst` becomes a PTE of `dst` (`dst == src`
    /// undoes a failed migration). Returns the PTEs restored.
    /// Models `remove_migration_ptes()` (mm/migrate.c).
    @discardableResult
    func removeMigrationPTEs(src: PFN, dst: PFN) -> Int {
        var c = RemoveMigrationPTEControl(src: src)
        rmapWalk(dst, &c)
        return c.restored
    }

    /// migrate_pages() for one frame (migrate_folio_unmap +
    /// migrate_folio_move): a new frame is allocated first (none: false,
    /// nothing changed), the old one is held (isolation) and its mappings
    /// become migration entries; if one could not be converted, they all
    /// go back to the old frame (migrate_folio_undo_src) and the result is
    /// false. Otherwise move_to_new_folio(): the content and
    /// folio_migrate_flags() (referenced, uptodate, active, unevictable,
    /// workingset, PG_anon_exclusive via mappedtodisk, dirty, young, idle)
    /// are copied; folio_migrate_mapping() gives the new frame the mapping,
    /// index and swap-backed flag, moves the page-cache slot (file, shmem)
    /// or the swap-cache slot and PG_swapcache/private (anon in the swap
    /// cache) with their reference, and moves PG_dirty. Then
    /// remove_migration_ptes() maps the new frame wherever the old was (a KSM
    /// frame's stable node moves to it first: folio_migrate_ksm), and
    /// the old frame is freed with its last reference. Models
    /// `migrate_pages()` (mm/migrate.c) for one folio; left out: the retry
    /// passes, refcount freezing (no other user holds the page), THP split,
    /// movable_ops pages, memcg and NUMA statistics, mlock (re-established
    /// by the rmap of a VM_LOCKED VMA, as in 6.x).
    package func migratePage(_ src: PFN, to target: MigrateTarget = .system) -> Bool {
        let dst = allocPage()  // get_new_folio(), or the driver's device page (migrate_vma)
        if dst.isNone { return false }
        switch target {
        case .system: break
        case .devicePrivate: page(dst).pointee.flags |= PG.zoneDevice | PG.devicePrivate
        case .deviceCoherent: page(dst).pointee.flags |= PG.zoneDevice
        }
        if target != .system && page(src).pointee.flags & PG.swapcache != 0 {
            // __migrate_device_pages(): only anonymous memory goes to the
            // device, and a folio in the swap cache only if folio_free_swap()
            // gets rid of it (no swap PTE still refers to its slot).
            folioFreeSwap(src)
            if page(src).pointee.flags & PG.swapcache != 0 {
                putPage(dst)
                return false
            }
        }
        getPage(src)  // isolate: migration holds the folio
        let wasMapped = pageMapcount(src) > 0
        if wasMapped {
            if page(src).pointee.flags & PG.devicePrivate != 0 {
                // migrate_vma_unmap() (v5.0): try_to_unmap(TTU_MIGRATION |
                // TTU_IGNORE_MLOCK | TTU_IGNORE_ACCESS), whose zone-device
                // branch turns each device-private entry into a migration entry.
                _ = tryToUnmap(src, flags: [.migration, .ignoreMlock, .ignoreAccess])
            } else {
                tryToMigrate(src)
            }
        }
        if pageMapcount(src) > 0 {
            // migrate_folio_undo_src(): back to the old frame.
            if wasMapped { removeMigrationPTEs(src: src, dst: src) }
            putPage(src)
            putPage(dst)
            return false
        }
        let s = page(src), d = page(dst)
        // folio_mc_copy()
        d.pointee.content = s.pointee.content
        // folio_migrate_mapping()
        d.pointee.index = s.pointee.index
        d.pointee.mapping = s.pointee.mapping
        d.pointee.flags |= s.pointee.flags & PG.swapbacked
        if s.pointee.flags & PG.swapcache != 0 {
            d.pointee.flags |= PG.swapcache
            d.pointee.private_ = s.pointee.private_
            if let slot = swapSlot(PTE.swpOffset(s.pointee.private_)) { slot.pointee.cache_frame = dst.rawValue }
            getPage(dst)  // the swap cache's reference moves
            s.pointee.flags &= ~PG.swapcache
            s.pointee.private_ = 0
            putPage(src)
        } else if s.pointee.mapping & PageMapping.flags == 0, s.pointee.mapping != 0 {
            let f = pageFile(src)
            if !f.isNone, let slot = leafSlot(root: file(f).pointee.cache_root, key: s.pointee.index << 12),
               slot.pointee & PTE.present != 0, PTE.pfn(slot.pointee) == src {
                slot.pointee = PTE.make(pfn: dst, prot: PTE.present)  // xas_store()
                getPage(dst)  // folio_ref_add(newfolio, nr): the cache's reference
                putPage(src)
            }
        }
        if s.pointee.flags & PG.dirty != 0 {
            s.pointee.flags &= ~PG.dirty
            d.pointee.flags |= PG.dirty
        }
        // folio_migrate_flags()
        let copied = PG.referenced | PG.uptodate | PG.workingset | PG.young | PG.idle | PG.reclaim
        d.pointee.flags |= s.pointee.flags & copied
        if s.pointee.flags & PG.active != 0 {
            s.pointee.flags &= ~PG.active
            d.pointee.flags |= PG.active
        } else if s.pointee.flags & PG.unevictable != 0 {
            s.pointee.flags &= ~PG.unevictable
            d.pointee.flags |= PG.unevictable
        }
        if pageIsAnon(src) { d.pointee.flags |= s.pointee.flags & PG.anonExclusive }
        // folio_migrate_ksm(): the stable node now names the new frame; the
        // old one keeps only the KSM tag (its node pointer is cleared).
        let node = folioStableNode(src)
        if !node.isNone {
            ksmNode(node).pointee.kpfn = dst.rawValue
            folioSetStableNode(src, .none)
        }
        if target == .system { d.pointee.flags |= PG.lru }  // putback of the new folio (device pages are on no LRU)
        if wasMapped { removeMigrationPTEs(src: src, dst: dst) }
        putPage(src)  // migrate_folio_done(): the isolation reference; the old frame is freed
        putPage(dst)  // the allocation's reference: the new frame lives on in its PTEs and caches
        return true
    }
}
