"""Secrets and access, end to end: what a verbose daemon logs, what `ps` shows, who may use the
UAPI socket; and the drop counters as an operator sees them (log and `wgpy show --json`)."""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
from pathlib import Path

import pytest
from netns import WIREGUARD_RUN_DIR, Topology
from opslib import AS_NOBODY, nobody_env

from wgpy.control.client import UapiClient

NETNS_PREFIX = "wgx"
pytestmark = pytest.mark.e2e

OUTER_A = "192.168.83.1"
OUTER_B = "192.168.83.2"


def key_forms(key_b64: str) -> list[str]:
    raw = base64.b64decode(key_b64)
    return [key_b64, key_b64[:16], raw.hex(), raw.hex()[:16]]


def uapi_exchange(ifname: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        sock.connect(str(WIREGUARD_RUN_DIR / f"{ifname}.sock"))
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_verbose_log_shows_drops_and_never_a_key(topo: Topology) -> None:
    a, b = topo.netns("a"), topo.netns("b")
    topo.veth(a, b, [OUTER_A + "/24"], [OUTER_B + "/24"])
    a_if, b_if = topo.ifname(), topo.ifname()
    daemon = topo.start_wgpy_daemon(a, a_if, extra_env={"LOG_LEVEL": "verbose"})
    topo.start_wireguard_go(b, b_if)
    end_a, end_b = topo.configure_pair(a, a_if, b, b_if, a_host=OUTER_A, b_host=OUTER_B,
                                       preshared_key=True)
    psk = topo.wg(a, "show", a_if, "preshared-keys").stdout.split()[1]
    end_a.ns.ping(end_b.ip4)
    end_b.ns.ping(end_a.ip4)
    secrets = [end_a.private_key, end_b.private_key, psk]

    # peers set and removed, with preshared keys; a new private key and back
    extra_private, extra_public = topo.genkey()
    extra_psk = topo.genpsk()
    new_private, _ = topo.genkey()
    secrets += [extra_private, extra_psk, new_private]
    psk_file = topo.write_file(extra_psk + "\n", name="psk")
    topo.wg(a, "set", a_if, "peer", extra_public, "preshared-key", str(psk_file),
            "allowed-ips", "10.77.9.0/24", "endpoint", "192.168.83.9:1")
    topo.wg(a, "set", a_if, "peer", extra_public, "remove")
    for private in (new_private, end_a.private_key):
        topo.wg(a, "set", a_if, "private-key", str(topo.write_file(private + "\n")))
    # bad requests carrying (almost) keys
    near_key = base64.b64decode(extra_private).hex()
    for request in (f"set=1\nprivate_key={near_key[:-1]}\n\n",
                    f"set=1\nprivate_key={near_key}0\n\n",
                    f"set=1\npreshared_key={near_key}\n\n",
                    f"set=1\npublic_key={near_key}\npreshared_key={near_key[:-2]}zz\n\n",
                    f"set=1\nprivate_key={near_key}\nbogus=1\n\n",
                    "get=1\nx"):
        answer = uapi_exchange(a_if, request.encode())
        assert answer in (b"", b"errno=-22\n\n", b"errno=-71\n\n") or answer.startswith(
            b"errno=-"), (request, answer)
    # malformed datagrams from b's side of the wire, so that drops get counted
    sender = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "for d in (b'', b'\\x09' + bytes(19), b'\\x01' + bytes(147), b'\\x04' + bytes(40)):\n"
              f"    s.sendto(d, ('{OUTER_A}', {end_a.listen_port}))")
    b.run(["python3", "-c", sender])
    end_a.ns.ping(end_b.ip4)

    # drops: in `wgpy show --json` (keys hidden) and, once a housekeeping second passed, in the log
    document = json.loads(a.run(["wgpy", "show", a_if, "--json"]).stdout)["interfaces"][0]
    drops = document["drops"]
    assert drops.get("empty", 0) >= 1 and drops.get("unknown_type", 0) >= 1, drops
    assert drops.get("bad_mac1", 0) >= 1 and drops.get("unknown_receiver", 0) >= 1, drops
    assert document["private_key"] == "(hidden)"
    assert document["peers"][0]["preshared_key"] == "(hidden)"
    other = json.loads(b.run(["wgpy", "show", b_if, "--json"]).stdout)["interfaces"][0]
    assert "drops" not in other  # wireguard-go: the request is refused, show still works
    assert UapiClient().drops(b_if) is None
    assert topo.wg(b, "show", b_if, "dump").returncode == 0
    assert topo.wg(a, "show", a_if, "dump").returncode == 0  # the real wg still parses get=1

    def logged_drops() -> bool:
        return "dropped 1: empty datagram" in topo.log_of(daemon)

    topo.wait_for(logged_drops, timeout=5, message="drop counters in the verbose log")
    log_text = topo.log_of(daemon)
    assert "DEBUG" in log_text and "UAPI set refused" in log_text
    assert "handshake complete, keypair derived" in log_text  # the core's events, logged
    ps = a.run(["ps", "-o", "args=", "-p", str(daemon.pid)]).stdout
    assert "wgpy.cli.daemon" in ps
    environ = Path(f"/proc/{daemon.pid}/environ").read_bytes().decode(errors="replace")
    for secret in secrets:
        for form in key_forms(secret):
            assert form not in log_text, f"a key is in the daemon's log ({form[:6]}...)"
            assert form not in ps and form not in environ
    for form in (near_key, near_key[:16], near_key[-16:]):
        assert form not in log_text


