"""The per-packet arithmetic: the C extension (wgpy._fastpath) against the pure-Python
reference (wgpy._purepath), and the reference against today's inline code.

Every test runs on both paths (`impl` fixture). The rule for the C path: when the extension
cannot be imported, its tests FAIL if this machine can build it (a C compiler, Python.h and
OpenSSL's headers are present -- install.sh installs them, and `pip install -e .` then builds
the extension) or WGPY_REQUIRE_FASTPATH=1 is set; they are skipped, saying why, only where it
cannot be built. Properties feed the same inputs to both and compare the bytes (or the
exception class) out.
"""

from __future__ import annotations

import array
import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from fastpath_lib import load_c
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from packets import tcp4, tcp6, udp4
from pairlib import seeded_rng

from wgpy import _purepath
from wgpy.constants import REJECT_AFTER_MESSAGES
from wgpy.core.device import Device
from wgpy.core.keypair import Keypair


@pytest.fixture(params=["python", "c"])
def impl(request):
    return _purepath if request.param == "python" else load_c()


@pytest.fixture(scope="module")
def c():
    return load_c()


P = _purepath
KEY = bytes(range(0x20, 0x40))


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- known answers ---------------------------------------------------------------------

# RFC 8439, A.5: its nonce 00000000 || 01..08 is WireGuard's zero-prefixed counter form.
A5_KEY = h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
A5_AAD = h("f33388860000000000004e91")
A5_CIPHERTEXT = h(
    """64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb24c6cfc18755d43eea09ee94e382d26b0
    bdb7b73c321b0100d4f03b7f355894cf332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855
    9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4b9166c767b804d46a59b5216cde7a4e9
    9040c5a40433225ee282a1b0a06c523eaf4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a
    0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a1049e617d91d361094fa68f0ff77987130
    305beaba2eda04df997b714d6c6f2c29a6ad5cb4022b02709b"""
)
A5_TAG = h("eead9d67890cbb22392336fea1851f38")
A5_PLAINTEXT = (
    "Internet-Drafts are draft documents valid for a maximum of six months and may be "
    "updated, replaced, or obsoleted by other documents at any time. It is inappropriate to "
    "use Internet-Drafts as reference material or to cite them other than as "
    "/\u201cwork in progress./\u201d"
).encode()
A5_COUNTER = int.from_bytes(bytes(range(1, 9)), "little")


def test_rfc8439_a5_seal_and_open(impl) -> None:
    # an MTU of the packet's own length leaves it unpadded (265 % 265 == 0)
    [datagram] = impl.seal_run(impl.AeadContext(A5_KEY), 0, A5_COUNTER, [A5_PLAINTEXT], 265,
                               A5_AAD)
    assert datagram == struct.pack("<IIQ", 4, 0, A5_COUNTER) + A5_CIPHERTEXT + A5_TAG
    context = impl.AeadContext(A5_KEY)
    assert impl.open_run(context, [datagram], A5_AAD) == [A5_PLAINTEXT]
    forged = datagram[:-1] + bytes([datagram[-1] ^ 1])
    assert impl.open_run(context, [forged, datagram], A5_AAD) == [None, A5_PLAINTEXT]


# WireGuard transport data messages (whitepaper 5.4.6: type 4, 3 reserved zero bytes,
# receiver index LE32, counter LE64, then the sealed packet padded to 16 bytes). Generated
# once with `cryptography`'s ChaCha20Poly1305 over that layout, key 20..3f.
KEEPALIVE = h("040000000102030401020304050607084e846065b9ef5ef9b6a675febd556281")
PACKET_21 = h("4500001500000000401100007f0000017f00000141")
DATA_21 = h(
    """040000000102030401020304050607089e8264ee8ab5ea8e51e01467c7ce17bf93516f97778c86b7384f36a0
    29f0ebf8de08a52c3c8b44c339780200c5847517"""
)


