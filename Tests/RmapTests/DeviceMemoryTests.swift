import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// Device memory (ZONE_DEVICE): migrate_vma to device-private memory (pages
/// mapped by device-private swap entries) or device-coherent memory
/// (CPU-addressable, present PTEs), try_to_unmap_one's two TTU_MIGRATION
/// branches for zone-device pages (v5.0: skip a non-HMM page; a migration
/// entry for a device-private one), page_vma_mapped_walk's device-private
/// match, and migrate_to_ram on a CPU fault.
@Suite struct DeviceMemoryTests {
    let a: UInt64 = 0x1000_0000_0000

    func entryFrame(_ m: Machine, _ p: String, _ addr: UInt64) -> PFN {
        PTE.swpOffsetPFN(m.pte(p, addr))
    }

    func setup() throws -> Machine {
        let (m, out) = try machine("""
            proc P0
            P0 mmap 0x100000000000 2 rw anon-private
            P0 write 0x100000000000 2 value=4
            P1 = fork P0
            """)
        #expect(out.failures == [])
        return m
    }

    @Test func migrateToDevicePrivateMapsByDeviceEntries() throws {
        let m = try setup()
        let src = m.mappedFrame(m.mm("P0"), a)
        let anon = m.k.mmCounter(m.mm("P1"), .anon)
        #expect(m.perform("P0", .device(addr: a, pages: 1, coherent: false)) == .ok)
        #expect(m.tokens("P0", a, 1) == "D" && m.tokens("P1", a, 1) == "D")
        let d = entryFrame(m, "P0", a)
        #expect(d != src && entryFrame(m, "P1", a) == d)
        #expect(m.frameRecord(d).pointee.flags & (PG.zoneDevice | PG.devicePrivate) == PG.zoneDevice | PG.devicePrivate)
        #expect(m.frameRecord(d).pointee.content == 4 && m.k.pageMapcount(d) == 2)
        // A read-only (COW-shared) PTE gives a read device-private entry.
        #expect(PTE.swpType(m.pte("P0", a)) == PTE.swpDevicePrivateRead)
        #expect(m.k.mmCounter(m.mm("P1"), .anon) == anon, "the entry counts as an anon page")
        #expect(m.frameIsFree(src), "the system page is freed")
        #expect(m.check() == [])
        // Only plain anonymous system pages are collected.
        #expect(m.perform("P0", .device(addr: a, pages: 1, coherent: false)) == .errno(.EFAULT))
    }

    @Test func aCPUFaultMigratesTheDevicePageBackToRAM() throws {
        let m = try setup()
        #expect(m.perform("P1", .write(addr: a + 0x1000, pages: 1)) == .ok)  // P1's own page
        #expect(m.perform("P1", .device(addr: a + 0x1000, pages: 1, coherent: false)) == .ok)
        #expect(PTE.swpType(m.pte("P1", a + 0x1000)) == PTE.swpDevicePrivateWrite, "an exclusive writable page")
        let d = entryFrame(m, "P1", a + 0x1000)
        #expect(m.perform("P1", .read(addr: a + 0x1000, pages: 1)) == .ok)
        let r = m.mappedFrame(m.mm("P1"), a + 0x1000)
        #expect(!r.isNone && r != d && m.frameRecord(r).pointee.flags & PG.zoneDevice == 0)
        #expect(m.frameIsFree(d))
        #expect(m.tokens("P1", a + 0x1000, 1) == "A1:1")
        // migrate_vma_unmap() went through try_to_unmap's zone-device branch
        // (a migration entry without write): the page comes back read-only;
        // a write then reuses it (the only reference) instead of copying.
        #expect(m.pte("P1", a + 0x1000) & PTE.rw == 0)
        #expect(m.perform("P1", .write(addr: a + 0x1000, pages: 1)) == .ok)
        #expect(m.mappedFrame(m.mm("P1"), a + 0x1000) == r && m.pte("P1", a + 0x1000) & PTE.rw != 0)
        #expect(m.check() == [])
    }

