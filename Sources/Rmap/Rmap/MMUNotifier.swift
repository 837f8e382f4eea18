import CShims

/// A secondary MMU (a device, a hypervisor's shadow page tables) that caches
/// translations of a process's page tables and must drop them when the
/// primary PTEs change (struct mmu_notifier_ops, include/linux/mmu_notifier.h).
/// `mm` is the process's mm (`Machine.mmIndex(of:)`); ranges are
/// [start, end) in bytes.
///
/// Hooks are called where the kernel calls them in the paths the model has:
/// `invalidateRangeStart`/`invalidateRangeEnd` pair around each rmap_one that
/// may change PTEs (try_to_unmap_one, try_to_migrate_one, page_mkclean_one),
/// around zap_pte_range (munmap, MADV_DONTNEED, exit, the old range of an
/// mremap move) and around wp_page_copy (COW); `changePTE` inside the COW
/// (set_pte_at_notify, v5.x-6.8); `clearFlushYoung` from
/// ptep_clear_flush_young_notify (page_referenced_one and the young check of
/// try_to_unmap_one); `clearYoung` from ptep_clear_young_notify (idle page
/// tracking, page_idle_clear_pte_refs_one); `release` at the start of
/// exit_mmap. `testYoung` (mmu_notifier_test_young, used by khugepaged) has
/// no caller in the modelled paths; it is part of the interface for
/// completeness. Not modelled: mprotect, fork's
/// write-protection and MADV_FREE (they keep the PFN; a shadow of PFNs does
/// not need them), invalidate_range (the secondary TLB callback of v5.x).
public protocol MMUNotifier: AnyObject {
    func invalidateRangeStart(mm: MMID, start: UInt64, end: UInt64)
    func invalidateRangeEnd(mm: MMID, start: UInt64, end: UInt64)
    /// True if the secondary MMU had accessed [start, end) since the last call (then cleared).
    func clearFlushYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool
    func clearYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool
    func testYoung(mm: MMID, address: UInt64) -> Bool
    /// The primary PTE at `address` now holds `pte` (a new page after COW).
    func changePTE(mm: MMID, address: UInt64, pte: UInt64)
    /// The address space is going away: drop everything of `mm`.
    func release(mm: MMID)
}

public extension MMUNotifier {
    func invalidateRangeStart(mm: MMID, start: UInt64, end: UInt64) {}
    func invalidateRangeEnd(mm: MMID, start: UInt64, end: UInt64) {}
    func clearFlushYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool { false }
    func clearYoung(mm: MMID, start: UInt64, end: UInt64) -> Bool { false }
    func testYoung(mm: MMID, address: UInt64) -> Bool { false }
    func changePTE(mm: MMID, address: UInt64, pte: UInt64) {}
    func release(mm: MMID) {}
}

/// What the model keeps beside the arena for one machine: MMU-notifier
/// subscriptions (mm->notifier_subscriptions) and TLB-flush accounting. Not
/// saved with the arena: notifiers are live objects of the embedding program.
/// Internal to the model (the variants install their hooks through
/// `Kernel.reverseMap`): made visible to the package, every read of its
/// flags became a dynamic exclusivity check (swift_beginAccess), per PTE on
/// fork (measured: 5.4 -> 10.0 ns per PTE). Its stored properties are also
/// `@exclusivity(unchecked)`, which removes the checks the notifier list still
/// paid on each COW: the model is single-threaded and never holds an inout
/// access to them across a call.
final class KernelHooks {
    /// (mm, notifier) pairs in registration order (hlist order is LIFO in the
    /// kernel; the model calls them in registration order).
    @exclusivity(unchecked) var subscriptions: [(mm: MMID, notifier: any MMUNotifier)] = []
    /// TLB flushes issued (flush_tlb_page per PTE, or one per batch).
    @exclusivity(unchecked) var tlbFlushes = 0
    /// tlb_ubc->flush_required: a batched flush is pending (TTU_BATCH_FLUSH).
    @exclusivity(unchecked) var tlbBatchPending = false

    /// A deliberate defect, set only by the tests that prove the invariant
    /// checker can fail (a broken model must be caught).
    @exclusivity(unchecked) var defect = ModelDefect.none

    /// A design variant's own reverse map (RmapVariants' PV lists), told of
    /// every rmap add and remove, and the one flag those paths test.
    @exclusivity(unchecked) var reverseMap: (any ReverseMapHooks)? {
        didSet { reverseMapOn = reverseMap != nil }
    }
    /// Tests turn it off for a moment to plant a missed event.
    @exclusivity(unchecked) var reverseMapOn = false

    @inline(__always) var hasSubscriptions: Bool { !subscriptions.isEmpty }

    /// The page-table pages' marks (`Kernel.ptDirty`), owned here.
    let ptDirty: UnsafeMutablePointer<UInt8>
    let ptDirtyCount: Int
    /// Whether `ptPage` marks (`Kernel.ptTracking`).
    let ptTracking: UnsafeMutablePointer<Bool>
    init(ptDirtyCount: Int) {
        self.ptDirtyCount = ptDirtyCount
        ptDirty = .allocate(capacity: ptDirtyCount)
        ptDirty.initialize(repeating: 0, count: ptDirtyCount)
        ptTracking = .allocate(capacity: 1)
        ptTracking.initialize(to: false)
    }
    deinit { ptDirty.deallocate(); ptTracking.deallocate() }
}

