"""What a valid config still leaves open, said wherever the config is shown or loaded.

``config verify`` prints these, ``doctor`` reports them as WARN, ``run`` logs them at start and
at each reload. None of them refuses the config: older configs keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config.model import ParsedConfig
from hardening.filepins import RESIGN


@dataclass(frozen=True)
class ConfigWarning:
    topic: str  # "file pins" or "allow rules" (doctor's check names)
    message: str

    def __str__(self) -> str:
        return self.message


def config_warnings(config: ParsedConfig) -> tuple[ConfigWarning, ...]:
    out: list[ConfigWarning] = []
    for f in config.files:
        if f.sha256 is None:
            out.append(
                ConfigWarning(
                    "file pins",
                    f"{f.key} ({f.written}) is not pinned by SHA-256: a file swapped in its place would be "
                    f"trusted; pin it by signing again with '{RESIGN}'",
                )
            )
    for i, a in enumerate(config.allow):
        if a.hosts and not a.rule.resolves_within:
            names = ", ".join(a.hosts)
            out.append(
                ConfigWarning(
                    "allow rules",
                    f"allow[{i}] names host {names} without resolves_within: whoever answers DNS for it "
                    'decides which address its probes and credentials reach; add resolves_within = ["CIDR"]',
                )
            )
    return tuple(out)