def test_wireguard_data_message_layout(impl) -> None:
    context = impl.AeadContext(KEY)
    out = impl.seal_run(context, 0x04030201, 0x0807060504030201, [b"", PACKET_21], 1420)
    assert out[0] == KEEPALIVE
    # the second packet has the next counter: seal it alone with the first one's to pin it
    [again] = impl.seal_run(context, 0x04030201, 0x0807060504030201, [PACKET_21], 1420)
    assert again == DATA_21 and len(again) == 16 + 32 + 16
    assert out[1][8:16] == (0x0807060504030201 + 1).to_bytes(8, "little")
    assert impl.open_run(context, [KEEPALIVE, DATA_21]) == [b"", PACKET_21 + bytes(11)]


def test_counters_stop_before_reject_after_messages(impl) -> None:
    context = impl.AeadContext(KEY)
    out = impl.seal_run(context, 1, REJECT_AFTER_MESSAGES - 2, [b"a"] * 5, 1420)
    assert [int.from_bytes(d[8:16], "little") for d in out] == [
        REJECT_AFTER_MESSAGES - 2, REJECT_AFTER_MESSAGES - 1]
    assert impl.seal_run(context, 1, REJECT_AFTER_MESSAGES, [b"a"], 1420) == []
    assert impl.seal_run(context, 1, 2**64 - 1, [b"a"], 1420) == []


@pytest.mark.parametrize(("receiver", "counter", "mtu"),
                         [(-1, 0, 0), (2**32, 0, 0), (0, -1, 0), (0, 2**64, 0), (0, 0, -1)])
def test_out_of_range_arguments_are_value_errors(impl, receiver, counter, mtu) -> None:
    with pytest.raises(ValueError):
        impl.seal_run(impl.AeadContext(KEY), receiver, counter, [b"x"], mtu)


def test_key_length_and_zeroize(impl) -> None:
    with pytest.raises(ValueError):
        impl.AeadContext(bytes(31))
    context = impl.AeadContext(KEY)
    context.zeroize()
    with pytest.raises(ValueError):
        impl.seal_run(context, 0, 0, [b""], 1420)
    with pytest.raises(ValueError):
        impl.open_run(context, [KEEPALIVE])
    with pytest.raises(TypeError):
        impl.seal_run(object(), 0, 0, [b""], 1420)


def test_non_contiguous_buffers_are_refused(impl) -> None:
    strided = memoryview(bytes(64))[::2]
    with pytest.raises((BufferError, TypeError, ValueError)):
        impl.seal_run(impl.AeadContext(KEY), 0, 0, [strided], 1420)
    with pytest.raises((BufferError, TypeError, ValueError)):
        impl.internet_checksum(strided)


def test_extension_is_built_from_the_source_beside_it(c) -> None:
    """A stale build (the C edited, not rebuilt) would test old code: rebuild with
    `pip install -e .` or `python3 setup.py build_ext --inplace`."""
    source = Path(c.__file__).with_name("_fastpath.c")
    if source.exists():  # an editable/in-place build; an installed wheel carries no source
        assert c.SOURCE_SHA256 == hashlib.sha256(source.read_bytes()).hexdigest(), (
            "wgpy._fastpath was built from another _fastpath.c: rebuild it")
    assert len(c.SOURCE_SHA256) == 64


def test_the_starter_chooses_with_wgpy_pure_and_the_core_reads_no_environment(c) -> None:
    """wgpy-daemon hands its environment to fastpath.select_from; importing the core with
    WGPY_PURE=1 set changes nothing by itself (the core never reads the environment)."""
    code = ("import os; from wgpy import fastpath; import wgpy.core.device; "
            "print(fastpath.IMPLEMENTATION, fastpath.seal_run.__module__); "
            "fastpath.select_from(os.environ); "
            "print(fastpath.IMPLEMENTATION, fastpath.seal_run.__module__)")
    env = dict(os.environ)
    env.pop("WGPY_PURE", None)
    built = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert built == ["c", "wgpy._fastpath"] * 2
    env["WGPY_PURE"] = "1"
    pure = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()
    assert pure == ["c", "wgpy._fastpath", "python", "wgpy._purepath"]


# --- the reference is what the core did inline (Device._seal now calls the switch: C or it) --