    @Test func ttuMigrationWritesAReadMigrationEntryForADevicePrivatePage() throws {
        let m = try setup()
        #expect(m.perform("P1", .write(addr: a + 0x1000, pages: 1)) == .ok)
        #expect(m.perform("P1", .device(addr: a + 0x1000, pages: 1, coherent: false)) == .ok)
        let d = entryFrame(m, "P1", a + 0x1000)
        // Without TTU_MIGRATION: the ordinary path, which cannot swap an
        // anon page outside the swap cache: the entry is put back.
        let before = m.pte("P1", a + 0x1000)
        #expect(m.perform("P1", .unmap(addr: a + 0x1000, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m.pte("P1", a + 0x1000) == before)
        // With it: make_migration_entry(page, 0), the rmap removed, even with a young mapping.
        #expect(m.perform("P1", .unmap(addr: a + 0x1000, pages: 1, flags: [.migration])) == .ok)
        let e = m.pte("P1", a + 0x1000)
        #expect(PTE.isMigrationEntry(e) && PTE.swpType(e) == PTE.swpMigrationRead && PTE.swpOffsetPFN(e) == d)
        #expect(m.k.pageMapcount(d) == 0 && m.frameRecord(d).pointee.refcount == 1)
        #expect(m.check() == [])
        // A fault ends the migration: the device entry comes back, then migrate_to_ram.
        #expect(m.perform("P1", .read(addr: a + 0x1000, pages: 1)) == .ok)
        #expect(m.tokens("P1", a + 0x1000, 1) == "A1:1")
        #expect(m.pte("P1", a + 0x1000) & PTE.rw == 0, "a read entry: the page comes back read-only")
        #expect(m.check() == [])
    }

    @Test func ttuMigrationSkipsANonHMMZoneDevicePage() throws {
        let m = try setup()
        #expect(m.perform("P0", .device(addr: a, pages: 1, coherent: true)) == .ok)
        let c = m.mappedFrame(m.mm("P0"), a)
        #expect(m.frameRecord(c).pointee.flags & (PG.zoneDevice | PG.devicePrivate) == PG.zoneDevice)
        #expect(m.tokens("P0", a, 1) == "A1:2" && m.tokens("P1", a, 1) == "A1:2")
        let p0 = m.pte("P0", a), p1 = m.pte("P1", a)
        #expect(m.perform("P0", .unmap(addr: a, pages: 1, flags: [.migration, .ignoreAccess])) == .fail)
        #expect(m.pte("P0", a) == p0 && m.pte("P1", a) == p1, "rmap_one returned at once for every VMA")
        // Without TTU_MIGRATION it is unmapped like any anonymous page (here: no swap, so it stays).
        #expect(m.perform("P0", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m.check() == [])
    }

    @Test func forkZapAndMigrateOfDeviceEntries() throws {
        let m = try setup()
        #expect(m.perform("P0", .write(addr: a, pages: 1)) == .ok)  // P0's own writable page
        #expect(m.perform("P0", .device(addr: a, pages: 2, coherent: false)) == .ok)
        #expect(PTE.swpType(m.pte("P0", a)) == PTE.swpDevicePrivateWrite)
        let d = entryFrame(m, "P0", a)
        #expect(m.fork("P0", child: "P2") == .ok)
        // copy_nonpresent_pte: shared, and read-only on both sides of the COW mapping.
        #expect(entryFrame(m, "P2", a) == d && m.k.pageMapcount(d) == 2)
        #expect(PTE.swpType(m.pte("P0", a)) == PTE.swpDevicePrivateRead)
        #expect(PTE.swpType(m.pte("P2", a)) == PTE.swpDevicePrivateRead)
        #expect(m.check() == [])
        // `migrate` of a device page is migrate_vma back to RAM, every mapping.
        #expect(m.perform("P2", .migrate(addr: a, pages: 1)) == .ok)
        #expect(m.tokens("P0", a, 1) == "A1:2" && m.tokens("P2", a, 1) == "A1:2")
        #expect(m.tokens("P2", a + 0x1000, 1) == "D")
        #expect(m.perform("P2", .device(addr: a + 0x1000, pages: 1, coherent: false)) == .errno(.EFAULT), "no present frame")
        // zap_nonpresent_ptes: counter, rmap and reference of the device page go.
        let d2 = entryFrame(m, "P2", a + 0x1000)
        #expect(m.k.pageMapcount(d2) == 3)
        #expect(m.perform("P2", .munmap(addr: a, pages: 2)) == .ok)
        #expect(m.k.pageMapcount(d2) == 2)
        #expect(m.exit("P0") == .ok && m.exit("P1") == .ok)
        #expect(m.check() == [])
    }

