"""Building blocks for our adaptation of the kernel's WireGuard selftest (netns.sh).

The kernel's tools/testing/selftests/wireguard/netns.sh creates each `wg0` in one namespace
and moves it into another: the interface's UDP socket stays where the interface was created
(the shared `$ns0` with its loopback "outside"), its packets appear where it was moved to. A
userspace implementation does the same thing when its daemon runs in the socket's namespace
and its TUN is moved away (https://www.wireguard.com/netns/). `add_link` hides which of the
three we run:

    "wgpy"          python -m wgpy.cli.daemon -f IFNAME, started in socket_ns
    "wireguard-go"  wireguard-go IFNAME, started in socket_ns
    "kernel"        ip link add IFNAME type wireguard, in socket_ns (needs the module)

    link = add_link(topo, "wgpy", socket_ns=ns0, into=ns1)
    link.set("listen-port", "1", "private-key", link.key_file(private))   # the real `wg set`
    link.move(ns0); link.delete()

`wg` always runs in the namespace the link is in now: the kernel's netlink needs that, the
userspace implementations answer on /var/run/wireguard/IFNAME.sock from anywhere. Interface
names are unique machine-wide (Topology.ifname) because those socket paths are shared.

Everything here is built on tests/support/netns.py: a Topology owns what it makes, removes it even
when a test fails, and kills only its own processes.
"""

from __future__ import annotations

import ipaddress
import json
import re
import select
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netns import (
    WIREGUARD_RUN_DIR,
    CommandFailed,
    Netns,
    Topology,
    WgDump,
    parse_wg_dump,
    wait_for,
)

IMPLEMENTATIONS = ("wgpy", "wireguard-go", "kernel")
USERSPACE = ("wgpy", "wireguard-go")


@dataclass
class WgLink:
    """One WireGuard interface, of implementation `impl`, made by `add_link`."""

    topo: Topology
    impl: str
    ifname: str
    ns: Netns  # where the interface is now
    socket_ns: Netns  # where it was created: its UDP socket lives here
    process: subprocess.Popen[Any] | None = None  # the daemon (userspace only)
    key_files: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"WgLink({self.impl} {self.ifname} in {self.ns.name})"

    # -- wg ----------------------------------------------------------------------------------

    def wg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The real `wg ARGS` where the link is now (`IF` in args is not substituted)."""
        return self.ns.run(["wg", *args], check=check, env={"WG_HIDE_KEYS": "never"})

    def set(self, *args: str) -> None:
        """`wg set IFNAME ARGS`."""
        self.wg("set", self.ifname, *args)

    def show(self, what: str) -> str:
        """`wg show IFNAME WHAT`, trailing newline stripped."""
        return self.wg("show", self.ifname, what).stdout.rstrip("\n")

    def dump(self) -> WgDump:
        return parse_wg_dump(self.wg("show", self.ifname, "dump").stdout)

    def endpoints(self) -> dict[str, str]:
        """public key -> endpoint as `wg show IF endpoints` prints it ('(none)' included)."""
        return dict(line.split("\t") for line in self.show("endpoints").splitlines())

    def transfer(self, public_key: str) -> tuple[int, int]:
        """(rx bytes, tx bytes) of one peer from `wg show IF transfer`."""
        for line in self.show("transfer").splitlines():
            key, rx, tx = line.split("\t")
            if key == public_key:
                return int(rx), int(tx)
        raise AssertionError(f"{public_key} is not a peer of {self}")

    def key_file(self, key: str) -> str:
        """A 0600 file holding key, for `private-key FILE` / `preshared-key FILE`."""
        if key not in self.key_files:
            self.key_files[key] = str(self.topo.write_file(key + "\n", name="key"))
        return self.key_files[key]

    # -- link --------------------------------------------------------------------------------

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ip ARGS` in the link's namespace."""
        return self.ns.run(["ip", *args])

    def add_addresses(self, *addresses: str) -> None:
        self.topo.add_addresses(self.ns, self.ifname, addresses)

    def up(self, mtu: int | None = None) -> None:
        extra = ["mtu", str(mtu)] if mtu is not None else []
        self.ip("link", "set", self.ifname, *extra, "up")

    def mtu(self) -> int:
        match = re.search(r"\bmtu (\d+)", self.ip("link", "show", "dev", self.ifname).stdout)
        if match is None:
            raise AssertionError(f"no MTU in `ip link show {self.ifname}`")
        return int(match.group(1))

    def move(self, to: Netns) -> None:
        """Move the interface to namespace `to` (its socket stays where it is)."""
        self.ip("link", "set", self.ifname, "netns", to.name)
        self.topo.links.remove((self.ns, self.ifname))
        self.topo.links.append((to, self.ifname))
        self.ns = to

    def delete(self) -> None:
        """`ip link del`: a userspace daemon notices and exits, removing its socket."""
        self.ip("link", "del", self.ifname)
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"{self.impl} for {self.ifname} still runs 10 s after its interface was "
                    f"deleted:\n{self.topo.log_of(self.process)[-2000:]}"
                ) from None
            wait_for(lambda: not self.socket_path().exists(), timeout=5,
                     message=f"{self.socket_path()} removed")

    def socket_path(self) -> Path:
        return WIREGUARD_RUN_DIR / f"{self.ifname}.sock"

    def assert_alive(self) -> None:
        """The daemon still runs and answers `wg show` (kernel: the link still exists)."""
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"{self.impl} for {self.ifname} exited {self.process.returncode}:\n"
                f"{self.topo.log_of(self.process)[-2000:]}"
            )
        self.dump()


