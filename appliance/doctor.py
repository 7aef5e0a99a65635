"""``midbox doctor``: what the person who dropped the binary on a host checks before calling anyone.

Each check is a named function returning findings; none of them changes anything (the rollback
counter included), and none prints a secret.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config.model import Config
from appliance.errors import ApplianceError
from appliance.limits import Limits
from hardening.errors import HardeningError
from hardening.identity import MAX_CA_FILE_BYTES, IdentityError
from hardening.signing.verify import CLOCK_SKEW
from hardening.smallfile import read_capped

if TYPE_CHECKING:
    from cryptography import x509

CERT_WARN_DAYS = 30
CONFIG_WARN_DAYS = 7
CLOCK_WARN_S = 60.0  # signatures allow a small skew; a minute off already shows in audit times
MAX_AGENT_ANSWER = 1 << 20  # one ecc_agent row; anything longer is not read


class Level(enum.Enum):
    OK = "ok"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    detail: str
    unreachable: bool = False  # a FAIL that means "could not reach the instance" (exit 3)


def check_state_dir(state_dir: Path) -> list[Finding]:
    from hardening.perms import check_private_dir, check_private_file
    from hardening.vault.store import VaultPaths

    try:
        check_private_dir(state_dir)
    except HardeningError as e:
        return [Finding(Level.FAIL, "state dir", str(e))]
    found = [Finding(Level.OK, "state dir", f"{state_dir} is private (0700, ours)")]
    paths = VaultPaths(state_dir)
    for name, path in (("host key", paths.host_key), ("credential store", paths.store)):
        if not path.exists():
            found.append(Finding(Level.OK, name, f"none yet ({path.name} is made by 'midbox creds add')"))
            continue
        try:
            check_private_file(path)
            found.append(Finding(Level.OK, name, f"{path.name} is 0600 and ours"))
        except HardeningError as e:
            found.append(Finding(Level.FAIL, name, str(e)))
    return found


def check_trust_root(state_dir: Path) -> list[Finding]:
    from hardening.signing.rollback import load_trust_root

    try:
        root, _ = load_trust_root(state_dir)
    except HardeningError as e:
        return [Finding(Level.FAIL, "trust root", str(e))]
    return [
        Finding(
            Level.OK,
            "trust root",
            f"version {root.version}: {len(root.keys)} admin key(s), {root.threshold} signature(s) required",
        )
    ]


def check_config(path: Path, state_dir: Path, now: dt.datetime) -> tuple[list[Finding], Config | None]:
    from appliance.config.verify import load_verified_config
    from appliance.config.warnings import config_warnings

    try:
        config = load_verified_config(path, state_dir, now, commit=False)
    except (HardeningError, ApplianceError) as e:
        return [Finding(Level.FAIL, "config", str(e))], None
    left = config.settings.expires - now
    level = Level.WARN if left < dt.timedelta(days=CONFIG_WARN_DAYS) else Level.OK
    detail = f"version {config.version}, signed by {', '.join(config.signers)}, expires in {_days(left)}"
    warnings = [Finding(Level.WARN, w.topic, w.message) for w in config_warnings(config.settings)]
    return [Finding(level, "config", detail), *warnings], config


def check_certificates(config: Config, now: dt.datetime) -> list[Finding]:
    from cryptography import x509

    found: list[Finding] = []
    files = [("instance CA", config.instance.ca_file), ("client certificate", config.instance.client_cert)]
    for name, path in files:
        if path is None:
            continue
        try:
            certs = x509.load_pem_x509_certificates(read_capped(path, MAX_CA_FILE_BYTES)[:MAX_CA_FILE_BYTES])
        except (OSError, ValueError) as e:
            found.append(Finding(Level.FAIL, name, f"{path}: cannot be read as PEM certificates ({e})"))
            continue
        if path == config.instance.client_cert:
            found += _identity(certs[0], config.appliance.name, path)
        soonest = min(c.not_valid_after_utc for c in certs)
        left = soonest - now
        # The appliance's own certificate is renewed on this host; the CA's comes from its owner.
        how = "run 'midbox enroll --renew'" if path == config.instance.client_cert else "renew it"
        if left <= dt.timedelta(0):
            found.append(Finding(Level.FAIL, name, f"{path} expired on {soonest:%Y-%m-%d}; {how}"))
        elif left < dt.timedelta(days=CERT_WARN_DAYS):
            found.append(Finding(Level.WARN, name, f"{path} expires in {_days(left)}; {how} soon"))
        else:
            found.append(Finding(Level.OK, name, f"{path} valid for {_days(left)}"))
    return found


def _identity(leaf: x509.Certificate, name: str, path: Path) -> list[Finding]:
    from hardening.identity import check_identity

    try:
        check_identity(leaf, name, path)
    except HardeningError as e:
        return [Finding(Level.FAIL, "certificate name", str(e))]
    return [Finding(Level.OK, "certificate name", f"{path} is mid.server.{name}'s")]


def host_key_password(state_dir: Path, credentials_directory: Path | None) -> bytes | None:
    """The mTLS key's password from the host key, or None where there is no host key (yet)."""
    from appliance.credentials import load_host_key
    from hardening.keyatrest import key_password

    try:
        return key_password(load_host_key(state_dir, credentials_directory, create=False))
    except (HardeningError, OSError):
        return None


