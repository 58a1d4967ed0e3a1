"""`wgpy demo`: a working tunnel between two network namespaces, then a clean slate.

Creates two namespaces joined by a veth (outer IPv4 and IPv6), starts one wgpy-daemon in each,
configures them through the userspace API with fresh keys and a preshared key, shows the
handshake, pings IPv4 and IPv6 through the tunnel, measures TCP throughput for a few seconds
(with iperf3, when installed), prints a report, and removes everything it
created -- also when interrupted. Nothing outside the two namespaces is touched: no address,
route, rule or firewall of the host changes.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

from pyroute2 import IPRoute, NetNS, netns

from wgpy import fastpath, show
from wgpy.control.client import UapiClient
from wgpy.control.uapi import socket_path
from wgpy.keys import generate_preshared_key, generate_private_key, key_to_base64, public_key
from wgpy.model import PeerSet, SetRequest

OUTER = ("10.250.0.1", "10.250.0.2", "fdfa::1", "fdfa::2")
INNER = ("10.99.0.1", "10.99.0.2", "fd99::1", "fd99::2")
PORTS = (51820, 51821)


def _say(text: str) -> None:
    print(text, flush=True)


class Lab:
    """Two namespaces, a veth, two daemons; `close()` removes all of it."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.namespaces = [f"wgpy-demo-a-{tag}", f"wgpy-demo-b-{tag}"]
        self.interfaces = [f"wgdemo{tag}a", f"wgdemo{tag}b"]
        self.veths = [f"wgdv{tag}a", f"wgdv{tag}b"]
        self.processes: list[subprocess.Popen[bytes]] = []
        self.created: list[str] = []

    def in_ns(self, index: int) -> dict[str, object]:
        name = self.namespaces[index]
        return {"preexec_fn": lambda: netns.setns(name)}

    def build(self) -> None:
        for name in self.namespaces:
            netns.create(name)
            self.created.append(name)
        with IPRoute() as ip:
            ip.link("add", ifname=self.veths[0], kind="veth",
                    peer={"ifname": self.veths[1], "net_ns_fd": self.namespaces[1]})
            ip.link("set", index=ip.link_lookup(ifname=self.veths[0])[0],
                    net_ns_fd=self.namespaces[0])
        for index in (0, 1):
            with NetNS(self.namespaces[index]) as ns:
                ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
                link = ns.link_lookup(ifname=self.veths[index])[0]
                ns.addr("add", index=link, address=OUTER[index], prefixlen=24)
                ns.addr("add", index=link, address=OUTER[2 + index], prefixlen=64,
                        flags=0x02)  # IFA_F_NODAD: usable at once
                ns.link("set", index=link, state="up")

    def start_daemons(self) -> None:
        env = {**os.environ, "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"}
        for index in (0, 1):
            ifname = self.interfaces[index]
            process = subprocess.Popen(
                [sys.executable, "-m", "wgpy.cli.daemon", "-f", ifname], env=env,
                stdin=subprocess.DEVNULL, **self.in_ns(index),  # type: ignore[arg-type]
            )
            self.processes.append(process)
        deadline = time.monotonic() + 15
        for ifname, process in zip(self.interfaces, self.processes):
            while not os.path.exists(socket_path(ifname)):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"wgpy-daemon {ifname} did not start")
                time.sleep(0.05)

    def configure(self, ipv6_outer: bool) -> list[bytes]:
        privates = [generate_private_key(), generate_private_key()]
        psk = generate_preshared_key()
        client = UapiClient()
        for index in (0, 1):
            other = 1 - index
            host = OUTER[2 + other] if ipv6_outer else OUTER[other]
            client.set(self.interfaces[index], SetRequest(
                private_key=privates[index], listen_port=PORTS[index], replace_peers=True,
                peers=[PeerSet(
                    public_key=public_key(privates[other]), preshared_key=psk,
                    endpoint=(host, PORTS[other]), replace_allowed_ips=True,
                    allowed_ips=[ipaddress.ip_network(f"{INNER[other]}/32"),
                                 ipaddress.ip_network(f"{INNER[2 + other]}/128")],
                )],
            ))
            with NetNS(self.namespaces[index]) as ns:
                link = ns.link_lookup(ifname=self.interfaces[index])[0]
                ns.addr("add", index=link, address=INNER[index], prefixlen=24)
                ns.addr("add", index=link, address=INNER[2 + index], prefixlen=64, flags=0x02)
                ns.link("set", index=link, state="up")
        return privates

    def run(self, index: int, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), check=False, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **self.in_ns(index))  # type: ignore[arg-type]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for name in self.created:
            with contextlib.suppress(Exception):
                netns.remove(name)
        for ifname in self.interfaces:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path(ifname))


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    built = Lab()
    try:
        yield built
    finally:
        built.close()


