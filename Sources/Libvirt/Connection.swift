internal import CLibvirt
import Foundation

/// A connection to one libvirt daemon (`virConnectPtr`), closed when the last reference goes away.
///
/// Thread safety: libvirt connections may be used from several threads at once; libvirt's error state is
/// per thread, and every method reads it synchronously on the calling thread. Hence `@unchecked Sendable`.
public final class Connection: @unchecked Sendable {
    let handle: OpaquePointer
    /// The URI libvirt reports for this connection (canonical form, e.g. "qemu:///system").
    public let uri: String

    /// The URI used when none is given: `LIBVIRT_DEFAULT_URI` if set and not empty, else "qemu:///system".
    public static func resolveURI(
        _ uri: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        if let uri, !uri.isEmpty { return uri }
        if let env = environment["LIBVIRT_DEFAULT_URI"], !env.isEmpty { return env }
        return "qemu:///system"
    }

    /// Opens a connection to `uri` (nil → `resolveURI(nil)`), read-write unless `readOnly`, with libvirt's default
    /// authentication callbacks (as virsh does: polkit, SASL/ssh prompts on the terminal).
    public init(uri: String?, readOnly: Bool = false) throws(LibvirtError) {
        LibvirtRuntime.ensure()
        let resolved = Self.resolveURI(uri)
        let flags = readOnly ? VIR_CONNECT_RO.rawValue : 0
        let handle = try unwrap(virConnectOpenAuth(resolved, virt_chain_default_auth(), flags), "virConnectOpenAuth")
        self.handle = handle
        self.uri = takeString(virConnectGetURI(handle)) ?? resolved
    }

    deinit {
        virConnectClose(handle)
    }

    /// The host name of the hypervisor host (`virConnectGetHostname`).
    public var hostname: String {
        get throws(LibvirtError) {
            try unwrap(takeString(virConnectGetHostname(handle)), "virConnectGetHostname")
        }
    }

    /// The libvirt library version of the daemon as major * 1,000,000 + minor * 1,000 + release (9.0.0 = 9000000).
    public var libvirtVersion: UInt64 {
        get throws(LibvirtError) {
            var version: UInt = 0
            try check(virConnectGetLibVersion(handle, &version), "virConnectGetLibVersion")
            return UInt64(version)
        }
    }

    /// The hypervisor version in the same encoding as `libvirtVersion` (QEMU 7.2.0 = 7002000).
    public var hypervisorVersion: UInt64 {
        get throws(LibvirtError) {
            var version: UInt = 0
            try check(virConnectGetVersion(handle, &version), "virConnectGetVersion")
            return UInt64(version)
        }
    }

    /// Formats a version number from `libvirtVersion` / `hypervisorVersion` as "major.minor.release".
    public static func formatVersion(_ version: UInt64) -> String {
        "\(version / 1_000_000).\(version / 1_000 % 1_000).\(version % 1_000)"
    }

