"""Helpers for the operator-tool e2e tests: a WireGuard server in a namespace built from a
wg-quick config file (userspace implementation + `wg setconf` of the stripped config, addresses,
link up), and running the real `wgpy` entry point (`python -m wgpy.cli.wg`) inside a namespace."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

from netns import Netns, Topology

from wgpy.conf import parse_config, strip_config


def write_conf(topo: Topology, name: str, text: str, mode: int = 0o600) -> Path:
    directory = topo.tmpdir / "conf"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / f"{name}.conf"
    path.write_text(text)
    path.chmod(mode)
    return path


def start_server(topo: Topology, ns: Netns, implementation: str, ifname: str,
                 text: str, mtu: int = 1420) -> Path:
    """Run `implementation` as ifname in ns, configured from the wg-quick text; return the
    config's path (TMP/conf/IFNAME.conf, 0600)."""
    path = write_conf(topo, ifname, text)
    if implementation == "wireguard-go":
        topo.start_wireguard_go(ns, ifname)
    else:
        topo.start_wgpy_daemon(ns, ifname)
    stripped = topo.write_file(strip_config(text), name="stripped")
    topo.wg(ns, "setconf", ifname, str(stripped))
    addresses = [str(a) for a in parse_config(text).interface.addresses]
    topo.add_addresses(ns, ifname, addresses)
    ns.run(["ip", "link", "set", ifname, "mtu", str(mtu), "up"])
    return path


def ops(ns: Netns, *args: str | Path, check: bool = False,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`wgpy ARGS` inside ns, through the real entry point (`python -m wgpy.cli.wg`, what the
    `wgpy` console script runs), so the dispatch into the operator commands is tested too."""
    return ns.run([sys.executable, "-m", "wgpy.cli.wg", *map(str, args)],
                  check=check, timeout=timeout)


def host_prefix(address: str) -> str:
    ip = ipaddress.ip_interface(address).ip
    return f"{ip}/{ip.max_prefixlen}"


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def nobody_env(topo: Topology) -> dict[str, str]:
    """PYTHONPATH for running wgpy as uid 65534 (argv prefix AS_NOBODY).

    On a real host the dependencies are installed readable by everyone; here they live under
    /root (mode 0700), so copy the ones the system Python lacks into the test's directory,
    which is made traversable (its conf/ stays 0700)."""
    import importlib
    import shutil

    lib = topo.tmpdir / "pylib"
    if not lib.exists():
        lib.mkdir()
        for name in ("pyroute2", "segno", "prometheus_client"):
            source = Path(importlib.import_module(name).__file__ or "").parent
            shutil.copytree(source, lib / name)
        for path in [lib, *lib.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        topo.tmpdir.chmod(0o711)
    src = Path(__file__).resolve().parents[2] / "src"
    return {"PYTHONPATH": f"{src}:{lib}"}
