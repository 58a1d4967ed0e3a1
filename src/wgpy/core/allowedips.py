"""Cryptokey routing: the table that maps an address to the peer allowed to use it.

Whitepaper section 2: a peer owns a set of prefixes ("allowed IPs"). Sending, the destination
address of a packet picks the peer by longest-prefix match; receiving, a decrypted packet is
accepted only if its source address maps back to the peer it came from. A prefix has exactly one
owner; inserting a prefix that another peer holds moves it (as `wg set ... allowed-ips` does).

Theory of operation. The kernel and wireguard-go use a binary trie, which is the right structure
in C. In CPython each trie step is several bytecodes, so a /32 lookup would walk up to 32 nodes.
Here every family keeps one dict per prefix length present in the table, mapping the masked
network address (an int) to the owner, plus a list of the present lengths, longest first. A
lookup converts the address to an int once and then does one `&` and one dict probe per present
length; with 10,000 peers that each own a /32 there is one length and so one probe. The result
is the same as the trie's: the first hit, scanning from the longest length, is the longest match.

Removal keeps the structure exact: a length whose dict empties is dropped from the probe list.

Owners are compared by identity (`is`), like the kernel's peer pointers; they need not be
hashable. `None` cannot be an owner, since `lookup` returns None for "no route".
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Interface, IPv6Interface, ip_network
from typing import Generic, TypeVar

from wgpy.model import IPNetwork as Network

NetworkLike = Network | IPv4Interface | IPv6Interface | str

OwnerT = TypeVar("OwnerT")

_V4_BITS = 32
_V6_BITS = 128


class _FamilyTable(Generic[OwnerT]):
    """The prefixes of one address family: one dict per prefix length present."""

    __slots__ = ("bits", "by_length", "probes")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        # prefix length -> {masked network address: owner}
        self.by_length: dict[int, dict[int, OwnerT]] = {}
        # (mask, dict.get) per present length, longest prefix first: the lookup loop
        self.probes: tuple[tuple[int, Callable[[int], OwnerT | None]], ...] = ()

    def _mask(self, length: int) -> int:
        all_ones = (1 << self.bits) - 1
        return all_ones ^ (all_ones >> length)

    def _rebuild_probes(self) -> None:
        self.probes = tuple(
            (self._mask(length), self.by_length[length].get)
            for length in sorted(self.by_length, reverse=True)
        )

    def get(self, network_int: int, length: int) -> OwnerT | None:
        table = self.by_length.get(length)
        return None if table is None else table.get(network_int)

    def set(self, network_int: int, length: int, owner: OwnerT) -> None:
        table = self.by_length.get(length)
        if table is None:
            table = self.by_length[length] = {}
            table[network_int] = owner
            self._rebuild_probes()
        else:
            table[network_int] = owner

    def delete(self, network_int: int, length: int) -> None:
        table = self.by_length[length]
        del table[network_int]
        if not table:
            del self.by_length[length]
            self._rebuild_probes()

    def lookup(self, address_int: int) -> OwnerT | None:
        for mask, get in self.probes:
            owner = get(address_int & mask)
            if owner is not None:
                return owner
        return None

    def clear(self) -> None:
        self.by_length.clear()
        self.probes = ()


def _normalize(network: NetworkLike) -> Network:
    """Mask the host bits, as wg does: 10.0.0.1/24 is stored as 10.0.0.0/24.

    Network objects cannot carry host bits; strings and interfaces can."""
    if isinstance(network, str):
        return ip_network(network, strict=False)
    if isinstance(network, (IPv4Interface, IPv6Interface)):
        return network.network
    return network


class AllowedIPs(Generic[OwnerT]):
    """Longest-prefix-match table from IPv4/IPv6 prefixes to owners (peers)."""

    __slots__ = ("_count", "_entries_by_owner", "_v4", "_v6")

    def __init__(self) -> None:
        self._v4: _FamilyTable[OwnerT] = _FamilyTable(_V4_BITS)
        self._v6: _FamilyTable[OwnerT] = _FamilyTable(_V6_BITS)
        # id(owner) -> (owner, {network: None}) in insertion order, as wireguard-go keeps a
        # per-peer list of its trie entries; makes entries_for O(prefixes of that owner).
        self._entries_by_owner: dict[int, tuple[OwnerT, dict[Network, None]]] = {}
        self._count = 0

    # --- updates ----------------------------------------------------------------------------

    def _family(self, network: Network) -> _FamilyTable[OwnerT]:
        return self._v4 if network.version == 4 else self._v6

    def insert(self, network: NetworkLike, value: OwnerT) -> None:
        """Give `network` to `value`, taking it from its previous owner if any.

        Re-inserting moves the prefix to the end of the owner's entries, as wireguard-go does.
        """
        if value is None:
            raise ValueError("an allowed IP needs an owner")
        network = _normalize(network)
        family = self._family(network)
        network_int = int(network.network_address)
        previous = family.get(network_int, network.prefixlen)
        if previous is not None:
            self._forget_entry(previous, network)
        else:
            self._count += 1
        family.set(network_int, network.prefixlen, value)
        record = self._entries_by_owner.get(id(value))
        if record is None:
            record = self._entries_by_owner[id(value)] = (value, {})
        record[1][network] = None

    def remove(self, network: NetworkLike) -> None:
        """Remove one prefix, whoever owns it; a prefix not in the table is ignored."""
        network = _normalize(network)
        family = self._family(network)
        network_int = int(network.network_address)
        owner = family.get(network_int, network.prefixlen)
        if owner is None:
            return
        family.delete(network_int, network.prefixlen)
        self._forget_entry(owner, network)
        self._count -= 1

    def remove_by_value(self, value: OwnerT) -> None:
        """Remove every prefix of one owner (a peer being removed)."""
        record = self._entries_by_owner.pop(id(value), None)
        if record is None:
            return
        for network in record[1]:
            self._family(network).delete(int(network.network_address), network.prefixlen)
            self._count -= 1

    def _forget_entry(self, owner: OwnerT, network: Network) -> None:
        record = self._entries_by_owner[id(owner)]
        del record[1][network]
        if not record[1]:
            del self._entries_by_owner[id(owner)]

    def clear(self) -> None:
        self._v4.clear()
        self._v6.clear()
        self._entries_by_owner.clear()
        self._count = 0

    # --- queries ----------------------------------------------------------------------------

    def entries_for(self, value: OwnerT) -> list[Network]:
        """The prefixes of one owner, in insertion order."""
        record = self._entries_by_owner.get(id(value))
        return [] if record is None else list(record[1])

    def lookup_v4(self, addr: bytes) -> OwnerT | None:
        """Owner of the longest prefix containing a 4-byte address, or None. Per packet."""
        address_int = int.from_bytes(addr, "big")
        for mask, get in self._v4.probes:  # inlined _FamilyTable.lookup: one call less
            owner = get(address_int & mask)
            if owner is not None:
                return owner
        return None

    def lookup_v6(self, addr: bytes) -> OwnerT | None:
        """Owner of the longest prefix containing a 16-byte address, or None. Per packet."""
        address_int = int.from_bytes(addr, "big")
        for mask, get in self._v6.probes:
            owner = get(address_int & mask)
            if owner is not None:
                return owner
        return None

    def lookup(self, addr: bytes) -> OwnerT | None:
        """Dispatch on the address length: 4 bytes IPv4, 16 bytes IPv6."""
        if len(addr) == 4:
            return self._v4.lookup(int.from_bytes(addr, "big"))
        if len(addr) == 16:
            return self._v6.lookup(int.from_bytes(addr, "big"))
        raise ValueError("an address is 4 or 16 bytes")

    def __len__(self) -> int:
        return self._count
