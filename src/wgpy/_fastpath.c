/* wgpy._fastpath: the per-packet arithmetic of wgpy in C (see wgpy/fastpath.py).
 *
 * Only arithmetic on buffers handed in: sealing and opening runs of transport packets of one
 * keypair direction with OpenSSL's EVP ChaCha20-Poly1305, the internet checksum (RFC 1071),
 * and TSO segmentation of a virtio-net-hdr super-packet. No protocol state lives here: which
 * keypair, which counters, the replay window and every drop decision stay in the Python core.
 * wgpy/_purepath.py is the reference: every function here returns the same bytes for the same
 * input (tests/unit/test_fastpath.py), and raises the same exception class for a bad one.
 *
 * Every length is checked against its buffer before it is read or written.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define KEY_LEN 32
#define TAG_LEN 16
#define HEADER_LEN 16                      /* type(1) reserved(3) receiver(4) counter(8) */
#define MESSAGE_TRANSPORT 4
#define REJECT_AFTER_MESSAGES (UINT64_MAX - 8192) /* 2**64 - 2**13 - 1 (wgpy.constants) */
#define VNET_HDR_LEN 10
#define VNET_HDR_F_NEEDS_CSUM 1
#define VNET_HDR_GSO_NONE 0
#define VNET_HDR_GSO_TCPV4 1
#define VNET_HDR_GSO_TCPV6 4
#define VNET_HDR_GSO_ECN 0x80
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

#ifndef WGPY_FASTPATH_SOURCE_SHA256
#define WGPY_FASTPATH_SOURCE_SHA256 "unknown" /* setup.py defines it */
#endif

static EVP_CIPHER *chacha20_poly1305; /* fetched once at import */

/* --- little helpers ------------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_be16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static unsigned get_be16(const uint8_t *p) { return ((unsigned)p[0] << 8) | p[1]; }
static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* An int argument in [0, limit], else ValueError (TypeError if it is no int), as _purepath. */
static int as_u64(PyObject *obj, uint64_t limit, const char *what, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    if (v > limit) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    *out = v;
    return 0;
}

/* --- the internet checksum (RFC 1071) ---------------------------------------------------- */

/* The one's complement sum of `n` bytes read as big-endian 16-bit words (an odd last byte is
 * padded with zero), folded to 16 bits. Words are added in the host's byte order 32 bits at a
 * time and the folded result swapped once: the one's complement sum commutes with byte
 * swapping (RFC 1071, 2.B). */
static unsigned sum16(const uint8_t *p, size_t n)
{
    uint64_t s = 0;
    while (n >= 32) {
        uint32_t w[8];
        memcpy(w, p, 32);
        s += (uint64_t)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
        p += 32;
        n -= 32;
    }
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        s += w;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t w;
        memcpy(&w, p, 2);
        s += w;
        p += 2;
        n -= 2;
    }
    if (n) {
        uint8_t last[2] = {p[0], 0};
        uint16_t w;
        memcpy(&w, last, 2);
        s += w;
    }
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFFFFFFu) + (s >> 32);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
#if PY_LITTLE_ENDIAN
    s = ((s >> 8) | (s << 8)) & 0xFFFF;
#endif
    return (unsigned)s;
}

static unsigned fold(uint64_t s)
{
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (unsigned)s;
}

