"""Creating and deleting the WireGuard interface: kernel module first, else userspace.

As in wg-quick: try `ip link add IFNAME type wireguard`; if that fails and the kernel module is
not loaded, start the userspace implementation named by WG_QUICK_USERSPACE_IMPLEMENTATION
(ours, `wgpy-daemon`, by default). It follows wireguard-go's contract: `IMPL IFNAME` creates the
TUN device and the UAPI socket /var/run/wireguard/IFNAME.sock, goes to the background and exits
0. Deleting the link makes it exit. The variable may hold a command with arguments
(`python3 -m wgpy.cli.daemon`), split like a shell would.
"""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from wgpy.control.uapi import socket_path
from wgpy.quick import log
from wgpy.quick.config import QuickError
from wgpy.quick.netlink import Netlink

DEFAULT_USERSPACE_IMPLEMENTATION = "wgpy-daemon"
KERNEL_MODULE_DIR = Path("/sys/module/wireguard")
SOCKET_GONE_TIMEOUT = 3.0


def userspace_command(environ: Mapping[str, str] | None = None) -> list[str]:
    source = os.environ if environ is None else environ
    text = source.get("WG_QUICK_USERSPACE_IMPLEMENTATION") or DEFAULT_USERSPACE_IMPLEMENTATION
    argv = shlex.split(text)
    if not argv:
        raise QuickError("WG_QUICK_USERSPACE_IMPLEMENTATION is empty")
    return argv


def add_interface(netlink: Netlink, ifname: str) -> None:
    log.action(f"ip link add dev {ifname} type wireguard")
    try:
        netlink.add_wireguard_link(ifname)
        return
    except NetlinkError as err:
        kernel_error = err
    argv = userspace_command()
    # With the module loaded, a failure is a real error (bad name, ...), not a missing driver.
    if KERNEL_MODULE_DIR.exists() or shutil.which(argv[0]) is None:
        message = os.strerror(kernel_error.code) if kernel_error.code else str(kernel_error)
        hint = ""
        if shutil.which(argv[0]) is None:
            hint = f" (and no userspace implementation: `{argv[0]}' not found)"
        raise QuickError(f"ip link add {ifname} type wireguard: {message}{hint}")
    log.note("Missing WireGuard kernel module. Falling back to slow userspace implementation.")
    log.action(shlex.join([*argv, ifname]))
    try:
        result = subprocess.run([*argv, ifname], check=False, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise QuickError(f"{argv[0]}: {err.strerror}") from None
    if result.returncode != 0:
        raise QuickError(f"{shlex.join([*argv, ifname])} exited with status {result.returncode}")
    if netlink.link_index(ifname) is None:
        raise QuickError(f"{argv[0]} exited but `{ifname}' does not exist")


def delete_interface(netlink: Netlink, ifname: str) -> None:
    """`ip link delete dev IFNAME`; for a userspace device also wait until its daemon removed
    the UAPI socket, so an immediate `up` again finds the name free."""
    userspace = os.path.exists(socket_path(ifname))
    log.action(f"ip link delete dev {ifname}")
    try:
        netlink.delete_link(ifname)
    except NetlinkError as err:
        if err.code != errno.ENODEV:
            raise QuickError(f"ip link delete dev {ifname}: {os.strerror(err.code)}") from None
    if userspace:
        deadline = time.monotonic() + SOCKET_GONE_TIMEOUT
        while os.path.exists(socket_path(ifname)) and time.monotonic() < deadline:
            time.sleep(0.02)


def is_wireguard_interface(netlink: Netlink, ifname: str) -> bool:
    """The link exists here and is a kernel WireGuard device or has a UAPI socket."""
    kind = netlink.link_kind(ifname)
    if netlink.link_index(ifname) is None:
        return False
    return kind == "wireguard" or os.path.exists(socket_path(ifname))