def _device_seal(packets: list[bytes], counter: int, mtu: int, send_key: bytes) -> list[bytes]:
    device = Device(rng=seeded_rng(5), mtu=mtu)
    peer = device.add_peer(bytes(range(32)))
    device.set_endpoint(peer, ("192.0.2.9", 51820))
    keypair = Keypair(send_key, bytes(32), True, 17, 0xA1B2C3D4, 1000.0, peer)
    keypair.sending_counter = counter
    device._seal(peer, keypair, packets, 1000.0)
    return [datagram for datagram, _endpoint in device.take_datagrams()]


@settings(max_examples=60, deadline=None)
@given(
    packets=st.lists(st.one_of(st.binary(max_size=100), st.integers(0, 1500).map(bytes)),
                     max_size=6),
    counter=st.one_of(st.integers(0, 2**40), st.integers(REJECT_AFTER_MESSAGES - 4,
                                                         REJECT_AFTER_MESSAGES + 2)),
    mtu=st.sampled_from([0, 1, 17, 64, 1280, 1420, 9000]),
)
def test_pure_seal_run_is_device_seal(packets, counter, mtu) -> None:
    expected = _device_seal(packets, counter, mtu, KEY)
    assert P.seal_run(P.AeadContext(KEY), 0xA1B2C3D4, counter, packets, mtu) == expected


def _ipv4_tcp(payload: bytes, corrupt: int = 0) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 1000, 2000, 7, 9, 5 << 4, 0x10, 512, 0, 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0,
                               bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
    ip[10:12] = P.internet_checksum(ip).to_bytes(2, "big")
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = bytearray(tcp)
    tcp[16:18] = P.internet_checksum(pseudo + tcp).to_bytes(2, "big")
    packet = bytearray(ip + tcp)
    if corrupt:
        packet[corrupt % len(packet)] ^= 0x40
    return bytes(packet)


def _naive_sum(data: bytes) -> int:
    """RFC 1071 by the book: 16-bit words added with end-around carry."""
    if len(data) & 1:
        data += b"\0"
    return _naive_fold(sum(struct.unpack(f"!{len(data) // 2}H", data)))


def _naive_fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def naive_checksums_valid(packet: bytes, l4_start: int, protocol: int) -> bool:
    """What io/tun_gro.py verified per segment before it called the fast path (its own
    big-integer version now lives on as _purepath.checksums_valid), word by word: a sum
    that is 0 mod 0xFFFF (0 or 0xFFFF folded) passes."""
    if len(packet) < l4_start + 8:
        return False
    if l4_start == 20:
        if _naive_sum(packet[:20]) not in (0, 0xFFFF):
            return False
        if protocol == 17 and packet[26:28] == b"\0\0":
            return True
        addresses = packet[12:20]
    else:
        addresses = packet[8:40]
    total = _naive_sum(addresses) + protocol + len(packet) - l4_start + _naive_sum(packet[l4_start:])
    return _naive_fold(total) in (0, 0xFFFF)


@settings(max_examples=300, deadline=None)
@given(
    packet=st.one_of(
        st.binary(min_size=48, max_size=300),
        st.builds(_ipv4_tcp, st.binary(max_size=1500), st.integers(0, 2000)),
    ),
    l4_start=st.sampled_from([20, 40]),
    protocol=st.sampled_from([6, 17]),
    kind=st.integers(0, 3),
)
def test_checksums_valid_both_paths_against_a_naive_one(c, packet, l4_start, protocol,
                                                        kind) -> None:
    expected = naive_checksums_valid(packet, l4_start, protocol)
    buffer = _as_buffer(packet, kind)
    assert P.checksums_valid(buffer, l4_start, protocol) is expected
    assert c.checksums_valid(buffer, l4_start, protocol) is expected


