"""Signed configuration: admin keys, the trust root, the signature envelope and its ordered check.

- ``keys``      admin Ed25519 keys (the private key sealed with scrypt + AES-256-GCM)
- ``trust``     the trust root: which admin keys count, the threshold, signed rotations
- ``envelope``  the ``CONFIG.sig`` format and the admin-side signing of a config
- ``verify``    the ordered verification of a signed config, one numbered step per check
- ``rollback``  the pinned state that refuses an older config or an unsigned trust-root swap
- ``errors``    the ``SigningError`` subtree

The submodules are imported by name (nothing is re-exported here), so loading one key file does
not load the whole verifier.
"""
