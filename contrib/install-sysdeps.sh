#!/usr/bin/env bash
# Install the system packages glacierfs builds and mounts with, when they are missing.
set -euo pipefail
need=()
pkg-config --exists fuse3 2>/dev/null || need+=(libfuse3-dev pkg-config)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v getfattr >/dev/null 2>&1 || need+=(attr)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "glacierfs needs these Debian packages: ${need[*]} (run: sudo apt-get install ${need[*]})" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