def test_checksums_valid_on_a_built_segment(impl) -> None:
    assert impl.checksums_valid(_ipv4_tcp(b"x" * 1400), 20, 6) is True
    assert impl.checksums_valid(_ipv4_tcp(b"x" * 1400, corrupt=700), 20, 6) is False
    # too short for an L4 header (an exact-size buffer: ASan catches a read past it)
    assert impl.checksums_valid(exact_buffer(bytes(27)), 20, 17) is False
    with pytest.raises(ValueError):
        impl.checksums_valid(bytes(60), 24, 6)


# --- both paths, same bytes --------------------------------------------------------------

def exact_buffer(data: bytes) -> array.array:
    """`data` in a buffer allocated at exactly its length (array's constructor over-allocates;
    repeating allocates the exact size)."""
    return array.array("B", data) * 1


def _as_buffer(data: bytes, kind: int):
    """`data` as bytes (0), a bytearray (1), a memoryview into a larger buffer (2), or an
    array.array (3), which is allocated at exactly its length: under ASan (tools/asan.sh) a
    read one byte past it is caught (bytes and bytearray carry a trailing NUL)."""
    if kind == 3:
        return exact_buffer(data)
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        return memoryview(b"\xee" * 3 + data + b"\xee")[3:-1]
    return data


def _same(call_c, call_pure):
    """Both return equal values, or both raise the same exception class."""
    try:
        expected = call_pure()
    except Exception as error:  # noqa: BLE001 -- the class is what is compared
        with pytest.raises(type(error)):
            call_c()
        return None
    assert call_c() == expected
    return expected


SIZES = st.one_of(st.integers(0, 80), st.sampled_from([0, 1, 15, 16, 17, 1279, 1280, 1404,
                                                       1419, 1420, 1421, 2840, 9000]))
COUNTERS = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**32 - 1, 2**32]),
                     st.integers(REJECT_AFTER_MESSAGES - 8, 2**64 + 1), st.integers(-3, -1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.binary(min_size=32, max_size=32),
    receiver=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([-1, 2**32])),
    counter=COUNTERS,
    sizes=st.lists(st.tuples(SIZES, st.integers(0, 3)), max_size=12),
    mtu=st.one_of(st.sampled_from([0, 1, 16, 1280, 1420, 65535, -1]), st.integers(1, 100)),
    fill=st.integers(0, 255),
    ad=st.sampled_from([b"", b"\x01" * 13]),
)
def test_seal_run_same_bytes(c, key, receiver, counter, sizes, mtu, fill, ad) -> None:
    packets = [_as_buffer(bytes([fill + i & 0xFF]) * size, kind)
               for i, (size, kind) in enumerate(sizes)]
    out = _same(lambda: c.seal_run(c.AeadContext(key), receiver, counter, packets, mtu, ad),
                lambda: P.seal_run(P.AeadContext(key), receiver, counter, packets, mtu, ad))
    if out:
        # and the library itself opens them
        aead = ChaCha20Poly1305(key)
        for i, datagram in enumerate(out):
            nonce = b"\0" * 4 + (counter + i).to_bytes(8, "little")
            plaintext = aead.decrypt(nonce, datagram[16:], ad or None)
            assert plaintext[: len(packets[i])] == bytes(packets[i])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counter=st.integers(0, 2**64 - 40),
    sizes=st.lists(SIZES, min_size=1, max_size=10),
    damage=st.lists(st.tuples(st.integers(0, 9), st.sampled_from(
        ["flip", "truncate", "extend", "counter", "empty", "memoryview", "bytearray",
         "array"]),
        st.integers(0, 10**6)), max_size=6),
    wrong_key=st.booleans(),
)
def test_open_run_same_results(c, counter, sizes, damage, wrong_key) -> None:
    datagrams: list = P.seal_run(P.AeadContext(KEY), 3, counter, [b"\x45" * n for n in sizes],
                                 1420)
    for index, how, where in damage:
        if index >= len(datagrams):
            continue
        data = bytes(datagrams[index])
        if not data and how in ("flip", "truncate"):
            continue
        if how == "flip":
            data = bytearray(data)
            data[where % len(data)] ^= 1 << (where % 8)
            data = bytes(data)
        elif how == "truncate":
            data = data[: where % len(data)]
        elif how == "extend":
            data += b"\0"
        elif how == "counter":
            # another counter in the header: low, or near 2**64 (the nonce changes, so it fails)
            other = where if where % 2 else 2**64 - 1 - where
            data = data[:8] + other.to_bytes(8, "little") + data[16:]
        elif how == "empty":
            data = b""
        elif how == "memoryview":
            data = memoryview(b"\xaa" + data)[1:]
        elif how == "array":
            data = exact_buffer(data)
        else:
            data = bytearray(data)
        datagrams[index] = data
    key = bytes(32) if wrong_key else KEY
    out = _same(lambda: c.open_run(c.AeadContext(key), datagrams),
                lambda: P.open_run(P.AeadContext(key), datagrams))
    if not wrong_key and not damage:
        assert all(plaintext is not None for plaintext in out)
    if wrong_key:
        assert out == [None] * len(datagrams)