static PyObject *internet_checksum(PyObject *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned sum = sum16(data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(~sum & 0xFFFF);
}

/* The IPv4 header (l4_start 20) and the TCP/UDP checksum of `p` hold (see checksums_valid). */
static int l4_checksums_valid(const uint8_t *p, Py_ssize_t length, Py_ssize_t l4_start,
                              unsigned protocol)
{
    if (length < l4_start + 8)
        return 0;
    uint64_t pseudo;
    if (l4_start == 20) {
        unsigned header = sum16(p, 20);
        if (header != 0 && header != 0xFFFF)
            return 0;
        if (protocol == 17 && p[26] == 0 && p[27] == 0)
            return 1;
        pseudo = sum16(p + 12, 8);
    } else {
        pseudo = sum16(p + 8, 32);
    }
    uint64_t total = (uint64_t)sum16(p + l4_start, (size_t)(length - l4_start)) + pseudo
                     + (uint64_t)protocol + (uint64_t)(length - l4_start);
    return total % 0xFFFF == 0;
}

/* checksums_valid(packet, l4_start, protocol): io/tun_gro.py's verification of a segment:
 * the IPv4 header checksum (l4_start 20) and the TCP/UDP checksum over the pseudo-header;
 * a UDP-over-IPv4 checksum of 0 means none. Sums are compared mod 0xFFFF, as the reference. */
static PyObject *checksums_valid(PyObject *self, PyObject *args)
{
    Py_buffer packet;
    Py_ssize_t l4_start;
    int protocol;
    if (!PyArg_ParseTuple(args, "y*ni:checksums_valid", &packet, &l4_start, &protocol))
        return NULL;
    PyObject *result = NULL;
    const uint8_t *p = packet.buf;
    Py_ssize_t length = packet.len;
    if ((l4_start != 20 && l4_start != 40) || protocol < 0 || protocol > 255) {
        PyErr_SetString(PyExc_ValueError, "l4_start must be 20 or 40, protocol a byte");
        goto done;
    }
    result = l4_checksums_valid(p, length, l4_start, (unsigned)protocol) ? Py_True : Py_False;
done:
    PyBuffer_Release(&packet);
    Py_XINCREF(result);
    return result;
}

/* --- AeadContext: one key, one reused EVP context per direction ---------------------------- */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *seal; /* hold the key schedule; freed (and cleansed by OpenSSL) on zeroize */
    EVP_CIPHER_CTX *open;
} AeadContext;

static void aead_free_contexts(AeadContext *self)
{
    EVP_CIPHER_CTX_free(self->seal); /* OpenSSL cleanses the cipher state it frees */
    EVP_CIPHER_CTX_free(self->open);
    self->seal = self->open = NULL;
}

static int AeadContext_init(AeadContext *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key", NULL};
    Py_buffer key;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*:AeadContext", kwlist, &key))
        return -1;
    int rc = -1;
    aead_free_contexts(self);
    if (key.len != KEY_LEN) {
        PyErr_SetString(PyExc_ValueError, "ChaCha20Poly1305 key must be 32 bytes.");
        goto done;
    }
    self->seal = EVP_CIPHER_CTX_new();
    self->open = EVP_CIPHER_CTX_new();
    if (self->seal == NULL || self->open == NULL
        || EVP_EncryptInit_ex2(self->seal, chacha20_poly1305, key.buf, NULL, NULL) != 1
        || EVP_DecryptInit_ex2(self->open, chacha20_poly1305, key.buf, NULL, NULL) != 1) {
        aead_free_contexts(self);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not set up ChaCha20-Poly1305");
        goto done;
    }
    rc = 0;
done:
    PyBuffer_Release(&key);
    return rc;
}