def check_client_key(config: Config, config_path: Path, key_password: bytes | None) -> list[Finding]:
    """The mTLS key is encrypted under this host's key (a plaintext one works, with a warning)."""
    from hardening import keyatrest
    from hardening.perms import unreadable_hint

    path = config.instance.client_key
    if path is None:
        return []
    try:
        with path.open("rb") as fh:
            pem = fh.read(keyatrest.MAX_KEY_BYTES)
    except OSError as e:
        return [Finding(Level.FAIL, "client key", f"cannot read {path}: {unreadable_hint(path, e)}")]
    if keyatrest.is_plaintext(pem):
        fix = f"midbox enroll --encrypt-key --config {config_path}"
        return [Finding(Level.WARN, "client key", f"{path} is stored unencrypted; run: {fix}")]
    try:
        keyatrest.open_pem(pem, key_password, path)
    except HardeningError as e:
        return [Finding(Level.FAIL, "client key", str(e))]
    return [Finding(Level.OK, "client key", f"{path} is encrypted under this host's key")]


async def check_instance(
    config: Config, limits: Limits, now: dt.datetime, key_password: bytes | None = None
) -> list[Finding]:
    """One read-only request over the appliance's own mTLS client: reachable, authenticated, clock."""
    import httpx

    from appliance.queue.transport import instance_client

    try:
        client = instance_client(
            config.instance, limits, name=config.appliance.name, key_password=key_password
        )
    except (HardeningError, ApplianceError) as e:
        if isinstance(e.__cause__, IdentityError):
            # Already a FAIL of its own under "certificate name": one problem, one line.
            return [Finding(Level.FAIL, "instance", "not contacted (see 'certificate name')")]
        return [Finding(Level.FAIL, "instance", str(e))]
    try:
        response = await client.get(
            "/api/now/table/ecc_agent",
            params={
                "sysparm_query": f"name={config.appliance.name}",
                "sysparm_limit": "1",
                "sysparm_fields": "sys_id,name,status,validated",
            },
        )
    except httpx.HTTPError as e:
        from appliance.doctor_net import diagnose

        why = diagnose(e, config.instance, limits.instance_timeout_s)
        return [Finding(Level.FAIL, "instance", why.detail, unreachable=why.unreachable)]
    finally:
        await client.aclose()
    found: list[Finding] = []
    if response.status_code in (401, 403):
        found.append(
            Finding(
                Level.FAIL, "instance", f"the instance refused this appliance (HTTP {response.status_code})"
            )
        )
    elif response.status_code >= 400:
        found.append(Finding(Level.FAIL, "instance", f"the instance answered HTTP {response.status_code}"))
    else:
        found.append(Finding(Level.OK, "instance", f"{config.instance.url} answered over mutual TLS"))
        found += check_agent_record(response.content, config.appliance.name)
    found += _clock(response.headers.get("date"), now)
    return found


AGENT_DOC = "docs/servicenow.md, 'The MID record'"


def check_agent_record(body: bytes, name: str) -> list[Finding]:
    """This MID's ``ecc_agent`` record from the instance's answer: only Up and Validated MIDs are
    selected for work, so a missing or unvalidated record is why nothing arrives."""
    import json

    try:
        rows = json.loads(body[:MAX_AGENT_ANSWER]).get("result")
    except (ValueError, AttributeError, UnicodeDecodeError):
        rows = None
    if not isinstance(rows, list):
        return [Finding(Level.WARN, "MID record", "the instance's ecc_agent answer could not be read")]
    if not rows or not isinstance(rows[0], dict):
        return [
            Finding(
                Level.WARN,
                "MID record",
                f"no ecc_agent record named {name!r} yet: midbox creates it at its first start; where "
                f"the instance refuses that, an admin creates it (MID Server > Servers > New, "
                f"name {name!r}); see {AGENT_DOC}",
            )
        ]
    row = rows[0]
    status = str(row.get("status") or "?")[:40]
    validated = str(row.get("validated") or "false")[:40]
    shown = f"{name!r}: status {status}, validated {validated}"
    if validated.strip().lower() not in ("true", "yes"):
        return [
            Finding(
                Level.WARN,
                "MID record",
                f"{shown}: the instance selects only validated MIDs; an admin must validate this record "
                f"(MID Server > Servers > {name} > Validate, or as {AGENT_DOC} says for mTLS MIDs)",
            )
        ]
    if status != "Up":
        return [
            Finding(
                Level.WARN,
                "MID record",
                f"{shown}: the instance selects only Up MIDs; start midbox ('midbox run' or the service) "
                "and let it answer the instance's HeartbeatProbe",
            )
        ]
    return [Finding(Level.OK, "MID record", shown)]


def _clock(date_header: str | None, now: dt.datetime) -> list[Finding]:
    if not date_header:
        return [Finding(Level.WARN, "clock", "the instance sent no Date header; clock not compared")]
    try:
        theirs = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return [Finding(Level.WARN, "clock", "the instance's Date header could not be read")]
    skew = abs((theirs - now).total_seconds())
    if skew > CLOCK_SKEW.total_seconds():
        return [
            Finding(
                Level.FAIL,
                "clock",
                f"{skew:.0f} s away from the instance's clock, beyond the {CLOCK_SKEW.total_seconds():.0f} s "
                "signatures allow; fix NTP (timedatectl set-ntp true)",
            )
        ]
    if skew > CLOCK_WARN_S:
        return [Finding(Level.WARN, "clock", f"{skew:.0f} s away from the instance's clock; check NTP")]
    return [Finding(Level.OK, "clock", f"within {max(skew, 1):.0f} s of the instance")]


def _days(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"
