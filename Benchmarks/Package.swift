// swift-tools-version: 6.1
// The benchmark suites of swift-rmap (package-benchmark), in their own package
// so the main build and `make test` stay light. Run: `make bench`
// (`swift package benchmark --no-progress` here), and `make bench-kernel` for
// the model next to this machine's kernel.
import PackageDescription

let package = Package(
    name: "RmapBenchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "swift-rmap", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The workloads (model states built through the public Machine API)
        // that the suites and bench-model share.
        .target(
            name: "BenchSupport",
            dependencies: [.product(name: "Rmap", package: "swift-rmap"), .product(name: "RmapTools", package: "swift-rmap"),
                           .product(name: "RmapVariants", package: "swift-rmap")],
            path: "Sources/BenchSupport"),
        // package-benchmark suites: faults, fork, munmap, exit, rmap_walk,
        // try_to_unmap, page_referenced, the fork loop.
        .executableTarget(
            name: "RmapBenchmarks",
            dependencies: [
                "BenchSupport",
                .product(name: "Rmap", package: "swift-rmap"),
                .product(name: "RmapTools", package: "swift-rmap"),
                .product(name: "RmapVariants", package: "swift-rmap"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/RmapBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        // The model side of `make bench-kernel`: the kernel harness's workloads
        // (Benchmarks/kernel/bench_kernel.c) on the model, in release.
        .executableTarget(
            name: "bench-model",
            dependencies: ["BenchSupport", .product(name: "Rmap", package: "swift-rmap"),
                           .product(name: "RmapTrace", package: "swift-rmap"),
                           .product(name: "RmapTools", package: "swift-rmap"),
                           .product(name: "RmapVariants", package: "swift-rmap")],
            path: "Sources/bench-model"),
    ],
    swiftLanguageModes: [.v5]
)
