"""Real-time soak of wgpy-daemon: traffic both ways and peer changes through the UAPI, RSS
sampled every second.

    sudo python3 bench/soak.py [--seconds 300] [--rate 20M]

In fresh namespaces, wgpy-daemon ("a") and wireguard-go ("b") are peers; iperf3 --bidir runs
at --rate each way for the whole soak while every half second the real `wg set` changes "a":
adds an extra peer (key, endpoint, /24), changes an extra peer's allowed-ips, removes the oldest
extra peer beyond 16, and adds or removes a second prefix of the real peer. At the end the
tunnel must work both ways. Prints one JSON line; tests/e2e/test_hostile_soak.py runs it short
(WGPY_SOAK_SECONDS, default 20).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field

from netns import Topology, wait_for
from procstat import vm_rss_kb

MAX_EXTRA_PEERS = 16
CHANGE_INTERVAL = 0.5
WARMUP_SECONDS = 3.0


@dataclass
class SoakResult:
    seconds: float
    changes: int
    rss_kb: list[int] = field(default_factory=list)
    rss_growth_kb: int = 0
    sent_bytes: int = 0
    received_bytes: int = 0
    reverse_received_bytes: int = 0
    peers_at_end: int = 0


def rss_growth(samples: list[int]) -> int:
    """Growth after warm-up: the highest sample of the last third minus that of the first."""
    settled = samples[int(WARMUP_SECONDS):]
    if len(settled) < 3:
        return 0
    third = max(1, len(settled) // 3)
    return max(settled[-third:]) - max(settled[:third])


def soak(topo: Topology, seconds: float, rate: str = "20M") -> SoakResult:
    a, b = topo.netns("a"), topo.netns("b")
    topo.veth(a, b, ["192.168.89.1/24"], ["192.168.89.2/24"])
    a_if, b_if = topo.ifname(), topo.ifname()
    daemon = topo.start_wgpy_daemon(a, a_if)
    topo.start_wireguard_go(b, b_if)
    end_a, end_b = topo.configure_pair(a, a_if, b, b_if, a_host="192.168.89.1",
                                       b_host="192.168.89.2")
    a.ping(end_b.ip4)
    server = b.popen(["iperf3", "-s", "-1", "-p", "5201"])
    wait_for(lambda: b.run(["ss", "-Hltn", "sport = :5201"]).stdout.strip(), timeout=5,
             message="iperf3 server")
    client = a.popen(["iperf3", "-J", "-c", end_b.ip4, "-p", "5201", "--bidir",
                             "-b", rate, "-t", f"{seconds:g}"])
    result = SoakResult(seconds=seconds, changes=0)
    extra: list[str] = []
    real_peer_has_second_prefix = False
    started = time.monotonic()
    next_sample = started
    step = 0
    while time.monotonic() - started < seconds:
        now = time.monotonic()
        if now >= next_sample:
            result.rss_kb.append(vm_rss_kb(daemon.pid))
            next_sample += 1.0
        step += 1
        _, public = topo.genkey()
        args = ["set", a_if, "peer", public, "allowed-ips", f"10.78.{step % 250}.0/24",
                "endpoint", f"192.168.89.{10 + step % 200}:{30000 + step}"]
        extra.append(public)
        if len(extra) > 2:
            args += ["peer", extra[-2], "allowed-ips", f"10.79.{step % 250}.0/24"]
        if len(extra) > MAX_EXTRA_PEERS:
            args += ["peer", extra.pop(0), "remove"]
        real_prefixes = f"{end_b.ip4}/32,{end_b.ip6}/128"
        if not real_peer_has_second_prefix:
            real_prefixes += f",10.80.{step % 250}.0/24"
        args += ["peer", end_b.public_key, "allowed-ips", real_prefixes]
        real_peer_has_second_prefix = not real_peer_has_second_prefix
        topo.wg(a, *args)
        result.changes += 1
        time.sleep(CHANGE_INTERVAL)
    client.wait(timeout=30)
    server.wait(timeout=10)
    report = json.loads(topo.log_of(client))
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    end = report["end"]
    result.sent_bytes = end["sum_sent"]["bytes"]
    result.received_bytes = end["sum_received"]["bytes"]
    result.reverse_received_bytes = end.get("sum_received_bidir_reverse", {}).get("bytes", 0)
    result.rss_kb.append(vm_rss_kb(daemon.pid))
    result.rss_growth_kb = rss_growth(result.rss_kb)
    a.ping(end_b.ip4)
    b.ping(end_a.ip4)
    result.peers_at_end = len(topo.wg_dump(a, a_if).peers)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--rate", default="20M", help="iperf3 -b, each direction")
    args = parser.parse_args(argv)
    with Topology("wgx-soak") as topo:
        print(json.dumps(asdict(soak(topo, args.seconds, args.rate))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
