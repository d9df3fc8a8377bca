#!/usr/bin/env bash
# Installs the system libraries callbridge links, when they are missing: libopus (Ogg/Opus call
# recordings, through the `audiopus` crate) and pkg-config to find it. Debian/Ubuntu packages.
#
# Safe to repeat: does nothing when `pkg-config --exists opus` already succeeds. Runs apt-get as
# root, or through sudo when not root; otherwise prints the command to run and fails.
set -euo pipefail

if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists opus; then
    exit 0
fi

packages=(libopus-dev pkg-config)
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps.sh: install libopus (development files) and pkg-config with your package manager" >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "system-deps.sh: run as root: apt-get update && apt-get install -y ${packages[*]}" >&2
        exit 1
    fi
fi
echo "system-deps.sh: installing ${packages[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update >&2
"${as_root[@]}" apt-get install -y --no-install-recommends "${packages[@]}" >&2
