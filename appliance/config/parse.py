"""Strict TOML → ParsedConfig: size first, every key known, every type checked, errors name the path."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit

from appliance.config._lines import Section, closest, did_you_mean, sections
from appliance.config._rates import appliance_rates, rule_limits
from appliance.config._scopes import parse_scopes
from appliance.config.model import AllowSection, ApplianceSection, InstanceSection, ParsedConfig
from appliance.errors import ConfigError
from appliance.limits import MAX_CONCURRENT_PROBES, MAX_CONFIG_BYTES
from hardening.filepins import NamedFile
from hardening.policy import HOST_KEY_MODES, PROBE_KINDS, AllowRule, CredentialMap, IPNetwork, PortRange
from hardening.signing.envelope import MAX_FLEET_NAMES

T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SYS_ID = re.compile(r"^[0-9A-Fa-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")


class _Table:
    """A TOML table read by popping known keys; whatever is left over is an error naming its path.

    ``label`` is how messages name the table ("rule 2" for the second [[allow]]); ``section`` finds
    a key's line in the text.
    """

    def __init__(
        self,
        data: dict[str, Any],
        path: str,
        sections: dict[str, list[Section]] | None = None,
        section: Section | None = None,
        label: str | None = None,
    ) -> None:
        self._data = dict(data)
        self._path = path
        self._sections = sections or {}
        self._section = section
        self._label = label
        self._known: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def name(self, key: str) -> str:
        """``'instance.url' (line 6)`` or ``'ports' in rule 2 (line 14)``."""
        shown = f"{key!r} in {self._label}" if self._label else repr(self._where(key))
        line = self._section.line_of(key) if self._section else None
        if line is None and self._section is not None:
            line = self._section.header_line
        return f"{shown} (line {line})" if line else shown

    def take(self, key: str, kind: type[T], default: T | None = None, required: bool = True) -> T:
        self._known.add(key)
        if key not in self._data:
            if default is not None or not required:
                return default  # type: ignore[return-value]
            near = closest(key, [k for k in self._data if isinstance(k, str)])
            if near:  # "port = [22]" is a misspelt 'ports', not a missing one
                raise ConfigError(f"config: unknown key {self.name(near)}; did you mean {key!r}?")
            raise ConfigError(f"config: missing required key {self.name(key)}")
        value = self._data.pop(key)
        # bool is an int subclass in Python; a TOML true must not pass as a number.
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                try:
                    return float(value)  # type: ignore[return-value]
                except OverflowError as e:
                    raise ConfigError(f"config: {self.name(key)} is too large") from e
            if kind is dt.datetime and isinstance(value, str):
                raise ConfigError(
                    f"config: {self.name(key)} is a quoted string; write the date-time unquoted, "
                    f"e.g. {key} = 2027-06-01T00:00:00Z"
                )
            raise ConfigError(f"config: {self.name(key)} must be {kind.__name__}, got {type(value).__name__}")
        return value

    def table(self, key: str) -> _Table:
        where = self._where(key)
        found = self._sections.get(where)
        return _Table(self.take(key, dict), where, self._sections, found[0] if found else None)

    def strings(self, key: str, required: bool = True) -> tuple[str, ...]:
        """A string or a list of strings."""
        self._known.add(key)
        if key not in self._data and not required:
            return ()
        value = self.take(key, object)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"config: {self.name(key)} must be a string or a list of strings")
        return tuple(items)

    def has(self, key: str) -> bool:
        return key in self._data

    def remaining(self) -> list[str]:
        """The keys still to be taken, sorted (for tables whose keys are data, not names)."""
        return sorted(self._data)

    def done(self) -> None:
        if self._data:
            key = sorted(self._data)[0]
            hint = did_you_mean(key, self._known) or "; remove it or check its spelling"
            raise ConfigError(f"config: unknown key {self.name(key)}{hint}")


def parse_config(data: bytes, source: Path) -> ParsedConfig:
    """Parse the exact bytes of a config file. ``source`` anchors its relative paths."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config: file is {len(data)} bytes, more than the {MAX_CONFIG_BYTES} allowed")
    try:
        text = data.decode("utf-8")
        raw = tomllib.loads(text)
    # tomllib raises a bare ValueError for integers over Python's 4300-digit conversion limit.
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as e:
        raise ConfigError(f"config: not valid UTF-8 TOML: {e}") from e
    base = source.parent
    where = sections(text)
    top = _Table(raw, "", where, where[""][0])
    pins = _Pins(top.take("files", dict, default={}))
    version = top.take("version", int)
    if version < 1:
        raise ConfigError("config: 'version' must be a positive integer")
    expires = _datetime(top.take("expires", dt.datetime), "expires")
    appliance = _appliance(top.table("appliance"))
    instance = _instance(top.table("instance"), base, pins)
    allow_raw = top.take("allow", list, default=[])
    rules = where.get("allow", [])
    allow = tuple(
        _allow(item, i + 1, rules[i] if len(rules) == len(allow_raw) else None, source.parent, pins)
        for i, item in enumerate(allow_raw)
    )
    credential_map = _credential_map(top.take("credential_map", dict, default={}), allow)
    top.done()
    pins.done()
    return ParsedConfig(version, expires, appliance, instance, allow, source, credential_map, pins.named)


