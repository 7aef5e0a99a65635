"""The SSH algorithms midbox offers, in its order of preference: one list, pinned here, not paramiko's.

The set is paramiko 5.1's default set, written out so an upgrade cannot add or drop an algorithm
unnoticed (a test compares them). What changed is the order only, within that set:

- Ciphers: the AEAD ciphers (aes128-gcm, aes256-gcm) first, then CTR, then the CBC and 3DES floor
  that old network devices still need. paramiko put CTR first, and CTR with a MAC takes a second
  pass over each packet on both sides.
- MACs: encrypt-then-MAC first (paramiko put the MAC-then-encrypt sha2 MACs first); only used when
  the server has no AEAD cipher.
- Key exchange: unchanged. The post-quantum hybrid mlkem768x25519 first, then curve25519. Measured
  on OpenSSH 9.2: ecdh-sha2-nistp256 would cost that sshd about 2 ms less CPU per connection (its
  curve25519 is OpenSSH's portable reference code, P-256 is OpenSSL's), but ssh-audit and most
  hardening guides rank the NIST curves below curve25519, so speed does not reorder them.
- Host keys: the pinned key types only (see ``host_key_algorithms``); without a pin, ed25519 first.

The floor (the weakest algorithm still offered, kept for old devices; raising it is a policy change,
not a speed one): 3des-cbc, hmac-md5-96 and hmac-sha1, diffie-hellman-group14-sha256, rsa-sha2-256.
Never offered: ssh-rsa (SHA-1) signatures, SHA-1 key exchanges, arcfour, none, compression.
"""

from __future__ import annotations

from collections.abc import Iterable

import paramiko

KEX = (
    "mlkem768x25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group14-sha256",
)
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "3des-cbc",
)
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-sha1",
    "hmac-md5",
    "hmac-sha1-96",
    "hmac-md5-96",
)
HOST_KEYS = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
COMPRESSION = ("none",)

# paramiko's host-key algorithm names for each known_hosts key type, so a server is asked for a key
# type we have pinned (otherwise it may offer another type and look "changed").
_PINNED_ALGS = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
}


def host_key_algorithms(pinned_keytypes: Iterable[str]) -> tuple[str, ...]:
    """The host-key algorithms to offer: those of the pinned key types, else every allowed one."""
    wanted = [alg for kind in pinned_keytypes for alg in _PINNED_ALGS.get(kind, ())]
    return tuple(dict.fromkeys(wanted)) or HOST_KEYS


def restrict(transport: paramiko.Transport, pinned_keytypes: Iterable[str]) -> None:
    """Offer exactly the allowed algorithms, in midbox's order, on a transport not yet started."""
    opts = transport.get_security_options()
    # Intersected with what this paramiko offers, which refuses a name it cannot do (ML-KEM needs
    # a recent cryptography); the order is ours.
    opts.kex = _usable(KEX, opts.kex)
    opts.ciphers = _usable(CIPHERS, opts.ciphers)
    opts.digests = _usable(MACS, opts.digests)
    supported = opts.key_types
    opts.key_types = _usable(host_key_algorithms(pinned_keytypes), supported) or _usable(HOST_KEYS, supported)
    opts.compression = _usable(COMPRESSION, opts.compression)


def _usable(ours: tuple[str, ...], paramikos: Iterable[str]) -> tuple[str, ...]:
    have = set(paramikos)
    return tuple(a for a in ours if a in have)
