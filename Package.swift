// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "tidemark",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tidemark", targets: ["tidemark"]),
        .library(name: "TidemarkCore", targets: ["TidemarkCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.11.0"), // `LogHandler.log(event:)`
    ],
    targets: [
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CSQLiteTuning",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .target(
            name: "TidemarkCore",
            dependencies: [
                "CZlib",
                "CSQLiteTuning",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // Release builds skip Swift's dynamic exclusivity checks (their bookkeeping was about a
            // tenth of the threads that format rows and fold groups; about 4 % of the 1M ingest,
            // docs/PERFORMANCE.md). Debug builds, which the tests run, keep them.
            // `-static-stdlib`: see the executable below.
            swiftSettings: [
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
                .unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release)),
            ]
        ),
        .executableTarget(
            name: "tidemark",
            dependencies: [
                "TidemarkCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            // The release binary carries the Swift runtime and Foundation in itself (the modules
            // that import Foundation and the link both need the flag): `--version` runs in 4-8 ms
            // instead of 9-14, an idle ingest in about 5 ms less, and the binary runs on a
            // machine with no Swift installed (the README lists what it needs there). Linked by
            // lld, which the toolchain ships: gold warns on every link that the static
            // Foundation refers to mktemp.
            swiftSettings: [.unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release))],
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-use-ld=lld"], .when(platforms: [.linux], configuration: .release))]
        ),
        .testTarget(
            name: "TidemarkCoreTests",
            dependencies: ["TidemarkCore", "tidemark"],
            resources: [.copy("Fixtures")]
        ),
    ]
)
