import Foundation
import Testing

/// Runs the BUILT `virt-chain` binary (`.build/debug/virt-chain` under the package root) as a child process with an
/// argv array, and captures its stdout, stderr and exit status. Build it first: `swift build --build-tests`.
enum CLI {
    /// The package root, derived from this file's path (Tests/CLITests/CLIRunner.swift).
    static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var binary: URL { packageRoot.appendingPathComponent(".build/debug/virt-chain") }

    /// `Tests/ChainCoreTests/Fixtures/domains` (absolute).
    static var fixtureDomains: String { packageRoot.appendingPathComponent("Tests/ChainCoreTests/Fixtures/domains").path }

    struct Result: CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(status)\n--- stdout:\n\(stdout)\n--- stderr:\n\(stderr)" }
    }

    struct NotBuilt: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `virt-chain ARGS` in the package root with a timeout (the child is terminated if it runs longer).
    /// `stdoutPath`: send standard output there instead (e.g. `/dev/full`); `Result.stdout` is then empty.
    static func run(_ arguments: [String], timeout: TimeInterval = 120, stdoutPath: String? = nil) throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw NotBuilt(description: "\(binary.path) not found: run `swift build --build-tests` first")
        }
        // Output goes to files, not pipes: a child writing more than a pipe buffer can never block.
        let scratch = try TempDir()
        let outPath = scratch.path + "/stdout"
        let errPath = scratch.path + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath ?? outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? out.close()
            try? err.close()
        }

        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        process.currentDirectoryURL = packageRoot
        var environment = ProcessInfo.processInfo.environment
        environment.removeValue(forKey: "LIBVIRT_DEFAULT_URI")
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        try process.run()
        if done.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()  // our own child, by its pid
            done.wait()
            Issue.record("virt-chain \(arguments.joined(separator: " ")) ran longer than \(timeout) s; terminated")
        }
        let stdout = String(decoding: try Data(contentsOf: URL(fileURLWithPath: outPath)), as: UTF8.self)
        let stderr = String(decoding: try Data(contentsOf: URL(fileURLWithPath: errPath)), as: UTF8.self)
        let result = Result(status: process.terminationStatus, stdout: stdout, stderr: stderr)
        expectNoCrash(result, arguments)
        return result
    }

    /// Whatever the input, virt-chain reports errors as messages, never as a Swift runtime trap.
    static func expectNoCrash(_ result: Result, _ arguments: [String]) {
        let both = result.stdout + result.stderr
        for marker in ["Fatal error", "Stack dump", "Current stack trace", "Illegal instruction", "Segmentation fault"] {
            #expect(!both.contains(marker), "virt-chain \(arguments.joined(separator: " ")) crashed:\n\(result)")
        }
        #expect(result.status >= 0 && result.status < 128, "killed by a signal: \(result)")
    }

    /// Parses stdout as a JSON object.
    static func jsonObject(_ result: Result) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(value as? [String: Any], "stdout is not a JSON object:\n\(result.stdout)")
    }
}

/// A private temporary directory, removed when the value is released.
final class TempDir {
    let path: String

    init() throws {
        var template = Array(
            (NSTemporaryDirectory() as NSString).appendingPathComponent("vc-clitest-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else { throw CLI.NotBuilt(description: "mkdtemp failed") }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `text` to `name` inside the directory and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try FileManager.default.createDirectory(
            atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }
}