static void AeadContext_dealloc(AeadContext *self)
{
    aead_free_contexts(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *AeadContext_zeroize(AeadContext *self, PyObject *unused)
{
    aead_free_contexts(self);
    Py_RETURN_NONE;
}

static PyMethodDef AeadContext_methods[] = {
    {"zeroize", (PyCFunction)AeadContext_zeroize, METH_NOARGS,
     "Forget the key: free the OpenSSL contexts (OpenSSL cleanses them). Later use raises."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AeadContextType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wgpy._fastpath.AeadContext",
    .tp_doc = "AeadContext(key): ChaCha20-Poly1305 under one 32-byte key, for seal_run/open_run.",
    .tp_basicsize = sizeof(AeadContext),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)AeadContext_init,
    .tp_dealloc = (destructor)AeadContext_dealloc,
    .tp_methods = AeadContext_methods,
};

static AeadContext *as_context(PyObject *obj, int seal)
{
    if (!PyObject_TypeCheck(obj, &AeadContextType)) {
        PyErr_SetString(PyExc_TypeError, "context must be an AeadContext");
        return NULL;
    }
    AeadContext *ctx = (AeadContext *)obj;
    if ((seal ? ctx->seal : ctx->open) == NULL) {
        PyErr_SetString(PyExc_ValueError, "the AeadContext was zeroized");
        return NULL;
    }
    return ctx;
}

static void nonce_for(uint8_t nonce[12], uint64_t counter)
{
    memset(nonce, 0, 4);
    put_le64(nonce + 4, counter);
}

/* seal_run(context, receiver_index, counter, packets, mtu, ad=b"") -> list[bytes]
 * The transport messages for `packets`, counters from `counter` on; stops before
 * REJECT_AFTER_MESSAGES (fewer messages than packets then). Each packet is padded with zeros
 * to a multiple of 16, never beyond the MTU (0: no cap), as Device._seal. */
static PyObject *seal_run(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"context", "receiver_index", "counter", "packets", "mtu", "ad", NULL};
    PyObject *ctx_obj, *receiver_obj, *counter_obj, *packets_obj;
    Py_ssize_t mtu;
    Py_buffer ad = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOn|y*:seal_run", kwlist, &ctx_obj,
                                     &receiver_obj, &counter_obj, &packets_obj, &mtu, &ad))
        return NULL;
    PyObject *fast = NULL, *out = NULL;
    uint64_t receiver, counter;
    AeadContext *ctx = as_context(ctx_obj, 1);
    if (ctx == NULL
        || as_u64(receiver_obj, UINT32_MAX, "receiver_index", &receiver) < 0
        || as_u64(counter_obj, UINT64_MAX, "counter", &counter) < 0)
        goto fail;
    if (mtu < 0) {
        PyErr_SetString(PyExc_ValueError, "mtu out of range");
        goto fail;
    }
    if (ad.len > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "associated data too long");
        goto fail;
    }
    fast = PySequence_Fast(packets_obj, "packets must be a sequence");
    if (fast == NULL)
        goto fail;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    uint64_t available = counter < REJECT_AFTER_MESSAGES ? REJECT_AFTER_MESSAGES - counter : 0;
    if ((uint64_t)count > available)
        count = (Py_ssize_t)available;
    out = PyList_New(count);
    if (out == NULL)
        goto fail;
    EVP_CIPHER_CTX *evp = ctx->seal;
    for (Py_ssize_t i = 0; i < count; i++, counter++) {
        Py_buffer packet;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, i), &packet, PyBUF_SIMPLE) < 0)
            goto fail;
        Py_ssize_t length = packet.len;
        Py_ssize_t last_unit = mtu ? length % mtu : length;
        Py_ssize_t padded = (last_unit + 15) & ~(Py_ssize_t)15;
        if (mtu && padded > mtu)
            padded = mtu;
        Py_ssize_t body = length + (padded - last_unit);
        if (body > INT_MAX - 64) {
            PyBuffer_Release(&packet);
            PyErr_SetString(PyExc_ValueError, "packet too long");
            goto fail;
        }
        PyObject *datagram = PyBytes_FromStringAndSize(NULL, HEADER_LEN + body + TAG_LEN);
        if (datagram == NULL) {
            PyBuffer_Release(&packet);
            goto fail;
        }
        PyList_SET_ITEM(out, i, datagram); /* owned by the list from here on */
        uint8_t *d = (uint8_t *)PyBytes_AS_STRING(datagram);
        put_le32(d, MESSAGE_TRANSPORT);
        put_le32(d + 4, (uint32_t)receiver);
        put_le64(d + 8, counter);
        uint8_t *text = d + HEADER_LEN;
        memcpy(text, packet.buf, (size_t)length);
        PyBuffer_Release(&packet);
        memset(text + length, 0, (size_t)(body - length));
        uint8_t nonce[12];
        nonce_for(nonce, counter);
        int outl = 0, finl = 0;
        if (EVP_EncryptInit_ex2(evp, NULL, NULL, nonce, NULL) != 1
            || (ad.len && EVP_EncryptUpdate(evp, NULL, &outl, ad.buf, (int)ad.len) != 1)
            || EVP_EncryptUpdate(evp, text, &outl, text, (int)body) != 1
            || EVP_EncryptFinal_ex(evp, text + outl, &finl) != 1
            || outl + finl != body
            || EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, text + body) != 1) {
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to encrypt");
            goto fail;
        }
    }
    Py_DECREF(fast);
    if (ad.obj)
        PyBuffer_Release(&ad);
    return out;
fail:
    Py_XDECREF(fast);
    Py_XDECREF(out);
    if (ad.obj)
        PyBuffer_Release(&ad);
    return NULL;
}

/* open_run(context, datagrams, ad=b"") -> list[bytes | None]
 * Per transport message (header included; its counter is read from bytes 8..16): the
 * plaintext, or None when it is shorter than header + tag or fails authentication. The caller
 * checked the replay window before and marks it after, for the ones that authenticated. */
