#ifndef VIRT_CHAIN_CLIBVIRT_SHIM_H
#define VIRT_CHAIN_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#endif