    // MARK: make_device_exclusive

    @Test func makeDeviceExclusiveReplacesEveryMappingAndACPUAccessRestoresIt() throws {
        let m = try setup()
        let shared = m.mappedFrame(m.mm("P0"), a)
        let anon = m.k.mmCounter(m.mm("P0"), .anon)
        // GUP with FOLL_WRITE first breaks COW: P0 gets its own copy.
        #expect(m.perform("P0", .exclusive(addr: a, pages: 1)) == .ok)
        #expect(m.tokens("P0", a, 1) == "X" && m.tokens("P1", a, 1) == "A1:1")
        let e = m.pte("P0", a)
        let x = PTE.swpOffsetPFN(e)
        #expect(x != shared && PTE.isDeviceExclusiveEntry(e) && e & PTE.swpDeviceExclusiveWrite != 0)
        // Out of the rmap, still counted, the entry holds the PTE's reference.
        #expect(m.k.pageMapcount(x) == 0 && m.frameRecord(x).pointee.refcount == 1)
        #expect(m.k.mmCounter(m.mm("P0"), .anon) == anon)
        #expect(m.frameRecord(x).pointee.flags & PG.dirty != 0, "the PTE's dirty bit moved to the folio")
        #expect(m.check() == [])
        // restore_exclusive_pte(): old, dirty, writable again, the rmap back; no copy.
        #expect(m.perform("P0", .read(addr: a, pages: 1)) == .ok)
        let p = m.pte("P0", a)
        #expect(PTE.pfn(p) == x && p & PTE.rw != 0 && p & PTE.dirty != 0)
        #expect(m.k.pageMapcount(x) == 1 && m.frameRecord(x).pointee.content == 4)
        #expect(m.check() == [])
    }

    @Test func forkRestoresDeviceExclusiveEntriesAndZapDropsThem() throws {
        let m = try setup()
        #expect(m.perform("P0", .mmap(addr: a + 0x2000, pages: 2, prot: [.read, .write], kind: .anonPrivate)) == .ok)
        #expect(m.perform("P0", .exclusive(addr: a + 0x2000, pages: 2)) == .ok, "unfaulted pages are faulted in first")
        #expect(m.tokens("P0", a + 0x2000, 2) == "X X")
        let x = PTE.swpOffsetPFN(m.pte("P0", a + 0x2000))
        // copy_nonpresent_pte: the parent's entry is restored, then copied as a present PTE.
        #expect(m.fork("P0", child: "P2") == .ok)
        #expect(m.tokens("P0", a + 0x2000, 1) == "A1:2" && m.tokens("P2", a + 0x2000, 1) == "A1:2")
        #expect(m.mappedFrame(m.mm("P2"), a + 0x2000) == x)
        #expect(m.check() == [])
        #expect(m.perform("P0", .exclusive(addr: a + 0x3000, pages: 1)) == .ok)
        let y = PTE.swpOffsetPFN(m.pte("P0", a + 0x3000))
        #expect(m.frameRecord(y).pointee.refcount == 1)
        #expect(m.perform("P0", .munmap(addr: a, pages: 4)) == .ok)
        #expect(m.frameIsFree(y), "the entry's reference went with it: freed")
        #expect(m.check() == [])
        // No writable mapping for GUP FOLL_WRITE: the access faults.
        #expect(m.perform("P1", .mprotect(addr: a, pages: 2, prot: .read)) == .ok)
        #expect(m.perform("P1", .exclusive(addr: a, pages: 1)) == .sigsegv)
    }
}
