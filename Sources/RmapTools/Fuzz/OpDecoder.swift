import Rmap
import RmapTrace
/// Turns arbitrary bytes into a valid trace (for the libFuzzer target over
/// operation sequences): four bytes per operation, every choice taken modulo
/// its range, processes named and tracked so the trace always parses.
public enum OpDecoder {
    public static let base: UInt64 = 0x1000_001e_0000
    public static let window: UInt64 = 64

    /// The arena the libFuzzer targets run a decoded trace on: small enough
    /// to run out (the first byte sizes the frames); for `large`, room for
    /// one or two THPs.
    public static func arenaConfig(for bytes: [UInt8], large: Bool) -> ArenaConfig {
        var cfg = ArenaConfig()
        cfg.frames = large ? 256 + 8 * UInt32(bytes.first ?? 0) : 48 + UInt32(bytes.first ?? 0)
        if large && largeHugetlb(bytes) {
            // Room for the pool (one or two huge pages) beside the THPs; the
            // mremap history without its known leak (issue 20), which the
            // checker would report (`rmap fuzz --large --hugetlb` finds it).
            cfg.frames += 1024
            cfg.hugetlbResvMode = .fixed
        }
        cfg.ptPages = large ? 48 : 24
        cfg.vmas = 64
        cfg.anonVMAs = 48
        cfg.avcs = 96
        cfg.mms = 10
        cfg.files = large ? 4 : 8
        cfg.swapSlots = 32
        return cfg
    }

    /// One libFuzzer input (FuzzOps, FuzzLargeOps): the bytes decoded to a
    /// trace (`trace` or `largeTrace`), run on `arenaConfig` with the
    /// invariant checker after every statement; a violation, or a decoded
    /// trace that does not parse, is a crash (what libFuzzer reports).
    public static func runChecked(_ bytes: [UInt8], large: Bool) {
        let text = large ? largeTrace(from: bytes) : trace(from: bytes)
        guard let trace = try? TraceParser.parse(text, file: large ? "large-ops.trace" : "ops.trace") else {
            fatalError("the decoder wrote an invalid trace:\n\(text)")
        }
        guard let m = try? Machine(config: arenaConfig(for: bytes, large: large)) else { return }
        var out = ReplayOutcome()
        for tl in trace.lines {
            m.step(tl, file: trace.file, into: &out)
            let v = m.check()
            if !v.isEmpty { fatalError("line \(tl.line): \(v[0])\n\(text)") }
        }
    }

