// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-rmap",
    products: [
        .library(name: "Rmap", targets: ["Rmap"]),
        .executable(name: "rmap", targets: ["rmap"]),
        .executable(name: "rmap-oracle", targets: ["RmapOracle"]),
        // The C API (Sources/RmapC/rmap.h): link C programs with -lRmapC.
        .library(name: "RmapC", type: .dynamic, targets: ["RmapC"]),
        .executable(name: "rmap-embed-example", targets: ["EmbedExample"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `make docs`: DocC for the Rmap library (swift package generate-documentation).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // The arena layout and the few calls Swift cannot make directly. No logic.
        .target(name: "CShims", path: "CShims", cSettings: [.define("_GNU_SOURCE")]),
        // The model: arena, memory, VM objects, forward and reverse paths, trace language.
        .target(name: "Rmap", dependencies: ["CShims"], path: "Sources/Rmap"),
        // The command line: argument parsing only, everything else is the library's.
        .executableTarget(
            name: "rmap",
            dependencies: ["Rmap", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/rmap"),
        // The kernel oracle: runs the kernel-side statements of a trace on the live kernel (C).
        .executableTarget(name: "RmapOracle", path: "Sources/RmapOracle",
                          cSettings: [.define("_GNU_SOURCE")]),
        .target(name: "RmapC", dependencies: ["Rmap"], path: "Sources/RmapC", exclude: ["rmap.h"]),
        // Embedding from Swift: the example `make test` runs.
        .executableTarget(name: "EmbedExample", dependencies: ["Rmap"], path: "Examples/swift"),
        .testTarget(name: "RmapTests", dependencies: ["Rmap", "CShims"], path: "Tests/RmapTests"),
    ],
    swiftLanguageModes: [.v5]
)
