import CShims

/// Files and their page caches (struct address_space, mm/filemap.c, mm/shmem.c).
///
/// The page cache is a radix tree of page-table pages keyed by page index
/// (the model's xarray). A leaf entry holds a PFN (with the present bit) or a
/// shadow value marking a page evicted by reclaim. Trace files (`file F N`)
/// are fully resident: their frames are materialised on first lookup, so an
/// unread 1 GiB file costs nothing. Shmem files start empty: a hole is a hole.
package enum FileKind: UInt32 {
    case regular = 1
    case shmem = 2
    /// A hugetlbfs file (Hugetlb/Hugetlb.swift): its tree is indexed by huge page.
    case hugetlbfs = 3
}

extension Kernel {
    /// vma->vm_file (raw in the arena's VMA record; none for anonymous memory).
    @inline(__always) func vmFile(_ v: VMAID) -> FileID { FileID(vma(v).pointee.file) }

    /// Shadow entry left by __remove_mapping() for an evicted page (xa_mk_value).
    static let shadowEntry: UInt64 = 0x2

    /// Creates a file of `pages` pages; 0 when out of memory.
    func createFile(pages: UInt64, kind: FileKind) -> FileID {
        guard available(T.file) >= 1, available(T.ptPage) >= 1 else { return .none }
        let f = FileID(alloc(T.file))
        let root = allocPTPage(level: 4)
        let fp = file(f)
        fp.pointee.size_pages = pages
        fp.pointee.cache_root = root
        fp.pointee.kind = kind.rawValue
        fp.pointee.refcount = 1
        fp.pointee.serial = UInt64(f.rawValue)
        return f
    }

    func getFile(_ f: FileID) { file(f).pointee.refcount += 1 }

    /// fput() of the last reference: truncates the page cache and frees the file.
    func putFile(_ f: FileID) {
        let fp = file(f)
        fp.pointee.refcount -= 1
        guard fp.pointee.refcount == 0 else { return }
        if fp.pointee.kind == FileKind.hugetlbfs.rawValue { hugetlbEvictInode(f) }
        truncatePageCache(f)
        freeSubtree(fp.pointee.cache_root, level: 4)
        free(T.file, f.rawValue)
    }

    /// truncate_inode_pages(): drops every cached page (none may be mapped).
    func truncatePageCache(_ f: FileID) {
        let fp = file(f)
        walkLeaves(root: fp.pointee.cache_root, start: 0, end: (fp.pointee.size_pages + 1) << 12) { _, slot in
            let e = slot.pointee
            if e & PTE.present != 0 {
                let pfn = PTE.pfn(e)
                page(pfn).pointee.mapping = 0
                putPage(pfn)
                fp.pointee.nrpages -= 1
            } else if e != 0 && PTE.isRealSwapEntry(e) {
                swapFree(e)
            }
            slot.pointee = 0
            return true
        }
    }

    /// The cached frame at `index`, 0 when not cached (filemap_get_entry).
    /// For a regular file a resident page is materialised here; a page past
    /// EOF or evicted is not cached.
    @inline(__always)
    func pageCacheLookup(_ f: FileID, _ index: UInt64, materialize: Bool) -> PFN {
        let fp = file(f)
        guard index < fp.pointee.size_pages else { return .none }
        if let slot = cacheSlot(root: fp.pointee.cache_root, key: index << 12) {
            let e = slot.pointee
            if e & PTE.present != 0 { return PTE.pfn(e) }
            if e != 0 || fp.pointee.kind != FileKind.regular.rawValue || !materialize { return .none }
        } else if fp.pointee.kind != FileKind.regular.rawValue || !materialize {
            return .none
        }
        return pageCacheAddNew(f, index)
    }

