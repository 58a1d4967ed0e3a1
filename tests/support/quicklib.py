"""Helpers for the wgpy-quick end-to-end tests: run wgpy-quick inside a namespace with a chosen
userspace implementation, write config files, snapshot a namespace's routing and firewall
state, and a stand-in resolvconf that only writes inside the test's own files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from netns import Netns, Topology, run_checked

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

# The userspace implementations a scenario can run on each side. wgpy-quick starts them
# itself from WG_QUICK_USERSPACE_IMPLEMENTATION (the kernel has no wireguard module here).
IMPLEMENTATIONS = {
    "wireguard-go": "wireguard-go",
    "wgpy-daemon": f"{sys.executable} -m wgpy.cli.daemon",
}
# (side A, side B) combinations every scenario runs with; mixed deployments are the norm.
PAIRS = [
    ("wireguard-go", "wireguard-go"),
    ("wgpy-daemon", "wgpy-daemon"),
    ("wgpy-daemon", "wireguard-go"),
    ("wireguard-go", "wgpy-daemon"),
]
PAIR_IDS = [f"{a}+{b}" for a, b in PAIRS]


def quick_env(implementation: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "WG_QUICK_USERSPACE_IMPLEMENTATION": IMPLEMENTATIONS[implementation],
        "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1",
        "PYTHONPATH": str(REPO / "src"),
    }
    return {**env, **(extra or {})}


def from_example(relative: str, replacements: dict[str, str]) -> str:
    """An examples/ config with its placeholders (and uplink names) replaced."""
    text = (EXAMPLES / relative).read_text()
    for placeholder, value in replacements.items():
        if not placeholder.startswith("<"):  # key maps hold both sides' keys
            assert placeholder in text, f"{placeholder!r} not in examples/{relative}"
        text = text.replace(placeholder, value)
    assert "<" not in text, f"unreplaced placeholder in examples/{relative}:\n{text}"
    return text


def keys(topo: Topology, *names: str) -> dict[str, str]:
    """Placeholders "<NAME private key>" / "<NAME public key>" for fresh key pairs."""
    result = {}
    for name in names:
        private, public = topo.genkey()
        result[f"<{name} private key>"] = private
        result[f"<{name} public key>"] = public
    return result


def write_conf(topo: Topology, ifname: str, text: str, mode: int = 0o600) -> Path:
    """`<tmpdir>/<ifname>.conf` (the file name is what names the interface)."""
    directory = topo.tmpdir / "conf"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{ifname}.conf"
    path.write_text(text)
    path.chmod(mode)
    return path


def wgpy_quick(
    topo: Topology,
    ns: Netns,
    command: str,
    conf: Path,
    implementation: str = "wireguard-go",
    check: bool = True,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`python -m wgpy.cli.wg_quick COMMAND CONF` inside ns; the interface is registered with
    the topology so cleanup removes it (and its UAPI socket) even when the test fails."""
    ifname = conf.name.removesuffix(".conf")
    if command == "up" and ifname not in topo.uapi_interfaces:
        topo.uapi_interfaces.append(ifname)
        topo.links.append((ns, ifname))
        topo._save_registry()
    env = quick_env(implementation, extra_env)
    argv = [sys.executable, "-m", "wgpy.cli.wg_quick", command, str(conf)]
    return ns.run(argv, check=check, env=env, timeout=timeout)


@dataclass(frozen=True)
class Snapshot:
    """What `up` may change and `down` must restore, as text."""

    rules4: str
    rules6: str
    routes4: str
    routes6: str
    nft: str
    links: str

    def differences(self, other: Snapshot) -> list[str]:
        return [
            name for name in self.__dataclass_fields__ if getattr(self, name) != getattr(other, name)
        ]


def _without_link_local(text: str) -> str:
    # The kernel adds IPv6 link-local routes when links come up; they are not ours to compare.
    return "\n".join(line for line in text.splitlines() if "fe80::" not in line)


def _without_ifindex(text: str) -> str:
    # "3: wg0: <...> ... state UNKNOWN": a re-created link gets a new index; TUN state varies.
    lines = [line.split(": ", 1)[1] for line in text.splitlines()]
    return "\n".join(line.replace("state UNKNOWN ", "") for line in lines)


def snapshot(ns: Netns) -> Snapshot:
    return Snapshot(
        rules4=ns.run(["ip", "-4", "rule", "show"]).stdout,
        rules6=ns.run(["ip", "-6", "rule", "show"]).stdout,
        routes4=ns.run(["ip", "-4", "route", "show", "table", "all"]).stdout,
        routes6=_without_link_local(ns.run(["ip", "-6", "route", "show", "table", "all"]).stdout),
        nft=ns.run(["nft", "list", "ruleset"]).stdout,
        links=_without_ifindex(ns.run(["ip", "-o", "link", "show"]).stdout),
    )


