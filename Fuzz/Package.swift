// swift-tools-version: 6.0
// libFuzzer targets, in their own package so that `swift build` of the main
// package never links an executable without `main` (libFuzzer provides it).
// Build one product at a time with -sanitize=fuzzer (see the Makefile's `fuzz`).
import PackageDescription
import Foundation

// A path dependency is named after its folder: whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent

let package = Package(
    name: "swift-rmap-fuzz",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(name: "FuzzParser", dependencies: [.product(name: "RmapTrace", package: root)],
                          path: "Sources/FuzzParser"),
        .executableTarget(name: "FuzzArena", dependencies: [.product(name: "Rmap", package: root)],
                          path: "Sources/FuzzArena"),
        .executableTarget(name: "FuzzOps", dependencies: [.product(name: "Rmap", package: root), .product(name: "RmapTrace", package: root),
                                                       .product(name: "RmapTools", package: root)],
                          path: "Sources/FuzzOps"),
        .executableTarget(name: "FuzzLargeOps", dependencies: [.product(name: "Rmap", package: root), .product(name: "RmapTrace", package: root),
                                                            .product(name: "RmapTools", package: root)],
                          path: "Sources/FuzzLargeOps"),
    ],
    swiftLanguageModes: [.v5]
)