    /// Whether a regular file's page is resident (filemap_map_pages maps only those).
    @inline(__always)
    func pageCacheResident(_ f: FileID, _ index: UInt64) -> Bool {
        let fp = file(f)
        guard index < fp.pointee.size_pages else { return false }
        guard let slot = cacheSlot(root: fp.pointee.cache_root, key: index << 12) else {
            return fp.pointee.kind == FileKind.regular.rawValue
        }
        let e = slot.pointee
        if e & PTE.present != 0 { return true }
        return e == 0 && fp.pointee.kind == FileKind.regular.rawValue
    }

    /// filemap_add_folio() / shmem_add_to_page_cache(): a new uptodate frame at
    /// `index`, holding the page cache's reference. 0 when out of memory.
    func pageCacheAddNew(_ f: FileID, _ index: UInt64) -> PFN {
        let fp = file(f)
        guard let slot = leafSlotAlloc(root: fp.pointee.cache_root, key: index << 12) else { return .none }
        let pfn = allocPage()
        if pfn.isNone { return .none }
        if slot.pointee == 0 { ptDescUsedForLeaf(fp.pointee.cache_root, index << 12, +1) }
        slot.pointee = PTE.make(pfn: pfn, prot: PTE.present)
        let p = page(pfn)
        p.pointee.mapping = offset(table: T.file, index: f.rawValue)
        p.pointee.index = index
        p.pointee.flags |= PG.uptodate | PG.lru
        if fp.pointee.kind == FileKind.shmem.rawValue {
            p.pointee.flags |= PG.swapbacked  // a new shmem page is zero-filled: content 0
        } else {
            // The file's data, read in: for a trace file `serial` is its
            // ordinal among the trace's files (Machine.createFile). Written-back
            // data is not kept: a written page that reclaim evicts reads back
            // with this token. The oracle fills its files with the same
            // tokens (CShims/include/rmap_content.h).
            p.pointee.content = rmap_file_token(fp.pointee.serial, index)
        }
        fp.pointee.nrpages += 1
        return pfn
    }

    /// __filemap_remove_folio(): the page leaves the cache (a shadow entry stays
    /// for a regular file, so the page reads as not resident); drops the cache's reference.
    func pageCacheRemove(_ f: FileID, _ index: UInt64) {
        let fp = file(f)
        guard let slot = leafSlot(root: fp.pointee.cache_root, key: index << 12),
              slot.pointee & PTE.present != 0 else { return }
        let pfn = PTE.pfn(slot.pointee)
        slot.pointee = fp.pointee.kind == FileKind.regular.rawValue ? Kernel.shadowEntry : 0
        if slot.pointee == 0 { ptDescUsedForLeaf(fp.pointee.cache_root, index << 12, -1) }
        fp.pointee.nrpages -= 1
        page(pfn).pointee.mapping = 0
        putPage(pfn)
    }

    /// page_cache_sync_ra() for an mmap fault on a non-resident page of a
    /// regular file (do_sync_mmap_readahead, mmap read-around): the window
    /// [pgoff - ra_pages/2, + ra_pages) becomes resident again (ra_pages = 32).
    func readAround(_ f: FileID, _ index: UInt64) {
        let fp = file(f)
        guard fp.pointee.kind == FileKind.regular.rawValue else { return }
        let ra: UInt64 = 32
        let start = index >= ra / 2 ? index - ra / 2 : 0
        let end = min(start + ra, fp.pointee.size_pages)
        walkLeaves(root: fp.pointee.cache_root, start: start << 12, end: end << 12) { _, slot in
            if slot.pointee == Kernel.shadowEntry { slot.pointee = 0 }
            return true
        }
    }

    /// Keeps the leaf table's count of used entries (ptdesc->used) for cache slots.
    @inline(__always) func ptDescUsedForLeaf(_ root: UInt32, _ key: UInt64, _ delta: Int32) {
        let table = tableOnPath(root: root, key: key, level: 1)
        guard table != 0 else { return }
        ptDesc(table).pointee.used = UInt32(Int32(ptDesc(table).pointee.used) + delta)
    }
}
