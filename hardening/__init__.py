"""midbox security mechanisms: TLS, signatures, credential vault, audit chain, allowlist, file hardening.

This package knows nothing of ``appliance``: it takes plain values and returns plain values.
"""
