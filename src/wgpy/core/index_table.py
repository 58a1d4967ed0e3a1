"""Our receiver indexes (whitepaper 5.4.2; the kernel's index_hashtable).

Every handshake we start or answer picks a random 32-bit index that the peer puts in front of
everything it sends back: a response names our pending handshake (the Peer), a transport
message names the keypair the handshake became. One table holds both, as in the kernel, so an
index is never given out twice; when a handshake turns into a keypair, its index is handed over
to the keypair (kernel: index_hashtable_replace) and the peer's later messages find it at once.

Only the owner an index was given to can release it: a stale release (a keypair zeroed after
its index went to a newer handshake) changes nothing. The receive path reads the table through
`get`, the dict's own bound method, once per run of datagrams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from wgpy.core.keypair import Keypair
from wgpy.core.peer import Peer

Owner = Keypair | Peer


class IndexTable:
    __slots__ = ("_owners", "_rng", "get")

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._rng = rng
        self._owners: dict[int, Owner] = {}
        self.get: Callable[[int], Owner | None] = self._owners.get

    def allocate(self, owner: Owner) -> int:
        """A fresh random nonzero index, now naming `owner` (0 means "none" in a Peer)."""
        owners = self._owners
        while True:
            index = int.from_bytes(self._rng(4), "little")
            if index and index not in owners:
                owners[index] = owner
                return index

    def release(self, index: int, owner: Owner) -> None:
        """Forget `index` if it still names `owner`."""
        if index and self._owners.get(index) is owner:
            del self._owners[index]

    def hand_over(self, index: int, keypair: Keypair) -> None:
        """The handshake under `index` became `keypair`: the index names the keypair now."""
        self._owners[index] = keypair

    def __len__(self) -> int:
        return len(self._owners)

    def __iter__(self) -> Iterator[int]:
        return iter(self._owners)
