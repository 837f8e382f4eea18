import Testing
@testable import Rmap
@testable import RmapTrace
import RmapTestSupport

/// The content provenance rule (`CheckerViolation.Kind.contentProvenance`,
/// Checker/Checker+Provenance.swift): every write path of the model writes
/// only through a mapping that may write the frame, with the checker after
/// every statement and each process reading back its own data; a write
/// through a mapping that may not (planted by writing without the fault that
/// should have made the mapping writable, or through a PTE set by hand) is
/// named at the write; a content changed in place, or a written frame moved
/// out of its writer's anon_vma family or file, is named at the next check.
@Suite struct ContentProvenanceTests {
    static let a: UInt64 = 0x1000_0000_0000

    /// Each legal way a write reaches a frame after fork, swap, migration,
    /// KSM, THP and the page cache.
    static let scenarios: [(name: String, trace: String)] = [
        ("COW after fork", """
            proc A
            A mmap 0x100000000000 2 rw anon-private
            A write 0x100000000000 2 value=1
            B = fork A
            B write 0x100000000000 value=2
            A write 0x100000001000 value=3
            expect contents A 0x100000000000 2, B 0x100000000000 2 = v1 v3 v2 v1
            """),
        ("a write swaps in an entry a fork shares", """
            swap 8
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000 value=1
            B = fork A
            A reclaim 0x100000000000 => ok
            A write 0x100000000000 value=2
            B read 0x100000000000
            expect contents A 0x100000000000 1, B 0x100000000000 1 = v2 v1
            """),
        ("a write swaps in a swap-cache page the sibling maps", """
            swap 8
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000 value=1
            B = fork A
            A reclaim 0x100000000000 => ok
            B read 0x100000000000
            A write 0x100000000000 value=2
            expect contents A 0x100000000000 1, B 0x100000000000 1 = v2 v1
            """),
        ("a write on a migration entry of a shared page", """
            proc A
            A mmap 0x100000000000 1 rw anon-private
            A write 0x100000000000 value=1
            B = fork A
            A unmap 0x100000000000 1 migration,ignore_access => ok
            A write 0x100000000000 value=2
            B read 0x100000000000
            expect contents A 0x100000000000 1, B 0x100000000000 1 = v2 v1
            """),
        ("a write to a merged KSM page", """
            proc K0
            proc K1
            K0 mmap 0x200000000000 1 rw anon-private
            K1 mmap 0x200000000000 1 rw anon-private
            K0 write 0x200000000000 value=7
            K1 write 0x200000000000 value=7
            K0 madvise 0x200000000000 1 mergeable
            K1 madvise 0x200000000000 1 mergeable
            ksm scan 2
            K0 write 0x200000000000 value=8
            expect contents K0 0x200000000000 1, K1 0x200000000000 1 = v8 v7
            """),
        ("COW of a PMD-mapped THP", """
            thp enabled madvise
            proc T
            T mmap 0x500000000000 1024 rw anon-private
            T madvise 0x500000000000 1024 hugepage
            T write 0x500000000000 value=1
            U = fork T
            U write 0x500000001000 value=2
            T write 0x500000000000 value=3
            expect contents T 0x500000000000 2, U 0x500000000000 2 = v3 v0 v1 v2
            """),
        ("shared, private and shmem mappings of files", """
            file f 2
            proc A
            A mmap 0x100000000000 2 rw file-shared:f@0
            A mmap 0x100000010000 2 rw file-private:f@0
            A mmap 0x100000020000 1 rw anon-shared
            A write 0x100000000000 value=5
            A read 0x100000010000
            A read 0x100000020000
            B = fork A
            B write 0x100000010000 value=6
            B write 0x100000020000 value=9
            A write 0x100000011000 value=4
            expect contents A 0x100000000000 1, A 0x100000010000 2, B 0x100000010000 2, A 0x100000020000 1 = v5 v5 v4 v6 - v9
            """),
        // rmap fuzz --seed 1: the shmem object goes with its last mapping;
        // the poisoned pages, still held, leave its page cache.
        ("written shmem pages poisoned, then the object freed", """
            proc A
            A mmap 0x100000000000 2 rw anon-shared
            B = fork A
            A write 0x100000000000 2
            A poison 0x100000000000 2
            B munmap 0x100000000000 2
            A exit
            """),
        ("a private write fault on a file page another process wrote", """
            file f 1
            proc A
            A mmap 0x100000000000 1 rw file-shared:f@0
            A write 0x100000000000 value=5
            proc B
            B mmap 0x100000000000 1 rw file-private:f@0
            B write 0x100000000000 value=6
            A read 0x100000000000
            expect contents A 0x100000000000 1, B 0x100000000000 1 = v5 v6
            """),
        ("a write after mremap and mprotect", """
            proc A
            A mmap 0x100000000000 2 rw anon-private
            A write 0x100000000000 2 value=1
            B = fork A
            A mremap 0x100000000000 2 2 0x100000100000
            A mprotect 0x100000100000 2 r
            A mprotect 0x100000100000 2 rw
            A write 0x100000100000 value=2
            B exit
            A write 0x100000101000 value=3
            expect contents A 0x100000100000 2 = v2 v3
            """),
    ]

