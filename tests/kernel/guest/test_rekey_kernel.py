"""Rekey after REKEY_AFTER_TIME (120 s) against the kernel module, on real clocks.

The kernel's clock cannot be shortened, so this waits the full two minutes, once, for two
sessions at the same time, one per initiator:
  A  wgpy-daemon initiated the session with kernel link kA (wgpy must rekey at 120 s),
  B  kernel link kB initiated the session with wgpy-daemon (the kernel rekeys; wgpy answers).
Both sessions end at the same wgpy-daemon (two peers; one Python start under emulation costs
10-30 s), and both kernel links live in namespace `k`. Pings run in both directions of both
sessions, five a second, through the whole wait. A thread captures the WireGuard datagrams on
wgpy's veth (AF_PACKET), so the test can say who sent which handshake message when, and which
session (receiver index) each transport packet was sealed for.

Whitepaper 6.2/6.3: only the initiator of the current session rekeys on REKEY_AFTER_TIME, when
it next sends; the responder keeps sending on the old session until the initiator's first
packet on the new one arrives, and the initiator must still accept what was sealed for the old
one in the meantime (its previous keypair).
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Self

import pytest
from kernlib import add_kernel_link, start_wgpy
from netns import Netns, Topology, parse_wg_dump

from wgpy.constants import REKEY_AFTER_TIME

K_OUTER, P_OUTER = "10.89.0.1", "10.89.0.2"
K_PORT_A, P_PORT, K_PORT_B = 51830, 51831, 51832
A_K, A_P = "10.90.1.1", "10.90.1.2"  # session A's tunnel addresses (kernel, wgpy)
B_K, B_P = "10.90.2.1", "10.90.2.2"  # session B's
PING_INTERVAL = 0.2
# After REKEY_AFTER_TIME the initiator rekeys on its next packet (one ping interval away) and
# the handshake takes a round trip; under emulation wgpy may take a few seconds for it.
REKEY_SLACK = 20.0
ETH_P_ALL = 0x0003
MESSAGE_TYPES = {1: "initiation", 2: "response", 3: "cookie", 4: "transport"}


@dataclass
class Datagram:
    at: float  # unix seconds
    src_port: int
    dst_port: int
    kind: str
    sender_index: int | None  # initiation, response
    receiver_index: int | None  # response, cookie, transport
    length: int


@dataclass
class Capture:
    """The WireGuard datagrams (UDP to or from P_PORT) seen on one interface of a namespace."""

    ns: Netns
    ifname: str
    datagrams: list[Datagram] = field(default_factory=list)

    def __post_init__(self) -> None:
        from pyroute2.netns import popns, pushns

        pushns(self.ns.name)  # the socket belongs to the namespace it is made in
        try:
            self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                         socket.htons(ETH_P_ALL))
            self._socket.bind((self.ifname, 0))
        finally:
            popns()
        self._socket.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._socket.recv(65535)
            except TimeoutError:
                continue
            if datagram := _parse(frame):
                self.datagrams.append(datagram)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._socket.close()


def _parse(frame: bytes) -> Datagram | None:
    """An Ethernet frame holding IPv4/UDP with a WireGuard message to or from P_PORT."""
    if len(frame) < 14 + 20 + 8 + 4 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    header_length = (ip[0] & 0x0F) * 4
    if ip[9] != socket.IPPROTO_UDP:
        return None
    src_port, dst_port, udp_length = struct.unpack_from("!HHH", ip, header_length)
    if P_PORT not in (src_port, dst_port):
        return None
    payload = ip[header_length + 8:header_length + udp_length]
    kind = MESSAGE_TYPES.get(payload[0], f"type {payload[0]}")
    sender = receiver = None
    if kind in ("initiation", "response"):
        (sender,) = struct.unpack_from("<I", payload, 4)
    if kind == "response":
        (receiver,) = struct.unpack_from("<I", payload, 8)
    elif kind in ("cookie", "transport"):
        (receiver,) = struct.unpack_from("<I", payload, 4)
    return Datagram(time.time(), src_port, dst_port, kind, sender, receiver, len(payload))


@dataclass
class Session:
    name: str
    kernel_if: str
    kernel_port: int
    kernel_ip: str
    wgpy_ip: str
    kernel_public: str = ""
    initiator: str = ""  # "wgpy" or "kernel"


Setup = tuple[Topology, Netns, Netns, str, str, list[Session]]


@pytest.fixture(scope="module")
def rekey_setup(mtopo: Topology) -> Iterator[Setup]:
    k_ns, p_ns = mtopo.netns("k"), mtopo.netns("p")
    _, p_veth = mtopo.veth(k_ns, p_ns, [f"{K_OUTER}/24"], [f"{P_OUTER}/24"])
    p_if, _ = start_wgpy(mtopo, p_ns)
    sessions = [Session("A", add_kernel_link(mtopo, k_ns, "ka"), K_PORT_A, A_K, A_P,
                        initiator="wgpy"),
                Session("B", add_kernel_link(mtopo, k_ns, "kb"), K_PORT_B, B_K, B_P,
                        initiator="kernel")]
    p_private, p_public = mtopo.genkey()
    p_args = ["set", p_if, "listen-port", str(P_PORT),
              "private-key", str(mtopo.write_file(p_private + "\n", name="key"))]
    for session in sessions:
        private, session.kernel_public = mtopo.genkey()
        mtopo.wg(k_ns, "set", session.kernel_if, "listen-port", str(session.kernel_port),
                 "private-key", str(mtopo.write_file(private + "\n", name="key")),
                 "peer", p_public, "allowed-ips", f"{session.wgpy_ip}/32",
                 "endpoint", f"{P_OUTER}:{P_PORT}")
        mtopo.add_addresses(k_ns, session.kernel_if, [f"{session.kernel_ip}/24"])
        k_ns.run(["ip", "link", "set", session.kernel_if, "up"])
        p_args += ["peer", session.kernel_public, "allowed-ips", f"{session.kernel_ip}/32",
                   "endpoint", f"{K_OUTER}:{session.kernel_port}"]
        p_ns.run(["ip", "address", "add", f"{session.wgpy_ip}/24", "dev", p_if])
    mtopo.wg(p_ns, *p_args)
    p_ns.run(["ip", "link", "set", p_if, "up"])
    yield mtopo, k_ns, p_ns, p_if, p_veth, sessions


def _latest_handshakes(topo: Topology, k_ns: Netns, p_ns: Netns, p_if: str,
                       sessions: list[Session]) -> dict[str, tuple[int, int]]:
    """session name -> (latest handshake as wgpy sees it, as the kernel sees it)."""
    wgpy = parse_wg_dump(topo.wg(p_ns, "show", p_if, "dump").stdout).peers
    found = {}
    for session in sessions:
        kernel = parse_wg_dump(topo.wg(k_ns, "show", session.kernel_if, "dump").stdout).peers
        (kernel_peer,) = kernel.values()
        found[session.name] = (wgpy[session.kernel_public].latest_handshake,
                                kernel_peer.latest_handshake)
    return found


def _ping_replies(output: str) -> tuple[int, list[int], list[float]]:
    """(echo requests sent, sequence numbers answered, times of the replies) of `ping -D`."""
    answered, times = [], []
    for match in re.finditer(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) ", output, re.MULTILINE):
        times.append(float(match.group(1)))
        answered.append(int(match.group(2)))
    sent = re.search(r"(\d+) packets transmitted", output)
    assert sent, f"no ping summary:\n{output[-2000:]}"
    return int(sent.group(1)), answered, times


def test_rekey_after_time_both_initiators(rekey_setup: Setup) -> None:
    topo, k_ns, p_ns, p_if, p_veth, sessions = rekey_setup
    a, b = sessions
    with Capture(p_ns, p_veth) as capture:
        # the first packet decides who initiates each session
        p_ns.ping(a.kernel_ip, count=2, timeout=60)
        k_ns.ping(b.wgpy_ip, count=2, timeout=60)
        first = _latest_handshakes(topo, k_ns, p_ns, p_if, sessions)
        assert all(w and k for w, k in first.values()), first
        first_done = time.time()
        pingers = {
            f"{name} {direction}": ns.popen(["ping", "-n", "-D", "-i", str(PING_INTERVAL),
                                             "-W", "5", address])
            for name, direction, ns, address in (
                ("A", "wgpy->kernel", p_ns, a.kernel_ip), ("A", "kernel->wgpy", k_ns, a.wgpy_ip),
                ("B", "wgpy->kernel", p_ns, b.kernel_ip), ("B", "kernel->wgpy", k_ns, b.wgpy_ip))
        }
        deadline = first_done + REKEY_AFTER_TIME + REKEY_SLACK
        latest = first
        while time.time() < deadline:
            latest = _latest_handshakes(topo, k_ns, p_ns, p_if, sessions)
            if all(w > first[name][0] and k > first[name][1]
                   for name, (w, k) in latest.items()):
                break
            time.sleep(2)
        time.sleep(3)  # traffic on the new sessions, and what was in flight on the old ones
        for pinger in pingers.values():
            pinger.send_signal(signal.SIGINT)  # ping prints its summary
        outputs = {}
        for name, pinger in pingers.items():
            pinger.wait(timeout=30)
            outputs[name] = topo.log_of(pinger)
        ended = time.time()
    report = [(f"first handshakes (wgpy, kernel): {first}; {ended - first_done:.0f} s later: "
               f"{latest}")]

    # a new handshake, on both sides of both sessions, at REKEY_AFTER_TIME (not before)
    for name, (wgpy_time, kernel_time) in latest.items():
        assert wgpy_time > first[name][0] and kernel_time > first[name][1], (
            f"session {name}: no new handshake within REKEY_AFTER_TIME + {REKEY_SLACK:.0f} s:"
            f"\n{report[0]}")
        for side, seen, before in (("wgpy", wgpy_time, first[name][0]),
                                   ("kernel", kernel_time, first[name][1])):
            # latest-handshake has one-second resolution
            assert REKEY_AFTER_TIME - 1 <= seen - before <= REKEY_AFTER_TIME + REKEY_SLACK, (
                f"session {name}: {side} saw the new handshake {seen - before} s after the "
                f"first:\n{report[0]}")

    # who sent the initiations: the first session's initiator, and at 120 s only it again
    for session in sessions:
        to_kernel = [d for d in capture.datagrams if session.kernel_port in
                     (d.src_port, d.dst_port)]
        initiations = [d for d in to_kernel if d.kind == "initiation"]
        senders = ["wgpy" if d.src_port == P_PORT else "kernel" for d in initiations]
        assert senders == [session.initiator, session.initiator], (
            f"session {session.name}: initiations sent by {senders} (expected the "
            f"{session.initiator} side twice: the first handshake and the rekey)")
        rekey_initiation = initiations[1]
        assert rekey_initiation.at - initiations[0].at >= REKEY_AFTER_TIME - 1, (
            f"session {session.name}: rekeyed after {rekey_initiation.at - initiations[0].at} s")
        responses = [d for d in to_kernel if d.kind == "response"]
        assert len(responses) == 2, f"session {session.name}: {len(responses)} responses"
        # the responder's sessions: old = its first response's sender index, new = second
        initiator_port = P_PORT if session.initiator == "wgpy" else session.kernel_port
        old_index = responses[0].receiver_index  # the initiator's old session index
        late_old = [d for d in to_kernel
                    if d.kind == "transport" and d.dst_port == initiator_port
                    and d.receiver_index == old_index and d.at > responses[1].at]
        report.append(f"session {session.name} (initiator {session.initiator}): rekey "
                      f"{rekey_initiation.at - initiations[0].at:.1f} s after the first "
                      f"initiation; {len(late_old)} transport packets for the initiator's old "
                      f"session seen after the new session's response")

    # traffic went on: every echo of every stream answered, no gap longer than 2 s
    for name, output in outputs.items():
        sent, answered, times = _ping_replies(output)
        missing = sorted(set(range(1, sent + 1)) - set(answered))
        # the last echo may still be on its way when SIGINT came
        missing = [seq for seq in missing if seq < sent]
        gaps = [later - earlier for earlier, later in pairwise(times)]
        report.append(f"{name}: {sent} echoes, {len(answered)} answered, longest gap "
                      f"{max(gaps, default=0):.2f} s")
        assert not missing, f"{name}: echoes {missing} unanswered:\n" + "\n".join(report)
        assert max(gaps, default=0) < 2.0, f"{name}: traffic stopped:\n" + "\n".join(report)
    print("\n".join(report))
