// The one delta-debugging implementation of the tools (issue 12): the fuzzer
// shrinks a trace that violates an invariant with it (Fuzz/Fuzzer.swift), the
// oracle check a trace on which the model and the kernel differ
// (Oracle/OracleCheck.swift). What "still fails" means is the caller's.

/// Delta debugging (Zeller and Hildebrandt's ddmin, complements only) over the
/// lines of a trace: a shorter list of lines, in their order, for which
/// `stillFails` is still true.
///
/// - First, when some lines are `noise` (comments, blank lines, ... as the
///   caller says), the lines without any of them are tried in one go.
/// - Then chunks of `n` equal parts are removed while the failure remains,
///   with `n` growing from 2 until single lines: the result is 1-minimal
///   (removing any one line of it makes `stillFails` false), unless `maxTests`
///   ran out first.
///
/// `lines` itself is not tested (the caller saw it fail), nor is the empty
/// list. A line another line needs (a `proc` or `file` declaration) stays
/// as long as `stillFails` is false without it: for a caller that asks its
/// candidates to parse, a trace without the declaration does not.
///
/// - Parameters:
///   - maxTests: the most calls of `stillFails`; the list reached so far is
///     returned when they are used up.
/// - Returns: the shortest failing list found (`lines` when nothing could go).
func deltaDebug(_ lines: [String], noise: (String) -> Bool = { _ in false }, maxTests: Int = .max,
                       stillFails: ([String]) -> Bool) -> [String] {
    var tests = 0
    func fails(_ candidate: [String]) -> Bool? {
        guard tests < maxTests else { return nil }
        tests += 1
        return stillFails(candidate)
    }

    var cur = lines
    let quiet = cur.filter { !noise($0) }
    if quiet.count < cur.count && !quiet.isEmpty && fails(quiet) == true { cur = quiet }

    var n = 2
    while cur.count >= 2 {
        let chunk = (cur.count + n - 1) / n
        var reduced = false
        var i = 0
        while i < cur.count {
            let candidate = Array(cur[0..<i]) + Array(cur[min(cur.count, i + chunk)...])
            if candidate.isEmpty {
                i += chunk
                continue
            }
            guard let f = fails(candidate) else { return cur }
            if f {
                cur = candidate
                reduced = true
            } else {
                i += chunk
            }
        }
        if reduced {
            n = max(n - 1, 2)
        } else {
            if chunk == 1 { break }
            n = min(cur.count, n * 2)
        }
    }
    return cur
}
