"""Protocol constants from the WireGuard whitepaper (section 6) and the kernel driver.

Tuning knobs of our own (queue sizes, batch sizes) are marked as such.
"""

# --- sizes (whitepaper 5.4) ---------------------------------------------------
KEY_LEN = 32
TAG_LEN = 16
TIMESTAMP_LEN = 12
COOKIE_LEN = 16
MAC_LEN = 16
XNONCE_LEN = 24

MESSAGE_INITIATION = 1
MESSAGE_RESPONSE = 2
MESSAGE_COOKIE_REPLY = 3
MESSAGE_TRANSPORT = 4

INITIATION_SIZE = 148
RESPONSE_SIZE = 92
COOKIE_REPLY_SIZE = 64
TRANSPORT_HEADER_SIZE = 16
TRANSPORT_MIN_SIZE = TRANSPORT_HEADER_SIZE + TAG_LEN  # a keepalive

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"

# --- timers (whitepaper 6.1), seconds -------------------------------------------
REKEY_AFTER_MESSAGES = 2**60
REJECT_AFTER_MESSAGES = 2**64 - 2**13 - 1
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
REKEY_TIMEOUT_JITTER_MAX = 1 / 3  # kernel: up to 333 ms of jitter per retry
KEEPALIVE_TIMEOUT = 10.0
COOKIE_SECRET_MAX_AGE = 120.0
COOKIE_SECRET_LATENCY = 5.0
MAX_TIMER_HANDSHAKES = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)  # 18 attempts
ZERO_KEYS_AFTER = REJECT_AFTER_TIME * 3
# An initiation from a peer is accepted at most this often (kernel: INITIATIONS_PER_SECOND 50).
INITIATIONS_PER_SECOND = 50
HANDSHAKE_INITIATION_RATE = 1.0 / INITIATIONS_PER_SECOND

# --- replay window (kernel: COUNTER_BITS_TOTAL 8192, one word kept free) ---------
REPLAY_WINDOW_BITS_TOTAL = 8192
REPLAY_WINDOW_SIZE = REPLAY_WINDOW_BITS_TOTAL - 64  # 8128

# --- tuning knobs (ours, modelled on the kernel's) ---------------------------------
MAX_STAGED_PACKETS = 128  # packets queued per peer while a handshake is pending
UNDER_LOAD_LINGER = 1.0  # seconds a device stays "under load" after the backlog drains

DEFAULT_MTU = 1420
DEFAULT_PORT = 51820