static PyObject *open_run(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"context", "datagrams", "ad", NULL};
    PyObject *ctx_obj, *datagrams_obj;
    Py_buffer ad = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|y*:open_run", kwlist, &ctx_obj,
                                     &datagrams_obj, &ad))
        return NULL;
    PyObject *fast = NULL, *out = NULL;
    AeadContext *ctx = as_context(ctx_obj, 0);
    if (ctx == NULL)
        goto fail;
    if (ad.len > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "associated data too long");
        goto fail;
    }
    fast = PySequence_Fast(datagrams_obj, "datagrams must be a sequence");
    if (fast == NULL)
        goto fail;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    out = PyList_New(count);
    if (out == NULL)
        goto fail;
    EVP_CIPHER_CTX *evp = ctx->open;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_buffer data;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, i), &data, PyBUF_SIMPLE) < 0)
            goto fail;
        const uint8_t *d = data.buf;
        Py_ssize_t body = data.len - HEADER_LEN - TAG_LEN;
        if (body < 0 || body > INT_MAX - 64) {
            PyBuffer_Release(&data);
            Py_INCREF(Py_None);
            PyList_SET_ITEM(out, i, Py_None);
            continue;
        }
        PyObject *plaintext = PyBytes_FromStringAndSize(NULL, body);
        if (plaintext == NULL) {
            PyBuffer_Release(&data);
            goto fail;
        }
        uint8_t *text = (uint8_t *)PyBytes_AS_STRING(plaintext);
        uint8_t nonce[12], tag[TAG_LEN];
        nonce_for(nonce, get_le64(d + 8));
        memcpy(tag, d + HEADER_LEN + body, TAG_LEN);
        int outl = 0, finl = 0;
        if (EVP_DecryptInit_ex2(evp, NULL, NULL, nonce, NULL) != 1
            || (ad.len && EVP_DecryptUpdate(evp, NULL, &outl, ad.buf, (int)ad.len) != 1)
            || EVP_DecryptUpdate(evp, text, &outl, d + HEADER_LEN, (int)body) != 1
            || EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1) {
            PyBuffer_Release(&data);
            Py_DECREF(plaintext);
            PyErr_SetString(PyExc_RuntimeError, "OpenSSL failed to decrypt");
            goto fail;
        }
        PyBuffer_Release(&data);
        if (EVP_DecryptFinal_ex(evp, text + outl, &finl) != 1 || outl + finl != body) {
            /* forged or corrupted: no plaintext leaves (the buffer is cleansed, not reused) */
            OPENSSL_cleanse(text, (size_t)body);
            Py_DECREF(plaintext);
            Py_INCREF(Py_None);
            PyList_SET_ITEM(out, i, Py_None);
            continue;
        }
        PyList_SET_ITEM(out, i, plaintext);
    }
    Py_DECREF(fast);
    if (ad.obj)
        PyBuffer_Release(&ad);
    return out;
fail:
    Py_XDECREF(fast);
    Py_XDECREF(out);
    if (ad.obj)
        PyBuffer_Release(&ad);
    return NULL;
}

/* --- TSO: a virtio-net-hdr super-packet into MSS segments ------------------------------- */

static PyObject *tso_error(const char *why)
{
    PyErr_Format(PyExc_ValueError, "bad super-packet: %s", why);
    return NULL;
}

/* One segment: the headers with lengths, IPv4 id and checksum, TCP seq, flags and checksum
 * fixed, then `payload_len` bytes of payload. */
static PyObject *tso_one(const uint8_t *packet, Py_ssize_t header_len, Py_ssize_t csum_start,
                         int v6, const uint8_t *payload, Py_ssize_t payload_len, unsigned index,
                         uint32_t seq, int last)
{
    Py_ssize_t total = header_len + payload_len;
    PyObject *segment = PyBytes_FromStringAndSize(NULL, total);
    if (segment == NULL)
        return NULL;
    uint8_t *s = (uint8_t *)PyBytes_AS_STRING(segment);
    memcpy(s, packet, (size_t)header_len);
    memcpy(s + header_len, payload, (size_t)payload_len);
    uint64_t pseudo;
    if (v6) {
        put_be16(s + 4, (unsigned)(total - 40));
        pseudo = sum16(s + 8, 32);
    } else {
        put_be16(s + 2, (unsigned)total);
        put_be16(s + 4, (get_be16(packet + 4) + index) & 0xFFFF);
        s[10] = s[11] = 0;
        put_be16(s + 10, ~sum16(s, (size_t)csum_start) & 0xFFFF);
        pseudo = sum16(s + 12, 8);
    }
    uint8_t *tcp = s + csum_start;
    put_be32(tcp + 4, seq);
    if (!last)
        tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
    if (index)
        tcp[13] &= (uint8_t)~TCP_CWR;
    tcp[16] = tcp[17] = 0;
    Py_ssize_t tcp_len = total - csum_start;
    unsigned sum = fold(pseudo + 6 + (uint64_t)tcp_len + sum16(tcp, (size_t)tcp_len));
    put_be16(tcp + 16, ~sum & 0xFFFF);
    return segment;
}

