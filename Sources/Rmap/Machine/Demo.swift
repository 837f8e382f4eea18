/// Placeholder replaced below.
public func runDemo(reuse: ReusePolicy = .split) -> (String, Bool) { ("", true) }
