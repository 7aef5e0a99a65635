"""The systemd unit for one verified config: the process sandbox plus a kernel-enforced egress allowlist.

The signed allowlist is enforced twice: by the appliance before each connect, and by the kernel
(``IPAddressDeny=any`` + ``IPAddressAllow=``) so that even a bug in the appliance cannot reach an
address the config does not name. Host-name rules and the instance are resolved when the unit is
rendered: render again after their addresses change.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from appliance.config.model import Config

# The sandbox, shared with the bundle's pre-config unit (build/bundle-files/linux/midbox.service);
# a test keeps the two in step.
SANDBOX: tuple[str, ...] = (
    "User=midbox",
    "Group=midbox",
    "Restart=on-failure",
    "RestartSec=10s",
    "TimeoutStopSec=30s",
    "UMask=0077",
    "StateDirectory=midbox",
    "StateDirectoryMode=0700",
    "ReadOnlyPaths=/etc/midbox",
    "NoNewPrivileges=yes",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    # The onefile binary unpacks its libraries (about 28 MB) under TMPDIR. /tmp is RAM on many hosts
    # (tmpfs, Debian 13's default): there they would hold that much memory for the process's life, and
    # the idle hand-back of their pages (appliance.memtrim) could not free any. /var/tmp is on disk
    # and, with PrivateTmp, as private as /tmp.
    "Environment=TMPDIR=/var/tmp",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
)

Resolver = Callable[[str], Sequence[str]]
WATCHDOG_SEC = 60  # a loop blocked this long is restarted; pings go out every 30 s
START_TIMEOUT_SEC = 80  # under SYSTEMCTL_TIMEOUT_S, so "enable --now" sees the verdict


def resolve(host: str) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)})


def nameservers(resolv_conf: str) -> list[str]:
    """The DNS servers the appliance must reach to resolve targets at connect time."""
    out: list[str] = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(words[1].split("%")[0])))
            except ValueError:
                continue
    return out


def egress(config: Config, resolver: Resolver, dns: Iterable[str]) -> list[tuple[str, str]]:
    """(address or CIDR, why) for every destination the appliance may reach, in a stable order."""
    allowed: dict[str, str] = {}
    instance_host = urlsplit(config.instance.url).hostname or ""
    for address in _addresses(instance_host, resolver):
        allowed.setdefault(address, f"the instance {instance_host}")
    if config.instance.proxy:
        proxy_host = urlsplit(config.instance.proxy).hostname or ""
        for address in _addresses(proxy_host, resolver):
            allowed.setdefault(address, f"the proxy {proxy_host}")
    for address in dns:
        allowed.setdefault(address, "a DNS server of /etc/resolv.conf")
    for number, section in enumerate(config.settings.allow, start=1):
        for net in section.rule.networks:
            allowed.setdefault(str(net), f"[[allow]] rule {number}")
        for host in section.rule.hosts:
            for address in _addresses(host, resolver):
                allowed.setdefault(address, f"[[allow]] rule {number}: {host}")
    return list(allowed.items())


def _addresses(host: str, resolver: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return list(resolver(host))


def render(
    config: Config,
    *,
    binary: Path,
    config_path: Path,
    state_dir: Path,
    resolver: Resolver,
    dns: Sequence[str],
) -> str:
    lines = [
        f"# midbox unit for mid.server.{config.appliance.name}, config version {config.version}",
        "# (rendered by 'midbox service render-unit'; render again when the config or an address changes)",
        "[Unit]",
        "Description=midbox ServiceNow MID Server appliance",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        # READY=1 after the first successful poll; WATCHDOG=1 from the event loop (appliance/sdnotify.py).
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={WATCHDOG_SEC}s",
        # The first poll must succeed within this, or systemd restarts the start (RestartSec=).
        f"TimeoutStartSec={START_TIMEOUT_SEC}s",
        f"ExecStart={binary} run --config {config_path} --state-dir {state_dir}",
        # 'systemctl reload midbox' gets the appliance's verdict as its exit status.
        f"ExecReload={binary} reload --config {config_path} --state-dir {state_dir}",
        *SANDBOX,
        "# Egress: only what the signed config names; everything else is dropped by the kernel.",
        "IPAddressDeny=any",
    ]
    for address, why in egress(config, resolver, dns):
        lines += [f"# {why}", f"IPAddressAllow={address}"]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)
