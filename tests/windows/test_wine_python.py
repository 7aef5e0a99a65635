from __future__ import annotations

from tests.windows.conftest import WinPy, result_of


def test_the_interpreter_is_windows_cpython_with_the_locked_wheels(winpy: WinPy) -> None:
    out = result_of(
        winpy(
            "import json, os, sys, cryptography, paramiko, pysnmp, httpx\n"
            "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey as K\n"
            "k = K.generate(); k.public_key().verify(k.sign(b'x'), b'x')\n"
            "print(json.dumps([sys.platform, os.name, cryptography.__version__, paramiko.__version__]))"
        )
    )
    assert out[:2] == ["win32", "nt"]
    assert out[2] and out[3]
