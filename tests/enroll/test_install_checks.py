"""``midbox enroll --install CERT``: every way a certificate can be wrong is refused, and nothing is installed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.enroll.helpers import AGENT, CA, make_ca, pem, sign
from tests.support.cli import Result, run_cli


def _install(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, data: bytes, ca: CA | Path, *extra: str
) -> Result:
    cert = etc.parent / "signed.crt"
    cert.write_bytes(data)
    ca_path = ca if isinstance(ca, Path) else ca.write(etc.parent / "client-ca.pem")
    return run_cli(
        "enroll",
        "--install",
        str(cert),
        "--ca-file",
        str(ca_path),
        "--out",
        str(etc),
        "--state-dir",
        str(state_dir),
        *extra,
    )


def _refused(r: Result, etc: Path, step: int, words: str) -> None:
    assert r.code == 1, r
    assert f"certificate check {step}/6" in r.err and words in r.err, r.err
    assert r.err.count("\n") == 1  # one line
    assert not (etc / "appliance.crt").exists()


@pytest.mark.usefixtures("enrolled")
def test_a_good_certificate_is_installed(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca)
    r = _install(monkeypatch, etc, state_dir, pem(cert), client_ca)
    assert r.code == 0, r.err
    assert (etc / "appliance.crt").read_bytes() == pem(cert)
    assert cert.fingerprint(hashes.SHA256()).hex() in r.out
    assert r.err == ""  # 90 days left: no warning


@pytest.mark.usefixtures("enrolled")
def test_certificate_for_another_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    cert = sign(etc / "appliance.csr", client_ca, public_key=other)
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 2, "another key")


@pytest.mark.usefixtures("enrolled")
@pytest.mark.parametrize(
    ("cn", "dns"),
    [("mid.server.edge-02", ["mid.server.edge-02"]), ("edge-01", []), ("mid.server.edge-01x", None)],
)
def test_certificate_for_another_name_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    etc: Path,
    state_dir: Path,
    client_ca: CA,
    cn: str,
    dns: list[str] | None,
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, cn=cn, dns=dns if dns is not None else ["other.example"])
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 3, AGENT)


@pytest.mark.usefixtures("enrolled")
def test_name_in_the_san_alone_is_enough(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    # Some CAs put their own CN in the subject; the DNS SAN asked for still names the appliance.
    cert = sign(etc / "appliance.csr", client_ca, cn="APPLIANCE 0042", dns=[AGENT])
    assert _install(monkeypatch, etc, state_dir, pem(cert), client_ca).code == 0


@pytest.mark.usefixtures("enrolled")
def test_expired_certificate_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(
        etc / "appliance.csr",
        client_ca,
        not_before=dt.timedelta(days=-30),
        not_after=dt.timedelta(seconds=-1),
    )
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 4, "expired")


@pytest.mark.usefixtures("enrolled")
def test_not_yet_valid_certificate_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, not_before=dt.timedelta(minutes=10))
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 4, "clock")


@pytest.mark.usefixtures("enrolled")
def test_small_clock_skew_is_allowed(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, not_before=dt.timedelta(minutes=2))
    assert _install(monkeypatch, etc, state_dir, pem(cert), client_ca).code == 0


@pytest.mark.usefixtures("enrolled")
def test_certificate_about_to_expire_is_installed_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, not_after=dt.timedelta(days=10))
    r = _install(monkeypatch, etc, state_dir, pem(cert), client_ca)
    assert r.code == 0 and "warning" in r.err and "enroll --renew" in r.err
    assert (etc / "appliance.crt").exists()


@pytest.mark.usefixtures("enrolled")
def test_certificate_from_another_ca_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    rogue = make_ca("test client CA")  # same name, other key: only the signature tells them apart
    cert = sign(etc / "appliance.csr", rogue)
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 6, "not signed by")


@pytest.mark.usefixtures("enrolled")
def test_the_ca_certificate_instead_of_the_leaf_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    _refused(_install(monkeypatch, etc, state_dir, client_ca.pem(), client_ca), etc, 2, "CA certificate")


@pytest.mark.usefixtures("enrolled")
def test_a_ca_certificate_for_our_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, is_ca=True)
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 5, "CA:TRUE")


@pytest.mark.usefixtures("enrolled")
def test_server_only_certificate_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 5, "clientAuth")


@pytest.mark.usefixtures("enrolled")
def test_no_eku_at_all_is_accepted(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca, eku=None)
    assert _install(monkeypatch, etc, state_dir, pem(cert), client_ca).code == 0


@pytest.mark.usefixtures("enrolled")
@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not a PEM or DER"),
        (b"not a certificate at all\x00\xff", "not a PEM or DER"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a PEM or DER"),
        (b"-----BEGIN CERTIFICATE-----\n" + b"A" * 70_000, "larger than"),
    ],
)
def test_garbage_and_oversize_files_are_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA, data: bytes, words: str
) -> None:
    _refused(_install(monkeypatch, etc, state_dir, data, client_ca), etc, 1, words)


@pytest.mark.usefixtures("enrolled")
def test_a_file_with_a_private_key_in_it_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca)
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    r = _install(monkeypatch, etc, state_dir, pem(cert) + key, client_ca)
    _refused(r, etc, 1, "private key")
    assert "BEGIN" not in r.err


@pytest.mark.usefixtures("enrolled")
def test_der_certificate_is_accepted(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = sign(etc / "appliance.csr", client_ca)
    r = _install(monkeypatch, etc, state_dir, cert.public_bytes(serialization.Encoding.DER), client_ca)
    assert r.code == 0, r.err
    assert (etc / "appliance.crt").read_bytes() == pem(cert)  # installed as PEM, as ssl loads it


@pytest.mark.usefixtures("enrolled")
def test_chain_through_an_intermediate(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    intermediate = make_ca("test issuing CA", parent=client_ca)
    cert = sign(etc / "appliance.csr", intermediate)
    # Without the intermediate the chain is broken...
    _refused(_install(monkeypatch, etc, state_dir, pem(cert), client_ca), etc, 6, "not signed by")
    # ...with it, it holds, and the installed file carries it for the TLS handshake.
    r = _install(monkeypatch, etc, state_dir, pem(cert, intermediate.cert), client_ca)
    assert r.code == 0, r.err
    assert x509.load_pem_x509_certificates((etc / "appliance.crt").read_bytes()) == [cert, intermediate.cert]


@pytest.mark.usefixtures("enrolled")
def test_a_leaf_posing_as_intermediate_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA, tmp_path: Path
) -> None:
    # A leaf the CA issued to someone else (CA:FALSE) cannot issue certificates.
    other_csr = tmp_path / "other.csr"
    other_key = ec.generate_private_key(ec.SECP256R1())
    from hardening.enroll.store import build_csr

    other_csr.write_bytes(build_csr(other_key, "edge-99").public_bytes(serialization.Encoding.PEM))
    not_a_ca = sign(other_csr, client_ca, dns=["mid.server.edge-99"])
    fake_issuer = CA(other_key, not_a_ca)
    cert = sign(etc / "appliance.csr", fake_issuer)
    _refused(_install(monkeypatch, etc, state_dir, pem(cert, not_a_ca), client_ca), etc, 6, "not a CA")


@pytest.mark.usefixtures("enrolled")
def test_without_a_ca_it_asks_for_one(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    cert = etc.parent / "signed.crt"
    cert.write_bytes(pem(sign(etc / "appliance.csr", client_ca)))
    r = run_cli("enroll", "--install", str(cert), "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 2 and "--ca-file" in r.err
    assert not (etc / "appliance.crt").exists()


def test_install_before_enroll_says_so(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    etc.mkdir()
    r = _install(monkeypatch, etc, state_dir, client_ca.pem(), client_ca)
    assert r.code == 1 and "enroll --name" in r.err
