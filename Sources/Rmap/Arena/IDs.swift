// Typed record indices: what the public API hands out and takes back.
//
// Every kernel object lives in a table of the arena and is named by its
// 32-bit index there (0 = NULL). As plain UInt32s a frame number and a VMA
// index are interchangeable, so `rmapOne(pfn: vma, vma: pfn)` compiled. An
// `ArenaID<Table>` is one UInt32 with the table in its type (in the style
// of swift-collections' `_HeapNode`): frozen, inlinable, no storage beyond
// the index, so it costs nothing, and a swapped argument no longer compiles.

/// A table of the arena: the phantom type of an `ArenaID`.
public protocol ArenaTable {
    /// The table's name in messages (`frame`, `vma`, ...).
    static var name: String { get }
}

/// The index of a record of table `Table` (0 is NULL: no record).
@frozen
public struct ArenaID<Table: ArenaTable>: RawRepresentable, Hashable, Comparable, Sendable,
    CustomStringConvertible
{
    /// The index in the table, as the arena's structs store it.
    public var rawValue: UInt32

    @inlinable @inline(__always)
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    @inlinable @inline(__always)
    public init(_ rawValue: UInt32) { self.rawValue = rawValue }

    /// NULL: no record (the kernel's NULL pointer).
    @inlinable public static var none: Self { Self(0) }

    /// Whether this is NULL.
    @inlinable public var isNone: Bool { rawValue == 0 }

    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// The index in decimal, as every report prints it.
    public var description: String { String(rawValue) }
}

/// The page-frame table (struct page).
public enum FrameTable: ArenaTable { public static var name: String { "frame" } }
/// The mm table (struct mm_struct).
public enum MMTable: ArenaTable { public static var name: String { "mm" } }
/// The VMA table (struct vm_area_struct).
public enum VMATable: ArenaTable { public static var name: String { "vma" } }
/// The anon_vma table.
public enum AnonVMATable: ArenaTable { public static var name: String { "anon_vma" } }
/// The anon_vma_chain table.
public enum AVCTable: ArenaTable { public static var name: String { "avc" } }
/// The file table (struct address_space).
public enum FileTable: ArenaTable { public static var name: String { "file" } }
/// KSM's rmap_items.
public enum KSMItemTable: ArenaTable { public static var name: String { "ksm_rmap_item" } }
/// KSM's stable nodes.
public enum KSMNodeTable: ArenaTable { public static var name: String { "ksm_stable_node" } }

/// A page frame number: the index of a struct page in the frame table.
public typealias PFN = ArenaID<FrameTable>
/// An mm_struct: one process's address space.
public typealias MMID = ArenaID<MMTable>
/// A vm_area_struct.
public typealias VMAID = ArenaID<VMATable>
/// An anon_vma.
public typealias AnonVMAID = ArenaID<AnonVMATable>
/// An anon_vma_chain.
public typealias AVCID = ArenaID<AVCTable>
/// A file's address_space.
public typealias FileID = ArenaID<FileTable>
/// A KSM rmap_item.
public typealias KSMItemID = ArenaID<KSMItemTable>
/// A KSM stable node.
public typealias KSMNodeID = ArenaID<KSMNodeTable>

// MARK: frame arithmetic

/// Contiguous frames (a large folio's pages, pfn + i): the only arithmetic a
/// PFN has, so an index of another table cannot be added to one by mistake.
extension ArenaID where Table == FrameTable {
    /// The frame `n` frames after this one (pfn + n; `n` may be negative).
    @inlinable @inline(__always)
    public func advanced(by n: Int) -> PFN { PFN(UInt32(truncatingIfNeeded: Int(rawValue) + n)) }

    /// The frame `n` frames after this one (pfn + n): a page of a folio by
    /// its index, or the end of a folio of `n` pages (folio_nr_pages()).
    @inlinable @inline(__always)
    public func advanced(by n: UInt32) -> PFN { PFN(rawValue &+ n) }

    /// The number of frames from this one to `other` (other - self).
    @inlinable @inline(__always)
    public func distance(to other: PFN) -> Int { Int(other.rawValue) - Int(rawValue) }
}
