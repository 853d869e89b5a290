#!/usr/bin/env bash
# The whole test suite: unit tests of the pure planner and parsers, and integration tests against a real
# libvirtd with real QEMU guests and real images. Installs and starts what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
swift build --build-tests
swift test --skip-build "$@"
