"""The host key under DPAPI and the credential store, in Windows' CPython under Wine."""

from __future__ import annotations

import re
from pathlib import Path

from tests.windows.conftest import WinPy, result_of, wine_path

PREFIX = b"MBXDPAPI1\x00"


def test_dpapi_protects_round_trips_and_refuses_a_tampered_blob(winpy: WinPy) -> None:
    out = result_of(
        winpy(
            "import json\n"
            "from pathlib import Path\n"
            "from hardening.vault import keys\n"
            "from hardening.vault.errors import VaultLockedError\n"
            "key = bytes(range(32))\n"
            "blob = keys._protect(key)\n"
            "p = Path('C:/state/host.key')\n"
            "def refusal(raw):\n"
            "    try:\n"
            "        keys._unprotect(raw, p)\n"
            "    except VaultLockedError as e:\n"
            "        return str(e)\n"
            "def flip(at):\n"
            "    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:]\n"
            "print(json.dumps({'blob': blob.hex(), 'back': keys._unprotect(blob, p).hex(),\n"
            "  'again': keys._protect(key) != blob, 'ciphertext': refusal(flip(-48)),\n"
            "  'mac': refusal(flip(-1)), 'truncated': refusal(blob[:-8]), 'raw': refusal(key)}))"
        )
    )
    blob = bytes.fromhex(out["blob"])
    key = bytes(range(32))
    assert blob.startswith(PREFIX) and key not in blob and len(blob) > len(PREFIX) + 32
    assert out["back"] == key.hex()
    assert out["again"]  # fresh salt per protect
    for case in ("ciphertext", "mac", "truncated"):
        assert re.fullmatch(
            r"host key C:\\state\\host\.key cannot be decrypted by DPAPI on this machine: it was made on "
            r"another machine or is damaged \(DPAPI unprotect failed, Windows error \d+\); "
            r"restore it from this machine's backup",
            out[case],
        ), out[case]
    assert out["raw"] == (
        "host key C:\\state\\host.key is not DPAPI-protected; it was not written by midbox on this host"
    )


STORE = """
import json, sys
from pathlib import Path
from hardening.vault import CredentialMeta, KeySource, Secret, VaultPaths, edit_store, open_store
from hardening.vault.errors import VaultError
paths = VaultPaths(Path(sys.argv[1]) / "state")
source = KeySource(paths.host_key)
"""


def test_a_credential_store_round_trips_across_windows_processes(winpy: WinPy, tmp_path: Path) -> None:
    created = result_of(
        winpy(
            STORE + "from hardening import perms\n"
            "perms.ensure_private_dir(paths.state_dir)\n"
            "with edit_store(paths, source, create=True) as draft:\n"
            "    draft.put(CredentialMeta('web', 'http-basic', 'admin'), [Secret(b'Pl4nted-7f3a')])\n"
            "with edit_store(paths, source) as draft:\n"
            "    draft.put(CredentialMeta('api', 'http-bearer', None), [Secret(b'tok-91c2')])\n"
            "with open_store(paths, source) as store:\n"
            "    print(json.dumps([c.alias for c in store.credentials()]))",
            wine_path(tmp_path),
        )
    )
    assert sorted(created) == ["api", "web"]
    state = tmp_path / "state"
    host_key = (state / "host.key").read_bytes()
    assert host_key.startswith(PREFIX) and len(host_key) > 64
    assert b"Pl4nted-7f3a" not in (state / "credentials.store").read_bytes()

    # A second Windows process opens the store: the DPAPI blob is bound to the machine, not the process.
    reread = result_of(
        winpy(
            STORE + "with open_store(paths, source) as store:\n"
            "    got = {a: [s.reveal().decode() for s in store.reveal(a)] for a in ('web', 'api')}\n"
            "raw = bytearray(paths.host_key.read_bytes())\n"
            "raw[-48] ^= 1\n"
            "paths.host_key.write_bytes(bytes(raw))\n"
            "try:\n"
            "    open_store(paths, source)\n"
            "    refused = None\n"
            "except VaultError as e:\n"
            "    refused = [type(e).__name__, str(e)]\n"
            "print(json.dumps({'got': got, 'refused': refused}))",
            wine_path(tmp_path),
        )
    )
    assert reread["got"] == {"web": ["Pl4nted-7f3a"], "api": ["tok-91c2"]}
    kind, message = reread["refused"]
    assert kind == "VaultLockedError"
    assert f"host key {wine_path(state / 'host.key')} cannot be decrypted by DPAPI on this machine" in message


ENROLL = """
import json, ssl, sys
from pathlib import Path
from appliance.cli import main
from appliance.credentials import load_host_key
from hardening.keyatrest import key_password
base = Path(sys.argv[1])
state, etc = base / "state", base / "etc"
code = main(["enroll", "--name", "edge-01", "--out", str(etc), "--state-dir", str(state)])
password = key_password(load_host_key(state))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
key = (etc / "appliance.key").read_bytes()
from cryptography.hazmat.primitives import serialization
import datetime as dt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
opened = serialization.load_pem_private_key(key, password=password)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mid.server.edge-01")])
now = dt.datetime.now(dt.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(opened.public_key())
  .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
  .sign(opened, hashes.SHA256()))
(etc / "appliance.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
ctx.load_cert_chain(str(etc / "appliance.crt"), str(etc / "appliance.key"), password=password)
print(json.dumps({"code": code, "encrypted": b"ENCRYPTED PRIVATE KEY" in key,
  "dpapi": (state / "host.key").read_bytes().startswith(b"MBXDPAPI1"), "opened": opened is not None}))
"""


def test_enroll_encrypts_the_mtls_key_under_the_dpapi_host_key(winpy: WinPy, tmp_path: Path) -> None:
    """enroll under Windows' CPython: the key is encrypted, the host key is a DPAPI blob, and ssl's
    load_cert_chain opens the key with the password derived from it."""
    out = result_of(winpy(ENROLL, wine_path(tmp_path)))
    assert out == {"code": 0, "encrypted": True, "dpapi": True, "opened": True}
