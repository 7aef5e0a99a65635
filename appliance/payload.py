"""ECC payload XML: strict, size-capped parsing of output parameters and building of results.

Untrusted XML is parsed only with defusedxml (no DTDs, entities or external references). Result XML is
built with ElementTree, which escapes every value.
"""

from __future__ import annotations

import re

# ElementTree only builds XML here; untrusted XML is parsed with defusedxml.
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Mapping, Sequence

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from appliance.errors import PayloadError
from appliance.limits import MAX_PARAMETERS, MAX_PAYLOAD_BYTES, MAX_XML_DEPTH

# XML 1.0 allows #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF].
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

# A probe that answers with several <result> elements (Shazzam: one per address) returns them inside an
# element of this tag; build_results puts its children, not the container, into <results>.
RESULT_LIST = "midbox-result-list"

# Fields of the output record that a result echoes back, as the MID does (see OutputRecord.echo).
ECHO_FIELDS = (
    "agent",
    "topic",
    "name",
    "source",
    "sys_id",
    "ecc_queue",
    "response_to",
    "agent_correlator",
    "priority",
    "sequence",
    "sys_created_on",
)
# Echoed only when the output record has a value for them (an output answers nothing, usually).
ECHO_WHEN_SET = frozenset({"response_to", "sequence", "sys_created_on"})


def xml_text(data: bytes | str) -> str:
    """Decode ``data`` as UTF-8 (invalid bytes replaced) and replace characters XML cannot carry."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return _XML_FORBIDDEN.sub("\ufffd", text)


def parse_xml(text: str, max_bytes: int) -> ET.Element:
    """Parse untrusted XML after checking its size; every failure is one PayloadError."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PayloadError(f"payload is {size} bytes, more than the {max_bytes} allowed")
    try:
        root: ET.Element = SafeET.fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as e:
        raise PayloadError(f"payload refused: {type(e).__name__} (DTDs and entities are not allowed)") from e
    except (ET.ParseError, ValueError) as e:
        raise PayloadError(f"payload is not well-formed XML: {e}") from e
    _check_depth(root, 1)
    return root


def _check_depth(element: ET.Element, depth: int) -> None:
    if depth > MAX_XML_DEPTH:
        raise PayloadError(f"payload nests deeper than {MAX_XML_DEPTH} levels")
    for child in element:
        _check_depth(child, depth + 1)


def parse_parameters(payload: str, max_bytes: int) -> tuple[tuple[str, str], ...]:
    """``<parameters><parameter name=".." value=".."/>...</parameters>`` → ordered (name, value) pairs."""
    if not payload.strip():
        return ()
    root = parse_xml(payload, max_bytes)
    if root.tag != "parameters":
        raise PayloadError(f"payload root must be <parameters>, got <{root.tag[:40]}>")
    params: list[tuple[str, str]] = []
    for child in root:
        if child.tag != "parameter":
            raise PayloadError(f"unexpected element <{child.tag[:40]}> in <parameters>")
        name = child.get("name")
        if not name:
            raise PayloadError("a <parameter> has no name")
        value = child.get("value")
        if value is None:
            value = child.text or ""
        if any(n == name for n, _ in params):
            raise PayloadError(f"parameter {name[:40]!r} appears twice")
        params.append((name, value))
        if len(params) > MAX_PARAMETERS:
            raise PayloadError(f"payload has more than {MAX_PARAMETERS} parameters")
    return tuple(params)


def build_results(
    *,
    result: ET.Element | None,
    echo_record: Mapping[str, str],
    parameters: Sequence[tuple[str, str]],
    probe_time_ms: int,
    error: str | None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> str:
    """The ``<results>`` payload of an input record: result, error and the echo of the output.

    Total: every value is made XML-safe here (control characters and lone surrogates become U+FFFD),
    and a payload over ``max_bytes`` (what the instance accepts) becomes an error result instead.
    """
    return results_and_error(
        result=result,
        echo_record=echo_record,
        parameters=parameters,
        probe_time_ms=probe_time_ms,
        error=error,
        max_bytes=max_bytes,
    )[0]


def results_and_error(
    *,
    result: ET.Element | None,
    echo_record: Mapping[str, str],
    parameters: Sequence[tuple[str, str]],
    probe_time_ms: int,
    error: str | None,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> tuple[str, str | None]:
    """As build_results, with the error the payload carries (``error``, or why the result was cut)."""
    payload = _results(result, echo_record, parameters, probe_time_ms, error)
    size = len(payload.encode())
    if size <= max_bytes:
        return payload, error
    too_large = (
        f"result too large: {size} bytes, more than the {max_bytes} the instance accepts; it was cut "
        "to this error: narrow the probe (fewer targets, a smaller response)"
    )
    payload = _results(None, echo_record, (), probe_time_ms, too_large)
    if len(payload.encode()) > max_bytes:  # the echo alone is too large: the sys_id says which job
        only_ids = {k: v for k, v in echo_record.items() if k in ("sys_id", "ecc_queue")}
        payload = _results(None, only_ids, (), probe_time_ms, too_large)
    return payload, too_large


def _results(
    result: ET.Element | None,
    echo_record: Mapping[str, str],
    parameters: Sequence[tuple[str, str]],
    probe_time_ms: int,
    error: str | None,
) -> str:
    root = ET.Element("results", probe_time=str(probe_time_ms), result_code="1" if error else "0")
    if error:
        root.set("error", one_line(error))
    if result is not None and result.tag == RESULT_LIST:
        root.extend(list(result))
        if result.get("truncated") == "true":
            root.set("truncated", "true")
    elif result is not None:
        root.append(result)
    echo = ET.SubElement(root, "parameters")
    for name, value in parameters:
        # The record's own fields win over a job parameter of the same name: one value per name.
        if name not in ECHO_FIELDS or name not in echo_record:
            ET.SubElement(echo, "parameter", name=name, value=value)
    for field in ECHO_FIELDS:
        if field in echo_record and (echo_record[field] or field not in ECHO_WHEN_SET):
            ET.SubElement(echo, "parameter", name=field, value=echo_record[field])
    _make_xml_safe(root)
    return ET.tostring(root, encoding="unicode")


def _make_xml_safe(root: ET.Element) -> None:
    """XML 1.0 cannot carry C0 controls or lone surrogates; ElementTree would write them anyway."""
    for element in root.iter():
        if element.text:
            element.text = xml_text(element.text)
        if element.tail:
            element.tail = xml_text(element.tail)
        for key, value in element.attrib.items():
            element.set(key, xml_text(value))


def with_parameters(payload: str, extra: Mapping[str, str], max_bytes: int) -> str:
    """``payload`` (a ``<results>`` document this appliance built) with ``extra`` set in its
    ``<parameters>``, which is added when missing. A parameter already there keeps its value."""
    root = parse_xml(payload, max_bytes)
    if root.tag != "results":
        raise PayloadError(f"an input payload's root must be <results>, got <{root.tag[:40]}>")
    params = root.find("parameters")
    if params is None:
        params = ET.SubElement(root, "parameters")
    present = {p.get("name") for p in params.iter("parameter")}
    for name, value in extra.items():
        if name not in present:
            ET.SubElement(params, "parameter", name=name, value=value)
    return ET.tostring(root, encoding="unicode")


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
