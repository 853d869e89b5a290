#!/usr/bin/env bash
# Runs virt-chain on a built-in sandbox: real images and real guests (named vcsbx-*) in a temporary directory,
# shows their chains and plans them against example policies, then removes everything it created.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/host-setup.sh
swift build -c release --product virt-chain >&2
exec .build/release/virt-chain sandbox "$@"