def _ping(lab_: Lab, address: str) -> tuple[bool, str]:
    result = lab_.run(0, ["ping", "-c", "3", "-i", "0.2", "-W", "3", address])
    summary = [line for line in result.stdout.splitlines() if "rtt" in line or "packets" in line]
    return result.returncode == 0, "; ".join(summary)


def _throughput(lab_: Lab, seconds: int) -> str:
    if shutil.which("iperf3"):
        server = subprocess.Popen(["iperf3", "-s", "-1", "-B", INNER[1]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  **lab_.in_ns(1))  # type: ignore[arg-type]
        try:
            time.sleep(0.5)
            result = lab_.run(0, ["iperf3", "-c", INNER[1], "-t", str(seconds), "-J"],
                              timeout=seconds + 20)
            data = json.loads(result.stdout)
            bits = data["end"]["sum_received"]["bits_per_second"]
            return f"{bits / 1e9:.2f} Gbit/s TCP (iperf3, {seconds} s, one stream)"
        except subprocess.TimeoutExpired:
            return f"iperf3 failed: no result in {seconds + 20} s"
        except (ValueError, KeyError):
            return "iperf3 failed: " + (result.stderr.strip() or "no result")
        finally:
            server.kill()
            server.wait()
    return "iperf3 not installed: throughput not measured (apt-get install iperf3)"


def _whole_seconds(text: str) -> int:
    """--seconds: iperf3 takes whole seconds, and reads "0.5" as 0, which it runs forever."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 1 second")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wgpy demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=_whole_seconds, default=3,
                        help="throughput run length, whole seconds (iperf3's -t)")
    parser.add_argument("--ipv6-outer", action="store_true", help="tunnel over IPv6 outer addresses")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("wgpy demo: must run as root (it creates network namespaces)", file=sys.stderr)
        return 1
    ok = True
    with lab() as lab_:
        _say(f"namespaces {lab_.namespaces[0]} and {lab_.namespaces[1]}, joined by a veth")
        lab_.build()
        lab_.start_daemons()
        _say(f"wgpy-daemon {lab_.interfaces[0]} and {lab_.interfaces[1]} running")
        fastpath.select_from(os.environ)  # what the daemons choose with the same environment
        _say(f"per-packet fast path: {fastpath.DESCRIPTION}")
        lab_.configure(args.ipv6_outer)
        for address in (INNER[1], INNER[3]):
            good, summary = _ping(lab_, address)
            ok &= good
            _say(f"ping {address} through the tunnel: {'ok' if good else 'FAILED'} ({summary})")
        state = UapiClient().get(lab_.interfaces[0])
        peer = state.peers[0]
        endpoint = show.format_endpoint(peer.endpoint) if peer.endpoint else "(none)"
        _say(
            f"handshake: {'yes' if peer.last_handshake_sec else 'NO'}; "
            f"peer {key_to_base64(peer.public_key)[:8]}... endpoint {endpoint}; "
            f"{peer.rx_bytes} B received, {peer.tx_bytes} B sent"
        )
        _say(f"\n$ wgpy show {lab_.interfaces[0]}")
        _say(show.pretty(lab_.interfaces[0], state, show.options_from_environment()))
        ok &= bool(peer.last_handshake_sec)
        _say("throughput: " + _throughput(lab_, args.seconds))
        _say("removing the namespaces and daemons")
    _say("demo " + ("succeeded" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
