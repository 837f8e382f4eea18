import Foundation
import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// PMD migration entries, with expectations derived by hand from 6.18's
/// set_pmd_migration_entry, remove_migration_pmd, copy_huge_pmd,
/// change_huge_pmd, zap_huge_pmd and __split_huge_pmd_locked
/// (mm/huge_memory.c) and try_to_migrate_one (mm/rmap.c).
@Suite struct LargePMDMigrationTests {
    static let b: UInt64 = 0x1000_0040_0000

    func pmd(_ m: Machine, _ p: String, _ addr: UInt64) throws -> UnsafeMutablePointer<UInt64> {
        try #require(m.k.pmdSlot(root: m.k.mm(m.mm(p)).pointee.pgd, key: addr))
    }

    static let thp = """
        thp enabled always
        proc P0
        P0 mmap 0x100000400000 1024 rw anon-private
        P0 write 0x100000400000
        """

    /// A writable exclusive PMD becomes a write entry naming the head; the
    /// folio is unmapped (mapcounts -1, not exclusive) but keeps the entry's
    /// reference and the MM counter; a fault restores a writable, old,
    /// exclusive PMD.
    @Test func writableTHPRoundTrip() throws {
        let (m, _) = try machine(Self.thp)
        let head = m.k.folioOf(m.frame("P0", Self.b))
        #expect(m.perform("P0", .unmap(addr: Self.b, pages: 1, flags: [.migration])) == .ok)
        let e = try pmd(m, "P0", Self.b).pointee
        #expect(PTE.isPMDMigrationEntry(e) && PTE.swpType(e) == PTE.swpMigrationWrite && PTE.swpOffsetPFN(e) == head)
        #expect(m.k.folioLargeMapcount(head) == 0 && m.k.folioEntireMapcount(head) == 0)
        #expect(m.k.page(head).pointee.refcount == 1 && m.k.page(head).pointee.flags & PG.anonExclusive == 0)
        #expect(m.k.mmCounter(m.mm("P0"), .anon) == 512)
        #expect(m.checkViolations() == [])
        #expect(m.perform("P0", .read(addr: Self.b + 0x5000, pages: 1)) == .ok)
        let r = try pmd(m, "P0", Self.b).pointee
        #expect(PTE.isPMDLeaf(r) && PTE.pfn(r) == head && PTE.isWrite(r))
        #expect(m.k.page(head).pointee.flags & PG.anonExclusive != 0 && m.k.folioEntireMapcount(head) == 1)
        #expect(m.checkViolations() == [])
    }

    /// mprotect read-only turns a write entry into a read-exclusive one
    /// (change_huge_pmd: "just be safe and disable write"); the restored
    /// PMD is read-only and exclusive.
    @Test func mprotectMakesAWriteEntryReadExclusive() throws {
        let (m, _) = try machine(Self.thp)
        #expect(m.perform("P0", .unmap(addr: Self.b, pages: 1, flags: [.migration])) == .ok)
        #expect(m.perform("P0", .mprotect(addr: Self.b, pages: 512, prot: .read)) == .ok)
        let e = try pmd(m, "P0", Self.b).pointee
        #expect(PTE.swpType(e) == PTE.swpMigrationReadExclusive)
        #expect(m.perform("P0", .read(addr: Self.b, pages: 1)) == .ok)
        let r = try pmd(m, "P0", Self.b).pointee
        #expect(PTE.isPMDLeaf(r) && !PTE.isWrite(r))
        #expect(m.k.page(PTE.pfn(r)).pointee.flags & PG.anonExclusive != 0)
        #expect(m.checkViolations() == [])
    }

    /// fork copies an entry: read on both sides, one reference each, the
    /// child's MM counter and a deposited table for it.
    @Test func forkCopiesTheEntry() throws {
        let (m, _) = try machine(Self.thp + "\nP0 unmap 0x100000400000 1 migration\nP1 = fork P0")
        let e0 = try pmd(m, "P0", Self.b).pointee, e1 = try pmd(m, "P1", Self.b).pointee
        #expect(PTE.swpType(e0) == PTE.swpMigrationRead && e0 == e1)
        let head = PTE.swpOffsetPFN(e0)
        #expect(m.k.page(head).pointee.refcount == 2 && m.k.mmCounter(m.mm("P1"), .anon) == 512)
        #expect(m.checkViolations() == [])
        #expect(m.perform("P0", .exit) == .ok && m.perform("P1", .exit) == .ok)
        #expect(m.frameIsFree(head))
        #expect(m.checkViolations() == [])
    }

