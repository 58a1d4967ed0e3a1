"""Many idle peers on one wgpy-daemon (or wireguard-go): memory per peer and CPU at rest.

    sudo python3 bench/peers.py [--peers 1000] [--impl wgpy|wireguard-go|both] [--rest 3]

Starts the daemon in a fresh network namespace, gives it a private key, measures VmRSS, then
loads N peers with the real `wg setconf` (each: a public key, an endpoint, a /32 and a /128 of
AllowedIPs; no traffic, no keepalive), measures VmRSS again and samples utime+stime from
/proc/PID/stat over --rest seconds. Prints one JSON line per implementation. Used by
tests/e2e/test_hostile_resources.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

from netns import Netns, Topology
from procstat import cpu_percent_over, vm_rss_kb


@dataclass
class PeersResult:
    impl: str
    peers: int
    rss_empty_kb: int
    rss_loaded_kb: int
    bytes_per_peer: int
    setconf_seconds: float
    get_seconds: float
    cpu_at_rest_percent: float


def peers_config(private_key: str, count: int) -> str:
    lines = ["[Interface]", f"PrivateKey = {private_key}", "ListenPort = 51820", ""]
    for i in range(count):
        public = base64.b64encode(os.urandom(32)).decode()
        high, low = divmod(i + 2, 250)
        lines += ["[Peer]", f"PublicKey = {public}",
                  f"AllowedIPs = 10.{100 + high}.{low}.1/32, fd00:100::{i + 2:x}/128",
                  f"Endpoint = 192.168.88.{2 + i % 200}:{20000 + i}", ""]
    return "\n".join(lines)


def measure(topo: Topology, impl: str, count: int, rest: float = 3.0) -> PeersResult:
    ns: Netns = topo.netns("p")
    uplink = topo.netns("u")
    topo.veth(ns, uplink, ["192.168.88.1/24"], [])
    ifname = topo.ifname()
    if impl == "wgpy":
        process = topo.start_wgpy_daemon(ns, ifname)
    else:
        process = topo.start_wireguard_go(ns, ifname)
    private, _ = topo.genkey()
    topo.wg(ns, "setconf", ifname, str(topo.write_file(peers_config(private, 0))))
    ns.run(["ip", "link", "set", ifname, "up"])
    time.sleep(1.0)
    rss_empty = vm_rss_kb(process.pid)
    config = topo.write_file(peers_config(private, count), name="peers")
    started = time.monotonic()
    topo.wg(ns, "setconf", ifname, str(config))
    setconf_seconds = time.monotonic() - started
    started = time.monotonic()
    dump = topo.wg(ns, "show", ifname, "dump").stdout
    get_seconds = time.monotonic() - started
    if len(dump.splitlines()) != count + 1:
        raise RuntimeError(f"expected {count} peers in wg show dump")
    time.sleep(1.0)  # let the loop settle after the set
    cpu = cpu_percent_over(process.pid, rest)
    rss_loaded = vm_rss_kb(process.pid)
    per_peer = (rss_loaded - rss_empty) * 1024 // count if count else 0
    return PeersResult(impl, count, rss_empty, rss_loaded, per_peer, round(setconf_seconds, 3),
                       round(get_seconds, 3), round(cpu, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--impl", choices=("wgpy", "wireguard-go", "both"), default="both")
    parser.add_argument("--rest", type=float, default=3.0)
    args = parser.parse_args(argv)
    impls = ("wgpy", "wireguard-go") if args.impl == "both" else (args.impl,)
    for impl in impls:
        with Topology(f"wgx-peers-{impl[:4]}") as topo:
            print(json.dumps(asdict(measure(topo, impl, args.peers, args.rest))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
