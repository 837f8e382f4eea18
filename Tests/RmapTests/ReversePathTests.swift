import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// The reverse-mapping paths: one test per branch of try_to_unmap_one the
/// model has, migration, page_referenced, page_mkclean, TLB-flush accounting
/// and MMU notifiers. Expectations come from mm/rmap.c and mm/migrate.c (see
/// the doc comments of the functions); every test ends with a clean checker.
@Suite struct ReversePathTests {
    let a: UInt64 = 0x1000_0000_0000


    // MARK: try_to_unmap_one

    @Test func lockedVMAWithoutIgnoreMlockMlocksAndFails() throws {
        let (m, out) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 r file-shared:f@0
            A mlock 0x100000000000 1
            """)
        #expect(out.failures == [])
        let pfn = m.frame("A", a)
        m.frameRecord(pfn).pointee.flags &= ~(PG.mlocked | PG.unevictable)  // as if the mlock had been missed
        let before = m.pte("A", a)
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m.frameRecord(pfn).pointee.flags & PG.mlocked != 0, "mlock_vma_page()")
        #expect(m.pte("A", a) == before, "nothing unmapped")
        // TTU_IGNORE_MLOCK goes on to unmap it.
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreMlock, .ignoreAccess])) == .ok)
        #expect(m.tokens("A", a, 1) == "-")
        #expect(m.check() == [])
    }

    @Test func youngPTEWithoutIgnoreAccessFailsAndClearsYoung() throws {
        let (m, _) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 r file-shared:f@0
            A read 0x100000000000
            """)
        #expect(PTE.isYoung(m.pte("A", a)))
        let flushes = m.tlbFlushes
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [])) == .fail)
        #expect(!PTE.isYoung(m.pte("A", a)), "ptep_clear_flush_young cleared it")
        #expect(PTE.isPresent(m.pte("A", a)))
        #expect(m.tlbFlushes == flushes, "x86 does not flush for the accessed bit")
        // Now old: the second try unmaps.
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [])) == .ok)
        #expect(m.tokens("A", a, 1) == "-")
        #expect(m.check() == [])
    }

    @Test func swapDuplicateFailureRestoresThePTE() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            """)
        let before = m.pte("A", a)
        let pfn = m.frame("A", a)
        // Swap-backed but not in the swap cache: no entry to duplicate.
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m.pte("A", a) == before)
        #expect(m.k.pageMapcount(pfn) == 1)
        #expect(m.k.mmCounter(m.mm("A"), .anon) == 1)
        // In the swap cache but the slot is gone (swap_duplicate < 0).
        m.frameRecord(pfn).pointee.flags |= PG.swapcache
        m.frameRecord(pfn).pointee.private_ = PTE.swpEntry(type: 0, offset: 5)  // no such slot in use
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m.pte("A", a) == before)
        m.frameRecord(pfn).pointee.flags &= ~PG.swapcache
        m.frameRecord(pfn).pointee.private_ = 0
        #expect(m.check() == [])
    }

    @Test func lazyfreeCleanIsDiscardedRedirtiedIsKept() throws {
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 2 rw anon-private
            A write 0x100000000000 2
            A madvise 0x100000000000 2 free
            A write 0x100000001000
            """)
        #expect(out.failures == [])
        let p0 = m.frame("A", a), p1 = m.frame("A", a + 0x1000)
        #expect(m.frameRecord(p0).pointee.flags & PG.swapbacked == 0)
        // Clean lazyfree page: discarded, the anon counter drops, the frame goes.
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .ok)
        #expect(m.tokens("A", a, 1) == "-")
        #expect(m.frameIsFree(p0))
        #expect(m.k.mmCounter(m.mm("A"), .anon) == 1)
        // Written again: the dirty PTE keeps it, it is swap-backed again.
        let before = m.pte("A", a + 0x1000)
        #expect(m.perform("A", .unmap(addr: a + 0x1000, pages: 1, flags: [.ignoreAccess])) == .fail)
        #expect(m.pte("A", a + 0x1000) == before)
        #expect(m.frameRecord(p1).pointee.flags & PG.swapbacked != 0)
        #expect(m.frameRecord(p1).pointee.flags & PG.dirty != 0)
        #expect(m.check() == [])
    }

    @Test func filePageUnmapDropsTheRightCounter() throws {
        let (m, _) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 r file-private:f@0
            A mmap 0x100000010000 1 rw anon-shared
            A read 0x100000000000
            A write 0x100000010000
            """)
        let mm = m.mm("A")
        #expect(m.k.mmCounter(mm, .file) == 1)
        #expect(m.k.mmCounter(mm, .shmem) == 1)
        let cache = m.frame("A", a)
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess])) == .ok)
        #expect(m.k.mmCounter(mm, .file) == 0)
        #expect(m.k.mmCounter(mm, .shmem) == 1)
        #expect(!m.frameIsFree(cache), "the page cache still holds it")
        #expect(m.perform("A", .unmap(addr: a + 0x10000, pages: 1, flags: [.ignoreAccess])) == .ok)
        #expect(m.k.mmCounter(mm, .shmem) == 0)
        #expect(m.k.mmCounter(mm, .anon) == 0)
        #expect(m.check() == [])
    }

    /// Issue 17 item 22: `reclaim` is shrink_folio_list once reclaim decided
    /// to evict, as kswapd's pageout() does it: a dirty page-cache frame is
    /// written back and freed (`ok`). MADV_PAGEOUT reclaims from the
    /// process (reclaim_pages(), not kswapd): the dirty file folio is
    /// unmapped, then kept, dirty, with PG_reclaim (mm/vmscan.c 6.18:
    /// folio_is_file_lru() && !current_is_kswapd() -> activate_locked).
    @Test func reclaimWritesBackADirtyFilePageMadvisePageoutKeepsIt() throws {
        let (m, out) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 2 rw file-shared:f@0
            A write 0x100000000000 2
            """)
        #expect(out.failures == [])
        let f = m.files["f"]!
        let cached = m.k.file(f).pointee.nrpages
        let p0 = m.frame("A", a), p1 = m.frame("A", a + 0x1000)
        #expect(m.perform("A", .reclaim(addr: a, pages: 1)) == .ok, "pageout() wrote it back")
        #expect(m.frameIsFree(p0), "__remove_mapping() freed it")
        #expect(m.tokens("A", a, 1) == "-")
        #expect(m.k.file(f).pointee.nrpages == cached - 1)
        #expect(m.k.mmCounter(m.mm("A"), .file) == 1)
        #expect(m.perform("A", .madvise(addr: a + 0x1000, pages: 1, advice: .pageout)) == .ok)
        #expect(m.tokens("A", a + 0x1000, 1) == "-", "try_to_unmap() ran")
        #expect(!m.frameIsFree(p1), "MADV_PAGEOUT does not write a dirty file folio")
        #expect(m.frameRecord(p1).pointee.flags & (PG.dirty | PG.reclaim) == PG.dirty | PG.reclaim)
        #expect(m.k.file(f).pointee.nrpages == cached - 1)
        // The page was written back: a clean frame is read in on the next fault.
        #expect(m.perform("A", .read(addr: a, pages: 1)) == .ok)
        #expect(m.frameRecord(m.frame("A", a)).pointee.flags & PG.dirty == 0)
        #expect(m.check() == [])
    }

    @Test func munlockOnlyLooksAtLockedVMAs() throws {
        let (m, _) = try machine("""
            file f 4
            proc A
            proc B
            A mmap 0x100000000000 1 r file-shared:f@0
            A read 0x100000000000
            B mmap 0x100000000000 1 r file-shared:f@0
            B mlock 0x100000000000 1
            """)
        let pfn = m.frame("A", a)
        m.frameRecord(pfn).pointee.flags &= ~(PG.mlocked | PG.unevictable)
        let pa = m.pte("A", a)
        // TTU_MUNLOCK: A's VMA is skipped before anything (not even aged), B's
        // locked VMA mlocks the page; nothing is unmapped, so the result is false.
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.munlock])) == .fail)
        #expect(m.pte("A", a) == pa)
        #expect(PTE.isYoung(pa))
        #expect(m.frameRecord(pfn).pointee.flags & PG.mlocked != 0)
        #expect(m.tokens("A", a, 1) == "F1:2")
        // With nothing locked any more, munlock changes nothing at all.
        #expect(m.perform("B", .munlock(addr: a, pages: 1)) == .ok)
        m.frameRecord(pfn).pointee.flags &= ~(PG.mlocked | PG.unevictable)
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [.munlock])) == .fail)
        #expect(m.frameRecord(pfn).pointee.flags & PG.mlocked == 0)
        #expect(m.check() == [])
    }

    /// munlock_vma_page() + try_to_munlock() (the seeds' page_mlock): when a
    /// locked mapping goes (munlock, munmap, exit) the page stays mlocked
    /// while another VM_LOCKED VMA maps it, and only then.
    @Test func munlockKeepsThePageMlockedWhileAnotherLockedVMAMapsIt() throws {
        let (m, out) = try machine("""
            file f 4
            proc A
            proc B
            proc C
            A mmap 0x100000000000 1 r file-shared:f@0
            B mmap 0x100000000000 1 r file-shared:f@0
            C mmap 0x100000000000 1 r file-shared:f@0
            C read 0x100000000000
            A mlock 0x100000000000 1
            B mlock 0x100000000000 1
            expect C 0x100000000000 1 = F1:3
            """)
        #expect(out.failures == [])
        let pfn = m.frame("C", a)
        func mlocked() -> Bool { m.frameRecord(pfn).pointee.flags & PG.mlocked != 0 }
        #expect(mlocked())
        #expect(m.perform("A", .munlock(addr: a, pages: 1)) == .ok)
        #expect(mlocked(), "B's locked VMA still maps it: try_to_munlock mlocks it again")
        #expect(m.check() == [])
        #expect(m.perform("A", .mlock(addr: a, pages: 1)) == .ok)
        #expect(m.perform("B", .munmap(addr: a, pages: 1)) == .ok)
        #expect(mlocked(), "A's locked VMA still maps it")
        #expect(m.perform("A", .exit) == .ok)
        #expect(!mlocked(), "only C's unlocked VMA maps it now")
        #expect(m.k.pageMapcount(pfn) == 1)
        #expect(m.check() == [])
    }

    @Test func tlbFlushesPerPTEOrOnePerBatch() throws {
        let text = """
            file f 4
            proc A
            A mmap 0x100000000000 2 r file-shared:f@0
            A read 0x100000000000 2
            B = fork A
            C = fork A
            B read 0x100000000000 2
            C read 0x100000000000 2
            """
        let (m1, _) = try machine(text)
        #expect(m1.tokens("A", a, 2) == "F1:3 F2:3")
        #expect(m1.perform("A", .unmap(addr: a, pages: 2, flags: [.ignoreAccess])) == .ok)
        #expect(m1.tlbFlushes == 6, "ptep_clear_flush: one flush per PTE")
        let (m2, _) = try machine(text)
        #expect(m2.perform("A", .unmap(addr: a, pages: 2, flags: [.ignoreAccess, .batchFlush])) == .ok)
        #expect(m2.tlbFlushes == 1, "one try_to_unmap_flush() for the whole line")
        #expect(m1.check() == [] && m2.check() == [])
    }

    @Test func migrationFlagLeavesEntriesThatAFaultResolves() throws {
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            B = fork A
            A unmap 0x100000000000 ignore_access,migration => ok
            expect A 0x100000000000 1, B 0x100000000000 1 = M M
            """)
        #expect(out.failures == [])
        // Read-only after fork and not exclusive: readable entries.
        #expect(PTE.swpType(m.pte("A", a)) == PTE.swpMigrationRead)
        #expect(m.check() == [])
        #expect(m.perform("B", .write(addr: a, pages: 1)) == .ok)  // restores B's entry, then COW
        #expect(m.perform("A", .read(addr: a, pages: 1)) == .ok)
        #expect(m.tokens("A", a, 1) + " " + m.tokens("B", a, 1) == "A1:1 A1:1")
        #expect(m.frame("A", a) != m.frame("B", a))
        #expect(m.check() == [])
        // An entry zapped by munmap drops its reference: the frame is freed.
        let (m2, _) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            """)
        let pfn = m2.frame("A", a)
        #expect(m2.perform("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess, .migration])) == .ok)
        #expect(PTE.swpType(m2.pte("A", a)) == PTE.swpMigrationWrite)
        #expect(!m2.frameIsFree(pfn))
        #expect(m2.perform("A", .munmap(addr: a, pages: 1)) == .ok)
        #expect(m2.frameIsFree(pfn))
        #expect(m2.check() == [])
    }

    // MARK: migration

    @Test func migrateSharedAnonMapsTheNewFrameEverywhere() throws {
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            B = fork A
            C = fork B
            """)
        #expect(out.failures == [])
        let old = m.frame("A", a)
        let content = m.frameRecord(old).pointee.content
        let live = m.liveObjects()["frames"]
        #expect(m.perform("C", .migrate(addr: a, pages: 1)) == .ok)
        let new = m.frame("A", a)
        #expect(new != old && !new.isNone)
        for p in ["A", "B", "C"] { #expect(m.frame(p, a) == new) }
        #expect(m.k.pageMapcount(new) == 3)
        #expect(m.frameRecord(new).pointee.content == content)
        #expect(m.frameRecord(new).pointee.refcount == 3)
        #expect(m.frameIsFree(old))
        #expect(m.liveObjects()["frames"] == live)
        for p in ["A", "B", "C"] { #expect(!PTE.isWrite(m.pte(p, a)) && !PTE.isYoung(m.pte(p, a))) }
        #expect(m.check() == [])
    }

    @Test func migrateExclusiveAnonKeepsWriteAndExclusive() throws {
        let (m, _) = try machine("""
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            """)
        let old = m.frame("A", a)
        #expect(m.perform("A", .migrate(addr: a, pages: 1)) == .ok)
        let new = m.frame("A", a)
        #expect(new != old)
        #expect(PTE.isWrite(m.pte("A", a)))
        #expect(!PTE.isDirty(m.pte("A", a)), "restored clean: no A/D bits in the entry")
        #expect(m.frameRecord(new).pointee.flags & (PG.anonExclusive | PG.dirty) == PG.anonExclusive | PG.dirty)
        let flushes = m.tlbFlushes
        #expect(m.perform("A", .write(addr: a, pages: 1)) == .ok)
        #expect(m.frame("A", a) == new, "no COW: still exclusive")
        #expect(m.tlbFlushes == flushes)
        #expect(m.check() == [])
    }

    @Test func migrateFileAndShmemMovesThePageCacheSlot() throws {
        let (m, _) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 rw file-shared:f@2
            A mmap 0x100000010000 1 rw anon-shared
            A write 0x100000000000
            A write 0x100000010000
            B = fork A
            B read 0x100000000000
            """)
        let f = FileID(m.fileByName["f"]!)
        let oldF = m.frame("A", a)
        #expect(m.k.pageCacheLookup(f, 2, materialize: false) == oldF)
        #expect(m.perform("B", .migrate(addr: a, pages: 1)) == .ok)
        let newF = m.frame("A", a)
        #expect(newF != oldF && m.frame("B", a) == newF)
        #expect(m.k.pageCacheLookup(f, 2, materialize: false) == newF)
        #expect(m.frameRecord(newF).pointee.index == 2 && m.k.pageFile(newF) == f)
        #expect(m.frameRecord(newF).pointee.flags & PG.dirty != 0)
        #expect(m.frameIsFree(oldF))
        let shm = m.k.vmFile(m.vmaAt("A", a + 0x10000))
        let oldS = m.frame("A", a + 0x10000)
        #expect(m.perform("A", .migrate(addr: a + 0x10000, pages: 1)) == .ok)
        let newS = m.frame("A", a + 0x10000)
        #expect(newS != oldS && !newS.isNone)
        #expect(m.frame("B", a + 0x10000).isNone, "fork copies no shared-anon PTEs")
        #expect(m.k.pageCacheLookup(shm, 0, materialize: false) == newS)
        #expect(m.frameRecord(newS).pointee.flags & PG.swapbacked != 0)
        #expect(m.k.mmCounter(m.mm("A"), .shmem) == 1 && m.k.mmCounter(m.mm("A"), .file) == 1)
        #expect(m.check() == [])
    }

    @Test func migrateSwapCachePageThenSwapInRestoresSharing() throws {
        let (m, out) = try machine("""
            swap 4
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000
            B = fork A
            B reclaim 0x100000000000 => ok
            expect A 0x100000000000 1, B 0x100000000000 1 = S S
            A read 0x100000000000
            expect A 0x100000000000 1, B 0x100000000000 1 = A1:1 S
            A migrate 0x100000000000 => ok
            """)
        #expect(out.failures == [])
        let new = m.frame("A", a)
        #expect(m.frameRecord(new).pointee.flags & PG.swapcache != 0)
        let slot = m.k.swapSlot(PTE.swpOffset(m.frameRecord(new).pointee.private_))!
        #expect(PFN(slot.pointee.cache_frame) == new)
        #expect(m.perform("B", .read(addr: a, pages: 1)) == .ok)
        #expect(m.frame("B", a) == new)
        #expect(m.tokens("A", a, 1) == "A1:2")
        #expect(m.check() == [])
    }

    @Test func migrateWithoutAFreeFrameFailsAndChangesNothing() throws {
        var cfg = ArenaConfig()
        cfg.frames = 3  // the zero page and two anonymous frames
        let (m, out) = try machine("""
            proc A
            A mmap 0x100000000000 2 rw anon-private
            A write 0x100000000000 2
            B = fork A
            """, config: cfg)
        #expect(out.failures == [])
        let before = (m.tokens("A", a, 2), m.pte("A", a), m.pte("B", a), m.frameRecord(m.frame("A", a)).pointee)
        #expect(m.perform("A", .migrate(addr: a, pages: 1)) == .fail)
        #expect(m.tokens("A", a, 2) == before.0 && m.pte("A", a) == before.1 && m.pte("B", a) == before.2)
        let now = m.frameRecord(m.frame("A", a)).pointee
        #expect(now.refcount == before.3.refcount && now.mapcount == before.3.mapcount && now.flags == before.3.flags)
        #expect(m.check() == [])
    }

    /// tools/testing/selftests/mm/rmap.c: a tree of processes five levels
    /// deep shares anon, shmem and file pages; the page is migrated; every
    /// process must map the new frame.
    @Test(arguments: [1, 2, 3])
    func migrateAcrossARandomProcessTree(seed: UInt64) throws {
        var rng = seed &* 0x9E37_79B9_7F4A_7C15
        func next(_ n: UInt64) -> UInt64 {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
            return rng % n
        }
        var text = """
            file f 4
            proc P
            P mmap 0x100000000000 1 rw anon-private
            P mmap 0x100000010000 1 rw anon-shared
            P mmap 0x100000020000 1 r file-private:f@1
            P write 0x100000000000
            P write 0x100000010000
            P read 0x100000020000

            """
        var procs = ["P"]
        var level = ["P"]
        for depth in 1..<5 {
            var nextLevel: [String] = []
            for parent in level {
                for i in 0..<(1 + next(3)) {
                    let c = "\(parent)_\(depth)\(i)"
                    text += "\(c) = fork \(parent)\n"
                    // The shared mapping and the file are only faulted in by some.
                    if next(2) == 0 { text += "\(c) read 0x100000010000\n" }
                    if next(2) == 0 { text += "\(c) read 0x100000020000\n" }
                    nextLevel.append(c)
                    procs.append(c)
                }
            }
            level = nextLevel
        }
        let (m, out) = try machine(text)
        #expect(out.failures == [])
        for addr in [a, a + 0x10000, a + 0x20000] {
            let mappers = procs.filter { !m.frame($0, addr).isNone }
            let old = m.frame("P", addr)
            let who = mappers[Int(next(UInt64(mappers.count)))]
            #expect(m.perform(who, .migrate(addr: addr, pages: 1)) == .ok)
            let new = m.frame("P", addr)
            #expect(new != old)
            #expect(m.frameIsFree(old))
            for p in mappers { #expect(m.frame(p, addr) == new, "\(p) at \(addr)") }
            #expect(m.k.pageMapcount(new) == mappers.count)
            #expect(m.check() == [])
        }
    }

    // MARK: page_referenced

    @Test func referencedCountsAndAgesYoungMappings() throws {
        let (m, out) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 r file-shared:f@0
            A read 0x100000000000
            B = fork A
            C = fork A
            C read 0x100000000000
            A referenced 0x100000000000 => referenced=2
            A referenced 0x100000000000 => referenced=0
            B read 0x100000000000
            A referenced 0x100000000000 => referenced=1
            """)
        #expect(out.failures == [])
        for p in ["A", "B", "C"] { #expect(!PTE.isYoung(m.pte(p, a))) }
        // The memcg filter: only C's VMAs count.
        #expect(m.perform("A", .read(addr: a, pages: 1)) == .ok)
        #expect(m.perform("C", .read(addr: a, pages: 1)) == .ok)
        #expect(m.referenced(process: "A", addr: a, onlyProcess: "C")?.count == 1)
        #expect(PTE.isYoung(m.pte("A", a)), "A's VMA was skipped")
        // PG_young (idle tracking) counts once.
        m.frameRecord(m.frame("A", a)).pointee.flags |= PG.young
        #expect(m.perform("A", .referenced(addr: a, pages: 1)) == .referenced(1))
        #expect(m.frameRecord(m.frame("A", a)).pointee.flags & PG.young == 0)
        #expect(m.check() == [])
    }

    @Test func referencedStopsAtALockedVMA() throws {
        let (m, _) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 r file-shared:f@0
            A mlock 0x100000000000 1
            """)
        let pfn = m.frame("A", a)
        m.frameRecord(pfn).pointee.flags &= ~(PG.mlocked | PG.unevictable)
        let r = m.referenced(process: "A", addr: a)
        #expect(r?.count == 0 && r?.locked == true)
        #expect(PTE.isYoung(m.pte("A", a)), "the locked VMA's PTE is not aged")
        #expect(m.frameRecord(pfn).pointee.flags & PG.mlocked != 0, "the missed mlock is restored")
        #expect(m.check() == [])
    }

    // MARK: idle page tracking

    /// page_idle_bitmap_write / _read (mm/page_idle.c): marking clears the
    /// accessed bits of every mapping (no TLB flush) and sets PG_idle; an
    /// access through any mapping or a secondary MMU makes the read report
    /// "not idle" and sets PG_young, which page_referenced then counts once.
    @Test func idleTrackingClearsReferencesAndMarksYoung() throws {
        let (m, out) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 2 rw anon-private
            A write 0x100000000000 2
            B = fork A
            B read 0x100000000000
            A read 0x100000001000
            A mmap 0x100000100000 1 r anon-private
            A read 0x100000100000
            """)
        #expect(out.failures == [])
        let pfn = m.frame("A", a)
        let flushes = m.tlbFlushes
        #expect(m.markIdle(process: "A", addr: a))
        #expect(!PTE.isYoung(m.pte("A", a)) && !PTE.isYoung(m.pte("B", a)), "both mappings aged")
        #expect(m.tlbFlushes == flushes, "ptep_clear_young_notify does not flush")
        #expect(m.frameRecord(pfn).pointee.flags & PG.idle != 0)
        // Young bits were cleared by the mark itself, not counted as a reference:
        #expect(m.frameRecord(pfn).pointee.flags & PG.young != 0, "the mark took away the references: PG_young keeps them")
        #expect(m.perform("A", .referenced(addr: a, pages: 1)) == .referenced(1), "PG_young counts once")
        #expect(m.markIdle(process: "A", addr: a))
        #expect(m.frameRecord(pfn).pointee.flags & PG.young == 0, "no PTE was young this time")
        #expect(m.isIdle(process: "A", addr: a) == true)
        // B accesses the page: hardware sets its accessed bit.
        m.k.leafSlot(root: m.k.mm(m.mmIndex(of: "B")!).pointee.pgd, key: a)!.pointee |= PTE.accessed
        #expect(m.isIdle(process: "A", addr: a) == false)
        #expect(m.frameRecord(pfn).pointee.flags & (PG.idle | PG.young) == PG.young)
        #expect(!PTE.isYoung(m.pte("B", a)))
        #expect(m.perform("A", .referenced(addr: a, pages: 1)) == .referenced(1))
        // A secondary MMU's access counts too (mmu_notifier_clear_young).
        let shadow = ShadowMMU()
        m.register(shadow, for: "A")
        #expect(shadow.fault(m, process: "A", address: a))
        #expect(m.markIdle(process: "A", addr: a))
        #expect(m.isIdle(process: "A", addr: a) == true)
        shadow.touch(mm: m.mmIndex(of: "A")!, address: a)
        #expect(m.isIdle(process: "A", addr: a) == false)
        #expect(shadow.calls["clearYoung", default: 0] >= 2)
        m.unregister(shadow)
        // The zero page and an unmapped address are not tracked.
        #expect(m.isIdle(process: "A", addr: 0x100000100000) == nil, "zero page")
        #expect(!m.markIdle(process: "A", addr: 0x100000100000))
        #expect(m.isIdle(process: "A", addr: 0x100000200000) == nil, "nothing mapped")
        #expect(m.check() == [])
    }

    // MARK: page_mkclean

    @Test func mkcleanWriteProtectsSharedDirtyPTEsOnly() throws {
        let (m, out) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 rw file-shared:f@0
            A write 0x100000000000
            proc B
            B mmap 0x100000000000 1 r file-shared:f@0
            B read 0x100000000000
            proc C
            C mmap 0x100000000000 1 rw file-private:f@0
            C read 0x100000000000
            expect A 0x100000000000 1 = F1:3
            A mkclean 0x100000000000 => cleaned=1
            A mkclean 0x100000000000 => cleaned=0
            """)
        #expect(out.failures == [])
        let e = m.pte("A", a)
        #expect(PTE.isPresent(e) && !PTE.isWrite(e) && !PTE.isDirty(e))
        #expect(m.frameRecord(m.frame("A", a)).pointee.flags & PG.dirty != 0, "PG_dirty left as it was")
        // The next write faults (wp_page_shared) and dirties again.
        #expect(m.perform("A", .write(addr: a, pages: 1)) == .ok)
        #expect(PTE.isWrite(m.pte("A", a)) && PTE.isDirty(m.pte("A", a)))
        #expect(m.perform("A", .mkclean(addr: a, pages: 1)) == .cleaned(1))
        // An anon page outside the swap cache has no page_mapping(): 0.
        #expect(m.perform("C", .write(addr: a, pages: 1)) == .ok)
        #expect(m.perform("C", .mkclean(addr: a, pages: 1)) == .cleaned(0))
        #expect(m.check() == [])
    }

    // MARK: MMU notifiers

    @Test func secondaryMMUNeverOutlivesThePrimaryPTE() throws {
        let (m, _) = try machine("""
            swap 16
            file f 8
            proc A
            A mmap 0x100000000000 8 rw anon-private
            A mmap 0x100000010000 4 rw file-shared:f@0
            A write 0x100000000000 8
            A read 0x100000010000 4
            B = fork A
            """)
        let shadow = ShadowMMU()
        #expect(m.register(shadow, for: "A"))
        #expect(m.register(shadow, for: "B"))
        func faultAll() {
            for p in ["A", "B"] where m.processes[p] != nil {
                for i in 0..<8 { shadow.fault(m, process: p, address: a + UInt64(i) << 12) }
                for i in 0..<4 { shadow.fault(m, process: p, address: a + 0x10000 + UInt64(i) << 12) }
            }
        }
        func step(_ p: String, _ op: Operation, _ what: String) {
            faultAll()
            _ = m.perform(p, op)
            #expect(shadow.staleEntries(m) == [], "after \(what)")
            #expect(m.check() == [], "after \(what)")
        }
        faultAll()
        #expect(shadow.table.count == 16 + 4)
        step("A", .unmap(addr: a, pages: 1, flags: [.ignoreAccess, .migration]), "unmap migration")
        step("A", .read(addr: a, pages: 1), "fault on a migration entry")
        step("A", .unmap(addr: a + 0x10000, pages: 1, flags: [.ignoreAccess]), "unmap")
        step("B", .migrate(addr: a + 0x1000, pages: 1), "migrate")
        step("A", .reclaim(addr: a + 0x2000, pages: 1), "reclaim")
        step("A", .write(addr: a + 0x3000, pages: 1), "COW")
        step("B", .write(addr: a + 0x4000, pages: 1), "COW in the child")
        step("A", .madvise(addr: a + 0x5000, pages: 1, advice: .dontneed), "dontneed")
        step("A", .mkclean(addr: a + 0x11000, pages: 1), "mkclean")
        step("A", .munmap(addr: a + 0x6000, pages: 1), "munmap")
        step("A", .mremap(addr: a + 0x12000, oldPages: 1, newPages: 1, to: a + 0x40000), "mremap move")
        #expect(shadow.calls["changePTE", default: 0] >= 2)
        let mmA = m.mmIndex(of: "A")!
        step("A", .exit, "exit")
        #expect(shadow.calls["release"] == 1)
        #expect(!shadow.table.keys.contains { $0.mm == mmA })
        #expect(m.k.hooks.subscriptions.count == 1, "release unsubscribed A only")
        step("B", .exit, "exit of the child")
        #expect(shadow.table.isEmpty)
        #expect(shadow.unbalancedEnds == 0)
        #expect(shadow.calls["invalidateRangeStart"] == shadow.calls["invalidateRangeEnd"])
    }

    @Test func secondaryMMUAccessesCountAsReferences() throws {
        let (m, _) = try machine("""
            file f 4
            proc A
            A mmap 0x100000000000 1 r file-shared:f@0
            A read 0x100000000000
            A referenced 0x100000000000 => referenced=1
            """)
        let shadow = ShadowMMU()
        m.register(shadow, for: "A")
        shadow.fault(m, process: "A", address: a)
        // Primary PTE old, the secondary MMU's young: page_referenced counts it
        // (ptep_clear_flush_young_notify), and try_to_unmap keeps the page.
        #expect(m.perform("A", .referenced(addr: a, pages: 1)) == .referenced(1))
        #expect(m.perform("A", .referenced(addr: a, pages: 1)) == .referenced(0))
        // try_to_unmap_one() calls invalidate_range_start before its young
        // check: the secondary MMU drops its translation (and its accessed
        // bit) first, so only the primary PTE's bit can keep the page.
        shadow.touch(mm: m.mmIndex(of: "A")!, address: a)
        #expect(m.perform("A", .unmap(addr: a, pages: 1, flags: [])) == .ok)
        #expect(shadow.table.isEmpty)
        #expect(shadow.staleEntries(m) == [])
        m.unregister(shadow)
        #expect(m.k.hooks.subscriptions.isEmpty)
        #expect(m.check() == [])
    }
}
