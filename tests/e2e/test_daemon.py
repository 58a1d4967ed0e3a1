"""wgpy-daemon end to end: real TUN, real UDP over a veth, configured with the real `wg`,
against itself and against wireguard-go, in network namespaces made by the test.

"a" always sends first, so it is the handshake initiator; the pairs (wgpy, wireguard-go) and
(wireguard-go, wgpy) cover both roles for wgpy.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import pytest
from netns import WIREGUARD_RUN_DIR, Topology, WgEnd, namespace_pids

NETNS_PREFIX = "wgd"
pytestmark = pytest.mark.e2e

OUTER_A = ("192.168.78.1/24", "fd00:78::1/64")
OUTER_B = ("192.168.78.2/24", "fd00:78::2/64")
PAIRS = {
    "wgpy-wgpy": ("wgpy", "wgpy"),
    "wgpy-wggo": ("wgpy", "wireguard-go"),
    "wggo-wgpy": ("wireguard-go", "wgpy"),
    # the pure-Python per-packet path (WGPY_PURE=1) against wireguard-go, both roles
    "wgpypure-wggo": ("wgpy-pure", "wireguard-go"),
    "wggo-wgpypure": ("wireguard-go", "wgpy-pure"),
}


def start(topo: Topology, ns, impl: str) -> tuple[str, object]:
    ifname = topo.ifname()
    if impl == "wgpy":
        process = topo.start_wgpy_daemon(ns, ifname)
    elif impl == "wgpy-pure":
        process = topo.start_wgpy_daemon(ns, ifname, extra_env={"WGPY_PURE": "1"})
    else:
        process = topo.start_wireguard_go(ns, ifname)
    return ifname, process


def make_pair(
    topo: Topology,
    impls: tuple[str, str],
    outer_v6: bool = False,
    a_knows_b: bool = True,
    b_knows_a: bool = True,
    **configure,
) -> tuple[WgEnd, WgEnd]:
    a = topo.netns("a")
    b = topo.netns("b")
    topo.veth(a, b, OUTER_A, OUTER_B)
    a_if, _ = start(topo, a, impls[0])
    b_if, _ = start(topo, b, impls[1])
    outer = 1 if outer_v6 else 0
    return topo.configure_pair(
        a, a_if, b, b_if,
        a_host=OUTER_A[outer].split("/")[0] if b_knows_a else None,
        b_host=OUTER_B[outer].split("/")[0] if a_knows_b else None,
        **configure,
    )


@pytest.mark.parametrize("outer_v6", [False, True], ids=["outer4", "outer6"])
@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_handshake_ping_and_wg_show(topo: Topology, pair: str, outer_v6: bool) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair], outer_v6=outer_v6)

    end_a.ns.ping(end_b.ip4)
    end_a.ns.ping(end_b.ip6)
    end_b.ns.ping(end_a.ip4)
    end_b.ns.ping(end_a.ip6)

    for local, remote, host in ((end_a, end_b, OUTER_B), (end_b, end_a, OUTER_A)):
        dump = topo.wg_dump(local.ns, local.ifname)
        assert dump.public_key == local.public_key
        assert dump.listen_port == local.listen_port
        peer = dump.peers[remote.public_key]
        assert peer.latest_handshake > 0
        assert peer.rx_bytes > 0 and peer.tx_bytes > 0
        outer_host = host[1 if outer_v6 else 0].split("/")[0]
        expected = f"[{outer_host}]" if outer_v6 else outer_host
        assert peer.endpoint == f"{expected}:{remote.listen_port}"
        assert sorted(peer.allowed_ips) == sorted(
            [f"{remote.ip4}/32", f"{remote.ip6}/128"])


def dump_peer(topo: Topology, local: WgEnd, remote: WgEnd):
    return topo.wg_dump(local.ns, local.ifname).peers[remote.public_key]


def test_latest_handshake_is_reported_in_wall_clock_time(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wgpy"))
    before = int(time.time())
    end_a.ns.ping(end_b.ip4, count=1)
    after = int(time.time()) + 1
    for local, remote in ((end_a, end_b), (end_b, end_a)):
        peer = dump_peer(topo, local, remote)
        assert before - 1 <= peer.latest_handshake <= after
    human = topo.wg(end_a.ns, "show", end_a.ifname).stdout
    assert "latest handshake:" in human


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_preshared_key(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair], preshared_key=True)
    end_a.ns.ping(end_b.ip4)
    end_b.ns.ping(end_a.ip6)
    psk_a = dump_peer(topo, end_a, end_b).preshared_key
    assert psk_a is not None and psk_a == dump_peer(topo, end_b, end_a).preshared_key


def test_mismatched_preshared_key_gets_no_handshake(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wireguard-go"), preshared_key=True)
    topo.wg(end_a.ns, "set", end_a.ifname, "peer", end_b.public_key, "preshared-key",
            str(end_a.ns.write_file(topo.genpsk() + "\n", name="psk")))
    result = end_a.ns.run(["ping", "-n", "-c", "2", "-W", "1", end_b.ip4], check=False)
    assert result.returncode != 0
    assert dump_peer(topo, end_a, end_b).latest_handshake == 0
    # clearing the key on both sides restores the tunnel
    for local, remote in ((end_a, end_b), (end_b, end_a)):
        topo.wg(local.ns, "set", local.ifname, "peer", remote.public_key, "preshared-key",
                "/dev/null")
    # (the next initiation goes out when the retransmit timer fires, up to ~5 s later)
    Topology.wait_for(
        lambda: end_a.ns.run(["ping", "-n", "-c", "1", "-W", "1", end_b.ip4],
                             check=False).returncode == 0,
        timeout=12, message="the tunnel with no preshared key on either side")
    assert dump_peer(topo, end_a, end_b).preshared_key is None


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_responder_learns_endpoint_of_initiator(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair], b_knows_a=False)
    assert dump_peer(topo, end_b, end_a).endpoint is None
    end_a.ns.ping(end_b.ip4)
    assert dump_peer(topo, end_b, end_a).endpoint == f"192.168.78.1:{end_a.listen_port}"
    end_b.ns.ping(end_a.ip4)


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
def test_roaming_port_and_address_are_followed(topo: Topology, pair: str) -> None:
    """b moves (new listen port, then new outer address); a follows b's authenticated packets."""
    end_a, end_b = make_pair(topo, PAIRS[pair])
    end_a.ns.ping(end_b.ip4)
    topo.wg(end_b.ns, "set", end_b.ifname, "listen-port", "51999")
    end_b.ns.ping(end_a.ip4)
    assert dump_peer(topo, end_a, end_b).endpoint == "192.168.78.2:51999"
    end_a.ns.ping(end_b.ip4)

    if not PAIRS[pair][1].startswith("wgpy"):
        return  # Debian's wireguard-go keeps sending from its old (sticky) source address
    veth_b = end_b.ns.run("ip -o -4 addr show | awk '/192.168.78.2/ {print $2}'").stdout.strip()
    # (deleting a primary address takes its secondaries along: delete first, then add)
    end_b.ns.run(["ip", "addr", "del", "192.168.78.2/24", "dev", veth_b])
    end_b.ns.run(["ip", "addr", "add", "192.168.78.3/24", "dev", veth_b])
    end_b.ns.ping(end_a.ip4)
    assert dump_peer(topo, end_a, end_b).endpoint == "192.168.78.3:51999"
    end_a.ns.ping(end_b.ip6)


