"""What a configuration asks of a device: the set request `wg setconf` / `wg addconf` send for a
file. One translation for every tool that applies a file: wgpy setconf/addconf/syncconf,
wgpy-quick up (as wg-quick runs `wg addconf`) and enable-peer (one section).
"""

from __future__ import annotations

from collections.abc import Callable

from wgpy.conf.parser import Config, PeerSection
from wgpy.model import HostPort, PeerSet, SetRequest


def peer_set(section: PeerSection, endpoint: HostPort | None) -> PeerSet:
    """A [Peer] section as wg sends it: its allowed IPs replace the peer's old ones."""
    return PeerSet(
        public_key=section.public_key,
        preshared_key=section.preshared_key,
        endpoint=endpoint,
        persistent_keepalive=section.persistent_keepalive,
        replace_allowed_ips=True,
        allowed_ips=list(section.allowed_ips),
    )


def request_from_config(
    config: Config, append: bool,
    resolve: Callable[[PeerSection], HostPort | None] | None = None,
) -> SetRequest:
    """setconf (append=False) replaces everything: key, port and mark default to zero and all
    peers are replaced. addconf (append=True) only adds what the file says.

    A peer's endpoint is `resolve(section)` when given (wgpy-quick resolves as it brings the
    interface up), else the one parse_config resolved (wg resolves while it parses)."""
    interface = config.interface
    request = SetRequest()
    if not append:
        request.private_key = interface.private_key or bytes(32)
        request.listen_port = interface.listen_port or 0
        request.fwmark = interface.fwmark or 0
        request.replace_peers = True
    else:
        request.private_key = interface.private_key
        request.listen_port = interface.listen_port
        request.fwmark = interface.fwmark
    for section in config.peers:
        endpoint = resolve(section) if resolve is not None else section.resolved_endpoint
        request.peers.append(peer_set(section, endpoint))
    return request