/* tso_segment(data) -> list[bytes]: `data` is a virtio_net_hdr and the packet after it, as a
 * TUN with IFF_VNET_HDR and TUNSETOFFLOAD (TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6) delivers it. */
static PyObject *tso_segment(PyObject *self, PyObject *arg)
{
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = NULL;
    const uint8_t *d = data.buf;
    if (data.len < VNET_HDR_LEN) {
        tso_error("shorter than the vnet header");
        goto done;
    }
    /* struct virtio_net_hdr: flags u8, gso_type u8, hdr_len le16 (not trusted: recomputed
     * from the TCP header, as wireguard-go does), gso_size le16, csum_start le16,
     * csum_offset le16 */
    unsigned flags = d[0], gso_type = d[1];
    Py_ssize_t gso_size = d[4] | (d[5] << 8);
    Py_ssize_t csum_start = d[6] | (d[7] << 8);
    Py_ssize_t csum_offset = d[8] | (d[9] << 8);
    const uint8_t *packet = d + VNET_HDR_LEN;
    Py_ssize_t length = data.len - VNET_HDR_LEN;
    if (gso_type == VNET_HDR_GSO_NONE) {
        PyObject *one = PyBytes_FromStringAndSize((const char *)packet, length);
        if (one == NULL)
            goto done;
        if (flags & VNET_HDR_F_NEEDS_CSUM) {
            /* checksum partial: the field holds the pseudo-header sum; complete it */
            if (csum_start + csum_offset + 2 > length) {
                Py_DECREF(one);
                tso_error("checksum field beyond the packet");
                goto done;
            }
            uint8_t *p = (uint8_t *)PyBytes_AS_STRING(one);
            unsigned sum = sum16(p + csum_start, (size_t)(length - csum_start));
            /* a result of 0 goes out as 0xFFFF, as the kernel's skb_checksum_help (for UDP,
             * 0 would mean "no checksum", which IPv6 forbids) */
            unsigned check = ~sum & 0xFFFF;
            put_be16(p + csum_start + csum_offset, check ? check : 0xFFFF);
        }
        out = PyList_New(1);
        if (out == NULL) {
            Py_DECREF(one);
            goto done;
        }
        PyList_SET_ITEM(out, 0, one);
        goto done;
    }
    /* the ECN flag (TUN_F_TSO_ECN: the super-packet carries CWR) changes nothing here: CWR
     * stays on the first segment only, as for any super-packet (tcp_gso_segment) */
    int v6;
    if ((gso_type & ~VNET_HDR_GSO_ECN) == VNET_HDR_GSO_TCPV4)
        v6 = 0;
    else if ((gso_type & ~VNET_HDR_GSO_ECN) == VNET_HDR_GSO_TCPV6)
        v6 = 1;
    else {
        tso_error("not TCPv4/TCPv6 GSO");
        goto done;
    }
    if (!(flags & VNET_HDR_F_NEEDS_CSUM) || csum_offset != 16) {
        tso_error("GSO without a TCP checksum offset");
        goto done;
    }
    if (gso_size == 0) {
        tso_error("segment size 0");
        goto done;
    }
    if (v6) {
        if (length < 40 || packet[0] >> 4 != 6 || packet[6] != 6 || csum_start != 40) {
            tso_error("not IPv6 + TCP");
            goto done;
        }
    } else {
        if (length < 20 || packet[0] >> 4 != 4 || packet[9] != 6
            || csum_start != (packet[0] & 15) * 4 || csum_start < 20) {
            tso_error("not IPv4 + TCP");
            goto done;
        }
    }
    if (length < csum_start + 20) {
        tso_error("TCP header cut short");
        goto done;
    }
    Py_ssize_t header_len = csum_start + (packet[csum_start + 12] >> 4) * 4;
    if (header_len < csum_start + 20 || header_len > length) {
        tso_error("bad TCP data offset");
        goto done;
    }
    Py_ssize_t payload = length - header_len;
    Py_ssize_t first_len = payload < gso_size ? payload : gso_size;
    if (header_len + first_len > 65535) {
        tso_error("segment longer than an IP packet");
        goto done;
    }
    Py_ssize_t count = payload ? (payload + gso_size - 1) / gso_size : 1;
    out = PyList_New(count);
    if (out == NULL)
        goto done;
    uint32_t seq = get_be32(packet + csum_start + 4);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t offset = i * gso_size;
        Py_ssize_t size = payload - offset < gso_size ? payload - offset : gso_size;
        PyObject *segment = tso_one(packet, header_len, csum_start, v6,
                                    packet + header_len + offset, size, (unsigned)i,
                                    seq + (uint32_t)offset, i == count - 1);
        if (segment == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, segment);
    }
