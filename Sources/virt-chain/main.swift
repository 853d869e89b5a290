import VirtChainCLI

// Grow the heap in large steps: reading thousands of domain XML files on several threads otherwise makes malloc
// extend each thread's heap a few pages at a time (thousands of mprotect calls). Address space only: pages are
// still touched only when used. (glibc's mallopt; M_TOP_PAD is -2 in <malloc.h>.)
@_silgen_name("mallopt") func mallopt(_ param: Int32, _ value: Int32) -> Int32
_ = mallopt(-2, 32 << 20)

VirtChain.main()