def test_uapi_socket_is_root_only_like_wireguard_go(topo: Topology) -> None:
    ns = topo.netns("a")
    wgpy_if, wggo_if = topo.ifname(), topo.ifname()
    topo.start_wgpy_daemon(ns, wgpy_if)
    topo.start_wireguard_go(ns, wggo_if)
    directory = os.stat(WIREGUARD_RUN_DIR)
    assert stat.S_IMODE(directory.st_mode) == 0o755 and directory.st_uid == 0
    modes = {}
    for ifname in (wgpy_if, wggo_if):
        info = os.stat(WIREGUARD_RUN_DIR / f"{ifname}.sock")
        assert stat.S_ISSOCK(info.st_mode) and info.st_uid == 0
        modes[ifname] = stat.S_IMODE(info.st_mode)
    assert modes[wgpy_if] == modes[wggo_if] == 0o700, modes
    # an unprivileged user cannot connect to either (nor read through wg)
    for ifname in (wgpy_if, wggo_if):
        path = WIREGUARD_RUN_DIR / f"{ifname}.sock"
        probe = ns.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "python3", "-c",
                        ("import socket, sys\n"
                        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                        "try:\n"
                        f"    s.connect({str(path)!r})\n"
                        "except PermissionError:\n"
                        "    print('EACCES'); sys.exit(0)\n"
                        "s.sendall(b'get=1\\n\\n'); print(s.recv(100)); sys.exit(1)\n")],
                       check=False)
        assert probe.returncode == 0 and probe.stdout.strip() == "EACCES", (ifname, probe)
        # wgpy itself started as nobody (the console script lives under root's 0700 home
        # here, so the system python3 with the test's readable copy of the dependencies); it
        # must be refused for the reason wg gives, not fail to start
        as_nobody = ns.run([*AS_NOBODY, "python3", "-m", "wgpy.cli.wg", "show", ifname],
                           env=nobody_env(topo), check=False)
        wg_as_nobody = ns.run([*AS_NOBODY, "wg", "show", ifname], check=False)
        assert (as_nobody.returncode, as_nobody.stdout, as_nobody.stderr) == (
            wg_as_nobody.returncode, wg_as_nobody.stdout, wg_as_nobody.stderr)
        assert as_nobody.stderr == "Unable to access interface: Permission denied\n"
    # root still can
    assert UapiClient().drops(wgpy_if) == {}


def test_misframed_request_does_not_log_the_key(topo: Topology) -> None:
    """A client that ends its set too early ("set=1\\n\\n" then the key line) makes the key
    line the next "operation"; the daemon logs unknown operations, and must not log the value.
    (wireguard-go logs the whole line; wgpy's rule is stricter: no key in any log.)"""
    ns = topo.netns("a")
    ifname = topo.ifname()
    daemon = topo.start_wgpy_daemon(ns, ifname, extra_env={"LOG_LEVEL": "verbose"})
    private, _ = topo.genkey()
    key_hex = base64.b64decode(private).hex()
    answer = uapi_exchange(ifname, f"set=1\n\nprivate_key={key_hex}\n\n".encode())
    assert answer == b"errno=0\n\n"  # the empty set; then the connection is closed
    assert UapiClient().drops(ifname) == {}  # the daemon is still serving
    log_text = topo.log_of(daemon)
    assert "invalid UAPI operation" in log_text
    for form in (key_hex, key_hex[:16], key_hex[-16:]):
        assert form not in log_text, "the private key is in the daemon's log"
