import VirtChainCLI

await VirtChain.main()
