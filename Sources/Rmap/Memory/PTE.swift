/// x86-64 page-table entry format (arch/x86/include/asm/pgtable_types.h).
package enum PTE {
    static let present: UInt64 = 1 << 0
    static let rw: UInt64 = 1 << 1
    static let user: UInt64 = 1 << 2
    static let accessed: UInt64 = 1 << 5
    static let dirty: UInt64 = 1 << 6
    static let pse: UInt64 = 1 << 7
    static let global: UInt64 = 1 << 8
    /// _PAGE_PROTNONE aliases _PAGE_GLOBAL on a non-present entry.
    static let protnone: UInt64 = 1 << 8
    /// _PAGE_SPECIAL (_PAGE_BIT_SOFTW1): no struct page refcounting (the zero page).
    package static let special: UInt64 = 1 << 9
    /// _PAGE_SOFT_DIRTY (_PAGE_BIT_SOFTW3).
    static let softDirty: UInt64 = 1 << 11
    static let nx: UInt64 = 1 << 63
    static let pfnMask: UInt64 = 0x000f_ffff_ffff_f000

    /// Swap-entry bits of a non-present PTE: _PAGE_SWP_SOFT_DIRTY (= _PAGE_RW),
    /// _PAGE_SWP_EXCLUSIVE (= _PAGE_PSE).
    static let swpSoftDirty: UInt64 = 1 << 1
    static let swpExclusive: UInt64 = 1 << 7

    @inline(__always) static func isNone(_ e: UInt64) -> Bool { e == 0 }
    /// pmd_trans_huge() / pmd_leaf(): a present PMD entry with _PAGE_PSE
    /// maps 2 MiB itself (a THP or the huge zero page), not a PTE table.
    @inline(__always) package static func isPMDLeaf(_ e: UInt64) -> Bool { e & pse != 0 && isPresent(e) }
    /// A PMD entry that points to a PTE table: present, no _PAGE_PSE
    /// (pmd_present() && !pmd_leaf()). Anything else that is not none is a
    /// leaf or a swap-format PMD (a PMD migration entry), never a table.
    @inline(__always) package static func isPMDTable(_ e: UInt64) -> Bool { e & (present | pse) == present }
    /// is_pmd_migration_entry(): a non-present PMD holding a migration
    /// entry, in the same swap encoding as a PTE's (swp_entry_to_pmd).
    @inline(__always) package static func isPMDMigrationEntry(_ e: UInt64) -> Bool { isMigrationEntry(e) }
    /// pmd_is_huge(): a PMD leaf or a swap-format PMD (what split_huge_pmd,
    /// zap_huge_pmd and move_huge_pmd take), not none and no table.
    @inline(__always) package static func isPMDLeafOrEntry(_ e: UInt64) -> Bool { e != 0 && !isPMDTable(e) }
    /// pte_present(): present or PROT_NONE.
    @inline(__always) package static func isPresent(_ e: UInt64) -> Bool { e & (present | protnone) != 0 }
    @inline(__always) package static func pfn(_ e: UInt64) -> PFN { PFN(UInt32(truncatingIfNeeded: (e & pfnMask) >> 12)) }
    /// pmd_page() / pud_pgtable(): the page-table page (an index in the
    /// PT-page table, not a frame) an upper-level entry points to.
    @inline(__always) static func tablePage(_ e: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: (e & pfnMask) >> 12) }
    @inline(__always) static func isWrite(_ e: UInt64) -> Bool { e & rw != 0 }
    @inline(__always) static func isYoung(_ e: UInt64) -> Bool { e & accessed != 0 }
    @inline(__always) static func isDirty(_ e: UInt64) -> Bool { e & dirty != 0 }

    /// mk_pte(page, vma->vm_page_prot) for the model's protection bits.
    @inline(__always) static func make(pfn: PFN, prot: UInt64) -> UInt64 {
        (UInt64(pfn.rawValue) << 12) | prot
    }

    /// vm_get_page_prot() for x86 (protection_map): PROT_NONE entries are
    /// non-present with _PAGE_PROTNONE; private writable mappings start read-only
    /// (write faults do the COW), shared writable ones are writable.
    @inline(__always) static func pageProt(vmFlags f: UInt64) -> UInt64 {
        let rwx = f & (VM.read | VM.write | VM.exec)
        if rwx == 0 { return protnone | accessed }
        var p = present | user | accessed
        if f & VM.shared != 0 && f & VM.write != 0 { p |= rw }
        if f & VM.exec == 0 { p |= nx }
        return p
    }

    // MARK: swap entries (arch/x86/include/asm/pgtable_64.h)
    // __swp_entry(type, offset): type in bits 59-63, ~offset in bits 9-58.

    static let swpTypeBits: UInt64 = 5
    static let swpOffsetShift: UInt64 = 14

    @inline(__always) static func swpEntry(type: UInt64, offset: UInt64) -> UInt64 {
        (((~offset) << swpOffsetShift) >> swpTypeBits) | (type << (64 - swpTypeBits))
    }
    @inline(__always) static func swpType(_ e: UInt64) -> UInt64 { e >> (64 - swpTypeBits) }
    @inline(__always) static func swpOffset(_ e: UInt64) -> UInt64 {
        ((~e) << swpTypeBits) >> swpOffsetShift
    }
    /// swp_offset_pfn(): the frame a migration, device or hwpoison entry names.
    @inline(__always) static func swpOffsetPFN(_ e: UInt64) -> PFN { PFN(UInt32(truncatingIfNeeded: swpOffset(e))) }
    /// make_*_entry(pfn): a non-present entry of `type` naming frame `pfn`.
    @inline(__always) static func swpEntry(type: UInt64, pfn: PFN) -> UInt64 {
        swpEntry(type: type, offset: UInt64(pfn.rawValue))
    }
    /// is_swap_pte(): a non-none, non-present entry.
    @inline(__always) static func isSwapPTE(_ e: UInt64) -> Bool { e != 0 && !isPresent(e) }

    // Swap types (include/linux/swap.h, 6.x): MAX_SWAPFILES = 32 - 3 device - 3 migration - 1 hwpoison - 1 marker.
    static let maxSwapfiles: UInt64 = 24
    static let swpHWPoison: UInt64 = 24
    static let swpPTEMarker: UInt64 = 25
    static let swpMigrationRead: UInt64 = 26
    static let swpMigrationReadExclusive: UInt64 = 27
    static let swpMigrationWrite: UInt64 = 28
    static let swpDevicePrivateRead: UInt64 = 29
    static let swpDevicePrivateWrite: UInt64 = 30
    static let swpDeviceExclusive: UInt64 = 31

    @inline(__always) package static func isMigrationEntry(_ e: UInt64) -> Bool {
        guard isSwapPTE(e) else { return false }
        let t = swpType(e)
        return t >= swpMigrationRead && t <= swpMigrationWrite
    }
    /// is_device_private_entry(): SWP_DEVICE_READ / SWP_DEVICE_WRITE (offset = PFN).
    @inline(__always) package static func isDevicePrivateEntry(_ e: UInt64) -> Bool {
        guard isSwapPTE(e) else { return false }
        let t = swpType(e)
        return t == swpDevicePrivateRead || t == swpDevicePrivateWrite
    }
    /// is_device_exclusive_entry(): SWP_DEVICE_EXCLUSIVE (offset = PFN).
    @inline(__always) package static func isDeviceExclusiveEntry(_ e: UInt64) -> Bool {
        isSwapPTE(e) && swpType(e) == swpDeviceExclusive
    }
    /// The model's one device-exclusive type stands for the kernel's two
    /// (SWP_DEVICE_EXCLUSIVE_WRITE / _READ): a writable entry carries bit 6
    /// (a bit no swap entry uses: not present, not PROT_NONE, below the offset).
    static let swpDeviceExclusiveWrite: UInt64 = 1 << 6
    /// is_hwpoison_entry(): a swap-format entry of type SWP_HWPOISON (offset = PFN).
    @inline(__always) package static func isHWPoisonEntry(_ e: UInt64) -> Bool {
        isSwapPTE(e) && swpType(e) == swpHWPoison
    }
    @inline(__always) static func isRealSwapEntry(_ e: UInt64) -> Bool {
        isSwapPTE(e) && swpType(e) < maxSwapfiles
    }
}
