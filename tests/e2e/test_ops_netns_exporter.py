"""`wgpy exporter` through the real entry point, in a namespace with a wireguard-go server:
it refuses at start what it could never serve, answers scrapes, and stops on SIGTERM even with
a scraper's connection open."""

from __future__ import annotations

import signal
import sys
import time

from netns import Netns, Topology
from opslib import start_server

FETCH = ("import sys, urllib.request; "
         "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")
PORT = 9586


def server(topo: Topology) -> tuple[Netns, str, str]:
    ns = topo.netns("srv")
    ns.run(["ip", "link", "set", "lo", "up"])
    ifname = topo.ifname("x")
    config = start_server(topo, ns, "wireguard-go", ifname, (
        f"[Interface]\nPrivateKey = {topo.genkey()[0]}\nListenPort = 51820\n"
        "Address = 10.9.0.1/24\n\n[Peer]\n# friendly_name = phone\n"
        f"PublicKey = {topo.genkey()[1]}\nAllowedIPs = 10.9.0.2/32\n"))
    return ns, ifname, str(config.parent)


def exporter(*args: str) -> list[str]:
    return [sys.executable, "-m", "wgpy.cli.wg", "exporter", "--listen", f"127.0.0.1:{PORT}",
            *args]


def test_unknown_interface_is_an_error_at_start(topo: Topology) -> None:
    ns, ifname, _ = server(topo)
    # (the old exporter served an empty 200 here and never exited: ns.run's timeout)
    result = ns.run(exporter("-i", ifname, "-i", "nosuchwg"), check=False, timeout=20)
    assert result.returncode == 1, result
    assert result.stderr.startswith("wgpy exporter: cannot read interface nosuchwg: "), result
    assert result.stderr.count("\n") == 1 and "serving" not in result.stderr


def test_serves_then_stops_promptly_on_sigterm(topo: Topology) -> None:
    ns, ifname, config_dir = server(topo)
    process = ns.popen(exporter("-i", ifname, "--config-dir", config_dir))
    body = ""

    def scraped() -> bool:
        nonlocal body
        result = ns.run([sys.executable, "-c", FETCH, f"http://127.0.0.1:{PORT}/metrics"],
                        check=False)
        body = result.stdout
        return result.returncode == 0

    topo.wait_for(scraped, timeout=15, interval=0.2, message="the exporter's /metrics")
    assert 'friendly_name="phone"' in body
    # a scraper that connected and went quiet: it must not hold the exporter up
    idle = ns.popen([sys.executable, "-c", (
        f"import socket, time; s = socket.create_connection(('127.0.0.1', {PORT})); "
        "s.sendall(b'GET /metrics HTTP/1.1\\r\\n'); time.sleep(60)")])
    time.sleep(0.5)
    assert idle.poll() is None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    freed = ns.run([sys.executable, "-c", (
        "import socket; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {PORT})); print('free')")], check=False)
    assert freed.stdout.strip() == "free", freed
