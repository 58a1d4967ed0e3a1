#!/usr/bin/env python3
"""Side-by-side data-plane benchmark of userspace WireGuard implementations (root).

    python3 bench/compare.py [--rounds N] [--seconds S] [--impl NAME=CMD ...] [--json FILE]

For each implementation it builds the same topology -- two network namespaces joined by a veth
(MTU 1500), the implementation running `CMD IFNAME` in each (wireguard-go's contract:
WG_PROCESS_FOREGROUND=1), configured with the real `wg`, tunnel MTU 1420 -- plus one bare veth
pair as the latency baseline. Rounds alternate between implementations (the order rotates every
round) so that drift on a shared machine hits all of them alike. Per round and implementation:

  iperf3 TCP 1 stream a->b and b->a (-R), TCP 4 streams both ways, UDP with 64 B and 1392 B
  payload (1392 B = a full 1420 B tunnel packet) at unlimited rate (received packets/s and loss,
  plus the packets/s the tunnel delivered into the receiving interface -- at unlimited rate the
  iperf3 server itself can be what drops, when it gets too little of the shared CPUs), and ping through the tunnel minus ping over the bare veth in the same round (added latency).

Prints the median of each metric over the rounds as a Markdown table with ratios to the
reference implementations (Debian's `wireguard-go`, and upstream's when $WG_UPSTREAM names a
binary). Everything it creates is removed at the end, also on error or Ctrl-C.

Defaults: wgpy = `python3 -m wgpy.cli.daemon -f`, wireguard-go = `wireguard-go`, and
wireguard-go-upstream = $WG_UPSTREAM if set. Any --impl replaces the defaults; ratios are then
taken against whichever of those two reference names are present, else against the last --impl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

from netns import Netns, Topology, WgEnd

REFERENCE_NAMES = ("wireguard-go", "wireguard-go-upstream")
OUTER_A, OUTER_B = "192.168.91.1/24", "192.168.91.2/24"
OUTER_MTU = 1500
TUNNEL_MTU = 1420
UDP_FULL_PAYLOAD = TUNNEL_MTU - 20 - 8  # IPv4 + UDP headers inside the tunnel
PING_COUNT = 100
PING_INTERVAL = 0.01


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    scale: float  # raw value / scale = displayed value
    higher_is_better: bool
    ratio: bool = True  # False: a ratio of these values means nothing (loss %)


METRICS = [
    Metric("tcp1_ab", "TCP, 1 stream, a→b", "Gbit/s", 1e9, True),
    Metric("tcp1_ba", "TCP, 1 stream, b→a (-R)", "Gbit/s", 1e9, True),
    Metric("tcp4_ab", "TCP, 4 streams, a→b", "Gbit/s", 1e9, True),
    Metric("tcp4_ba", "TCP, 4 streams, b→a (-R)", "Gbit/s", 1e9, True),
    Metric("udp64_pps", "UDP 64 B payload, received", "kpps", 1e3, True),
    Metric("udp64_loss", "UDP 64 B payload, loss", "%", 1, False, ratio=False),
    Metric("udp64_tun_pps", "UDP 64 B, delivered into receiver's TUN", "kpps", 1e3, True),
    Metric("udpfull_pps", f"UDP {UDP_FULL_PAYLOAD} B payload, received", "kpps", 1e3, True),
    Metric("udpfull_loss", f"UDP {UDP_FULL_PAYLOAD} B payload, loss", "%", 1, False, ratio=False),
    Metric("udpfull_tun_pps", f"UDP {UDP_FULL_PAYLOAD} B, delivered into receiver's TUN", "kpps",
           1e3, True),
    Metric("udp64_rate", "UDP 64 B, most received with ≤ 1 % loss (paced)", "kpps", 1e3, True),
    Metric("udpfull_rate", f"UDP {UDP_FULL_PAYLOAD} B, most received with ≤ 1 % loss (paced)",
           "kpps", 1e3, True),
    Metric("ping_added", "ping RTT added over bare veth", "µs", 1e-6, False),
]
PACED_LOSS = 1.0  # % loss a paced UDP probe may have and still pass
PACED_BOUNDS = (1_000, 250_000)  # packets/s searched between, geometrically
PACED_PROBES = 7


@dataclass
class Implementation:
    name: str
    argv: list[str]


@dataclass
class Tunnel:
    implementation: Implementation
    a: WgEnd
    b: WgEnd


# --- measurements ----------------------------------------------------------------------------


def tcp(topo: Topology, tunnel: Tunnel, seconds: float, streams: int, reverse: bool) -> float:
    args = ["-P", str(streams)] + (["-R"] if reverse else [])
    report = topo.iperf3(tunnel.b.ns, tunnel.a.ns, tunnel.b.ip4, args, seconds=seconds)
    return float(report["end"]["sum_received"]["bits_per_second"])


def interface_rx_packets(end: WgEnd) -> int:
    """Packets the implementation has written into its interface (the kernel's rx count)."""
    result = end.ns.run(["ip", "-s", "-j", "link", "show", "dev", end.ifname])
    return int(json.loads(result.stdout)[0]["stats64"]["rx"]["packets"])


def udp(topo: Topology, tunnel: Tunnel, seconds: float, payload: int
        ) -> tuple[float, float, float]:
    """(received packets/s, loss %, packets/s written into b's interface) of a -b 0 (unlimited)
    UDP stream a->b. The last counts what the tunnel delivered whether or not the iperf3 server
    then found the CPU time to read it. The kernel counts one per write: exact for wgpy (UDP is
    not coalesced into the TUN by default) and Debian's wireguard-go; an implementation that
    writes coalesced UDP (upstream wireguard-go may) is undercounted."""
    args = ["-u", "-l", str(payload), "-b", "0"]
    before = interface_rx_packets(tunnel.b)
    report = topo.iperf3(tunnel.b.ns, tunnel.a.ns, tunnel.b.ip4, args, seconds=seconds)
    into_tun = interface_rx_packets(tunnel.b) - before
    received = report["end"]["sum_received"]
    delivered = received["packets"] - received["lost_packets"]
    return (delivered / received["seconds"], float(received["lost_percent"]),
            into_tun / received["seconds"])


def udp_max_rate(topo: Topology, tunnel: Tunnel, seconds: float, payload: int) -> float:
    """The most packets/s the iperf3 server received from a paced UDP stream a->b while
    losing at most PACED_LOSS % (RFC 2544's throughput, with a small loss allowance).

    Offered rates are bisected geometrically between PACED_BOUNDS; a probe passes when its
    loss is within the allowance and the client managed to send at least 95 % of the rate
    (iperf3 blocks when the tunnel cannot take packets as fast as offered). Unlike the
    unlimited-rate run, this does not depend on which process the scheduler starves when
    more is offered than two cores can carry."""
    low, high = PACED_BOUNDS
    best = 0.0
    for _ in range(PACED_PROBES):
        rate = (low * high) ** 0.5
        args = ["-u", "-l", str(payload), "-b", str(int(rate * payload * 8))]
        report = topo.iperf3(tunnel.b.ns, tunnel.a.ns, tunnel.b.ip4, args, seconds=seconds)
        received = report["end"]["sum_received"]
        sent = report["end"]["sum_sent"]
        sent_rate = sent["packets"] / sent["seconds"] if sent.get("packets") else 0.0
        delivered = (received["packets"] - received["lost_packets"]) / received["seconds"]
        if float(received["lost_percent"]) <= PACED_LOSS and sent_rate >= 0.95 * rate:
            best = max(best, delivered)
            low = rate
        else:
            high = rate
    return best


def ping_median_rtt(source: Netns, address: str) -> float:
    """Median RTT in seconds of PING_COUNT echoes."""
    result = source.run(
        ["ping", "-n", "-c", str(PING_COUNT), "-i", str(PING_INTERVAL), "-W", "1", address],
        timeout=PING_COUNT * PING_INTERVAL + 20,
    )
    rtts = [float(word.split("=", 1)[1]) / 1000 for line in result.stdout.splitlines()
            for word in line.split() if word.startswith("time=")]
    if len(rtts) < PING_COUNT // 2:
        raise RuntimeError(f"only {len(rtts)}/{PING_COUNT} echoes answered:\n{result.stdout}")
    return statistics.median(rtts)


def measure_round(
    topo: Topology, tunnel: Tunnel, seconds: float, bare_rtt: float, log: Callable[[str], None],
    only: list[str] | None = None,
) -> dict[str, float | None]:
    """One round of every metric for one implementation; a failing metric is None."""
    steps: list[tuple[tuple[str, ...], Callable[[], Any]]] = [
        (("tcp1_ab",), lambda: tcp(topo, tunnel, seconds, 1, False)),
        (("tcp1_ba",), lambda: tcp(topo, tunnel, seconds, 1, True)),
        (("tcp4_ab",), lambda: tcp(topo, tunnel, seconds, 4, False)),
        (("tcp4_ba",), lambda: tcp(topo, tunnel, seconds, 4, True)),
        (("udp64_pps", "udp64_loss", "udp64_tun_pps"), lambda: udp(topo, tunnel, seconds, 64)),
        (("udpfull_pps", "udpfull_loss", "udpfull_tun_pps"),
         lambda: udp(topo, tunnel, seconds, UDP_FULL_PAYLOAD)),
        (("udp64_rate",), lambda: udp_max_rate(topo, tunnel, seconds, 64)),
        (("udpfull_rate",), lambda: udp_max_rate(topo, tunnel, seconds, UDP_FULL_PAYLOAD)),
        (("ping_added",), lambda: ping_median_rtt(tunnel.a.ns, tunnel.b.ip4) - bare_rtt),
    ]
    if only:
        steps = [(keys, step) for keys, step in steps
                 if any(key.startswith(prefix) for key in keys for prefix in only)]
    results: dict[str, float | None] = {}
    for keys, step in steps:
        try:
            value = step()
        except Exception as error:  # noqa: BLE001 -- report and go on with the other metrics
            log(f"  {tunnel.implementation.name}: {'/'.join(keys)} failed: {error}")
            value = (None,) * len(keys)
        values = value if isinstance(value, tuple) else (value,)
        for key, measured in zip(keys, values):
            results[key] = measured
            if measured is not None:
                metric = next(m for m in METRICS if m.key == key)
                log(f"  {tunnel.implementation.name:<24} {metric.label:<34} "
                    f"{measured / metric.scale:10.3f} {metric.unit}")
    return results


# --- setup -----------------------------------------------------------------------------------


def build_tunnel(topo: Topology, implementation: Implementation, index: int) -> Tunnel:
    a = topo.netns(f"{index}a")
    b = topo.netns(f"{index}b")
    topo.veth(a, b, [OUTER_A], [OUTER_B], mtu=OUTER_MTU)
    a_if, b_if = topo.ifname(), topo.ifname()
    topo.start_userspace(a, a_if, implementation.argv)
    topo.start_userspace(b, b_if, implementation.argv)
    end_a, end_b = topo.configure_pair(
        a, a_if, b, b_if, a_host=OUTER_A.split("/")[0], b_host=OUTER_B.split("/")[0],
        mtu=TUNNEL_MTU,
    )
    a.ping(end_b.ip4, count=3)  # handshake done before anything is measured
    return Tunnel(implementation, end_a, end_b)


def build_bare_veth(topo: Topology) -> tuple[Netns, str]:
    a = topo.netns("bare-a")
    b = topo.netns("bare-b")
    topo.veth(a, b, [OUTER_A], [OUTER_B], mtu=OUTER_MTU)
    a.ping(OUTER_B.split("/")[0], count=2)
    return a, OUTER_B.split("/")[0]


# --- report ----------------------------------------------------------------------------------


def medians(rounds: list[dict[str, float | None]]) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for metric in METRICS:
        values = [r[metric.key] for r in rounds if r.get(metric.key) is not None]
        result[metric.key] = statistics.median(values) if values else None  # type: ignore[type-var]
    return result


def format_value(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown_table(
    names: list[str], summary: dict[str, dict[str, float | None]], references: list[str],
    measured: set[str] | None = None,
) -> str:
    # Each implementation against each reference; between two references only the later one
    # over the earlier (upstream ÷ Debian), not also its inverse.
    ratio_pairs = [
        (name, ref)
        for position, ref in enumerate(references)
        for name in names
        if name != ref and name not in references[:position]
    ]
    header = ["metric", *names, *[f"{name} ÷ {ref}" for name, ref in ratio_pairs]]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "---|" + "---:|" * (len(header) - 1),
    ]
    for metric in METRICS:
        if measured is not None and metric.key not in measured:
            continue  # left out with --only
        direction = "" if metric.higher_is_better or not metric.ratio else ", lower is better"
        cells = [f"{metric.label} ({metric.unit}{direction})"]
        for name in names:
            value = summary[name][metric.key]
            cells.append("failed" if value is None else format_value(value / metric.scale))
        for name, ref in ratio_pairs:
            value, base = summary[name][metric.key], summary[ref][metric.key]
            if not metric.ratio or value is None or base is None or base <= 0:
                cells.append("—")
            else:
                cells.append(f"{value / base:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def parse_implementations(specs: list[str] | None) -> list[Implementation]:
    if not specs:
        implementations = [
            Implementation("wgpy", [sys.executable, "-m", "wgpy.cli.daemon", "-f"]),
            Implementation("wireguard-go", ["wireguard-go"]),
        ]
        upstream = os.environ.get("WG_UPSTREAM")
        if upstream:
            implementations.append(Implementation("wireguard-go-upstream", [upstream]))
        return implementations
    implementations = []
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command.strip():
            raise SystemExit(f"--impl wants NAME=CMD, got {spec!r}")
        if any(existing.name == name for existing in implementations):
            raise SystemExit(f"--impl name {name!r} given twice")
        implementations.append(Implementation(name, shlex.split(command)))
    return implementations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--impl", action="append", metavar="NAME=CMD",
                        help="implementation started as `CMD IFNAME`; replaces the defaults")
    parser.add_argument("--json", type=Path, help="also write every round's numbers here")
    parser.add_argument("--only", metavar="PREFIX[,PREFIX]",
                        help="measure only the metrics whose key starts so (keys: "
                        + ", ".join(m.key for m in METRICS) + ")")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, TUN)")
    implementations = parse_implementations(args.impl)
    names = [impl.name for impl in implementations]
    references = [n for n in REFERENCE_NAMES if n in names] or [names[-1]]

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # SIGTERM unwinds like Ctrl-C so the Topology's cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds: dict[str, list[dict[str, float | None]]] = {name: [] for name in names}
    bare_rtts: list[float] = []
    with Topology("wgb") as topo:
        bare_ns, bare_peer = build_bare_veth(topo)
        tunnels = [build_tunnel(topo, impl, i) for i, impl in enumerate(implementations)]
        for round_index in range(args.rounds):
            bare_rtt = ping_median_rtt(bare_ns, bare_peer)
            bare_rtts.append(bare_rtt)
            log(f"round {round_index + 1}/{args.rounds}: bare veth ping {bare_rtt * 1e6:.0f} µs")
            shift = round_index % len(tunnels)
            for tunnel in tunnels[shift:] + tunnels[:shift]:
                rounds[tunnel.implementation.name].append(
                    measure_round(topo, tunnel, args.seconds, bare_rtt, log, only)
                )

    summary = {name: medians(rounds[name]) for name in names}
    command = "python3 bench/compare.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"Median of {args.rounds} round(s) × {args.seconds:g} s; "
          f"{time.strftime('%Y-%m-%d')}, Linux {platform.release()}, {os.cpu_count()} CPUs; "
          f"bare veth ping RTT {statistics.median(bare_rtts) * 1e6:.0f} µs.\n")
    measured = {key for per_name in rounds.values() for r in per_name for key in r}
    print(markdown_table(names, summary, references, measured))
    print("\nImplementations: " + "; ".join(
        f"`{impl.name}` = `{shlex.join(impl.argv)}`" for impl in implementations))
    print(f"Command: `{command.strip()}`"
          + (f" with `WG_UPSTREAM={os.environ['WG_UPSTREAM']}`"
             if os.environ.get("WG_UPSTREAM") and not args.impl else ""))
    if args.json:
        args.json.write_text(json.dumps(
            {"rounds": rounds, "bare_rtts": bare_rtts, "median": summary,
             "implementations": {i.name: i.argv for i in implementations}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
