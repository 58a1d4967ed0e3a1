"""check-handshakes and the exporter against a fake device (no sockets but the HTTP one)."""

from __future__ import annotations

import concurrent.futures
import errno
import ipaddress
import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wgpy import keys
from wgpy.cli import ops as commands
from wgpy.model import DeviceState, PeerState
from wgpy.ops import exporter, monitor, peers

NOW = 1_800_000_000
PHONE = keys.public_key(keys.generate_private_key())
LAPTOP = keys.public_key(keys.generate_private_key())
NEW = keys.public_key(keys.generate_private_key())


class FakeControl:
    def __init__(self, devices: dict[str, DeviceState]) -> None:
        self.devices = devices

    def get(self, ifname: str) -> DeviceState:
        if ifname not in self.devices:
            raise OSError(errno.ENODEV, "No such device")
        return self.devices[ifname]

    def list_interfaces(self) -> list[str]:
        return list(self.devices)


def state(now: float) -> DeviceState:
    return DeviceState(peers=[
        PeerState(public_key=PHONE, last_handshake_sec=int(now) - 30, rx_bytes=1000, tx_bytes=2000,
                  allowed_ips=[ipaddress.ip_network("10.8.0.2/32"),
                               ipaddress.ip_network("fd08::2/128")]),
        PeerState(public_key=LAPTOP, last_handshake_sec=int(now) - 500),
        PeerState(public_key=NEW),
    ])


def names_file(tmp_path: Path) -> Path:
    path = tmp_path / "wg0.conf"
    path.write_text(
        f"[Interface]\nPrivateKey = {keys.key_to_base64(keys.generate_private_key())}\n\n"
        f"[Peer]\n# friendly_name = phone\nPublicKey = {keys.key_to_base64(PHONE)}\n\n"
        f"# Name = laptop\n[Peer]\nPublicKey = {keys.key_to_base64(LAPTOP)}\n")
    return path


def test_stale_peers(tmp_path: Path) -> None:
    names = peers.config_names(names_file(tmp_path))
    assert names == {PHONE: "phone", LAPTOP: "laptop"}
    stale = monitor.stale_peers(state(NOW), NOW, 180, names)
    assert [(p.name, p.age) for p in stale] == [("laptop", 500), (None, None)]
    assert stale[0].describe().startswith("laptop (") and stale[0].describe().endswith("500 s ago")
    assert stale[1].describe().endswith("never handshaked")
    assert [p.name for p in monitor.stale_peers(state(NOW), NOW, 600, names,
                                                include_never=False)] == []
    assert peers.config_names(tmp_path / "missing.conf") == {}


def test_check_handshakes_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import time

    config = names_file(tmp_path)
    monkeypatch.setattr(commands, "control_factory",
                        lambda: FakeControl({"wg0": state(time.time())}))
    assert commands.main(["check-handshakes", "wg0", "--config", str(config)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("laptop (") and "never" in out[1]
    assert commands.main(["check-handshakes", "wg0", "--config", str(config),
                          "--max-age", "1000", "--ignore-never"]) == 0
    assert capsys.readouterr().out == ""
    assert commands.main(["check-handshakes", "nope"]) == 1
    assert "No such device" in capsys.readouterr().err


def test_exporter_metrics_over_http(tmp_path: Path) -> None:
    names_file(tmp_path)
    control = FakeControl({"wg0": state(NOW)})
    collector = exporter.WireGuardCollector(lambda: control, config_dir=tmp_path)  # type: ignore[arg-type,return-value]
    server = exporter.serve("127.0.0.1", 0, collector)
    try:
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    samples = {(s.name, s.labels["public_key"]): s for family in
               text_string_to_metric_families(body) for s in family.samples}
    phone = keys.key_to_base64(PHONE)
    sent = samples[("wireguard_sent_bytes_total", phone)]
    assert sent.value == 2000
    assert sent.labels == {"interface": "wg0", "public_key": phone,
                           "allowed_ips": "10.8.0.2/32,fd08::2/128", "friendly_name": "phone"}
    assert samples[("wireguard_received_bytes_total", phone)].value == 1000
    assert samples[("wireguard_latest_handshake_seconds", phone)].value == NOW - 30
    assert samples[("wireguard_latest_handshake_seconds", keys.key_to_base64(NEW))].value == 0
    assert samples[("wireguard_sent_bytes_total",
                    keys.key_to_base64(LAPTOP))].labels["friendly_name"] == "laptop"
    assert "# TYPE wireguard_sent_bytes_total counter" in body
    assert "# TYPE wireguard_latest_handshake_seconds gauge" in body


def test_parse_listen() -> None:
    assert exporter.parse_listen("127.0.0.1:9586") == ("127.0.0.1", 9586)
    assert exporter.parse_listen("[::1]:9000") == ("::1", 9000)
    assert exporter.parse_listen(":9586") == ("0.0.0.0", 9586)
    with pytest.raises(ValueError):
        exporter.parse_listen("localhost")


class CountingControl(FakeControl):
    """A daemon that takes a while to answer and counts how often it is asked."""

    def __init__(self, devices: dict[str, DeviceState], delay: float = 0.2) -> None:
        super().__init__(devices)
        self.delay = delay
        self.gets = 0
        self._count_lock = threading.Lock()

    def get(self, ifname: str) -> DeviceState:
        with self._count_lock:
            self.gets += 1
        time.sleep(self.delay)
        return super().get(ifname)


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def test_exporter_concurrent_scrapes_cost_one_read(tmp_path: Path) -> None:
    """8 scrapers at once, each while the (slow) daemon is being read: one get in all. The
    clock is the test's, so no scraper can be late enough to count as a new interval."""
    control = CountingControl({"wg0": state(NOW)})
    now = [100.0]
    collector = exporter.WireGuardCollector(lambda: control, config_dir=tmp_path,  # type: ignore[arg-type,return-value]
                                            clock=lambda: now[0])
    server = exporter.serve("127.0.0.1", 0, collector)
    port = server.server_address[1]
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda _: scrape(port), range(8)))
        assert control.gets == 1
        assert all(keys.key_to_base64(PHONE) in body for body in bodies)
        now[0] += exporter.CACHE_SECONDS  # a second later, the next scrape reads again
        scrape(port)
        assert control.gets == 2
    finally:
        server.shutdown()
        server.server_close()