def _naive_checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.binary(max_size=2000), st.integers(0, 70).map(lambda n: b"\xff" * n),
                      st.integers(0, 70).map(bytes)), kind=st.integers(0, 3))
def test_internet_checksum_is_rfc1071(c, data, kind) -> None:
    buffer = _as_buffer(data, kind)
    expected = _naive_checksum(data)
    assert P.internet_checksum(buffer) == expected
    assert c.internet_checksum(buffer) == expected


# --- TSO ------------------------------------------------------------------------------------

@st.composite
def super_packets(draw):
    """A virtio_net_hdr + TCP super-packet of any shape: IPv4 (with options) or IPv6, TCP
    options, payload from 0 to ~64 KB, any segment size, flags, seq and id near their wrap."""
    v6 = draw(st.booleans())
    tcp_options = bytes(draw(st.integers(0, 10)) * 4)
    flags = draw(st.integers(0, 255))
    seq = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 3000, 2**32 - 1)))
    tcp = struct.pack("!HHIIBBHHH", 443, 50000, seq, 77, (5 + len(tcp_options) // 4) << 4, flags,
                      1024, draw(st.integers(0, 0xFFFF)), 0) + tcp_options
    if v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, 0, 6, 64, b"\x20" * 16, b"\x21" * 16)
    else:
        options = bytes(draw(st.integers(0, 10)) * 4)
        ip = struct.pack("!BBHHHBBH4s4s", 0x40 | (5 + len(options) // 4), 0, 0,
                         draw(st.sampled_from([0, 1, 0xFFFE, 0xFFFF, 1234])), 0x4000, 64, 6, 0,
                         bytes([10, 1, 2, 3]), bytes([10, 3, 2, 1])) + options
    header_len = len(ip) + len(tcp)
    payload_len = draw(st.one_of(st.integers(0, 3000), st.sampled_from([65535 - header_len, 1]),
                                 st.integers(0, 65535 - header_len)))
    payload = draw(st.binary(min_size=min(payload_len, 64), max_size=64))
    payload = (payload * (payload_len // max(len(payload), 1) + 1))[:payload_len]
    gso_size = draw(st.one_of(st.integers(1, 2000), st.sampled_from([1280, 1400, 1448]),
                              st.integers(1, 65535)))
    # the kernel's hdr_len is skb_headlen (the linear part), not the headers: never trusted;
    # the ECN flag comes with a super-packet that carries CWR (TUN_F_TSO_ECN)
    hdr_len = draw(st.one_of(st.just(header_len), st.integers(0, 0xFFFF)))
    gso_type = (4 if v6 else 1) | (0x80 if draw(st.booleans()) else 0)
    vnet = struct.pack("<BBHHHH", draw(st.sampled_from([1, 3])), gso_type, hdr_len, gso_size,
                       len(ip), 16)
    return vnet + ip + tcp + payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(data=super_packets(), kind=st.integers(0, 3))
def test_tso_segment_same_bytes_and_valid_segments(c, data, kind) -> None:
    assume(len(data) < 80_000)
    buffer = _as_buffer(data, kind)
    segments = _same(lambda: c.tso_segment(buffer), lambda: P.tso_segment(buffer))
    assert segments is not None  # well-formed super-packets are always cut
    v6 = data[10] >> 4 == 6
    l4 = 40 if v6 else (data[10] & 15) * 4
    header_len = l4 + (data[10 + l4 + 12] >> 4) * 4
    gso_size = int.from_bytes(data[4:6], "little")
    payload = data[10 + header_len:]
    assert b"".join(s[header_len:] for s in segments) == payload
    original = data[10:10 + header_len]
    seq = int.from_bytes(original[l4 + 4:l4 + 8], "big")
    ip_id = int.from_bytes(original[4:6], "big")
    flags = original[l4 + 13]
    assert len(segments) == max(1, -(-len(payload) // gso_size))
    for index, segment in enumerate(segments):
        assert len(segment) - header_len == min(gso_size, len(payload) - index * gso_size) or (
            not payload and len(segment) == header_len)
        if not v6 and l4 == 20:
            assert naive_checksums_valid(segment, 20, 6)
        assert _naive_tcp_valid(segment, l4, v6)
        # the fields a segmenter changes, as the kernel's tcp_gso_segment/inet_gso_segment
        if v6:
            assert int.from_bytes(segment[4:6], "big") == len(segment) - 40
        else:
            assert int.from_bytes(segment[2:4], "big") == len(segment)
            assert int.from_bytes(segment[4:6], "big") == (ip_id + index) & 0xFFFF
        assert int.from_bytes(segment[l4 + 4:l4 + 8], "big") == (seq + index * gso_size) % 2**32
        last = index == len(segments) - 1
        expected_flags = flags & ~((0 if last else 0x09) | (0x80 if index else 0))
        assert segment[l4 + 13] == expected_flags  # FIN/PSH on the last only, CWR first only
        # and nothing else: the headers are the original's but for those fields
        unchanged = [(0, 2), (6, 10), (12, l4 + 4), (l4 + 8, l4 + 13), (l4 + 14, l4 + 16),
                     (l4 + 18, header_len)] if not v6 else [
                     (0, 4), (6, l4 + 4), (l4 + 8, l4 + 13), (l4 + 14, l4 + 16),
                     (l4 + 18, header_len)]
        for start, stop in unchanged:
            assert segment[start:stop] == original[start:stop]


def _naive_tcp_valid(segment: bytes, l4: int, v6: bool) -> bool:
    if not v6 and _naive_checksum(segment[:l4]) != 0:
        return False
    addresses = segment[8:40] if v6 else segment[12:20]
    tcp = segment[l4:]
    pseudo = addresses + struct.pack("!HH", 6, len(tcp)) if not v6 else (
        addresses + struct.pack("!IxxxB", len(tcp), 6))
    return _naive_checksum(pseudo + tcp) == 0


@settings(max_examples=400, deadline=None)
@given(vnet=st.tuples(st.integers(0, 3), st.sampled_from([0, 1, 3, 4, 5, 0x80, 0x81, 0x84, 0x85, 200]),
                      st.integers(0, 100), st.integers(0, 70), st.integers(0, 80),
                      st.sampled_from([0, 6, 16, 17, 60])),
       packet=st.binary(max_size=200), version=st.sampled_from([None, 0x45, 0x46, 0x60, 0x4F]))
def test_tso_segment_hostile_headers_same_outcome(c, vnet, packet, version) -> None:
    if version is not None and packet:
        packet = bytes([version]) + packet[1:]
    data = struct.pack("<BBHHHH", *vnet) + packet
    _same(lambda: c.tso_segment(data), lambda: P.tso_segment(data))
    exact = exact_buffer(data)
    _same(lambda: c.tso_segment(exact), lambda: P.tso_segment(exact))
    for cut in (0, 1, 9):
        _same(lambda cut=cut: c.tso_segment(exact[:cut]), lambda cut=cut: P.tso_segment(exact[:cut]))


def test_tso_no_gso_partial_checksum_of_zero_goes_out_as_ffff(impl) -> None:
    """A completed checksum of 0 is written as 0xFFFF, as the kernel's skb_checksum_help:
    for UDP 0 means "no checksum" (and IPv6 receivers drop it)."""
    for v6 in (False, True):
        payload = bytearray(b"\x11\x22" * 20)
        if v6:
            ip = struct.pack("!IHBB16s16s", 6 << 28, 8 + len(payload), 17, 64, b"\x20" * 16,
                             b"\x21" * 16)
            pseudo_sum = P._fold(sum(struct.unpack("!16H", ip[8:40])) + 17 + 8 + len(payload))
        else:
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                             bytes([10, 1, 2, 3]), bytes([10, 3, 2, 1]))
            pseudo_sum = P._fold(sum(struct.unpack("!4H", ip[12:20])) + 17 + 8 + len(payload))
        udp = bytearray(struct.pack("!HHHH", 1000, 2000, 8 + len(payload), pseudo_sum)) + payload
        # make the whole sum 0xFFFF: the last payload word takes what is missing
        udp[-2:] = b"\0\0"
        rest = P._fold(sum(struct.unpack(f"!{len(udp) // 2}H", udp)))
        udp[-2:] = (0xFFFF - rest).to_bytes(2, "big")
        assert P._fold(sum(struct.unpack(f"!{len(udp) // 2}H", udp))) == 0xFFFF
        l4 = len(ip)
        data = struct.pack("<BBHHHH", 1, 0, 0, 0, l4, 6) + ip + bytes(udp)
        (packet,) = impl.tso_segment(data)
        assert packet[l4 + 6:l4 + 8] == b"\xff\xff"
        assert packet[:l4 + 6] == ip + bytes(udp[:6]) and packet[l4 + 8:] == bytes(udp[8:])


def test_tso_no_gso_with_partial_checksum_completes_it(impl) -> None:
    segment = _ipv4_tcp(b"y" * 301)
    partial = bytearray(segment)
    pseudo_sum = P._fold(sum(struct.unpack("!4H", segment[12:20])) + 6 + len(segment) - 20)
    partial[36:38] = pseudo_sum.to_bytes(2, "big")
    data = struct.pack("<BBHHHH", 1, 0, 40, 0, 20, 16) + bytes(partial)
    assert impl.tso_segment(data) == [segment]
    plain = struct.pack("<BBHHHH", 0, 0, 0, 0, 0, 0) + segment
    assert impl.tso_segment(plain) == [segment]


# --- GRO: coalescing TCP segments for the TUN ------------------------------------------------

def _gro_flows():
    timestamps = b"\x01\x01\x08\x0a" + bytes(8)
    return [
        lambda payload, seq, flags, ack: tcp4(payload, seq, flags, ack=ack),
        lambda payload, seq, flags, ack: tcp4(payload, seq, flags, sport=999, ack=ack),
        lambda payload, seq, flags, ack: tcp4(payload, seq, flags, ack=ack, options=timestamps),
        lambda payload, seq, flags, ack: tcp4(payload, seq, flags, ack=ack, dst="10.7.0.9"),
        lambda payload, seq, flags, ack: tcp6(payload, seq, flags),
    ]


GRO_STEP = st.one_of(
    st.tuples(st.just("tcp"), st.integers(0, 4),
              st.sampled_from([None, None, None, 0, 1, 100, 500, 1199, 9000, 30000]),  # None: 1200
              st.sampled_from([0x10, 0x10, 0x10, 0x18, 0x02, 0x11, 0x90, 0x50]),
              st.sampled_from([0, 0, 0, 0, 7, -1200]),  # sequence gap
              st.sampled_from([1, 1, 1, 2]),  # ack number
              st.sampled_from([None] * 8 + [-1, 0, 1, 2, 6, 8, 9, 11, 24, 32, 33, 36, 45, 53, 57])),
    st.tuples(st.just("udp"), st.sampled_from([1, 300])),
    st.tuples(st.just("raw"), st.binary(max_size=80)),
    st.tuples(st.just("v4-options"), st.just(0)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(story=st.lists(GRO_STEP, max_size=70), kind=st.integers(0, 3))
def test_gro_coalesce_same_writes_as_the_reference(c, story, kind) -> None:
    """The C coalescer returns, byte for byte, tun_gro.coalesce's writes joined: flows mixed,
    PSH/SYN/FIN/CWR, gaps, changed ack, short and huge segments (the 64 KB limit), corrupted
    bytes anywhere (checksums, addresses, flags, options), UDP and garbage in between."""
    flows = _gro_flows()
    next_seq = [1000, 5000, 9000, 2**32 - 3000, 70000]
    packets = []
    for step in story:
        if step[0] == "tcp":
            _, flow, size, flags, gap, ack, bad_at = step
            payload = bytes([flow]) * (1200 if size is None else size)
            seq = (next_seq[flow] + gap) & 0xFFFFFFFF
            packet = flows[flow](payload, seq, flags, ack)
            next_seq[flow] = (seq + len(payload)) & 0xFFFFFFFF
            if bad_at is not None and bad_at < len(packet):
                packet = packet[:bad_at] + bytes([packet[bad_at] ^ 0x5A]) + packet[bad_at + 1:]
        elif step[0] == "udp":
            packet = udp4(b"u" * step[1])
        elif step[0] == "raw":
            packet = step[1]
        else:  # IPv4 with options: never coalesced
            packet = bytes([0x46]) + flows[0](b"x" * 100, 0, 0x10, 1)[1:] + bytes(4)
        packets.append(packet)
    buffers = [_as_buffer(packet, kind) for packet in packets]
    expected = P.gro_coalesce(packets)
    assert c.gro_coalesce(buffers) == expected
    assert c.gro_coalesce(tuple(packets)) == expected
    assert P.gro_coalesce(buffers) == expected


def test_gro_coalesce_a_run_becomes_one_super_packet(impl) -> None:
    packets = [tcp4(bytes([i]) * 1000, 1000 * i) for i in range(5)]
    (write,) = impl.gro_coalesce(packets)
    assert struct.unpack_from("<BBHHHH", write) == (1, 1, 40, 1000, 20, 16)
    assert write[10 + 40:] == b"".join(bytes([i]) * 1000 for i in range(5))
    assert impl.gro_coalesce([packets[0]]) == [bytes(10) + packets[0]]
    assert impl.gro_coalesce([]) == []
    with pytest.raises(TypeError):
        impl.gro_coalesce([packets[0], "text"])
    with pytest.raises(TypeError):
        impl.gro_coalesce(None)


# --- the core through the fast path --------------------------------------------------------

def test_a_received_run_gives_the_one_by_one_drop_reasons() -> None:
    """The receive path opens a whole run in one call, then takes each datagram in order. A
    forged copy of a counter accepted earlier in the same run, and a replay of it, are
    replays (the kernel refuses them before decrypting), not decryption failures; the
    same datagrams fed one by one count the same."""
    from pairlib import Pair, ipv4_packet

    from wgpy.errors import DropReason

    counts = []
    for batched in (True, False):
        pair = Pair(seed=3)
        pair.a.device.send_packet(ipv4_packet("10.9.0.1", "10.9.0.2", b"hi"), pair.now)
        pair.deliver()
        pair.a.device.send_packets([ipv4_packet("10.9.0.1", "10.9.0.2", bytes([i]) * 40)
                                    for i in range(3)], pair.now)
        first, second, third = [data for data, _ in pair.a.device.take_datagrams()]
        forged = first[:-1] + bytes([first[-1] ^ 1])
        run = [(d, pair.a.endpoint) for d in (first, forged, second, first, third)]
        device = pair.b.device
        before = dict(device.drops)
        if batched:
            device.receive_datagrams(run, pair.now)
        else:
            for data, src in run:
                device.receive_datagram(data, src, pair.now)
        drops = {reason: count - before.get(reason, 0) for reason, count in device.drops.items()
                 if count != before.get(reason, 0)}
        assert drops == {DropReason.REPLAYED_COUNTER: 2}
        counts.append(len(device.take_packets()))
    assert counts == [3, 3]