    @Test(arguments: scenarios.indices)
    func everyWritePathWritesOnlyWhatItMay(_ i: Int) throws {
        let m = try Machine(config: .default, reuse: .split)
        var violations: [String] = []
        let out = m.replay(try TraceParser.parse(Self.scenarios[i].trace, file: "provenance.trace")) { tl in
            violations += m.check().map { "line \(tl.line): \($0)" }
        }
        #expect(out.error == nil && out.failures == [], "\(Self.scenarios[i].name): \(out.failures) \(out.error ?? "")")
        #expect(violations == [], "\(Self.scenarios[i].name)")
        // Every write of the trace was checked and recorded.
        #expect(m.provenance.writes.contains { $0.mm != 0 }, "\(Self.scenarios[i].name)")
    }

    /// A, B after fork share the second page read-only (B's write copied
    /// the first: B's own, exclusive; A's, mapped once, not exclusive until
    /// A writes it); a private and a shared mapping of file f, a zero page;
    /// E's exclusive page; a shared mapping of file g; a KSM page of K0, K1.
    static let forked = """
        swap 8
        file f 2
        file g 2
        proc A
        A mmap 0x100000000000 2 rw anon-private
        A write 0x100000000000 2 value=1
        B = fork A
        B write 0x100000000000 value=2
        A mmap 0x100000010000 1 rw file-private:f@0
        A read 0x100000010000
        A mmap 0x100000020000 1 rw anon-private
        A read 0x100000020000
        A mmap 0x100000030000 1 rw file-shared:f@0
        A write 0x100000030000 value=6
        proc E
        E mmap 0x100000000000 1 rw anon-private
        E write 0x100000000000 value=4
        proc G
        G mmap 0x100000000000 1 r file-shared:g@0
        G read 0x100000000000
        proc K0
        proc K1
        K0 mmap 0x200000000000 1 rw anon-private
        K1 mmap 0x200000000000 1 rw anon-private
        K0 write 0x200000000000 value=7
        K1 write 0x200000000000 value=7
        K0 madvise 0x200000000000 1 mergeable
        K1 madvise 0x200000000000 1 mergeable
        ksm scan 2
        """

    func forkedMachine() throws -> Machine {
        let (m, out) = try machine(Self.forked)
        #expect(out.failures == [] && out.error == nil)
        #expect(m.checkViolations() == [])
        return m
    }

    func slot(_ m: Machine, _ p: String, _ addr: UInt64) -> UnsafeMutablePointer<UInt64> {
        m.k.leafSlot(root: m.k.mm(m.mm(p)).pointee.pgd, key: addr)!
    }

