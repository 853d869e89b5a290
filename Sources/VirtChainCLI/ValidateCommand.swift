import ArgumentParser
import ChainCore

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check policy files; print every problem as FILE:LINE:COL: json.path: message.",
        discussion: "Exit 0 when every file is valid, 1 otherwise. A directory means every *.json in it, recursively.")

    @Argument(help: "Policy files or directories.")
    var paths: [String]

    @Flag(name: .long, help: "Accept paths that hold no policy at all.")
    var allowEmpty = false

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one policy file or directory") }
    }

    func run() throws {
        try runReporting {
            let loaded = try LoadedPolicies.load(paths, allowEmpty: allowEmpty)
            let n = loaded.policies.count
            let files = loaded.result.files.count
            emit("\(n) polic\(n == 1 ? "y" : "ies") in \(files) file\(files == 1 ? "" : "s"): valid\n")
            return Exit.ok
        }
    }
}
