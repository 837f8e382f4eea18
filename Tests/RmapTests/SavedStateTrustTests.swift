import Foundation
import Testing
@testable import Rmap
import RmapTestSupport

/// Issue 17, items 4 and 5: one field of a saved state changed so that the
/// header and index checks still pass. Each such state must be rejected at
/// load with a message: a counter one off its references (a use after free
/// later), one at a boundary (a trap at the next increment), a flag bit the
/// model never writes (a KSM scan that never ends), a header counter that
/// makes every later check fail, a zero page that is a live anonymous frame.
@Suite struct SavedStateTrustTests {
    static let trace = """
        file f 4
        proc A
        A mmap 0x100000000000 4 rw anon-private
        A write 0x100000000000 4 value=7
        A mmap 0x100000010000 2 rw file-shared:f@0
        A read 0x100000010000 2
        B = fork A
        B write 0x100000001000 value=9
        A madvise 0x100000000000 4 mergeable
        B madvise 0x100000000000 4 mergeable
        ksm scan 3
        """

    /// Where a mutation writes: a record's field, or a header field.
    struct Target: Sendable { let table: Int32?; let record: UInt32; let offset: Int; let size: Int }

    static func field<R>(_ t: Int32, _ rec: UInt32, _ kp: PartialKeyPath<R>, _ size: Int) -> Target {
        Target(table: t, record: rec, offset: MemoryLayout<R>.offset(of: kp)!, size: size)
    }

    /// (name, where, new value from the old) for the saved state of `trace`.
    static func mutations(_ m: Machine) -> [(String, Target, @Sendable (UInt64) -> UInt64)] {
        let k = m.k
        let a = m.processes["A"]!
        let avA = AnonVMAID(k.vma(k.firstVMA(a)).pointee.anon_vma)
        let anonFrame = m.mappedFrame(a, 0x1000_0000_0000 + 0x2000)
        var stableItem: UInt32 = 0
        for i in 1..<k.desc(T.ksmItem).pointee.bump where !k.isFree(T.ksmItem, i)
            && k.ksmItem(KSMItemID(i)).pointee.address & KSMFlag.stable != 0 { stableItem = i; break }
        let hdr = { (kp: PartialKeyPath<rmap_arena_header>, size: Int) in
            Target(table: nil, record: 0, offset: MemoryLayout<rmap_arena_header>.offset(of: kp)!, size: size)
        }
        return [
            ("anon_vma refcount one lower", field(T.anonVMA, avA.rawValue, \rmap_anon_vma.refcount, 4), { $0 &- 1 }),
            ("anon_vma refcount one higher", field(T.anonVMA, avA.rawValue, \rmap_anon_vma.refcount, 4), { $0 &+ 1 }),
            ("anon_vma refcount 2^31-1", field(T.anonVMA, avA.rawValue, \rmap_anon_vma.refcount, 4), { _ in 0x7fff_ffff }),
            ("file refcount 2^31", field(T.file, 1, \rmap_file.refcount, 4), { _ in 0x8000_0000 }),
            ("file refcount 0", field(T.file, 1, \rmap_file.refcount, 4), { _ in 0 }),
            ("file refcount one higher", field(T.file, 1, \rmap_file.refcount, 4), { $0 &+ 1 }),
            ("file nrpages 0", field(T.file, 1, \rmap_file.nrpages, 8), { _ in 0 }),
            ("mm total_vm 0", field(T.mm, a.rawValue, \rmap_mm.total_vm, 8), { _ in 0 }),
            ("mm total_vm 1", field(T.mm, a.rawValue, \rmap_mm.total_vm, 8), { _ in 1 }),
            ("frame refcount 2^31-1", field(T.frame, anonFrame.rawValue, \rmap_page.refcount, 4), { _ in 0x7fff_ffff }),
            ("KSM rmap_item address flag bit 10", field(T.ksmItem, stableItem, \rmap_ksm_item.address, 8), { $0 ^ 0x400 }),
            ("KSM rmap_item both stable and unstable", field(T.ksmItem, stableItem, \rmap_ksm_item.address, 8), { $0 | 0x100 }),
            ("vma file 0 (still in i_mmap)", field(T.vma, k.vma(k.firstVMA(a)).pointee.file == 0 ? k.nextVMA(k.firstVMA(a)).rawValue : k.firstVMA(a).rawValue, \rmap_vma.file, 4), { _ in 0 }),
            ("vma without VM_MAYWRITE", field(T.vma, k.firstVMA(a).rawValue, \rmap_vma.vm_flags, 8), { $0 & ~0x20 }),
            ("private anon vma with VM_SHARED", field(T.vma, k.firstVMA(a).rawValue, \rmap_vma.vm_flags, 8), { $0 | 0x88 }),
            ("CVE reuse counter under split", hdr(\rmap_arena_header.anon_vma_reused_in_use, 8), { _ in 1 }),
            ("zero_pfn on a live anonymous frame", hdr(\rmap_arena_header.zero_pfn, 4), { _ in UInt64(anonFrame.rawValue) }),
            ("undefined frame flag bit", field(T.frame, anonFrame.rawValue, \rmap_page.flags, 8), { $0 | 1 << 40 }),
            ("PG_reserved on an anonymous frame", field(T.frame, anonFrame.rawValue, \rmap_page.flags, 8), { $0 | 1 << 17 }),
        ]
    }

