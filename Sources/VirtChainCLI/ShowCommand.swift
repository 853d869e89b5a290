import ArgumentParser
import ChainCore
import ChainOps

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show every disk's backing chain, what shares it, and whether it meets its policy.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

    @OptionGroup var source: SourceOptions

    @Option(name: .long, help: "Policy file or directory; shows the policy of each disk and whether it complies.")
    var policies: [String] = []

    @Option(name: .long, help: "Host configuration file (default /etc/virt-chain/config.json).")
    var config: String?

    @Option(name: .long, help: "Output format: text or json.")
    var format: Format = .text

    @Argument(help: "Only these domains (default: all).")
    var domains: [String] = []

    func run() throws {
        try runReporting {
            var loaded: LoadedPolicies?
            if !policies.isEmpty {
                loaded = try LoadedPolicies.load(policies, allowEmpty: true)
            }
            let inventory = try source.inventory(names: domains)
            let match = loaded?.match(inventory)
            let report = ShowReport(
                inventory: inventory, assignments: match?.assignments ?? [:], conflicts: match?.conflicts ?? [:],
                only: domains)
            switch format {
            case .text: emit(report.text())
            case .json: report.writeJSON { emit($0) }
            }
            return Exit.ok
        }
    }
}
