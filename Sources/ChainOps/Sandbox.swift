import Foundation
import Libvirt

/// A sandbox operation was refused or failed outside libvirt and qemu-img.
public struct SandboxError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong.
    public var message: String
    /// Creates an error with `message`.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { "sandbox: \(message)" }
}

/// A throwaway test host on a real libvirt daemon: a private image directory plus guests whose names all start with
/// `prefix`. Used by the integration tests and by `virt-chain sandbox`.
///
/// Safety: the sandbox only ever writes inside its own directory and only destroys/undefines domains it defined
/// itself (by UUID) whose name still starts with its prefix. `teardown()` (also run from `deinit` unless
/// `keepOnDeinit`) removes those domains, their snapshot metadata and the directory.
///
/// Errors: `LibvirtError`, `CommandError` (qemu-img / qemu-io) or `SandboxError`.
/// Thread safety: the bookkeeping is lock-protected; libvirt calls are thread-safe.
public final class Sandbox: @unchecked Sendable {
    /// One disk of a sandbox guest.
    public typealias Disk = (target: String, path: String, format: String)

    /// The libvirt connection the guests live on.
    public let connection: Connection
    /// Every domain name is `prefix + suffix`.
    public let prefix: String
    /// The sandbox's private image directory (absolute; created with `mkdtemp`).
    public let directory: String
    /// The libvirt domain type used for guests: "kvm" when /dev/kvm exists, else "qemu".
    public let domainType: String
    /// When true, `deinit` leaves domains and files in place (call `teardown()` explicitly to remove them).
    public var keepOnDeinit: Bool {
        get { lock.withLock { keep } }
        set { lock.withLock { keep = newValue } }
    }

    private let lock = NSLock()
    private var keep = false
    /// UUIDs of the domains this sandbox defined, in creation order, with their disk targets.
    private var created: [(uuid: String, name: String, targets: [String])] = []
    /// Formats of the images this sandbox created or had libvirt create, by absolute path.
    private var formats: [String: String] = [:]