def test_exporter_check_names_the_unreadable_interface(tmp_path: Path) -> None:
    collector = exporter.WireGuardCollector(lambda: FakeControl({"wg0": state(NOW)}),  # type: ignore[arg-type,return-value]
                                            ["wg0", "nope"], tmp_path)
    with pytest.raises(OSError) as caught:
        collector.check()
    assert caught.value.filename == "nope" and caught.value.errno == errno.ENODEV
    assert exporter.WireGuardCollector(lambda: FakeControl({"wg0": state(NOW)}),  # type: ignore[arg-type,return-value]
                                       ["wg0"], tmp_path).check() == ["wg0"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_exporter_command_refuses_an_unknown_interface(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """It exits 1 at start with the reason on stderr. (The old exporter served an empty 200:
    the SIGTERM sent after 5 s is what would end it, with status 0.)"""
    monkeypatch.setattr(commands, "control_factory", lambda: FakeControl({"wg0": state(NOW)}))
    previous = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        status = commands.main(["exporter", "--listen", f"127.0.0.1:{free_port()}", "-i", "nope"])
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert status == 1
    err = capsys.readouterr().err
    assert "cannot read interface nope: No such device" in err and "serving" not in err


class FakeDaemon:
    """A UAPI socket (wireguard-go's protocol) that answers `get=1` slowly and counts them:
    the exporter goes through the real UapiClient and DeviceControl to reach it."""

    def __init__(self, directory: Path, ifname: str, delay: float) -> None:
        self.gets = 0
        self.delay = delay
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(directory / f"{ifname}.sock"))
        self.listener.listen(64)
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while not request.endswith(b"\n\n"):
                chunk = connection.recv(4096)
                if not chunk:
                    return  # a probe that only connected (has_interface)
                request += chunk
            if request != b"get=1\n\n":
                connection.sendall(b"errno=22\n\n")
                return
            with self.lock:
                self.gets += 1
            time.sleep(self.delay)
            connection.sendall(f"listen_port=51820\npublic_key={PHONE.hex()}\n"
                               "tx_bytes=7\nrx_bytes=9\nerrno=0\n\n".encode())

    def close(self) -> None:
        self.listener.close()


def test_exporter_concurrent_scrapes_one_uapi_get(tmp_path: Path) -> None:
    """8 concurrent scrapes of a userspace daemon: one `get=1` on its socket."""
    from wgpy.control.client import DeviceControl, UapiClient

    daemon = FakeDaemon(tmp_path, "wgx", delay=0.3)
    now = [0.0]
    collector = exporter.WireGuardCollector(lambda: DeviceControl(UapiClient(tmp_path)),
                                            ["wgx"], tmp_path, clock=lambda: now[0])
    server = exporter.serve("127.0.0.1", 0, collector)
    port = server.server_address[1]
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda _: scrape(port), range(8)))
        assert daemon.gets == 1
        assert all('wireguard_sent_bytes_total{allowed_ips="",friendly_name="",interface="wgx"'
                   in body for body in bodies)
    finally:
        server.shutdown()
        server.server_close()
        daemon.close()
