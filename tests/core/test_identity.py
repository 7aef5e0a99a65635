"""Identity: a client certificate speaks for one mid.server.NAME, and only that appliance may use it.

edge-02's certificate in edge-01's config is refused by ``run`` and ``doctor`` in one line naming both;
the development instance refuses a request whose certificate names another MID than it acts for.
"""

from __future__ import annotations

import io
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from devinstance import pki
from hardening.identity import IdentityError, check_certificate_file
from tests.helpers import AGENT, NAME, Pki, dev_instance
from tests.signing.helpers import install_trust
from tests.support.cli import run_process
from tests.support.running import audit_entries, config_bytes, signed_config


@pytest.fixture
def edge02(dev_pki: Pki, tmp_path: Path) -> pki.Issued:
    return pki.issue(dev_pki.ca, tmp_path / "edge02", "appliance", "mid.server.edge-02", server=False)


def _swap_client(p: Pki, client: pki.Issued) -> Pki:
    return Pki(p.directory, p.ca, p.server, client)


def test_the_certificate_must_name_this_appliance(dev_pki: Pki, edge02: pki.Issued, tmp_path: Path) -> None:
    assert check_certificate_file(dev_pki.client.cert, NAME) is not None  # control
    with pytest.raises(IdentityError) as e:
        check_certificate_file(edge02.cert, NAME)
    line = str(e.value)
    assert "\n" not in line
    assert "mid.server.edge-02" in line and "mid.server.edge-01" in line and "'edge-01'" in line
    bare = pki.issue(dev_pki.ca, tmp_path / "bare", "appliance", NAME, server=False)
    with pytest.raises(IdentityError, match="no mid.server name"):
        check_certificate_file(bare.cert, NAME)


def test_run_refuses_another_appliances_certificate_with_one_line(
    dev_pki: Pki, edge02: pki.Issued, tmp_path: Path, state_dir: Path
) -> None:
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        body = config_bytes(instance.url, _swap_client(dev_pki, edge02), 1, '"1-65535"')
        config = signed_config(tmp_path / "admin", [admin], body)
        run = run_process("run", "--config", str(config), "--state-dir", str(state_dir))
        assert instance.state.requests == 0, "nothing may reach the instance under another MID's name"
    assert run.returncode == 1, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("midbox: ") and "mid.server.edge-02" in last and "mid.server.edge-01" in last
    errors = [e for e in audit_entries(state_dir) if e["event"] == "error"]
    assert errors and "mid.server.edge-02" in errors[-1]["fields"]["message"]
    assert "appliance.start" not in [e["event"] for e in audit_entries(state_dir)]


def test_doctor_fails_on_another_appliances_certificate(
    monkeypatch: pytest.MonkeyPatch, dev_pki: Pki, edge02: pki.Issued, tmp_path: Path, state_dir: Path
) -> None:
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        body = config_bytes(instance.url, _swap_client(dev_pki, edge02), 1, "443")
        config = signed_config(tmp_path / "admin", [admin], body)
        out = io.StringIO()
        monkeypatch.setattr("sys.stdout", out)
        code = midbox_main(["doctor", "--json", "--config", str(config), "--state-dir", str(state_dir)])
        assert instance.state.requests == 0
    found = {f["check"]: f for f in map(json.loads, out.getvalue().splitlines())}
    assert code == 1
    name = found["certificate name"]
    assert name["level"] == "FAIL" and "mid.server.edge-02" in name["detail"] and "edge-01" in name["detail"]


def _raw_client(p: Pki, client: pki.Issued) -> httpx.Client:
    """A client that skips midbox's own check: what a misconfigured or hostile MID would send."""
    ctx = ssl.create_default_context(cafile=str(p.ca.cert))
    ctx.load_cert_chain(str(client.cert), str(client.key))
    return httpx.Client(verify=ctx, trust_env=False)


def test_dev_instance_refuses_a_certificate_acting_for_another_mid(
    dev_pki: Pki, edge02: pki.Issued, tmp_path: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        [job] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe", "payload": "<parameters/>"}])
        agent = store.ensure_agent(NAME)
        poll = {"sysparm_query": f"agent={AGENT}^queue=output^state=ready", "sysparm_limit": "5"}
        answer = {"agent": AGENT, "queue": "input", "topic": "HeartbeatProbe", "response_to": job}
        url = f"{instance.url}/api/now/table"
        with _raw_client(dev_pki, dev_pki.client) as own:  # control: edge-01's own certificate
            assert own.get(f"{url}/ecc_queue", params=poll).json()["result"]
        with _raw_client(dev_pki, edge02) as other:
            refused = [
                other.get(f"{url}/ecc_queue", params=poll),
                other.post(f"{url}/ecc_queue", json=answer),
                other.get(f"{url}/ecc_agent", params={"sysparm_query": f"name={NAME}"}),
                other.patch(f"{url}/ecc_agent/{agent['sys_id']}", json={"status": "Down"}),
            ]
            for r in refused:
                assert r.status_code == 403, r.text
                assert "mid.server.edge-02" in r.text and AGENT in r.text
            # Its own name, and a lookup that names no agent, are fine.
            mine = other.get(f"{url}/ecc_queue", params={"sysparm_query": "agent=mid.server.edge-02"})
            assert mine.status_code == 200
            lookup = other.get(f"{url}/ecc_queue", params={"sysparm_query": f"response_to={job}"})
            assert lookup.status_code == 200
        assert store.query("ecc_queue", "queue=input") == []
