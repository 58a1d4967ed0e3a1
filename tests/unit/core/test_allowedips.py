"""AllowedIPs against a deliberately naive list scan (the kernel's selftest idea), plus the
cases wg users meet: overlapping prefixes, default routes, moves, peer removal."""

from __future__ import annotations

import timeit
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wgpy.core.allowedips import AllowedIPs


class Peer:
    """Owners are compared by identity; make them unhashable on purpose to prove it."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Peer({self.name})"


def v4(text: str) -> bytes:
    return ip_address(text).packed


class NaiveTable:
    """A list of (network, owner); lookup scans everything and keeps the longest match."""

    def __init__(self) -> None:
        self.rows: list[tuple[IPv4Network | IPv6Network, object]] = []

    def insert(self, network: IPv4Network | IPv6Network, owner: object) -> None:
        self.remove(network)
        self.rows.append((network, owner))

    def remove(self, network: IPv4Network | IPv6Network) -> None:
        self.rows = [(n, o) for n, o in self.rows if n != network]

    def remove_by_value(self, owner: object) -> None:
        self.rows = [(n, o) for n, o in self.rows if o is not owner]

    def entries_for(self, owner: object) -> list[IPv4Network | IPv6Network]:
        return [n for n, o in self.rows if o is owner]

    def lookup(self, addr: bytes) -> object | None:
        address = ip_address(addr)
        best: tuple[int, object] | None = None
        for network, owner in self.rows:
            matches = network.version == address.version and address in network
            if matches and (best is None or network.prefixlen > best[0]):
                best = (network.prefixlen, owner)
        return None if best is None else best[1]


PEERS = [Peer(str(i)) for i in range(4)]


def networks(version: int) -> st.SearchStrategy[IPv4Network | IPv6Network]:
    bits = 32 if version == 4 else 128
    # few distinct high bits so that prefixes overlap often
    address = st.builds(
        lambda high, low, shift: (high << (bits - 8)) | (low << shift),
        st.integers(0, 3),
        st.integers(0, 255),
        st.integers(0, bits - 8),
    )
    network_class = IPv4Network if version == 4 else IPv6Network
    return st.builds(
        lambda a, length: network_class((a, length), strict=False), address, st.integers(0, bits)
    )


def addresses(version: int) -> st.SearchStrategy[bytes]:
    bits = 32 if version == 4 else 128
    return st.builds(
        lambda high, rest: ((high << (bits - 8)) | rest).to_bytes(bits // 8, "big"),
        st.integers(0, 3),
        st.integers(0, (1 << (bits - 8)) - 1),
    )


def operations(version: int) -> st.SearchStrategy[list[tuple]]:
    op = st.one_of(
        st.tuples(st.just("insert"), networks(version), st.sampled_from(PEERS)),
        st.tuples(st.just("remove"), networks(version)),
        st.tuples(st.just("remove_by_value"), st.sampled_from(PEERS)),
    )
    return st.lists(op, max_size=60)


def check_against_naive(version: int, ops: list[tuple], probes: list[bytes]) -> None:
    table, naive = AllowedIPs(), NaiveTable()
    inserted: list[IPv4Network | IPv6Network] = []
    for op in ops:
        getattr(table, op[0])(*op[1:])
        getattr(naive, op[0])(*op[1:])
        if op[0] == "insert":
            inserted.append(op[1])
    assert len(table) == len(naive.rows)
    # white box: only lengths still present are probed (removal keeps the structure exact)
    family = table._v4 if version == 4 else table._v6
    assert sorted(family.by_length, reverse=True) == sorted(
        {n.prefixlen for n, _ in naive.rows}, reverse=True
    )
    assert len(family.probes) == len(family.by_length)
    for peer in PEERS:
        assert table.entries_for(peer) == naive.entries_for(peer)
    # probe random addresses and the edges of every prefix ever inserted
    edges = [n.network_address.packed for n in inserted]
    edges += [n.broadcast_address.packed for n in inserted]
    for addr in probes + edges:
        assert table.lookup(addr) is naive.lookup(addr)
        lookup_family = table.lookup_v4 if version == 4 else table.lookup_v6
        assert lookup_family(addr) is naive.lookup(addr)


# one module-level test per family, so that conftest.py can set their examples
@settings(max_examples=150, deadline=None)
@given(ops=operations(4), probes=st.lists(addresses(4), max_size=30))
def test_v4_matches_a_naive_list_scan(ops: list[tuple], probes: list[bytes]) -> None:
    check_against_naive(4, ops, probes)


@settings(max_examples=150, deadline=None)
@given(ops=operations(6), probes=st.lists(addresses(6), max_size=30))
def test_v6_matches_a_naive_list_scan(ops: list[tuple], probes: list[bytes]) -> None:
    check_against_naive(6, ops, probes)


def test_three_peers_with_overlapping_prefixes() -> None:
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    table = AllowedIPs()
    table.insert(ip_network("10.0.0.0/8"), a)
    table.insert(ip_network("10.1.0.0/16"), b)
    table.insert(ip_network("10.1.2.0/24"), c)
    table.insert(ip_network("10.1.2.3/32"), a)
    assert table.lookup(v4("10.9.9.9")) is a
    assert table.lookup(v4("10.1.9.9")) is b
    assert table.lookup(v4("10.1.2.9")) is c
    assert table.lookup(v4("10.1.2.3")) is a
    assert table.lookup(v4("11.0.0.0")) is None
    table.remove(ip_network("10.1.2.0/24"))
    assert table.lookup(v4("10.1.2.9")) is b
    assert table.lookup(v4("10.1.2.3")) is a


def test_default_routes_catch_everything_of_their_family_only() -> None:
    four, six = Peer("4"), Peer("6")
    table = AllowedIPs()
    table.insert(ip_network("0.0.0.0/0"), four)
    assert table.lookup(v4("203.0.113.7")) is four
    assert table.lookup(v4("0.0.0.0")) is four
    assert table.lookup(ip_address("2001:db8::1").packed) is None
    table.insert(ip_network("::/0"), six)
    assert table.lookup(ip_address("2001:db8::1").packed) is six
    more_specific = Peer("specific")
    table.insert(ip_network("2001:db8::/32"), more_specific)
    assert table.lookup(ip_address("2001:db8:ffff::1").packed) is more_specific
    assert table.lookup(ip_address("2001:db9::1").packed) is six


def test_inserting_a_held_prefix_moves_it_to_the_new_peer() -> None:
    a, b = Peer("a"), Peer("b")
    table = AllowedIPs()
    table.insert(ip_network("192.168.4.0/24"), a)
    table.insert(ip_network("192.168.5.0/24"), a)
    table.insert(ip_network("192.168.4.0/24"), b)
    assert table.lookup(v4("192.168.4.1")) is b
    assert table.entries_for(a) == [ip_network("192.168.5.0/24")]
    assert table.entries_for(b) == [ip_network("192.168.4.0/24")]
    assert len(table) == 2


def test_entries_for_keeps_insertion_order_and_reinsert_moves_to_end() -> None:
    a = Peer("a")
    table = AllowedIPs()
    for text in ["10.0.0.0/24", "fd00::/64", "10.0.1.0/24"]:
        table.insert(ip_network(text), a)
    assert [str(n) for n in table.entries_for(a)] == ["10.0.0.0/24", "fd00::/64", "10.0.1.0/24"]
    table.insert(ip_network("10.0.0.0/24"), a)  # wireguard-go re-appends an exact re-insert
    assert [str(n) for n in table.entries_for(a)] == ["fd00::/64", "10.0.1.0/24", "10.0.0.0/24"]


def test_remove_by_value_takes_all_prefixes_of_one_peer() -> None:
    a, b = Peer("a"), Peer("b")
    table = AllowedIPs()
    table.insert(ip_network("10.0.0.0/24"), a)
    table.insert(ip_network("fd00::/64"), a)
    table.insert(ip_network("10.0.0.128/25"), b)
    table.remove_by_value(a)
    assert table.entries_for(a) == []
    assert table.lookup(v4("10.0.0.1")) is None
    assert table.lookup(v4("10.0.0.200")) is b
    assert table.lookup(ip_address("fd00::1").packed) is None
    assert len(table) == 1
    table.remove_by_value(a)  # unknown owner: no effect
    assert len(table) == 1


def test_host_bits_are_masked_as_wg_does() -> None:
    a = Peer("a")
    table = AllowedIPs()
    table.insert("10.0.0.1/24", a)
    table.insert("fd00::1/64", a)
    assert [str(n) for n in table.entries_for(a)] == ["10.0.0.0/24", "fd00::/64"]
    assert table.lookup(v4("10.0.0.77")) is a
    table.remove("10.0.0.99/24")  # the same network once masked
    assert [str(n) for n in table.entries_for(a)] == ["fd00::/64"]


def test_lookup_takes_slices_of_a_packet() -> None:
    a = Peer("a")
    table = AllowedIPs()
    table.insert("192.0.2.0/24", a)
    header = bytearray(20)
    header[12:16] = v4("198.51.100.1")
    header[16:20] = v4("192.0.2.9")
    assert table.lookup_v4(bytes(header[16:20])) is a
    assert table.lookup(memoryview(header)[16:20]) is a
    assert table.lookup_v4(bytes(header[12:16])) is None


def test_a_wrong_address_length_or_no_owner_is_refused() -> None:
    table = AllowedIPs()
    with pytest.raises(ValueError):
        table.lookup(b"\x00" * 5)
    with pytest.raises(ValueError):
        table.insert("10.0.0.0/8", None)


def test_clear_empties_both_families() -> None:
    a = Peer("a")
    table = AllowedIPs()
    table.insert("10.0.0.0/8", a)
    table.insert("::/0", a)
    table.clear()
    assert len(table) == 0
    assert table.entries_for(a) == []
    assert table.lookup(v4("10.0.0.1")) is None


def test_lookup_cost_stays_flat_with_ten_thousand_host_routes() -> None:
    """10,000 peers with one /32 each cost about what one peer costs (one dict probe)."""

    def cost(peer_count: int) -> float:
        table = AllowedIPs()
        for i in range(peer_count):
            table.insert(IPv4Network(((10 << 24) | i, 32)), Peer(str(i)))
        addr = v4("10.0.0.5")
        assert table.lookup_v4(addr) is not None
        return min(timeit.repeat(lambda: table.lookup_v4(addr), number=20000, repeat=5))

    small, large = cost(10), cost(10_000)
    assert large < small * 3  # generous: the machine is shared
