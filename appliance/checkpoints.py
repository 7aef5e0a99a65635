"""Audit checkpoints anchored on the instance: the log's signed head, off this host."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx

from appliance.config.model import Config
from appliance.errors import ApplianceError, InstanceError
from appliance.queue.transport import ecc_client, instance_client
from hardening.audit import TOPIC, AuditLog, checkpoint_xml, load_or_create_signing_key
from hardening.errors import HardeningError

log = logging.getLogger("appliance.service")

CHECKPOINT_POST_TIMEOUT_S = 10.0


async def anchor_checkpoint(
    config: Config,
    audit: AuditLog,
    state_dir: Path,
    key_password: bytes | None = None,
    *,
    http: httpx.AsyncClient | None = None,
) -> None:
    """Sign the log's head and anchor it on the instance, off this host. Best effort: a later
    checkpoint covers everything an earlier one would have.

    ``http`` is the running appliance's client to the instance (its connections and TLS sessions are
    reused); without one (at stop, after the runner closed its own) a client is made for this post."""
    try:
        cp = audit.checkpoint(load_or_create_signing_key(state_dir))
    except HardeningError as e:
        log.warning("audit checkpoint not made: %s", e)
        return
    limits = config.limits()
    owned = http is None
    if http is None:
        http = instance_client(config.instance, limits, name=config.appliance.name, key_password=key_password)
    client = ecc_client(http, name=config.appliance.name, limits=limits)
    try:
        # Bounded: at shutdown this must fit in the service manager's stop timeout.
        await asyncio.wait_for(
            client.post_input(topic=TOPIC, name=TOPIC, payload=checkpoint_xml(cp).decode("utf-8")),
            CHECKPOINT_POST_TIMEOUT_S,
        )
        log.info("audit checkpoint %d anchored on the instance", cp.size)
    except (InstanceError, ApplianceError, TimeoutError) as e:
        log.warning("audit checkpoint %d kept locally; the instance did not take it: %s", cp.size, e)
    finally:
        if owned:
            await client.aclose()
