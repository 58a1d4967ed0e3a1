"""`wgpy exporter`: Prometheus metrics of every WireGuard interface, scraped on /metrics.

Metric names and labels are those of prometheus_wireguard_exporter, so existing dashboards and
alerts keep working:

    wireguard_sent_bytes_total{interface, public_key, allowed_ips, friendly_name}
    wireguard_received_bytes_total{...}
    wireguard_latest_handshake_seconds{...}   (unix time of the latest handshake, 0 = never)

`allowed_ips` is the comma-joined list; `friendly_name` comes from the `# friendly_name =`
comment of the peer in /etc/wireguard/IFACE.conf (or the --config-dir), empty when unknown.

Scrapes share one reading: the interfaces' state (UAPI socket or kernel netlink) and the names
are read at most once per `max_age` seconds (1 s), under a lock, so N scrapers arriving together
cost the daemon one `get` per interface, not N. `check()` is run once at start: an interface
that cannot be read (unknown name, no permission) is an error then, not an empty 200 later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from wgpy.control.client import DeviceControl
from wgpy.keys import key_to_base64
from wgpy.model import DeviceState
from wgpy.ops.peers import config_names

LABELS = ["interface", "public_key", "allowed_ips", "friendly_name"]
DEFAULT_PORT = 9586  # prometheus_wireguard_exporter's
CACHE_SECONDS = 1.0


@dataclass
class Reading:
    ifname: str
    state: DeviceState
    names: dict[bytes, str]


class WireGuardCollector(Collector):
    def __init__(self, control_factory: Callable[[], DeviceControl],
                 interfaces: Sequence[str] = (), config_dir: Path = Path("/etc/wireguard"),
                 max_age: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.control_factory = control_factory
        self.interfaces = list(interfaces)
        self.config_dir = config_dir
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._readings: list[Reading] = []
        self._read_at: float | None = None

    def check(self) -> list[str]:
        """Read every interface once; raises OSError (with the interface's name in
        `filename`) for one that cannot be read. Returns the interfaces served."""
        control = self.control_factory()
        names = self._interfaces(control)
        for ifname in names:
            try:
                control.get(ifname)
            except OSError as err:
                err.filename = ifname
                raise
        return names

    def _interfaces(self, control: DeviceControl) -> list[str]:
        if self.interfaces:
            return self.interfaces
        try:
            return control.list_interfaces()
        except OSError:
            return control.uapi.list_interfaces()  # no kernel WireGuard: userspace ones only

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sent = CounterMetricFamily("wireguard_sent_bytes", "Bytes sent to the peer", labels=LABELS)
        received = CounterMetricFamily("wireguard_received_bytes", "Bytes received from the peer",
                                       labels=LABELS)
        handshake = GaugeMetricFamily("wireguard_latest_handshake_seconds",
                                      "Seconds from the last handshake", labels=LABELS)
        for reading in self.readings():
            for peer in reading.state.peers:
                labels = [
                    reading.ifname,
                    key_to_base64(peer.public_key),
                    ",".join(str(n) for n in peer.allowed_ips),
                    reading.names.get(peer.public_key, ""),
                ]
                sent.add_metric(labels, peer.tx_bytes)
                received.add_metric(labels, peer.rx_bytes)
                handshake.add_metric(labels, peer.last_handshake_sec)
        yield sent
        yield received
        yield handshake

    def readings(self) -> list[Reading]:
        """The interfaces' state, read afresh when the last reading is older than max_age.
        Scrapers arriving while one reads wait for that reading instead of starting their own."""
        with self._lock:
            now = self.clock()
            if self._read_at is None or now - self._read_at >= self.max_age:
                self._readings = self._read()
                self._read_at = self.clock()
            return self._readings

    def _read(self) -> list[Reading]:
        control = self.control_factory()
        readings = []
        for ifname in self._interfaces(control):
            try:
                state = control.get(ifname)
            except OSError:
                continue  # gone between listing and asking
            readings.append(Reading(ifname, state, config_names(self.config_dir / f"{ifname}.conf")))
        return readings


def make_registry(collector: WireGuardCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve(host: str, port: int, collector: WireGuardCollector) -> WSGIServer:
    """Serve /metrics in a background thread; returns the server (shutdown() to stop)."""
    server, _thread = start_http_server(port, host, make_registry(collector))
    return server


def parse_listen(text: str) -> tuple[str, int]:
    """'ADDR:PORT', '[v6]:PORT', ':PORT' (all addresses) or 'PORT'."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif text.isdigit():
        host, port = "", text
    else:
        raise ValueError(f"--listen {text!r}: use ADDR:PORT")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: bad port")
    return host or "0.0.0.0", int(port)