@pytest.mark.parametrize("pair", ["wgpy-wgpy", "wgpy-wggo", "wgpypure-wggo"])
def test_tcp_both_ways(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair])
    end_a.ns.ping(end_b.ip4, count=1)
    for args in ([], ["-R"]):
        report = topo.iperf3(end_b.ns, end_a.ns, end_b.ip4, args=args, seconds=2)
        received = report["end"]["sum_received"]
        assert received["bytes"] > 2_000_000, (args, received)
    report = topo.iperf3(end_b.ns, end_a.ns, end_b.ip6, seconds=1)
    assert report["end"]["sum_received"]["bytes"] > 1_000_000
    assert dump_peer(topo, end_b, end_a).rx_bytes > 2_000_000


def test_tcp_over_outer_ipv6(topo: Topology) -> None:
    """The batched paths (UDP GSO/GRO, coalesced TUN writes) on the IPv6 socket too."""
    end_a, end_b = make_pair(topo, ("wgpy", "wgpy"), outer_v6=True)
    end_a.ns.ping(end_b.ip6, count=1)
    for args in ([], ["-R"]):
        report = topo.iperf3(end_b.ns, end_a.ns, end_b.ip4, args=args, seconds=1)
        assert report["end"]["sum_received"]["bytes"] > 1_000_000, args
    assert dump_peer(topo, end_a, end_b).endpoint == f"[fd00:78::2]:{end_b.listen_port}"


