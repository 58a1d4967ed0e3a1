#!/usr/bin/env python3
"""One TCP stream through one tunnel, with what explains its speed (root):

    python3 bench/profile_tcp.py [--seconds S] [--reverse] [--cprofile DIR | --py-spy DIR]
                                 [--impl CMD]

Builds bench/compare.py's topology once (two namespaces, veth MTU 1500, tunnel MTU 1420),
runs iperf3 a->b (b->a with --reverse) and prints the throughput, TCP retransmissions, the
counters that say where packets were lost (the UDP receive buffers of both namespaces, the TUN
interfaces' drops), and each daemon's CPU time per 1420-byte tunnel packet carried (user +
system, from /proc: unlike throughput this hardly depends on what else the machine runs, so it
compares two versions even on a busy machine). With --cprofile DIR both wgpy daemons run under cProfile and leave
DIR/a.prof and DIR/b.prof (the sending end is a unless --reverse); `python3 -m pstats` reads
them. With --py-spy DIR both daemons are sampled by py-spy during the run (DIR/a.txt, DIR/b.txt:
collapsed stacks, native frames included; bench/pyspy_top.py sums them up). The default implementation is `python3 -m wgpy.cli.daemon -f` (WGPY_* variables pass
through, e.g. WGPY_TUN_TSO=0).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

from compare import Implementation, build_tunnel
from netns import Netns, Topology, namespace_pids

COUNTERS = ("UdpRcvbufErrors", "UdpInErrors", "Udp6RcvbufErrors", "TcpRetransSegs")


def nstat(ns: Netns) -> dict[str, int]:
    out = ns.run(["nstat", "-a", "-z", "-j"]).stdout
    values = json.loads(out).get("kernel", {})
    return {name: int(values.get(name, 0)) for name in COUNTERS}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def link_drops(ns: Netns, ifname: str) -> tuple[int, int]:
    link = json.loads(ns.run(["ip", "-s", "-j", "link", "show", "dev", ifname]).stdout)[0]
    stats = link["stats64"]
    return stats["rx"]["dropped"], stats["tx"]["dropped"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--cprofile", metavar="DIR")
    parser.add_argument("--py-spy", metavar="DIR", dest="py_spy")
    parser.add_argument("--perf", metavar="FILE",
                        help="perf record -a during the run (perf report --sort comm,dso)")
    parser.add_argument("--impl", default="python3 -m wgpy.cli.daemon -f")
    args = parser.parse_args()
    argv = shlex.split(args.impl)
    with Topology("wgp") as topo:
        if args.cprofile:
            out = Path(args.cprofile).resolve()
            out.mkdir(parents=True, exist_ok=True)
            tunnel = None
            # the two ends need different output files: build each end's command apart
            a_argv = ["python3", "-m", "cProfile", "-o", str(out / "a.prof"), "-m",
                      "wgpy.cli.daemon", "-f"]
            b_argv = [*a_argv[:4], str(out / "b.prof"), *a_argv[5:]]
            tunnel = _build_two(topo, a_argv, b_argv)
        else:
            tunnel = build_tunnel(topo, Implementation("impl", argv), 0)
        before = {ns: nstat(ns) for ns in (tunnel.a.ns, tunnel.b.ns)}
        daemons = {label: namespace_pids(end.ns.name)[0]
                   for label, end in (("a", tunnel.a), ("b", tunnel.b))}
        cpu_before = {label: cpu_seconds(pid) for label, pid in daemons.items()}
        samplers = []
        if args.py_spy:
            samplers = _start_py_spy(Path(args.py_spy), tunnel, args.seconds)
        perf = None
        if args.perf:
            perf = subprocess.Popen(["perf", "record", "-a", "-q", "-o", args.perf, "--", "sleep",
                                     str(max(1, int(args.seconds) - 1))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report = topo.iperf3(tunnel.b.ns, tunnel.a.ns, tunnel.b.ip4,
                             ["-R"] if args.reverse else [], seconds=args.seconds)
        cpu_after = {label: cpu_seconds(pid) for label, pid in daemons.items()}
        sent = report["end"]["sum_sent"]
        packets = report["end"]["sum_received"]["bytes"] / 1368  # TCP payload per packet
        print(f"TCP {'b->a' if args.reverse else 'a->b'}: "
              f"{report['end']['sum_received']['bits_per_second'] / 1e9:.3f} Gbit/s, "
              f"{sent.get('retransmits', '?')} retransmits")
        for label, end in (("a", tunnel.a), ("b", tunnel.b)):
            after = nstat(end.ns)
            delta = {k: after[k] - before[end.ns][k] for k in COUNTERS if after[k] != before[end.ns][k]}
            rx_dropped, tx_dropped = link_drops(end.ns, end.ifname)
            cpu = cpu_after[label] - cpu_before[label]
            role = "receiver" if (label == "a") == args.reverse else "sender"
            print(f"  {label} ({role}): {cpu / packets * 1e6:.2f} µs CPU per packet "
                  f"({cpu:.2f} s); {delta or 'no UDP/TCP loss counters moved'}; "
                  f"{end.ifname} rx_dropped {rx_dropped} tx_dropped {tx_dropped}")
        if perf is not None:
            perf.wait(timeout=30)
        for sampler in samplers:
            sampler.wait(timeout=args.seconds + 30)
    if args.cprofile:
        print(f"profiles: {args.cprofile}/a.prof {args.cprofile}/b.prof")
    if args.py_spy:
        print(f"profiles: {args.py_spy}/a.txt {args.py_spy}/b.txt")
    return 0


def _start_py_spy(out: Path, tunnel, seconds: float) -> list[subprocess.Popen]:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    samplers = []
    for label, end in (("a", tunnel.a), ("b", tunnel.b)):
        (pid,) = namespace_pids(end.ns.name)  # the daemon is all that runs there yet
        with open(out / f"{label}.log", "w") as log:
            samplers.append(subprocess.Popen(
                ["py-spy", "record", "--native", "--format", "raw", "--rate", "100",
                 "--duration", str(int(seconds)), "--pid", str(pid), "--output",
                 str(out / f"{label}.txt")], stdout=subprocess.DEVNULL, stderr=log))
    time.sleep(0.5)  # py-spy attached before the stream starts
    return samplers


def _build_two(topo: Topology, a_argv: list[str], b_argv: list[str]):
    """build_tunnel with a different command at each end."""
    from compare import OUTER_A, OUTER_B, OUTER_MTU, TUNNEL_MTU, Tunnel

    a = topo.netns("0a")
    b = topo.netns("0b")
    topo.veth(a, b, [OUTER_A], [OUTER_B], mtu=OUTER_MTU)
    a_if, b_if = topo.ifname(), topo.ifname()
    topo.start_userspace(a, a_if, a_argv)
    topo.start_userspace(b, b_if, b_argv)
    end_a, end_b = topo.configure_pair(
        a, a_if, b, b_if, a_host=OUTER_A.split("/")[0], b_host=OUTER_B.split("/")[0],
        mtu=TUNNEL_MTU,
    )
    a.ping(end_b.ip4, count=3)
    return Tunnel(Implementation("cprofile", a_argv), end_a, end_b)


if __name__ == "__main__":
    sys.exit(main())
