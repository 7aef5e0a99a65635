"""Property tests: the untrusted-input parsers either return typed values or raise their one error type."""

from __future__ import annotations

import contextlib
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