    @Test func eachSingleFieldChangeIsRejected() throws {
        try rejectsEach(Self.trace, Self.mutations)
    }

    /// A 64 KiB folio shared by a fork: its head's refcount one off its
    /// mappings (a leaked reference kept it on the deferred split queue,
    /// fully unmapped, after the loaded processes exited).
    @Test func aLargeFolioRefcountOffItsMappingsIsRejected() throws {
        let trace = """
            thp enabled always
            thp 64K always
            thp 2M never
            proc A
            A mmap 0x100000000000 16 rw anon-private
            A write 0x100000000000 16
            B = fork A
            B munmap 0x100000000000 4
            """
        try rejectsEach(trace) { m in
            let head = m.k.folioOf(m.mappedFrame(m.processes["A"]!, 0x1000_0000_0000))
            return [("large folio refcount one higher", Self.field(T.frame, head.rawValue, \rmap_page.refcount, 4), { $0 &+ 1 }),
                    ("large folio refcount one lower", Self.field(T.frame, head.rawValue, \rmap_page.refcount, 4), { $0 &- 1 })]
        }
    }

    /// THP_SWAP: a THP left in the swap cache by a reclaim that failed
    /// midway (B's mapping is mlocked): its 512 slots (SWAP_HAS_CACHE, one
    /// swap count each for A's entries), one swap-cache reference per page.
    /// Each field one off its census is rejected.
    @Test func aSwapCacheFolioOffItsSlotsIsRejected() throws {
        let trace = """
            thp enabled madvise
            swap 1100
            proc A
            A mmap 0x100000800000 512 rw anon-private
            A madvise 0x100000800000 512 hugepage
            A write 0x100000800000
            B = fork A
            B mprotect 0x100000800000 512 r
            B mlock 0x100000800000 512
            A reclaim 0x100000800000
            """
        var c = ArenaConfig.tiny
        c.frames = 2048; c.ptPages = 64; c.swapSlots = 1100
        try rejectsEach(trace, config: c) { m in
            let head = m.k.folioOf(m.mappedFrame(m.processes["B"]!, 0x1000_0080_0000))
            let slot = { (o: UInt32) in Self.field(T.swap, o, \rmap_swap_slot.count, 4) }  // count and flags
            return [("swap count one higher", slot(600), { $0 &+ 1 }),
                    ("swap count one lower", slot(600), { $0 &- 1 }),
                    ("SWAP_HAS_CACHE cleared under a swap-cache page", slot(600), { $0 & ~(UInt64(Kernel.swapHasCache) << 16) }),
                    ("swap-cache frame 0", Self.field(T.swap, 600, \rmap_swap_slot.cache_frame, 4), { _ in 0 }),
                    ("free slot with cluster-order bits", slot(1050), { $0 | 9 << 24 }),
                    ("swap-cache folio one slot up", Target(table: T.frame, record: head.rawValue,  // private_ (a union: no key-path offset), just before content
                                                                    offset: MemoryLayout<rmap_page>.offset(of: \rmap_page.content)! - 8, size: 8),
                     { PTE.swpEntry(type: 0, offset: PTE.swpOffset($0) + 1) }),
                    ("swap-cache folio refcount one lower", Self.field(T.frame, head.rawValue, \rmap_page.refcount, 4), { $0 &- 1 })]
        }
    }

    func rejectsEach(_ text: String, config: ArenaConfig = .tiny,
                     _ mutations: (Machine) -> [(String, Target, @Sendable (UInt64) -> UInt64)]) throws {
        let (m, out) = try machine(text, config: config)
        #expect(out.failures == [])
        #expect(m.check() == [])
        let path = NSTemporaryDirectory() + "rmap-\(getpid())-trust-\(UUID().uuidString).arena"
        defer { unlink(path) }
        let muts = mutations(m)
        try #require(m.save(to: path) == nil)
        let original = try #require(FileManager.default.contents(atPath: path))
        // The state as saved loads and is sound.
        #expect(try Machine(opening: path).check() == [])
        for (name, t, change) in muts {
            var bytes = original
            var pos = t.offset
            if let table = t.table {
                try #require(t.record != 0, "\(name): no record to change")
                let at = MemoryLayout<rmap_arena_header>.offset(of: \rmap_arena_header.tables)! + Int(table) * MemoryLayout<rmap_table_desc>.stride
                let d = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: rmap_table_desc.self) }
                pos += Int(d.offset) + Int(t.record) * Int(d.record_size)
            }
            bytes.withUnsafeMutableBytes { b in
                let old: UInt64 = t.size == 4 ? UInt64(b.load(fromByteOffset: pos, as: UInt32.self)) : b.load(fromByteOffset: pos, as: UInt64.self)
                let new = change(old)
                if t.size == 4 { b.storeBytes(of: UInt32(truncatingIfNeeded: new), toByteOffset: pos, as: UInt32.self) }
                else { b.storeBytes(of: new, toByteOffset: pos, as: UInt64.self) }
            }
            try bytes.write(to: URL(fileURLWithPath: path))
            do {
                let loaded = try Machine(opening: path)
                Issue.record("\(name): accepted (checker: \(loaded.check().prefix(2)))")
            } catch {
                #expect(error.message.contains("rejected"), "\(name): \(error.message)")
                if ProcessInfo.processInfo.environment["RMAP_TRUST_VERBOSE"] != nil { print("\(name): \(error.message)") }
            }
        }
    }
}
