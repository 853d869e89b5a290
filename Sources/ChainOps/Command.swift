import Foundation

/// The result of running a program.
public struct CommandResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: Data
    public var stdoutString: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrString: String { String(decoding: stderr, as: UTF8.self) }
    public var succeeded: Bool { status == 0 }
}

/// A program failed or could not be started.
public struct CommandError: Error, CustomStringConvertible, Sendable {
    public var argv: [String]
    public var status: Int32?
    public var message: String
    public var description: String {
        let cmd = argv.joined(separator: " ")
        if let status { return "\(cmd): exited with status \(status): \(message)" }
        return "\(cmd): \(message)"
    }
}

/// Runs programs with an argv array — never through a shell.
public enum Command {
    /// Directories searched for a program named without a slash.
    static let searchPath: [String] = {
        let env = ProcessInfo.processInfo.environment["PATH"] ?? ""
        var dirs = env.split(separator: ":").map(String.init)
        for d in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] where !dirs.contains(d) {
            dirs.append(d)
        }
        return dirs
    }()

    public static func resolve(_ program: String) -> String? {
        if program.contains("/") { return FileManager.default.isExecutableFile(atPath: program) ? program : nil }
        for dir in searchPath {
            let candidate = dir + "/" + program
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `argv[0]` with the remaining arguments, capturing stdout and stderr. A non-zero exit is a result,
    /// not an error; failing to start is an error.
    public static func run(_ argv: [String], input: Data? = nil) throws(CommandError) -> CommandResult {
        guard let program = argv.first else { throw CommandError(argv: argv, status: nil, message: "empty command") }
        guard let path = resolve(program) else {
            throw CommandError(argv: argv, status: nil, message: "\(program) not found in PATH; install it (see README)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = Array(argv.dropFirst())
        let outPipe = Pipe()
        let errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        let inPipe: Pipe? = input == nil ? nil : Pipe()
        process.standardInput = inPipe ?? FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw CommandError(argv: argv, status: nil, message: "cannot start: \(error.localizedDescription)")
        }
        if let inPipe, let input {
            inPipe.fileHandleForWriting.write(input)
            try? inPipe.fileHandleForWriting.close()
        }
        // Drain both pipes concurrently so neither fills up.
        let errBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = errPipe.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let out = outPipe.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return CommandResult(status: process.terminationStatus, stdout: out, stderr: errBox.data)
    }

    /// Runs and throws unless the program exits 0; the error carries the program's stderr.
    @discardableResult
    public static func check(_ argv: [String], input: Data? = nil) throws(CommandError) -> CommandResult {
        let result = try run(argv, input: input)
        guard result.succeeded else {
            let msg = result.stderrString.trimmingCharacters(in: .whitespacesAndNewlines)
            throw CommandError(argv: argv, status: result.status, message: msg.isEmpty ? result.stdoutString : msg)
        }
        return result
    }
}

private final class DataBox: @unchecked Sendable {
    var data = Data()
}
