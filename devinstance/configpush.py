"""What an instance admin's script does to deliver a signed config: one ecc_queue output record per
appliance with topic ``midbox.config`` and the config and its signature, base64, as parameters.

The instance adds nothing of its own: it can only carry what the admins signed.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET  # nosec B405 - builds XML only
from collections.abc import Sequence
from pathlib import Path

TOPIC = "midbox.config"


def push_payload(config: bytes, signature: bytes) -> str:
    root = ET.Element("parameters")
    for name, data in (("config", config), ("signature", signature)):
        ET.SubElement(root, "parameter", name=name, value=base64.b64encode(data).decode("ascii"))
    return ET.tostring(root, encoding="unicode")


def push_records(config_path: Path, agents: Sequence[str]) -> list[dict[str, str]]:
    """Output records delivering ``config_path`` and ``config_path.sig`` to each of ``agents``."""
    config = config_path.read_bytes()
    signature = config_path.with_name(config_path.name + ".sig").read_bytes()
    payload = push_payload(config, signature)
    return [
        {
            "agent": agent if agent.startswith("mid.server.") else f"mid.server.{agent}",
            "topic": TOPIC,
            "name": config_path.name,
            "source": "",
            "payload": payload,
            "priority": "1",  # expedited, ahead of Discovery's standard work
        }
        for agent in agents
    ]
