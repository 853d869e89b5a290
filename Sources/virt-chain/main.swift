import VirtChainCLI

VirtChain.main()
