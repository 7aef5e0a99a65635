"""Property tests: the untrusted-input parsers either return typed values or raise their one error type."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.errors import ConfigError, InstanceError, PayloadError
from appliance.payload import build_results, parse_parameters
from appliance.queue.records import parse_output

xml_chars = st.text(alphabet=st.sampled_from(list("<>/=\"' &;!?[]abcpmetrnv-:#x0123456789\n")), max_size=300)


@settings(max_examples=400, deadline=None)
@given(xml_chars)
def test_payload_parser_raises_only_payload_error(text: str) -> None:
    try:
        result = parse_parameters(text, 10_000)
    except PayloadError:
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.text(max_size=50)),
        max_size=10,
        unique_by=lambda t: t[0],
    )
)
def test_results_round_trip_any_parameter_text(pairs: list[tuple[str, str]]) -> None:
    # Characters XML 1.0 cannot carry are not ours to send; everything else must survive the round trip.
    legal = [(k, v) for k, v in pairs if all(_xml_ok(c) for c in k + v)]
    payload = build_results(result=None, echo_record={}, parameters=legal, probe_time_ms=1, error=None)
    import defusedxml.ElementTree as SafeET

    root = SafeET.fromstring(payload)
    assert [(p.get("name"), p.get("value")) for p in root.find("parameters")] == legal


def _xml_ok(c: str) -> bool:
    o = ord(c)
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or 0x10000 <= o <= 0x10FFFF


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_config_parser_raises_only_config_error(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data, Path("c.toml"))


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=5),
        max_leaves=20,
    )
)
def test_record_parser_raises_only_instance_error(raw: object) -> None:
    with contextlib.suppress(InstanceError):
        parse_output(raw)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # TOML spells inf and nan as Python does
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    return str(value)


# Hypothesis favours the first element: True one time in ten.
_rarely = st.sampled_from([False] * 9 + [True])
# Lone surrogates cannot be written in TOML at all; the byte-level targets cover them.
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_url_like = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}{rest}",
    st.sampled_from(["https", "http", "ftp", ""]),
    st.sampled_from(["a.b", "[::1]", "[x", "[161]", "u:p@h", "h:99999", "h:-1", ""]) | _text,
    st.sampled_from(["", "/", "?q", "#f", "/p]"]),
)
_scalar = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**400), st.floats(), st.booleans(), _text, _url_like
)
_value = _scalar | st.lists(_scalar, max_size=3)
# Each key of the config with a value that passes; hostile values are drawn for a few keys at a time,
# so most documents get past the earlier checks and reach the later ones.
_GOOD: dict[str, dict[str, object]] = {
    "appliance": {"name": "edge-01", "max_concurrent_probes": 8},
    "instance": {
        "url": "https://a.b",
        "ca_file": "ca.pem",
        "client_cert": "c.crt",
        "client_key": "c.key",
        "poll_interval_s": 5,
        "use_system_trust": False,
        "proxy": "http://p:3128",
        "basic_auth_credential": "svc",
    },
    "allow": {
        "cidr": "10.0.0.0/8",
        "host": ["h.example"],
        "probes": ["ssh"],
        "ports": [22, "1-9"],
        "credentials": ["c"],
    },
}


@st.composite
def config_documents(draw: st.DrawFn) -> bytes:
    """TOML with midbox's own keys and hostile values: reaches the checks behind the TOML grammar."""
    version = draw(_scalar) if draw(_rarely) else 7
    expires = "2027-06-01T00:00:00" if draw(_rarely) else "2027-06-01T00:00:00Z"
    lines = [f"version = {_toml(version)}", f"expires = {expires}"]
    for section, good in _GOOD.items():
        lines.append(f"[[{section}]]" if section == "allow" else f"[{section}]")
        hostile = draw(st.sets(st.sampled_from(sorted(good)), max_size=2))
        for key, value in good.items():
            if key not in hostile:
                lines.append(f"{key} = {_toml(value)}")
            elif draw(st.booleans()):
                lines.append(f"{key} = {_toml(draw(_value))}")
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(config_documents())
def test_config_parser_on_its_own_keys(data: bytes) -> None:
    with contextlib.suppress(ConfigError):
        parse_config(data, Path("c.toml"))
