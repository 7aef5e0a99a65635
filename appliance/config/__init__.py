"""The signed config file: parsed strictly into frozen dataclasses.

``ParsedConfig`` is what the TOML says; ``Config`` is a ParsedConfig whose signature has been verified.
Only the verification step (``appliance.config.verify``) constructs a ``Config``.
"""

from appliance.config.model import (
    AllowSection,
    ApplianceSection,
    Config,
    InstanceSection,
    ParsedConfig,
)
from appliance.config.parse import parse_config

__all__ = [
    "AllowSection",
    "ApplianceSection",
    "Config",
    "InstanceSection",
    "ParsedConfig",
    "parse_config",
]
