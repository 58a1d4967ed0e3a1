"""`wgpy check-handshakes`: peers whose latest handshake is too old, for cron and monitoring.

A peer is stale when its latest handshake is older than max_age seconds, or when it never
completed one (unless never-connected peers are ignored). Names come from the server config's
`# friendly_name =` comments when the config can be read (ops/peers.config_names).
"""

from __future__ import annotations

from dataclasses import dataclass

from wgpy import keys
from wgpy.model import DeviceState

DEFAULT_MAX_AGE = 180  # REJECT_AFTER_TIME: older sessions are dead


@dataclass
class StalePeer:
    public_key: bytes
    name: str | None
    age: int | None  # seconds since the latest handshake; None = never

    @property
    def label(self) -> str:
        key = keys.key_to_base64(self.public_key)
        return f"{self.name} ({key})" if self.name else key

    def describe(self) -> str:
        if self.age is None:
            return f"{self.label}: never handshaked"
        return f"{self.label}: latest handshake {self.age} s ago"


def stale_peers(state: DeviceState, now: float, max_age: int, names: dict[bytes, str],
                include_never: bool = True) -> list[StalePeer]:
    stale = []
    for peer in state.peers:
        name = names.get(peer.public_key)
        if not peer.last_handshake_sec:
            if include_never:
                stale.append(StalePeer(peer.public_key, name, None))
            continue
        age = int(now - peer.last_handshake_sec)
        if age > max_age:
            stale.append(StalePeer(peer.public_key, name, age))
    return stale
