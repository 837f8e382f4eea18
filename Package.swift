// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "swift-rmap",
    products: [
        .library(name: "Rmap", targets: ["Rmap"]),
        .library(name: "RmapTrace", targets: ["RmapTrace"]),
        .library(name: "RmapTools", targets: ["RmapTools"]),
        .library(name: "RmapVariants", targets: ["RmapVariants"]),
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
        // The model: arena, memory, VM objects, forward and reverse paths, KSM,
        // the checker, saved states and the `Machine` facade. Nothing here spawns
        // processes, parses traces or prints reports.
        .target(name: "Rmap", dependencies: ["CShims"], path: "Sources/Rmap"),
        // The trace language: AST, parser, interpreter (`Machine.step`), observation, generator.
        .target(name: "RmapTrace", dependencies: ["Rmap", "CShims"], path: "Sources/RmapTrace"),
        // The design variants behind the walk API (PV lists, full scan): the core
        // calls them only through its `ReverseMapHooks` protocol.
        .target(name: "RmapVariants", dependencies: ["Rmap", "CShims"], path: "Sources/RmapVariants"),
        // What users run: replay of files, fuzzer and shrinker, oracle check, demo,
        // dot, report, stats, bench entry points.
        .target(name: "RmapTools", dependencies: ["Rmap", "RmapTrace", "RmapVariants", "CShims"],
                path: "Sources/RmapTools"),
        // The command line: argument parsing only, everything else is the library's.
        .executableTarget(
            name: "rmap",
            dependencies: ["Rmap", "RmapTrace", "RmapTools", "RmapVariants", "CShims",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/rmap"),
        // The kernel oracle: runs the kernel-side statements of a trace on the live kernel (C).
        // Linked static and not position-independent (ELF ET_EXEC at 0x400000, heap right
        // after it): its trace processes are forks of it, and nothing of their own may lie in
        // the trace address window [0x100000000000, 0x700000000000) (a PIE loads at
        // 0x55..., 0x555555554000 with ASLR off). docs/oracle.md, "The trace processes' own
        // memory".
        .executableTarget(name: "RmapOracle", path: "Sources/RmapOracle",
                          cSettings: [.define("_GNU_SOURCE")],
                          linkerSettings: [.unsafeFlags(["-static-executable"])]),
        .target(name: "RmapC", dependencies: ["Rmap", "RmapTrace", "RmapTools"], path: "Sources/RmapC", exclude: ["rmap.h", "rmap.pc.in"]),
        // Embedding from Swift: the example `make test` runs.
        .executableTarget(name: "EmbedExample", dependencies: ["Rmap", "RmapTrace"], path: "Examples/swift"),
        // Shared by the tests: the seeded RNG, machine and frame helpers, corpus and oracle paths.
        .target(name: "RmapTestSupport", dependencies: ["Rmap", "RmapTrace", "CShims"],
                path: "Tests/RmapTestSupport"),
        .testTarget(name: "RmapTests",
                    dependencies: ["Rmap", "RmapTrace", "RmapTools", "RmapVariants", "RmapTestSupport", "CShims"],
                    path: "Tests/RmapTests"),
    ],
    swiftLanguageModes: [.v6]
)
