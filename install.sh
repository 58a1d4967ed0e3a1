#!/usr/bin/env bash
# Installs what wgpy, its demo, its tests and its benchmarks need on a Debian machine, as root:
# the system tools (apt) and wgpy itself with its test extras (pip, editable, from this checkout).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"
export DEBIAN_FRONTEND=noninteractive
export PIP_BREAK_SYSTEM_PACKAGES=1   # Debian's python3 is "externally managed"
export PIP_ROOT_USER_ACTION=ignore
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (apt-get)" >&2
    exit 1
fi
# The kernel the kernel test group (tests/kernel) boots in a VM: Debian's plain 6.12 kernel
# (bookworm-security), which ships wireguard.ko. It is named in the same command as
# wireguard-tools, which recommends wireguard-modules (every Debian kernel image provides it):
# alone, apt picks the first provider, linux-image-6.12-rt-amd64 (that is how the group came to
# boot the PREEMPT_RT flavour); named here, this package satisfies it and no other kernel comes.
KERNEL_PACKAGE=linux-image-6.12-amd64
apt-get update -q
apt-get install -y -q iproute2 iptables nftables wireguard-go wireguard-tools iperf3 \
    iputils-ping ncat "$KERNEL_PACKAGE"
# to build the optional C fast path (wgpy._fastpath): without them wgpy runs pure Python
apt-get install -y -q gcc python3-dev libssl-dev
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get install -y -q python3 python3-pip python3-venv
fi
python3 -m pip install -q -e '.[test]'
python3 -c 'from wgpy import fastpath; print("wgpy per-packet fast path:", fastpath.DESCRIPTION)'

# The kernel test group (tests/kernel) boots $KERNEL_PACKAGE (above) under qemu with
# virtme-ng (its own venv, pinned). Each step is skipped when already done, so a second
# run costs a few seconds.
VNG_VERSION=1.42
VNG_VENV=/opt/wgpy-vng
missing=()
dpkg -s "$KERNEL_PACKAGE" >/dev/null 2>&1 || missing+=("$KERNEL_PACKAGE")
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ "$("$VNG_VENV/bin/vng" --version 2>/dev/null)" != "virtme-ng $VNG_VERSION" ]; then
    python3 -m venv "$VNG_VENV"
    "$VNG_VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi

# The kernel's own WireGuard selftest (tools/testing/selftests/wireguard/netns.sh), unmodified,
# runs in the VM too (tests/kernel/guest/test_kernel_netns_sh.py). It is kernel code, so it is
# not in this repository: Debian's linux-source package ships the kernel tree as a tarball, and
# the one file is extracted from it (the tarball itself stays where apt put it). Its version is
# recorded next to it; a second run with the same version extracts nothing. The script needs
# bash, ip and ss (iproute2), wg, ping/ping6, iperf3, ncat and iptables, installed above.
SOURCE_PACKAGE=linux-source-6.12
SOURCE_TARBALL=/usr/src/linux-source-6.12.tar.xz
SELFTEST_DIR=/opt/wgpy-kernel-selftest
SELFTEST_MEMBER=linux-source-6.12/tools/testing/selftests/wireguard/netns.sh
dpkg -s "$SOURCE_PACKAGE" >/dev/null 2>&1 \
    || apt-get install -y -q --no-install-recommends "$SOURCE_PACKAGE"
source_version=$(dpkg-query -W -f '${Version}' "$SOURCE_PACKAGE")
if [ ! -s "$SELFTEST_DIR/netns.sh" ] \
        || [ "$(cat "$SELFTEST_DIR/source-version" 2>/dev/null)" != "$SOURCE_PACKAGE $source_version" ]; then
    mkdir -p "$SELFTEST_DIR"
    tar -xJf "$SOURCE_TARBALL" -O "$SELFTEST_MEMBER" > "$SELFTEST_DIR/netns.sh.new"
    chmod 0755 "$SELFTEST_DIR/netns.sh.new"
    mv "$SELFTEST_DIR/netns.sh.new" "$SELFTEST_DIR/netns.sh"
    echo "$SOURCE_PACKAGE $source_version" > "$SELFTEST_DIR/source-version"
fi
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
