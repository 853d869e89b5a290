import ArgumentParser

/// `virt-chain`: keeps libvirt/QEMU disk backing chains in the shape declared by JSON policies.
public struct VirtChain: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "virt-chain",
        abstract: "Keep libvirt/QEMU disk backing chains in the shape your policies declare.",
        discussion: """
            Exit codes: 0 compliant / valid / all applied; 1 error (bad input, observation failed); \
            2 changes pending (plan --detailed-exitcode); 3 some disks blocked (a reason per disk).
            Results go to stdout; diagnostics and progress to stderr.
            """,
        version: "0.1.0",
        subcommands: [ValidateCommand.self, ShowCommand.self, PlanCommand.self, SandboxCommand.self]
    )
    public init() {}
}
