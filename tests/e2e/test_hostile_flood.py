"""wgpy-daemon under attack, in namespaces: floods from an attacker's address while legitimate
peers keep working.

Layout: the server "s" runs wgpy-daemon; "c" (wireguard-go) has an established tunnel to it;
"n" (wireguard-go) is a legitimate peer that starts a new handshake during the flood; "x" is
the attacker. Each has its own veth to "s". The floods are bench/flood.py, a Python socket
paced at a fixed rate (at most HEAVY_RATE) for a few seconds; the rate it reached is printed
(pytest -s) and checked to be real load (well above the device's under-load threshold).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from netns import Netns, Topology, WgEnd, format_endpoint

from wgpy.control.client import UapiClient

NETNS_PREFIX = "wgx"
pytestmark = pytest.mark.e2e

FLOOD_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "flood.py"
FLOOD_SECONDS = 20.0  # at most; ended (SIGTERM) once the new peer is through
FLOOD_RATE = 20_000  # initiations/s from the attacker
# The heaviest flood the tests send, paced: 200x the under-load threshold. Unpaced, one Python
# sender reached 400-500k/s on an idle 2-core machine, three times what the daemon's single
# thread processes; the kernel's socket queue then drops at random, legitimate packets too,
# and what got through depended on how the two cores were shared that run (the tests failed
# on an idle machine and passed on a busy one, old code and new alike). How much a daemon
# keeps up with is a capacity figure for bench/, not a pass/fail property.
HEAVY_RATE = 100_000
UNDER_LOAD_RATE = 512  # UnderLoad.rate (core/underload.py)
RSS_GROWTH_LIMIT_KB = 16 * 1024


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def flood(topo: Topology, ns: Netns, kind: str, host: str, port: int, key: str = "-",
          seconds: float = FLOOD_SECONDS, extra: tuple[str, ...] = ()):
    return ns.popen([sys.executable, str(FLOOD_SCRIPT), kind, host, str(port), key,
                            "--seconds", str(seconds), *extra])


def flood_result(topo: Topology, process) -> dict:
    process.wait(timeout=FLOOD_SECONDS + 30)
    output = topo.log_of(process)
    assert process.returncode == 0, output
    return json.loads(output.strip().splitlines()[-1])


class Site:
    """The server plus an established client, a not-yet-connected peer and an attacker."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.s = topo.netns("s")
        self.c = topo.netns("c")
        self.n = topo.netns("n")
        self.x = topo.netns("x")
        topo.veth(self.s, self.c, ["192.168.80.1/24"], ["192.168.80.2/24"])
        topo.veth(self.s, self.n, ["192.168.81.1/24"], ["192.168.81.2/24"])
        topo.veth(self.s, self.x, ["192.168.82.1/24"], ["192.168.82.2/24"])
        self.s_if = topo.ifname()
        self.daemon = topo.start_wgpy_daemon(self.s, self.s_if)
        c_if = topo.ifname()
        topo.start_wireguard_go(self.c, c_if)
        self.server, self.client = topo.configure_pair(
            self.s, self.s_if, self.c, c_if, a_host="192.168.80.1", b_host="192.168.80.2")
        self.client.ns.ping(self.server.ip4)
        # the new peer: configured on both sides, no packet sent yet
        self.n_if = topo.ifname()
        self.n_process = topo.start_wireguard_go(self.n, self.n_if,
                                                 extra_env={"LOG_LEVEL": "verbose"})
        private, self.n_public = topo.genkey()
        key_file = topo.write_file(private + "\n", name="private")
        topo.wg(self.s, "set", self.s_if, "peer", self.n_public,
                "allowed-ips", "10.77.0.3/32")
        topo.wg(self.n, "set", self.n_if, "private-key", str(key_file),
                "peer", self.server.public_key, "allowed-ips", "10.77.0.0/24",
                "endpoint", format_endpoint("192.168.81.1", self.server.listen_port))
        self.n.run(["ip", "address", "add", "10.77.0.3/24", "dev", self.n_if])
        self.n.run(["ip", "link", "set", self.n_if, "mtu", "1420", "up"])

    def drops(self) -> dict[str, int]:
        drops = UapiClient().drops(self.s_if)
        assert drops is not None, "wgpy-daemon did not answer wgpy_stats"
        return drops

    def endpoint_of(self, end: WgEnd) -> str:
        out = self.topo.wg(self.s, "show", self.s_if, "endpoints").stdout
        for line in out.splitlines():
            public, _, endpoint = line.partition("\t")
            if public == end.public_key:
                return endpoint
        raise AssertionError(f"peer missing from wg show endpoints:\n{out}")


