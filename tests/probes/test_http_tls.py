"""HTTPS targets: verified against the CA the allow rule names, never with verification off."""

from __future__ import annotations

import asyncio
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.probes.http import HttpProbe
from devinstance import pki
from hardening.policy import Policy
from tests.probes.conftest import MemCredentials, make_ctx, make_job
from tests.support.https_target import https_target, rule


def fetch(url: str, policy: Policy, tmp_path: Path) -> ET.Element:
    ctx = make_ctx(policy, MemCredentials(), tmp_path)
    probe = HttpProbe()

    async def go() -> ET.Element:
        try:
            return await probe.run(make_job("RESTProbe", "https", "127.0.0.1", url=url), ctx)
        finally:
            await probe.aclose()

    return asyncio.run(go())


def test_a_target_signed_by_the_rules_ca_is_verified_and_read(tmp_path: Path) -> None:
    with https_target(tmp_path / "pki") as (port, ca):
        result = fetch(f"https://127.0.0.1:{port}/", Policy([rule(port, ca)]), tmp_path)
    assert result.get("status") == "200"
    assert "hello over TLS" in ET.tostring(result, encoding="unicode")


def test_a_pinned_ca_is_used_as_the_signed_config_pinned_it(tmp_path: Path) -> None:
    with https_target(tmp_path / "pki") as (port, ca):
        pin = hashlib.sha256(ca.read_bytes()).hexdigest()
        result = fetch(f"https://127.0.0.1:{port}/", Policy([rule(port, ca, pin)]), tmp_path)
    assert result.get("status") == "200"


def test_a_pinned_ca_file_that_changed_is_refused_naming_the_pin(tmp_path: Path) -> None:
    other = pki.ensure_ca(tmp_path / "other").cert
    with https_target(tmp_path / "pki") as (port, ca):
        pin = hashlib.sha256(ca.read_bytes()).hexdigest()
        ca.write_bytes(other.read_bytes())  # swapped after signing: even a CA that would verify nothing
        with pytest.raises(ProbeError, match="tls_ca .* is not the file that was signed"):
            fetch(f"https://127.0.0.1:{port}/", Policy([rule(port, ca, pin)]), tmp_path)


def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    with (
        https_target(tmp_path / "pki", names=("other.example",)) as (port, ca),
        pytest.raises(ProbeError, match="(?i)certificate|hostname|match"),
    ):
        fetch(f"https://127.0.0.1:{port}/", Policy([rule(port, ca)]), tmp_path)


def test_without_the_rules_ca_the_certificate_is_refused(tmp_path: Path) -> None:
    with https_target(tmp_path / "pki") as (port, _), pytest.raises(ProbeError, match="(?i)certificate"):
        fetch(f"https://127.0.0.1:{port}/", Policy([rule(port, None)]), tmp_path)


def test_another_ca_is_refused(tmp_path: Path) -> None:
    other = pki.ensure_ca(tmp_path / "other").cert
    with https_target(tmp_path / "pki") as (port, _), pytest.raises(ProbeError, match="(?i)certificate"):
        fetch(f"https://127.0.0.1:{port}/", Policy([rule(port, other)]), tmp_path)


def test_a_plain_http_job_loads_no_trust_store(tmp_path: Path) -> None:
    # The transport for http:// URLs never does TLS: it has no context at all, so no CA bundle
    # (certifi's: 3 MB of memory) is parsed for it; an https URL always gets its own pinned context.
    probe = HttpProbe()
    plain = probe._client("http", "127.0.0.1", None)
    assert plain._ssl is None
    assert probe._client("https", "127.0.0.1", None) is not plain
    asyncio.run(probe.aclose())