done:
    PyBuffer_Release(&data);
    return out;
}

/* --- GRO for the TUN: coalesce TCP segments of a flow into one super-packet --------------- */

/* gro_coalesce(packets) -> list[bytes]: the writes for a TUN with IFF_VNET_HDR, in order, each
 * a virtio_net_hdr and what follows it. The rules are io/tun_gro.py's `coalesce` (udp=False),
 * which is the reference: this returns, byte for byte, the concatenation of each of its iovec
 * lists (_purepath.gro_coalesce). In short: TCP segments (IPv4 without options and not
 * fragmented, or IPv6 with TCP next) with ACK or ACK|PSH and a payload join the open group of
 * their flow (addresses and ports) when every header byte but lengths, IPv4 id and checksum,
 * seq, flags and TCP checksum equals the group's first segment, seq continues it, the payload
 * is no longer than the first's and the whole stays within 64 KB; a shorter segment or PSH
 * closes the group; each joining segment (and the first, when the second joins) must have
 * valid checksums. Anything else is written as it came and ends every open group. */

typedef struct {
    Py_ssize_t header_len, segment, payload; /* first segment's payload; the group's total */
    Py_ssize_t first, last;                  /* packet indices (a list through next_member) */
    Py_ssize_t count;
    uint32_t next_seq;
    int open, v6;
    uint8_t last_flags;
} gro_group;

typedef struct {
    uint64_t generation;  /* the slot is live when it equals the table's */
    Py_ssize_t group;     /* index into groups; its first packet holds the flow */
} gro_slot;

/* the byte ranges of a header that must equal the group's first segment's */
static int gro_same_fixed(const uint8_t *a, const uint8_t *b, Py_ssize_t header_len, int v6)
{
    if (v6)
        return memcmp(a, b, 4) == 0 && memcmp(a + 6, b + 6, 38) == 0
               && memcmp(a + 48, b + 48, 5) == 0 && memcmp(a + 54, b + 54, 2) == 0
               && memcmp(a + 58, b + 58, (size_t)(header_len - 58)) == 0;
    return memcmp(a, b, 2) == 0 && memcmp(a + 6, b + 6, 4) == 0
           && memcmp(a + 12, b + 12, 12) == 0 && memcmp(a + 28, b + 28, 5) == 0
           && memcmp(a + 34, b + 34, 2) == 0
           && memcmp(a + 38, b + 38, (size_t)(header_len - 38)) == 0;
}

static uint64_t gro_flow_hash(const uint8_t *flow, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ flow[i]) * 1099511628211ULL;
    return h;
}

static PyObject *gro_single(const uint8_t *packet, Py_ssize_t length)
{
    PyObject *write = PyBytes_FromStringAndSize(NULL, VNET_HDR_LEN + length);
    if (write == NULL)
        return NULL;
    uint8_t *w = (uint8_t *)PyBytes_AS_STRING(write);
    memset(w, 0, VNET_HDR_LEN);
    memcpy(w + VNET_HDR_LEN, packet, (size_t)length);
    return write;
}

