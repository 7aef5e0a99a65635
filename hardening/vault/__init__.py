"""The encrypted local credential store: secrets live only on this host, encrypted at rest.

Public surface: ``VaultPaths``, ``KeySource``, ``open_store``, ``edit_store``, ``verify_store``,
``Secret``, ``SecretRedactor`` and the ``VaultError`` tree.
"""
