"""Probes: one module per kind of work the appliance runs against a target."""
