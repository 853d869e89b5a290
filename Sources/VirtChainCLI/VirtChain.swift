import ArgumentParser

public struct VirtChain: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "virt-chain")
    public init() {}
}