@pytest.mark.parametrize("rate", [FLOOD_RATE, HEAVY_RATE], ids=["paced", "heavy"])
def test_initiation_flood_cookies_and_legitimate_peers_survive(topo: Topology, rate: int) -> None:
    """Initiations with a valid mac1 from one address, at FLOOD_RATE (40x the under-load
    threshold) or HEAVY_RATE (200x), for as long as the new peer
    needs: cookies answer them, no DH work is done for them, the established peer's pings pass
    and the new peer connects within three attempts."""
    site = Site(topo)
    rss_before = vm_rss_kb(site.daemon.pid)
    drops_before = site.drops()

    attacker = flood(topo, site.x, "initiations", "192.168.82.1", site.server.listen_port,
                     site.server.public_key, extra=("--rate", str(rate)))
    time.sleep(1.0)  # the load detector trips within the first second
    pinger = site.c.popen(["ping", "-n", "-q", "-i", "0.2", "-c", "25", "-W", "1",
                                  site.server.ip4])
    # the new peer's handshake, started under load; wireguard-go retries every 5 s
    started = time.monotonic()
    handshake_at = None
    while time.monotonic() - started < 3 * 5.4:
        if site.n.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "10.77.0.1"],
                      check=False).returncode == 0:
            handshake_at = time.monotonic() - started
            break
    pinger.wait(timeout=30)
    mid_drops = site.drops()  # while the flood still runs
    attacker.terminate()
    flooded = flood_result(topo, attacker)
    ping_log = topo.log_of(pinger)
    drops = site.drops()
    rss_after = vm_rss_kb(site.daemon.pid)
    n_log = topo.log_of(site.n_process)
    print(f"\nflood: {flooded}\nping during flood: {ping_log.strip().splitlines()[-2:]}"
          f"\nnew peer's handshake after {handshake_at} s\ndrops: {drops}"
          f"\nRSS {rss_before} -> {rss_after} kB")

    assert flooded["rate"] > 8 * UNDER_LOAD_RATE, flooded  # real load
    assert mid_drops.get("cookie_sent", 0) > drops_before.get("cookie_sent", 0)
    assert handshake_at is not None, f"new peer never completed a handshake:\n{n_log[-3000:]}"
    attempts = len(re.findall(r"Sending handshake initiation", n_log))
    assert 1 <= attempts <= 3, n_log[-3000:]
    received = int(re.search(r"(\d+) received", ping_log).group(1))
    assert received >= 20, ping_log  # the established peer's traffic kept flowing
    # under load: cookie replies instead of DH work for the unproven source
    assert flooded["cookie_replies"] > 0
    dh_attempts = sum(drops.get(reason, 0) - drops_before.get(reason, 0)
                      for reason in ("decrypt_handshake", "unknown_peer"))
    # only what arrived before the load detector tripped got DH work: a second's quota, or two
    # if the daemon was starved of CPU for over a second (the detector measures its own time)
    assert dh_attempts <= 2 * UNDER_LOAD_RATE and dh_attempts < flooded["sent"] // 20, (
        dh_attempts, drops)
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KB
    site.client.ns.ping(site.server.ip4)


SPOOF_RATE = 300  # initiations/s carrying the new peer's own source address


