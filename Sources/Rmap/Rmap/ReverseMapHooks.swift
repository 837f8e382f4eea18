import CShims

/// The events a design variant keeps its own reverse map from (RmapVariants'
/// PV lists: FreeBSD's pv entries, Linux 2.5's pte_chains). The core does not
/// know the variants: the rmap add/remove paths (Rmap/AddRemove.swift),
/// fork's anon dup (VM/Fork.swift) and mremap's PTE move (VM/Syscalls.swift)
/// call the installed hooks (`Kernel.reverseMap`), behind one flag test,
/// where the kernel updates its own rmap: an add before the new PTE is
/// written (as folio_add_new_anon_rmap() precedes set_pte_at()), a remove
/// after the PTE is cleared or replaced, a move after the PTE moved.
package protocol ReverseMapHooks: AnyObject {
    /// A PTE of VMA `vma` at `address` now maps anonymous page `pfn`.
    func anonAdded(_ k: Kernel, pfn: PFN, vma: VMAID, address: UInt64)
    /// fork copied a PTE: one of mm `mm` at `address` now maps `pfn`.
    func ptesDuplicated(_ k: Kernel, pfn: PFN, mm: MMID, address: UInt64)
    /// Page-cache page `pfn` is mapped by one more PTE of VMA `vma` (the
    /// kernel's file rmap add passes no address).
    func fileAdded(_ k: Kernel, pfn: PFN, vma: VMAID)
    /// One PTE of VMA `vma` no longer maps `pfn` (the PTE is already cleared or replaced).
    func removed(_ k: Kernel, pfn: PFN, vma: VMAID)
    /// mremap's move_ptes(): PTE `pte` of mm `mm` moved from `from` to `to`.
    func ptesMoved(_ k: Kernel, pte: UInt64, mm: MMID, from: UInt64, to: UInt64)
}

extension Kernel {
    /// The installed design variant's hooks (nil: none, the default).
    package var reverseMap: (any ReverseMapHooks)? {
        get { hooks.reverseMap }
        nonmutating set { hooks.reverseMap = newValue }
    }
}
