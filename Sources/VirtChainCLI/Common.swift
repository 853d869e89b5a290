import ArgumentParser
import ChainCore
import ChainOps
import Foundation
import Libvirt

/// An error for the user: what went wrong, and a hint at the fix.
public struct CLIError: Error, CustomStringConvertible {
    public var message: String
    public var hint: String?
    public var code: Int32
    public init(_ message: String, hint: String? = nil, code: Int32 = 1) {
        self.message = message
        self.hint = hint
        self.code = code
    }
    public var description: String { message }
}

/// Exit codes (DESIGN.md).
public enum Exit {
    public static let ok: Int32 = 0
    public static let error: Int32 = 1
    public static let changesPending: Int32 = 2
    public static let blocked: Int32 = 3
}

enum Stderr {
    static func write(_ s: String) {
        FileHandle.standardError.write(Data(s.utf8))
    }
}

/// Wall-clock phases of a run, printed to stderr when VIRT_CHAIN_TIMINGS=1 (for benchmarks; silent otherwise).
struct PhaseClock {
    private let enabled = ProcessInfo.processInfo.environment["VIRT_CHAIN_TIMINGS"] == "1"
    private var last = DispatchTime.now().uptimeNanoseconds
    private let start = DispatchTime.now().uptimeNanoseconds

    mutating func mark(_ phase: String) {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        Stderr.write("timing: \(phase): \(String(format: "%.1f", Double(now - last) / 1e6)) ms, peak rss \(residentMiB()) MiB\n")
        last = now
    }

    /// Peak resident memory so far.
    private func residentMiB() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss >> 10
    }

    func total() {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        Stderr.write("timing: total: \(String(format: "%.1f", Double(now - start) / 1e6)) ms\n")
    }
}

/// Values kept until the process exits, never freed: large inventories and plans are released by the exit itself,
/// at once, instead of object by object.
enum ProcessLifetime {
    nonisolated(unsafe) private static var kept: [Any] = []
    static func keep(_ values: Any...) { kept.append(contentsOf: values) }
}

func emit(_ s: String) {
    FileHandle.standardOutput.write(Data(s.utf8))
}

func emit(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { emit($0) }
}

/// Writes to standard output with no copy. A reader that went away ends the run (SIGPIPE, as for other Unix
/// tools: `virt-chain plan ... | head`); any other failure is an error.
func emit(_ bytes: UnsafeRawBufferPointer) {
    if let e = writeAll(1, bytes) {
        Stderr.write("virt-chain: error: cannot write output: \(String(cString: strerror(e)))\n")
        exit(Exit.error)
    }
}

/// Writes every byte to `fd`; the errno of a failure, or nil.
func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32? {
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 {
            if errno == EINTR { continue }
            return errno
        }
        done += n
    }
    return nil
}

/// A file written under a temporary name in its directory and renamed into place by `commit()`; removed if the
/// write fails (or is never committed).
final class AtomicFile {
    let path: String
    let temporary: String
    private var fd: Int32
    private var failure: Int32?

    init(path: String) throws {
        self.path = path
        let dir = PathUtil.dirname(path)
        temporary = (dir == "/" ? "" : dir) + "/.\(PathUtil.basename(path)).\(getpid()).tmp"
        fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666)
        guard fd >= 0 else {
            throw CLIError(
                "cannot write plan to \(path): \(String(cString: strerror(errno)))",
                hint: "check that the directory exists and is writable")
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil else { return }
        failure = writeAll(fd, bytes)
    }

    func commit() throws {
        if failure == nil && fsync(fd) != 0 { failure = errno }
        if close(fd) != 0 && failure == nil { failure = errno }
        fd = -1
        if failure == nil && rename(temporary, path) != 0 { failure = errno }
        if let failure {
            unlink(temporary)
            throw CLIError("cannot write plan to \(path): \(String(cString: strerror(failure)))")
        }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(temporary)
        }
    }
}

/// Runs a command body, turning every error into a message on stderr and exit 1 (never a stack trace).
func runReporting(_ body: () throws -> Int32) throws {
    let code: Int32
    do {
        code = try body()
    } catch let e as CLIError {
        Stderr.write("virt-chain: error: \(e.message)\n")
        if let hint = e.hint { Stderr.write("hint: \(hint)\n") }
        code = e.code
    } catch let e as ObserveError {
        Stderr.write("virt-chain: error: \(e.message)\n")
        if let hint = e.hint { Stderr.write("hint: \(hint)\n") }
        code = Exit.error
    } catch let e as LibvirtError {
        Stderr.write("virt-chain: error: \(e)\n")
        code = Exit.error
    } catch let e as ExitCode {
        throw e
    } catch {
        Stderr.write("virt-chain: error: \(error)\n")
        code = Exit.error
    }
    if code != 0 { throw ExitCode(code) }
}

/// `--connect` / `--domain-xml`: where observed state comes from.
struct SourceOptions: ParsableArguments {
    @Option(name: .long, help: "libvirt URI (default: $LIBVIRT_DEFAULT_URI, then qemu:///system).")
    var connect: String?

    @Option(name: .customLong("domain-xml"), help: "Read domains from XML dumps (a file or a directory of *.xml) instead of libvirt.")
    var domainXML: [String] = []

    func validate() throws {
        if connect != nil && !domainXML.isEmpty {
            throw ValidationError("--connect and --domain-xml exclude each other")
        }
    }

    /// Observes the host or reads the XML files.
    /// `indexed` false: the inventory comes without the reference index (the caller builds it with `reindex()`).
    func inventory(names: [String] = [], indexed: Bool = true) throws -> Inventory {
        if !domainXML.isEmpty {
            let (inv, errors) = try InventoryReader.fromXMLFiles(domainXML, indexed: indexed)
            for e in errors { Stderr.write("virt-chain: warning: \(e)\n") }
            if inv.domains.isEmpty && !errors.isEmpty {
                throw CLIError("no domain XML could be read from \(domainXML.joined(separator: ", "))")
            }
            for n in names where inv.domain(named: n) == nil {
                throw CLIError("domain \(n) not found in \(domainXML.joined(separator: ", "))")
            }
            return inv
        }
        let uri = Connection.resolveURI(connect)
        let conn: Connection
        do {
            conn = try Connection(uri: uri)
        } catch {
            throw CLIError(
                "cannot connect to \(uri): \(error.message)",
                hint: "start libvirtd (libvirtd -d) or pass --connect URI / --domain-xml DIR")
        }
        return try InventoryReader.fromLibvirt(conn, names: names, indexed: indexed)
    }
}
