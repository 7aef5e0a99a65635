"""HeartbeatProbe: the instance's MID Server Monitor asks; we say Up and how we are doing."""

from __future__ import annotations

# ElementTree only builds XML here; untrusted XML is parsed with defusedxml.
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Callable, Mapping

from appliance.probes.base import Job, ProbeContext

StatusSource = Callable[[], Mapping[str, str]]


class HeartbeatProbe:
    kind = "heartbeat"  # touches no target, so no policy check
    topics = ("HeartbeatProbe",)

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return True

    def __init__(self, status: StatusSource) -> None:
        self._status = status

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        result = ET.Element("result")
        status = dict(self._status())
        # "Paused" (with paused_reason) while something the appliance depends on has expired.
        ET.SubElement(result, "mid_operational_state").text = status.pop("mid_operational_state", "Up")
        for key, value in sorted(status.items()):
            ET.SubElement(result, key).text = value
        return result

    async def aclose(self) -> None:
        return None
