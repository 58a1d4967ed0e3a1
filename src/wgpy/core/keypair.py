"""Transport keypairs (whitepaper 5.4.6) and the previous/current/next rotation.

A keypair holds one AEAD object per direction, created once (creating one costs about half an
encryption), the sending counter and the receiving replay window. The peer keeps three slots as
the kernel does: `next` is a responder's fresh keypair that becomes `current` only when the
first data packet arrives under it (key confirmation); `previous` still decrypts in-flight
packets after a rotation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wgpy import fastpath
from wgpy.core.replay import ReplayWindow

if TYPE_CHECKING:
    from wgpy.core.peer import Peer


class Keypair:
    __slots__ = (
        "created",
        "i_am_initiator",
        "local_index",
        "peer",
        "receive_aead",
        "remote_index",
        "replay",
        "send_aead",
        "sending_counter",
        "valid",
    )

    def __init__(
        self, send_key: bytes, receive_key: bytes, i_am_initiator: bool,
        local_index: int, remote_index: int, created: float, peer: Peer,
    ) -> None:
        # one AEAD context per direction for the fast path's seal_run/open_run
        self.send_aead = fastpath.AeadContext(send_key)
        self.receive_aead = fastpath.AeadContext(receive_key)
        self.sending_counter = 0
        self.replay = ReplayWindow()
        self.created = created
        self.i_am_initiator = i_am_initiator
        self.local_index = local_index
        self.remote_index = remote_index
        self.valid = True
        self.peer = peer

    def zero(self) -> None:
        """Forget the keys. The AEAD contexts hold the only copies we made; zeroize() forgets
        them (the C path frees its OpenSSL contexts, which cleanses them) even if something
        still refers to the contexts, and any later use of them raises."""
        if self.valid:
            self.valid = False
            self.send_aead.zeroize()
            self.receive_aead.zeroize()


class Keypairs:
    """previous / current / next, as in the kernel's noise_keypairs."""

    __slots__ = ("current", "next", "previous")

    def __init__(self) -> None:
        self.previous: Keypair | None = None
        self.current: Keypair | None = None
        self.next: Keypair | None = None

    def all(self) -> list[Keypair]:
        return [k for k in (self.previous, self.current, self.next) if k is not None]

    def install(self, keypair: Keypair) -> list[Keypair]:
        """Add a new session; returns the keypairs that fell out (to unregister and zero).

        Initiator: the new keypair becomes current at once (the response confirmed it).
        Responder: it waits in `next` until the initiator's first data packet."""
        dropped: list[Keypair] = []
        if keypair.i_am_initiator:
            if self.next is not None:
                # an unconfirmed responder keypair is kept as previous (it may still carry data
                # in flight); the old current goes (kernel: noise_handshake_begin_session)
                if self.current is not None:
                    dropped.append(self.current)
                if self.previous is not None:
                    dropped.append(self.previous)
                self.previous, self.next = self.next, None
            else:
                if self.previous is not None:
                    dropped.append(self.previous)
                self.previous = self.current
            self.current = keypair
        else:
            if self.next is not None:
                dropped.append(self.next)
            if self.previous is not None:
                dropped.append(self.previous)
            self.next, self.previous = keypair, None
        return dropped

    def confirm(self, keypair: Keypair) -> list[Keypair]:
        """Data arrived under `next`: rotate it into current."""
        if keypair is not self.next:
            return []
        dropped = [self.previous] if self.previous is not None else []
        self.previous = self.current
        self.current = keypair
        self.next = None
        return dropped

    def clear(self) -> list[Keypair]:
        dropped = self.all()
        self.previous = self.current = self.next = None
        return dropped
