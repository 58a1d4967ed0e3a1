"""The VM itself holds up: the guest kernel rewrites its own code while WireGuard runs.

The kernel flips a static key by patching every site that tests it (an int3 over the first
byte, then the rest, then the first byte, syncing every CPU in between). Under qemu's default
emulation, one host thread per emulated CPU, the other CPU at times still executed that int3
after the patch was done: "Oops: int3" at a netstamp_needed_key site (netif_rx_internal,
__netif_receive_skb_core) on the CPU running WireGuard, a panic, and qemu gone with every
result still to come (README, "Lost VMs"). Here one process flips netstamp_needed_key fifty
times a second (a socket with SO_TIMESTAMP on, then closed: what each ping does) while a UDP
flood crosses a kernel WireGuard tunnel. With the old emulation this panicked the guest within
seconds (2026-12-08); kernelvm now runs both emulated CPUs in one host thread.
"""

from __future__ import annotations

import sys

from kernlib import add_kernel_link
from netns import Topology

SECONDS = 45
SO_TIMESTAMP = 29  # SO_TIMESTAMP_OLD: Python's socket module does not name it

FLOOD = f"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, sent = time.monotonic() + {SECONDS}, 0
while time.monotonic() < end:
    s.sendto(b"x" * 200, ("10.77.0.2", 9))
    sent += 1
print("sent", sent)
"""

FLIP = f"""
import socket, time
end, flips = time.monotonic() + {SECONDS}, 0
while time.monotonic() < end:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, {SO_TIMESTAMP}, 1)  # the first one enables the key
    s.close()  # the last one disables it again (deferred to a work item)
    flips += 1
    time.sleep(0.02)
print("flips", flips)
"""


def test_static_key_flips_while_wireguard_carries_a_flood(mtopo: Topology) -> None:
    a, b = mtopo.netns("ea"), mtopo.netns("eb")
    mtopo.veth(a, b, ["10.9.0.1/24"], ["10.9.0.2/24"])
    ka, kb = add_kernel_link(mtopo, a), add_kernel_link(mtopo, b)
    mtopo.configure_pair(a, ka, b, kb, "10.9.0.1", "10.9.0.2")
    a.ping("10.77.0.2", count=1)
    flood = a.popen([sys.executable, "-c", FLOOD])
    flip = b.popen([sys.executable, "-c", FLIP])
    assert flood.wait(timeout=SECONDS + 120) == 0, mtopo.log_of(flood)
    assert flip.wait(timeout=SECONDS + 120) == 0, mtopo.log_of(flip)
    flips = int(mtopo.log_of(flip).split()[-1])
    received = int(mtopo.wg(b, "show", kb, "transfer").stdout.split()[1])
    assert flips >= 100, f"only {flips} flips of the static key"
    assert received > 1_000_000, f"only {received} bytes crossed the tunnel"