/// Defects the tests plant in the model to show the checker catches them.
enum ModelDefect {
    case none
    /// fork's folio_try_dup_anon_rmap_pte() forgets the mapcount increment
    /// (one rmap add removed).
    case skipDupAnonRmap
    /// folio_remove_rmap_pte() forgets the mapcount decrement.
    case skipRemoveRmapDecrement
    /// __page_set_anon_rmap() ignores the root rule: a page that may be
    /// shared points at the VMA's own anon_vma (the 2.6.34 bug).
    case sharedAnonPageNotAtRoot
    /// munlock_vma_folio() forgets a large folio: removing its mapping in a
    /// VM_LOCKED VMA no longer munlocks it.
    case skipLargeFolioMunlock
}

extension Kernel {
    /// mmu_notifier_invalidate_range_start()
    @inline(__always) func mmuInvalidateRangeStart(_ m: MMID, _ start: UInt64, _ end: UInt64) {
        guard hooks.hasSubscriptions else { return }
        for s in hooks.subscriptions where s.mm == m { s.notifier.invalidateRangeStart(mm: m, start: start, end: end) }
    }

    /// mmu_notifier_invalidate_range_end()
    @inline(__always) func mmuInvalidateRangeEnd(_ m: MMID, _ start: UInt64, _ end: UInt64) {
        guard hooks.hasSubscriptions else { return }
        for s in hooks.subscriptions where s.mm == m { s.notifier.invalidateRangeEnd(mm: m, start: start, end: end) }
    }

    /// mmu_notifier_clear_flush_young(): every subscriber is asked (the
    /// kernel ORs them all, so each one's accessed state is cleared).
    @inline(__always) func mmuClearFlushYoung(_ m: MMID, _ start: UInt64, _ end: UInt64) -> Bool {
        guard hooks.hasSubscriptions else { return false }
        var young = false
        for s in hooks.subscriptions where s.mm == m {
            if s.notifier.clearFlushYoung(mm: m, start: start, end: end) { young = true }
        }
        return young
    }

    /// mmu_notifier_clear_young()
    func mmuClearYoung(_ m: MMID, _ start: UInt64, _ end: UInt64) -> Bool {
        var young = false
        for s in hooks.subscriptions where s.mm == m {
            if s.notifier.clearYoung(mm: m, start: start, end: end) { young = true }
        }
        return young
    }

    /// mmu_notifier_test_young()
    func mmuTestYoung(_ m: MMID, _ address: UInt64) -> Bool {
        for s in hooks.subscriptions where s.mm == m {
            if s.notifier.testYoung(mm: m, address: address) { return true }
        }
        return false
    }

    /// mmu_notifier_change_pte() (set_pte_at_notify)
    @inline(__always) func mmuChangePTE(_ m: MMID, _ address: UInt64, _ pte: UInt64) {
        guard hooks.hasSubscriptions else { return }
        for s in hooks.subscriptions where s.mm == m { s.notifier.changePTE(mm: m, address: address, pte: pte) }
    }

    /// mmu_notifier_release() (__mmu_notifier_release): each subscriber of
    /// `m` is told, then unsubscribed.
    func mmuRelease(_ m: MMID) {
        guard hooks.hasSubscriptions else { return }
        let mine = hooks.subscriptions.filter { $0.mm == m }
        hooks.subscriptions.removeAll { $0.mm == m }
        for s in mine { s.notifier.release(mm: m) }
    }

    /// ptep_clear_flush_young_notify(): the primary accessed bit is tested
    /// and cleared (x86: no TLB flush for it), then the secondary MMUs'.
    @inline(__always) func ptepClearFlushYoungNotify(_ m: MMID, _ address: UInt64,
                                                      _ slot: UnsafeMutablePointer<UInt64>) -> Bool {
        var young = PTE.isYoung(slot.pointee)
        slot.pointee &= ~PTE.accessed
        if mmuClearFlushYoung(m, address, address + PAGE_SIZE) { young = true }
        return young
    }

    // MARK: TLB flushes

    /// flush_tlb_page() after ptep_clear_flush(): one flush.
    @inline(__always) func flushTLBPage() { hooks.tlbFlushes += 1 }

    /// set_tlb_ubc_flush_pending(): the flush is deferred to the end of the batch.
    @inline(__always) func setTLBBatchPending() { hooks.tlbBatchPending = true }

    /// try_to_unmap_flush(): one flush for the whole batch, if any is pending.
    @inline(__always) package func tryToUnmapFlush() {
        if hooks.tlbBatchPending {
            hooks.tlbBatchPending = false
            hooks.tlbFlushes += 1
        }
    }
}

extension Machine {
    /// mmu_notifier_register(): `notifier` follows the page tables of
    /// `process` from now on until it exits (release) or is unregistered.
    /// False when there is no such live process.
    @discardableResult
    public func register(_ notifier: any MMUNotifier, for process: String) -> Bool {
        guard let m = mmOf(process) else { return false }
        k.hooks.subscriptions.append((m, notifier))
        return true
    }

    /// mmu_notifier_unregister(): `notifier` no longer hears about any mm.
    public func unregister(_ notifier: any MMUNotifier) {
        k.hooks.subscriptions.removeAll { $0.notifier === notifier }
    }

    /// The model's mm index of a live process (what notifiers are told).
    public func mmIndex(of process: String) -> MMID? { mmOf(process) }

    /// TLB flushes issued so far by the reverse-mapping paths
    /// (try_to_unmap, try_to_migrate, page_mkclean): one per PTE cleared with
    /// ptep_clear_flush, one per batch under TTU_BATCH_FLUSH.
    public var tlbFlushes: Int { k.hooks.tlbFlushes }
}