@pytest.mark.parametrize("pair", ["wgpy-wgpy", "wgpy-wggo"])
def test_persistent_keepalive_starts_at_once_and_keeps_the_tunnel_alive(
    topo: Topology, pair: str
) -> None:
    # b has no endpoint for a: only a's keepalives can bring the tunnel up. (Only a gets a
    # keepalive interval: any authenticated packet received also resets the timer, so with
    # both sides at 1 s one side's keepalives keep the other quiet, as in the kernel.)
    end_a, end_b = make_pair(topo, PAIRS[pair], b_knows_a=False)
    assert dump_peer(topo, end_a, end_b).tx_bytes == 0
    topo.wg(end_a.ns, "set", end_a.ifname, "peer", end_b.public_key, "persistent-keepalive", "1")
    # turning it on sends a keepalive at once, which needs a handshake first
    Topology.wait_for(lambda: dump_peer(topo, end_b, end_a).latest_handshake > 0, timeout=3,
                      message="a handshake started by the immediate keepalive")
    assert dump_peer(topo, end_a, end_b).persistent_keepalive == 1
    first = dump_peer(topo, end_b, end_a).rx_bytes
    time.sleep(2.5)
    assert dump_peer(topo, end_b, end_a).rx_bytes >= first + 2 * 32  # two more keepalives
    end_b.ns.ping(end_a.ip4)  # and b has learnt where a is


