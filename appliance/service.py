"""The lifecycle of a running appliance: start in the order of trust, run, reload, checkpoint, stop.

The running phase (runner restarts, reloads, the watchers) is ``appliance.supervisor``; this module
starts the process before it and stops it after.

Order matters: the process is hardened before any secret is read; the audit log is open before the
config is judged, so a refused config leaves a trace; nothing polls the instance until the config
verified and the credential store opened.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from appliance import __version__
from appliance.checkpoints import anchor_checkpoint
from appliance.config.model import Config
from appliance.errors import ApplianceError
from appliance.health import Health
from appliance.host import open_host
from appliance.startup import binary_sha256, client_identity, first_config
from appliance.status_file import Publisher
from appliance.stoprequest import StopRequest
from appliance.supervisor import ServiceOptions, Supervisor, record_upgrade_entries
from hardening.audit import AuditOptions, open_audit_log
from hardening.errors import HardeningError

__all__ = ["ServiceOptions", "serve"]  # ServiceOptions lives with the Supervisor that reads it

log = logging.getLogger(__name__)


async def serve(
    options: ServiceOptions,
    *,
    ready: Callable[[], None] | None = None,
    stop_request: StopRequest | None = None,
) -> int:
    """Run until SIGTERM/SIGINT or ``stop_request``; return the exit code. Raises (exit 1) if the
    config is refused."""
    host = open_host(
        options.state_dir,
        credentials_directory=options.credentials_directory,
        passphrase_file=options.passphrase_file,
    )
    audit = open_audit_log(options.state_dir, AuditOptions())
    started = time.monotonic()
    config: Config | None = None
    health: Health | None = None
    reason = "error"
    try:
        accepted = first_config(options.config_path, options.state_dir, audit)
        cert_sha256 = client_identity(accepted, audit, host.key_password)
        config = accepted
        running_sha256 = binary_sha256()
        start = {
            "binary_sha256": running_sha256,
            "version": __version__,
            "config_version": config.version,
            "appliance": config.appliance.name,
            "pid": os.getpid(),
        }
        if cert_sha256 is not None:
            start["client_cert_sha256"] = cert_sha256
        audit.record("appliance.start", start)
        record_upgrade_entries(options.state_dir, audit)
        log.info(
            "midbox %s running as mid.server.%s on config version %d",
            __version__,
            config.appliance.name,
            config.version,
        )
        health = Health(version=__version__, binary_sha256=running_sha256, audit_head=lambda: audit.size)
        lifecycle = Supervisor(options, audit, host, stop_request, health)
        config, reason = await lifecycle.run(config, ready)
        return 0
    except Exception as e:
        reason = f"error: {_describe_error(e)}"
        raise
    finally:
        if health is not None:
            _stopped(health, options, reason)
        try:
            if config is not None:
                # The stop entry first, then the final checkpoint, so that it covers the stop too.
                audit.record(
                    "appliance.stop",
                    {
                        "config_version": config.version,
                        "reason": reason,
                        "uptime_s": round(time.monotonic() - started, 3),
                    },
                )
                await anchor_checkpoint(config, audit, options.state_dir, host.key_password)
            audit.close()
        except HardeningError as e:
            # The reason we are stopping may be this very log failing; say so, keep the first error.
            log.error("the audit log could not record the stop: %s", e)
        finally:
            host.close()
            # The last line of every run that started, whatever ended it (a refused start has its own).
            if config is not None:
                level = logging.ERROR if reason.startswith("error") else logging.INFO
                log.log(level, "stopped: %s", reason)


def _describe_error(error: BaseException) -> str:
    """Our errors carry user-facing one-liners; anything else is named by its type (it may hold data)."""
    if isinstance(error, (ApplianceError, HardeningError)):
        return str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return f"unexpected {type(error).__name__}"


def _stopped(health: Health, options: ServiceOptions, reason: str) -> None:
    """The last status: 'midbox status' then says stopped, and why, instead of a stale poll age."""
    health.state, health.reason = "stopped", reason
    try:
        Publisher(options.state_dir, options.metrics_textfile).publish(health)
    except OSError as e:
        log.warning("could not write the final status file: %s", e.strerror)
