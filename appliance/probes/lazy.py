"""A probe whose module is imported on its first job, so an idle appliance does not hold every probe.

An appliance that never gets an SNMP or SSH job should not carry the SNMP codec, the MIB tables or
paramiko's session code in memory (issue 19: idle RSS). The registry needs only each probe's kind and
topics up front; the probe itself is built when a job first needs it. Our own modules are pure Python,
which a onefile binary reads from the executable itself, so a first import late in the appliance's
life does not depend on its unpacked folder.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from appliance.probes.base import Job, Probe, ProbeContext

P = TypeVar("P", bound=Probe)


class LazyProbe(Generic[P]):
    """Declares ``kind`` and ``topics``; ``make`` builds the real probe (importing its module) once."""

    def __init__(self, kind: str, topics: tuple[str, ...], make: Callable[[], P]) -> None:
        self._kind = kind
        self._topics = topics
        self._make = make
        self._probe: P | None = None

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def topics(self) -> tuple[str, ...]:
        return self._topics

    @property
    def loaded(self) -> bool:
        return self._probe is not None

    def probe(self) -> P:
        if self._probe is None:
            probe = self._make()
            if probe.kind != self._kind or tuple(probe.topics) != self._topics:
                # a wiring bug in app.py, caught by the registry test, never by input
                raise ValueError(f"lazy probe {self._kind}/{self._topics} built {probe.kind}/{probe.topics}")
            self._probe = probe
        return self._probe

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return self.probe().rerun_safe(params)

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        return await self.probe().run(job, ctx)

    async def aclose(self) -> None:
        if self._probe is not None:
            await self._probe.aclose()
