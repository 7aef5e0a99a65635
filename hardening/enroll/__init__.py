"""The appliance's own mTLS identity: ``midbox enroll`` makes the key and CSR, checks the signed
certificate the CA returns, and installs it.

- ``store``   the key, CSR and certificate on disk: creation, renewal, the atomic swap on install
- ``verify``  the numbered checks a returned certificate passes before ``store.install`` takes it

The submodules are imported by name (nothing is re-exported here).
"""
