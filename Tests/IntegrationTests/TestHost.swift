import ChainOps
import Foundation
import Libvirt
import Testing

/// Facts about the machine the integration tests run on.
///
/// Policy: outside CI, tests that need a libvirt daemon are skipped when none answers. Under `CI=true` they always
/// run, so a missing daemon makes them fail — a green CI run without libvirt would be a lie.
enum TestHost {
    /// The URI the integration tests use.
    static let uri = "qemu:///system"

    /// Whether the environment says we are in CI (`CI=true`).
    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Whether a libvirt daemon answers at `uri` and qemu-img / qemu-io are installed (probed once).
    static let libvirtReachable: Bool = {
        guard Command.resolve("qemu-img") != nil, Command.resolve("qemu-io") != nil else { return false }
        return (try? Connection(uri: uri)) != nil
    }()

    /// Whether libvirt-backed tests should run: always under CI, else only when libvirt is reachable.
    static var libvirtTestsEnabled: Bool { isCI || libvirtReachable }
}

extension Trait where Self == ConditionTrait {
    /// Runs the test (or suite) only when libvirt is usable — and always under `CI=true`, where a missing daemon
    /// then fails the test through `requireLibvirt()`.
    static var requiresLibvirt: Self {
        .enabled(if: TestHost.libvirtTestsEnabled, "no libvirt daemon at \(TestHost.uri) (or qemu-img/qemu-io missing)")
    }
}

/// The error thrown when the test host lacks something a test needs.
struct TestHostUnavailable: Error, CustomStringConvertible {
    var description: String
}

/// Connects to `qemu:///system` for a test; throws (failing the test) when it cannot, with a hint in CI.
/// Pair it with the `.requiresLibvirt` trait so that, outside CI, the test is skipped instead.
func requireLibvirt() throws -> Connection {
    for tool in ["qemu-img", "qemu-io"] where Command.resolve(tool) == nil {
        throw TestHostUnavailable(description: "\(tool) not installed (apt-get install qemu-utils)")
    }
    do {
        return try Connection(uri: TestHost.uri)
    } catch {
        let hint = TestHost.isCI ? " (CI=true: libvirt tests must not be skipped; is libvirtd running?)" : ""
        throw TestHostUnavailable(description: "cannot connect to \(TestHost.uri): \(error)\(hint)")
    }
}

/// A prefix for sandbox domains of one test: "vcsbx-t<tag>-<random4>-", unique per call.
func uniqueTestPrefix(_ tag: String) -> String {
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    let random = String((0..<4).map { _ in alphabet.randomElement() ?? "x" })
    return "vcsbx-t\(tag)-\(random)-"
}

/// Polls `condition` every `interval` seconds until it is true or `timeout` seconds passed; returns its last value.
func waitUntil(
    timeout: TimeInterval, interval: TimeInterval = 0.1, _ condition: () throws -> Bool
) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        Thread.sleep(forTimeInterval: interval)
    }
}
