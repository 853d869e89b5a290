#ifndef VIRT_CHAIN_CLIBVIRT_SHIM_H
#define VIRT_CHAIN_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>

/* libvirt's default authentication callbacks (console prompts, polkit), as a function: Swift 6 refuses to read the
   mutable global `virConnectAuthPtrDefault` directly. */
static inline virConnectAuthPtr virt_chain_default_auth(void) {
    return virConnectAuthPtrDefault;
}
#endif