    /// A fresh default prefix: "vcsbx-" + 6 random lowercase letters/digits + "-".
    public static func randomPrefix() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var generator = SystemRandomNumberGenerator()
        let tag = String((0..<6).map { _ in alphabet[Int(generator.next(upperBound: UInt(alphabet.count)))] })
        return "vcsbx-\(tag)-"
    }

    /// The default parent of sandbox directories: /var/lib/libvirt/images/virt-chain-sandbox when running as root
    /// (a location QEMU may use under any security driver), else the temporary directory.
    public static func defaultParentDirectory() -> String {
        if geteuid() == 0, FileManager.default.fileExists(atPath: "/var/lib/libvirt/images") {
            return "/var/lib/libvirt/images/virt-chain-sandbox"
        }
        return "/tmp"
    }

    /// Creates the sandbox and its private directory under `parentDirectory` (default `defaultParentDirectory()`).
    /// `prefix` may contain only letters, digits, `-`, `_` and `.`, and must start with a letter or digit.
    public init(
        connection: Connection, prefix: String = Sandbox.randomPrefix(), parentDirectory: String? = nil
    ) throws {
        guard Self.isSafeName(prefix), prefix.count >= 3 else {
            throw SandboxError("prefix '\(prefix)' must be ≥ 3 characters of [A-Za-z0-9_.-], starting alphanumeric")
        }
        self.connection = connection
        self.prefix = prefix
        self.domainType = FileManager.default.fileExists(atPath: "/dev/kvm") ? "kvm" : "qemu"

        let parent = parentDirectory ?? Self.defaultParentDirectory()
        if !FileManager.default.fileExists(atPath: parent) {
            // 0711: QEMU may traverse it, nobody else can list the sandboxes.
            guard mkdir(parent, 0o711) == 0 || errno == EEXIST else {
                throw SandboxError("cannot create \(parent): \(String(cString: strerror(errno)))")
            }
        }
        var template = Array("\(parent)/\(prefix.hasSuffix("-") ? prefix : prefix + "-")XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else {
            throw SandboxError("mkdtemp under \(parent) failed: \(String(cString: strerror(errno)))")
        }
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        self.directory = path
        try Self.makeAccessibleToQEMU(path)
    }

    deinit {
        if !keep { try? teardown() }
    }

    // MARK: Names and paths

    /// The full domain name for `suffix`.
    public func domainName(_ suffix: String) -> String { prefix + suffix }

    /// The absolute path of `name` inside the sandbox directory (`name` may be absolute if it lies inside).
    public func path(_ name: String) throws -> String {
        let absolute = name.hasPrefix("/") ? name : directory + "/" + name
        let normalized = Self.normalize(absolute)
        guard normalized.hasPrefix(directory + "/"), normalized != directory else {
            throw SandboxError("'\(name)' is outside the sandbox directory \(directory)")
        }
        return normalized
    }

    /// Names of the domains this sandbox defined and has not yet removed.
    public var createdDomainNames: [String] { lock.withLock { created.map(\.name) } }

    /// The format of an image the sandbox created (nil if unknown).
    public func format(of image: String) -> String? {
        guard let path = try? path(image) else { return nil }
        return lock.withLock { formats[path] }
    }

    // MARK: Images

    /// Creates directory `name` (and its parents) inside the sandbox, accessible to QEMU; returns its absolute path.
    @discardableResult
    public func createDirectory(_ name: String) throws -> String {
        let dir = try path(name)
        try createDirectories(dir)
        return dir
    }

    /// Creates an image with `qemu-img create` and returns its absolute path.
    ///
    /// - Parameters:
    ///   - name: file name relative to the sandbox directory (sub-directories are created).
    ///   - format: "raw" or "qcow2".
    ///   - sizeMiB: virtual size; nil = the backing image's size, or 64 MiB without backing.
    ///   - backing: backing image path (absolute, or relative to the new image's directory); must be in the sandbox.
    ///   - backingFormat: recorded backing format; nil = the format the sandbox created it with, else probed.
    ///   - recordBackingFormat: false writes a qcow2 header without a backing format (an unsafe image libvirt
    ///     refuses to start; for testing the `rebase` repair).
    ///   - relativeBacking: write the backing name relative to the new image's directory.
    @discardableResult
    public func createImage(
        name: String, format: String = "qcow2", sizeMiB: Int? = nil, backing: String? = nil,
        backingFormat: String? = nil, recordBackingFormat: Bool = true, relativeBacking: Bool = false
    ) throws -> String {
        guard format == "raw" || format == "qcow2" else { throw SandboxError("unsupported format '\(format)'") }
        let image = try path(name)
        guard !FileManager.default.fileExists(atPath: image) else { throw SandboxError("\(image) already exists") }
        let imageDir = (image as NSString).deletingLastPathComponent
        try createDirectories(imageDir)

        var argv = ["qemu-img", "create", "-q", "-f", format]
        if let backing {
            guard format == "qcow2" else { throw SandboxError("a raw image cannot have a backing file") }
            let backingPath = try path(backing.hasPrefix("/") ? backing : imageDir + "/" + backing)
            guard FileManager.default.fileExists(atPath: backingPath) else {
                throw SandboxError("backing image \(backingPath) does not exist")
            }
            let written = relativeBacking ? Self.relativePath(from: imageDir, to: backingPath) : backingPath
            let bfmt = try backingFormat ?? self.format(of: backingPath) ?? probeFormat(backingPath)
            argv += ["-b", written, "-F", bfmt]
        } else if !recordBackingFormat || relativeBacking || backingFormat != nil {
            throw SandboxError("backing options given without a backing image")
        }
        argv.append(image)
        if let sizeMiB {
            guard sizeMiB > 0 else { throw SandboxError("size must be positive") }
            argv.append("\(sizeMiB)M")
        } else if backing == nil {
            argv.append("64M")
        }
        try Command.check(argv)
        lock.withLock { formats[image] = format }
        if backing != nil, !recordBackingFormat {
            try Self.removeBackingFormatExtension(qcow2: image)
        }
        return image
    }

    /// Writes `length` bytes of `byte` at `offset` (guest view through the image's chain) with qemu-io.
    /// The image must be in the sandbox and not in use by a running guest.
    public func writePattern(image: String, byte: UInt8, offset: UInt64, length: UInt64) throws {
        let imagePath = try path(image)
        let fmt = try format(of: imagePath) ?? probeFormat(imagePath)
        let hex = String(byte, radix: 16)
        try Command.check(["qemu-io", "-f", fmt, "-c", "write -P 0x\(hex) \(offset) \(length)", imagePath])
    }

    /// Whether the guest view of `image` holds `byte` throughout [offset, offset+length) (qemu-io read -P).
    /// `forceShare` reads an image a running guest holds open (may be inconsistent while the guest writes).
    public func verifyPattern(
        image: String, byte: UInt8, offset: UInt64, length: UInt64, forceShare: Bool = false
    ) throws -> Bool {
        let imagePath = try path(image)
        let fmt = try format(of: imagePath) ?? probeFormat(imagePath)
        let hex = String(byte, radix: 16)
        var argv = ["qemu-io", "-r"]
        if forceShare { argv.append("-U") }
        argv += ["-f", fmt, "-c", "read -P 0x\(hex) \(offset) \(length)", imagePath]
        let result = try Command.run(argv)
        if result.succeeded { return true }
        if result.stdoutString.contains("Pattern verification failed") { return false }
        throw CommandError(argv: argv, status: result.status, message: result.stderrString + result.stdoutString)
    }

    // MARK: Domains

    /// Defines a guest named `prefix + suffix` with the given virtio disks (paths inside the sandbox), 64 MiB,
    /// 1 vCPU, no network or graphics, and starts it if `start`. With `includeChainInXML` each disk's full backing
    /// chain (from `qemu-img info --backing-chain`) is written into the XML as terminated `<backingStore>` elements.
    @discardableResult
    public func defineDomain(
        name suffix: String, disks: [Disk], start: Bool, includeChainInXML: Bool = false
    ) throws -> Domain {
        let name = domainName(suffix)
        guard Self.isSafeName(name) else { throw SandboxError("invalid domain name '\(name)'") }
        do {
            _ = try connection.lookupDomain(name: name)
            throw SandboxError("domain \(name) already exists; refusing to touch it")
        } catch let error as LibvirtError where error.code == LibvirtError.Code.noDomain {
            // Expected: the name is free.
        }
        var disksXML = ""
        for disk in disks {
            guard Self.isSafeName(disk.target) else { throw SandboxError("invalid disk target '\(disk.target)'") }
            let diskPath = try path(disk.path)
            var chainXML = ""
            if includeChainInXML { chainXML = try backingChainXML(of: diskPath) }
            disksXML += """
                    <disk type='file' device='disk'>
                      <driver name='qemu' type='\(Self.escape(disk.format))'/>
                      <source file='\(Self.escape(diskPath))'/>
                \(chainXML)      <target dev='\(disk.target)' bus='virtio'/>
                    </disk>

                """
        }
        let xml = """
            <domain type='\(domainType)'>
              <name>\(Self.escape(name))</name>
              <memory unit='MiB'>64</memory>
              <vcpu>1</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type></os>
              <on_poweroff>destroy</on_poweroff>
              <on_reboot>restart</on_reboot>
              <on_crash>destroy</on_crash>
              <devices>
            \(disksXML)    <controller type='usb' model='none'/>
                <memballoon model='none'/>
              </devices>
            </domain>
            """
        let domain = try connection.defineXML(xml)
        lock.withLock { created.append((domain.uuid, name, disks.map(\.target))) }
        if start { try domain.create() }
        return domain
    }

    /// Takes a disk-only external snapshot of `disk` with libvirt metadata; the overlay (qcow2) is created by
    /// libvirt at `overlayPath` (inside the sandbox; relative = in the sandbox directory). Works on running and on
    /// shut-off guests. The guest's other disks are excluded (`snapshot='no'`).
    @discardableResult
    public func externalSnapshot(
        domain: Domain, name: String, disk: String, overlayPath: String
    ) throws -> DomainSnapshot {
        let targets = lock.withLock { created.first { $0.uuid == domain.uuid }?.targets }
        guard let targets else { throw SandboxError("domain \(domain.name) was not created by this sandbox") }
        guard targets.contains(disk) else { throw SandboxError("domain \(domain.name) has no disk \(disk)") }
        let overlay = try path(overlayPath)
        guard !FileManager.default.fileExists(atPath: overlay) else { throw SandboxError("\(overlay) already exists") }
        try createDirectories((overlay as NSString).deletingLastPathComponent)
        var disksXML = ""
        for target in targets {
            if target == disk {
                disksXML += "<disk name='\(target)' snapshot='external'><driver type='qcow2'/>"
                disksXML += "<source file='\(Self.escape(overlay))'/></disk>"
            } else {
                disksXML += "<disk name='\(target)' snapshot='no'/>"
            }
        }
        let xml = "<domainsnapshot><name>\(Self.escape(name))</name><disks>\(disksXML)</disks></domainsnapshot>"
        let snapshot = try domain.snapshotCreateXML(xml, flags: [.diskOnly, .atomic])
        lock.withLock { formats[overlay] = "qcow2" }
        return snapshot
    }

    // MARK: Teardown

    /// Destroys and undefines (with snapshot/checkpoint metadata) every domain this sandbox defined whose name
    /// still starts with `prefix`, then deletes the sandbox directory. Idempotent; all failures are reported
    /// together after everything possible was removed.
    public func teardown() throws {
        var problems: [String] = []
        let domains = lock.withLock { created }
        var remaining: [(uuid: String, name: String, targets: [String])] = []
        for entry in domains.reversed() {
            do {
                try removeDomain(uuid: entry.uuid)
            } catch {
                problems.append("\(entry.name): \(error)")
                remaining.insert(entry, at: 0)
            }
        }
        lock.withLock { created = remaining }
        if remaining.isEmpty, FileManager.default.fileExists(atPath: directory) {
            do {
                try FileManager.default.removeItem(atPath: directory)
            } catch {
                problems.append("cannot remove \(directory): \(error.localizedDescription)")
            }
        }
        if !problems.isEmpty {
            throw SandboxError("teardown incomplete: " + problems.joined(separator: "; "))
        }
    }

    private func removeDomain(uuid: String) throws {
        let domain: Domain
        do {
            domain = try connection.lookupDomain(uuid: uuid)
        } catch {
            if error.code == LibvirtError.Code.noDomain { return }  // already gone
            throw error
        }
        guard domain.name.hasPrefix(prefix) else {
            // Renamed behind our back: it is no longer recognisably ours, leave it alone.
            throw SandboxError("domain \(uuid) was renamed to \(domain.name); not touching it")
        }
        try Self.stopAndUndefine(domain)
    }

    /// Destroys `domain` if running and undefines it if persistent (a transient one vanishes once destroyed).
    private static func stopAndUndefine(_ domain: Domain) throws(LibvirtError) {
        let gone = [LibvirtError.Code.noDomain, LibvirtError.Code.operationInvalid]
        do {
            if try domain.isActive { try domain.destroy() }
        } catch {
            guard gone.contains(error.code) else { throw error }  // stopped meanwhile
        }
        do {
            if try domain.isPersistent {
                try domain.undefine([.snapshotsMetadata, .checkpointsMetadata, .managedSave, .keepNVRAM])
            }
        } catch {
            guard error.code == LibvirtError.Code.noDomain else { throw error }
        }
    }

    // MARK: Helpers

    private func probeFormat(_ image: String) throws -> String {
        let result = try Command.check(["qemu-img", "info", "--output=json", image])
        guard let object = try? JSONSerialization.jsonObject(with: result.stdout) as? [String: Any],
            let format = object["format"] as? String
        else { throw SandboxError("cannot read the format of \(image) from qemu-img info") }
        return format
    }

    /// `<backingStore>` elements for the chain below `image`, terminated by `<backingStore/>`.
    private func backingChainXML(of image: String) throws -> String {
        let result = try Command.check(["qemu-img", "info", "--backing-chain", "--output=json", image])
        guard let layers = try? JSONSerialization.jsonObject(with: result.stdout) as? [[String: Any]] else {
            throw SandboxError("cannot parse qemu-img info --backing-chain for \(image)")
        }
        var opening = ""
        var closing = ""
        var indent = "      "
        for layer in layers.dropFirst() {
            guard let file = layer["filename"] as? String, let format = layer["format"] as? String else {
                throw SandboxError("incomplete qemu-img info layer for \(image)")
            }
            opening += "\(indent)<backingStore type='file'>\n"
            opening += "\(indent)  <format type='\(Self.escape(format))'/>\n"
            opening += "\(indent)  <source file='\(Self.escape(file))'/>\n"
            closing = "\(indent)</backingStore>\n" + closing
            indent += "  "
        }
        return opening + "\(indent)<backingStore/>\n" + closing
    }

    private func createDirectories(_ dir: String) throws {
        guard dir != directory, !FileManager.default.fileExists(atPath: dir) else { return }
        try createDirectories((dir as NSString).deletingLastPathComponent)
        guard mkdir(dir, 0o755) == 0 || errno == EEXIST else {
            throw SandboxError("cannot create \(dir): \(String(cString: strerror(errno)))")
        }
        try Self.makeAccessibleToQEMU(dir)
    }

    /// Lets QEMU (user libvirt-qemu/qemu under qemu:///system) create and open files in `dir`: owned by that user
    /// (mode 0770) when we are root, else world-writable.
    private static func makeAccessibleToQEMU(_ dir: String) throws {
        if geteuid() == 0, let user = getpwnam("libvirt-qemu") ?? getpwnam("qemu") {
            guard chown(dir, user.pointee.pw_uid, user.pointee.pw_gid) == 0, chmod(dir, 0o770) == 0 else {
                throw SandboxError("cannot hand \(dir) to QEMU: \(String(cString: strerror(errno)))")
            }
        } else {
            guard chmod(dir, 0o777) == 0 else {
                throw SandboxError("cannot chmod \(dir): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// Removes the backing-format header extension from a qcow2 image, so the image names its backing file
    /// without a format (what old qemu-img versions wrote, and what libvirt refuses to start since 6.0).
    public static func removeBackingFormatExtension(qcow2 image: String) throws {
        guard let handle = FileHandle(forUpdatingAtPath: image) else { throw SandboxError("cannot open \(image)") }
        defer { try? handle.close() }
        let header = try handle.read(upToCount: 65536) ?? Data()
        func be32(_ at: Int) -> UInt32 {
            header[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }
        }
        func be64(_ at: Int) -> UInt64 {
            header[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) }
        }
        guard header.count >= 104, be32(0) == 0x5146_49FB else { throw SandboxError("\(image) is not qcow2") }
        let version = be32(4)
        let headerLength = version >= 3 ? Int(be32(100)) : 72
        let backingOffset = Int(be64(8))
        guard backingOffset > headerLength, backingOffset <= header.count else {
            throw SandboxError("\(image) has no backing file name")
        }
        var position = headerLength
        while position + 8 <= backingOffset {
            let type = be32(position)
            let length = Int(be32(position + 4))
            let size = 8 + (length + 7) / 8 * 8
            if type == 0 { break }
            if type == 0xE279_2ACA {
                var rest = Data(header[(position + size)..<backingOffset])
                rest.append(Data(count: size))
                try handle.seek(toOffset: UInt64(position))
                try handle.write(contentsOf: rest)
                return
            }
            position += size
        }
        throw SandboxError("\(image) has no backing format extension")
    }

    static func isSafeName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCII, CharacterSet.alphanumerics.contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy {
            $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0))
        }
    }

    /// Lexically normalises an absolute path: removes ".", "" and resolves ".." components.
    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The relative path from directory `from` to `to` (both absolute).
    static func relativePath(from: String, to: String) -> String {
        let fromParts = normalize(from).split(separator: "/")
        let toParts = normalize(to).split(separator: "/")
        var common = 0
        while common < fromParts.count, common < toParts.count, fromParts[common] == toParts[common] { common += 1 }
        let ups = Array(repeating: "..", count: fromParts.count - common)
        return (ups + toParts[common...].map(String.init)).joined(separator: "/")
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for char in text {
            switch char {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(char)
            }
        }
        return out
    }
}
