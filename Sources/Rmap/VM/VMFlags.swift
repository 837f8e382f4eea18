/// vm_flags bits (include/linux/mm.h, 6.x values).
package enum VM {
    package static let read: UInt64 = 0x1
    package static let write: UInt64 = 0x2
    package static let exec: UInt64 = 0x4
    static let shared: UInt64 = 0x8
    static let mayread: UInt64 = 0x10
    static let maywrite: UInt64 = 0x20
    static let mayexec: UInt64 = 0x40
    package static let mayshare: UInt64 = 0x80
    static let growsdown: UInt64 = 0x100
    static let pfnmap: UInt64 = 0x400
    package static let locked: UInt64 = 0x2000
    static let io: UInt64 = 0x4000
    static let seqRead: UInt64 = 0x8000
    static let randRead: UInt64 = 0x10000
    package static let dontcopy: UInt64 = 0x20000
    static let dontexpand: UInt64 = 0x40000
    static let lockonfault: UInt64 = 0x80000
    static let account: UInt64 = 0x100000
    static let noreserve: UInt64 = 0x200000
    package static let hugetlb: UInt64 = 0x400000
    package static let wipeonfork: UInt64 = 0x2000000
    static let dontdump: UInt64 = 0x4000000
    static let softdirty: UInt64 = 0x8000000
    static let mixedmap: UInt64 = 0x10000000
    static let hugepage: UInt64 = 0x20000000
    static let nohugepage: UInt64 = 0x40000000
    static let mergeable: UInt64 = 0x80000000

    /// VM_LOCKED_MASK
    static let lockedMask: UInt64 = locked | lockonfault
    /// VM_COPY_ON_FORK (6.x): mappings whose page tables fork always copies.
    static let copyOnFork: UInt64 = pfnmap | mixedmap
    static let accessFlags: UInt64 = read | write | exec

    /// calc_vm_prot_bits()
    package static func fromProt(_ p: Prot) -> UInt64 {
        (p.contains(.read) ? read : 0) | (p.contains(.write) ? write : 0) | (p.contains(.exec) ? exec : 0)
    }

    /// is_cow_mapping(): private and may be written.
    @inline(__always) static func isCOW(_ f: UInt64) -> Bool { f & (shared | maywrite) == maywrite }
}

package let PAGE_SHIFT: UInt64 = 12
package let PAGE_SIZE: UInt64 = 4096
