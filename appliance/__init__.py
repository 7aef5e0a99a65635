"""midbox appliance runtime: CLI, config model, queue client, dispatcher and probes."""

__version__ = "0.1.0"
