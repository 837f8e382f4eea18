import Rmap
import CShims
#if canImport(Glibc)
import Glibc
#endif

// Design variant 1: a per-page reverse map (PV lists).
//
// The design the kernel rejected for anonymous memory: every physical page
// keeps a list of the (address space, virtual address) pairs that map it.
// FreeBSD's pmap does this with pv entries (struct pv_entry: pv_va and a
// TAILQ link, in per-pmap chunks; md_page.pv_list per vm_page); Linux
// 2.5.27-2.6.10 did it with pte_chains (one pointer per PTE hung off struct
// page). Every PTE that maps a page costs one entry: fork copies one entry
// per copied PTE, and unmapping a PTE searches the page's list for its entry
// (pmap_pvh_remove / page_remove_rmap scanned the chain). A walk follows the
// list and finds exactly the PTEs that map the page: no anon_vma tree, no
// VMA that may or may not map it.
//
// Here the lists are kept beside the model (not in the arena, not saved) and
// only when enabled (`Machine.enablePVLists`): the rmap add/remove calls
// (Rmap/AddRemove.swift), fork's anon dup (VM/Fork.swift) and mremap's PTE
// move (VM/Syscalls.swift) call the hooks below behind one flag test. The
// entries live in one preallocated MAP_NORESERVE region: no allocation and
// no reference counting per operation.

/// One pv entry: the address space (mm index) and virtual address of one
/// PTE that maps the page, and the next entry of the page's list (16 bytes).
struct PVEntry {
    var va: UInt64
    var mm: UInt32
    var next: UInt32
}

/// The counters of the PV region (in the region itself, so `PVTable` is a
/// plain value of pointers).
struct PVCounters {
    var capacity: UInt32
    var bump: UInt32
    var freeHead: UInt32
    var live: UInt32
    var frames: UInt32
    /// The pool ran out: an entry could not be added, the lists are no
    /// longer complete (a real pmap would reclaim or fail the mapping).
    var overflowed: UInt32
    var highWater: UInt32
    var pad: UInt32
}

/// The PV lists of one machine: per frame, the index of its first entry
/// (0 = none), and the entry pool. Only pointers: copying it copies no
/// state and retains nothing.
struct PVTable {
    let counters: UnsafeMutablePointer<PVCounters>
    let heads: UnsafeMutablePointer<UInt32>
    let entries: UnsafeMutablePointer<PVEntry>
    let bytes: Int

    /// One MAP_NORESERVE mapping for `frames` heads and `capacity` entries;
    /// nil when the host refuses it. Untouched pages cost nothing.
    static func create(frames: UInt32, capacity: UInt32) -> PVTable? {
        let headBytes = (Int(frames) * 4 + 63) & ~63
        let total = 64 + headBytes + (Int(capacity) + 1) * MemoryLayout<PVEntry>.stride
        let p = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        let c = p.assumingMemoryBound(to: PVCounters.self)
        c.pointee = PVCounters(capacity: capacity, bump: 1, freeHead: 0, live: 0, frames: frames,
                               overflowed: 0, highWater: 0, pad: 0)
        return PVTable(counters: c, heads: (p + 64).assumingMemoryBound(to: UInt32.self),
                       entries: (p + 64 + headBytes).assumingMemoryBound(to: PVEntry.self), bytes: total)
    }

    func destroy() { munmap(UnsafeMutableRawPointer(counters), bytes) }

    /// pmap_enter()'s pv_entry: a new entry at the head of the frame's list.
    @inline(__always) func add(_ pfn: PFN, mm: MMID, va: UInt64) {
        let c = counters
        var i = c.pointee.freeHead
        if i != 0 {
            c.pointee.freeHead = entries[Int(i)].next
        } else {
            guard c.pointee.bump <= c.pointee.capacity else { c.pointee.overflowed = 1; return }
            i = c.pointee.bump
            c.pointee.bump += 1
        }
        entries[Int(i)] = PVEntry(va: va, mm: mm.rawValue, next: heads[Int(pfn.rawValue)])
        heads[Int(pfn.rawValue)] = i
        c.pointee.live += 1
        if c.pointee.live > c.pointee.highWater { c.pointee.highWater = c.pointee.live }
    }

    /// pmap_pvh_remove(): searches the frame's list for (mm, va) and frees
    /// the entry; false when it is not there.
    @inline(__always) @discardableResult
    func remove(_ pfn: PFN, mm: MMID, va: UInt64) -> Bool {
        var prev: UInt32 = 0
        var i = heads[Int(pfn.rawValue)]
        while i != 0 {
            let e = entries + Int(i)
            if e.pointee.mm == mm.rawValue && e.pointee.va == va {
                if prev == 0 { heads[Int(pfn.rawValue)] = e.pointee.next } else { entries[Int(prev)].next = e.pointee.next }
                e.pointee.next = counters.pointee.freeHead
                counters.pointee.freeHead = i
                counters.pointee.live -= 1
                return true
            }
            prev = i
            i = e.pointee.next
        }
        return false
    }