class _Pins:
    """``[files]``: each file the config names (as written) → its SHA-256, written by ``config sign``."""

    def __init__(self, raw: dict[str, Any]) -> None:
        for written, digest in raw.items():
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ConfigError(
                    f"config: files.{written[:80]!r} must be a SHA-256 (64 lowercase hex digits); "
                    "let 'midbox config sign' write the [files] table"
                )
        self._pins: dict[str, str] = dict(raw)
        self._used: set[str] = set()
        self.named: tuple[NamedFile, ...] = ()

    def name(self, key: str, written: str, path: Path) -> str | None:
        """Record that ``key`` names the file ``written``; its pin, or None."""
        self._used.add(written)
        pin = self._pins.get(written)
        self.named = (*self.named, NamedFile(key, written, path, pin))
        return pin

    def done(self) -> None:
        unused = sorted(set(self._pins) - self._used)
        if unused:
            raise ConfigError(
                f"config: files.{unused[0][:80]!r} pins a file no key of the config names; remove it "
                "(or sign again: 'midbox config sign' rewrites the [files] table)"
            )


def _datetime(value: dt.datetime, key: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ConfigError(f"config: {key!r} needs a time zone, e.g. 2027-06-01T00:00:00Z")
    return value.astimezone(dt.UTC)


def _appliance(t: _Table) -> ApplianceSection:
    name, fleet = _appliance_names(t)
    probes = t.take("max_concurrent_probes", int, default=64)
    if not 1 <= probes <= MAX_CONCURRENT_PROBES:
        raise ConfigError(f"config: 'appliance.max_concurrent_probes' must be 1..{MAX_CONCURRENT_PROBES}")
    rates, max_age = appliance_rates(t)
    t.done()
    return ApplianceSection(name, probes, rates, max_age, fleet)


def _appliance_names(t: _Table) -> tuple[str, tuple[str, ...]]:
    """``name = "x"``, or ``names = [...]`` for a fleet; a list of one is the same as ``name``."""
    names = t.take("names", list, required=False)
    if names is None:
        name = t.take("name", str)
        if not _NAME.fullmatch(name):
            raise ConfigError("config: 'appliance.name' may hold letters, digits, '.', '_' and '-' (1-64)")
        return name, ()
    if t.take("name", str, required=False) is not None:
        raise ConfigError("config: [appliance] has both 'name' and 'names'; keep one of them")
    if not 1 <= len(names) <= MAX_FLEET_NAMES:
        raise ConfigError(f"config: 'appliance.names' must list 1 to {MAX_FLEET_NAMES} appliance names")
    for entry in names:
        if not isinstance(entry, str) or not _NAME.fullmatch(entry):
            raise ConfigError(
                f"config: 'appliance.names' entry {str(entry)[:80]!r} is not a name: letters, digits, "
                "'.', '_' and '-' (1-64)"
            )
    if len(set(names)) != len(names):
        raise ConfigError("config: 'appliance.names' lists a name twice; remove the duplicate")
    return (names[0], ()) if len(names) == 1 else ("", tuple(names))


def _urlsplit(url: str, key: str) -> SplitResult:
    # urlsplit raises ValueError for a malformed bracketed host such as "https://[x]/".
    try:
        return urlsplit(url)
    except ValueError as e:
        raise ConfigError(f"config: {key!r} is not a valid URL ({e})") from e


def _proxy_url(proxy: str) -> None:
    parts = _urlsplit(proxy, "instance.proxy")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("config: 'instance.proxy' must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as e:
        raise ConfigError("config: 'instance.proxy' has an invalid port (write host:1-65535)") from e
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            "config: 'instance.proxy' is a proxy's address only: drop its path, query and fragment"
        )


def _instance(t: _Table, base: Path, pins: _Pins) -> InstanceSection:
    url = t.take("url", str)
    parts = _urlsplit(url, "instance.url")
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError("config: 'instance.url' must be an https:// URL; plain http is refused")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("config: 'instance.url' must not carry user info, a query or a fragment")
    ca_written = t.take("ca_file", str)
    ca_file = base / ca_written
    ca_pin = pins.name("instance.ca_file", ca_written, ca_file)
    cert = t.take("client_cert", str, required=False)
    key = t.take("client_key", str, required=False)
    if (cert is None) != (key is None):
        raise ConfigError("config: 'instance.client_cert' and 'instance.client_key' go together")
    # The client certificate is not pinned: it is this host's own identity, renewed on the host by
    # 'midbox enroll --renew' without the offline admins; enroll checks its key, name, validity and chain.
    poll = t.take("poll_interval_s", float, default=5.0)
    if not 0.05 <= poll <= 3600:
        raise ConfigError("config: 'instance.poll_interval_s' must be between 0.05 and 3600")
    system_trust = t.take("use_system_trust", bool, required=False) or False
    proxy = t.take("proxy", str, required=False)
    if proxy is not None:
        _proxy_url(proxy)
    basic = t.take("basic_auth_credential", str, required=False)
    if cert is None and basic is None:
        raise ConfigError(
            "config: the instance needs client_cert/client_key (mutual TLS) or basic_auth_credential"
        )
    t.done()
    return InstanceSection(
        url.rstrip("/"),
        ca_file,
        base / cert if cert else None,
        base / key if key else None,
        poll,
        system_trust,
        proxy,
        basic,
        ca_pin,
    )


def _allow(item: object, number: int, section: Section | None, base: Path, pins: _Pins) -> AllowSection:
    """[[allow]] rule ``number`` (1-based, as policy explain and every other message counts rules)."""
    line = section.header_line if section else None
    path = f"rule {number} (line {line})" if line else f"rule {number}"
    if not isinstance(item, dict):
        raise ConfigError(f"config: [[allow]] {path} must be a table")
    t = _Table(item, f"allow[{number - 1}]", section=section, label=f"rule {number}")
    cidrs = t.strings("cidr", required=False)
    hosts = t.strings("host", required=False)
    if not cidrs and not hosts:
        raise ConfigError(f"config: {path} needs 'cidr' or 'host'")
    networks = _networks(cidrs, f"{path}: cidr")
    for h in hosts:
        if not _HOST.fullmatch(h):
            raise ConfigError(f"config: {path}: host: {h!r} is not a host name")
    within = _networks(t.strings("resolves_within", required=False), f"{path}: resolves_within")
    if within and not hosts:
        raise ConfigError(f"config: {path}: resolves_within only applies to a rule with 'host' names")
    if "resolves_within" in item and not within:
        raise ConfigError(f"config: {path}: resolves_within is empty; name the networks or remove the key")
    probes = t.strings("probes")
    unknown = sorted(set(probes) - PROBE_KINDS)
    if unknown:
        raise ConfigError(f"config: {path}: probes: unknown probe {unknown[0]!r}; use {sorted(PROBE_KINDS)}")
    ports_raw = t.take("ports", list)
    ports = tuple(_port_range(p, f"{path}: ports") for p in ports_raw)
    if not ports:
        raise ConfigError(f"config: {path}: ports must not be empty")
    creds = t.strings("credentials", required=False)
    tls_ca = t.take("tls_ca", str, required=False)
    if tls_ca is not None and "http" not in probes:
        raise ConfigError(f"config: {path}: tls_ca only applies to rules that allow the 'http' probe")
    tls_ca_pin = pins.name(f"allow[{number - 1}].tls_ca", tls_ca, base / tls_ca) if tls_ca else None
    sudo = t.take("sudo", bool, required=False)
    host_keys = t.take("host_keys", str, required=False)
    for key, value in (("sudo", sudo), ("host_keys", host_keys)):
        if value is not None and "ssh" not in probes:
            raise ConfigError(f"config: {path}: {key} only applies to rules that allow the 'ssh' probe")
    if host_keys is not None and host_keys not in HOST_KEY_MODES:
        raise ConfigError(
            f'config: {path}: host_keys must be "pinned" or "pin-on-first-use", got {host_keys[:40]!r}'
        )
    snmp_v1 = t.take("snmp_v1", bool, default=False)
    if snmp_v1 and "snmp" not in probes:
        raise ConfigError(f"config: {path}: snmp_v1 only applies to rules that allow the 'snmp' probe")
    scopes = parse_scopes(t, path, probes)
    limits = rule_limits(t)
    t.done()
    rule = AllowRule(
        networks=tuple(networks),
        hosts=tuple(h.lower().rstrip(".") for h in hosts),
        probes=frozenset(probes),
        ports=ports,
        credentials=tuple(dict.fromkeys(creds)),
        tls_ca=base / tls_ca if tls_ca else None,
        sudo=bool(sudo),
        host_keys=host_keys or "pinned",
        snmp_v1=snmp_v1,
        resolves_within=within,
        tls_ca_sha256=tls_ca_pin,
        scopes=scopes,
        line=line,
    )
    return AllowSection(cidrs, hosts, probes, tuple(str(p) for p in ports_raw), creds, rule, limits)


def _networks(values: tuple[str, ...], path: str) -> tuple[IPNetwork, ...]:
    networks = []
    for c in values:
        try:
            networks.append(ipaddress.ip_network(c, strict=True))
        except ValueError as e:
            raise ConfigError(f"config: {path}: {c!r} is not a network ({e})") from e
    return tuple(networks)


def _credential_map(raw: dict[str, Any], allow: tuple[AllowSection, ...]) -> CredentialMap:
    """``[credential_map]``: ``ids`` (discovery_credentials sys_id → aliases) and ``tags`` (tag → aliases).

    Every alias it names must be bound by some [[allow]] rule: a mapping no rule lets the instance use
    would only ever fail at run time, so it is refused when the admin signs.
    """
    t = _Table(raw, "credential_map")
    bound = {alias for a in allow for alias in a.credentials}
    maps: list[dict[str, tuple[str, ...]]] = []
    for key, pattern, example in (
        ("ids", _SYS_ID, "a 32-character hex sys_id of a discovery_credentials record"),
        ("tags", _TAG, "a credential tag: letters, digits, '.', '_', '-' (1-100)"),
    ):
        sub = _Table(t.take(key, dict, default={}), f"credential_map.{key}")
        mapping: dict[str, tuple[str, ...]] = {}
        for name in sub.remaining():
            if not pattern.fullmatch(name):
                raise ConfigError(f"config: credential_map.{key}: {name[:80]!r} is not {example}")
            aliases = tuple(dict.fromkeys(sub.strings(name)))
            if not aliases:
                raise ConfigError(f"config: credential_map.{key}.{name} names no alias")
            for alias in aliases:
                if alias not in bound:
                    raise ConfigError(
                        f"config: credential_map.{key}.{name}: alias {alias!r} is in no [[allow]] rule's "
                        "'credentials'; add it to the rule for the targets it serves"
                    )
            mapping[name.lower() if key == "ids" else name] = aliases
        sub.done()
        maps.append(mapping)
    t.done()
    return CredentialMap(ids=maps[0], tags=maps[1])


def _port_range(value: object, path: str) -> PortRange:
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}-[0-9]{1,5}", value):
        low, high = (int(x) for x in value.split("-"))
    else:
        raise ConfigError(f'config: {path}: {value!r} must be a port number or a range like "1-1024"')
    if not 1 <= low <= high <= 65535:
        raise ConfigError(f"config: {path}: {value!r} is outside 1-65535")
    return PortRange(low, high)
