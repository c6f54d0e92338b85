#!/usr/bin/env bash
# Install the system packages glacierfs builds and mounts with, when they are missing.
# With --systemd: debootstrap and systemd-nspawn, for `make systemd-test`.
# With --bench: the tools `make bench` compares glacierfs with (rclone, the peer a user
# would otherwise mount; fio, for random reads). They are optional: without root the
# benchmark says what it skipped, so that call only advises and never fails.
set -euo pipefail
need=()
if [ "${1:-}" = "--systemd" ]; then
    command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
    command -v systemd-nspawn >/dev/null 2>&1 || need+=(systemd-container)
    [ ${#need[@]} -eq 0 ] && exit 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "make systemd-test needs root and ${need[*]}" >&2
        exit 1
    fi
elif [ "${1:-}" = "--bench" ]; then
    command -v rclone >/dev/null 2>&1 || need+=(rclone)
    command -v fio >/dev/null 2>&1 || need+=(fio)
    [ ${#need[@]} -eq 0 ] && exit 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "make bench compares with ${need[*]} when installed (run: sudo apt-get install ${need[*]})" >&2
        exit 0
    fi
else
    pkg-config --exists fuse3 2>/dev/null || need+=(libfuse3-dev pkg-config)
    command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
    command -v getfattr >/dev/null 2>&1 || need+=(attr)
    command -v rsync >/dev/null 2>&1 || need+=(rsync)  # the tests and the demo copy a mount with it
    command -v curl >/dev/null 2>&1 || need+=(curl)  # a test runs the emulator help's example
    [ ${#need[@]} -eq 0 ] && exit 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "glacierfs needs these Debian packages: ${need[*]} (run: sudo apt-get install ${need[*]})" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
