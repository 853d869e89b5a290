internal import CLibvirt

/// A failed libvirt call: libvirt's own error (code, domain, message) plus the C function that failed.
///
/// libvirt keeps its "last error" per OS thread, so every wrapper reads it synchronously right after the
/// failing C call (see `check(_:_:)` and `unwrap(_:_:)`), on the same thread and with no suspension point.
public struct LibvirtError: Error, CustomStringConvertible, Sendable, Equatable {
    /// libvirt's error number (`virErrorNumber`); compare with the constants in `LibvirtError.Code`.
    public var code: Int32
    /// The libvirt subsystem that raised the error (`virErrorDomain`, e.g. 10 = QEMU driver).
    public var domain: Int32
    /// libvirt's human-readable message, e.g. "Domain not found: no domain with matching name 'x'".
    public var message: String
    /// The C function that failed, e.g. "virDomainBlockCommit".
    public var operation: String

    /// Creates an error from its parts (used by tests and by code that maps other failures).
    public init(code: Int32, domain: Int32 = 0, message: String, operation: String) {
        self.code = code
        self.domain = domain
        self.message = message
        self.operation = operation
    }

    /// "<operation>: <libvirt message>".
    public var description: String { "\(operation): \(message)" }

    /// Well-known values of `code` (libvirt's `virErrorNumber`).
    public enum Code {
        /// No error was recorded (`VIR_ERR_OK`); used when a call failed without setting one.
        public static let ok = Int32(VIR_ERR_OK.rawValue)
        /// Internal error (`VIR_ERR_INTERNAL_ERROR`).
        public static let internalError = Int32(VIR_ERR_INTERNAL_ERROR.rawValue)
        /// The function is not supported by this driver (`VIR_ERR_NO_SUPPORT`, 3).
        public static let noSupport = Int32(VIR_ERR_NO_SUPPORT.rawValue)
        /// Cannot connect to the hypervisor (`VIR_ERR_NO_CONNECT`, 5).
        public static let noConnect = Int32(VIR_ERR_NO_CONNECT.rawValue)
        /// Invalid domain object (`VIR_ERR_INVALID_DOMAIN`, 7).
        public static let invalidDomain = Int32(VIR_ERR_INVALID_DOMAIN.rawValue)
        /// Invalid function argument (`VIR_ERR_INVALID_ARG`, 8).
        public static let invalidArg = Int32(VIR_ERR_INVALID_ARG.rawValue)
        /// A command to the hypervisor failed (`VIR_ERR_OPERATION_FAILED`, 9).
        public static let operationFailed = Int32(VIR_ERR_OPERATION_FAILED.rawValue)
        /// Malformed XML (`VIR_ERR_XML_ERROR`, 27).
        public static let xmlError = Int32(VIR_ERR_XML_ERROR.rawValue)
        /// Detail of an XML error, e.g. malformed domain XML (`VIR_ERR_XML_DETAIL`, 35).
        public static let xmlDetail = Int32(VIR_ERR_XML_DETAIL.rawValue)
        /// The domain already exists (`VIR_ERR_DOM_EXIST`, 28).
        public static let domainExists = Int32(VIR_ERR_DOM_EXIST.rawValue)
        /// Operation forbidden on a read-only connection (`VIR_ERR_OPERATION_DENIED`, 29).
        public static let operationDenied = Int32(VIR_ERR_OPERATION_DENIED.rawValue)
        /// A system call failed (`VIR_ERR_SYSTEM_ERROR`, 38).
        public static let systemError = Int32(VIR_ERR_SYSTEM_ERROR.rawValue)
        /// Domain not found (`VIR_ERR_NO_DOMAIN`, 42).
        public static let noDomain = Int32(VIR_ERR_NO_DOMAIN.rawValue)
        /// Authentication failed (`VIR_ERR_AUTH_FAILED`, 45).
        public static let authFailed = Int32(VIR_ERR_AUTH_FAILED.rawValue)
        /// Operation not valid in the current state, e.g. "domain is not running" (`VIR_ERR_OPERATION_INVALID`, 55).
        public static let operationInvalid = Int32(VIR_ERR_OPERATION_INVALID.rawValue)
        /// Unsupported configuration (`VIR_ERR_CONFIG_UNSUPPORTED`, 67).
        public static let configUnsupported = Int32(VIR_ERR_CONFIG_UNSUPPORTED.rawValue)
        /// Operation timed out (`VIR_ERR_OPERATION_TIMEOUT`, 68).
        public static let operationTimeout = Int32(VIR_ERR_OPERATION_TIMEOUT.rawValue)
        /// Domain snapshot not found (`VIR_ERR_NO_DOMAIN_SNAPSHOT`, 72).
        public static let noDomainSnapshot = Int32(VIR_ERR_NO_DOMAIN_SNAPSHOT.rawValue)
        /// Prevented by a block job, e.g. "not ready for pivot yet" (`VIR_ERR_BLOCK_COPY_ACTIVE`, 83).
        public static let blockCopyActive = Int32(VIR_ERR_BLOCK_COPY_ACTIVE.rawValue)
        /// Operation unsupported by the hypervisor (`VIR_ERR_OPERATION_UNSUPPORTED`, 84).
        public static let operationUnsupported = Int32(VIR_ERR_OPERATION_UNSUPPORTED.rawValue)
    }

    /// Reads and clears the calling thread's last libvirt error. Call synchronously right after the failing C call.
    static func last(_ operation: String) -> LibvirtError {
        guard let err = virGetLastError() else {
            return LibvirtError(
                code: Code.ok, domain: 0, message: "failed without a libvirt error message", operation: operation)
        }
        let message = err.pointee.message.map { String(cString: $0) } ?? "unknown libvirt error"
        let result = LibvirtError(
            code: err.pointee.code, domain: err.pointee.domain, message: message, operation: operation)
        virResetLastError()
        return result
    }
}

/// Throws the thread's last libvirt error when `rc` is negative; returns `rc` otherwise.
@discardableResult
func check(_ rc: Int32, _ operation: String) throws(LibvirtError) -> Int32 {
    guard rc >= 0 else { throw LibvirtError.last(operation) }
    return rc
}

/// Throws the thread's last libvirt error when `pointer` is nil; returns it otherwise.
func unwrap<T>(_ pointer: T?, _ operation: String) throws(LibvirtError) -> T {
    guard let pointer else { throw LibvirtError.last(operation) }
    return pointer
}

/// One-time process-wide libvirt setup: `virInitialize()` and silencing the default stderr error printer.
enum LibvirtRuntime {
    /// Evaluated once (Swift guarantees thread-safe lazy initialisation of static lets).
    static let initialized: Bool = {
        let rc = virInitialize()
        virSetErrorFunc(nil) { _, _ in }
        return rc == 0
    }()

    /// Ensures the one-time setup ran; cheap after the first call.
    static func ensure() {
        _ = initialized
    }
}

/// Converts a `char*` owned by the caller into a `String` and frees it.
func takeString(_ pointer: UnsafeMutablePointer<CChar>?) -> String? {
    guard let pointer else { return nil }
    defer { free(pointer) }
    return String(cString: pointer)
}

/// Calls `body` with a C string for `value`, or with nil when `value` is nil.
@discardableResult
func withOptionalCString<R, E: Error>(
    _ value: String?, _ body: (UnsafePointer<CChar>?) throws(E) -> R
) throws(E) -> R {
    guard let value else { return try body(nil) }
    // `withCString` is rethrows-untyped; route the typed error through a Result.
    let result: Result<R, E> = value.withCString { pointer in
        do throws(E) {
            return .success(try body(pointer))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}