def test_spoofed_initiations_from_a_peers_address_do_not_lock_it_out(topo: Topology) -> None:
    """Issue 13: a flood keeps the daemon under load, and initiations with a valid mac1 carry
    the new peer's own source address at ~300/s (sent from inside the peer's namespace: what
    an off-path attacker who knows the server's public key can forge). They have no valid
    mac2, so they get cookie replies and never take the address's handshake tokens: the peer
    gets its cookie and is through within two retransmits (wireguard-go waits for its retry
    timer after a cookie). Before the fix they emptied the address's bucket and the peer was
    locked out for as long as they lasted."""
    site = Site(topo)
    drops_before = site.drops()
    port, key = site.server.listen_port, site.server.public_key
    attacker = flood(topo, site.x, "initiations", "192.168.82.1", port, key,
                     extra=("--rate", str(10 * UNDER_LOAD_RATE)))
    spoofer = flood(topo, site.n, "initiations", "192.168.81.1", port, key,
                    extra=("--rate", str(SPOOF_RATE), "--burst", "1"))  # evenly: no gaps
    time.sleep(1.5)  # under load, and the peer's address spoofed for a while already
    started = time.monotonic()
    handshake_at = None
    while time.monotonic() - started < 2 * 5.4 + 3:
        if site.n.run(["ping", "-n", "-q", "-c", "1", "-W", "1", "10.77.0.1"],
                      check=False).returncode == 0:
            handshake_at = time.monotonic() - started
            break
    mid_drops = site.drops()
    attacker.terminate()
    spoofer.terminate()
    flooded, spoofed = flood_result(topo, attacker), flood_result(topo, spoofer)
    drops = site.drops()
    n_log = topo.log_of(site.n_process)
    print(f"\nflood: {flooded}\nspoofed: {spoofed}\nnew peer's handshake after "
          f"{handshake_at} s\ndrops: {drops}")

    assert flooded["rate"] > 8 * UNDER_LOAD_RATE, flooded  # real load
    assert spoofed["rate"] > SPOOF_RATE * 2 // 3, spoofed
    assert mid_drops.get("cookie_sent", 0) > drops_before.get("cookie_sent", 0)
    assert handshake_at is not None, (
        f"the peer never completed a handshake: {drops}\n{n_log[-3000:]}")
    attempts = len(re.findall(r"Sending handshake initiation", n_log))
    assert 1 <= attempts <= 3, n_log[-3000:]
    site.client.ns.ping(site.server.ip4)


def test_initiation_flood_heavy(topo: Topology) -> None:
    """The same at HEAVY_RATE for 5 s. Before the core's fast path for refused sources the
    daemon processed ~65k/s, the kernel dropped a third to half of everything on that socket,
    the legitimate peer's packets too; with it (Device._receive_other drops cookie-less
    messages from a source over its cookie-reply limit before mac1) the daemon itself drops
    nearly all of the flood and the established peer's pings pass. Prints what the legitimate
    peer saw; asserts that, bounded memory and DH work, and that the tunnel recovers."""
    site = Site(topo)
    rss_before = vm_rss_kb(site.daemon.pid)
    attacker = flood(topo, site.x, "initiations", "192.168.82.1", site.server.listen_port,
                     site.server.public_key, seconds=5, extra=("--rate", str(HEAVY_RATE)))
    time.sleep(0.5)
    ping = site.c.run(["ping", "-n", "-q", "-i", "0.2", "-c", "20", "-W", "1",
                       site.server.ip4], check=False)
    flooded = flood_result(topo, attacker)
    rss_after = vm_rss_kb(site.daemon.pid)
    print(f"\nflood: {flooded}\nping: {ping.stdout.strip().splitlines()[-2:]}"
          f"\ndrops: {site.drops()}\nRSS {rss_before} -> {rss_after} kB")
    assert rss_after - rss_before < RSS_GROWTH_LIMIT_KB
    drops = site.drops()
    assert drops.get("decrypt_handshake", 0) <= 2 * UNDER_LOAD_RATE, drops  # no DH per flood
    # the daemon keeps up with (nearly) the whole flood, so the kernel drops little of it
    assert drops.get("cookie_reply_limited", 0) >= flooded["sent"] * 3 // 4, (drops, flooded)
    received = int(re.search(r"(\d+) received", ping.stdout).group(1))
    assert received >= 18, ping.stdout  # the established peer's traffic kept flowing
    time.sleep(1.5)
    site.client.ns.ping(site.server.ip4)