    /// The entry for (mm, va) on the frame's list, if any.
    @inline(__always) func find(_ pfn: PFN, mm: MMID, va: UInt64) -> UnsafeMutablePointer<PVEntry>? {
        var i = heads[Int(pfn.rawValue)]
        while i != 0 {
            let e = entries + Int(i)
            if e.pointee.mm == mm.rawValue && e.pointee.va == va { return e }
            i = e.pointee.next
        }
        return nil
    }
}

/// The pmap-level visitor of a PV walk: each (mm, address) whose PTE maps
/// the frame, as FreeBSD's pmap_remove_all / pmap_ts_referenced see them (no
/// VMA: the pmap layer has none). Return false to stop.
public protocol PVWalkControl {
    mutating func visit(_ m: RmapContext, pfn: PFN, mm: MMID, address: UInt64) -> Bool
}

/// The PV lists installed as the core's reverse-map hooks: each rmap add
/// or remove event becomes one list operation on the frame's list.
final class PVLists: ReverseMapHooks {
    let table: PVTable

    init(table: PVTable) { self.table = table }

    deinit { table.destroy() }

    @inline(never)
    func anonAdded(_ k: Kernel, pfn: PFN, vma v: VMAID, address: UInt64) {
        table.add(pfn, mm: k.vmMM(v), va: address)
    }

    @inline(never)
    func ptesDuplicated(_ k: Kernel, pfn: PFN, mm m: MMID, address: UInt64) {
        table.add(pfn, mm: m, va: address)
    }

    /// The entry's address is where `v` maps the page's index.
    @inline(never)
    func fileAdded(_ k: Kernel, pfn: PFN, vma v: VMAID) {
        guard let a = k.vmaAddress(v, index: k.page(pfn).pointee.index) else { table.counters.pointee.overflowed = 1; return }
        table.add(pfn, mm: k.vmMM(v), va: a)
    }

    /// The entry that goes is the one at the address where `v` maps the
    /// page's index (the rmap invariant every walk relies on). A KSM page has
    /// no such address (its index is one mapping's, and it may be mapped
    /// twice in one VMA): its entry is the one of `v`'s mm inside `v` whose
    /// PTE no longer maps it (every caller clears or replaces the PTE before
    /// the rmap remove, as the kernel does).
    @inline(never)
    func removed(_ k: Kernel, pfn: PFN, vma v: VMAID) {
        let m = k.vmMM(v)
        let ksm = k.page(pfn).pointee.mapping & PageMapping.flags == PageMapping.ksm
        if !ksm, let a = k.vmaAddress(v, index: k.page(pfn).pointee.index), table.remove(pfn, mm: m, va: a) { return }
        let s = k.vma(v).pointee.vm_start, e = k.vma(v).pointee.vm_end
        let pgd = k.mm(m).pointee.pgd
        var i = table.heads[Int(pfn.rawValue)]
        while i != 0 {
            let en = table.entries[Int(i)]
            if MMID(en.mm) == m && en.va >= s && en.va < e {
                let pte = k.leafSlot(root: pgd, key: en.va)?.pointee ?? 0
                if !(PTE.isPresent(pte) && PTE.pfn(pte) == pfn) { table.remove(pfn, mm: m, va: en.va); return }
            }
            i = en.next
        }
        table.counters.pointee.overflowed = 1  // not found: the lists are wrong
    }

    @inline(never)
    func ptesMoved(_ k: Kernel, pte: UInt64, mm m: MMID, from: UInt64, to: UInt64) {
        let pfn = k.vmNormalPage(pte)
        guard !pfn.isNone else { return }
        if let e = table.find(pfn, mm: m, va: from) { e.pointee.va = to } else { table.counters.pointee.overflowed = 1 }
    }
}

extension Kernel {
    /// The installed PV lists' table, if the PV variant is on.
    var pvTable: PVTable? { (reverseMap as? PVLists)?.table }

    // MARK: enabling

    /// Starts maintaining PV lists: builds them from a census of every
    /// present PTE of every live mm, then the hooks keep them. `capacity`
    /// entries at most (0: one per page-table slot of the arena).
    func pvEnable(capacity: UInt32) -> Bool {
        pvDisable()
        let frames = desc(T.frame).pointee.capacity
        let ptSlots = UInt64(desc(T.ptPage).pointee.capacity) * 512
        let cap = capacity != 0 ? capacity : UInt32(min(ptSlots, UInt64(UInt32.max - 1)))
        guard let pv = PVTable.create(frames: frames, capacity: cap) else { return false }
        let lists = PVLists(table: pv)
        forEachLiveMM { m in
            var v = firstVMA(m)
            while !v.isNone {
                walkLeaves(root: mm(m).pointee.pgd, start: vma(v).pointee.vm_start, end: vma(v).pointee.vm_end) { a, slot in
                    let pfn = vmNormalPage(slot.pointee)
                    if !pfn.isNone { pv.add(pfn, mm: m, va: a) }
                    return true
                }
                v = nextVMA(v)
            }
        }
        reverseMap = lists
        return pv.counters.pointee.overflowed == 0
    }