    /// The write the model makes after a fault, made without one: what a
    /// fault handler that returned without making the PTE writable (or
    /// without the copy) would let through. The shared page takes A's token
    /// and B reads it; every other rule holds.
    @Test func aWriteThroughAReadOnlyPTEIsNamedAtTheWrite() throws {
        let m = try forkedMachine()
        let shared = Self.a + 0x1000
        let pfn = m.frame("A", shared)
        try #require(pfn == m.frame("B", shared))
        m.k.userWrite(m.mm("A"), shared, 0x99, m.provenance)
        let v = m.checkViolations()
        #expect(v.map(\.kind) == [.contentProvenance], "\(v)")
        #expect(v.first?.object == .frame(pfn))
        #expect(v.first?.message == "frame \(pfn): written by mm \(m.mm("A")) at \(hex(shared)) through a read-only PTE")
        #expect(m.k.page(pfn).pointee.content == 0x99)
        // Named at every check from then on: the history does not heal.
        #expect(m.checkViolations() == v)
        #expect(m.perform("B", .writeValue(addr: shared, pages: 1, value: 3)) == .ok)
        #expect(m.checkViolations() == v)
    }

    /// Without the records the same write goes unseen: the rule is what
    /// catches it (and switching it off forgets what it knew).
    @Test func withoutProvenanceTheWriteIsUnseen() throws {
        let m = try forkedMachine()
        m.tracksContentProvenance = false
        m.k.userWrite(m.mm("A"), Self.a + 0x1000, 0x99, nil)
        #expect(m.checkViolations() == [])
        m.tracksContentProvenance = true
        #expect(m.checkViolations() == [])
        #expect(m.perform("A", .writeValue(addr: Self.a, pages: 1, value: 3)) == .ok)
        #expect(m.checkViolations() == [])
    }

    enum Planted: CaseIterable {
        case sharedPageMadeWritable, zeroPageMadeWritable, pageCacheThroughPrivate, ksmPageMadeWritable
        case anotherProcessesPage, anotherFilesPage, outsideEveryVMA
    }

    /// A writable PTE that may not write its frame, set by hand, then the
    /// write: named at the write, with the reason.
    @Test(arguments: Planted.allCases)
    func aWriteThroughAMappingThatMayNotWriteIsNamed(_ planted: Planted) throws {
        let m = try forkedMachine()
        let k = m.k
        var p = "A", addr = Self.a, why = ""
        switch planted {
        case .sharedPageMadeWritable:
            slot(m, "A", Self.a + 0x1000).pointee |= PTE.rw
            addr = Self.a + 0x1000
            why = "through a private mapping, but 2 PTEs and PMDs map it"
        case .zeroPageMadeWritable:
            addr = 0x1000_0002_0000
            try #require(PTE.pfn(slot(m, "A", addr).pointee) == k.zeroPFN)
            slot(m, "A", addr).pointee |= PTE.rw
            why = "through a PTE of the zero page: the write went nowhere"
        case .pageCacheThroughPrivate:
            addr = 0x1000_0001_0000
            slot(m, "A", addr).pointee |= PTE.rw
            why = "through a private mapping, but it is a page-cache page"
        case .ksmPageMadeWritable:
            p = "K1"; addr = 0x2000_0000_0000
            slot(m, "K1", addr).pointee |= PTE.rw
            why = "through a private mapping, but it is a KSM page"
        case .anotherProcessesPage:
            // A's exclusive page, mapped once, exclusive, writable: E's PTE
            // points at it. Only the rmap says it is not E's.
            let e = slot(m, "E", Self.a)
            let theirs = m.frame("B", Self.a)
            try #require(k.page(theirs).pointee.flags & PG.anonExclusive != 0)
            slot(m, "B", Self.a).pointee = 0
            e.pointee = (e.pointee & ~PTE.pfnMask) | UInt64(theirs.rawValue) << 12
            p = "E"
            why = "through a private mapping, but the page (anon_vma \(k.pageAnonVMA(theirs)), index \(k.page(theirs).pointee.index)) is not in the writer's rmap"
        case .anotherFilesPage:
            // A's shared mapping of f maps g's page.
            addr = 0x1000_0003_0000
            let s = slot(m, "A", addr)
            s.pointee = (s.pointee & ~PTE.pfnMask) | UInt64(m.frame("G", Self.a).rawValue) << 12 | PTE.rw
            why = "through a shared mapping of file \(k.vmFile(m.vmaAt("A", addr))) at index 0, but the frame is not that page"
        case .outsideEveryVMA:
            m.k.userWrite(m.mm("A"), 0x1000_0004_0000, 0x99, m.provenance)
            let v = m.checkViolations()
            #expect(v.map(\.kind) == [.contentProvenance] && v.first?.object == .mm(m.mm("A")), "\(v)")
            #expect(v.first?.message == "mm \(m.mm("A")): a write at 0x100000040000 outside every VMA")
            return
        }
        let pfn = k.mappedPage(m.mm(p), addr)
        k.userWrite(m.mm(p), addr, 0x99, m.provenance)
        let v = m.checkViolations().filter { $0.kind == .contentProvenance }
        let who = pfn.isNone ? "mm \(m.mm(p)): a write at \(hex(addr))" : "frame \(pfn): written by mm \(m.mm(p)) at \(hex(addr))"
        #expect(v.map(\.message) == ["\(who) \(why)"], "\(planted)")
    }

