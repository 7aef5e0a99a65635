"""What midbox refuses because ServiceNow publishes no payload layout for it (docs/servicenow.md).

An official MID runs these; midbox could only guess their results, and a guessed result fed to the
instance's sensors is worse than a clear refusal: the refusal tells the instance admin what to change.
One message per cause, so every probe that meets the cause says the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SEE = "see docs/servicenow.md"

RESULT_FORMAT_JSON_REFUSED = (
    "result_format=JSON is not supported by midbox (ServiceNow publishes no layout for it): remove the "
    f"result_format parameter from this probe so it returns the classic XML result; {SEE}"
)

# ECC topic -> why, and what an instance admin should change.
UNPUBLISHED_TOPICS: Mapping[str, str] = {
    "MultiProbe": (
        "topic 'MultiProbe' (identity probes such as 'Linux - Identity', 'SNMP - Identity') is not "
        "supported by midbox (no public payload layout): have the classifier trigger the simple classic "
        f"probes (SSHCommand, SNMP) instead of the MultiProbe; {SEE}"
    ),
    "HorizontalDiscoveryProbe": (
        "topic 'HorizontalDiscoveryProbe' (the Horizontal Pattern probe, 'Pattern Launcher: ...') is not "
        "supported by midbox (patterns run inside the official MID; no public payload layout): point the "
        "classifier at classic probes instead of the Horizontal Pattern probe (Discovery Classic mode); "
        f"{SEE}"
    ),
}
# The Horizontal Pattern probe names its ECC records "Pattern Launcher: <pattern>".
PATTERN_NAME_PREFIX = "Pattern Launcher"


_BY_FOLDED = {t.casefold(): t for t in UNPUBLISHED_TOPICS}


def unsupported_topic(topic: str, name: str) -> str | None:
    """The refusal for an output midbox will not run for want of a public layout, else None."""
    # ServiceNow spells the multiprobe topic both "MultiProbe" and "Multiprobe".
    known = _BY_FOLDED.get(topic.casefold())
    if known is not None:
        return UNPUBLISHED_TOPICS[known]
    if name.startswith(PATTERN_NAME_PREFIX):
        return UNPUBLISHED_TOPICS["HorizontalDiscoveryProbe"]
    return None


def unsupported_parameters(params: Sequence[tuple[str, str]]) -> str | None:
    """The refusal for parameters asking for a result layout midbox does not know, else None."""
    for name, value in params:
        if name == "result_format" and value.strip().upper() == "JSON":
            return RESULT_FORMAT_JSON_REFUSED
    return None
