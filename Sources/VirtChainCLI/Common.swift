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
        Stderr.write("timing: \(phase): \(String(format: "%.1f", Double(now - last) / 1e6)) ms\n")
        last = now
    }

    func total() {
        guard enabled else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        Stderr.write("timing: total: \(String(format: "%.1f", Double(now - start) / 1e6)) ms\n")
    }
}

func emit(_ s: String) {
    FileHandle.standardOutput.write(Data(s.utf8))
}

func emit(_ bytes: [UInt8]) {
    emit(pieces: [bytes])
}

/// Writes the pieces to standard output in order, with no copy (a reader that went away ends the run quietly,
/// like other Unix tools: `virt-chain plan ... | head`).
func emit(pieces: [[UInt8]]) {
    for p in pieces {
        p.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = write(1, b.baseAddress! + done, b.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EPIPE { exit(0) }
                    Stderr.write("virt-chain: error: cannot write output: \(String(cString: strerror(errno)))\n")
                    exit(Exit.error)
                }
                done += n
            }
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
    func inventory(names: [String] = []) throws -> Inventory {
        if !domainXML.isEmpty {
            let (inv, errors) = try InventoryReader.fromXMLFiles(domainXML)
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
        return try InventoryReader.fromLibvirt(conn, names: names)
    }
}
