import ArgumentParser
import ChainCore
import ChainOps
import Foundation
import Libvirt

struct SandboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Build a throwaway host (real images, real guests), show its chains and plan them, then remove it.",
        discussion: """
            Every domain the sandbox defines is named vcsbx-XXXXXX-… and every image lives in its own temporary \
            directory; nothing else is touched. Needs a running libvirtd (scripts/sandbox.sh starts one).
            """)

    @Option(name: .long, help: "libvirt URI (default: $LIBVIRT_DEFAULT_URI, then qemu:///system).")
    var connect: String?

    @Flag(name: .long, help: "Keep the sandbox's guests and images (prints how to remove them).")
    var keep = false

    func run() throws {
        try runReporting {
            let uri = Connection.resolveURI(connect)
            let conn: Connection
            do {
                conn = try Connection(uri: uri)
            } catch {
                throw CLIError(
                    "cannot connect to \(uri): \((error as? LibvirtError)?.message ?? "\(error)")",
                    hint: "run scripts/sandbox.sh, which installs libvirt and starts libvirtd, or start libvirtd -d")
            }
            let sandbox = try Sandbox(connection: conn)
            sandbox.keepOnDeinit = keep
            Stderr.write("sandbox: building guests \(sandbox.prefix)* in \(sandbox.directory)\n")
            let scenario = try DemoScenario(sandbox: sandbox)
            let loaded = try LoadedPolicies.load([scenario.policyFile], allowEmpty: false)
            let all = try InventoryReader.fromLibvirt(conn)
            let mine = Inventory(host: all.host, domains: all.domains.filter { $0.name.hasPrefix(sandbox.prefix) })
            let match = loaded.match(mine)

            emit("$ virt-chain show --policies \(scenario.policyFile)\n\n")
            emit(ShowReport(inventory: mine, assignments: match.assignments, conflicts: match.conflicts).text())

            var inventory = mine
            let config = HostConfig(allowedRoots: [ImageProbe.canonical(sandbox.directory)])
            let plan = PlanBuilder.build(
                inventory: &inventory, assignments: match.assignments, config: config,
                policyDigest: loaded.result.digest, measure: true)
            emit("\n$ virt-chain plan --policies \(scenario.policyFile)\n\n")
            emit(PlanRender.text(plan))

            if keep {
                Stderr.write("sandbox: kept. Remove with: virsh undefine --snapshots-metadata / destroy "
                    + "\(sandbox.prefix)*; rm -r \(sandbox.directory)\n")
            } else {
                try sandbox.teardown()
                Stderr.write("sandbox: removed \(sandbox.prefix)* and \(sandbox.directory)\n")
            }
            return Exit.ok
        }
    }
}