    public static func trace(from bytes: [UInt8]) -> String {
        var lines = ["file f0 \(1 + Int(bytes.first ?? 0) % 64)", "file f1 24", "swap \(Int(bytes.count > 1 ? bytes[1] : 0) % 16)", "proc P0"]
        var live = ["P0"]
        var next = 1
        var i = 2
        while i + 4 <= bytes.count {
            let k = bytes[i], a = UInt64(bytes[i + 1]), b = UInt64(bytes[i + 2]), c = bytes[i + 3]
            i += 4
            if live.isEmpty { lines.append("proc P\(next)"); live.append("P\(next)"); next += 1 }
            let p = live[Int(c) % live.count]
            let addr = hex(base + (a % window) << 12)
            let pages = 1 + b % 16
            switch k % 20 {
            case 0, 1:
                let kinds = ["anon-private", "anon-shared", "file-private:f0@\(b % 8)", "file-shared:f0@\(b % 8)",
                             "file-private:f1@\(c % 30)", "anon-private"]
                let prots = ["r", "rw", "none", "rx", "w", "rw"]
                lines.append("\(p) mmap \(addr) \(pages) \(prots[Int(c >> 4) % prots.count]) \(kinds[Int(k / 20) % kinds.count])")
            case 2, 3, 4: lines.append("\(p) write \(addr) \(pages)")
            case 5, 6: lines.append("\(p) read \(addr) \(pages)")
            case 7:
                if live.count < 10 { lines.append("P\(next) = fork \(p)"); live.append("P\(next)"); next += 1 }
            case 8:
                lines.append("\(p) exit")
                live.removeAll { $0 == p }
            case 9: lines.append("\(p) munmap \(addr) \(pages)")
            case 10: lines.append("\(p) mprotect \(addr) \(pages) \(["none", "r", "rw", "rx"][Int(c) % 4])")
            case 11: lines.append("\(p) mremap \(addr) \(pages) \(1 + UInt64(c) % 16)")
            case 12: lines.append("\(p) mremap \(addr) \(pages) \(1 + UInt64(c) % 16) \(hex(base + (UInt64(c) % window) << 12))")
            case 13:
                let adv = Advice.allCases[Int(c) % Advice.allCases.count].rawValue
                lines.append("\(p) madvise \(addr) \(pages) \(adv)")
            case 14: lines.append("\(p) mlock \(addr) \(pages)")
            case 15: lines.append("\(p) munlock \(addr) \(pages)")
            case 16:
                let flags = TTUFlags(rawValue: UInt32(c) & 0x1ff).names.joined(separator: ",")
                lines.append("\(p) unmap \(addr) \(1 + b % 4)\(flags.isEmpty ? "" : " " + flags)")
            case 17: lines.append("\(p) reclaim \(addr) \(1 + b % 4)")
            case 18:
                // KSM: a full scan, or pages written with one of a few
                // values (so identical pages exist), or a migration.
                switch c % 4 {
                case 0: lines.append("ksm scan \(1 + b % 3)")
                case 1: lines.append("\(p) write \(addr) \(pages) value=\(b % 3)")
                case 2: lines.append(b % 2 == 0 ? "\(p) poison \(addr) \(1 + b % 2)" : "\(p) device \(addr) \(1 + b % 3)\(b % 4 == 1 ? " coherent" : "")")
                default: lines.append(b % 3 == 0 ? "\(p) exclusive \(addr) \(1 + b % 2)" : "\(p) migrate \(addr) \(1 + b % 4)")
                }
            default:
                let t = live.map { "\($0) \(hex(base)) \(window)" }.joined(separator: ", ")
                if !t.isEmpty { lines.append("observe \(t)") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension OpDecoder {
    /// Large folios (the FuzzLargeOps target): a window of two PMDs at a
    /// 2 MiB-aligned address, THP settings from the first two bytes, and the
    /// large-page statements (hugepage / nohugepage advice, `thp shrink`,
    /// `split`) among the forward ones, and the model-only reverse
    /// statements `unmap ... migration` (PMD migration entries), `migrate`,
    /// `device` and `exclusive`. With the first byte's top bit: a hugetlb
    /// pool of one or two huge pages, and one mmap in four of the window is
    /// `hugetlb-private` or `hugetlb-shared` (every other statement then
    /// meets it there: faults, fork, munmap, mprotect, mremap, the advice,
    /// the reverse statements). No `madvise collapse`. Same four bytes per
    /// operation as `trace(from:)`.
    public static let largeBase: UInt64 = 0x1000_0040_0000
    public static let largeWindow: UInt64 = 1024

    /// Whether `largeTrace(from:)` makes a hugetlb pool for these bytes.
    static func largeHugetlb(_ bytes: [UInt8]) -> Bool { (bytes.first ?? 0) & 0x80 != 0 }

    public static func largeTrace(from bytes: [UInt8]) -> String {
        let b0 = bytes.first ?? 0, b1 = bytes.count > 1 ? bytes[1] : 0
        let modes = ["always", "madvise", "never"], sizeModes = ["always", "inherit", "madvise", "never"]
        let sizes = ["16K", "32K", "64K", "128K", "256K", "512K", "1M", "2M"]
        var lines = ["thp enabled \(modes[Int(b0) % 3])",
                     "thp \(sizes[Int(b1) % 8]) \(sizeModes[Int(b1 >> 3) % 4])",
                     "thp \(sizes[Int(b1 >> 5) % 8]) \(sizeModes[Int(b0 >> 2) % 4])",
                     "file f0 24", "proc P0"]
        let hugetlb = largeHugetlb(bytes)
        if hugetlb { lines.insert("hugetlb \(1 + Int(b1 >> 4) % 2)", at: 3) }
        var live = ["P0"]
        var next = 1
        var i = 2
        while i + 4 <= bytes.count {
            let k = bytes[i], a = UInt64(bytes[i + 1]), b = UInt64(bytes[i + 2]), c = bytes[i + 3]
            i += 4
            if live.isEmpty { lines.append("proc P\(next)"); live.append("P\(next)"); next += 1 }
            let p = live[Int(c) % live.count]
            // Addresses: a PMD start, a 64 KiB boundary, or any page.
            let page: UInt64 = switch a % 4 {
            case 0: (a >> 2) % 2 * 512
            case 1: (a >> 2) * 16 % largeWindow
            default: (a * 4 + b) % largeWindow
            }
            let addr = hex(largeBase + page << 12)
            let pages = b % 2 == 0 ? 1 + b % 16 : [16, 64, 256, 512, 600, 1024][Int(b >> 1) % 6]
            switch k % 16 {
            case 0, 1:
                let prots = ["rw", "rw", "r", "none"]
                let kind = hugetlb && c % 4 == 3 ? (k % 32 == 1 ? "hugetlb-shared" : "hugetlb-private")
                    : (k % 32 == 1 ? "anon-shared" : "anon-private")
                lines.append("\(p) mmap \(addr) \(pages) \(prots[Int(c >> 4) % prots.count]) \(kind)")
            case 2, 3, 4: lines.append("\(p) write \(addr) \(1 + b % 32)")
            case 5: lines.append("\(p) read \(addr) \(1 + b % 32)")
            case 6:
                if live.count < 8 { lines.append("P\(next) = fork \(p)"); live.append("P\(next)"); next += 1 }
            case 7:
                lines.append("\(p) exit")
                live.removeAll { $0 == p }
            case 8: lines.append("\(p) munmap \(addr) \(pages)")
            case 9: lines.append("\(p) mprotect \(addr) \(pages) \(["none", "r", "rw", "rx"][Int(c) % 4])")
            case 10:
                let to = c % 2 == 0 ? "" : " " + hex(largeBase + (UInt64(c) * 16 % largeWindow) << 12)
                lines.append("\(p) mremap \(addr) \(pages) \(1 + UInt64(c) % 600)\(to)")
            case 11: lines.append("\(p) madvise \(addr) \(pages) \(["hugepage", "hugepage", "nohugepage", "dontneed", "dontfork", "dofork"][Int(c) % 6])")
            case 12: lines.append(c % 2 == 0 ? "thp shrink" : "\(p) split \(addr) \(pages)")
            case 13: lines.append("\(p) \(c % 2 == 0 ? "mlock" : "munlock") \(addr) \(pages)")
            case 14:
                // The model-only reverse statements on large folios: PMD
                // migration entries (`unmap ... migration` at a PMD),
                // migration, migrate_vma, make_device_exclusive.
                let verbs = ["unmap \(addr) \(1 + b % 4) migration", "unmap \(addr) \(1 + b % 4) migration,split_huge_pmd",
                             "migrate \(addr) \(1 + b % 4)", "device \(addr) \(1 + b % 4)", "exclusive \(addr) 1"]
                lines.append("\(p) \(verbs[Int(c >> 3) % verbs.count])")
            default:
                let t = live.map { "\($0) \(hex(largeBase + page << 12)) \(1 + b % 64)" }.joined(separator: ", ")
                if !t.isEmpty { lines.append("observe \(t)") }
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