def assert_restored(before: Snapshot, after: Snapshot) -> None:
    differing = before.differences(after)
    assert not differing, "\n".join(
        f"--- {name} before:\n{getattr(before, name)}\n--- {name} after:\n{getattr(after, name)}"
        for name in differing
    )


def no_dad(ns: Netns) -> None:
    """IPv6 addresses usable at once (and their routes stable) in this namespace."""
    for name in ("default", "all"):
        ns.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{name}.accept_dad=0"])


def enable_forwarding(ns: Netns) -> None:
    ns.run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    ns.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"])


def remote_address_seen(topo: Topology, server: Netns, client: Netns, address: str,
                        port: int = 7000) -> str:
    """Connect from client to address:port where server runs ncat that answers with the
    source address it saw; return that address."""
    server.popen(["ncat", "-l", "-k", "-p", str(port), "--sh-exec",
                        "echo $NCAT_REMOTE_ADDR"])
    result = None

    def answered() -> bool:
        nonlocal result
        attempt = client.run(["ncat", "-w", "2", "--recv-only", address, str(port)],
                             check=False, timeout=10)
        result = attempt.stdout.strip()
        return attempt.returncode == 0 and bool(result)

    topo.wait_for(answered, timeout=10, message=f"an answer from {address}:{port}")
    assert result is not None
    return result


# --- stand-in resolvconf ------------------------------------------------------------------------

RESOLVCONF_STUB = """#!/bin/bash
# Test stand-in for resolvconf(8): keeps records in $WGQ_RESOLVCONF_DIR and writes the
# namespace's own resolver file ($WGQ_NETNS_RESOLV = /etc/netns/NS/resolv.conf), never
# /etc/resolv.conf. Logs each call to $WGQ_RESOLVCONF_DIR/calls.
set -e
echo "$*" >> "$WGQ_RESOLVCONF_DIR/calls"
regenerate() {
    if compgen -G "$WGQ_RESOLVCONF_DIR/rec.*" > /dev/null; then
        cat "$WGQ_RESOLVCONF_DIR"/rec.* > "$WGQ_NETNS_RESOLV"
    else
        cat "$WGQ_RESOLVCONF_DIR/original" > "$WGQ_NETNS_RESOLV"
    fi
}
case "$1" in
    -a) cat > "$WGQ_RESOLVCONF_DIR/rec.$2"; regenerate ;;
    -d) rm -f "$WGQ_RESOLVCONF_DIR/rec.$2"; regenerate ;;
    -l) cat "$WGQ_RESOLVCONF_DIR/rec.$2" ;;
    *) echo "unsupported: $*" >&2; exit 2 ;;
esac
"""


@dataclass
class NamespaceResolver:
    """/etc/netns/NS/resolv.conf plus a stand-in resolvconf first on PATH."""

    netns_dir: Path
    state_dir: Path
    bin_dir: Path
    original: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "WGQ_RESOLVCONF_DIR": str(self.state_dir),
            "WGQ_NETNS_RESOLV": str(self.netns_dir / "resolv.conf"),
        }

    def calls(self) -> list[str]:
        path = self.state_dir / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def remove(self) -> None:
        shutil.rmtree(self.netns_dir, ignore_errors=True)


def namespace_resolver(topo: Topology, ns: Netns) -> NamespaceResolver:
    netns_dir = Path("/etc/netns") / ns.name
    netns_dir.mkdir(parents=True, exist_ok=False)
    original = "nameserver 192.0.2.53\n"
    (netns_dir / "resolv.conf").write_text(original)
    state_dir = topo.tmpdir / f"resolvconf-{ns.name}"
    bin_dir = state_dir / "bin"
    bin_dir.mkdir(parents=True)
    (state_dir / "original").write_text(original)
    stub = bin_dir / "resolvconf"
    stub.write_text(RESOLVCONF_STUB)
    stub.chmod(0o755)
    return NamespaceResolver(netns_dir, state_dir, bin_dir, original)


def resolv_conf_seen_in(ns: Netns) -> str:
    """/etc/resolv.conf as processes in ns see it (ip netns exec bind-mounts the netns file)."""
    return ns.run(["cat", "/etc/resolv.conf"]).stdout


__all__ = [
    "EXAMPLES", "IMPLEMENTATIONS", "PAIRS", "PAIR_IDS", "NamespaceResolver", "Snapshot",
    "assert_restored", "enable_forwarding", "from_example", "keys", "namespace_resolver",
    "no_dad", "quick_env",
    "remote_address_seen", "resolv_conf_seen_in", "run_checked", "snapshot", "wgpy_quick",
    "write_conf",
]