SNIFFER = r"""
import socket, struct, sys, time
port, want, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((sys.argv[1], 0))
sock.settimeout(0.2)
found, end = [], time.monotonic() + seconds
while len(found) < want and time.monotonic() < end:
    try:
        frame = sock.recv(65535)
    except TimeoutError:
        continue
    if frame[12:14] != b"\x08\x00" or frame[23] != 17:
        continue
    ihl = (frame[14] & 15) * 4
    udp = frame[14 + ihl:]
    if struct.unpack("!H", udp[2:4])[0] == port and udp[8:9] == b"\x04" and len(udp) > 40:
        found.append(udp[8:].hex())
print("\n".join(found))
"""


def capture_transport(topo: Topology, ns: Netns, ifname: str, port: int, traffic) -> list[str]:
    """Real transport datagrams to `port`, seen on ifname in ns while `traffic()` runs."""
    sniffer = ns.popen([sys.executable, "-c", SNIFFER, ifname, str(port), "12", "8"])
    time.sleep(0.3)
    traffic()
    sniffer.wait(timeout=15)
    return [line for line in topo.log_of(sniffer).split() if line]


def test_malformed_and_replayed_datagrams_change_nothing(topo: Topology) -> None:
    """Datagrams of every wrong shape, then the established peer's own transport packets
    replayed from the attacker's address: dropped with a reason, the tunnel keeps working and
    the peer's endpoint does not move."""
    site = Site(topo)
    c_veth = site.c.run(["ip", "-o", "link", "show", "type", "veth"]).stdout.split(":")[1]
    c_veth = c_veth.strip().split("@")[0]
    captured = capture_transport(topo, site.c, c_veth, site.server.listen_port,
                                 lambda: site.client.ns.ping(site.server.ip4, count=12,
                                                             interval=0.05))
    assert len(captured) >= 6, captured
    packets = topo.write_file("\n".join(captured) + "\n", name="replay")
    endpoint_before = site.endpoint_of(site.client)
    assert endpoint_before == f"192.168.80.2:{site.client.listen_port}"
    peers_before = topo.wg(site.s, "show", site.s_if, "allowed-ips").stdout
    drops_before = site.drops()

    results = {}
    for kind, extra in (("malformed", ()), ("replay", ("--packets", str(packets)))):
        attacker = flood(topo, site.x, kind, "192.168.82.1", site.server.listen_port,
                         seconds=2.5, extra=(*extra, "--rate", str(HEAVY_RATE)))
        time.sleep(0.3)
        ping = site.c.run(["ping", "-n", "-q", "-i", "0.1", "-c", "15", "-W", "1",
                           site.server.ip4], check=False)
        results[kind] = (flood_result(topo, attacker), ping.stdout.strip().splitlines()[-2])
        assert site.endpoint_of(site.client) == endpoint_before, kind
    drops = site.drops()
    print(f"\n{results}\ndrops: {drops}")

    def grew(reason: str) -> int:
        return drops.get(reason, 0) - drops_before.get(reason, 0)

    for kind, (flooded, ping_line) in results.items():
        assert flooded["rate"] > 1000, flooded
        received = int(re.search(r"(\d+) received", ping_line).group(1))
        assert received >= 10, (kind, ping_line)
    for reason in ("empty", "unknown_type", "bad_size", "bad_reserved", "bad_mac1",
                   "unknown_receiver"):
        assert grew(reason) > 0, (reason, drops)
    assert grew("replayed_counter") >= results["replay"][0]["sent"] // 2, drops
    assert grew("decrypt_data") == 0 and grew("decrypt_handshake") == 0, drops
    assert site.endpoint_of(site.client) == endpoint_before
    assert topo.wg(site.s, "show", site.s_if, "allowed-ips").stdout == peers_before
    site.client.ns.ping(site.server.ip4)
    site.server.ns.ping(site.client.ip4)