    /// The check-time half: a recorded frame whose content changes in place,
    /// or that leaves its writer's anon_vma family or file, is named.
    @Test func aWrittenFrameChangedOrMovedIsNamedAtTheCheck() throws {
        let m = try forkedMachine()
        let k = m.k
        let pfn = m.frame("E", Self.a)
        k.page(pfn).pointee.content = 5
        var v = m.checkViolations()
        #expect(v.map(\.kind) == [.contentProvenance], "\(v)")
        #expect(v.first?.message == "frame \(pfn): content 0x5 changed in place since mm \(m.mm("E")) at \(hex(Self.a)) wrote 0x4, with no write through a mapping")
        k.page(pfn).pointee.content = 4
        #expect(m.checkViolations() == [])
        // E's page now claims A's anon_vma family.
        let mine = k.page(pfn).pointee.mapping
        k.page(pfn).pointee.mapping = k.page(m.frame("A", Self.a)).pointee.mapping
        v = m.checkViolations().filter { $0.kind == .contentProvenance }
        #expect(v.count == 1 && v[0].object == .frame(pfn) && v[0].message.hasSuffix(": out of the writer's rmap"), "\(v)")
        k.page(pfn).pointee.mapping = mine
        #expect(m.checkViolations() == [])
        // A's write through its shared mapping of f: the page moves to
        // another index of the file.
        let fpage = m.frame("A", 0x1000_0003_0000)
        k.page(fpage).pointee.index = 1
        v = m.checkViolations().filter { $0.kind == .contentProvenance }
        #expect(v.map(\.message) == ["frame \(fpage): written by mm \(m.mm("A")) at 0x100000030000 through a shared mapping of file \(k.pageFile(fpage)) at index 0, no longer that page"], "\(v)")
        k.page(fpage).pointee.index = 0
        #expect(m.checkViolations() == [])
        // A frame freed and reused is judged by its new life, not its old.
        #expect(m.perform("E", .munmap(addr: Self.a, pages: 1)) == .ok)
        #expect(k.isFree(T.frame, pfn.rawValue))
        #expect(m.perform("E", .mmap(addr: Self.a, pages: 1, prot: [.read, .write], kind: .anonPrivate)) == .ok)
        #expect(m.perform("E", .write(addr: Self.a, pages: 1)) == .ok)
        #expect(m.checkViolations() == [])
    }
}