    /// Every domain known to the daemon, running and shut off, persistent and transient.
    public func listAllDomains() throws(LibvirtError) -> [Domain] {
        var list: UnsafeMutablePointer<OpaquePointer?>?
        let count = try check(virConnectListAllDomains(handle, &list, 0), "virConnectListAllDomains")
        guard let list else { return [] }
        defer { free(list) }
        var domains: [Domain] = []
        domains.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            // Each element carries one reference; `Domain` takes ownership and frees it in deinit.
            if let pointer = list[index] { domains.append(Domain(handle: pointer, connection: self)) }
        }
        return domains
    }

    /// The domain named `name`; throws `Code.noDomain` when there is none.
    public func lookupDomain(name: String) throws(LibvirtError) -> Domain {
        let pointer = try unwrap(virDomainLookupByName(handle, name), "virDomainLookupByName")
        return Domain(handle: pointer, connection: self)
    }

    /// The domain with UUID `uuid` (canonical string form); throws `Code.noDomain` when there is none.
    public func lookupDomain(uuid: String) throws(LibvirtError) -> Domain {
        let pointer = try unwrap(virDomainLookupByUUIDString(handle, uuid), "virDomainLookupByUUIDString")
        return Domain(handle: pointer, connection: self)
    }

    /// Defines (or redefines) a persistent domain from its XML; does not start it.
    public func defineXML(_ xml: String) throws(LibvirtError) -> Domain {
        let pointer = try unwrap(virDomainDefineXML(handle, xml), "virDomainDefineXML")
        return Domain(handle: pointer, connection: self)
    }

    /// Creates and starts a transient domain from its XML; it disappears when it stops.
    public func createXML(_ xml: String) throws(LibvirtError) -> Domain {
        let pointer = try unwrap(virDomainCreateXML(handle, xml, 0), "virDomainCreateXML")
        return Domain(handle: pointer, connection: self)
    }

    /// Bulk block statistics of every domain (`virConnectGetAllDomainStats` with `VIR_DOMAIN_STATS_BLOCK`),
    /// keyed by domain name, then by statistic name (`block.count`, `block.0.name`, `block.0.path`,
    /// `block.0.backingIndex`, `block.0.allocation`, …). With `backing`, one `block.N.*` group per chain member.
    public func allDomainBlockStats(backing: Bool = true) throws(LibvirtError) -> [String: [String: TypedValue]] {
        var records: UnsafeMutablePointer<UnsafeMutablePointer<virDomainStatsRecord>?>?
        let flags = backing ? VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING.rawValue : 0
        let count = try check(
            virConnectGetAllDomainStats(handle, VIR_DOMAIN_STATS_BLOCK.rawValue, &records, flags),
            "virConnectGetAllDomainStats")
        guard let records else { return [:] }
        defer { virDomainStatsRecordListFree(records) }
        var result: [String: [String: TypedValue]] = [:]
        for index in 0..<Int(count) {
            guard let record = records[index] else { continue }
            guard let dom = record.pointee.dom, let name = virDomainGetName(dom) else { continue }
            result[String(cString: name)] = decodeTypedParameters(record.pointee.params, record.pointee.nparams)
        }
        return result
    }
}

/// One value of a libvirt typed parameter (`virTypedParameter`).
public enum TypedValue: Sendable, Equatable, Hashable, CustomStringConvertible {
    case int(Int32)
    case uint(UInt32)
    case llong(Int64)
    case ullong(UInt64)
    case double(Double)
    case boolean(Bool)
    case string(String)

    /// The value as an unsigned 64-bit integer when it is a non-negative integer, else nil.
    public var uint64Value: UInt64? {
        switch self {
        case .int(let v): v >= 0 ? UInt64(v) : nil
        case .uint(let v): UInt64(v)
        case .llong(let v): v >= 0 ? UInt64(v) : nil
        case .ullong(let v): v
        case .boolean(let v): v ? 1 : 0
        case .double, .string: nil
        }
    }

    /// The value when it is a string, else nil.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value printed plainly.
    public var description: String {
        switch self {
        case .int(let v): String(v)
        case .uint(let v): String(v)
        case .llong(let v): String(v)
        case .ullong(let v): String(v)
        case .double(let v): String(v)
        case .boolean(let v): String(v)
        case .string(let v): v
        }
    }
}

/// Decodes a C array of typed parameters into a dictionary (the caller keeps ownership of the array).
func decodeTypedParameters(_ params: UnsafeMutablePointer<virTypedParameter>?, _ count: Int32) -> [String: TypedValue] {
    guard let params, count > 0 else { return [:] }
    var result: [String: TypedValue] = [:]
    for index in 0..<Int(count) {
        let param = params[index]
        let field = withUnsafeBytes(of: param.field) { bytes -> String in
            let end = bytes.firstIndex(of: 0) ?? bytes.endIndex
            return String(decoding: bytes[..<end], as: UTF8.self)
        }
        let value: TypedValue
        switch UInt32(bitPattern: param.type) {
        case VIR_TYPED_PARAM_INT.rawValue: value = .int(param.value.i)
        case VIR_TYPED_PARAM_UINT.rawValue: value = .uint(param.value.ui)
        case VIR_TYPED_PARAM_LLONG.rawValue: value = .llong(param.value.l)
        case VIR_TYPED_PARAM_ULLONG.rawValue: value = .ullong(param.value.ul)
        case VIR_TYPED_PARAM_DOUBLE.rawValue: value = .double(param.value.d)
        case VIR_TYPED_PARAM_BOOLEAN.rawValue: value = .boolean(param.value.b != 0)
        case VIR_TYPED_PARAM_STRING.rawValue: value = .string(param.value.s.map { String(cString: $0) } ?? "")
        default: continue
        }
        result[field] = value
    }
    return result
}
