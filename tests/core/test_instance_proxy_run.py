"""A running appliance with ``instance.proxy``: ``midbox run`` answers jobs through a real CONNECT proxy
over mTLS to the development instance, ``midbox doctor`` names a refusing proxy, the proxy's password
shows nowhere, and neither httpcore nor AnyIO is ever loaded (issue 19: they are not in the binary)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config.pinning import pin_files
from devinstance import pki
from tests.helpers import LOOPBACK_HTTP, Pki, config_text, dev_instance, http_target
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.cli import child_env
from tests.support.connect_proxy import ConnectProxy
from tests.support.doctor import doctor
from tests.support.running import (
    EXPIRES,
    NOT_BEFORE,
    ROOT,
    appliance,
    audit_entries,
    config_bytes,
    http_job,
    signed_config,
    wait_answer,
)

PASSWORD = "pr0xy-s3cret-9f2c"  # the tests look for it where it must not be
NEVER_LOADED = ("httpcore", "anyio", "sniffio", "typing_extensions")


def _with_proxy(body: bytes, proxy_url: str) -> bytes:
    return body.replace(
        b"poll_interval_s = 0.1\n", f'poll_interval_s = 0.1\nproxy = "{proxy_url}"\n'.encode()
    )


FROZEN = os.environ.get("MIDBOX_FROZEN_BINARY", "")


def _proxy_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS proxy whose certificate comes from a CA of its own, not the instance's."""
    ca = pki.ensure_ca(tmp_path / "proxy-pki", "proxy CA")
    leaf = pki.issue(ca, tmp_path / "proxy-pki", "proxy", "127.0.0.1", server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    return ctx, ca.cert


@pytest.mark.parametrize(
    ("scheme", "frozen"),
    [
        ("http", False),
        ("https", False),
        pytest.param(
            "https",
            True,
            marks=[
                pytest.mark.built_binary,
                pytest.mark.skipif(not FROZEN, reason="set MIDBOX_FROZEN_BINARY to a built binary"),
            ],
        ),
    ],
    ids=["http-proxy", "https-proxy", "https-proxy-frozen"],
)
def test_midbox_run_answers_jobs_through_the_proxy_and_never_shows_its_password(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, scheme: str, frozen: bool
) -> None:
    admin_key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin_key])
    log = tmp_path / "run.log"
    tls, env = None, {}
    if scheme == "https":
        tls, proxy_ca = _proxy_tls(tmp_path)
        env["SSL_CERT_FILE"] = str(proxy_ca)  # OpenSSL's system trust takes it: the proxy's CA in it
    binary = Path(FROZEN).resolve() if frozen else None
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        http_target() as target,
        ConnectProxy(auth=("midbox", PASSWORD), tls=tls) as proxy,
    ):
        store = instance.state.store
        port = target.rsplit(":", 1)[1]
        body = _with_proxy(config_bytes(instance.url, dev_pki, 1, port), proxy.url(f"midbox:{PASSWORD}"))
        config = signed_config(tmp_path / "admin", [admin_key], body)
        proxy.answer = 407  # the proxy refuses first: the appliance says why, then recovers
        with appliance(config, state_dir, log, binary=binary, **env) as proc:
            deadline = time.monotonic() + 20
            while proxy.refused < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            proxy.answer = None
            jobs = [http_job(store, f"{target}/hello") for _ in range(5)]
            answers = [wait_answer(store, job, timeout=30) for job in jobs]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    text = log.read_text()
    assert proxy.url().startswith(f"{scheme}://")
    assert proxy.refused >= 2 and proxy.tunnels >= 1, text[-2000:]
    assert all(a["error_string"] == "" and "hello" in a["payload"] for a in answers), answers
    assert "407 Proxy Authentication Required" in text and "check instance.proxy" in text, text[-2000:]
    assert PASSWORD not in text
    assert PASSWORD not in json.dumps(audit_entries(state_dir))
    assert all(PASSWORD not in json.dumps(a) for a in answers)
    assert all(PASSWORD.encode() not in p.read_bytes() for p in state_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("status", "words"), [(407, "407 Proxy Authentication Required"), (502, "502 Bad Gateway")]
)
def test_doctor_names_the_refusing_proxy_without_its_password(
    dev_pki: Pki,
    tmp_path: Path,
    state_dir: Path,
    signed: tuple[Path, Ed25519PrivateKey],
    status: int,
    words: str,
) -> None:
    admin, key = signed
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, ConnectProxy() as proxy:
        proxy.answer = status
        body = _with_proxy(config_bytes(instance.url, dev_pki, 1, "443"), proxy.url(f"midbox:{PASSWORD}"))
        data = pin_files(body, admin / "midbox.toml").data
        config = write_signed_config(admin, [key], data, version=1, expires=EXPIRES, not_before=NOT_BEFORE)
        code, found = doctor("--config", str(config), "--state-dir", str(state_dir))
    detail = found["instance"]["detail"]
    assert code == 3, found
    assert detail.startswith(
        f"the proxy http://127.0.0.1:{proxy.port} failed to connect to 127.0.0.1:{instance.port} ({words})"
    ), detail
    assert "check instance.proxy" in detail
    assert PASSWORD not in json.dumps(found)


@pytest.mark.parametrize("through_proxy", [True, False], ids=["proxy", "direct"])
def test_a_running_appliance_loads_neither_httpcore_nor_anyio(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, through_proxy: bool
) -> None:
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        http_target() as target,
        ConnectProxy() as proxy,
    ):
        extra = f'proxy = "{proxy.url()}"' if through_proxy else ""
        config = tmp_path / "c.toml"
        config.write_text(config_text(instance.url, dev_pki, LOOPBACK_HTTP, extra_instance=extra))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.loaded_modules_main", str(config), str(state_dir)],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            answer = wait_answer(instance.state.store, http_job(instance.state.store, f"{target}/hello"), 60)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert answer["error_string"] == "" and proc.returncode == 0, err.decode()[-2000:]
    assert (proxy.tunnels >= 1) is through_proxy
    loaded = set(json.loads(out.decode().strip().splitlines()[-1]))
    assert "httpx" in loaded and "h11" in loaded  # the check sees the appliance's own imports
    assert not loaded & set(NEVER_LOADED), sorted(loaded & set(NEVER_LOADED))