def test_removing_a_peer(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wireguard-go"))
    end_a.ns.ping(end_b.ip4, count=1)
    topo.wg(end_a.ns, "set", end_a.ifname, "peer", end_b.public_key, "remove")
    assert topo.wg_dump(end_a.ns, end_a.ifname).peers == {}
    result = end_a.ns.run(["ping", "-n", "-c", "1", "-W", "1", end_b.ip4], check=False)
    assert result.returncode != 0
    # b's packets to a are now from an unknown peer's session: dropped, no answer
    result = end_b.ns.run(["ping", "-n", "-c", "1", "-W", "1", end_a.ip4], check=False)
    assert result.returncode != 0


FLOOD = textwrap.dedent("""
    import os, random, socket, struct, sys
    host, port = sys.argv[1], int(sys.argv[2])
    rng = random.Random(7)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    def send(data):
        try:
            s.sendto(data, (host, port))
        except OSError:
            pass
    for i in range(6000):
        kind = i % 6
        if kind == 0:    # random bytes, random size
            send(os.urandom(rng.randrange(0, 1500)))
        elif kind == 1:  # initiation-sized, garbage inside
            send(b"\\x01\\0\\0\\0" + os.urandom(144))
        elif kind == 2:  # response-sized
            send(b"\\x02\\0\\0\\0" + os.urandom(88))
        elif kind == 3:  # cookie reply
            send(b"\\x03\\0\\0\\0" + os.urandom(60))
        elif kind == 4:  # transport with a random receiver index and counter
            send(b"\\x04\\0\\0\\0" + os.urandom(12 + rng.randrange(16, 1400)))
        else:            # truncated headers and bad reserved bytes
            send(bytes([rng.randrange(1, 5), 1, 0, 0]) + os.urandom(rng.randrange(0, 40)))
""")


@pytest.mark.parametrize("pair", ["wgpy-wgpy", "wggo-wgpy"])
def test_flood_of_malformed_datagrams_leaves_the_tunnel_working(topo: Topology, pair: str) -> None:
    end_a, end_b = make_pair(topo, PAIRS[pair])  # b is wgpy: the target
    end_a.ns.ping(end_b.ip4, count=1)
    end_a.ns.run(["python3", "-c", FLOOD, "192.168.78.2", str(end_b.listen_port)], timeout=60)
    end_a.ns.run(["python3", "-c", FLOOD.replace("AF_INET", "AF_INET6"), "fd00:78::2",
                  str(end_b.listen_port)], timeout=60)
    started = time.monotonic()
    end_a.ns.ping(end_b.ip4)
    end_b.ns.ping(end_a.ip6)
    assert time.monotonic() - started < 5
    peer = dump_peer(topo, end_b, end_a)
    assert peer.endpoint == f"192.168.78.1:{end_a.listen_port}"  # garbage moved nothing


def test_daemon_exits_when_its_link_is_deleted(topo: Topology) -> None:
    ns = topo.netns("a")
    ifname, process = start(topo, ns, "wgpy")
    socket_path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
    assert ns.link_exists(ifname) and socket_path.exists()
    ns.run(["ip", "link", "del", ifname])
    assert process.wait(timeout=5) == 0
    assert not socket_path.exists()


def test_daemon_exits_on_sigterm_and_sigint_removing_socket_and_link(topo: Topology) -> None:
    ns = topo.netns("a")
    for sig in (signal.SIGTERM, signal.SIGINT):
        ifname, process = start(topo, ns, "wgpy")
        socket_path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
        topo.wg(ns, "set", ifname, "listen-port", "51820")
        process.send_signal(sig)
        assert process.wait(timeout=5) == 0
        assert not socket_path.exists()
        assert not ns.link_exists(ifname)


def test_daemon_exits_when_its_socket_is_deleted(topo: Topology) -> None:
    """As wireguard-go: removing /var/run/wireguard/IFNAME.sock stops the daemon."""
    ns = topo.netns("a")
    ifname, process = start(topo, ns, "wgpy")
    (WIREGUARD_RUN_DIR / f"{ifname}.sock").unlink()
    assert process.wait(timeout=5) == 0
    assert not ns.link_exists(ifname)


def test_background_mode_returns_once_interface_and_socket_are_ready(topo: Topology) -> None:
    ns = topo.netns("a")
    ifname = topo.ifname()
    topo.track_interface(ns, ifname)
    env = {"WG_PROCESS_FOREGROUND": "0"}
    result = ns.run(["wgpy-daemon", ifname], env=env, timeout=20)
    assert result.returncode == 0
    assert result.stdout == "" and result.stderr == ""
    # no waiting: the interface exists and the socket answers right away (wg-quick relies on it)
    assert ns.link_exists(ifname)
    topo.wg(ns, "set", ifname, "listen-port", "51820")
    assert topo.wg_dump(ns, ifname).listen_port == 51820
    daemons = [pid for pid in namespace_pids(ns.name)]
    assert len(daemons) == 1
    # detached: its own session, stdio on /dev/null
    assert os.getsid(daemons[0]) == daemons[0]
    assert os.readlink(f"/proc/{daemons[0]}/fd/1") == "/dev/null"
    ns.run(["ip", "link", "del", ifname])
    Topology.wait_for(lambda: not (WIREGUARD_RUN_DIR / f"{ifname}.sock").exists()
                      and not namespace_pids(ns.name), timeout=5,
                      message="the background daemon to exit")


def test_command_line_contract(topo: Topology) -> None:
    ns = topo.netns("a")
    usage = ns.run(["wgpy-daemon"], check=False)
    assert usage.returncode == 0 and "Usage:" in usage.stdout  # as wireguard-go
    bad = ns.run(["wgpy-daemon", "-f", "x" * 20], check=False)
    assert bad.returncode == 1
    ifname, _ = start(topo, ns, "wgpy")
    again = ns.run(["wgpy-daemon", "-f", ifname], check=False,
                   env={"LOG_LEVEL": "error"})
    assert again.returncode == 1  # its socket is live: refused, the running daemon untouched
    assert topo.wg(ns, "show", ifname).returncode == 0


def test_help_version_and_clear_refusals(topo: Topology) -> None:
    """--help/-h/--version answer and exit 0 (wireguard-go would make an interface called
    `--help`); a name with '/', an unknown option and a second daemon for a running name are
    refused on stderr saying why."""
    ns = topo.netns("a")
    daemon = [sys.executable, "-m", "wgpy.cli.daemon"]
    for flag in ("--help", "-h"):
        shown = ns.run([*daemon, flag], check=False)
        assert shown.returncode == 0 and shown.stdout.startswith("Usage: "), shown
    version = ns.run([*daemon, "--version"], check=False)
    assert version.returncode == 0 and version.stdout.startswith("wgpy-daemon v"), version
    assert len(ns.run(["ip", "-o", "link"]).stdout.splitlines()) == 1  # only lo: nothing made
    slash = ns.run([*daemon, "-f", "wg/0"], check=False)
    assert slash.returncode == 1 and "`wg/0' contains '/'" in slash.stderr, slash
    assert "1..15" not in slash.stderr + slash.stdout
    unknown = ns.run([*daemon, "--frobnicate"], check=False)
    assert unknown.returncode == 1 and "unknown option `--frobnicate'" in unknown.stderr
    ifname, process = start(topo, ns, "wgpy")
    for argv in ([*daemon, "-f", ifname], [*daemon, ifname]):
        again = ns.run(argv, check=False)
        assert again.returncode == 1, again
        assert f"{ifname}: already running as PID {process.pid}" in again.stderr, again
    assert topo.wg(ns, "show", ifname).returncode == 0


def test_wg_setconf_addconf_syncconf_showconf(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wireguard-go"), preshared_key=True,
                             persistent_keepalive=15)
    end_a.ns.ping(end_b.ip4, count=1)
    ns, ifname = end_a.ns, end_a.ifname
    shown = topo.wg(ns, "showconf", ifname).stdout
    conf = ns.write_file(shown, name="conf")
    before = topo.wg_dump(ns, ifname)
    topo.wg(ns, "syncconf", ifname, str(conf))  # no change
    after = topo.wg_dump(ns, ifname)
    assert after.peers.keys() == before.peers.keys()
    assert after.peers[end_b.public_key].latest_handshake == before.peers[
        end_b.public_key].latest_handshake  # syncconf kept the session
    _extra_private, extra_public = topo.genkey()
    extra = ns.write_file(f"[Peer]\nPublicKey = {extra_public}\nAllowedIPs = 10.99.0.0/16\n",
                          name="extra")
    topo.wg(ns, "addconf", ifname, str(extra))
    dump = topo.wg_dump(ns, ifname)
    assert dump.peers[extra_public].allowed_ips == ["10.99.0.0/16"]
    assert dump.peers[end_b.public_key].persistent_keepalive == 15
    topo.wg(ns, "syncconf", ifname, str(conf))  # removes the extra peer again
    assert set(topo.wg_dump(ns, ifname).peers) == {end_b.public_key}
    end_a.ns.ping(end_b.ip4, count=1)
    topo.wg(ns, "setconf", ifname, str(extra))  # replaces everything: no private key, one peer
    dump = topo.wg_dump(ns, ifname)
    assert dump.private_key is None and set(dump.peers) == {extra_public}
    assert topo.wg(ns, "showconf", ifname).stdout.count("[Peer]") == 1


def test_bad_set_changes_nothing(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wgpy"))
    ns, ifname = end_a.ns, end_a.ifname
    before = topo.wg_dump(ns, ifname)
    # a port in use by another socket in the namespace: EADDRINUSE, nothing else applied
    hold_port = ("import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                 "s.bind(('0.0.0.0', 52000)); time.sleep(30)")
    holder = ns.popen(["python3", "-c", hold_port])
    Topology.wait_for(lambda: "52000" in ns.run(["ss", "-Hlun"]).stdout, timeout=5,
                      message="the port holder")
    _, new_public = topo.genkey()
    result = topo.wg(ns, "set", ifname, "listen-port", "52000", "peer", new_public,
                     "allowed-ips", "10.98.0.0/16", check=False)
    assert result.returncode != 0 and "Address already in use" in result.stderr
    after = topo.wg_dump(ns, ifname)
    assert after.listen_port == before.listen_port
    assert set(after.peers) == set(before.peers)
    topo.stop_process(holder)
    end_a.ns.ping(end_b.ip4, count=1)


def test_wg_quick_up_and_down_with_wgpy_daemon(topo: Topology) -> None:
    a = topo.netns("a")
    b = topo.netns("b")
    topo.veth(a, b, OUTER_A, OUTER_B)
    b_if, _ = start(topo, b, "wireguard-go")
    a_if = topo.ifname()
    topo.track_interface(a, a_if)
    a_private, a_public = topo.genkey()
    b_private, b_public = topo.genkey()
    b_key = b.write_file(b_private + "\n", name="key")
    topo.wg(b, "set", b_if, "listen-port", "51821", "private-key", str(b_key),
            "peer", a_public, "allowed-ips", "10.77.0.1/32,fd77::1/128")
    topo.add_addresses(b, b_if, ["10.77.0.2/24", "fd77::2/64"])
    b.run(["ip", "link", "set", b_if, "up"])
    conf_dir = topo.tmpdir / "wgquick"
    conf_dir.mkdir(mode=0o700)
    conf = conf_dir / f"{a_if}.conf"
    conf.write_text(textwrap.dedent(f"""\
        [Interface]
        PrivateKey = {a_private}
        Address = 10.77.0.1/24, fd77::1/64
        ListenPort = 51820

        [Peer]
        PublicKey = {b_public}
        AllowedIPs = 10.77.0.2/32, fd77::2/128
        Endpoint = 192.168.78.2:51821
        """))
    conf.chmod(0o600)
    env = {"WG_QUICK_USERSPACE_IMPLEMENTATION": "wgpy-daemon"}
    up = a.run(["wg-quick", "up", str(conf)], env=env, timeout=30)
    assert "wgpy-daemon" in up.stderr
    a.ping("10.77.0.2")
    a.ping("fd77::2")
    assert topo.wg_dump(a, a_if).peers[b_public].latest_handshake > 0
    a.run(["wg-quick", "down", str(conf)], env=env, timeout=30)
    Topology.wait_for(lambda: not (WIREGUARD_RUN_DIR / f"{a_if}.sock").exists()
                      and not namespace_pids(a.name), timeout=5,
                      message="wgpy-daemon to exit after wg-quick down")
    assert not a.link_exists(a_if)


def test_fwmark_marks_the_tunnel_traffic(topo: Topology) -> None:
    end_a, end_b = make_pair(topo, ("wgpy", "wgpy"))
    ns = end_a.ns
    ns.run(["nft", "-f", "-"], input=textwrap.dedent(f"""\
        table inet wgdmark {{
            chain out {{
                type filter hook output priority 0; policy accept;
                udp dport {end_b.listen_port} meta mark 0x1234 counter
            }}
        }}
        """))

    def marked_packets() -> int:
        listing = ns.run(["nft", "list", "chain", "inet", "wgdmark", "out"]).stdout
        return int(listing.split("counter packets ")[1].split()[0])

    end_a.ns.ping(end_b.ip4, count=1)
    assert marked_packets() == 0
    topo.wg(ns, "set", end_a.ifname, "fwmark", "0x1234")  # on sockets already bound
    assert topo.wg_dump(ns, end_a.ifname).fwmark == 0x1234
    end_a.ns.ping(end_b.ip4, count=2)
    assert marked_packets() >= 2
    topo.wg(ns, "set", end_a.ifname, "listen-port", "52100")  # and on the rebound ones
    before = marked_packets()
    end_a.ns.ping(end_b.ip4, count=2)
    assert marked_packets() >= before + 2
    topo.wg(ns, "set", end_a.ifname, "fwmark", "0")
    assert topo.wg_dump(ns, end_a.ifname).fwmark is None
    before = marked_packets()
    end_a.ns.ping(end_b.ip4, count=2)
    assert marked_packets() == before


def test_link_down_drops_packets_and_up_resumes(topo: Topology) -> None:
    """A down TUN refuses writes (EIO); the daemon must not take that for a deleted link."""
    end_a, end_b = make_pair(topo, ("wireguard-go", "wgpy"))
    end_a.ns.ping(end_b.ip4, count=1)
    end_b.ns.run(["ip", "link", "set", end_b.ifname, "down"])
    result = end_a.ns.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", end_b.ip4],
                          check=False)
    assert result.returncode != 0
    # each refused write is a counted drop, as an operator sees it
    shown = end_b.ns.run(["wgpy", "show", end_b.ifname, "--json"]).stdout
    drops = json.loads(shown)["interfaces"][0]["drops"]
    assert drops.get("tun_write_failed", 0) >= 2, drops
    end_b.ns.run(["ip", "link", "set", end_b.ifname, "up"])
    end_b.ns.run(["ip", "route", "replace", "10.77.0.0/24", "dev", end_b.ifname])
    end_a.ns.ping(end_b.ip4)
    assert topo.wg(end_b.ns, "show", end_b.ifname).returncode == 0


@pytest.mark.parametrize("pair", ["wgpy-wggo", "wggo-wgpy"])
def test_padding_follows_an_mtu_set_after_start(topo: Topology, pair: str) -> None:
    """wg-quick sets the MTU once the daemon runs (PPPoE: 1412). A 1410-byte packet is padded
    to the MTU, 1412 (the kernel's and wireguard-go's calculate_skb_padding), not to the
    default 1420: the datagram is 16 + 1412 + 16 = 1444 bytes. The sender is wgpy in one
    case and wireguard-go in the other, so the expected size is the reference's."""
    a_end, b_end = make_pair(topo, PAIRS[pair], mtu=1412)
    a_end.ns.ping(b_end.ip4, count=2)  # handshake done, sessions confirmed
    time.sleep(1.2)  # (wgpy follows MTU events at once: test_sticky_source.py; this waits for
    # wireguard-go as the sender)
    before = topo.wg_dump(a_end.ns, a_end.ifname).peers[b_end.public_key].tx_bytes
    a_end.ns.run(["ping", "-n", "-q", "-c", "1", "-s", str(1410 - 28), "-W", "2", b_end.ip4])
    after = topo.wg_dump(a_end.ns, a_end.ifname).peers[b_end.public_key].tx_bytes
    assert after - before in (1444, 1444 + 32)  # + a keepalive, if one fell due meanwhile
