// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "virt-chain",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "virt-chain", targets: ["virt-chain"]),
        .library(name: "ChainCore", targets: ["ChainCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
    ],
    targets: [
        // libvirt's C API, found through pkg-config.
        .systemLibrary(
            name: "CLibvirt",
            pkgConfig: "libvirt",
            providers: [.apt(["libvirt-dev"]), .yum(["libvirt-devel"])]
        ),
        // Safe Swift wrapper over libvirt; no C type leaks above it.
        .target(name: "Libvirt", dependencies: ["CLibvirt"]),
        // Pure: model, XML, policy, planner, plan formats. Never imports libvirt.
        .target(name: "ChainCore"),
        // Inventory, qemu-img, image probing, executor, sandbox.
        .target(name: "ChainOps", dependencies: ["ChainCore", "Libvirt"]),
        .target(
            name: "VirtChainCLI",
            dependencies: [
                "ChainCore", "ChainOps", "Libvirt",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "virt-chain", dependencies: ["VirtChainCLI"]),
        .executableTarget(name: "virt-chain-bench", dependencies: ["ChainCore", "ChainOps"], path: "Benchmarks"),
        .testTarget(name: "ChainCoreTests", dependencies: ["ChainCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ChainOpsTests", dependencies: ["ChainCore", "ChainOps"]),
        .testTarget(name: "IntegrationTests", dependencies: ["ChainCore", "ChainOps", "Libvirt", "VirtChainCLI"]),
        .testTarget(name: "CLITests", dependencies: ["ChainCore", "VirtChainCLI"]),
    ]
)
