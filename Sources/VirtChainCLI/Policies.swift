import ChainCore
import ChainOps

/// Policies loaded for a run, with their digest for plan fingerprints.
struct LoadedPolicies {
    var result: PolicyLoadResult

    var policies: [Policy] { result.policies }

    /// Loads `paths`; every diagnostic is printed to stderr and the run fails (exit 1) if there is any.
    static func load(_ paths: [String], allowEmpty: Bool) throws -> LoadedPolicies {
        let result = PolicyLoader.load(paths: paths)
        var problems = result.diagnostics
        if problems.isEmpty, let empty = result.emptyRunError(allowEmpty: allowEmpty) { problems.append(empty) }
        if !problems.isEmpty {
            for d in problems { Stderr.write("\(d)\n") }
            let n = problems.count
            throw CLIError("\(n) problem\(n == 1 ? "" : "s") in the policies; nothing was done")
        }
        return LoadedPolicies(result: result)
    }

    struct Match {
        var assignments: [DiskKey: Policy]
        var conflicts: [DiskKey: String]
        var diagnostics: [PolicyDiagnostic]
    }

    /// The policy of each chain disk; disks matched by two policies get a conflict message instead.
    func match(_ inventory: Inventory) -> Match {
        let (assignments, conflicts, diagnostics) = PolicySet(policies).assignments(inventory.domains)
        return Match(assignments: assignments, conflicts: conflicts, diagnostics: diagnostics)
    }
}

/// Loads the host configuration (`--config FILE`, else /etc/virt-chain/config.json, else defaults).
func loadHostConfig(_ path: String?) throws -> HostConfig {
    let result = HostConfigLoader.load(path: path, resolve: { ImageProbe.canonical($0) })
    if !result.diagnostics.isEmpty {
        for d in result.diagnostics { Stderr.write("\(d)\n") }
        throw CLIError("invalid host configuration \(result.file ?? path ?? HostConfigLoader.defaultPath)")
    }
    return result.config ?? .defaults
}
