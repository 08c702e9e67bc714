"""Sealing as Tollgate did before sealed values carried their place (the first format): ChaCha20-
Poly1305 (RFC 8439) under the key derived from TOLLGATE_MASTER_KEY, no associated data,
base64(nonce || ciphertext || tag). The tests write such values into a database to check that a
server still opens them (and re-seals them). Pure Python: the suite has no crypto package."""

import base64
import hashlib
import os
import struct

MASK32 = 0xFFFFFFFF


def _rotl(v, n):
    return ((v << n) & MASK32) | (v >> (32 - n))


def _quarter(s, a, b, c, d):
    s[a] = (s[a] + s[b]) & MASK32
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & MASK32
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & MASK32
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & MASK32
    s[b] = _rotl(s[b] ^ s[c], 7)


def _block(key, counter, nonce):
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), counter,
             *struct.unpack("<3I", nonce)]
    s = list(state)
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12)
        _quarter(s, 1, 5, 9, 13)
        _quarter(s, 2, 6, 10, 14)
        _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15)
        _quarter(s, 1, 6, 11, 12)
        _quarter(s, 2, 7, 8, 13)
        _quarter(s, 3, 4, 9, 14)
    return struct.pack("<16I", *((x + y) & MASK32 for x, y in zip(s, state)))


def _xor_stream(key, nonce, data):
    out = bytearray()
    for i in range(0, len(data), 64):
        ks = _block(key, 1 + i // 64, nonce)
        out.extend(b ^ k for b, k in zip(data[i:i + 64], ks))
    return bytes(out)


def _poly1305(otk, msg):
    r = int.from_bytes(otk[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(otk[16:32], "little")
    p = (1 << 130) - 5
    acc = 0
    for i in range(0, len(msg), 16):
        acc = (acc + int.from_bytes(msg[i:i + 16] + b"\x01", "little")) * r % p
    return ((acc + s) % (1 << 128)).to_bytes(16, "little")


def _pad16(b):
    return b"\x00" * (-len(b) % 16)


def master_key(master_key_setting):
    """secrets::derive_key("tollgate master key v1", TOLLGATE_MASTER_KEY)."""
    return hashlib.sha256(b"tollgate master key v1\x00" + master_key_setting.encode()).digest()


def seal_first_format(master_key_setting, plaintext):
    key = master_key(master_key_setting)
    nonce = os.urandom(12)
    ct = _xor_stream(key, nonce, plaintext.encode())
    otk = _block(key, 0, nonce)[:32]
    tag = _poly1305(otk, ct + _pad16(ct) + struct.pack("<QQ", 0, len(ct)))
    return base64.b64encode(nonce + ct + tag).decode()
