"""Which MID a request claims to act for, and which MID its client certificate names.

A certificate-authenticated request may act only for the ``mid.server.NAME`` its certificate names:
edge-02's certificate cannot poll, claim or answer edge-01's work, nor touch edge-01's ecc_agent
record. Requests that name no agent (looking up an input by ``response_to``) need no match.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

AGENT_PREFIX = "mid.server."


def certificate_agents(peercert: Mapping[str, Any]) -> set[str]:
    """The ``mid.server.*`` names in a peer certificate's CN and DNS subjectAltNames
    (``ssl.SSLSocket.getpeercert()``'s dictionary)."""
    names: set[str] = set()
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(str(value))
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "DNS":
            names.add(str(value))
    return {n for n in names if n.startswith(AGENT_PREFIX)}


def _query_terms(encoded: str) -> list[tuple[str, str]]:
    terms: list[tuple[str, str]] = []
    for part in encoded.replace("^OR", "^").replace("^NQ", "^").split("^"):
        field, sep, value = part.partition("=")
        if sep and not field.endswith(("!", "<", ">")):
            terms.append((field, value))
    return terms


def _as_agent(table: str, column: str, value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if table == "ecc_agent" and column == "name":
        return AGENT_PREFIX + value
    if table == "ecc_queue" and column == "agent":
        return value
    return None


def claimed_agents(table: str, query: str, body: bytes, stored: Mapping[str, str] | None) -> set[str]:
    """Every agent the request names: in its query, its JSON body, or the row it changes."""
    column = "name" if table == "ecc_agent" else "agent"
    found: set[str] = set()
    for field, value in _query_terms(query):
        if field == column and (agent := _as_agent(table, column, value)):
            found.add(agent)
    try:
        values = json.loads(body) if body else {}
    except ValueError:
        values = {}
    for source in (values if isinstance(values, dict) else {}, stored or {}):
        agent = _as_agent(table, column, source.get(column))
        if agent:
            found.add(agent)
    return found


def refusal(cert_agents: set[str], claimed: set[str]) -> str | None:
    """Why the request is refused (its certificate speaks for another MID), or None."""
    others = claimed - cert_agents if len(cert_agents) == 1 else claimed
    if not others:
        return None
    named = ", ".join(sorted(cert_agents)) or "no mid.server name"
    return f"the client certificate is for {named}, the request acts for {', '.join(sorted(others))}"
