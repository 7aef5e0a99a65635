# PyInstaller runtime hook: paramiko imports nacl.signing (for Ed25519 keys) and nacl.exceptions; the
# binary serves both from hardening.naclshim (cryptography's Ed25519) instead of shipping PyNaCl with its
# libsodium and cffi (issue 19). Served on first import, so an idle appliance that never loads paramiko
# never loads it either.
# ruff: noqa
import importlib.abc
import importlib.util
import sys

_NAMES = ("nacl", "nacl.signing", "nacl.exceptions")


class _NaclFromCryptography(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name not in _NAMES:
            return None
        return importlib.util.spec_from_loader(name, self, is_package=name == "nacl")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == "nacl":
            return
        from hardening import naclshim

        if module.__name__ == "nacl.exceptions":
            module.CryptoError = naclshim.CryptoError
            module.BadSignatureError = naclshim.BadSignatureError
            module.ValueError = naclshim.NaclValueError
            module.TypeError = TypeError
        else:
            import nacl.exceptions  # paramiko reaches nacl.exceptions through nacl.signing, as in PyNaCl

            module.SigningKey = naclshim.SigningKey
            module.VerifyKey = naclshim.VerifyKey
            module.SignedMessage = naclshim.SignedMessage
            module.BadSignatureError = naclshim.BadSignatureError


sys.meta_path.insert(0, _NaclFromCryptography())
