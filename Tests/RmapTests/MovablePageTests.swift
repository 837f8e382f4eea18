import Testing
@testable import Rmap
@testable import RmapTrace
@testable import RmapTools
@testable import RmapVariants
import RmapTestSupport

/// Non-LRU movable pages: a balloon's pages (PAGE_MAPPING_MOVABLE with the
/// balloon's movable_operations) are moved by migration only through the
/// driver's callbacks; no process maps them and rmap_walk does not visit them.
@Suite struct MovablePageTests {
    @Test func balloonPagesAreTaggedMovableAndMigratedThroughTheDriver() throws {
        let (m, _) = try machine("proc P0\nP0 mmap 0x100000000000 2 rw anon-private\nP0 write 0x100000000000 2")
        #expect(m.balloonInflate(pages: 3) == 3)
        let before = m.balloonFrames()
        #expect(before.count == 3)
        for pfn in before {
            let p = m.frameRecord(pfn).pointee
            #expect(p.mapping == m.k.balloonMops | PageMapping.movable && p.mapping & PageMapping.flags == PageMapping.movable)
            #expect(p.refcount == 1 && p.mapcount == -1 && p.flags & PG.offline != 0)
            #expect(!m.k.pageIsAnon(pfn) && m.k.pageFile(pfn).isNone, "rmap_walk dispatches to neither walk")
        }
        #expect(m.check() == [])
        // One page: isolate (off the list, isolated_pages), migrate_page, done.
        let src = before[1]
        #expect(m.k.isolateMovablePage(src))
        #expect(m.k.migrateMovablePage(src))
        #expect(m.frameIsFree(src), "the old page is freed")
        let moved = m.balloonFrames()
        #expect(moved.count == 3 && !moved.contains(src) && moved.first != nil && !before.contains(moved.first!),
                "the new page went on the balloon's list (at its head)")
        // compaction: every page isolated, then migrated through the driver.
        #expect(m.compactMovable() == 3)
        let after = m.balloonFrames()
        #expect(after.count == 3)
        for pfn in after {
            #expect(m.k.pageIsBalloonMovable(pfn) && m.frameRecord(pfn).pointee.refcount == 1)
            #expect(m.frameRecord(pfn).pointee.flags & PG.isolated == 0)
        }
        #expect(m.k.header.pointee.balloon_isolated == 0, "isolated_pages back to 0")
        #expect(m.check() == [])
        #expect(m.balloonDeflate(pages: 2) == 2 && m.balloonFrames().count == 1)
        #expect(m.check() == [])
        // The checker holds the driver's bookkeeping to the pages.
        m.k.header.pointee.balloon_isolated += 1
        #expect(m.checkViolations().map(\.kind) == [.balloonCounters])
    }

    @Test func isolationRulesAndPutbackWhenNoPageIsFree() throws {
        var c = ArenaConfig.tiny
        c.frames = 8
        let m = try Machine(config: c)
        #expect(m.balloonInflate(pages: 10) == 7, "8 frames, one of them the zero page")
        let frames = m.balloonFrames()
        let pfn = frames[0]
        #expect(m.k.isolateMovablePage(pfn))
        #expect(!m.k.isolateMovablePage(pfn), "already PG_isolated")
        #expect(m.frameRecord(pfn).pointee.refcount == 2, "the isolation reference")
        #expect(!m.balloonFrames().contains(pfn) && m.k.header.pointee.balloon_isolated == 1)
        #expect(m.balloonDeflate(pages: 10) == 6, "an isolated page cannot be deflated")
        #expect(m.check() == [])
        // Memory is exhausted by another user: migrate_pages gets no new page, putback.
        let hog = m.k.allocPage()
        #expect(!hog.isNone)
        while m.k.available(T.frame) > 0 { _ = m.k.allocPage() }
        #expect(!m.k.migrateMovablePage(pfn))
        #expect(m.balloonFrames() == [pfn] && m.frameRecord(pfn).pointee.refcount == 1)
        #expect(m.frameRecord(pfn).pointee.flags & PG.isolated == 0 && m.k.header.pointee.balloon_isolated == 0)
    }
}
