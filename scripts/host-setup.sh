#!/usr/bin/env bash
# Installs what virt-chain needs (Debian packages) and starts libvirt's daemons if they are not running.
# Safe to run repeatedly. Needs root for the install and the daemons.
set -euo pipefail

packages=(libvirt-dev libvirt-daemon-system qemu-utils qemu-system-x86 libxml2-utils pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "host-setup: installing ${missing[*]}" >&2
    if [ "$(id -u)" -ne 0 ]; then
        echo "host-setup: need root to install packages: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
fi

uri=qemu:///system
if ! virsh -c "$uri" version >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "host-setup: libvirtd is not reachable at $uri and I am not root to start it" >&2
        exit 1
    fi
    echo "host-setup: starting virtlogd and libvirtd" >&2
    mkdir -p /var/log/libvirt /run/libvirt
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
    for _ in $(seq 1 60); do
        virsh -c "$uri" version >/dev/null 2>&1 && break
        sleep 0.5
    done
fi
if ! virsh -c "$uri" version >/dev/null 2>&1; then
    echo "host-setup: libvirtd did not answer at $uri" >&2
    exit 1
fi
echo "host-setup: libvirt ready ($(virsh -c "$uri" version 2>/dev/null | grep -i 'running hypervisor' | sed 's/^ *//'))" >&2
