import CShims
#if canImport(Glibc)
import Glibc
#endif

extension Arena {
    /// The record size each table must have (the C layout of this build).
    static let recordSizes: [Int32: UInt32] = [
        T.frame: UInt32(MemoryLayout<rmap_page>.size), T.ptPage: 4096, T.ptDesc: UInt32(MemoryLayout<rmap_ptdesc>.size),
        T.mm: UInt32(MemoryLayout<rmap_mm>.size), T.vma: UInt32(MemoryLayout<rmap_vma>.size),
        T.anonVMA: UInt32(MemoryLayout<rmap_anon_vma>.size), T.avc: UInt32(MemoryLayout<rmap_avc>.size),
        T.file: UInt32(MemoryLayout<rmap_file>.size), T.swap: UInt32(MemoryLayout<rmap_swap_slot>.size),
        T.name: UInt32(MemoryLayout<rmap_name>.size),
        T.ksmItem: UInt32(MemoryLayout<rmap_ksm_item>.size), T.ksmNode: UInt32(MemoryLayout<rmap_ksm_node>.size),
    ]

    /// Opens a saved arena. Only the header is checked here (magic, layout
    /// version, sizes, every table inside the file and in order, counters in
    /// range); the objects are checked by `Machine(opening:)` before use.
    /// With `privately`, changes stay in memory (MAP_PRIVATE).
    public init(opening path: String, privately: Bool = true) throws(ArenaError) {
        var size: UInt64 = 0
        guard let p = rmap_arena_open(path, &size, privately ? 1 : 0) else {
            throw ArenaError(message: "\(path): cannot open the arena (errno \(errno_value()))")
        }
        if let problem = Arena.validateHeader(p, size: size) {
            _ = rmap_arena_unmap(p, size)
            throw ArenaError(message: "\(path): not a valid arena: \(problem)")
        }
        self.base = p
        self.size = size
    }

    /// The first problem with the header of the `size` bytes at `p`, or nil.
    static func validateHeader(_ p: UnsafeMutableRawPointer, size: UInt64) -> String? {
        let hsize = UInt64(MemoryLayout<rmap_arena_header>.size)
        guard size >= hsize else { return "file of \(size) bytes is shorter than the header (\(hsize))" }
        let h = p.load(as: rmap_arena_header.self)
        guard h.magic == RMAP_ARENA_MAGIC else { return "bad magic 0x\(String(h.magic, radix: 16))" }
        guard h.layout_version == RMAP_LAYOUT_VERSION else {
            return "layout version \(h.layout_version), this build reads version \(RMAP_LAYOUT_VERSION)"
        }
        guard UInt64(h.header_size) == hsize else { return "header size \(h.header_size), expected \(hsize)" }
        guard h.total_size == size else { return "header says \(h.total_size) bytes, the file has \(size)" }
        guard h.reuse_policy <= 2 else { return "unknown reuse policy \(h.reuse_policy)" }
        var end = hsize
        for t in Int32(0)..<Int32(RMAP_T_COUNT) {
            let d = Kernel.desc(p.assumingMemoryBound(to: rmap_arena_header.self), t).pointee
            let name = "table \(t)"
            guard d.record_size == recordSizes[t] else { return "\(name): record size \(d.record_size), expected \(recordSizes[t]!)" }
            guard d.offset % 4096 == 0, d.offset >= end else { return "\(name): offset \(d.offset) misaligned or overlapping" }
            guard d.capacity >= 2, d.capacity <= 1 << 30 else { return "\(name): capacity \(d.capacity) out of range" }
            let bytes = UInt64(d.capacity) * UInt64(d.record_size)
            guard d.offset <= size, bytes <= size - d.offset else { return "\(name): runs past the end of the file" }
            end = d.offset + bytes
            guard d.bump >= 1, d.bump <= d.capacity else { return "\(name): bump \(d.bump) outside [1, \(d.capacity)]" }
            guard d.free_head < d.bump else { return "\(name): free list head \(d.free_head) beyond the used records" }
            guard d.live <= d.bump - 1, d.high_water >= d.live, d.high_water <= d.capacity - 1 else {
                return "\(name): live \(d.live) / high water \(d.high_water) inconsistent"
            }
        }
        let frames = Kernel.desc(p.assumingMemoryBound(to: rmap_arena_header.self), T.frame).pointee
        guard h.zero_pfn >= 1, h.zero_pfn < frames.bump else { return "zero page \(h.zero_pfn) is not a used frame" }
        let swap = Kernel.desc(p.assumingMemoryBound(to: rmap_arena_header.self), T.swap).pointee
        guard h.swap_slots < UInt64(swap.capacity) else { return "swap size \(h.swap_slots) beyond the swap map" }
        return nil
    }

    /// Writes the arena to `path` (a sparse copy: each table up to its
    /// high-water mark, the rest left as holes). Returns an error message or nil.
    func save(to path: String) -> String? {
        guard let f = fopen(path, "wb") else { return "\(path): cannot create (errno \(errno_value()))" }
        defer { fclose(f) }
        let k = kernel
        var pos: UInt64 = 0
        func write(_ from: UInt64, _ len: UInt64) -> Bool {
            guard len > 0 else { return true }
            if fseeko(f, off_t(from), SEEK_SET) != 0 { return false }
            return fwrite(base + Int(from), 1, Int(len), f) == Int(len)
        }
        guard write(0, UInt64(MemoryLayout<rmap_arena_header>.size)) else { return "\(path): write failed" }
        for t in Int32(0)..<Int32(RMAP_T_COUNT) {
            let d = k.desc(t).pointee
            // The descriptors of page-table pages are indexed like the pages.
            // The swap map is never allocated from: slots 1...swap_slots are in use.
            let used: UInt32
            switch t {
            case T.ptDesc: used = k.desc(T.ptPage).pointee.bump
            case T.swap: used = UInt32(min(UInt64(d.capacity), k.header.pointee.swap_slots + 1))
            default: used = d.bump
            }
            guard write(d.offset, UInt64(used) * UInt64(d.record_size)) else { return "\(path): write failed" }
            pos = max(pos, d.offset + UInt64(d.capacity) * UInt64(d.record_size))
        }
        if fflush(f) != 0 || ftruncate(fileno(f), off_t(max(UInt64(size), pos))) != 0 { return "\(path): write failed" }
        return nil
    }
}
