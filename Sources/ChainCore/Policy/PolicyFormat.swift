// The policy file format, version 1, as one declarative table. The loader checks files against it, takes its
// defaults from it, and SchemaTests keep `policies/virt-chain.schema.json` equal to it.

public enum PolicyFormat {
    /// The only format version this virt-chain reads.
    public static let version = 1

    /// The keys of one policy object (an element of `policies`).
    public static let policyKeys: [KeySpec] = [
        .required(
            "name", .string(.policyName),
            "Name of the policy, unique across all loaded files: lowercase letters, digits and '-'."),
        .optional(
            "match", .object(matchKeys),
            "Which disks the policy manages: globs on the domain name and on the disk target."),
        .optional(
            "maxDepth", .integer(minimum: 1),
            "Most images a chain may have, counting the active image and the base (base ← a ← b is 3). "
                + "Absent: no limit."),
        .optional(
            "flatten", .enumeration(Flatten.allCases.map(\.rawValue)), default: .string(Flatten.none.rawValue),
            "none: leave the shape alone; keep-base: the chain becomes base ← active; "
                + "full: one self-contained image."),
        .optional(
            "protect", .array(of: .string(.absolutePathGlob), minItems: 0), default: .strings([]),
            "Absolute path globs of images that are never written, moved or deleted "
                + "('*' and '?' do not cross '/', '**' does)."),
        .optional(
            "storage", .object(storageKeys),
            "Where the images of managed chains must live."),
        .optional(
            "snapshotMetadata", .enumeration(SnapshotMetadataMode.allCases.map(\.rawValue)),
            default: .string(SnapshotMetadataMode.prune.rawValue),
            "prune: delete libvirt snapshot metadata whose images left the chain; keep: leave it."),
        .optional(
            "shutoff", .enumeration(ShutoffMode.allCases.map(\.rawValue)),
            default: .string(ShutoffMode.offline.rawValue),
            "offline: reconcile shut-off domains with qemu-img; skip: leave shut-off domains alone."),
        .optional(
            "retired", .enumeration(RetiredMode.allCases.map(\.rawValue)), default: .string(RetiredMode.keep.rawValue),
            "Images merged out of a chain: keep them in place, or delete them (only if nothing references them)."),
        .optional(
            "bandwidthMiBps", .integer(minimum: 0), default: .integer(0),
            "Per-job bandwidth limit in MiB/s; 0 means no limit."),
    ]

    /// The keys of `match`.
    public static let matchKeys: [KeySpec] = [
        .optional(
            "domains", .array(of: .string(.nonEmpty), minItems: 1), default: .strings(["*"]),
            "Globs on the domain name; the policy applies to domains matching any of them."),
        .optional(
            "disks", .array(of: .string(.nonEmpty), minItems: 1), default: .strings(["*"]),
            "Globs on the disk target (vda, sdb, ...); the policy applies to disks matching any of them."),
    ]

    /// The keys of `storage`.
    public static let storageKeys: [KeySpec] = [
        .optional(
            "activeDir", .string(.absolutePath),
            "The active image must live in this directory (absolute path). Absent: it may live anywhere.")
    ]

    /// The keys of a policy file.
    public static let rootKeys: [KeySpec] = [
        .required("version", .formatVersion(version), "Format version of this file; only 1 exists."),
        .required("policies", .array(of: .object(policyKeys), minItems: 0), "The policies this file declares."),
    ]

    /// The whole file.
    public static let root = KeyType.object(rootKeys)
}