    func pvDisable() {
        reverseMap = nil  // PVLists' deinit unmaps the table
    }

    /// Every live mm, in index order (the scan's "every process"): a
    /// freed mm record is poisoned, so its pid no longer names itself.
    @inline(__always)
    func forEachLiveMM(_ body: (MMID) -> Void) {
        let d = desc(T.mm)
        var m = MMID(1)
        while m.rawValue < d.pointee.bump {
            if mm(m).pointee.pid == m.rawValue { body(m) }
            m = MMID(m.rawValue + 1)
        }
    }

    // MARK: walks

    /// The PV walk at the pmap level: follows the frame's list.
    @inline(__always)
    func pvWalk<C: PVWalkControl>(_ pfn: PFN, _ c: inout C) {
        guard let pv = pvTable else { return }
        let ctx = RmapContext(k: self)
        var i = pv.heads[Int(pfn.rawValue)]
        while i != 0 {
            let e = pv.entries + Int(i)
            i = e.pointee.next
            if !c.visit(ctx, pfn: pfn, mm: MMID(e.pointee.mm), address: e.pointee.va) { return }
        }
    }

    /// The PV walk behind the rmap walk API: each entry's VMA is looked up
    /// (find_vma(), as 2.5's try_to_unmap_one did) and handed to the same
    /// hooks as `rmapWalk`.
    @inline(__always)
    func pvRmapWalk<C: RmapWalkControl>(_ pfn: PFN, _ c: inout C) {
        guard let pv = pvTable else { return }
        let ctx = RmapContext(k: self)
        var i = pv.heads[Int(pfn.rawValue)]
        while i != 0 {
            let e = pv.entries + Int(i)
            i = e.pointee.next
            let address = e.pointee.va
            let v = vmaLookup(MMID(e.pointee.mm), address)
            if v.isNone || c.invalidVMA(ctx, vma: v) { continue }
            if !c.rmapOne(ctx, pfn: pfn, vma: v, address: address) { return }
            if c.done(ctx, pfn: pfn) { return }
        }
    }

    // MARK: accounting and checking

    /// Entries on frame `pfn`'s list.
    func pvCount(_ pfn: PFN) -> Int {
        guard let pv = pvTable else { return 0 }
        var n = 0
        var i = pv.heads[Int(pfn.rawValue)]
        while i != 0 { n += 1; i = pv.entries[Int(i)].next }
        return n
    }

    /// Differences between the PV lists and the page tables: every entry
    /// must name a present PTE of a live mm that maps its frame, once; every
    /// such PTE must have its entry; the pool must never have run out.
    func pvCheck() -> [String] {
        guard let pv = pvTable else { return ["PV lists are not enabled"] }
        var out: [String] = []
        if pv.counters.pointee.overflowed != 0 { out.append("PV lists: an entry was lost (pool full or entry not found)") }
        var total = 0
        let frames = Int(pv.counters.pointee.frames)
        var seen = Set<UInt64>()
        for f in 0..<frames where pv.heads[f] != 0 {
            seen.removeAll(keepingCapacity: true)
            var i = pv.heads[f]
            while i != 0 {
                let e = pv.entries[Int(i)]
                total += 1
                if !seen.insert(UInt64(e.mm) << 48 ^ e.va).inserted {
                    out.append("frame \(f): duplicate entry mm \(e.mm) va 0x\(String(e.va, radix: 16))")
                }
                let em = MMID(e.mm)
                let live = !em.isNone && e.mm < desc(T.mm).pointee.bump && mm(em).pointee.pid == e.mm
                let slot = live ? leafSlot(root: mm(em).pointee.pgd, key: e.va) : nil
                if slot.map({ vmNormalPage($0.pointee) }) != PFN(UInt32(f)) {
                    out.append("frame \(f): stale entry mm \(e.mm) va 0x\(String(e.va, radix: 16))")
                }
                i = e.next
            }
            if out.count > 20 { return out }
        }
        var ptes = 0
        forEachLiveMM { m in
            var v = firstVMA(m)
            while !v.isNone {
                walkLeaves(root: mm(m).pointee.pgd, start: vma(v).pointee.vm_start, end: vma(v).pointee.vm_end) { a, slot in
                    let pfn = vmNormalPage(slot.pointee)
                    guard !pfn.isNone else { return true }
                    ptes += 1
                    if pv.find(pfn, mm: m, va: a) == nil {
                        out.append("mm \(m) va 0x\(String(a, radix: 16)) maps frame \(pfn): no PV entry")
                    }
                    return out.count <= 20
                }
                v = nextVMA(v)
            }
        }
        if total != Int(pv.counters.pointee.live) { out.append("PV lists: \(total) entries listed, \(pv.counters.pointee.live) live") }
        if ptes != total { out.append("PV lists: \(total) entries, \(ptes) mapped PTEs") }
        return out
    }
}