    /// A VMA boundary inside the entry splits it into 512 PTE migration
    /// entries of the same type, each with its reference; munmap then zaps
    /// the ones it covers.
    @Test func aPartialMunmapSplitsTheEntry() throws {
        let (m, _) = try machine(Self.thp + "\nP0 unmap 0x100000400000 1 migration")
        let head = PTE.swpOffsetPFN(try pmd(m, "P0", Self.b).pointee)
        #expect(m.perform("P0", .munmap(addr: Self.b + 0x10000, pages: 16)) == .ok)
        #expect(m.tokens("P0", Self.b + 0xf000, 2) == "M -")
        let e = m.pte("P0", Self.b + 0x20000)
        #expect(PTE.isMigrationEntry(e) && PTE.swpType(e) == PTE.swpMigrationWrite && PTE.swpOffsetPFN(e) == head.advanced(by: 32))
        #expect(m.k.page(head).pointee.refcount == 496 && m.k.mmCounter(m.mm("P0"), .anon) == 496)
        #expect(m.checkViolations() == [])
    }

    /// `migrate` of a PMD-mapped THP goes through PMD migration entries: a
    /// new folio, still mapped by a PMD, old (the model's entries carry no
    /// young bit), writable and exclusive again (a write entry); the old
    /// folio is freed.
    @Test func migrateKeepsThePMDOnANewFolio() throws {
        let (m, _) = try machine(Self.thp)
        let old = m.k.folioOf(m.frame("P0", Self.b))
        #expect(PTE.isYoung(try pmd(m, "P0", Self.b).pointee))
        #expect(m.perform("P0", .migrate(addr: Self.b, pages: 1)) == .ok)
        let r = try pmd(m, "P0", Self.b).pointee
        let new = PTE.pfn(r)
        #expect(PTE.isPMDLeaf(r) && new != old && !PTE.isYoung(r) && PTE.isWrite(r))
        #expect(m.k.folioIsLarge(new) && m.k.folioEntireMapcount(new) == 1 && m.k.page(new).pointee.flags & PG.anonExclusive != 0)
        #expect(m.frameIsFree(old))
        #expect(m.checkViolations() == [])
    }

    /// A saved state holding a PMD migration entry is validated and loads.
    @Test func aSavedStateWithAnEntryLoads() throws {
        let (m, _) = try machine(Self.thp + "\nP0 unmap 0x100000400000 1 migration")
        let path = freshTempDir("pmd-migration") + "/a.arena"
        #expect(m.save(to: path) == nil)
        let loaded = try Machine(opening: path)
        #expect(loaded.tokens("P0", Self.b, 2) == "M* M*")
        #expect(loaded.check() == [])
    }

    /// The checker: a PMD migration entry naming a tail page, and a folio
    /// whose reference for the entry is missing.
    @Test func brokenEntriesAreCaught() throws {
        let (m, _) = try machine(Self.thp + "\nP0 unmap 0x100000400000 1 migration")
        let slot = try pmd(m, "P0", Self.b)
        let e = slot.pointee
        let head = PTE.swpOffsetPFN(e)
        slot.pointee = PTE.swpEntry(type: PTE.swpType(e), pfn: head.advanced(by: 1))
        #expect(m.checkViolations().contains { $0.kind == .pmdLeaf && $0.message.contains("PMD migration entry") })
        slot.pointee = e
        m.k.page(head).pointee.refcount = 0
        #expect(m.checkViolations().contains { $0.kind == .refcount && $0.message.contains("1 PMD migration entries") })
        m.k.page(head).pointee.refcount = 1
        #expect(m.checkViolations() == [])
    }
}