static PyObject *gro_super(const gro_group *g, Py_buffer *views, const Py_ssize_t *next_member)
{
    Py_ssize_t header_len = g->header_len;
    PyObject *write = PyBytes_FromStringAndSize(NULL, VNET_HDR_LEN + header_len + g->payload);
    if (write == NULL)
        return NULL;
    uint8_t *w = (uint8_t *)PyBytes_AS_STRING(write);
    uint8_t *h = w + VNET_HDR_LEN;
    memcpy(h, views[g->first].buf, (size_t)header_len);
    uint8_t *at = h + header_len;
    for (Py_ssize_t i = g->first; i >= 0; i = next_member[i]) {
        Py_ssize_t size = views[i].len - header_len;
        memcpy(at, (const uint8_t *)views[i].buf + header_len, (size_t)size);
        at += size;
    }
    unsigned csum_start, gso_type;
    uint64_t pseudo;
    if (g->v6) {
        Py_ssize_t tcp_len = header_len - 40 + g->payload;
        put_be16(h + 4, (unsigned)tcp_len);
        h[53] |= g->last_flags & TCP_PSH;
        pseudo = (uint64_t)sum16(h + 8, 32) + 6 + (uint64_t)tcp_len;
        csum_start = 40;
        gso_type = VNET_HDR_GSO_TCPV6;
    } else {
        Py_ssize_t total = header_len + g->payload;
        put_be16(h + 2, (unsigned)total);
        h[10] = h[11] = 0;
        put_be16(h + 10, ~sum16(h, 20) & 0xFFFF);
        h[33] |= g->last_flags & TCP_PSH;
        pseudo = (uint64_t)sum16(h + 12, 8) + 6 + (uint64_t)(total - 20);
        csum_start = 20;
        gso_type = VNET_HDR_GSO_TCPV4;
    }
    /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented */
    put_be16(h + csum_start + 16, fold(pseudo));
    /* struct virtio_net_hdr, little-endian: flags, gso_type, hdr_len, gso_size, csum_start,
     * csum_offset */
    w[0] = VNET_HDR_F_NEEDS_CSUM;
    w[1] = (uint8_t)gso_type;
    w[2] = (uint8_t)header_len; w[3] = (uint8_t)(header_len >> 8);
    w[4] = (uint8_t)g->segment; w[5] = (uint8_t)(g->segment >> 8);
    w[6] = (uint8_t)csum_start; w[7] = 0;
    w[8] = 16; w[9] = 0;
    return write;
}

static PyObject *gro_coalesce(PyObject *self, PyObject *arg)
{
    PyObject *fast = PySequence_Fast(arg, "packets must be a sequence");
    if (fast == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t acquired = 0, table_size = 16;
    while (table_size < 2 * n)
        table_size *= 2;
    PyObject *out = NULL;
    Py_buffer *views = PyMem_Calloc((size_t)n + 1, sizeof(Py_buffer));
    Py_ssize_t *next_member = PyMem_Malloc(((size_t)n + 1) * sizeof(Py_ssize_t));
    /* what is written, in order: a packet index (>= 0) or ~group index (< 0) */
    Py_ssize_t *order = PyMem_Malloc(((size_t)n + 1) * sizeof(Py_ssize_t));
    gro_group *groups = PyMem_Malloc(((size_t)n + 1) * sizeof(gro_group));
    gro_slot *table = PyMem_Calloc((size_t)table_size, sizeof(gro_slot));
    if (!views || !next_member || !order || !groups || !table) {
        PyErr_NoMemory();
        goto done;
    }
    for (; acquired < n; acquired++)
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, acquired), &views[acquired],
                               PyBUF_SIMPLE) < 0)
            goto done;
    uint64_t generation = 1; /* "groups.clear()" is generation++ */
    Py_ssize_t written = 0, group_count = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = views[i].buf;
        Py_ssize_t size = views[i].len;
        next_member[i] = -1;
        int v6;
        Py_ssize_t header_len, flow_at;
        size_t flow_len;
        uint8_t flags;
        if (size > 40 && p[0] == 0x45 && p[9] == 6 && (p[6] & 0x3F) == 0 && p[7] == 0) {
            v6 = 0;
            header_len = 20 + (p[32] >> 4) * 4;
            flags = p[33];
            flow_at = 12;
            flow_len = 12;
        } else if (size > 60 && p[0] >> 4 == 6 && p[6] == 6) {
            v6 = 1;
            header_len = 40 + (p[52] >> 4) * 4;
            flags = p[53];
            flow_at = 8;
            flow_len = 36;
        } else {
            generation++;
            order[written++] = i;
            continue;
        }
        Py_ssize_t payload = size - header_len;
        if (header_len < (v6 ? 60 : 40) || payload <= 0 || (flags & ~TCP_PSH) != TCP_ACK) {
            generation++;
            order[written++] = i;
            continue;
        }
        uint32_t seq = get_be32(p + (v6 ? 44 : 24));
        int push = flags & TCP_PSH;
        /* the flow's open group: its first packet has the same addresses and ports */
        uint64_t hash = gro_flow_hash(p + flow_at, flow_len) ^ (uint64_t)v6;
        Py_ssize_t slot = (Py_ssize_t)(hash & (uint64_t)(table_size - 1));
        gro_group *g = NULL;
        while (table[slot].generation == generation) {
            gro_group *candidate = &groups[table[slot].group];
            const uint8_t *first = views[candidate->first].buf;
            if (candidate->v6 == v6 && memcmp(first + flow_at, p + flow_at, flow_len) == 0) {
                g = candidate;
                break;
            }
            slot = (slot + 1) & (table_size - 1);
        }
        if (g != NULL && g->open && seq == g->next_seq && g->header_len == header_len
            && gro_same_fixed(p, views[g->first].buf, header_len, v6) && payload <= g->segment
            && header_len + g->payload + payload <= 65535) {
            Py_ssize_t l4_start = v6 ? 40 : 20;
            if (!l4_checksums_valid(p, size, l4_start, 6)) {
                generation++;
                order[written++] = i;
                continue;
            }
            if (g->count > 1 || l4_checksums_valid(views[g->first].buf, views[g->first].len,
                                                   l4_start, 6)) {
                next_member[g->last] = i;
                g->last = i;
                g->count++;
                g->payload += payload;
                g->next_seq = seq + (uint32_t)payload;
                g->last_flags = flags;
                if (payload < g->segment || push)
                    g->open = 0;
                continue;
            }
            /* the group's first segment failed: it stays alone, this one starts a group */
        }
        g = &groups[group_count];
        *g = (gro_group){.header_len = header_len, .segment = payload, .payload = payload,
                         .first = i, .last = i, .count = 1, .next_seq = seq + (uint32_t)payload,
                         .open = !push, .v6 = v6, .last_flags = flags};
        /* the slot found above: the flow's (replaced, as groups[flow] = group) or a free one */
        table[slot].generation = generation;
        table[slot].group = group_count;
        order[written++] = ~group_count;
        group_count++;
    }
    out = PyList_New(written);
    if (out == NULL)
        goto done;
    for (Py_ssize_t k = 0; k < written; k++) {
        PyObject *write;
        Py_ssize_t item = order[k];
        if (item >= 0) {
            write = gro_single(views[item].buf, views[item].len);
        } else {
            gro_group *g = &groups[~item];
            write = g->count == 1 ? gro_single(views[g->first].buf, views[g->first].len)
                                  : gro_super(g, views, next_member);
        }
        if (write == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, k, write);
    }