def add_link(
    topo: Topology,
    impl: str,
    socket_ns: Netns,
    into: Netns | None = None,
    ifname: str | None = None,
) -> WgLink:
    """A new WireGuard interface of implementation `impl` whose UDP socket lives in socket_ns,
    moved into `into` if given (netns.sh: `ip0 link add wg0 type wireguard; ip0 link set wg0
    netns $netns1`). Removed with the Topology."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}; choose from {IMPLEMENTATIONS}")
    ifname = ifname or topo.ifname("s")
    process = None
    if impl == "wgpy":
        process = topo.start_wgpy_daemon(socket_ns, ifname)
    elif impl == "wireguard-go":
        process = topo.start_wireguard_go(socket_ns, ifname)
    else:
        socket_ns.run(["ip", "link", "add", ifname, "type", "wireguard"])
        topo.track_interface(socket_ns, ifname)  # (no socket file to remove: harmless)
    link = WgLink(topo, impl, ifname, socket_ns, socket_ns, process)
    if into is not None:
        link.move(into)
    return link


# -- traffic ------------------------------------------------------------------------------------


def ping_argv(address: str, count: int = 1, size: int | None = None, flood: bool = False,
              wait: float = 1, interface: str | None = None) -> list[str]:
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", f"{wait:g}"]
    if ipaddress.ip_address(address).version == 6:
        argv.append("-6")
    if flood:
        argv.append("-f")
    if size is not None:
        argv += ["-s", str(size)]
    if interface is not None:
        argv += ["-I", interface]
    return [*argv, address]


def ping(ns: Netns, address: str, count: int = 1, size: int | None = None,
         wait: float = 1, interface: str | None = None) -> None:
    """Ping as netns.sh does (`ping -W 1 -c 1`); raise CommandFailed unless every echo was
    answered within `wait` seconds.

    count > 1 (netns.sh: `ping -c 10 -f`) runs that many one-echo pings back to back: with
    more than one echo, iputils' ping waits only twice the longest round trip so far for
    the last replies once any has come, which counts a reply delayed by a millisecond of
    scheduling as lost; one echo per ping waits the full `wait` for each.
    """
    argv = ping_argv(address, 1, size, False, wait, interface)
    if count == 1:
        result = ns.run(argv, check=False, timeout=wait + 10)
    else:
        script = (f'for i in $(seq {count}); do {shlex.join(argv)} >/dev/null '
                  f'|| {{ echo "echo $i of {count} unanswered"; exit 1; }}; done')
        result = ns.run(["bash", "-c", script], check=False, timeout=count * wait + 10)
    if result.returncode != 0:
        raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr)


def ping_fails(ns: Netns, address: str, count: int = 1, flood: bool = False,
               wait: float = 1) -> str:
    """Ping that must get no answer at all (`! ping ...` in netns.sh). Returns the output."""
    result = ns.run(ping_argv(address, count, flood=flood, wait=wait), check=False,
                    timeout=max(30, count * wait + 10))
    if result.returncode == 0:
        raise AssertionError(f"{address} answered, it must not have:\n{result.stdout}")
    return result.stdout + result.stderr


def udp_delivered(listener: Netns, sender: Netns, address: str, port: int = 1111,
                  wait: float = 1.0) -> bool:
    """netns.sh's ncat check: an `ncat -l -u` in `listener`, one 'X' sent from `sender` to
    address:port; True if it arrived within `wait` seconds."""
    server = listener.popen(["ncat", "-l", "-u", "-p", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(
            lambda: listener.run(["ss", "-Hlun", f"sport = :{port}"]).stdout.strip()
            or server.poll() is not None,
            timeout=5, message=f"ncat listening on udp:{port}",
        )
        sender.run(["ncat", "-u", "--send-only", address, str(port)], input="X\n")
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], wait)
        return bool(ready) and server.stdout.read(1) == b"X"
    finally:
        server.kill()
        server.wait(timeout=5)
        if server.stdout is not None:
            server.stdout.close()


def iperf3(topo: Topology, server: Netns, client: Netns, address: str,
           args: Sequence[str] = (), amount: str = "16M", port: int = 5201) -> dict[str, Any]:
    """One short iperf3 run as netns.sh's (`iperf3 -s -1 -B ADDR`, `iperf3 -Z -c ADDR`), but
    `amount` bytes instead of 3 seconds. Returns the client's parsed JSON report."""
    server_process = server.popen(["iperf3", "-s", "-1", "-B", address, "-p", str(port)])
    wait_for(
        lambda: server.run(["ss", "-Hltn", f"sport = :{port}"]).stdout.strip()
        or server_process.poll() is not None,
        timeout=5, message=f"iperf3 server listening on {address} port {port}",
    )
    try:
        result = client.run(["iperf3", "-J", "-Z", "-c", address, "-p", str(port),
                             "-n", amount, *args], check=False, timeout=60)
    finally:
        try:
            server_process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            topo.stop_process(server_process)
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise CommandFailed(result.returncode, result.args, result.stdout, result.stderr) from None
    if result.returncode != 0 or "error" in report:
        raise CommandFailed(result.returncode or 1, result.args, report.get("error", ""),
                            result.stderr)
    return report


def wait_operstate_up(ns: Netns, ifname: str) -> None:
    """netns.sh's waitiface."""
    path = f"/sys/class/net/{ifname}/operstate"
    wait_for(lambda: ns.run(["cat", path], check=False).stdout.strip() == "up",
             timeout=5, message=f"{ifname} up in {ns.name}")


def sysctl(ns: Netns, key: str, value: str) -> None:
    """Write /proc/sys/KEY (dots or slashes) inside ns: per-namespace settings only."""
    path = "/proc/sys/" + key.replace(".", "/")
    ns.run(["bash", "-c", f"printf %s {value} > {path}"])


def pause(seconds: float) -> None:
    """A deliberate wait that is part of a check (netns.sh's `sleep`), never a retry."""
    time.sleep(seconds)
