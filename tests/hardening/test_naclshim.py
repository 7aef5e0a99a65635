"""hardening.naclshim against the real PyNaCl (libsodium): the frozen binary serves paramiko's nacl from it."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hardening import naclshim

REPO = Path(__file__).resolve().parents[2]
SMALL_ORDER_HEX = (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
)


def _real_verifies(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(key).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _shim_verifies(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        naclshim.VerifyKey(key).verify(message, signature)
    except naclshim.BadSignatureError:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=300))
def test_signatures_and_public_keys_are_libsodiums(seed: bytes, message: bytes) -> None:
    real, shim = nacl.signing.SigningKey(seed), naclshim.SigningKey(seed)
    assert shim.verify_key.encode() == real.verify_key.encode()
    signed = shim.sign(message)
    assert signed.signature == real.sign(message).signature
    assert signed.message == message and bytes(signed) == signed.signature + message
    assert shim.verify_key.verify(message, signed.signature) == message
    assert shim.verify_key.verify(bytes(signed)) == message
    assert _real_verifies(real.verify_key.encode(), message, signed.signature)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(min_size=1, max_size=100),
    flip=st.integers(min_value=0, max_value=8 * 64 - 1),
)
def test_a_flipped_signature_bit_fails_in_both(seed: bytes, message: bytes, flip: int) -> None:
    key = naclshim.SigningKey(seed)
    sig = bytearray(key.sign(message).signature)
    sig[flip // 8] ^= 1 << (flip % 8)
    public = key.verify_key.encode()
    assert _shim_verifies(public, message, bytes(sig)) is False
    assert _real_verifies(public, message, bytes(sig)) is False


@pytest.mark.parametrize("hexkey", SMALL_ORDER_HEX)
@pytest.mark.parametrize("top_bit", [0, 0x80])
def test_small_order_keys_and_r_never_verify_as_in_libsodium(hexkey: str, top_bit: int) -> None:
    point = bytearray(bytes.fromhex(hexkey))
    point[31] |= top_bit
    # A small-order key with R = the identity and S = 0 satisfies the cofactorless equation for any
    # message: exactly the forgery libsodium's blacklist exists for.
    forged = bytes.fromhex(SMALL_ORDER_HEX[1]) + bytes(32)
    for sig in (forged, bytes(point) + bytes(32)):
        assert _real_verifies(bytes(point), b"any message", sig) is False
        assert _shim_verifies(bytes(point), b"any message", sig) is False
    good = naclshim.SigningKey(bytes(range(32)))
    sig = bytes(point) + good.sign(b"m").signature[32:]
    assert _shim_verifies(good.verify_key.encode(), b"m", sig) is False
    assert _real_verifies(good.verify_key.encode(), b"m", sig) is False


L_ORDER = 2**252 + 27742317777372353535851937790883648493  # the order of Ed25519's base point
IDENTITY = bytes.fromhex("01" + "00" * 31)  # the neutral point: small order, canonically encoded
BASE_POINT = bytes.fromhex("58" + "66" * 31)


def _openssl_verifies(key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def test_a_signature_whose_r_is_small_order_never_verifies_even_under_a_good_key() -> None:
    # A signer who knows the key can make R the identity: S = h*a satisfies the cofactorless check.
    # OpenSSL alone takes it; libsodium refuses, and so must the shim (its check of R on its own).
    seed, message = bytes(range(32)), b"m"
    key = naclshim.SigningKey(seed).verify_key.encode()
    clamped = bytearray(hashlib.sha512(seed).digest()[:32])
    clamped[0] &= 248
    clamped[31] = (clamped[31] & 127) | 64
    h = int.from_bytes(hashlib.sha512(IDENTITY + key + message).digest(), "little") % L_ORDER
    s = h * int.from_bytes(clamped, "little") % L_ORDER
    signature = IDENTITY + s.to_bytes(32, "little")
    assert _openssl_verifies(key, message, signature) is True
    assert _real_verifies(key, message, signature) is False
    assert _shim_verifies(key, message, signature) is False


def test_a_small_order_key_never_verifies_even_with_an_ordinary_r() -> None:
    # Under the identity key, R = B and S = 1 verify for any message in OpenSSL; R is not small order,
    # so only the shim's check of the key itself refuses it, as libsodium does.
    signature = BASE_POINT + (1).to_bytes(32, "little")
    assert _openssl_verifies(IDENTITY, b"any message", signature) is True
    assert _real_verifies(IDENTITY, b"any message", signature) is False
    assert _shim_verifies(IDENTITY, b"any message", signature) is False


def test_a_non_canonical_key_never_verifies() -> None:
    key = (2**255 - 19 + 2).to_bytes(32, "little")  # y = 2 written as p + 2
    sig = naclshim.SigningKey(bytes(32)).sign(b"m").signature
    assert _shim_verifies(key, b"m", sig) is False
    assert _real_verifies(key, b"m", sig) is False


@pytest.mark.parametrize(("length", "sig_length"), [(0, 0), (31, 63), (33, 65), (64, 128)])
def test_wrong_lengths_are_value_errors_like_pynacl(length: int, sig_length: int) -> None:
    for cls in (naclshim.VerifyKey, naclshim.SigningKey):
        with pytest.raises(ValueError, match="exactly 32 bytes"):
            cls(bytes(length))
    key = naclshim.SigningKey(bytes(32)).verify_key
    with pytest.raises(ValueError, match="exactly 64 bytes"):
        key.verify(b"m", bytes(sig_length))
    with pytest.raises(ValueError):  # PyNaCl agrees on both counts
        nacl.signing.VerifyKey(key.encode()).verify(b"m", bytes(sig_length))
    with pytest.raises(ValueError):
        nacl.signing.VerifyKey(bytes(length))
    with pytest.raises(TypeError):
        naclshim.VerifyKey("not bytes")  # type: ignore[arg-type]


def test_keys_compare_and_hash_by_value() -> None:
    a, b = naclshim.SigningKey(bytes(32)), naclshim.SigningKey(bytes(32))
    assert a == b and hash(a) == hash(b) and a != naclshim.SigningKey(bytes(31) + b"\x01")
    assert a.verify_key == b.verify_key and hash(a.verify_key) == hash(b.verify_key)
    assert a.verify_key != naclshim.SigningKey(bytes(31) + b"\x01").verify_key
    assert a.encode() == bytes(a) == bytes(32)


def test_paramiko_ed25519_works_on_the_shim_served_by_the_runtime_hook(tmp_path: Path) -> None:
    # A fresh interpreter with PyNaCl hidden, the build's runtime hook installed: paramiko signs with an
    # OpenSSH Ed25519 key and verifies, as the frozen binary does.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    (tmp_path / "id").write_bytes(pem)
    hook = REPO / "build" / "rthooks" / "nacl_from_cryptography.py"
    script = f"""
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "nacl" or name.startswith("nacl."):
            raise ImportError("PyNaCl is hidden")
sys.meta_path.insert(0, Hide())
exec(compile(open({str(hook)!r}).read(), "hook", "exec"))
import paramiko, nacl.signing
assert nacl.signing.__loader__.__class__.__name__ == "_NaclFromCryptography"
key = paramiko.Ed25519Key.from_private_key_file({str(tmp_path / "id")!r})
msg = key.sign_ssh_data(b"data"); msg.rewind()
public = paramiko.Ed25519Key(data=key.asbytes())
assert public.verify_ssh_sig(b"data", msg)
msg.rewind()
assert not public.verify_ssh_sig(b"other", msg)
print(msg.asbytes().hex())
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    import paramiko  # the same signature through the real PyNaCl

    real = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    assert proc.stdout.strip() == real.sign_ssh_data(b"data").asbytes().hex()
    assert importlib.util.find_spec("nacl") is not None  # the tests themselves still use PyNaCl