done:
    for (Py_ssize_t i = 0; i < acquired; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(next_member);
    PyMem_Free(order);
    PyMem_Free(groups);
    PyMem_Free(table);
    Py_DECREF(fast);
    return out;
}

/* --- the module ------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"seal_run", (PyCFunction)(void (*)(void))seal_run, METH_VARARGS | METH_KEYWORDS,
     "seal_run(context, receiver_index, counter, packets, mtu, ad=b'') -> list[bytes]"},
    {"open_run", (PyCFunction)(void (*)(void))open_run, METH_VARARGS | METH_KEYWORDS,
     "open_run(context, datagrams, ad=b'') -> list[bytes | None]"},
    {"internet_checksum", internet_checksum, METH_O,
     "internet_checksum(data) -> int: the RFC 1071 checksum of data"},
    {"checksums_valid", checksums_valid, METH_VARARGS,
     "checksums_valid(packet, l4_start, protocol) -> bool"},
    {"tso_segment", tso_segment, METH_O,
     "tso_segment(vnet_header_and_packet) -> list[bytes]"},
    {"gro_coalesce", gro_coalesce, METH_O,
     "gro_coalesce(packets) -> list[bytes]: the TUN writes, vnet header first"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wgpy._fastpath",
    .m_doc = "Per-packet arithmetic in C; wgpy._purepath is the reference.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (chacha20_poly1305 == NULL) {
        chacha20_poly1305 = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
        if (chacha20_poly1305 == NULL) {
            PyErr_SetString(PyExc_ImportError, "OpenSSL has no ChaCha20-Poly1305");
            return NULL;
        }
    }
    if (PyType_Ready(&AeadContextType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddStringConstant(m, "SOURCE_SHA256", WGPY_FASTPATH_SOURCE_SHA256) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&AeadContextType);
    if (PyModule_AddObject(m, "AeadContext", (PyObject *)&AeadContextType) < 0) {
        Py_DECREF(&AeadContextType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
