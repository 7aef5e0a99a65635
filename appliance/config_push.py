"""Topic ``midbox.config``: a signed config delivered through the instance.

The instance only carries it: the config is verified exactly as the file on disk would be (trust
root, threshold, binding to this appliance's name, expiry, rollback), with the running config's
name as the expected one. An attacker who controls the instance can therefore only replay an older
signed config (refused by the rollback counter) or deliver one signed for other appliances (refused
by the binding). A config that verifies is written in place of the running pair (the previous pair
is kept as ``NAME.prev``) and put in force through the same reload as an edited file; one that does
not changes nothing on disk and is audited with its SHA-256.

Payload: ``<parameters><parameter name="config" value="BASE64"/><parameter name="signature"
value="BASE64"/></parameters>``; nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import logging

# ElementTree only builds XML here; untrusted XML is parsed with defusedxml.
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.config import delivered
from appliance.config.model import Config
from appliance.config.verify import verify_config_bytes
from appliance.errors import ApplianceError, ConfigError, PayloadError
from appliance.limits import (
    MAX_CONFIG_PUSH_B64_CHARS,
    MAX_CONFIG_PUSH_PAYLOAD_BYTES,
    MAX_SIGNATURE_PUSH_B64_CHARS,
)
from appliance.probes.base import Job, ProbeContext
from hardening.errors import HardeningError
from hardening.utctime import format_time

log = logging.getLogger(__name__)

TOPIC = "midbox.config"
_PARAMS = {"config": MAX_CONFIG_PUSH_B64_CHARS, "signature": MAX_SIGNATURE_PUSH_B64_CHARS}


class ConfigPushRefusedError(ApplianceError):
    """A delivered config was not taken; the running one stays in force."""


@dataclass(frozen=True)
class PushTarget:
    """Where a delivered config is written and how it is put in force."""

    config_path: Path
    state_dir: Path
    apply: Callable[[], None]  # ask the service to reload its config now (it verifies it again)
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)


def decode_push(job: Job) -> tuple[bytes, bytes]:
    """The config and signature bytes of ``job``: known parameters only, each capped before decoding."""
    given = dict(job.parameters)
    unknown = sorted(set(given) - set(_PARAMS))
    if unknown:
        raise PayloadError(
            f"{TOPIC}: unknown parameter {unknown[0][:40]!r}; send only 'config' and 'signature'"
        )
    out: list[bytes] = []
    for name, cap in _PARAMS.items():
        text = given.get(name)
        if not text:
            raise PayloadError(
                f"{TOPIC}: parameter {name!r} is missing; send the signed config and its .sig, base64"
            )
        if len(text) > cap:
            raise PayloadError(f"{TOPIC}: parameter {name!r} is longer than {cap} characters")
        try:
            # Line breaks are allowed ('base64' wraps at 76 columns); any other stray character is not.
            data = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise PayloadError(f"{TOPIC}: parameter {name!r} is not valid base64; encode the file") from e
        if not data:
            raise PayloadError(f"{TOPIC}: parameter {name!r} is empty; send the signed file, base64")
        out.append(data)
    return out[0], out[1]


class ConfigPushProbe:
    """Runs in the dispatcher like a probe, but touches no target: no policy check applies."""

    kind = "config"
    topics = (TOPIC,)

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return True  # idempotent: the same config again is answered "unchanged"

    max_payload_bytes = MAX_CONFIG_PUSH_PAYLOAD_BYTES  # the dispatcher checks this before parsing

    def __init__(self, current: Config, target: PushTarget) -> None:
        self._current = current
        self._target = target

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        try:
            config, signature = decode_push(job)
        except PayloadError as e:
            self._refused(job, ctx, None, str(e))
            raise
        sha256 = hashlib.sha256(config).hexdigest()
        current, target = self._current, self._target
        try:
            new = await asyncio.to_thread(
                verify_config_bytes,
                config,
                signature,
                target.config_path,
                target.state_dir,
                target.now(),
                current.appliance.name,
                False,  # the rollback counter moves when the reload puts it in force
            )
        except (HardeningError, ConfigError) as e:
            self._refused(job, ctx, sha256, str(e))
            raise ConfigPushRefusedError(f"config refused, still on version {current.version}: {e}") from e
        if new.sha256 == current.sha256:
            return _verdict("unchanged", new)  # delivered twice (at-least-once): nothing to do
        try:
            # One synchronous step on the event loop: the config watch cannot see half of it.
            delivered.install(target.config_path, config, signature)
        except OSError as e:
            reason = (
                f"cannot write beside {target.config_path}: {e.strerror}; let the service user write "
                "the config's directory (see 'Configs from the instance' in operations.md)"
            )
            self._refused(job, ctx, sha256, reason)
            raise ConfigPushRefusedError(
                f"config not taken, still on version {current.version}: {reason}"
            ) from e
        ctx.audit.record(
            "config.pushed",
            {
                "job": job.sys_id,
                "config_version": new.version,
                "config_sha256": new.sha256,
                "signers": list(new.signers),
                "previous_version": current.version,
            },
        )
        log.info("config version %d delivered through the instance; reloading", new.version)
        target.apply()
        return _verdict("accepted", new)

    def _refused(self, job: Job, ctx: ProbeContext, sha256: str | None, reason: str) -> None:
        log.warning("config delivered through the instance refused: %s", reason)
        ctx.audit.record(
            "config.push_refused",
            {
                "job": job.sys_id,
                "config_sha256": sha256,
                "reason": reason[:500],
                "kept_version": self._current.version,
            },
        )

    async def aclose(self) -> None:
        return None


def _verdict(verdict: str, config: Config) -> ET.Element:
    result = ET.Element("result", verdict=verdict)
    ET.SubElement(result, "config_version").text = str(config.version)
    ET.SubElement(result, "config_sha256").text = config.sha256
    ET.SubElement(result, "expires").text = format_time(config.settings.expires)
    signers = ET.SubElement(result, "signers")
    for key_id in config.signers:
        ET.SubElement(signers, "signer", key_id=key_id)
    return result
